"""Adapter for diffusers' Wan image-to-video models (Wan 2.1 I2V with a CLIP image encoder,
and Wan 2.2-style `expand_timesteps` models without one).

Conditioning (text, image, first-frame latents) comes from the pipeline's public helpers
(`encode_prompt`, `encode_image`, `prepare_latents`) once per task. The sampler is flow-matching
Euler (`FlowMatchEulerDiscreteScheduler` with the pipeline's shift): Wan's default UniPC keeps
history across steps and is not used for gradients. One transformer call per step (no
classifier-free guidance); the VAE decode (or a surrogate `decoder`) closes the graph.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ruledsl.runtime.generators import Condition, DiffusersI2VGenerator, first_frame_pil, latents_to_video


class WanConditioning(NamedTuple):
    prompt_embeds: torch.Tensor
    image_embeds: torch.Tensor | None  # CLIP features (Wan 2.1 I2V); None for expand_timesteps models
    latents: torch.Tensor  # 2.1: mask and first-frame latents, concatenated to the input; 2.2: first-frame latents
    first_frame_mask: torch.Tensor | None  # 2.2: 0 on the first latent frame (held at the image), 1 elsewhere


class WanI2VGenerator(DiffusersI2VGenerator):
    pipeline_class = "WanImageToVideoPipeline"

    def make_scheduler(self, pipeline):
        from diffusers import FlowMatchEulerDiscreteScheduler

        shift = pipeline.scheduler.config.get("flow_shift", pipeline.scheduler.config.get("shift", 1.0))
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)

    def initial_noise(self, condition: Condition, seed: int) -> torch.Tensor:
        s = self.pipe.vae_scale_factor_spatial
        h, w = self.pixel_size(condition, 2 * s)
        frames = (self.frame_count(condition) - 1) // self.temporal_compression + 1
        return self.seeded_noise((1, self.pipe.vae.config.z_dim, frames, h // s, w // s), seed)

    def encode(self, condition: Condition, batch: int) -> WanConditioning:
        pipe = self.pipe
        h, w = self.pixel_size(condition, 2 * pipe.vae_scale_factor_spatial)
        prompt_embeds, _ = pipe.encode_prompt(
            prompt=condition.prompt or "",
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length,
            device=self.device,
            dtype=self.dtype,
        )
        pil = first_frame_pil(condition.first_frame)
        image_embeds = None
        if pipe.transformer.config.image_dim:
            image_embeds = pipe.encode_image(pil, self.device).to(self.dtype).repeat(batch, 1, 1)
        noise = self.initial_noise(condition, 0).expand(batch, -1, -1, -1, -1)
        outputs = pipe.prepare_latents(
            self.first_frame(condition, h, w),
            batch,
            pipe.vae.config.z_dim,
            h,
            w,
            self.frame_count(condition),
            torch.float32,
            self.device,
            None,
            noise,
        )
        mask = outputs[2] if pipe.config.expand_timesteps else None
        return WanConditioning(prompt_embeds.repeat(batch, 1, 1), image_embeds, outputs[1], mask)

    def predict(self, latents, t, conditioning: WanConditioning):
        mask = conditioning.first_frame_mask
        if mask is not None:  # the first latent frame is the image, at timestep 0
            model_input = (1 - mask) * conditioning.latents + mask * latents
            _, p_h, p_w = self.pipe.transformer.config.patch_size
            timestep = (mask[0][0][:, ::p_h, ::p_w] * t).flatten()[None].expand(latents.shape[0], -1)
        else:
            model_input = torch.cat([latents, conditioning.latents], dim=1)
            timestep = t.expand(latents.shape[0])
        return self.pipe.transformer(
            hidden_states=model_input.to(self.dtype),
            timestep=timestep,
            encoder_hidden_states=conditioning.prompt_embeds,
            encoder_hidden_states_image=conditioning.image_embeds,
            return_dict=False,
        )[0]

    def decode(self, latents, conditioning: WanConditioning):
        mask = conditioning.first_frame_mask
        if mask is not None:
            latents = (1 - mask) * conditioning.latents + mask * latents
        if self.decoder is not None:
            return self.decoder(latents)
        vae = self.pipe.vae
        mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1).to(latents)
        std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1).to(latents)
        return latents_to_video(vae.decode((latents * std + mean).to(vae.dtype), return_dict=False)[0])
