"""The command line: exit codes, JSON diagnostics, fmt --check/--write, no torch on the check path."""

import json
import subprocess
import sys

import pytest
from conftest import EXAMPLES, ROOT
from helpers import heavy_imports
from typer.testing import CliRunner

from ruledsl.cli import app
from ruledsl.diagnostics import CODES
from ruledsl.docs import render_into
from ruledsl.source import MAX_SOURCE_BYTES

runner = CliRunner()
BAD = "object agent = color(#ff0000)\ngoal reach: at end inside(agnt, goal)\n"


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_check_clean_examples_exit_0_one_line():
    for path in EXAMPLES:
        result = run("check", path)
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == f"{path}: ok ({result.stdout.split('(')[1]}".strip()
        assert result.stdout.count("\n") == 1


def test_check_errors_exit_1_with_location_caret_and_hint(tmp_path):
    bad = tmp_path / "bad.rule"
    bad.write_text(BAD)
    result = run("check", bad)
    assert result.exit_code == 1
    err = result.stderr
    assert f"{bad}:2:27" in err and "error[E201]: undefined name `agnt`" in err
    assert "goal reach: at end inside(agnt, goal)" in err
    assert "\n  |                           ^^^^\n" in err
    assert "did you mean `agent`?" in err
    assert err.splitlines()[-1] == f"{bad}: 2 errors, 1 warning"


def test_check_json_has_stable_fields(tmp_path):
    bad = tmp_path / "bad.rule"
    bad.write_text(BAD)
    result = run("check", "--format", "json", bad)
    assert result.exit_code == 1
    items = json.loads(result.stdout)
    assert sorted(d["code"] for d in items) == ["E201", "E201", "W101"]  # agnt, goal; agent unused
    for item in items:
        assert list(item) == [
            "file",
            "line",
            "column",
            "end_line",
            "end_column",
            "start",
            "end",
            "code",
            "severity",
            "message",
            "hint",
        ]
        assert item["file"] == str(bad) and item["code"] in CODES
    undefined = [d for d in items if "agnt" in d["message"]][0]
    assert (undefined["line"], undefined["column"], undefined["severity"]) == (2, 27, "error")


@pytest.mark.parametrize(
    "content, words",
    [
        (None, "no such file"),
        (b"goal r: \xff\xfe at end\n", "not UTF-8"),
        (b"#" * (MAX_SOURCE_BYTES + 1), "limit"),
    ],
)
def test_usage_and_io_problems_exit_2(tmp_path, content, words):
    path = tmp_path / "x.rule"
    if content is not None:
        path.write_bytes(content)
    result = run("check", path)
    assert result.exit_code == 2
    assert words in result.stderr and str(path) in result.stderr


def test_directory_is_refused(tmp_path):
    assert run("check", tmp_path).exit_code == 2


def test_fmt_prints_check_and_write(tmp_path):
    messy = "object  a = color(#FF0000)\ngoal r :at end persists( a )  # keep me\n"
    path = tmp_path / "m.rule"
    path.write_text(messy)
    printed = run("fmt", path)
    assert printed.exit_code == 0
    assert printed.stdout == "object a = color(#ff0000)\ngoal r: at end persists(a)  # keep me\n"
    assert path.read_text() == messy  # printing never writes
    assert run("fmt", "--check", path).exit_code == 1
    assert run("fmt", "--write", path).exit_code == 0
    assert path.read_text() == printed.stdout
    assert run("fmt", "--check", path).exit_code == 0


def test_fmt_syntax_error_leaves_file_untouched(tmp_path):
    path = tmp_path / "broken.rule"
    path.write_text("goal r: inside(\n")
    result = run("fmt", "--write", path)
    assert result.exit_code == 1 and "E103" in result.stderr
    assert path.read_text() == "goal r: inside(\n"


def test_docs_block_is_generated_from_the_signature_table():
    text = (ROOT / "docs" / "language.md").read_text()
    assert render_into(text) == text, "run `python -m ruledsl.docs` to regenerate docs/language.md"


def test_python_m_ruledsl_help():
    result = subprocess.run([sys.executable, "-m", "ruledsl", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "check" in result.stdout and "fmt" in result.stdout


def test_check_does_not_import_torch():
    code = (
        "from ruledsl.cli import app\n"
        "try:\n"
        f"    app([r'check', r'{EXAMPLES[0]}'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
    )
    assert heavy_imports(code) == []
