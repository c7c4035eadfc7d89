"""`ruledsl fmt`: idempotent, keeps the AST and the comments."""

import pytest
from conftest import EXAMPLES

from ruledsl.formatter import format_source
from ruledsl.parser import parse
from ruledsl.source import Source


def fmt(text: str) -> str:
    return format_source(Source(text, "t.rule"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_idempotent_and_same_ast(path):
    text = path.read_text()
    once = fmt(text)
    assert fmt(once) == once
    assert parse(Source(once)) == parse(Source(text))


def test_examples_are_already_canonical():
    for path in EXAMPLES:
        assert fmt(path.read_text()) == path.read_text(), path


def test_layout_and_minimal_parentheses():
    messy = (
        "object   a=color( #FF0000 ,tol = 10)  region g = color(#00ff00)at start\n"
        "goal r : at end ((inside(a,g)))   weight 2\n"
        "process p: always (persists(a) and (single(a) or a_moves(a)))\n"
    ).replace("a_moves(a)", "speed(a) <= 0.1")
    assert fmt(messy) == (
        "object a = color(#ff0000, tol=10)\n"
        "region g = color(#00ff00) at start\n"
        "goal r: at end inside(a, g) weight 2\n"
        "process p: always persists(a) and (single(a) or speed(a) <= 0.1)\n"
    )


@pytest.mark.parametrize(
    "formula",
    [
        "(always persists(a)) and single(a)",
        "persists(a) and (always single(a))",
        "(persists(a) implies single(a)) implies persists(a)",
        "persists(a) implies single(a) implies persists(a)",
        "not (persists(a) and single(a))",
        "(not persists(a)) until single(a)",
        "persists(a) or (single(a) or persists(a))",
        "speed(a) <= 1 - (0.5 - 0.25)",
        "speed(a) <= -(-1) * 2 / (3 * 4)",
        "during [0.5, end] (eventually single(a)) and persists(a)",
        "inside(a, not (g | g) & g - (g - g))",
    ],
)
def test_parentheses_keep_the_tree(formula):
    text = f"object a = color(#ff0000)\nregion g = color(#00ff00) at start\ngoal r: {formula}\n"
    once = fmt(text)
    assert parse(Source(once)) == parse(Source(text))
    assert fmt(once) == once


def test_comments_survive():
    text = (
        "# header comment\n"
        "\n\n"
        "object a = color(#ff0000)   # trailing\n"
        "goal r: at end\n"
        "  # inside a statement\n"
        "  persists(a)\n"
        "# final comment\n"
    )
    out = fmt(text)
    assert out == (
        "# header comment\n"
        "\n"
        "object a = color(#ff0000)  # trailing\n"
        "# inside a statement\n"
        "goal r: at end persists(a)\n"
        "# final comment\n"
    )
    assert fmt(out) == out


def test_colour_and_comment_disambiguation():
    text = "#bad comment that starts with hex letters\nobject a = color(#abcdef) # #ff0000 in a comment\ngoal r: at end persists(a)\n"
    out = fmt(text)
    assert "#bad comment" in out and "color(#abcdef)" in out and "# #ff0000 in a comment" in out
