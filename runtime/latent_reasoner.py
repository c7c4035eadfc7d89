"""Reasoner v2: a first-frame-conditioned flow-matching video model over frame-codec latents.

Data flow: first frame [3, 64, 64] -> codec latent z0 [4, 16, 16]; the denoiser generates, for
every frame t, the latent *change* d_t = z_t - z0 (zero wherever nothing moves, so the fixed layout
is kept by construction and the model only decides where things go); frames = decode(z0 + d_t),
drawn by the codec in flat palette colours (runtime/frame_codec.py).

Denoiser: latents in 2x2 patches (8x8 tokens per frame for 64x64 frames), then blocks of
  - a pseudo-3D residual conv (spatial 3x3, FiLM by time and task family, temporal 3-tap),
  - self-attention within each frame (where is the goal, which corridors are open),
  - self-attention across frames at each position (one coherent trajectory in time),
attention projections named `to_q`, `to_k`, `to_v`, `to_out.0` like diffusers' attention, so
the runtime's default LoRA targets find them. Trained by rectified flow (velocity = noise - data),
sampled with diffusers' `FlowMatchEulerDiscreteScheduler` by `VideoGenerator.rollout` (the
adapter is `ReasonerGenerator` in generators.py, whose `decode` runs the codec inside the graph,
so compiled losses backpropagate through the decoder to a LoRA on the denoiser). The codec is a
submodule: one `save_pretrained` folder (safetensors + config) holds the whole model.

Two ways to generate (config `context`): 0 denoises all frames together (`flow_matching_loss`); K > 0 is
autoregressive, frame after frame, each from its K frames before (`context_window`) and the motion
history of all frames before (`motion_history`), trained by `next_frame_loss` and sampled by the same
rollout loop (ReasonerGenerator's `timesteps`/`step` walk (frame, step) pairs). The shipped model is
autoregressive: the joint one placed the mover on the right cells in the wrong order
(docs/reasoner_v2_notes.md).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config

from ruledsl.runtime.frame_codec import PaletteAutoencoder, encode_video, resize_frames
from ruledsl.runtime.reasoner import FAMILY_IDS, UNKNOWN_FAMILY, ResBlock, conditioned_input, family_ids

__all__ = [
    "FAMILY_IDS",
    "UNKNOWN_FAMILY",
    "LatentReasonerModel",
    "family_ids",
    "flow_matching_loss",
    "moving_mask",
    "sample_noise",
]


class AxisAttention(nn.Module):
    """Self-attention along one axis of [B, C, T, h, w]: "space" (tokens of one frame) or "time"
    (one position across frames). Pre-norm, residual, zero-initialised output."""

    def __init__(self, channels: int, heads: int, axis: str):
        super().__init__()
        self.heads, self.axis = heads, axis
        self.norm = nn.LayerNorm(channels)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        out = nn.Linear(channels, channels)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.to_out = nn.ModuleList([out])  # `to_out.0`, as diffusers names it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        if self.axis == "space":
            tokens = x.permute(0, 2, 3, 4, 1).reshape(b * t, h * w, c)
        else:
            tokens = x.permute(0, 3, 4, 2, 1).reshape(b * h * w, t, c)
        normed = self.norm(tokens)
        n, length = tokens.shape[:2]
        q, k, v = (
            proj(normed).view(n, length, self.heads, c // self.heads).transpose(1, 2)
            for proj in (self.to_q, self.to_k, self.to_v)
        )
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, length, c)
        tokens = tokens + self.to_out[0](out)
        if self.axis == "space":
            return tokens.view(b, t, h, w, c).permute(0, 4, 1, 2, 3)
        return tokens.view(b, h, w, t, c).permute(0, 4, 3, 1, 2)


class Block(nn.Module):
    def __init__(self, channels: int, embed: int, heads: int):
        super().__init__()
        self.conv = ResBlock(channels, embed)
        self.space = AxisAttention(channels, heads, "space")
        self.time = AxisAttention(channels, heads, "time")

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.time(self.space(self.conv(x, emb)))


class LatentReasonerModel(ModelMixin, ConfigMixin):
    """Velocity model v(d_σ, σ, z0, family) over latent changes [B, T, C, h, w]; `codec` draws frames."""

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        codec_config: dict | None = None,
        patch: int = 2,
        channels: int = 96,
        depth: int = 3,
        embed: int = 128,
        heads: int = 4,
        families: int = UNKNOWN_FAMILY + 1,
        size: int = 64,
        frames: int = 16,
        steps: int = 8,
        context: int = 0,
    ):
        super().__init__()
        self.codec = PaletteAutoencoder(**(codec_config or {}))
        self.codec.requires_grad_(False)
        latent = self.codec.config["latent_channels"]
        tokens = latent * patch * patch
        self.time_mlp = nn.Sequential(nn.Linear(embed, embed), nn.SiLU(), nn.Linear(embed, embed))
        self.family_embedding = nn.Embedding(families, embed)
        self.frame_proj = nn.Linear(embed, channels)
        # Inputs per frame: the noisy sample, z0 and (autoregressive) the motion history.
        self.proj_in = nn.Conv3d((3 if context else 2) * tokens, channels, 1)
        self.blocks = nn.ModuleList([Block(channels, embed, heads) for _ in range(depth)])
        self.norm_out = nn.GroupNorm(8, channels)
        self.proj_out = nn.Conv3d(channels, tokens, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)  # type: ignore[arg-type]  # bias=True: a tensor
        self.gradient_checkpointing = False

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one frame's latent at the trained frame size."""
        return self.latent_shape_at(self.config["size"])

    def latent_shape_at(self, size: int) -> tuple[int, int, int]:
        """(C, h, w) of one frame's latent for size x size frames. Every layer is convolutional or
        attention without a position table, so the model runs at any size that is a multiple of
        codec downsampling x patch (`ReasonerGenerator(size=...)`)."""
        unit = self.codec.downsampling * self.config["patch"]
        if size % unit:
            raise ValueError(f"frame size must be a multiple of {unit} (codec downsampling x patch), got {size}")
        return self.codec.config["latent_channels"], size // self.codec.downsampling, size // self.codec.downsampling

    def _patchify(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, C, h, w] -> [B, C p², T, h/p, w/p]
        b, t = x.shape[:2]
        y = F.pixel_unshuffle(x.flatten(0, 1), self.config["patch"])
        return y.view(b, t, *y.shape[1:]).transpose(1, 2)

    def _unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t = x.shape[:3]
        y = F.pixel_shuffle(x.transpose(1, 2).flatten(0, 1), self.config["patch"])
        return y.view(b, t, *y.shape[1:])

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        first_latent: torch.Tensor,
        family: torch.Tensor | None = None,
        frame_index: torch.Tensor | None = None,
        history: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """sample [B, T, C, h, w] noisy latent changes, timestep [B] or per frame [B, T] in [0, 1000],
        first_latent [B, C, h, w]. Autoregressive models (config `context` K > 0) take a window of
        K context frames and the frame being generated (T = K + 1), their indices in the video
        `frame_index` [T] or [B, T], and the `history` [B, C, h, w] of the frames before it (`motion_history`)."""
        b, t, _, height, width = sample.shape
        if height % self.config["patch"] or width % self.config["patch"]:
            raise ValueError(
                f"latent height and width must be multiples of {self.config['patch']}, got {height}x{width}"
            )
        if bool(self.config["context"]) != (history is not None):
            raise ValueError(
                "an autoregressive reasoner (context > 0) needs `history`; a joint one takes none"
                f" (context={self.config['context']})"
            )
        x, emb = conditioned_input(self, sample, first_latent, timestep, family, frame_index, history)
        for block in self.blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(block, x, emb, use_reentrant=False)
            else:
                x = block(x, emb)
        return self._unpatchify(self.proj_out(F.silu(self.norm_out(x))))

    def encode_first_frame(self, first_frame: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1] (any size) -> [B, C, h, w] latents at `size` (default the trained one)."""
        return self.codec.encode(resize_frames(first_frame, size or self.config["size"]))

    def latent_changes(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training data: [B, T, 3, H, W] in [0, 1] -> (z0 [B, C, h, w], changes [B, T, C, h, w])."""
        latents = encode_video(self.codec, video)
        return latents[:, 0], latents - latents[:, :1]


def motion_history(changes: torch.Tensor) -> torch.Tensor:
    """[B, T, C, h, w] latent changes of the frames so far -> [B, C, h, w] their largest |change|:
    where anything has been (a motion-history image). What an autoregressive model cannot see in its
    few context frames: which targets were visited, whether the key was picked up."""
    return changes.abs().amax(1)


def context_window(frame: int, context: int) -> list[int]:
    """Indices of the frames an autoregressive model sees when generating `frame`: the `context`
    frames before it (frame 0 repeated near the start) and the frame itself."""
    return [max(0, frame - context + n) for n in range(context)] + [frame]


def widen_to_autoregressive(joint: LatentReasonerModel, context: int) -> LatentReasonerModel:
    """A joint model's weights as the start of an autoregressive one: the same modules, and the
    input projection's new motion-history channels zero (so it starts as the joint model sees a window)."""
    config = {k: v for k, v in joint.config.items() if not k.startswith("_")}
    model = LatentReasonerModel(**{**config, "context": context})
    state = joint.state_dict()
    weight = state["proj_in.weight"]
    wide = torch.zeros_like(model.proj_in.weight)
    wide[:, : weight.shape[1]] = weight
    state["proj_in.weight"] = wide
    model.load_state_dict(state)
    return model


MOVING_WEIGHT = 10.0  # what moves is a few cells of a frame; without this the loss barely sees it


def flow_matching_loss(
    model, x0: torch.Tensor, cond: torch.Tensor, family: torch.Tensor | None, moving: torch.Tensor
) -> torch.Tensor:
    """Rectified-flow loss: x_σ = (1 - σ)·x₀ + σ·ε, σ logit-normal, the model predicts ε - x₀.

    Works for either reasoner (v1: x0 pixels, cond the first frame; v2: x0 latent changes, cond
    z0); `moving` (broadcastable to x0, 1 where something moves) weighs MOVING_WEIGHT times more.
    Used by training (scripts/train_reasoner.py) and by fitting a LoRA to one video (benchmarks).
    """
    sigma = torch.sigmoid(torch.randn(x0.shape[0], device=x0.device))[:, None, None, None, None]
    noise = torch.randn_like(x0)
    prediction = model((1 - sigma) * x0 + sigma * noise, sigma.flatten() * 1000, cond, family)
    weight = 1 + MOVING_WEIGHT * moving
    return (weight * (prediction - (noise - x0)) ** 2).mean() / weight.mean()


def next_frame_loss(
    model,
    z0: torch.Tensor,
    changes: torch.Tensor,
    family: torch.Tensor | None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The autoregressive reasoner's rectified-flow loss: for each video [B, T, C, h, w] one random
    frame f ≥ 1 is noised (σ logit-normal) and predicted from its `context` clean frames before it
    (half the time lightly noised, σ ≤ 0.1, so the model tolerates its own imperfect frames) and the
    motion history of frames < f. What moves in frame f or f - 1 weighs MOVING_WEIGHT times more."""
    b, t = changes.shape[:2]
    k = model.config["context"]
    g, device = generator, changes.device
    frames = torch.randint(1, t, (b,), generator=g, device=device)
    window = torch.stack([torch.tensor(context_window(int(f), k)) for f in frames]).to(device)  # [B, K + 1]
    x0 = changes[torch.arange(b)[:, None], window]  # [B, K + 1, C, h, w]
    history = changes.abs().cummax(1).values[torch.arange(b), frames - 1]
    sigma = torch.sigmoid(torch.randn(b, generator=g, device=device))
    lightly = torch.rand(b, generator=g, device=device) < 0.5
    context_sigma = 0.1 * torch.rand(b, generator=g, device=device) * lightly
    sigmas = torch.cat([context_sigma[:, None].expand(b, k), sigma[:, None]], dim=1)  # [B, K + 1]
    noise = torch.randn(x0.shape, generator=g, device=device)
    s = sigmas[:, :, None, None, None]
    prediction = model((1 - s) * x0 + s * noise, sigmas * 1000, z0, family, window, history)
    target = noise[:, -1] - x0[:, -1]
    moving = torch.maximum(moving_mask(x0[:, -1:]), moving_mask(x0[:, -2:-1]))[:, 0]
    weight = 1 + MOVING_WEIGHT * moving
    return (weight * (prediction[:, -1] - target) ** 2).mean() / weight.mean()


def moving_mask(changes: torch.Tensor) -> torch.Tensor:
    """[B, T, C, h, w] latent changes -> [B, T, 1, h, w] 1 where the latent changed."""
    return (changes.abs().sum(2, keepdim=True) > 0.1).float()


def sample_noise(batch: int, frames: int, shape: tuple[int, int, int], seed: int, device=None) -> torch.Tensor:
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(batch, frames, *shape, generator=generator).to(device or "cpu")
