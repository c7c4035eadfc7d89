"""Exact and smooth robustness semantics behind one interface.

Every min and max of the compiler goes through a `Semantics` object: that is the one
place where exact (verdicts) and smooth (gradients) differ. `Smooth` replaces hard
min/max by log-sum-exp at a temperature τ: its min under-states and its max
over-states the exact value by at most τ·log(n), and it converges to `Exact` as
τ → 0. Verdicts always come from `Exact`.

Traces are tensors [B, n]: the robustness at each frame of the current window.

`until` needs, for every frame t, a min over every later frame s of a min over [t, s):
n² pairs. Exact semantics computes it in O(n log n) time and O(n) memory by composing
the one-frame recursion ρ(t) = max(ψ(t), min(φ(t), ρ(t+1))) as a parallel scan. Smooth
log-sum-exp semantics has no such recursion (a smooth max of smooth mins does not
factor), so it computes the n² pairs in blocks of rows: memory stays within a fixed
budget at any length, and under autograd each block is recomputed in the backward
pass instead of kept (checkpointing).
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

# Stands in for ±infinity (empty prefixes, masked entries): large but finite, so
# nothing downstream (log-sum-exp, gradients, JSON) ever sees inf or NaN.
BIG = 1.0e4


class Semantics:
    """Base: the operators are written once in terms of `min`, `suffix_min` and `cumulative_min`."""

    name = "abstract"
    # Largest number of (candidate, t, s) entries `until` holds at once (4 MB of float32 per tensor).
    until_block = 1 << 20

    def min(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        raise NotImplementedError

    def cumulative_min(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """Running min along `dim`: out[k] = min(x[0..k])."""
        raise NotImplementedError

    def max(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        return -self.min(-x, dim)

    def suffix_min(self, x: torch.Tensor) -> torch.Tensor:
        """out[t] = min(x[t..n-1]) along the last dim: `always` at every frame."""
        return self.cumulative_min(x.flip(-1), -1).flip(-1)

    def suffix_max(self, x: torch.Tensor) -> torch.Tensor:
        """`eventually` at every frame."""
        return -self.suffix_min(-x)

    def until(self, phi: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        """out[t] = max over s >= t of min(psi[s], min over t <= r < s of phi[r]), by definition.

        Rows t are computed in blocks of at most `until_block` entries; a block needs only
        the frames from its first row on.
        """
        n = phi.shape[-1]
        rows = max(1, self.until_block // max(1, phi[..., 0].numel() * n))
        if rows >= n:
            return self._until_rows(phi, psi, 0, n)
        recompute = torch.is_grad_enabled() and (phi.requires_grad or psi.requires_grad)
        blocks = []
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            if recompute:
                blocks.append(checkpoint(self._until_rows, phi, psi, start, stop, use_reentrant=False))
            else:
                blocks.append(self._until_rows(phi, psi, start, stop))
        return torch.cat(blocks, -1)

    def _until_rows(self, phi: torch.Tensor, psi: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """`until` at frames start..stop-1: [..., stop - start]."""
        phi, psi = phi[..., start:], psi[..., start:]  # only frames s >= t >= start matter
        t = torch.arange(stop - start, device=phi.device)
        s = torch.arange(phi.shape[-1], device=phi.device)
        later = s[None, :] >= t[:, None]  # [t, r]: r >= t
        # phi restricted to r >= t, then a running min along r: min of phi over [t, r].
        held = self.cumulative_min(torch.where(later, phi[..., None, :], torch.full_like(phi[..., None, :], BIG)), -1)
        # Exclusive: phi must hold on [t, s), so shift right by one (an empty prefix holds: BIG).
        held = torch.cat([torch.full_like(held[..., :1], BIG), held[..., :-1]], dim=-1)
        both = self.min(torch.stack([psi[..., None, :].expand_as(held), held], dim=-1), -1)
        both = torch.where(later, both, torch.full_like(both, -BIG))
        return self.max(both, -1)

    def release(self, phi: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        """Dual of until: not (not phi until not psi)."""
        return -self.until(-phi, -psi)

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

    def __init__(self, temperature: float = 0.05):
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)
        self.name = f"smooth(τ={self.temperature:g})"

    def min(self, x, dim):
        return -self.temperature * torch.logsumexp(-x / self.temperature, dim)

    def cumulative_min(self, x, dim):
        return -self.temperature * torch.logcumsumexp(-x / self.temperature, dim)


def make_semantics(kind: str | Semantics, temperature: float = 0.05) -> Semantics:
    if isinstance(kind, Semantics):
        return kind
    if kind == "exact":
        return Exact()
    if kind == "smooth":
        return Smooth(temperature)
    raise ValueError(f"unknown semantics {kind!r}; choose 'exact' or 'smooth'")
