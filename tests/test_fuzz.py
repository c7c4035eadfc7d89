"""Hypothesis: arbitrary text and mutated examples never crash the front end."""

import re

from conftest import EXAMPLES
from helpers import assert_valid_spans
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ruledsl.checker import check
from ruledsl.formatter import format_source
from ruledsl.parser import ParseError, parse
from ruledsl.source import Source

TOKENS = re.compile(r'"[^"\n]*"|#[0-9a-fA-F]{6}|[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|<=|>=|\S|\n')
EXAMPLE_TOKENS = [TOKENS.findall(p.read_text()) for p in EXAMPLES]


def run_front_end(text: str) -> None:
    source = Source(text, "fuzz.rule")
    result = check(source)  # must not raise
    assert_valid_spans(result)
    if result.program is not None:
        # A program that parses also formats, and the formatted text parses to the same tree.
        formatted = format_source(source)
        assert parse(Source(formatted)) == result.program
    else:
        assert len(result.errors) == 1 and result.errors[0].code.startswith("E1")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_random_text(text):
    run_front_end(text)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet='abcgorlnt ()[],:=<>+-*/|&#."0123456789\n', max_size=120))
def test_random_text_in_the_language_alphabet(text):
    run_front_end(text)


@st.composite
def mutated_example(draw):
    tokens = list(draw(st.sampled_from(EXAMPLE_TOKENS)))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(tokens) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap"]))
        if op == "delete":
            del tokens[i]
        elif op == "duplicate":
            tokens.insert(i, tokens[i])
        else:
            j = draw(st.integers(0, len(tokens) - 1))
            tokens[i], tokens[j] = tokens[j], tokens[i]
    return " ".join(t if t != "\n" else "\n" for t in tokens)


@settings(max_examples=300, deadline=None)
@given(mutated_example())
def test_mutated_examples(text):
    run_front_end(text)


def test_parse_error_is_a_diagnostic_not_a_crash():
    try:
        parse(Source("goal", "x.rule"))
    except ParseError as error:
        assert error.diagnostic.code == "E103"
    else:
        raise AssertionError("expected a ParseError")
