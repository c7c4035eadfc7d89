"""What the runtime needs from a video model, and the adapter for the project's reasoner.

A `VideoGenerator` samples an image-to-video rollout from a fixed initial noise, keeping
gradients through its last `grad_steps` denoising steps, and says where a LoRA attaches.
Frames come out as float [B, T, 3, H, W] in [0, 1], which is what compiled rules take.
Cost is counted in denoiser forward-equivalents (NFE): a step without gradient is 1, a
step with gradient is 3 (its forward, and a backward of about 2).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

DEFAULT_REASONER = Path(__file__).resolve().parents[1] / "models" / "reasoner"


@dataclass
class Condition:
    """One task instance as the generator sees it."""

    first_frame: torch.Tensor  # [3, H, W] in [0, 1]
    prompt: str = ""
    family: str | None = None  # task family when known (our suite); None for other benchmarks
    frames: int = 16


class VideoGenerator(ABC):
    """An image-to-video model driven by a hand-written, differentiable sampling loop."""

    steps: int  # denoising steps per rollout
    lora_targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")

    @property
    @abstractmethod
    def denoiser(self) -> torch.nn.Module:
        """The module a LoRA attaches to (frozen by the runtime)."""

    @abstractmethod
    def initial_noise(self, condition: Condition, seed: int) -> torch.Tensor:
        """The starting noise of a rollout for this seed (deterministic)."""

    @abstractmethod
    def rollout(self, condition: Condition, noise: torch.Tensor, grad_steps: int = 0) -> torch.Tensor:
        """Denoise `noise`; gradients flow through the last `grad_steps` steps; returns [B, T, 3, H, W] in [0, 1]."""

    def sample(self, condition: Condition, seed: int, grad_steps: int = 0) -> torch.Tensor:
        return self.rollout(condition, self.initial_noise(condition, seed), grad_steps)

    def nfe(self, grad_steps: int = 0) -> float:
        """Forward-equivalents of one rollout: no-grad steps cost 1, steps with gradient 3."""
        grad_steps = min(grad_steps, self.steps)
        return float(self.steps - grad_steps + 3 * grad_steps)


class ReasonerGenerator(VideoGenerator):
    """The project's small pixel-space reasoner (ruledsl.runtime.reasoner)."""

    # Attention projections and the temporal convolutions, which carry the motion.
    lora_targets = ("to_q", "to_k", "to_v", "to_out.0", "temporal")

    def __init__(self, model=None, path: str | Path | None = None, steps: int = 8, device: str | None = None):
        from ruledsl.runtime.reasoner import ReasonerModel

        if model is None:
            path = Path(path or os.environ.get("RULEDSL_REASONER", DEFAULT_REASONER))
            if not (path / "config.json").exists():
                raise FileNotFoundError(f"no reasoner at {path} (expected config.json and safetensors weights); "
                                        "train one with `python -m ruledsl.runtime.train_reasoner --out PATH`")
            model = ReasonerModel.from_pretrained(path, use_safetensors=True)
        self.model = model.to(device or "cpu").eval()
        self.steps = steps
        self.size = model.config.size

    @property
    def denoiser(self):
        return self.model

    def _first_frame(self, condition: Condition) -> torch.Tensor:
        frame = condition.first_frame.to(next(self.model.parameters()).device)[None]
        if frame.shape[-2:] != (self.size, self.size):
            frame = F.interpolate(frame, size=(self.size, self.size), mode="area")
        return frame

    def initial_noise(self, condition: Condition, seed: int) -> torch.Tensor:
        from ruledsl.runtime.reasoner import sample_noise

        return sample_noise(1, condition.frames, self.size, self.size, seed, next(self.model.parameters()).device)

    def rollout(self, condition: Condition, noise: torch.Tensor, grad_steps: int = 0) -> torch.Tensor:
        from ruledsl.runtime.reasoner import family_ids, rollout

        first = self._first_frame(condition).expand(noise.shape[0], -1, -1, -1)
        family = family_ids([condition.family] * noise.shape[0], first.device)
        return rollout(self.model, first, family, noise, steps=self.steps, grad_steps=grad_steps)
