"""The project's small video reasoner: first frame (+ task family) -> video, in pixel space.

A pseudo-3D conv net (spatial 3x3 and temporal 3-tap convolutions) on 4x4 pixel patches,
with one spatio-temporal self-attention block at the coarse level, trained by rectified
flow (velocity = noise - data) and sampled with diffusers' FlowMatchEulerDiscreteScheduler
(the loop is `VideoGenerator.rollout`; `ReasonerGenerator` in generators.py is the adapter).
It is a diffusers `ModelMixin` + `ConfigMixin` (save_pretrained / from_pretrained,
safetensors). Attention projections are named `to_q`, `to_k`, `to_v`, `to_out.0` like
diffusers' attention, so the runtime's default LoRA targets fit it too.

Shapes: videos are [B, T, 3, H, W] in [-1, 1] inside the model; `sample()` returns [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config

FAMILY_IDS = {"maze": 0, "grid_path": 1, "avoid": 2, "two_targets": 3, "key_door": 4}
UNKNOWN_FAMILY = len(FAMILY_IDS)  # folders from other benchmarks; also dropped in training


def sinusoid(values: torch.Tensor, dim: int) -> torch.Tensor:
    """[N] -> [N, dim] sinusoidal features."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=values.device, dtype=torch.float32) / half)
    angles = values.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-spatial conv, FiLM by the embedding, GroupNorm-SiLU-temporal conv, residual."""

    def __init__(self, channels: int, embed: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, channels)
        self.spatial = nn.Conv3d(channels, channels, (1, 3, 3), padding=(0, 1, 1))
        self.film = nn.Linear(embed, 2 * channels)
        self.norm2 = nn.GroupNorm(8, channels)
        self.temporal = nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))
        nn.init.zeros_(self.temporal.weight)
        nn.init.zeros_(self.temporal.bias)  # type: ignore[arg-type]  # bias=True: a tensor

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # x: [B, C, T, h, w]
        h = self.spatial(F.silu(self.norm1(x)))
        film = self.film(emb)  # emb [B, E] (one timestep per video) or [B, T, E] (one per frame)
        film = film[:, :, None, None, None] if film.dim() == 2 else film.transpose(1, 2)[..., None, None]
        scale, shift = film.chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return x + self.temporal(F.silu(h))


class Attention(nn.Module):
    """Self-attention over all (frame, position) tokens, with diffusers-style projection names."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(8, channels)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])
        out = self.to_out[0]
        assert isinstance(out, nn.Linear)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # [B, T*h*w, C]
        q, k, v = (
            proj(tokens).view(b, -1, self.heads, c // self.heads).transpose(1, 2)
            for proj in (self.to_q, self.to_k, self.to_v)
        )
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, -1, c)
        return x + self.to_out[0](out).transpose(1, 2).reshape(b, c, t, h, w)


class ReasonerModel(ModelMixin, ConfigMixin):
    """Velocity model v(x_σ, σ, first frame, family) for rectified flow on [B, T, 3, H, W] videos."""

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        patch: int = 4,
        channels: tuple[int, int] = (96, 160),
        embed: int = 128,
        heads: int = 4,
        families: int = UNKNOWN_FAMILY + 1,
        size: int = 32,
        frames: int = 16,
    ):
        super().__init__()
        c0, c1 = channels
        tokens = 3 * patch * patch
        self.patch = patch
        self.time_mlp = nn.Sequential(nn.Linear(embed, embed), nn.SiLU(), nn.Linear(embed, embed))
        self.family_embedding = nn.Embedding(families, embed)
        self.frame_proj = nn.Linear(embed, c0)
        self.proj_in = nn.Conv3d(2 * tokens, c0, 1)
        self.down_blocks = nn.ModuleList([ResBlock(c0, embed), ResBlock(c0, embed)])
        self.downsample = nn.Conv3d(c0, c1, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.mid_blocks = nn.ModuleList([ResBlock(c1, embed), ResBlock(c1, embed)])
        self.attention = Attention(c1, heads)
        self.upsample = nn.Conv3d(c1, c0, (1, 3, 3), padding=(0, 1, 1))
        self.up_blocks = nn.ModuleList([ResBlock(c0, embed), ResBlock(c0, embed)])
        self.merge = nn.Conv3d(2 * c0, c0, 1)
        self.norm_out = nn.GroupNorm(8, c0)
        self.proj_out = nn.Conv3d(c0, tokens, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)  # type: ignore[arg-type]  # bias=True: a tensor
        self.gradient_checkpointing = False

    def _patchify(self, video: torch.Tensor) -> torch.Tensor:  # [B, T, 3, H, W] -> [B, 3p², T, h, w]
        b, t = video.shape[:2]
        x = F.pixel_unshuffle(video.flatten(0, 1), self.patch)
        return x.view(b, t, *x.shape[1:]).transpose(1, 2)

    def _unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t = x.shape[:3]
        frames = F.pixel_shuffle(x.transpose(1, 2).flatten(0, 1), self.patch)
        return frames.view(b, t, *frames.shape[1:])

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        first_frame: torch.Tensor,
        family: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """sample [B, T, 3, H, W] (noisy, [-1, 1] scale), timestep [B] in [0, 1000], first_frame [B, 3, H, W]."""
        b, t, _, height, width = sample.shape
        if height % (2 * self.patch) or width % (2 * self.patch):
            raise ValueError(f"height and width must be multiples of {2 * self.patch}, got {height}x{width}")
        x, emb = conditioned_input(self, sample, first_frame, timestep, family)
        run = self._run
        for block in self.down_blocks:
            x = run(block, x, emb)
        skip = x
        x = self.downsample(x)
        x = run(self.mid_blocks[0], x, emb)
        x = self.attention(x)
        x = run(self.mid_blocks[1], x, emb)
        x = F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest")
        x = self.merge(torch.cat([self.upsample(x), skip], dim=1))
        for block in self.up_blocks:
            x = run(block, x, emb)
        return self._unpatchify(self.proj_out(F.silu(self.norm_out(x))))

    def _run(self, block, x, emb):
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(block, x, emb, use_reentrant=False)
        return block(x, emb)


def conditioned_input(
    model,
    sample: torch.Tensor,
    cond: torch.Tensor,
    timestep: torch.Tensor,
    family,
    frame_index: torch.Tensor | None = None,
    extra: torch.Tensor | None = None,
):
    """The input stage both reasoners share (v1 here, v2 in latent_reasoner.py): the time + family
    embedding ([B, E] for a timestep per video [B], [B, T, E] for one per frame [B, T]), and the
    projected tokens of (noisy sample, per-frame copy of the condition[, of `extra`]) plus
    frame-position features of `frame_index` [T] or [B, T] (default 0..T-1), [B, C, T, h, w]. `model` has
    time_mlp, family_embedding, proj_in, frame_proj, _patchify and config["embed"]."""
    b, t = sample.shape[:2]
    if family is None:
        family = torch.full((b,), UNKNOWN_FAMILY, device=sample.device, dtype=torch.long)
    dtype = model.proj_in.weight.dtype  # the features are float32; a bf16/fp16 model computes in its dtype
    timestep = timestep.to(sample.device).float()
    if timestep.dim() == 2:  # one timestep per frame
        features = sinusoid(timestep.reshape(-1), model.config["embed"]).to(dtype)
        emb = model.time_mlp(features).view(b, t, -1) + model.family_embedding(family)[:, None]
    else:
        emb = model.time_mlp(sinusoid(timestep.expand(b), model.config["embed"]).to(dtype))
        emb = emb + model.family_embedding(family)
    inputs = [sample, cond[:, None].expand(b, t, *cond.shape[1:])]
    if extra is not None:
        inputs.append(extra[:, None].expand(b, t, *extra.shape[1:]))
    x = model.proj_in(torch.cat([model._patchify(v) for v in inputs], dim=1))
    if frame_index is None:
        frame_index = torch.arange(t, device=sample.device)
    index = frame_index.to(sample.device)  # [T], or [B, T] when each video's window differs
    features = sinusoid(index.reshape(-1) * 10.0, model.config["embed"]).to(dtype)
    frame_pos = model.frame_proj(features).view(*index.shape, -1)
    frame_pos = frame_pos if frame_pos.dim() == 3 else frame_pos[None]
    return x + frame_pos.transpose(1, 2)[..., None, None], emb


def family_ids(families: list[str | None], device=None) -> torch.Tensor:
    return torch.tensor(
        [FAMILY_IDS.get(f, UNKNOWN_FAMILY) if f else UNKNOWN_FAMILY for f in families], device=device, dtype=torch.long
    )


def make_scheduler():
    """The sampler the reasoner was trained for: flow-matching Euler, no shift (stateless, differentiable)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)


def sample_noise(batch: int, frames: int, height: int, width: int, seed: int, device=None) -> torch.Tensor:
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(batch, frames, 3, height, width, generator=generator).to(device or "cpu")
