"""Adapter for diffusers' LTX-Video image-to-video models (LTXImageToVideoPipeline parts).

LTX works on packed latent tokens; the first latent frame holds the encoded first image and is
kept fixed through a per-token timestep of 0 (the conditioning mask) and by stepping only the
other frames. Conditioning (T5 prompt embeddings and mask, the encoded image) comes from the
pipeline once per task. The sampler is flow-matching Euler with LTX's resolution-dependent
shift. One transformer call per step (no classifier-free guidance); decoding uses decode
timestep 0 without noise, so a seed gives one video.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ruledsl.runtime.generators import Condition, DiffusersI2VGenerator, latents_to_video


class LTXInternals:
    """What LTX sampling needs that diffusers 0.42 has no public API for: the packed-token layout
    of latents ([B, C, F, H, W] <-> [B, F·H·W / patches, C·patches], the pipeline's private
    `_pack_latents` / `_unpack_latents`) and the resolution-dependent timestep shift
    (`calculate_shift` of the pipeline module). This class is the adapter's only use of diffusers
    internals, so a diffusers change breaks here and nowhere else."""

    def __init__(self, pipe, frames: int, height: int, width: int):
        self.pipe, self.frames, self.height, self.width = pipe, frames, height, width
        self.patch, self.patch_t = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size

    def pack(self, latents: torch.Tensor) -> torch.Tensor:
        return self.pipe._pack_latents(latents, self.patch, self.patch_t)

    def unpack(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.pipe._unpack_latents(tokens, self.frames, self.height, self.width, self.patch, self.patch_t)

    def shift(self, config) -> float:
        """mu for `set_timesteps`: linear in the latent sequence length, from the scheduler's config."""
        from diffusers.pipelines.ltx.pipeline_ltx_image2video import calculate_shift

        return calculate_shift(
            self.frames * self.height * self.width,
            config.get("base_image_seq_len", 256),
            config.get("max_image_seq_len", 4096),
            config.get("base_shift", 0.5),
            config.get("max_shift", 1.15),
        )


class LTXConditioning(NamedTuple):
    prompt_embeds: torch.Tensor
    prompt_mask: torch.Tensor
    image_latents: torch.Tensor  # [B, C, 1, h, w], normalized
    first: torch.Tensor  # [1, 1, F, 1, 1]-broadcastable: 1 on the conditioning (first) latent frame
    token_mask: torch.Tensor  # the same, packed per token: the timestep is 0 where it is 1
    tokens: LTXInternals


def normalize_latents(latents: torch.Tensor, vae) -> torch.Tensor:
    """The encoder's latents -> the transformer's scale (per-channel mean and std from the VAE)."""
    mean = vae.latents_mean.view(1, -1, 1, 1, 1).to(latents)
    std = vae.latents_std.view(1, -1, 1, 1, 1).to(latents)
    return (latents - mean) / std


def denormalize_latents(latents: torch.Tensor, vae) -> torch.Tensor:
    """The transformer's scale -> what the VAE decodes (its scaling factor included)."""
    mean = vae.latents_mean.view(1, -1, 1, 1, 1).to(latents)
    std = vae.latents_std.view(1, -1, 1, 1, 1).to(latents)
    return latents * std / vae.config.scaling_factor + mean


class LTXI2VGenerator(DiffusersI2VGenerator):
    pipeline_class = "LTXImageToVideoPipeline"

    def __init__(self, pipeline, frame_rate: int = 25, **kwargs):
        self.frame_rate = frame_rate
        super().__init__(pipeline, **{"max_sequence_length": 32, **kwargs})

    def make_scheduler(self, pipeline):
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler.from_config(pipeline.scheduler.config)

    def _size(self, condition: Condition) -> tuple[int, int, tuple[int, int, int]]:
        """Pixel height and width, and the latent (frames, height, width)."""
        s = self.pipe.vae_spatial_compression_ratio
        h, w = self.pixel_size(condition, s)
        return h, w, ((self.frame_count(condition) - 1) // self.temporal_compression + 1, h // s, w // s)

    def initial_noise(self, condition: Condition, seed: int) -> torch.Tensor:
        _, _, (f, h, w) = self._size(condition)
        return self.seeded_noise((1, self.pipe.transformer.config.in_channels, f, h, w), seed)

    def encode(self, condition: Condition, batch: int) -> LTXConditioning:
        pipe = self.pipe
        h, w, (f, lh, lw) = self._size(condition)
        embeds, mask, _, _ = pipe.encode_prompt(
            condition.prompt or "",
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length,
            device=self.device,
            dtype=self.dtype,
        )
        image = self.first_frame(condition, h, w)
        encoded = pipe.vae.encode(image[:, :, None]).latent_dist.mode().float()  # the mean: deterministic
        first = torch.zeros(1, 1, f, 1, 1, device=self.device)
        first[:, :, 0] = 1.0
        tokens = LTXInternals(pipe, f, lh, lw)
        token_mask = tokens.pack(first.expand(batch, 1, f, lh, lw)).squeeze(-1)
        return LTXConditioning(
            embeds.repeat(batch, 1, 1),
            mask.repeat(batch, 1),
            normalize_latents(encoded, pipe.vae).repeat(batch, 1, 1, 1, 1),
            first,
            token_mask,
            tokens,
        )

    def timesteps(self, noise, conditioning: LTXConditioning):
        mu = conditioning.tokens.shift(self.scheduler.config)
        self.scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / self.steps, self.steps), mu=mu, device=noise.device)
        return self.scheduler.timesteps

    def start(self, noise, conditioning: LTXConditioning):
        first = conditioning.first
        return conditioning.tokens.pack(conditioning.image_latents * first + noise * (1 - first))

    def predict(self, latents, t, conditioning: LTXConditioning):
        tokens = conditioning.tokens
        s = self.pipe.vae_spatial_compression_ratio
        return self.pipe.transformer(
            hidden_states=latents.to(self.dtype),
            encoder_hidden_states=conditioning.prompt_embeds,
            timestep=t.expand(latents.shape[0])[:, None] * (1 - conditioning.token_mask),
            encoder_attention_mask=conditioning.prompt_mask,
            num_frames=tokens.frames,
            height=tokens.height,
            width=tokens.width,
            rope_interpolation_scale=(self.pipe.vae_temporal_compression_ratio / self.frame_rate, s, s),
            return_dict=False,
        )[0]

    def step(self, prediction, t, latents, conditioning: LTXConditioning):
        """Step every latent frame but the first (the image), in the unpacked layout."""
        tokens = conditioning.tokens
        velocity, unpacked = tokens.unpack(prediction), tokens.unpack(latents)
        stepped = self.scheduler.step(velocity[:, :, 1:], t, unpacked[:, :, 1:], return_dict=False)[0]
        return tokens.pack(torch.cat([unpacked[:, :, :1], stepped], dim=2))

    def decode(self, latents, conditioning: LTXConditioning):
        latents = conditioning.tokens.unpack(latents)
        if self.decoder is not None:
            return self.decoder(latents)
        vae = self.pipe.vae
        latents = denormalize_latents(latents, vae).to(vae.dtype)
        timestep = latents.new_zeros(latents.shape[0]) if vae.config.timestep_conditioning else None
        return latents_to_video(vae.decode(latents, timestep, return_dict=False)[0])
