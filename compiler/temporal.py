"""Temporal evaluation: formulas over windows of frames, and which frames break a rule.

A formula is evaluated over a window [lo, hi] of frames and returns its robustness at
every frame of the window, a trace [B, hi - lo + 1]; a rule's value is its trace at frame 0
of the whole video. Atoms come from outside (the spatial evaluation's margins, or any
traces in tests); everything here is logic over traces, the same for every pixel type.
Every min and max goes through a `Semantics` (exact or smooth).

Traces and blame are computed inputs-first with an explicit stack (`ruledsl.dag`): a
formula nested hundreds deep needs no deeper Python recursion than a shallow one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ruledsl.compiler import ir
from ruledsl.compiler.asks import AskEvaluation
from ruledsl.compiler.semantics import BIG, Exact, Semantics
from ruledsl.dag import evaluate


class WindowError(ValueError):
    """A window or time point lies outside the video (frame counts are known only at call time)."""


def frame_index(time: tuple[str, float], lo: int, hi: int, where: str, clamp: bool = False) -> int:
    """The frame a time point names inside window [lo, hi]; past the end is an error unless `clamp`."""
    kind, value = time
    if kind == "start":
        return lo
    if kind == "end":
        return hi
    if kind == "fraction":
        return lo + int(round(value * (hi - lo)))
    frame = lo + int(value)
    if frame > hi:
        if clamp:
            return hi
        raise WindowError(
            f"{where}: frame {int(value)} is past the end of a window of {hi - lo + 1} frames "
            f"(frames {lo}..{hi}); use a fraction like 0.5 or `end` to work at any length"
        )
    return frame


class TemporalEvaluation:
    """One call's traces. `atoms(atom) -> [B, T]`: the margin of a positive atom at every frame."""

    def __init__(
        self,
        atoms: Callable[[ir.Formula], torch.Tensor],
        like: torch.Tensor,
        batch: int,
        frames: int,
        source_name: str,
        asks: AskEvaluation | None = None,
    ):
        self.atoms = atoms
        self.asks = asks  # margins of `ask` atoms (compiler/asks.py); None: the program has none
        self.like = like  # dtype and device of traces
        self.b, self.t = batch, frames
        self.source_name = source_name
        self.traces: dict = {}  # (formula, lo, hi, semantics name) -> [B, hi - lo + 1]
        self.blames: dict = {}  # (formula, lo, hi, t) -> [B, T]
        self._semantics: dict[str, Semantics] = {}

    def rule_value(self, rule: ir.Rule, sem: Semantics) -> torch.Tensor:
        return self.trace(rule.formula, 0, self.t - 1, sem)[:, 0]

    # ---- traces -------------------------------------------------------------------------------

    def trace(self, f: ir.Formula, lo: int, hi: int, sem: Semantics) -> torch.Tensor:
        self._semantics[sem.name] = sem
        return evaluate((f, lo, hi, sem.name), self.traces, self._trace_inputs, self._trace)

    def window(self, f: ir.During, lo: int, hi: int) -> tuple[int, int]:
        where = self.source_name + (f":{f.span.line}:{f.span.column}" if f.span else "")
        a = frame_index(f.low, lo, hi, where)
        b = frame_index(f.high, lo, hi, where, clamp=True)
        if a > b:
            raise WindowError(f"{where}: window is empty for a video of {self.t} frames (frames {a}..{b})")
        return a, b

    def _trace_inputs(self, key) -> list:
        f, lo, hi, name = key
        match f:
            case ir.And(children=children) | ir.Or(children=children) | ir.Count(children=children):
                return [(c, lo, hi, name) for c in children]
            case ir.Events(body=body):
                return [(body, lo, hi, name)]
            case ir.At(time=time, body=ir.Ask(per_frame=True) as body):  # one frame asked, not the window
                k = frame_index(time, lo, hi, f"{self.source_name}: `at`")
                return [(body, k, k, name)]
            case ir.Always(body=body) | ir.Eventually(body=body) | ir.Next(body=body) | ir.At(body=body):
                return [(body, lo, hi, name)]
            case ir.Until(left=left, right=right) | ir.Release(left=left, right=right):
                return [(left, lo, hi, name), (right, lo, hi, name)]
            case ir.During(body=body):
                a, b = self.window(f, lo, hi)
                return [(body, a, b, name)]
        return []

    def _trace(self, key) -> torch.Tensor:
        f, lo, hi, name = key
        sem = self._semantics[name]
        got = [self.traces[k] for k in self._trace_inputs(key)]
        n = hi - lo + 1
        match f:
            case ir.Ask():
                return self._ask(f, lo, hi)
            case ir.Truth() | ir.Atom() | ir.Compare():
                return self._atom(f)[:, lo : hi + 1]
            case ir.And():
                return sem.min(torch.stack(got, -1), -1)
            case ir.Or():
                return sem.max(torch.stack(got, -1), -1)
            case ir.Always():
                return sem.suffix_min(got[0])
            case ir.Eventually():
                return sem.suffix_max(got[0])
            case ir.Next():
                return torch.cat([got[0][:, 1:], got[0][:, -1:]], dim=1)  # the last frame repeats
            case ir.Until():
                return sem.until(got[0], got[1])
            case ir.Release():
                return sem.release(got[0], got[1])
            case ir.At(body=ir.Ask(per_frame=True)):
                return got[0].expand(self.b, n)
            case ir.At(time=time):
                k = frame_index(time, lo, hi, f"{self.source_name}: `at`")
                return got[0][:, k - lo : k - lo + 1].expand(self.b, n)
            case ir.During():
                return got[0][:, :1].expand(self.b, n)
            case ir.Count(bound="least", k=k):
                return sem.kth_largest(torch.stack(got, -1), k)
            case ir.Count(k=k):  # at most k: the (k+1)-th largest must fail
                return -sem.kth_largest(torch.stack(got, -1), k + 1)
            case ir.Events(bound=bound, k=k):
                return events_trace(got[0], bound, k, sem)
        raise TypeError(f"not a formula: {f!r}")

    def _atom(self, f: ir.Formula) -> torch.Tensor:
        margin = self.atoms(ir.positive(f))
        return -margin if getattr(f, "negated", False) else margin

    def _ask(self, f: ir.Ask, lo: int, hi: int) -> torch.Tensor:
        """Per frame: a margin per frame of the window; at video level: one clip margin, held over the window."""
        if self.asks is None:
            raise TypeError("an `ask` atom needs an AskEvaluation (compile the program with a VQA scorer)")
        positive = ir.positive(f)
        if f.per_frame:
            margin = self.asks.frames(positive, lo, hi)
        else:
            margin = self.asks.clip(positive, lo, hi)[:, None].expand(self.b, hi - lo + 1)
        return -margin if f.negated else margin

    # ---- blame: which frames break a rule (exact semantics, reporting only) --------------------

    def blame(self, f: ir.Formula, lo: int, hi: int, t: int) -> torch.Tensor:
        """[B, T] margin of the constraint `f` (evaluated at frame t of window [lo, hi]) puts on each frame; BIG elsewhere."""
        return evaluate((f, lo, hi, t), self.blames, self._blame_inputs, self._blame)

    def _blame_inputs(self, key) -> list:
        f, lo, hi, t = key
        match f:
            case ir.And(children=children) | ir.Or(children=children):
                return [(c, lo, hi, t) for c in children]
            case ir.Next(body=body):
                return [(body, lo, hi, min(t + 1, hi))]
            case ir.At(time=time, body=body):
                return [(body, lo, hi, frame_index(time, lo, hi, "`at`"))]
            case ir.During(body=body):
                a, b = self.window(f, lo, hi)
                return [(body, a, b, a)]
        return []

    def _blame(self, key) -> torch.Tensor:
        f, lo, hi, t = key
        exact = Exact()
        got = [self.blames[k] for k in self._blame_inputs(key)]
        out = self.like.new_full((self.b, self.t), BIG)
        if isinstance(f, ir.Ask):  # per frame: the one frame asked about; a clip: every frame of its window
            if f.per_frame:
                out[:, t] = self.trace(f, t, t, exact)[:, 0]
            else:
                out[:, lo : hi + 1] = self.trace(f, lo, hi, exact)[:, :1]
            return out
        value = self.trace(f, lo, hi, exact)[:, t - lo]
        satisfied = (value > 0)[:, None]
        match f:
            case ir.Truth() | ir.Atom() | ir.Compare() | ir.Release() | ir.Count() | ir.Events():
                out[:, t] = value
            case ir.And():
                out = torch.stack(got).amin(0)
            case ir.Or():
                out = torch.where(satisfied, BIG, torch.stack(got).amin(0))
            case ir.Always(body=body):
                out[:, t : hi + 1] = self.trace(body, lo, hi, exact)[:, t - lo :]
            case ir.Eventually(body=body):
                out[:, t : hi + 1] = self.trace(body, lo, hi, exact)[:, t - lo :]
                out = torch.where(satisfied, BIG, out)
            case ir.Next() | ir.At() | ir.During():
                out = got[0]
            case ir.Until(left=left, right=right):
                phi = self.trace(left, lo, hi, exact)[:, t - lo :]
                psi = self.trace(right, lo, hi, exact)[:, t - lo :]
                for i in range(self.b):
                    if satisfied[i, 0]:
                        continue
                    hits = (psi[i] > 0).nonzero()
                    stop = int(hits[0]) if len(hits) else psi.shape[1]
                    broken = phi[i, :stop] <= 0
                    if broken.any():  # left side broke before the right side held
                        out[i, t : t + stop] = torch.where(broken, phi[i, :stop], BIG)
                    else:  # the right side never held
                        out[i, hi] = psi[i, -1]
        return out


def events_trace(phi: torch.Tensor, bound: str, k: int, sem: Semantics) -> torch.Tensor:
    """[B, n] margins of "phi rises at least / at most k times in [t, n)" for every start frame t.

    Rise margins r[s] = min(phi[s], -phi[s-1]) for s > t and phi[t] at t itself; the count of
    rises is the number of positive r, so its order statistic decides the bound (as for `Count`).
    Memory is [B, n, n]: 150 frames hold 22,500 entries per video.
    """
    n = phi.shape[-1]
    rise = sem.min(torch.stack([phi[:, 1:], -phi[:, :-1]], -1), -1)  # r[s] for s = 1..n-1
    rise = torch.cat([phi[:, :1], rise], -1)  # frame 0 only ever starts a window
    t = torch.arange(n, device=phi.device)
    later, here = t[None, :] > t[:, None], t[None, :] == t[:, None]  # [t, s]
    table = torch.where(later, rise[:, None, :], torch.where(here, phi[:, :, None], phi.new_tensor(-BIG)))
    if bound == "least":
        return sem.kth_largest(table, k)
    return -sem.kth_largest(table, k + 1)
