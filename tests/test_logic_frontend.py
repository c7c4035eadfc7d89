"""Issue 15 logic constructs: parsing, checking and formatting (lowering is not implemented yet)."""

from __future__ import annotations

import pytest

from ruledsl.checker import check
from ruledsl.formatter import format_source
from ruledsl.parser import parse
from ruledsl.source import Source

HEAD = """object a = color(#ff0000)
object b = color(#00ff00)
objects C = [a, b]
def moving(o) = speed(o) > 0.01
def near(p: object, r: region) = distance(p, r) <= 0.1
"""

GOOD = (
    HEAD
    + """goal g: forall u, v in C where near(u, v): not (moving(u) and moving(v))
process h: at most 1 of t in C: moving(t)
process i: exactly 2 of t in C where moving(t): near(t, b)
process j: exactly 3 times (exists t in C: moving(t))
process l: sorted(C, by=area, along=x) and distinct(C, by=x, tol=0.1)
"""
)


def codes(text: str) -> list[tuple[str, int, int]]:
    return [(d.code, d.span.line, d.span.column) for d in check(Source(text)).diagnostics]


def test_new_constructs_check_and_round_trip():
    assert check(Source(GOOD)).ok, codes(GOOD)
    again = format_source(Source(GOOD))
    assert parse(Source(again)) == parse(Source(GOOD))
    assert format_source(Source(again)) == again


@pytest.mark.parametrize(
    ("rule", "code", "column"),
    [
        ("goal g: moving(a) and eventually (moving(b))", "E101", 23),
        ("goal g: moving(a, b)", "E302", 19),
        ("goal g: moving(C)", "E301", 16),
        ("goal g: at least 1.5 of t in C: moving(t)", "E309", 18),
        ("goal g: at most 2 times area(a)", "E304", 25),
        ("goal g: sorted(C, by=moving, along=x)", "E301", 22),
        ("goal g: forall t, t in C: moving(t)", "E203", 19),
    ],
)
def test_errors_are_located(rule, code, column):
    line = HEAD.count("\n") + 1
    assert (code, line, column) in codes(HEAD + rule + "\n")


def test_def_body_checked_at_definition_and_not_recursive():
    text = "object a = color(#ff0000)\ndef bad(o) = speed(o) and true\ndef self_(o) = self_(o)\ngoal g: bad(a)\n"
    found = codes(text)
    assert ("E304", 2, 14) in found
    assert any(code == "E205" and line == 3 for code, line, _ in found)


def test_unused_def_warns():
    assert ("W101", 5, 5) in codes(HEAD + "goal g: moving(a)\n")
