"""SARIF 2.1.0 for `ruledsl check --format sarif`: what code-scanning services read.

One run; its tool's rules are the diagnostic codes (all of them, in `CODES` order, so a code's
`ruleIndex` never changes), and each diagnostic is a result pointing at its file and region. Regions
are 1-based with an exclusive end column, as our spans are; columns count Unicode code points
(`columnKind`), as our columns do. Relative paths are given relative to `%SRCROOT%`, the folder
`check` ran in, which is how code scanning finds the file in the repository.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import quote

from ruledsl.diagnostics import CODES, Diagnostic, sort_key
from ruledsl.source import Source

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"


def _level(code: str) -> str:
    return "warning" if code.startswith("W") else "error"


def _rule(code: str, title: str) -> dict:
    return {
        "id": code,
        "name": "".join(word.capitalize() for word in re.findall(r"[A-Za-z0-9]+", title)),
        "shortDescription": {"text": title},
        "defaultConfiguration": {"level": _level(code)},
    }


def artifact_location(name: str) -> dict:
    path = Path(name)
    if path.is_absolute():
        return {"uri": path.as_uri()}
    return {"uri": quote(path.as_posix()), "uriBaseId": "%SRCROOT%"}


def _result(diagnostic: Diagnostic, source: Source, rule_index: int) -> dict:
    span = diagnostic.span
    result = {
        "ruleId": diagnostic.code,
        "ruleIndex": rule_index,
        "level": diagnostic.severity.value,
        "message": {"text": diagnostic.message + (f"\nhint: {diagnostic.hint}" if diagnostic.hint else "")},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": artifact_location(source.name),
                    "region": {
                        "startLine": span.line,
                        "startColumn": span.column,
                        "endLine": span.end_line,
                        "endColumn": span.end_column,
                    },
                }
            }
        ],
    }
    if diagnostic.hint:
        result["properties"] = {"hint": diagnostic.hint}
    return result


def render_sarif(checked: list[tuple[Source, list[Diagnostic]]]) -> str:
    """A SARIF log of every file's diagnostics (files in the order given, diagnostics in source order)."""
    from ruledsl import __version__

    index = {code: i for i, code in enumerate(CODES)}
    results = [
        _result(d, source, index[d.code]) for source, diagnostics in checked for d in sorted(diagnostics, key=sort_key)
    ]
    run = {
        "tool": {
            "driver": {
                "name": "ruledsl",
                "version": __version__,
                "semanticVersion": __version__,
                "rules": [_rule(code, title) for code, title in CODES.items()],
            }
        },
        "invocations": [{"executionSuccessful": True}],
        "originalUriBaseIds": {"%SRCROOT%": {"uri": Path.cwd().as_uri() + "/"}},
        "columnKind": "unicodeCodePoints",
        "results": results,
    }
    return json.dumps({"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}, indent=2)
