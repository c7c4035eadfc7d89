"""Regression tests for issue 12 (front end, files, CLI): each reproduction as the input, each
test named after what it guards. Deep input, huge literals, degenerate videos, odd files and
crashes must give a clear error (file:line:col for programs) and a documented exit code."""

import functools
import math
import os
import stat
import subprocess
import sys
import zlib

import numpy as np
import pytest
from conftest import ROOT
from helpers import assert_valid_spans, checked
from PIL import Image
from test_teacher import PROGRAM, fence, server  # noqa: F401  (the local chat-completions server fixture)
from typer.testing import CliRunner

from ruledsl import ast, cli
from ruledsl.checker import MAX_MAGNITUDE
from ruledsl.diagnostics import LINE_WINDOW, render_plain, render_text
from ruledsl.formatter import format_source
from ruledsl.parser import parse
from ruledsl.source import Source, SourceError, read_source
from ruledsl.teacher.backends import BackendError, OpenAIBackend
from ruledsl.teacher.extract import extract, fenced_blocks
from ruledsl.video import FrameBudget, VideoReadError, read_frames, read_image, write_frames

HEAD = "object agent = color(#ff0000)\nregion goal = color(#00ff00) at start\n"
ATOM = "inside(agent, goal)"
runner = CliRunner()


def run_main(capsys, *argv):
    """The real entry point (`ruledsl ...`), in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def assert_round_trip(text: str) -> str:
    """fmt output re-parses to the same tree and is a fixed point."""
    program = parse(Source(text))
    formatted = format_source(Source(text))
    assert parse(Source(formatted)) == program
    assert format_source(Source(formatted)) == formatted
    return formatted


# ---- D1: deep and long formulas ---------------------------------------------------------------


def test_long_and_chain_checks_and_formats():
    # RecursionError at 491 terms before; 1,200 terms need 1,200 levels of any recursive pass.
    text = HEAD + "goal g: at end " + " and ".join([ATOM] * 1200) + "\n"
    result = checked(text)
    assert result.ok, result.diagnostics
    assert assert_round_trip(text).count(" and ") == 1199


def test_long_or_and_mixed_chains_keep_their_parentheses():
    chain = " or ".join(f"({ATOM} and {ATOM})" for _ in range(400))
    text = HEAD + f"goal g: at end ({chain}) and ({ATOM} or {ATOM})\n"
    assert checked(text).ok
    formatted = assert_round_trip(text)
    assert formatted.count("(") == text.count("(") - 400  # the and-groups need none inside `or`


def test_long_plus_chain_is_typed_and_folded():
    text = HEAD + "param total = " + " + ".join(["0.001"] * 1200) + "\n"  # failed at 331 terms before
    text += "goal g: at end speed(agent) <= total - " + " - ".join(["0.0001"] * 1200) + "\n"
    result = checked(text)
    assert result.ok, result.diagnostics
    assert result.constants["total"] == pytest.approx(1.2)
    assert_round_trip(text)


def test_long_region_union_chain_is_static_and_formats():
    text = "object agent = color(#ff0000)\nregion many = " + " | ".join(["box(0, 0, 0.5, 0.5)"] * 600) + " at start\n"
    text += "goal g: at end inside(agent, many)\n"
    result = checked(text)
    assert result.ok, result.diagnostics
    assert result.symbols["many"].static
    assert_round_trip(text)


@pytest.mark.parametrize(
    "body",
    [
        "not " * 490 + ATOM,  # the reproduction
        "not " * 20_000 + ATOM,  # far beyond Python's recursion limit: no recursion anywhere
        "always " * 300 + ATOM,
        "(" * 2000 + ATOM + ")" * 2000,  # parentheses alone make no nodes...
        f"{ATOM} and (" * 150 + ATOM + ")" * 150,  # ...but nested operators do
        "speed(agent) <= " + "-" * 400 + "1",
        "inside(agent, " + "grow(" * 200 + "goal" + ", 0.01)" * 200 + ")",
    ],
)
def test_deep_nesting_is_a_positioned_error_not_a_recursion_error(body):
    text = HEAD + "goal g: at end " + body + "\n"
    result = checked(text)
    assert_valid_spans(result)
    codes = [d.code for d in result.diagnostics]
    if body.startswith("(("):  # parenthesised atoms: no nesting at all
        assert result.ok, codes
        return
    assert codes == ["E104"]
    (error,) = result.errors
    assert error.span.line == 3 and f"deeper than {ast.MAX_NESTING}" in error.message
    with pytest.raises(Exception) as info:  # the formatter refuses it the same way
        format_source(Source(text))
    assert info.value.diagnostic.code == "E104"


def test_nesting_limit_is_exact():
    def program(levels):  # `at end` is level 1, each `not` one more, then the call and its arguments
        return HEAD + "goal g: at end " + "not " * (levels - 3) + ATOM + "\n"

    assert checked(program(ast.MAX_NESTING)).ok
    assert [d.code for d in checked(program(ast.MAX_NESTING + 1)).diagnostics] == ["E104"]


def test_deep_program_through_the_cli_is_exit_1_without_traceback(tmp_path, capsys):
    path = tmp_path / "deep.rule"
    path.write_text(HEAD + "goal g: at end " + "not " * 490 + ATOM + "\n")
    code, _, err = run_main(capsys, "check", path)
    assert code == 1 and "Traceback" not in err
    assert f"{path}:3:" in err and "E104" in err


def test_ast_equality_and_hash_do_not_recurse():
    text = HEAD + "goal g: at end " + " and ".join([ATOM] * 1200) + "\n"
    a, b = parse(Source(text)), parse(Source(text))
    assert a == b and hash(a) == hash(b)
    assert a != parse(Source(text.replace("goal)\n", "agent)\n")))
    assert sum(1 for _ in ast.walk(a)) > 1200 * 3


# ---- D3: numbers that are not finite ----------------------------------------------------------

HUGE = "9" * 400


@pytest.mark.parametrize(
    "rule, column",
    [
        (f"goal g: at end inside(agent, goal, frac={HUGE})", 41),  # inf literal into a range check
        (f"goal g: at end speed(agent) <= {HUGE} - {HUGE}", 32),  # inf - inf = NaN robustness
        (f"goal g: at end {ATOM} weight {HUGE}", 43),  # inf weight
        (f"goal g: at {HUGE} {ATOM}", 12),  # OverflowError for an inf frame
        (f"goal g: during [0, {HUGE}] {ATOM}", 20),
    ],
)
def test_non_finite_literals_are_positioned_errors(rule, column):
    result = checked(HEAD + rule + "\n")
    assert_valid_spans(result)
    errors = [d for d in result.errors if d.code == "E309"]
    assert errors, result.diagnostics
    assert (errors[0].span.line, errors[0].span.column) == (3, column)
    assert "numbers must be within" in errors[0].message


def test_constant_arithmetic_must_stay_finite_and_bounded():
    big = "1" + "0" * 15  # 1e15: the largest magnitude allowed
    result = checked(HEAD + f"param p = {big} * {big}\ngoal g: at end speed(agent) <= p\n")
    assert [d.code for d in result.errors][:1] == ["E309"]
    assert result.errors[0].span.column == 11 and "`*` of constants" in result.errors[0].message
    ok = checked(HEAD + f"param p = {big} - {big}\ngoal g: at end speed(agent) <= p\n")
    assert ok.ok and ok.constants["p"] == 0.0
    assert all(math.isfinite(v) for v in ok.constants.values() if isinstance(v, float))
    assert MAX_MAGNITUDE == 1e15


# ---- D6, D7, D20: degenerate and oversized videos, files that are not files --------------------


def _gif(path, frames, durations, comment=b""):
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0, comment=comment)
    return path


def _two_frames(size):
    return [np.full((size, size, 3), value, np.uint8) for value in (0, 255)]


@pytest.mark.parametrize("comment", [b"ruledsl frame_ms=abc", b"ruledsl frame_ms=", b"frame_ms=0", b"frame_ms"])
def test_gif_comment_that_is_not_ours_is_ignored(tmp_path, comment):
    path = _gif(tmp_path / "c.gif", _two_frames(8), [250, 500], comment)  # ValueError / IndexError before
    assert read_frames(path).shape == (3, 8, 8, 3)  # gcd 250 ms: 1 + 2 frames


def test_gif_durations_expand_only_within_the_frame_budget(tmp_path):
    # 2 stored frames of 1024x1024 whose durations would expand to 65,536 frames (206 GB): refused
    # before any expansion is allocated.
    path = _gif(tmp_path / "long.gif", _two_frames(1024), [10, 655_350])
    with pytest.raises(VideoReadError, match="durations expanded.*65,536 frames"):
        read_frames(path)
    tiny = _gif(tmp_path / "tiny.gif", _two_frames(8), [10, 65_530])  # 6,554 frames from a tiny file
    assert tiny.stat().st_size < 1000
    with pytest.raises(VideoReadError, match="6,554 frames is over the budget of 4,096"):
        read_frames(tiny)


def _png_claiming(path, width, height):
    """A 1x1 PNG whose header claims width x height (a decompression bomb's header)."""
    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    return path


def test_image_size_is_checked_from_the_header_before_decoding(tmp_path):
    bomb = _png_claiming(tmp_path / "bomb.png", 10_000, 10_000)  # loaded at 2.8 GB before
    with pytest.raises(VideoReadError, match="10000x10000 frame is over the budget"):
        read_image(bomb)
    folder = tmp_path / "frames"
    folder.mkdir()
    _png_claiming(folder / "00000.png", 10_000, 10_000)
    with pytest.raises(VideoReadError, match="10000x10000"):
        read_frames(folder)


def test_frame_folder_and_video_file_obey_the_budget(tmp_path, monkeypatch):
    frames = np.zeros((6, 16, 16, 3), np.uint8)
    folder = write_frames(tmp_path / "frames", frames)
    with pytest.raises(VideoReadError, match="6 frames is over the budget of 4 frames"):
        read_frames(folder, FrameBudget(max_frames=4))
    video = write_frames(tmp_path / "v.mp4", frames)
    with pytest.raises(VideoReadError, match="over the budget of 1,000 pixels per video"):
        read_frames(video, FrameBudget(max_video_pixels=1000))
    monkeypatch.setenv("RULEDSL_MAX_FRAMES", "5")
    with pytest.raises(VideoReadError, match="RULEDSL_MAX_FRAMES"):
        read_frames(folder)
    monkeypatch.setenv("RULEDSL_MAX_FRAMES", "lots")
    with pytest.raises(VideoReadError, match="not a whole number"):
        read_frames(folder)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_or_device_as_video_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "video.mp4"
    os.mkfifo(fifo)
    # In a subprocess with a timeout: the old code blocks forever opening the FIFO (`ruledsl eval`
    # reads videos with read_frames and turns VideoReadError into exit 2).
    code = f"from ruledsl.video import read_frames; read_frames({str(fifo)!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "VideoReadError" in done.stderr
    assert "is a FIFO (named pipe), not a regular file" in done.stderr
    with pytest.raises(VideoReadError, match="character device"):
        read_frames("/dev/zero")
    folder = tmp_path / "frames"
    folder.mkdir()
    os.mkfifo(folder / "00000.png")
    with pytest.raises(VideoReadError, match="FIFO"):
        read_frames(folder)
    result = runner.invoke(cli.app, ["extract", "/dev/zero"])  # a model answer from a device: read forever before
    assert result.exit_code == 2 and "character device" in result.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_rule_source_devices_are_refused_and_pipes_are_read_bounded(tmp_path):
    with pytest.raises(SourceError, match="character device"):
        read_source("/dev/zero")  # stat size 0: the old size check let it read forever
    read, write = os.pipe()
    os.write(write, b"goal g: true\n")
    os.close(write)
    assert read_source(f"/proc/self/fd/{read}").text == "goal g: true\n"  # `ruledsl check <(...)`
    os.close(read)


# ---- D8: diagnostics in linear time, long lines shown as a window -------------------------------


def test_rendering_many_diagnostics_builds_the_line_index_once(monkeypatch):
    builds = []
    build = Source.__dict__["line_starts"].func

    def counting(self):
        builds.append(1)
        return build(self)

    prop = functools.cached_property(counting)
    prop.__set_name__(Source, "line_starts")
    monkeypatch.setattr(Source, "line_starts", prop)
    # The file had 30,000 duplicate declarations (73 s); 2,000 show the same shape.
    text = (
        "object agent = color(#ff0000)\n"
        + "region goal = color(#00ff00) at start\n" * 2000
        + f"goal g: at end {ATOM}\n"
    )
    result = checked(text)
    rendered = render_text(result.diagnostics, result.source)
    assert rendered.count("error[E202]") == 1999
    assert len(builds) == 1  # one pass over the text for all 2,000 diagnostics (was a split per diagnostic)


def test_text_output_shows_a_bounded_number_of_diagnostics(tmp_path, capsys):
    path = tmp_path / "dup.rule"
    path.write_text(
        "region goal = box(0, 0, 1, 1)\n" * 500 + "object agent = color(#ff0000)\n" + f"goal g: at end {ATOM}\n"
    )
    code, _, err = run_main(capsys, "check", path)
    assert code == 1
    assert err.count("error[E202]") == cli.MAX_SHOWN_DIAGNOSTICS
    assert "... and 299 more (all of them: `ruledsl check --format json`)" in err
    code, out, _ = run_main(capsys, "check", "--format", "json", path)
    assert out.count('"E202"') == 499


def test_a_long_line_is_shown_as_a_window_around_the_caret():
    rules = [f"process p{i}: always inside(agent, goal)" for i in range(1000)]
    rules.insert(500, "process bad: always inside(agnt, goal)")
    text = HEAD + " ".join(rules) + "\n"  # one 40 KB line (the issue printed 350 KB per diagnostic)
    result = checked(text)
    (error,) = result.errors
    shown = render_plain(error, result.source).split("\n")
    assert all(len(line) < LINE_WINDOW + 20 for line in shown)
    source_line, caret_line = shown[3], shown[4]
    caret = caret_line.index("^")
    assert source_line[caret : caret + 4] == "agnt"
    assert source_line.split(" | ", 1)[1].startswith("…") and source_line.endswith("…")


# ---- D9, D10: fmt --write keeps programs parsing and files intact -------------------------------


@pytest.mark.parametrize("keyword", ["task", "param", "object", "region", "image", "objects", "goal", "process"])
def test_fmt_keeps_a_name_after_at_time_from_lexing_as_a_keyword(keyword):
    text = f"object agent = color(#ff0000)\nparam {keyword} = 0.5\ngoal g: at end ({keyword}) >= x(agent)\n"
    assert checked(text).ok
    formatted = assert_round_trip(text)
    assert checked(formatted).ok


def test_fmt_write_goes_through_a_symlink_and_keeps_the_mode(tmp_path):
    target = tmp_path / "real.rule"
    target.write_text(HEAD + "goal   g:   at end   inside(agent,goal)\n")
    target.chmod(0o600)
    link = tmp_path / "link.rule"
    link.symlink_to(target)
    result = runner.invoke(cli.app, ["fmt", "--write", str(link)])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text().endswith("goal g: at end inside(agent, goal)\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.rule", "real.rule"]  # no temporary left


# ---- D19, D21: model output ---------------------------------------------------------------------


def test_fence_scanning_is_linear_in_the_answer():
    # 199,000 backticks on one line took 40 s with the fence regex (quadratic); 2,000,000 would take
    # over an hour that way. A generous timeout fails only a super-linear scan.
    code = "from ruledsl.teacher.extract import fenced_blocks; assert fenced_blocks('`' * 2_000_000) == []"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=ROOT)
    assert extract("`" * 199_000).reason.startswith("no program found")
    assert fenced_blocks("x ```rule\nbody\n``` y ~~~\nrest") == [("rule", "body\n"), ("", "rest")]


def test_multi_part_message_content_is_joined_and_other_types_refused(server):  # noqa: F811
    url, handler = server
    parts = [{"type": "text", "text": fence(PROGRAM)[:20]}, {"type": "text", "text": fence(PROGRAM)[20:]}]
    handler.script = [(200, parts, 0), (200, 42, 0), (200, None, 0)]
    backend = OpenAIBackend(url, "m", timeout=5, retries=0)
    assert backend.complete([{"role": "user", "content": "hi"}]) == fence(PROGRAM)
    with pytest.raises(BackendError, match="content is int"):  # TypeError in `teach` before
        backend.complete([{"role": "user", "content": "hi"}])
    assert backend.complete([{"role": "user", "content": "hi"}]) == ""


# ---- exit codes: a crash is not a verdict --------------------------------------------------------


def test_internal_error_is_exit_3_one_line_and_a_log_file(tmp_path, capsys, monkeypatch):
    def broken(source):
        raise RuntimeError("injected fault")

    monkeypatch.setattr(cli, "check_source", broken)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # the crash log goes here
    path = tmp_path / "ok.rule"
    path.write_text(HEAD + f"goal g: at end {ATOM}\n")
    code, out, err = run_main(capsys, "check", path)
    assert code == cli.EXIT_INTERNAL == 3
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "internal error" in err and "RuntimeError: injected fault" in err
    log = next(tmp_path.glob("ruledsl-crash-*.log"))
    assert str(log) in err
    assert "Traceback" in log.read_text() and "injected fault" in log.read_text()
    code, _, err = run_main(capsys, "--debug", "check", path)
    assert code == 3 and "Traceback" in err and "injected fault" in err


def test_unhandled_os_error_is_exit_2_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # the log goes here
    answer = tmp_path / "answer.txt"
    answer.write_text(fence(PROGRAM))
    code, _, err = run_main(capsys, "extract", answer, "-o", tmp_path / "no" / "such" / "folder" / "out.rule")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("I/O error (exit 2): FileNotFoundError") and "ruledsl-crash-" in err


def test_verdicts_and_usage_errors_keep_their_exit_codes(tmp_path, capsys):
    good = tmp_path / "good.rule"
    good.write_text(HEAD + f"goal g: at end {ATOM}\n")
    bad = tmp_path / "bad.rule"
    bad.write_text(HEAD + "goal g: at end inside(agnt, goal)\n")
    assert run_main(capsys, "check", good)[0] == 0
    assert run_main(capsys, "check", bad)[0] == 1
    assert run_main(capsys, "check", tmp_path / "missing.rule")[0] == 2
    assert run_main(capsys, "no-such-command")[0] == 2


DEGENERATE_PROGRAMS = {
    "deep_not": HEAD + "goal g: at end " + "not " * 490 + ATOM + "\n",
    "long_and": HEAD + "goal g: at end " + " and ".join([ATOM] * 491) + "\n",
    "long_plus": HEAD + "goal g: at end speed(agent) <= " + " + ".join(["0.1"] * 331) + "\n",
    "huge_literal": HEAD + f"goal g: at end inside(agent, goal, frac={HUGE})\n",
    "inf_minus_inf": HEAD + f"goal g: at end speed(agent) <= {HUGE} - {HUGE}\n",
    "keyword_after_at": "object agent = color(#ff0000)\nparam goal = 0.5\ngoal g: at end (goal) >= x(agent)\n",
    "binary": "\x00\x01\x02 goal",
    "empty": "",
}


@pytest.mark.parametrize("name", sorted(DEGENERATE_PROGRAMS))
def test_degenerate_programs_never_show_a_traceback(tmp_path, capsys, name):
    path = tmp_path / f"{name}.rule"
    path.write_text(DEGENERATE_PROGRAMS[name])
    for command in (["check"], ["check", "--format", "json"], ["fmt"], ["compile"]):
        code, _, err = run_main(capsys, *command, path)
        assert code in (0, 1, 2), (command, err)
        assert "Traceback" not in err and "internal error" not in err, (command, err)
