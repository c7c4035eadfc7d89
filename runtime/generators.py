"""What the runtime needs from a video model: the `VideoGenerator` interface with the one
differentiable sampling loop, the shared parts of the diffusers adapters, and the adapter for the
project's reasoner.

A rollout denoises a fixed initial noise into frames [B, T, 3, H, W] in [0, 1] (what compiled
rules take), keeping the autograd graph through the steps its `GradientWindow` names. Cost is
counted in denoiser forward-equivalents (NFE): a step without gradient is 1, a step with gradient
3 (its forward, and a backward of about 2), 4 when its activations are recomputed in the backward
(checkpointing).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ruledsl.runtime.settings import GradientWindow

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
    """An image-to-video model driven by one hand-written, differentiable sampling loop (`rollout`).

    Pipelines' `__call__` runs under no_grad, so the loop is written here once; an adapter supplies
    only what differs between models (like a block of diffusers' modular pipelines):

    - `denoiser`: the module a LoRA attaches to (frozen by the runtime); `lora_targets` names its
      layers (module names ending with these);
    - `initial_noise(condition, seed)`: the starting noise for a seed, deterministic, batch size 1
      (a batch of rollouts is a `torch.cat` of seeds' noises);
    - `encode(condition, batch)`: the task's conditioning (prompt embeddings, encoded first frame,
      anything the other hooks need), computed once per task under no_grad and cached (`conditioning`);
    - `predict(latents, t, conditioning)`: one denoiser call for step `t` (velocity, noise or
      v-prediction: whatever `step` consumes); cast inputs to `self.dtype` (the frozen model's dtype),
      the loop casts the output back to the latents' dtype (float32);
    - `decode(latents, conditioning)`: latents -> [B, T, 3, H, W] in [0, 1] (a VAE, or a surrogate);
    - optional: `timesteps(noise, conditioning)` (default: `scheduler.set_timesteps(steps)`, called
      before every rollout because schedulers are stateful), `start(noise, conditioning)` (default:
      the noise itself; e.g. scale by the scheduler's init sigma, or pack tokens), and
      `step(prediction, t, latents, conditioning)` (default: `scheduler.step`; override to pack/unpack
      around it or to hold conditioning frames fixed).

    Use a stateless sampler in the loop (flow-matching Euler, DDIM with eta 0): multistep samplers
    keep history across steps. Set `steps`, `scheduler` and `dtype` in `__init__`. A new adapter
    registers its folder's `_class_name` in `ruledsl.runtime.load.GENERATORS` so `--model` finds it.
    """

    steps: int  # denoising steps per rollout
    scheduler: Any  # used by the default `timesteps` and `step`
    dtype: torch.dtype = torch.float32  # the frozen denoiser's dtype; latents stay float32
    lora_targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    _cached: tuple | None = None  # (condition, batch, conditioning) of the current task

    @property
    @abstractmethod
    def denoiser(self) -> torch.nn.Module:
        """The module a LoRA attaches to (frozen by the runtime)."""

    @abstractmethod
    def initial_noise(self, condition: Condition, seed: int) -> torch.Tensor:
        """The starting noise of a rollout for this seed (deterministic), batch size 1."""

    @abstractmethod
    def encode(self, condition: Condition, batch: int) -> Any:
        """The task's conditioning for a batch of `batch` rollouts (run once per task, no gradient)."""

    @abstractmethod
    def predict(self, latents: torch.Tensor, t: torch.Tensor, conditioning: Any) -> torch.Tensor:
        """One denoiser call at timestep `t`."""

    @abstractmethod
    def decode(self, latents: torch.Tensor, conditioning: Any) -> torch.Tensor:
        """Final latents -> [B, T, 3, H, W] in [0, 1]."""

    def timesteps(self, noise: torch.Tensor, conditioning: Any) -> torch.Tensor:
        self.scheduler.set_timesteps(self.steps, device=noise.device)
        return self.scheduler.timesteps

    def start(self, noise: torch.Tensor, conditioning: Any) -> torch.Tensor:
        return noise

    def step(self, prediction: torch.Tensor, t: torch.Tensor, latents: torch.Tensor, conditioning: Any) -> torch.Tensor:
        return self.scheduler.step(prediction, t, latents, return_dict=False)[0]

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    def conditioning(self, condition: Condition, batch: int) -> Any:
        """`encode`, computed once per task and batch size (only the current one is kept)."""
        cached = self._cached
        if cached is None or cached[0] is not condition or cached[1] != batch:
            with torch.no_grad():
                self._cached = cached = (condition, batch, self.encode(condition, batch))
        return cached[2]

    @property
    def autoregressive(self) -> bool:
        """Frames made one after another, each by its own calls (`frame_calls`; frame_guide.py needs it)."""
        return False

    # True when `decode` draws each frame from its own latent alone, bit for bit as in any batch (a
    # per-frame decoder): frame guidance then builds the video from the frames it drew and judged.
    decodes_per_frame = False

    def window_step(self, call: int) -> int:
        """Which of the `steps` sampling steps denoiser call `call` is, for the gradient window.
        One call per step by default; an autoregressive model runs the steps once per frame."""
        return call

    def rollout(self, condition: Condition, noise: torch.Tensor, grad_steps: int | GradientWindow = 0) -> torch.Tensor:
        """Denoise `noise` [B, ...]; the graph is kept through `grad_steps` (an int K: the last K steps,
        or a GradientWindow) and the decode; returns [B, T, 3, H, W] in [0, 1]. Under no_grad nothing
        keeps a graph."""
        window = GradientWindow.of(grad_steps)
        carry = window.indices(self.steps)
        graph = torch.is_grad_enabled()
        conditioning = self.conditioning(condition, noise.shape[0])
        latents = self.start(noise, conditioning)
        calls = list(self.timesteps(noise, conditioning))
        in_window = [self.window_step(i) in carry for i in range(len(calls))]
        first = in_window.index(True) if graph and any(in_window) else len(calls)
        for i, t in enumerate(calls):
            with torch.set_grad_enabled(graph and in_window[i]):
                if window.checkpoint and graph and in_window[i]:
                    prediction = torch.utils.checkpoint.checkpoint(
                        self.predict, latents, t, conditioning, use_reentrant=False
                    )
                else:
                    prediction = self.predict(latents, t, conditioning)
            # Once inside the window the latents keep the graph through every update.
            with torch.set_grad_enabled(i >= first):
                latents = self.step(prediction.to(latents.dtype), t, latents, conditioning)
        with torch.set_grad_enabled(graph and len(carry) > 0):
            return self.decode(latents, conditioning).float()

    def sample(self, condition: Condition, seed: int, grad_steps: int | GradientWindow = 0) -> torch.Tensor:
        return self.rollout(condition, self.initial_noise(condition, seed), grad_steps)

    def nfe(self, grad_steps: int | GradientWindow = 0) -> float:
        """Forward-equivalents of one rollout: steps without gradient cost 1, with gradient 3 (4 when checkpointed)."""
        window = GradientWindow.of(grad_steps)
        carried = len(window.indices(self.steps))
        return float(self.steps + carried * (3 if window.checkpoint else 2))


class DiffusersI2VGenerator(VideoGenerator):
    """Shared parts of the diffusers image-to-video adapters (wan.py, cogvideox.py, ltx.py).

    Subclasses name their pipeline class, build their (stateless) scheduler, and write the hooks
    of `VideoGenerator`. `decoder`, if given, replaces the VAE decode (the adapter's latents ->
    [B, T, 3, H, W] in [0, 1]) with a cheaper surrogate. No classifier-free guidance: one
    denoiser call per step. Latents and conditioning latents are float32; the pipeline's modules
    run in their own dtype (`from_pretrained(..., dtype=torch.bfloat16)` for a GPU).
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
        self.dtype = pipeline.transformer.dtype
        for name in ("transformer", "vae", "text_encoder", "image_encoder"):
            module = getattr(pipeline, name, None)
            if module is not None:
                module.eval().requires_grad_(False)

    @classmethod
    def from_pretrained(
        cls, path, device: str | torch.device | None = None, dtype: torch.dtype | None = None, **kwargs
    ):
        """Load a `save_pretrained` folder of `pipeline_class`; `dtype` for every module (default float32)."""
        import warnings

        import diffusers

        with (
            warnings.catch_warnings()
        ):  # newer diffusers rename torch_dtype to dtype; every supported one takes torch_dtype
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            pipeline = getattr(diffusers, cls.pipeline_class).from_pretrained(path, torch_dtype=dtype or torch.float32)
        return cls(pipeline.to(device or "cpu"), **kwargs)

    def make_scheduler(self, pipeline):
        raise NotImplementedError

    @property
    def denoiser(self):
        return self.pipe.transformer

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
        """Noise drawn on the CPU (the same for a seed on every device), float32, on the model's device."""
        return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(self.device)

    def first_frame(self, condition: Condition, height: int, width: int) -> torch.Tensor:
        """The first frame as the pipeline's video processor prepares it ([1, 3, H, W] in [-1, 1]), in the VAE's dtype."""
        image = self.pipe.video_processor.preprocess(first_frame_pil(condition.first_frame), height=height, width=width)
        return image.to(self.device, dtype=self.pipe.vae.dtype)


def first_frame_pil(frame: torch.Tensor):
    """[3, H, W] in [0, 1] -> a PIL image (what the pipelines' processors take)."""
    import numpy as np
    from PIL import Image

    array = (frame.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(array)


def latents_to_video(video: torch.Tensor) -> torch.Tensor:
    """A VAE's [B, 3, T, H, W] in [-1, 1] -> [B, T, 3, H, W] in [0, 1]."""
    return ((video.permute(0, 2, 1, 3, 4) + 1) / 2).clamp(0, 1)


def load_reasoner(path: str | Path, dtype: torch.dtype | None = None):
    """A reasoner folder -> its model, by the config's `_class_name`: v1 `ReasonerModel` (pixel space)
    or v2 `LatentReasonerModel` (latent flow with a palette decoder)."""
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
        raise ValueError(
            f"{path / 'config.json'}: _class_name {kind!r} is not a reasoner (ReasonerModel, LatentReasonerModel)"
        )
    return cls.from_pretrained(path, use_safetensors=True, torch_dtype=dtype)


# The v2 reasoner's LoRA targets: v1's plus each block's spatial convolution and FiLM layer. Chosen on
# train (docs/reasoner_v2_notes.md, 2026-12-04): a LoRA fitted to the answers of 20 failing train samples
# fixes 17 with these targets against 14 with v1's (rank 32 on v1's: 15), and tto on 100 train instances
# solves the same 83 with either (benchmarks/results/tto_sweep_wide).
V2_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "temporal", "spatial", "film")


class ReasonerGenerator(VideoGenerator):
    """The project's small reasoner, v1 or v2 (whichever the folder's config or the model is), both
    flow-matching Euler conditioned on the first frame and the task family:
    - v1 (ruledsl.runtime.reasoner): on [B, T, 3, H, W] videos in [-1, 1];
    - v2 (ruledsl.runtime.latent_reasoner): on the latent changes [B, T, C, h, w] from the first
      frame's latent; `decode` runs the palette decoder (inside the graph). An autoregressive v2
      (config `context` > 0) walks (frame, step) calls through the same rollout loop."""

    # Attention projections and the temporal convolutions, which carry the motion (v1); v2 adds its
    # spatial convolutions and FiLM layers (V2_LORA_TARGETS).
    lora_targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0", "temporal")
    decodes_per_frame = True  # v1: elementwise; v2: frame_codec.decode_video, one frame per call

    def __init__(
        self,
        model=None,
        path: str | Path | None = None,
        steps: int | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        size: int | None = None,
    ):
        from ruledsl.runtime.reasoner import make_scheduler

        if model is None:
            model = load_reasoner(path or os.environ.get("RULEDSL_REASONER") or DEFAULT_REASONER, dtype)
        elif dtype is not None:
            model = model.to(dtype)
        self.model = model.to(device or "cpu").eval()
        self.latent = type(model).__name__ == "LatentReasonerModel"
        self.dtype = next(self.model.parameters()).dtype
        self.steps = steps or model.config.get("steps", 8)
        # The sampling resolution: the trained one by default; a v2 model (convolutions, attention
        # without a position table) also runs at other multiples of its unit (latent_shape_at).
        self.size = size or model.config["size"]
        if size and size != model.config["size"]:
            if not self.latent:
                raise ValueError(
                    f"a v1 reasoner samples at its trained size only ({model.config['size']}), got size {size}"
                )
            model.latent_shape_at(size)  # raises with the valid unit
        self.scheduler = make_scheduler()
        # v2 autoregressive (config `context` K > 0): frames 1.. are generated one after another, each
        # by its own `steps` Euler steps from its K frames before and the motion history of all
        # frames before; a call sees K + 1 frames.
        self.context = model.config.get("context", 0) if self.latent else 0
        if self.latent:
            self.lora_targets = V2_LORA_TARGETS

    @classmethod
    def from_pretrained(
        cls, path, device: str | torch.device | None = None, dtype: torch.dtype | None = None, **kwargs
    ):
        """Load a reasoner folder (config.json + safetensors weights)."""
        return cls(path=path, device=device, dtype=dtype, **kwargs)

    @property
    def denoiser(self):
        return self.model

    def initial_noise(self, condition: Condition, seed: int) -> torch.Tensor:
        if self.latent:
            from ruledsl.runtime.latent_reasoner import sample_noise as latent_noise

            return latent_noise(1, condition.frames, self.model.latent_shape_at(self.size), seed, self.device)
        from ruledsl.runtime.reasoner import sample_noise

        return sample_noise(1, condition.frames, self.size, self.size, seed, self.device)

    def encode(self, condition: Condition, batch: int):
        """The first frame at the model's size in [0, 1] (kept as frame 0 of the video), the model's
        conditioning (v1: the frame in [-1, 1]; v2: its latent), and the family ids."""
        from ruledsl.runtime.reasoner import family_ids

        frame = condition.first_frame.to(self.device)[None]
        if frame.shape[-2:] != (self.size, self.size):
            frame = F.interpolate(frame, size=(self.size, self.size), mode="area")
        frame = frame.expand(batch, -1, -1, -1)
        model_frame = self.model.encode_first_frame(frame.to(self.dtype), self.size) if self.latent else (frame * 2 - 1)
        return frame, model_frame.to(self.dtype), family_ids([condition.family] * batch, frame.device)

    def predict(self, latents, t, conditioning):
        _, model_frame, family = conditioning
        if self.context:
            return self._predict_next(latents, t, model_frame, family)
        x = latents.to(self.dtype)
        return self.model(x, t.expand(x.shape[0]), model_frame, family)

    # The autoregressive schedule: call i is (frame f, step j); the sigmas are the flow-matching
    # Euler scheduler's (set_timesteps(steps)), applied to one frame at a time.
    def timesteps(self, noise, conditioning):
        if not self.context:
            return super().timesteps(noise, conditioning)
        self.scheduler.set_timesteps(self.steps, device=noise.device)
        return [(f, j) for f in range(1, noise.shape[1]) for j in range(self.steps)]

    def window_step(self, call: int) -> int:
        return call % self.steps if self.context else call

    @property
    def autoregressive(self) -> bool:
        """Frames made one after another (`frame_calls`): what frame guidance (frame_guide.py) needs."""
        return bool(self.context)

    def frame_calls(self, frame: int) -> list[tuple[int, int]]:
        """The denoiser calls that make frame `frame` (>= 1) of an autoregressive rollout, in order."""
        self.scheduler.set_timesteps(self.steps, device=self.device)
        return [(frame, j) for j in range(self.steps)]

    def start(self, noise, conditioning):
        if not self.context:
            return noise
        return torch.cat([torch.zeros_like(noise[:, :1]), noise[:, 1:]], dim=1)  # frame 0 is z0: no change

    def _predict_next(self, latents, call, model_frame, family):
        from ruledsl.runtime.latent_reasoner import context_window, motion_history

        frame, j = call
        index = context_window(frame, self.context)
        b = latents.shape[0]
        t = torch.zeros(b, len(index), device=latents.device)
        t[:, -1] = self.scheduler.timesteps[j]
        x = latents[:, index].to(self.dtype)
        history = motion_history(latents[:, :frame]).to(self.dtype)
        return self.model(x, t, model_frame, family, torch.tensor(index, device=latents.device), history)[:, -1]

    def step(self, prediction, t, latents, conditioning):
        if not self.context:
            return super().step(prediction, t, latents, conditioning)
        frame, j = t
        sigmas = self.scheduler.sigmas
        updated = latents[:, frame] + (sigmas[j + 1] - sigmas[j]) * prediction  # the scheduler's Euler step
        return torch.cat([latents[:, :frame], updated[:, None], latents[:, frame + 1 :]], dim=1)

    def nfe(self, grad_steps: int | GradientWindow = 0) -> float:
        """As `VideoGenerator.nfe`, in forward-equivalents of a call over the model's `frames`: an
        autoregressive call sees K + 1 of them and there is one per step and frame after the first."""
        base = super().nfe(grad_steps)
        if not self.context:
            return base
        frames = self.model.config["frames"]
        return base * (frames - 1) * (self.context + 1) / frames

    def decode(self, latents, conditioning):
        """Frame 0 is the condition's own first frame (v2 does not decode it: it would be discarded)."""
        first, model_frame = conditioning[:2]
        if self.latent:
            from ruledsl.runtime.frame_codec import decode_video

            later = model_frame[:, None] + latents[:, 1:].to(self.dtype)
            video = decode_video(self.model.codec, later).float().clamp(0, 1)
            return torch.cat([first[:, None], video], dim=1)
        video = ((latents + 1) / 2).clamp(0, 1)
        return torch.cat([first[:, None], video[:, 1:]], dim=1)
