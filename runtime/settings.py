"""The optimizer's settings and budget, with every default in one place, and the gradient window
(which sampling steps keep the graph).

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

    method: str = "tto"
    seed: int = 0
    lr: float = 3e-3
    rank: int = 8
    targets: tuple[str, ...] | None = None  # None: the generator's default LoRA targets
    grad_steps: int | GradientWindow = 2  # sampling steps with gradient: an int K is the last K
    clip: float = 1.0
    plateau: int = 8  # stop after this many steps without a better loss
    max_nonfinite: int = 3
    noise_lr: float = 0.05
    # tto (runtime/tto.py): seeds searched per step, which sampling steps get gradient ("last":
    # `grad_steps`; "random": a random number of final steps per rollout; "all"), extra weight of
    # failing rules, steps without progress before the search changes (lr halved, then a restart).
    # `search`: "base" rolls the seeds out through the frozen model (the LoRA only makes the target's
    # gradient rollouts), "lora" through the current LoRA; `retarget`: "restart" the LoRA when a
    # better candidate becomes the target, or "keep" it. Chosen on train (docs/runtime.md).
    population: int = 4
    grad_reach: str = "random"
    focus: float = 1.0
    patience: int = 3
    search: str = "base"
    retarget: str = "restart"
    refine_failing: int | None = None  # gradient only when the best fails at most this many rules (None: always)
    # Searched seeds of `tto` and `best-of-n` sampled frame by frame under the rules' safety monitors
    # (runtime/frame_guide.py): a frame that breaks one is drawn again, up to `frame_retries` times; a
    # frame no redraw keeps sends the search back one frame, up to `frame_backtracks` times a video.
    # 0: off. Autoregressive generators only (others sample whole videos). Chosen on train (docs/runtime.md).
    frame_retries: int = 2
    frame_backtracks: int = 16
    # With frame guidance: each frame drawn this many times and the draw nearest the goals (`at end ψ`:
    # ψ's margin on the frame) kept among the legal ones; 1: the first legal draw (frame_guide.py). Off by
    # default: on 100 train instances 2 draws solved 82 against 83 at ~1.5x the time (tto_sweep_goal20).
    frame_goal_draws: int = 1


@dataclass(frozen=True)
class GradientWindow:
    """Which denoising steps of a rollout keep the graph through the denoiser, and how.

    The steps are `range(steps)[start:stop]` (step 0 is the noisiest; Python slice semantics, so
    `start=-2` is the last two). From the window's first step on, the latents keep the graph through
    every scheduler step, so a window that ends before the last step still gets gradient: the later
    denoiser calls run without graph and count as constants, and the gradient reaches the window
    through the sampler's update (for Euler, x + dt·v, the identity path). A window reaching the last
    step is exact backpropagation through its steps, the usual truncated backpropagation (DRaFT-K).
    `checkpoint`: the window's denoiser activations are recomputed in the backward instead of kept
    (non-reentrant `torch.utils.checkpoint`, which frozen base weights need), so memory does not grow
    with the window: what gradients through all steps need on a large model.

    Randomized truncation (DRaFT/AlignProp) is a caller drawing `GradientWindow.last(k)` with a fresh
    random k per rollout; the loop here needs nothing more.
    """

    start: int | None = 0
    stop: int | None = 0
    checkpoint: bool = False

    @classmethod
    def last(cls, k: int, checkpoint: bool = False) -> GradientWindow:
        """The last `k` steps (0: none)."""
        return cls(-k, None, checkpoint) if k > 0 else cls()

    @classmethod
    def first(cls, k: int, checkpoint: bool = False) -> GradientWindow:
        """The first `k` steps, where layout and motion are decided."""
        return cls(0, max(k, 0), checkpoint)

    @classmethod
    def every(cls, checkpoint: bool = False) -> GradientWindow:
        """Every step."""
        return cls(0, None, checkpoint)

    @classmethod
    def of(cls, grad_steps: int | GradientWindow) -> GradientWindow:
        """An int K means the last K steps (what `Settings.grad_steps` and `--grad-steps` give)."""
        return grad_steps if isinstance(grad_steps, GradientWindow) else cls.last(int(grad_steps))

    def indices(self, steps: int) -> range:
        return range(steps)[self.start : self.stop]
