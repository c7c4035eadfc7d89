"""Exact and smooth robustness semantics behind one interface.

Every min and max of the compiler goes through a `Semantics` object: that is the one
place where exact (verdicts) and smooth (gradients) differ. `Smooth` replaces hard
min/max by log-sum-exp at a temperature τ: its min under-states and its max
over-states the exact value by at most τ·log(n), and it converges to `Exact` as
τ → 0. Verdicts always come from `Exact`.

Traces are tensors [B, n]: the robustness at each frame of the current window.
"""

from __future__ import annotations

import torch

# Stands in for ±infinity (empty prefixes, masked entries): large but finite, so
# nothing downstream (log-sum-exp, gradients, JSON) ever sees inf or NaN.
BIG = 1.0e4


class Semantics:
    """Base: the operators are written once in terms of `min`, `suffix_min` and `cumulative_min`."""

    name = "abstract"

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
        """out[t] = max over s >= t of min(psi[s], min over t <= r < s of phi[r])."""
        n = phi.shape[-1]
        t = torch.arange(n, device=phi.device)
        later = t[None, :] >= t[:, None]  # [t, r]: r >= t
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
