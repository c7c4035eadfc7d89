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
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F

# Shipped inside the package (models/ installs as ruledsl.models), so a wheel install finds it.
DEFAULT_REASONER = Path(str(resources.files("ruledsl.models").joinpath("reasoner")))


@dataclass
class Condition:
    """One task instance as the generator sees it."""

    first_frame: torch.Tensor  # [3, H, W] in [0, 1]
    prompt: str = ""
    family: str | None = None  # task family when known (our suite); None for other benchmarks
    frames: int = 16


def condition_from_task(task) -> Condition:
    """A task folder (ruledsl.tasks.layout.Task) -> the generator's Condition."""
    first = torch.from_numpy(task.first_frame).float().div(255).permute(2, 0, 1).contiguous()
    frames = (task.metadata or {}).get("render", {}).get("frames", 16)
    return Condition(first, task.prompt, task.family, frames)


def condition_from_instance(instance, size: int = 64) -> Condition:
    """A generated task instance (ruledsl.tasks.families.Instance), rendered at `size`, -> its Condition."""
    from ruledsl.tasks.render import frames_for, render, solution_plan

    first = render(instance, solution_plan(instance), (size, size))[0]
    return Condition(
        torch.from_numpy(first).float().div(255).permute(2, 0, 1),
        instance.prompt,
        instance.family,
        frames_for(instance),
    )


def to_uint8(video: torch.Tensor):
    """[T, 3, H, W] in [0, 1] -> uint8 [T, H, W, 3] (what the scorers and video writers take)."""
    import numpy as np

    return (video.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)


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


class DiffusersI2VGenerator(VideoGenerator):
    """Shared parts of the diffusers image-to-video adapters (wan.py, cogvideox.py, ltx.py).

    Subclasses name their pipeline class, build their scheduler, and write `_condition` (the
    conditioning tensors, computed once per task without gradient) and `rollout`. `decoder`, if
    given, replaces the VAE decode (latents -> [B, T, 3, H, W] in [0, 1]) with a cheaper surrogate.
    """

    pipeline_class: str  # e.g. "WanImageToVideoPipeline"

    def __init__(
        self,
        pipeline,
        steps: int = 8,
        height: int | None = None,
        width: int | None = None,
        decoder=None,
        max_sequence_length: int = 64,
    ):
        self.pipe = pipeline
        self.steps = steps
        self.height, self.width = height, width
        self.decoder = decoder
        self.max_sequence_length = max_sequence_length
        self.scheduler = self.make_scheduler(pipeline)
        for name in ("transformer", "vae", "text_encoder", "image_encoder"):
            module = getattr(pipeline, name, None)
            if module is not None:
                module.eval().requires_grad_(False)
        self._prepared: dict = {}

    @classmethod
    def from_pretrained(cls, path, **kwargs):
        import diffusers

        return cls(getattr(diffusers, cls.pipeline_class).from_pretrained(path), **kwargs)

    def make_scheduler(self, pipeline):
        raise NotImplementedError

    @property
    def denoiser(self):
        return self.pipe.transformer

    def prepared(self, condition: Condition, batch: int):
        """The task's conditioning for a batch size, computed once (only the current task is kept)."""
        key = (id(condition), batch)
        if key not in self._prepared:
            with torch.no_grad():
                self._prepared = {key: self._condition(condition, batch)}
        return self._prepared[key]

    def _condition(self, condition: Condition, batch: int):
        raise NotImplementedError

    def frame_count(self, condition: Condition) -> int:
        """Frames as k * (temporal compression) + 1, at least the condition's."""
        scale = self.temporal_compression
        return ((max(condition.frames, 2) - 2) // scale + 1) * scale + 1

    @property
    def temporal_compression(self) -> int:
        return getattr(self.pipe, "vae_scale_factor_temporal", None) or self.pipe.vae_temporal_compression_ratio

    def pixel_size(self, condition: Condition, unit: int) -> tuple[int, int]:
        h = self.height or condition.first_frame.shape[-2]
        w = self.width or condition.first_frame.shape[-1]
        return max(unit, h // unit * unit), max(unit, w // unit * unit)

    def seeded_noise(self, shape, seed: int) -> torch.Tensor:
        return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(self.pipe.transformer.device)


def first_frame_pil(frame: torch.Tensor):
    """[3, H, W] in [0, 1] -> a PIL image (what the pipelines' processors take)."""
    import numpy as np
    from PIL import Image

    array = (frame.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(array)


def latents_to_video(video: torch.Tensor) -> torch.Tensor:
    """A VAE's [B, 3, T, H, W] in [-1, 1] -> [B, T, 3, H, W] in [0, 1]."""
    return ((video.permute(0, 2, 1, 3, 4) + 1) / 2).clamp(0, 1)


def load_reasoner(path: str | Path):
    """A reasoner folder -> its model: v1 (`ReasonerModel`, pixel space) or v2 (`LatentReasonerModel`), from config."""
    import json

    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(
            f"no reasoner at {path} (expected config.json and safetensors weights); "
            "train one with `python scripts/train_reasoner.py --out PATH`"
        )
    kind = json.loads((path / "config.json").read_text()).get("_class_name")
    if kind == "LatentReasonerModel":
        from ruledsl.runtime.latent_reasoner import LatentReasonerModel as cls
    elif kind == "ReasonerModel":
        from ruledsl.runtime.reasoner import ReasonerModel as cls
    else:
        raise ValueError(f"{path / 'config.json'}: _class_name {kind!r} is not a reasoner (ReasonerModel, LatentReasonerModel)")
    return cls.from_pretrained(path, use_safetensors=True)


class ReasonerGenerator(VideoGenerator):
    """The project's small reasoner: v1 (pixel space, ruledsl.runtime.reasoner) or v2 (latent flow with a
    palette decoder, ruledsl.runtime.latent_reasoner), whichever the folder or model is."""

    # Attention projections and the temporal convolutions, which carry the motion.
    lora_targets = ("to_q", "to_k", "to_v", "to_out.0", "temporal")

    def __init__(self, model=None, path: str | Path | None = None, steps: int | None = None, device: str | None = None):
        if model is None:
            model = load_reasoner(path or os.environ.get("RULEDSL_REASONER", DEFAULT_REASONER))
        self.model = model.to(device or "cpu").eval()
        self.latent = type(model).__name__ == "LatentReasonerModel"
        self.steps = steps or getattr(model.config, "steps", 8)
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
        device = next(self.model.parameters()).device
        if self.latent:
            from ruledsl.runtime.latent_reasoner import sample_noise

            return sample_noise(1, condition.frames, self.model.latent_shape, seed, device)
        from ruledsl.runtime.reasoner import sample_noise

        return sample_noise(1, condition.frames, self.size, self.size, seed, device)

    def rollout(self, condition: Condition, noise: torch.Tensor, grad_steps: int = 0) -> torch.Tensor:
        from ruledsl.runtime.reasoner import family_ids

        if self.latent:
            from ruledsl.runtime.latent_reasoner import rollout
        else:
            from ruledsl.runtime.reasoner import rollout
        first = self._first_frame(condition).expand(noise.shape[0], -1, -1, -1)
        family = family_ids([condition.family] * noise.shape[0], first.device)
        return rollout(self.model, first, family, noise, steps=self.steps, grad_steps=grad_steps)
