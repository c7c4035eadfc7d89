"""Named definitions, several-variable quantifiers with `where`, counting members and events, sorted, distinct.

Oracle style: the exact margins against brute-force loops, smooth -> exact as the temperature
goes to 0, a gradient check, and the dual forms (`not at least k` = `at most k - 1`).
"""

from __future__ import annotations

import itertools

import pytest
import torch

import ruledsl
from ruledsl.compiler import ir
from ruledsl.compiler.semantics import BIG, Exact, Smooth
from ruledsl.compiler.temporal import events_trace
from ruledsl.formatter import format_source
from ruledsl.parser import parse
from ruledsl.source import Source
from tests.helpers import checked, codes
from tests.scenes import Scene

# ---- the order statistic and event counting, against brute force -------------------------------


@pytest.mark.parametrize("k", [1, 2, 3, 5, 7])
def test_kth_largest_exact_is_the_sorted_entry(k):
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(k))
    got = Exact().kth_largest(x, k)
    for row, value in zip(x, got):
        ordered = sorted(row.tolist(), reverse=True) + [-BIG] * k
        assert value.item() == pytest.approx(ordered[k - 1])


@pytest.mark.parametrize("k", [1, 2, 4])
def test_smooth_kth_largest_tends_to_exact(k):
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    exact = Exact().kth_largest(x, k)
    errors = [(Smooth(tau).kth_largest(x, k) - exact).abs().max().item() for tau in (0.1, 0.01, 0.001)]
    assert errors[0] >= errors[1] >= errors[2] and errors[2] < 1e-2


def rises(signs: list[bool]) -> int:
    return sum(1 for s, now in enumerate(signs) if now and (s == 0 or not signs[s - 1]))


@pytest.mark.parametrize("bound", ["least", "most"])
@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_events_exact_margin_is_the_order_statistic_of_rise_margins(bound, k):
    if bound == "least" and k == 0:
        pytest.skip("`at least 0 times` is folded to `true` by the lowering, never evaluated")
    phi = torch.randn(5, 9, generator=torch.Generator().manual_seed(7 * k + len(bound)))
    got = events_trace(phi, bound, k, Exact())
    for b in range(phi.shape[0]):
        for t in range(phi.shape[1]):
            window = phi[b, t:].tolist()
            margins = [window[0]] + [min(window[s], -window[s - 1]) for s in range(1, len(window))]
            ordered = sorted(margins, reverse=True) + [-BIG] * (k + 2)
            want = ordered[k - 1] if bound == "least" else -ordered[k]
            assert got[b, t].item() == pytest.approx(want)
            count = rises([v > 0 for v in window])
            assert (got[b, t].item() > 0) == (count >= k if bound == "least" else count <= k)


def test_smooth_events_tend_to_exact_and_have_gradients():
    phi = torch.randn(2, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    exact = events_trace(phi, "least", 2, Exact())
    errors = [(events_trace(phi, "least", 2, Smooth(tau)) - exact).abs().max().item() for tau in (0.1, 0.001)]
    assert errors[1] < errors[0] and errors[1] < 1e-2
    x = phi.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: events_trace(p, "most", 1, Smooth(0.2)), (x,))


# ---- programs on synthetic videos -------------------------------------------------------------

BOXES = """
object a = color(#ff0000)
object b = color(#0000ff)
object c = color(#00ff00)
objects all = [a, b, c]
"""


def robustness(text: str, video: torch.Tensor, semantics: str = "exact") -> dict[str, float]:
    program = ruledsl.loads(text).compile()
    return {name: value.item() for name, value in program.robustness(video, semantics).items()}


def three_boxes(cols=(1, 5, 6), rows=(1, 1, 1), frames: int = 4) -> torch.Tensor:
    scene = Scene(frames=frames, cells=8, px=8)
    for color, row, col in zip(("red", "blue", "green"), rows, cols):
        scene.sprite(color, [(row, col)] * frames)
    return scene.render()


@pytest.mark.parametrize("k", [0, 1, 2, 3, 4])
def test_counting_members_matches_brute_force(k):
    video = three_boxes(cols=(1, 5, 6))
    text = BOXES + "\n".join(
        [
            f"goal least: at least {k} of o in all: x(o) > 0.5",
            f"goal most: at most {k} of o in all: x(o) > 0.5",
            f"goal exact: exactly {k} of o in all: x(o) > 0.5",
            f"goal not_least: not (at least {k} of o in all: x(o) > 0.5)",
            f"goal dual: at most {k - 1} of o in all: x(o) > 0.5" if k > 0 else "goal dual: false",
        ]
    )
    got = robustness(text, video)
    xs = [robustness(BOXES + f"goal m: x({n}) - 0.5 >= 0", video)["m"] for n in "abc"]
    ordered = sorted(xs, reverse=True) + [-BIG] * 5
    right = sum(v > 0 for v in xs)
    assert (got["least"] > 0) == (right >= k) and (got["most"] > 0) == (right <= k)
    assert (got["exact"] > 0) == (right == k)
    if 0 < k <= 3:
        assert got["least"] == pytest.approx(ordered[k - 1], abs=1e-5)
    if k < 3:
        assert got["most"] == pytest.approx(-ordered[k], abs=1e-5)
    assert got["exact"] == pytest.approx(min(got["least"], got["most"]), abs=1e-5)
    assert got["not_least"] == pytest.approx(got["dual"], abs=1e-5)


def test_pairs_with_where_match_brute_force():
    video = three_boxes(cols=(1, 3, 6), rows=(1, 4, 2))
    rule = "goal g: forall p, q in all where x(p) < x(q): y(p) <= y(q)"
    got = robustness(BOXES + rule, video)["g"]
    pos = {
        n: (
            robustness(BOXES + f"goal m: x({n}) >= 0", video)["m"],
            robustness(BOXES + f"goal m: y({n}) >= 0", video)["m"],
        )
        for n in "abc"
    }
    want = min(
        max(pos[p][0] - pos[q][0], pos[q][1] - pos[p][1])  # not (x(p) < x(q)) or y(p) <= y(q)
        for p, q in itertools.permutations("abc", 2)
    )
    assert got == pytest.approx(want, abs=1e-5)
    exists = robustness(BOXES + "goal g: exists p, q in all where x(p) < x(q): y(p) > y(q)", video)["g"]
    assert exists == pytest.approx(-want, abs=1e-5)  # the dual


def test_sorted_and_distinct():
    def sized(sides):
        scene = Scene(frames=2, cells=8, px=8)
        for color, side, col in zip(("red", "blue", "green"), sides, (1, 3, 5)):
            scene.sprite(color, [(2, col)] * 2, sizes={0: side, 1: side})
        return scene.render()

    text = BOXES + "goal up: sorted(all, by=area, along=x)\ngoal down: sorted(all, by=area, along=x, descending=true)\n"
    text += "goal apart: distinct(all, by=x, tol=0.1)\ngoal too_far: distinct(all, by=x, tol=0.4)\n"
    increasing = robustness(text, sized((4, 6, 8)))
    assert increasing["up"] > 0 and increasing["down"] < 0
    assert increasing["apart"] > 0 and increasing["too_far"] < 0
    shuffled = robustness(text, sized((6, 4, 8)))
    assert shuffled["up"] < 0 and shuffled["down"] < 0


def test_def_inlines_to_the_same_robustness():
    video = Scene(frames=6).sprite("red", [(1, c) for c in (0, 1, 2, 2, 3, 5)]).render()
    with_defs = (
        "object a = color(#ff0000)\nregion right = box(0.5, 0, 1, 1)\n"
        "def moving(o) = speed(o) > 0.05\ndef far(o: object, r: region) = not inside(o, r)\n"
        "def step = speed(a)\n"
        "goal g: always (moving(a) implies far(a, right)) and (eventually step < 0.01)\n"
    )
    inlined = (
        "object a = color(#ff0000)\nregion right = box(0.5, 0, 1, 1)\n"
        "goal g: always (speed(a) > 0.05 implies not inside(a, right)) and (eventually speed(a) < 0.01)\n"
    )
    for semantics in ("exact", "smooth"):
        assert robustness(with_defs, video, semantics)["g"] == pytest.approx(robustness(inlined, video, semantics)["g"])


def test_counting_events():
    path = [(1, 1), (1, 2), (1, 2), (1, 3), (1, 3), (1, 3), (1, 4), (1, 4)]  # moves start at 0, 2 (after a hold), 5
    video = Scene(frames=8).sprite("red", path).render()
    base = "object a = color(#ff0000)\ndef moving(o) = speed(o) > 0.05\n"
    got = robustness(
        base
        + "goal three: exactly 3 times moving(a)\ngoal two: at most 2 times moving(a)\ngoal one: at least 1 times moving(a)\n",
        video,
    )
    assert got["three"] > 0 and got["two"] < 0 and got["one"] > 0


def test_guards_apply_to_counting_and_pairs(monkeypatch):
    """A member whose guard fails is neither counted nor constrained (the components helper's contract)."""
    video = three_boxes(cols=(4, 5, 7))
    absent = ir.Truth(False)
    real = ir.member_guard

    def guard(member):  # pretend the third member (green) is an empty slot
        return (
            absent
            if isinstance(member, ir.Call) and member.args and "0, 255, 0" in repr(member.args[0])
            else real(member)
        )

    monkeypatch.setattr(ir, "member_guard", guard)
    got = robustness(
        BOXES + "goal two: exactly 2 of o in all: x(o) > 0.5\ngoal pairs: forall p, q in all: x(p) < 0.8\n", video
    )
    assert got["two"] > 0 and got["pairs"] > 0  # green (x > 0.8) is not there


# ---- the front end ----------------------------------------------------------------------------


def test_def_type_errors():
    base = "object a = color(#ff0000)\ndef near(o: object, r: region) = distance(o, r) <= 0.1\n"
    assert "E301" in codes(base + "goal g: near(a, 3)")
    assert "E302" in codes(base + "goal g: near(a)")
    assert "E308" in codes("def f(o: colour) = 1\ngoal g: f(1) > 0")
    assert "E304" in codes("object a = color(#ff0000)\ndef bad(o) = area(o) + inside(o, o)\ngoal g: bad(a) > 0")
    assert codes(base + "goal g: near(a, a)") == []


def test_count_must_be_a_non_negative_integer():
    assert "E309" in codes(BOXES + "goal g: at least 1.5 of o in all: x(o) > 0")
    assert "E309" in codes(BOXES + "goal g: at most -1 times x(a) > 0")


def test_prefix_after_operator_says_how_to_parenthesise():
    result = checked("object a = color(#ff0000)\ngoal g: persists(a) and eventually (persists(a))")
    (error,) = result.errors
    assert error.code == "E101" and "(eventually" in (error.hint or "")
    assert (error.span.line, error.span.column) == (2, 25)


def test_new_constructs_format_and_reparse_to_the_same_tree():
    text = BOXES + (
        "def moving(o) = speed(o) > 0.01\ndef gap(p, q) = x(q) - x(p)\n"
        "goal g: at most 1 of t in all where x(t) > 0.2: moving(t)\n"
        "process p: exactly 2 times (exists t in all: moving(t))\n"
        "process q: forall s, t in all where gap(s, t) > 0: not (moving(s) and moving(t))\n"
        "process r: at end sorted(all, by=area, along=x) and distinct(all, by=y, tol=0.01)\n"
    )
    once = format_source(Source(text, "t.rule"))
    assert parse(Source(once, "t.rule")) == parse(Source(text, "t.rule"))
    assert format_source(Source(once, "t.rule")) == once
    assert checked(once).ok
