"""Adapter for diffusers' Wan image-to-video models (Wan 2.1 I2V with a CLIP image encoder,
and Wan 2.2-style `expand_timesteps` models without one).

`__call__` runs under no_grad, so this drives the pipeline's parts by hand: conditioning
(text, image, first-frame latents) comes from the pipeline's own helpers once per task; the
loop is flow-matching Euler (`FlowMatchEulerDiscreteScheduler`, `set_timesteps` before every
rollout; Wan's default UniPC keeps history across steps and is not used for gradients); the
last `grad_steps` transformer calls and the VAE decode keep the graph. No classifier-free
guidance: one transformer call per step.
"""

from __future__ import annotations

import torch

from ruledsl.runtime.generators import Condition, DiffusersI2VGenerator, first_frame_pil, latents_to_video


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

    def _condition(self, condition: Condition, batch: int):
        pipe = self.pipe
        h, w = self.pixel_size(condition, 2 * pipe.vae_scale_factor_spatial)
        device = pipe.transformer.device
        prompt_embeds, _ = pipe.encode_prompt(
            prompt=condition.prompt or "",
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length,
            device=device,
        )
        pil = first_frame_pil(condition.first_frame)
        image_embeds = pipe.encode_image(pil, device).repeat(batch, 1, 1) if pipe.transformer.config.image_dim else None
        image = pipe.video_processor.preprocess(pil, height=h, width=w).to(device, dtype=torch.float32)
        noise = self.initial_noise(condition, 0).expand(batch, -1, -1, -1, -1)
        outputs = pipe.prepare_latents(
            image, batch, pipe.vae.config.z_dim, h, w, self.frame_count(condition), torch.float32, device, None, noise
        )
        return prompt_embeds.repeat(batch, 1, 1), image_embeds, outputs[1:]

    def rollout(self, condition: Condition, noise: torch.Tensor, grad_steps: int = 0) -> torch.Tensor:
        pipe = self.pipe
        prompt_embeds, image_embeds, cond = self.prepared(condition, noise.shape[0])
        expand = pipe.config.expand_timesteps
        self.scheduler.set_timesteps(self.steps, device=noise.device)
        latents = noise
        for i, t in enumerate(self.scheduler.timesteps):
            with torch.set_grad_enabled(torch.is_grad_enabled() and i >= self.steps - grad_steps):
                if expand:
                    condition_latents, first_frame_mask = cond
                    model_input = (1 - first_frame_mask) * condition_latents + first_frame_mask * latents
                    timestep = (first_frame_mask[0][0][:, ::2, ::2] * t).flatten()[None].expand(latents.shape[0], -1)
                else:
                    model_input = torch.cat([latents, cond[0]], dim=1)
                    timestep = t.expand(latents.shape[0])
                velocity = pipe.transformer(
                    hidden_states=model_input,
                    timestep=timestep,
                    encoder_hidden_states=prompt_embeds,
                    encoder_hidden_states_image=image_embeds,
                    return_dict=False,
                )[0]
                latents = self.scheduler.step(velocity, t, latents, return_dict=False)[0]
        if expand:
            condition_latents, first_frame_mask = cond
            latents = (1 - first_frame_mask) * condition_latents + first_frame_mask * latents
        with torch.set_grad_enabled(torch.is_grad_enabled() and grad_steps > 0):
            return self.decode(latents)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        if self.decoder is not None:
            return self.decoder(latents)
        vae = self.pipe.vae
        mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1).to(latents)
        std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1).to(latents)
        return latents_to_video(vae.decode(latents * std + mean, return_dict=False)[0])
