"""Hypothesis: the front end (parse, check, fmt) never raises anything but its documented errors.

Inputs: arbitrary text, programs derived from the grammar, well-typed programs built from the
signature table, mutated examples and degenerate shapes (benchmarks/fuzz_inputs.py, shared with
benchmarks/fuzz.py, which runs 100,000 of them). Properties: `check` returns (never raises) with
valid spans; a program that parses formats, the formatted text parses to the same tree and is
a fixed point of `fmt`; a syntax error is exactly one E1xx diagnostic.
"""

import torch
from conftest import ROOT
from helpers import assert_valid_spans
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.fuzz_inputs import degenerate_program, grammar_program, mutated_example, typed_program
from ruledsl.checker import check
from ruledsl.formatter import format_source
from ruledsl.parser import ParseError, parse
from ruledsl.source import Source

SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}


def run_front_end(text: str) -> None:
    source = Source(text, "fuzz.rule")
    result = check(source)  # must not raise
    assert_valid_spans(result)
    if result.program is not None:
        # A program that parses also formats; the formatted text parses to the same tree and
        # formats to itself.
        formatted = format_source(source)
        assert parse(Source(formatted)) == result.program, formatted
        assert format_source(Source(formatted)) == formatted
    else:
        assert len(result.errors) == 1 and result.errors[0].code.startswith("E1")
        try:
            format_source(source)
        except ParseError as error:
            assert error.diagnostic == result.errors[0]
        else:
            raise AssertionError("fmt accepted what check could not parse")


def drawing(data):
    """The generators' `draw(n)`, backed by hypothesis (so failing inputs shrink)."""
    return lambda n: data.draw(st.integers(0, n - 1))


@settings(max_examples=150, **SETTINGS)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_random_text(text):
    run_front_end(text)


@settings(max_examples=150, **SETTINGS)
@given(st.text(alphabet='abcgorlnt ()[],:=<>+-*/|&#."0123456789\n', max_size=120))
def test_random_text_in_the_language_alphabet(text):
    run_front_end(text)


@settings(max_examples=40, **SETTINGS)
@given(st.data())
def test_programs_derived_from_the_grammar(data):
    run_front_end(grammar_program(drawing(data)))


@settings(max_examples=40, **SETTINGS)
@given(st.data())
def test_well_typed_programs_check_clean_and_format(data):
    text = typed_program(drawing(data))
    result = check(Source(text, "typed.rule"))
    assert result.ok, (text, [d.message for d in result.errors])
    run_front_end(text)


@settings(max_examples=120, **SETTINGS)
@given(st.data())
def test_mutated_examples(data):
    run_front_end(mutated_example(drawing(data)))


@settings(max_examples=10, **SETTINGS)
@given(st.data())
def test_degenerate_shapes(data):
    run_front_end(degenerate_program(drawing(data)))


def test_parse_error_is_a_diagnostic_not_a_crash():
    try:
        parse(Source("goal", "x.rule"))
    except ParseError as error:
        assert error.diagnostic.code == "E103"
    else:
        raise AssertionError("expected a ParseError")


def test_degenerate_videos_give_finite_losses_and_gradients():
    """A bounded slice of benchmarks/fuzz_videos.py (which runs 10,000): every kind, every example."""
    import ruledsl
    from benchmarks.fuzz_videos import KINDS, check, degenerate_video

    programs = [ruledsl.load(path).compile() for path in sorted((ROOT / "examples").glob("*.rule"))]
    rng = torch.Generator().manual_seed(1)
    outcomes = [check(programs[i % len(programs)], degenerate_video(kind, rng)) for i, kind in enumerate(KINDS * 2)]
    assert all(outcome in ("ok", "refused") for outcome in outcomes), outcomes
