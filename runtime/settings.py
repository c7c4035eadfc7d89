"""The optimizer's settings and budget, with every default in one place.

No torch here: the CLI reads these defaults for its options' defaults and help at import time,
and `ruledsl check` must start without torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Budget:
    """When a run stops, whichever comes first."""

    steps: int = 16  # optimization steps (rollouts after the base sample)
    seconds: float | None = None
    nfe: float | None = None  # denoiser forward-equivalents, base sample included


@dataclass
class Settings:
    """How the optimizer runs (`optimize`'s options)."""

    method: str = "lora"
    seed: int = 0
    lr: float = 3e-3
    rank: int = 8
    targets: tuple[str, ...] | None = None  # None: the generator's default LoRA targets
    grad_steps: int = 2  # sampling steps with gradient: the last K (generators.GradientWindow.last)
    clip: float = 1.0
    plateau: int = 8  # stop after this many steps without a better loss
    max_nonfinite: int = 3
    noise_lr: float = 0.05
