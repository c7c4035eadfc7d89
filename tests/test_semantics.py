"""Temporal operators against a brute-force oracle (plain loops), exact and smooth, every window kind."""

import math

import numpy as np
import pytest
import torch

from ruledsl.compiler import ir
from ruledsl.compiler.semantics import Exact, Smooth
from ruledsl.compiler.temporal import TemporalEvaluation

T, B = 7, 3
P, Q, R = (ir.Atom(name, (), ()) for name in ("p", "q", "r"))

# (label, low, high) for `during`; None = no window (the whole video)
WINDOWS = [
    ("none", None, None),
    ("[2, 5]", ("frame", 2), ("frame", 5)),
    ("to end [3, end]", ("frame", 3), ("end", 0)),
    ("from start [start, 4]", ("start", 0), ("frame", 4)),
    ("fractions [0.25, 0.75]", ("fraction", 0.25), ("fraction", 0.75)),
]

OPERATORS = {
    "atom": P,
    "not": ir.negate(P),
    "and": ir.And((P, Q)),
    "or": ir.Or((P, Q, R)),
    "always": ir.Always(P),
    "eventually": ir.Eventually(P),
    "next": ir.Next(P),
    "until": ir.Until(P, Q),
    "release": ir.Release(P, Q),
    "at end": ir.At(("end", 0), P),
    "at 2": ir.At(("frame", 2), P),
    "at 0.5": ir.At(("fraction", 0.5), P),
    "always eventually": ir.Always(ir.Eventually(ir.And((P, ir.Next(Q))))),
    "not always": ir.negate(ir.Always(ir.Or((P, Q)))),
    "not until": ir.negate(ir.Until(P, ir.Eventually(Q))),
    "implies next": ir.Always(ir.Or((ir.negate(P), ir.Next(P)))),
}


def soft_min(values, tau):
    values = np.asarray(values, dtype=np.float64)
    if tau is None:
        return values.min()
    m = (-values / tau).max()
    return -tau * (m + math.log(np.exp(-values / tau - m).sum()))


def soft_max(values, tau):
    return -soft_min([-v for v in values], tau)


def resolve(time, lo, hi):
    kind, value = time
    return {"start": lo, "end": hi}.get(kind, lo + round(value * (hi - lo)) if kind == "fraction" else lo + int(value))


def oracle(f, t, lo, hi, traces, tau):
    """Robustness of f at frame t of window [lo, hi], by definition, with loops."""
    ev = lambda g, s, a=lo, b=hi: oracle(g, s, a, b, traces, tau)  # noqa: E731
    if isinstance(f, ir.Atom):
        return -traces[f.name][t] if f.negated else traces[f.name][t]
    if isinstance(f, ir.And):
        return soft_min([ev(c, t) for c in f.children], tau)
    if isinstance(f, ir.Or):
        return soft_max([ev(c, t) for c in f.children], tau)
    if isinstance(f, ir.Always):
        return soft_min([ev(f.body, s) for s in range(t, hi + 1)], tau)
    if isinstance(f, ir.Eventually):
        return soft_max([ev(f.body, s) for s in range(t, hi + 1)], tau)
    if isinstance(f, ir.Next):
        return ev(f.body, min(t + 1, hi))
    if isinstance(f, ir.Until):
        return soft_max(
            [soft_min([ev(f.right, s)] + [ev(f.left, r) for r in range(t, s)], tau) for s in range(t, hi + 1)], tau
        )
    if isinstance(f, ir.Release):
        return soft_min(
            [soft_max([ev(f.right, s)] + [ev(f.left, r) for r in range(t, s)], tau) for s in range(t, hi + 1)], tau
        )
    if isinstance(f, ir.At):
        return ev(f.body, resolve(f.time, lo, hi))
    if isinstance(f, ir.During):
        a, b = resolve(f.low, lo, hi), min(resolve(f.high, lo, hi), hi)
        return oracle(f.body, a, a, b, traces, tau)
    raise TypeError(f)


def temporal(traces):
    """The compiler's temporal evaluation with the atoms' traces given ({name: [B, T]})."""
    batch, frames = next(iter(traces.values())).shape
    like = next(iter(traces.values()))
    return TemporalEvaluation(lambda atom: traces[atom.name], like, batch, frames, "test")


def evaluate(formula, traces, sem):
    """The compiler's trace of `formula` over the whole video, with atom traces injected."""
    return temporal(traces).trace(formula, 0, T - 1, sem)


@pytest.mark.parametrize("tau", [None, 0.5, 0.1, 0.02])
@pytest.mark.parametrize("window", WINDOWS, ids=[w[0] for w in WINDOWS])
@pytest.mark.parametrize("op", OPERATORS)
def test_operator_matches_oracle(op, window, tau):
    label, low, high = window
    formula = OPERATORS[op] if low is None else ir.During(low, high, OPERATORS[op])
    generator = torch.Generator().manual_seed(hash((op, label)) % 2**31)
    traces = {n: torch.randn(B, T, generator=generator, dtype=torch.float64) for n in "pqr"}
    got = evaluate(formula, traces, Exact() if tau is None else Smooth(tau))
    for b in range(B):
        numpy_traces = {n: v[b].numpy() for n, v in traces.items()}
        want = [oracle(formula, t, 0, T - 1, numpy_traces, tau) for t in range(T)]
        np.testing.assert_allclose(got[b].numpy(), want, rtol=1e-6, atol=1e-6, err_msg=f"{op} {label} τ={tau}")


@pytest.mark.parametrize("op", ["and", "always", "eventually", "until", "always eventually", "not until"])
def test_smooth_converges_to_exact(op):
    generator = torch.Generator().manual_seed(7)
    traces = {n: torch.randn(B, T, generator=generator, dtype=torch.float64) for n in "pqr"}
    exact = evaluate(OPERATORS[op], traces, Exact())
    errors = [
        float((evaluate(OPERATORS[op], traces, Smooth(tau)) - exact).abs().max()) for tau in (1.0, 0.1, 0.01, 0.001)
    ]
    assert all(a >= b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.02


def test_smooth_bounds_exact_from_the_right_side():
    traces = {n: torch.randn(B, T, generator=torch.Generator().manual_seed(3), dtype=torch.float64) for n in "pqr"}
    assert (evaluate(ir.Always(P), traces, Smooth(0.2)) <= evaluate(ir.Always(P), traces, Exact()) + 1e-12).all()
    assert (
        evaluate(ir.Eventually(P), traces, Smooth(0.2)) >= evaluate(ir.Eventually(P), traces, Exact()) - 1e-12
    ).all()


@pytest.mark.parametrize("op", ["and", "always", "eventually", "until", "release", "always eventually", "not until"])
@pytest.mark.parametrize("tau", [0.5, 0.1])
def test_smooth_gradients_gradcheck(op, tau):
    generator = torch.Generator().manual_seed(11)
    leaves = [torch.randn(1, 5, generator=generator, dtype=torch.float64, requires_grad=True) for _ in "pqr"]

    def f(p, q, r):
        return temporal(dict(zip("pqr", (p, q, r)))).trace(OPERATORS[op], 0, 4, Smooth(tau))

    assert torch.autograd.gradcheck(f, leaves)


def test_negation_normal_form_pushes_to_atoms():
    formula = ir.negate(ir.Always(ir.And((P, ir.Until(Q, ir.Next(R))))))
    assert formula == ir.Eventually(ir.Or((ir.negate(P), ir.Release(ir.negate(Q), ir.Next(ir.negate(R))))))
    assert ir.negate(ir.negate(formula)) == formula
