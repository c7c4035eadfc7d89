"""`ruledsl eval` and `ruledsl compile`: formats, exit codes 0/1/2, JSON report."""

import json

import pytest
import torch
from conftest import ROOT
from test_examples import maze, row
from typer.testing import CliRunner

from ruledsl.cli import app
from ruledsl.compiler.video_io import read_video, write_video

runner = CliRunner()
MAZE = ROOT / "examples" / "maze.rule"


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("name", ["good.gif", "good_frames", "good.mp4"])
def test_eval_passes_a_correct_video_in_every_format(tmp_path, name):
    path = write_video(tmp_path / name, maze()[0])
    result = run("eval", MAZE, path)
    assert result.exit_code == 0, result.output
    assert "all rules hold" in result.stdout


def test_eval_fails_a_broken_video_and_names_rule_and_frames(tmp_path):
    path = write_video(tmp_path / "jump.gif", maze(path=row(3, [1, 2, 4, 5, 6, 6, 6, 6]))[0])
    result = run("eval", MAZE, path)
    assert result.exit_code == 1
    line = next(l for l in result.stdout.splitlines() if "steady" in l)
    assert "✗" in line and "│ 1 " in line
    assert "1 of 6 rules fail" in result.stdout


def test_eval_json_report(tmp_path):
    path = write_video(tmp_path / "jump", maze(path=row(3, [1, 2, 4, 5, 6, 6, 6, 6]))[0])
    out = tmp_path / "report.json"
    result = run("eval", MAZE, path, "--json", "--out", out)
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert json.loads(out.read_text()) == report
    assert report["satisfied"] == [False] and report["frames"] == 8
    steady = report["rules"]["steady"]
    assert steady["verdict"] == [False] and steady["violations"] == [[[1, 1]]]
    assert len(steady["trace"][0]) == 8 and steady["robustness"][0] < 0
    assert report["rules"]["reach"]["trace"][0][:7] == [None] * 7  # `at end` constrains only the last frame
    # --out is never overwritten without --force
    again = run("eval", MAZE, path, "--out", out)
    assert again.exit_code == 2 and "--force" in again.stderr
    assert run("eval", MAZE, path, "--out", out, "--force").exit_code == 1


def test_eval_bad_inputs_exit_2(tmp_path):
    good = write_video(tmp_path / "good.gif", maze()[0])
    missing = run("eval", MAZE, tmp_path / "missing.mp4")
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    assert run("eval", MAZE, junk).exit_code == 2
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    assert "no frame images" in run("eval", MAZE, empty).stderr
    bad_rule = tmp_path / "bad.rule"
    bad_rule.write_text("object a = color(#ff0000)\ngoal r: at end insde(a, a)\n")
    result = run("eval", bad_rule, good)
    assert result.exit_code == 2 and "E204" in result.stderr
    ask = tmp_path / "ask.rule"
    ask.write_text('object a = color(#ff0000)\ngoal r: at end persists(a) and ask "Is it solved?"\n')
    result = run("eval", ask, good)
    assert result.exit_code == 2 and "needs a vision-language model" in result.stderr and "ask.rule:2:" in result.stderr
    assert "--vlm" in result.stderr and "`r`" in result.stderr  # names the rule that needs one
    late = tmp_path / "late.rule"
    late.write_text("object a = color(#ff0000)\ngoal r: at 20 persists(a)\n")
    result = run("eval", late, good)
    assert result.exit_code == 2 and "frame 20 is past the end" in result.stderr


def test_compile_prints_the_ir():
    result = run("compile", ROOT / "examples" / "key_door.rule")
    assert result.exit_code == 0
    assert "until" in result.stdout and "¬touches(" in result.stdout
    assert "snapshot(color(#ffff00, tol=12), start)" in result.stdout


@pytest.mark.parametrize(
    "video, words",
    [
        (torch.rand(8, 3, 16, 16), "add a batch dimension"),
        (torch.rand(1, 8, 4, 16, 16), "3 colour channels"),
        (torch.full((1, 2, 3, 4, 4), float("nan")), "NaN"),
        (torch.rand(1, 2, 3, 4, 4) * 2 - 1, "[-1, 1]"),
        ((torch.rand(1, 2, 3, 4, 4) * 255).to(torch.uint8), "divide uint8"),
    ],
)
def test_shape_and_value_checks(video, words):
    import ruledsl
    from ruledsl.compiler.program import VideoError

    program = ruledsl.load(MAZE).compile()
    with pytest.raises(VideoError, match=None) as error:
        program(video)
    assert words in str(error.value)


def test_read_video_round_trip_lossless(tmp_path):
    video = maze()[0]
    for name in ("clip.gif", "clip_frames"):
        assert torch.equal(read_video(write_video(tmp_path / name, video)), video)


@pytest.fixture(scope="module")
def maze_task(tmp_path_factory):
    from ruledsl.tasks import generate
    from ruledsl.tasks.layout import write_task

    return write_task(generate("maze", 0, 0, "test"), tmp_path_factory.mktemp("tasks") / "00000")


def test_eval_task_fills_params_from_metadata(maze_task):
    # The ground truth moves one cell (1/7 of the frame) per frame: with the declared default
    # cell = 0.1 `steady` fails; with the task's cell it holds.
    video = maze_task / "ground_truth.mp4"
    assert run("eval", MAZE, video, "--task", maze_task).exit_code == 0
    explicit = run("eval", MAZE, video, "--task", maze_task, "--param", "cell=0.1")
    assert explicit.exit_code == 1 and "warning" not in explicit.output  # an explicit --param wins


def test_eval_warns_when_a_task_folder_would_set_a_default_param(maze_task):
    result = run("eval", MAZE, maze_task / "ground_truth.mp4")
    assert result.exit_code == 1
    assert "warning: param `cell` keeps its declared default 0.1" in result.output
    assert f"--task {maze_task}" in result.output


def test_eval_task_that_is_not_a_task_folder_is_a_usage_error(tmp_path, maze_task):
    result = run("eval", MAZE, maze_task / "ground_truth.mp4", "--task", tmp_path)
    assert result.exit_code == 2 and "missing first_frame.png" in result.output


def _odd_video(frames=5, height=90, width=61):
    """Random-ish frames whose sides are not multiples of the pooling factor (edge windows are cut)."""
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(frames, 3, height, width, generator=generator) * 255).round() / 255


@pytest.mark.parametrize("name", ["clip.gif", "clip_frames", "clip.mp4"])
@pytest.mark.parametrize("resolution", [8, 20, 32, 256])
def test_frame_by_frame_reading_matches_shrinking_the_whole_video(tmp_path, name, resolution):
    from ruledsl.compiler.video_io import shrink

    path = write_video(tmp_path / name, _odd_video())
    whole = shrink(read_video(path), resolution)  # the previous path: full size as float, then shrunk
    small = read_video(path, resolution=resolution)
    assert small.shape == whole.shape and small.dtype == torch.float32
    assert max(small.shape[-2:]) <= resolution
    assert torch.allclose(small, whole, atol=1e-5)


def test_eval_resolution_sets_the_working_size(tmp_path, monkeypatch):
    from ruledsl.compiler.program import CompiledProgram

    seen = []
    original = CompiledProgram.evaluation

    def spy(self, video):
        spatial, temporal = original(self, video)
        seen.append(tuple(spatial.video.shape[-2:]))
        return spatial, temporal

    monkeypatch.setattr(CompiledProgram, "evaluation", spy)
    path = write_video(tmp_path / "big.gif", torch.nn.functional.interpolate(maze()[0], scale_factor=2.0))
    sizes = {}
    for option in ([], ["--resolution", "16"], ["--resolution", "100"], ["--resolution", "full"]):
        seen.clear()
        result = run("eval", MAZE, path, *option)
        assert result.exit_code == 0, result.output  # the verdicts do not depend on the working size
        sizes[" ".join(option)] = seen[-1]
    assert sizes[""] == sizes["--resolution full"] == (128, 128)  # under the default 256: not shrunk
    assert sizes["--resolution 16"] == (16, 16)
    assert sizes["--resolution 100"] == (64, 64)  # an integer factor (2): the long side at most 100


@pytest.mark.parametrize("value", ["abc", "7", "0", "-3", "2.5", ""])
def test_eval_bad_resolution_exits_2_with_a_message(tmp_path, value):
    good = write_video(tmp_path / "good.gif", maze()[0])
    result = run("eval", MAZE, good, "--resolution", value)
    assert result.exit_code == 2
    assert "--resolution expects a whole number of pixels of at least 8" in result.stderr
    assert repr(value) in result.stderr
