"""Adapter for diffusers' CogVideoX image-to-video models (CogVideoXImageToVideoPipeline parts).

Conditioning (T5 prompt embeddings, first-frame latents, rotary embeddings) comes from the
pipeline's own helpers once per task, without gradient. The loop is written here because
`__call__` runs under no_grad: CogVideoX is v-prediction, stepped with the (stateless, eta=0)
`CogVideoXDDIMScheduler` — its multistep DPM scheduler carries state across steps and is not
used for gradients. `set_timesteps` runs before every rollout; the last `grad_steps` transformer
calls and the VAE decode keep the graph; no classifier-free guidance (one call per step).
"""

from __future__ import annotations

import torch

from ruledsl.runtime.generators import Condition, DiffusersI2VGenerator, first_frame_pil, latents_to_video


class CogVideoXI2VGenerator(DiffusersI2VGenerator):
    pipeline_class = "CogVideoXImageToVideoPipeline"

    def make_scheduler(self, pipeline):
        from diffusers import CogVideoXDDIMScheduler

        return CogVideoXDDIMScheduler.from_config(pipeline.scheduler.config)

    def frame_count(self, condition: Condition) -> int:
        frames = super().frame_count(condition)
        patch_t = self.pipe.transformer.config.patch_size_t
        latent_frames = (frames - 1) // self.temporal_compression + 1
        if patch_t is not None and latent_frames % patch_t:  # CogVideoX 1.5 packs latent frames in pairs
            frames += (patch_t - latent_frames % patch_t) * self.temporal_compression
        return frames

    def _unit(self) -> int:
        return self.pipe.vae_scale_factor_spatial * self.pipe.transformer.config.patch_size

    def initial_noise(self, condition: Condition, seed: int) -> torch.Tensor:
        s = self.pipe.vae_scale_factor_spatial
        h, w = self.pixel_size(condition, self._unit())
        frames = (self.frame_count(condition) - 1) // self.temporal_compression + 1
        return self.seeded_noise((1, frames, self.pipe.transformer.config.in_channels // 2, h // s, w // s), seed)

    def _condition(self, condition: Condition, batch: int):
        pipe = self.pipe
        h, w = self.pixel_size(condition, self._unit())
        device = pipe.transformer.device
        prompt_embeds, _ = pipe.encode_prompt(
            condition.prompt or "",
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length,
            device=device,
        )
        image = pipe.video_processor.preprocess(first_frame_pil(condition.first_frame), height=h, width=w).to(device)
        noise = self.initial_noise(condition, 0).expand(batch, -1, -1, -1, -1)
        _, image_latents = pipe.prepare_latents(
            image,
            batch,
            pipe.transformer.config.in_channels // 2,
            self.frame_count(condition),
            h,
            w,
            prompt_embeds.dtype,
            device,
            torch.Generator(device="cpu").manual_seed(0),
            noise,
        )
        rotary = (
            pipe._prepare_rotary_positional_embeddings(h, w, noise.shape[1], device)
            if pipe.transformer.config.use_rotary_positional_embeddings
            else None
        )
        ofs = None if pipe.transformer.config.ofs_embed_dim is None else noise.new_full((1,), 2.0)
        return prompt_embeds.repeat(batch, 1, 1), image_latents, rotary, ofs

    def rollout(self, condition: Condition, noise: torch.Tensor, grad_steps: int = 0) -> torch.Tensor:
        prompt_embeds, image_latents, rotary, ofs = self.prepared(condition, noise.shape[0])
        self.scheduler.set_timesteps(self.steps, device=noise.device)
        latents = noise * self.scheduler.init_noise_sigma
        for i, t in enumerate(self.scheduler.timesteps):
            with torch.set_grad_enabled(torch.is_grad_enabled() and i >= self.steps - grad_steps):
                model_input = torch.cat([self.scheduler.scale_model_input(latents, t), image_latents], dim=2)
                v = self.pipe.transformer(
                    hidden_states=model_input,
                    encoder_hidden_states=prompt_embeds,
                    timestep=t.expand(latents.shape[0]),
                    ofs=ofs,
                    image_rotary_emb=rotary,
                    return_dict=False,
                )[0]
                latents = self.scheduler.step(v, t, latents, eta=0.0, return_dict=False)[0]
        with torch.set_grad_enabled(torch.is_grad_enabled() and grad_steps > 0):
            if self.decoder is not None:
                return self.decoder(latents)
            return latents_to_video(self.pipe.decode_latents(latents))
