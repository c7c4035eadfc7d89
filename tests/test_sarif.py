"""`ruledsl check --format sarif`: a SARIF 2.1.0 log that code scanning accepts, matching `--format json`."""

import json
from pathlib import Path

from conftest import EXAMPLES
from typer.testing import CliRunner

from ruledsl.cli import app
from ruledsl.diagnostics import CODES
from ruledsl.sarif import SARIF_SCHEMA

runner = CliRunner()
BAD = "object agent = color(#ff0000)\ngoal reach: at end inside(agnt, goal)\n"

# What the SARIF 2.1.0 schema requires of each object we write, and the properties it allows there
# (every object in the schema has additionalProperties: false).
SCHEMA = {
    "log": ({"version", "runs"}, {"$schema", "version", "runs", "inlineExternalProperties", "properties"}),
    "run": (
        {"tool"},
        {"tool", "invocations", "originalUriBaseIds", "columnKind", "results", "artifacts", "properties"},
    ),
    "tool": ({"driver"}, {"driver", "extensions", "properties"}),
    "driver": ({"name"}, {"name", "version", "semanticVersion", "informationUri", "rules", "properties"}),
    "rule": (
        {"id"},
        {"id", "name", "shortDescription", "fullDescription", "defaultConfiguration", "help", "properties"},
    ),
    "invocation": ({"executionSuccessful"}, {"executionSuccessful", "exitCode", "properties"}),
    "result": (
        {"message"},
        {"ruleId", "ruleIndex", "level", "message", "locations", "properties", "partialFingerprints"},
    ),
    "location": (set(), {"physicalLocation", "properties"}),
    "physicalLocation": (set(), {"artifactLocation", "region", "properties"}),
    "artifactLocation": (set(), {"uri", "uriBaseId", "index", "properties"}),
    "region": (set(), {"startLine", "startColumn", "endLine", "endColumn", "properties"}),
}


def conforms(obj: dict, kind: str) -> None:
    required, allowed = SCHEMA[kind]
    assert required <= set(obj), (kind, required - set(obj))
    assert set(obj) <= allowed, (kind, set(obj) - allowed)


def validate(log: dict) -> None:
    """The schema's constraints on everything `render_sarif` writes."""
    conforms(log, "log")
    assert log["version"] == "2.1.0" and log["$schema"] == SARIF_SCHEMA
    (run,) = log["runs"]
    conforms(run, "run")
    conforms(run["tool"], "tool")
    driver = run["tool"]["driver"]
    conforms(driver, "driver")
    assert driver["name"] == "ruledsl"
    for rule in driver["rules"]:
        conforms(rule, "rule")
        assert rule["defaultConfiguration"]["level"] in ("none", "note", "warning", "error")
        assert set(rule["shortDescription"]) == {"text"}
    for invocation in run["invocations"]:
        conforms(invocation, "invocation")
    assert run["columnKind"] in ("utf16CodeUnits", "unicodeCodePoints")
    for base in run["originalUriBaseIds"].values():
        assert base["uri"].endswith("/")  # a base URI must end with a slash
    for result in run["results"]:
        conforms(result, "result")
        assert result["level"] in ("none", "note", "warning", "error")
        assert isinstance(result["message"]["text"], str) and result["message"]["text"]
        assert driver["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
        for location in result["locations"]:
            conforms(location, "location")
            physical = location["physicalLocation"]
            conforms(physical, "physicalLocation")
            conforms(physical["artifactLocation"], "artifactLocation")
            region = physical["region"]
            conforms(region, "region")
            assert all(isinstance(region[k], int) and region[k] >= 1 for k in region)
            assert (region["endLine"], region["endColumn"]) >= (region["startLine"], region["startColumn"])


def sarif(*paths, cwd: Path):
    import os

    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = runner.invoke(app, ["check", "--format", "sarif", *map(str, paths)])
        json_result = runner.invoke(app, ["check", "--format", "json", *map(str, paths)])
    finally:
        os.chdir(old)
    return result, json.loads(result.stdout), json.loads(json_result.stdout)


def test_sarif_has_one_run_whose_rules_are_the_codes_and_results_match_json(tmp_path):
    (tmp_path / "rules").mkdir()
    bad = Path("rules") / "bad.rule"
    (tmp_path / bad).write_text(BAD)
    result, log, items = sarif(bad, EXAMPLES[0], cwd=tmp_path)
    assert result.exit_code == 1  # as for text and json: the program has errors
    validate(log)
    (run,) = log["runs"]
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == list(CODES)
    assert [r["shortDescription"]["text"] for r in run["tool"]["driver"]["rules"]] == list(CODES.values())
    assert len(run["results"]) == len(items) == 3
    for got, want in zip(run["results"], items):
        assert got["ruleId"] == want["code"] and got["level"] == want["severity"]
        assert got["message"]["text"] == want["message"] + (f"\nhint: {want['hint']}" if want["hint"] else "")
        physical = got["locations"][0]["physicalLocation"]
        assert physical["artifactLocation"] == {"uri": "rules/bad.rule", "uriBaseId": "%SRCROOT%"}
        assert physical["region"] == {
            "startLine": want["line"],
            "startColumn": want["column"],
            "endLine": want["end_line"],
            "endColumn": want["end_column"],
        }
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == tmp_path.resolve().as_uri() + "/"


def test_clean_files_give_an_empty_result_list_and_exit_0(tmp_path):
    result, log, _ = sarif(*EXAMPLES, cwd=tmp_path)
    assert result.exit_code == 0
    validate(log)
    assert log["runs"][0]["results"] == []


def test_sarif_columns_are_code_points_and_absolute_paths_file_uris(tmp_path):
    path = tmp_path / "dé jà.rule"
    path.write_text('goal reach: ask "🤖 ✓" and inside(agnt, agnt)\n', encoding="utf-8")
    _, log, items = sarif(path, cwd=tmp_path)
    validate(log)
    result = log["runs"][0]["results"][0]
    physical = result["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"] == {"uri": path.as_uri()}  # percent-encoded, no base
    line = path.read_text(encoding="utf-8").split("\n")[0]
    assert physical["region"]["startColumn"] == line.index("agnt") + 1 == items[0]["column"]
    assert log["runs"][0]["columnKind"] == "unicodeCodePoints"
