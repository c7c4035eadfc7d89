"""Exact and smooth robustness semantics behind one interface.

Every min and max of the compiler goes through a `Semantics` object: that is the one
place where exact (verdicts) and smooth (gradients) differ. `Smooth` replaces hard
min/max by log-sum-exp at a temperature τ: its min under-states and its max
over-states the exact value by at most τ·log(n), and it converges to `Exact` as
τ → 0. Verdicts always come from `Exact`.

Traces are tensors [B, n]: the robustness at each frame of the current window.

`until` is, for every frame t, a max over later frames s of a min over ψ(s) and φ on
[t, s): n² pairs by definition. Exact semantics has the one-frame recursion
ρ(t) = max(ψ(t), min(φ(t), ρ(t+1))) and computes it as a parallel scan: O(n log n)
time, O(n) memory. Smooth log-sum-exp semantics has no such recursion (a smooth max of
smooth mins does not factor), so it computes the pairs in blocks of rows with a
hand-written backward pass: memory stays within a fixed budget at any length (nothing
n² is kept for the gradient), time stays O(n²).
"""

from __future__ import annotations

import torch

# Stands in for ±infinity (empty prefixes, masked entries): large but finite, so
# nothing downstream (log-sum-exp, gradients, JSON) ever sees inf or NaN.
BIG = 1.0e4


class Semantics:
    """Base: the operators are written once in terms of `min`, `cumulative_min` and `until`."""

    name = "abstract"

    def min(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        raise NotImplementedError

    def cumulative_min(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """Running min along `dim`: out[k] = min(x[0..k])."""
        raise NotImplementedError

    def until(self, phi: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        """out[t] = max over s >= t of min(psi[s], min over t <= r < s of phi[r])."""
        raise NotImplementedError

    def max(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        return -self.min(-x, dim)

    def suffix_min(self, x: torch.Tensor) -> torch.Tensor:
        """out[t] = min(x[t..n-1]) along the last dim: `always` at every frame."""
        return self.cumulative_min(x.flip(-1), -1).flip(-1)

    def suffix_max(self, x: torch.Tensor) -> torch.Tensor:
        """`eventually` at every frame."""
        return -self.suffix_min(-x)

    def release(self, phi: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        """Dual of until: not (not phi until not psi)."""
        return -self.until(-phi, -psi)

    def kth_largest(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """The k-th largest entry along the last dim (k >= 1; -BIG when there are fewer than k).

        The min of the k largest entries: exact for `Exact`; for `Smooth` a log-sum-exp min over
        them, which is continuous (entries only enter or leave the top k where they tie) and tends to
        the exact value as the temperature goes to 0. Counting (`at least k of`, `k times`) uses it.
        """
        if x.shape[-1] < k:
            x = torch.cat([x, x.new_full((*x.shape[:-1], k - x.shape[-1]), -BIG)], -1)
        return self.min(x.topk(k, dim=-1).values, -1)

    def __repr__(self) -> str:
        return self.name


class Exact(Semantics):
    name = "exact"

    def min(self, x, dim):
        return x.amin(dim)

    def cumulative_min(self, x, dim):
        return x.cummin(dim).values

    def until(self, phi, psi):
        """The recursion f_t(x) = max(psi[t], min(phi[t], x)), out[t] = f_t(f_t+1(...f_n-1(-BIG))), as a scan.

        Each f is a clamp x -> max(a, min(b, x)); clamps compose into clamps,
        (a1, b1) after (a2, b2) = (max(a1, min(b1, a2)), min(b1, b2)), so log2(n) rounds of
        composing every frame's function with the one `step` frames later give all suffixes.
        BIG stands for infinity (an empty prefix of phi holds): inputs are clamped to it, as in the definition.
        """
        a, b = psi.clamp(max=BIG), phi.clamp(max=BIG)
        n, step = a.shape[-1], 1
        while step < n:
            head_a, head_b = a[..., :-step], b[..., :-step]
            tail_a, tail_b = a[..., step:], b[..., step:]
            a = torch.cat([torch.maximum(head_a, torch.minimum(head_b, tail_a)), a[..., -step:]], -1)
            b = torch.cat([torch.minimum(head_b, tail_b), b[..., -step:]], -1)
            step *= 2
        return a.clamp(min=-BIG)


class Smooth(Semantics):
    """Log-sum-exp min/max with temperature τ (in units of robustness)."""

    # Largest number of (candidate, t, s) entries `until` holds at once (4 MB per float32 tensor).
    until_block = 1 << 20

    def __init__(self, temperature: float = 0.05):
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)
        self.name = f"smooth(τ={self.temperature:g})"

    def min(self, x, dim):
        return -self.temperature * torch.logsumexp(-x / self.temperature, dim)

    def cumulative_min(self, x, dim):
        return -self.temperature * torch.logcumsumexp(-x / self.temperature, dim)

    def until(self, phi, psi):
        return _SmoothUntil.apply(phi, psi, self)

    def blocks(self, phi: torch.Tensor) -> list[tuple[int, int]]:
        """Row ranges [start, stop) of `until`, each within `until_block` entries."""
        n = phi.shape[-1]
        rows = max(1, self.until_block // max(1, phi[..., 0].numel() * n))
        return [(start, min(n, start + rows)) for start in range(0, n, rows)]

    def pairs(self, phi: torch.Tensor, psi: torch.Tensor, start: int, stop: int):
        """For frames t in [start, stop) and s >= t: both(t, s) = smin(psi[s], phi[t], ..., phi[s-1]).

        Returns both [..., rows, n - start] (-BIG where s < t) and the mask s >= t. In
        log-sum-exp terms (c = -phi / τ), the sum over [t, s) splits at the block's end:
        the part inside the block is a small rows × rows triangle, the part after it is
        one running sum shared by every row, so each pair costs two log-add-exps.
        """
        tau = self.temperature
        c, a = -phi[..., start:] / tau, -psi[..., start:] / tau  # only frames s >= t >= start matter
        rows, m = stop - start, c.shape[-1]
        t = torch.arange(rows, device=phi.device)
        later = torch.arange(m, device=phi.device)[None, :] >= t[:, None]  # [t, s]: s >= t
        empty = torch.full_like(c[..., None, :1], -torch.inf)  # log of an empty sum (phi holds on no frames)
        inside = torch.where(later[:, :rows], c[..., None, :rows], -torch.inf)
        inside = torch.cat([empty.expand(*c.shape[:-1], rows, 1), torch.logcumsumexp(inside, -1)], -1)  # [t, t + k)
        beyond = torch.cat([empty[..., 0, :], torch.logcumsumexp(c[..., rows:], -1)], -1)  # [stop, s) for s >= stop
        beyond = beyond[..., None, : m - rows]
        held = torch.cat([inside[..., :rows], torch.logaddexp(inside[..., rows:], beyond)], -1)
        both = -tau * torch.logaddexp(a[..., None, :], held)
        return both.masked_fill(~later, -BIG), later


class _SmoothUntil(torch.autograd.Function):
    """Smooth `until` block by block; the backward pass recomputes each block instead of storing it.

    With w(t, s) = softmax over s of both(t, s) / τ (the weight of pair (t, s) in the smooth
    max), the derivative of both(t, s) = smin(psi[s], phi[t..s-1]) is exp((both - x) / τ) for
    each of its inputs x, so
        d out[t] / d psi[s] = exp((2 both(t, s) - out[t] - psi[s]) / τ)                (s >= t)
        d out[t] / d phi[r] = sum over s > r of exp((2 both(t, s) - out[t] - phi[r]) / τ)  (r >= t)
    Every exponent is <= 0 (both <= out[t], both <= each input), so nothing overflows.
    """

    @staticmethod
    def forward(ctx, phi, psi, sem):
        tau = sem.temperature
        parts = [sem.max(sem.pairs(phi, psi, start, stop)[0], -1) for start, stop in sem.blocks(phi)]
        out = torch.cat(parts, -1)
        ctx.sem = sem
        ctx.save_for_backward(phi, psi, out)
        ctx.tau = tau
        return out

    @staticmethod
    def backward(ctx, grad):
        phi, psi, out = ctx.saved_tensors
        sem, tau = ctx.sem, ctx.tau
        grad_phi, grad_psi = torch.zeros_like(phi), torch.zeros_like(psi)
        for start, stop in sem.blocks(phi):
            both, later = sem.pairs(phi, psi, start, stop)
            g = grad[..., start:stop]
            exponent = torch.where(later, (2 * both - out[..., start:stop, None]) / tau, -torch.inf)
            grad_psi[..., start:] += torch.einsum(
                "...t,...ts->...s", g, torch.exp(exponent - psi[..., None, start:] / tau)
            )
            # Sum over s > r: a reversed running log-sum-exp, shifted by one (nothing after the last frame).
            after = torch.logcumsumexp(exponent.flip(-1), -1).flip(-1)
            after = torch.cat([after[..., 1:], torch.full_like(after[..., :1], -torch.inf)], -1)
            weights = torch.where(later, torch.exp(after - phi[..., None, start:] / tau), 0.0)
            grad_phi[..., start:] += torch.einsum("...t,...tr->...r", g, weights)
        return grad_phi, grad_psi, None


def make_semantics(kind: str | Semantics, temperature: float = 0.05) -> Semantics:
    if isinstance(kind, Semantics):
        return kind
    if kind == "exact":
        return Exact()
    if kind == "smooth":
        return Smooth(temperature)
    raise ValueError(f"unknown semantics {kind!r}; choose 'exact' or 'smooth'")
