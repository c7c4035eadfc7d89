"""Every diagnostic code: a program that triggers it, and the span it must point at."""

import pytest
from helpers import assert_valid_spans, checked

from ruledsl.diagnostics import CODES

HEAD = "object agent = color(#ff0000)\nregion goal = color(#00ff00) at start\n"
REACH = "goal reach: at end inside(agent, goal)\n"

# code -> (program, line, column, end_column or None, words in the message)
CASES = {
    "E101": (HEAD + "reach: at end inside(agent, goal)\n", 3, 1, 6, "unexpected name `reach`"),
    "E102": (HEAD + "goal reach: at end inside(agent, goal) ; \n", 3, 40, 41, "unexpected character ';'"),
    "E103": (HEAD + "goal reach: at end inside(agent,\n", 3, 33, None, "unexpected end of input"),
    # the 100th `not` sits at nesting level 101 (`at end` is level 1)
    "E104": (
        HEAD + "goal reach: at end " + "not " * 120 + "inside(agent, goal)\n",
        3,
        20 + 99 * 4,
        21 + 99 * 4,
        "deeper than 100",
    ),
    "E201": (HEAD + "goal reach: at end inside(agnt, goal)\n", 3, 27, 31, "undefined name `agnt`"),
    "E202": (HEAD + "region goal = box(0, 0, 1, 1)\n" + REACH, 3, 8, 12, "`goal` is defined twice"),
    "E203": (
        HEAD + "objects all = [agent]\n" + REACH + "process p: forall agent in all: persists(agent)\n",
        5,
        19,
        24,
        "`agent` already names an object",
    ),
    "E204": (HEAD + "goal reach: at end insde(agent, goal)\n", 3, 20, 25, "unknown function `insde`"),
    "E205": (
        "object agent = color(#ff0000)\ngoal reach: at end inside(agent, goal)\nregion goal = color(#00ff00) at start\n",
        2,
        34,
        38,
        "used before its definition",
    ),
    "E301": (
        HEAD + "goal reach: at end inside(agent, 0.5)\n",
        3,
        34,
        37,
        "argument `b` of `inside` must be a region, got a number",
    ),
    "E302": (HEAD + REACH + "process p: always persists()\n", 4, 19, 29, "missing argument `o`"),
    "E303": (HEAD + "goal reach: at end inside(agent, goal, fraq=0.5)\n", 3, 40, 48, "no parameter `fraq`"),
    "E304": (HEAD + REACH + "process p: always speed(agent) + goal <= 1\n", 4, 19, 38, "`+` needs two numbers"),
    "E305": (HEAD + REACH + "process p: speed(agent)\n", 4, 12, 24, "not a formula"),
    "E306": (HEAD + REACH + "process p: during [0, 0.5] persists(agent)\n", 4, 19, 27, "mixes a frame and a fraction"),
    "E307": (HEAD + REACH + "process p: during [5, 2] persists(agent)\n", 4, 19, 25, "is empty"),
    "E308": (
        HEAD + "object key = color(#ffff00) at start\n" + REACH + "process p: always persists(key)\n",
        3,
        32,
        37,
        "cannot be taken `at start`",
    ),
    "E309": (HEAD + "goal reach: at end inside(agent, goal, frac=1.5)\n", 3, 45, 48, "outside [0, 1]"),
    "E310": (
        HEAD + 'image t = file("../x.png")\n' + REACH + "process p: at end matches(t, goal)\n",
        3,
        16,
        26,
        "leads outside the program's folder",
    ),
    "W101": (HEAD + "region unused = box(0, 0, 1, 1)\n" + REACH, 3, 8, 14, "`unused` is never used"),
    "W102": (HEAD + "process p: always persists(agent) and inside(agent, goal)\n", 1, 1, None, "no `goal` rule"),
    "W103": (
        "object red = color(#ff0000)\nregion goal = color(#00ff00) at start\ngoal reach: at end inside(red, goal)\n",
        1,
        8,
        11,
        "shadows the built-in colour",
    ),
}


def test_every_code_has_a_case():
    assert set(CASES) == set(CODES)


@pytest.mark.parametrize("code", sorted(CASES))
def test_code_and_span(code):
    text, line, column, end_column, words = CASES[code]
    result = checked(text)
    assert_valid_spans(result)
    matching = [d for d in result.diagnostics if d.code == code]
    assert matching, f"{code} not reported; got {[(d.code, d.message) for d in result.diagnostics]}"
    d = matching[0]
    assert (d.span.line, d.span.column) == (line, column), (d.span, d.message)
    if end_column is not None:
        assert d.span.end_column == end_column, (d.span, d.message)
    assert words in d.message
    if code.startswith("W"):
        assert result.ok, "warnings alone must not make a program fail"
    else:
        assert not result.ok


def test_all_name_and_type_errors_in_one_run():
    text = HEAD + (
        "goal reach: at end inside(agnt, goal)\n"
        "process a: always insde(agent, goal)\n"
        "process b: always speed(goal) <= 1\n"
        "process c: during [3, 1] persists(agent)\n"
    )
    found = sorted(d.code for d in checked(text).errors)
    assert found == ["E201", "E204", "E301", "E307"]


def test_hints_suggest_close_names():
    d = next(d for d in checked(HEAD + "goal reach: at end inside(agnt, goal)\n").errors)
    assert d.hint == "did you mean `agent`?"
    d = next(d for d in checked(HEAD + "goal reach: at end insid(agent, goal)\n").errors)
    assert d.hint == "did you mean `inside`?"


def test_syntax_errors_use_words_not_terminal_names():
    d = checked(HEAD + "reach: at end inside(agent, goal)\n").errors[0]
    assert "goal reach:" in d.hint and "NAME" not in d.message
    d = checked(HEAD + "goal reach: inside(agent, goal) and always persists(agent)\n").errors[0]
    assert d.message.startswith("`always` needs parentheses") and "(always" in d.hint
    d = checked(HEAD + "goal reach: area(agent) == 0.1\n").errors[0]
    assert "<=" in d.hint


def test_fraction_out_of_range_and_units():
    assert [d.code for d in checked(HEAD + REACH + "process p: at 1.5 persists(agent)\n").errors] == ["E306"]
    assert checked(HEAD + REACH + "process p: during [0.25, end] persists(agent)\n").ok
    assert checked(HEAD + REACH + "process p: during [start, 3] persists(agent)\n").ok
    assert [d.code for d in checked(HEAD + REACH + "process p: during [end, 3] persists(agent)\n").errors] == ["E307"]


def test_params_fold_and_type():
    ok = checked("param step = 1 / 7\n" + HEAD + REACH + "process p: always grid_step(agent, step)\n")
    assert ok.ok and abs(ok.constants["step"] - 1 / 7) < 1e-12
    bad = checked("param r = color(#ff0000)\n" + HEAD + REACH)
    assert [d.code for d in bad.errors] == ["E308"]
    zero = checked(HEAD + REACH + "process p: always speed(agent) <= 1 / 0\n")
    assert [d.code for d in zero.errors] == ["E309"]


def test_rule_weight_must_be_positive_constant():
    assert [d.code for d in checked(HEAD + "goal reach: at end inside(agent, goal) weight 0\n").errors] == ["E309"]
    assert [d.code for d in checked(HEAD + "goal reach: at end inside(agent, goal) weight area(agent)\n").errors] == [
        "E304"
    ]


def test_types_are_recorded_for_the_compiler():
    result = checked(HEAD + "region floor = not goal\n" + REACH + "process p: always inside(agent, floor)\n")
    assert result.ok
    floor = result.symbols["floor"]
    assert floor.static and result.type_of(floor.decl.value).value == "region"
    assert not result.symbols["agent"].static
