"""Adapter for diffusers' LTX-Video image-to-video models (LTXImageToVideoPipeline parts).

LTX works on packed latent tokens; the first latent frame holds the encoded first image and is
kept fixed through a per-token timestep of 0 (the conditioning mask). Conditioning (T5 prompt
embeddings and mask, the encoded image) comes from the pipeline once per task, without gradient;
the flow-matching Euler loop (`set_timesteps` with the pipeline's resolution-dependent shift
before every rollout) and the VAE decode are written here so the last `grad_steps` keep the graph.
No classifier-free guidance (one transformer call per step); decoding uses decode timestep 0
without noise, so a seed gives one video.
"""

from __future__ import annotations

import numpy as np
import torch

from ruledsl.runtime.generators import Condition, DiffusersI2VGenerator, first_frame_pil, latents_to_video


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

    def _condition(self, condition: Condition, batch: int):
        from diffusers.pipelines.ltx.pipeline_ltx_image2video import retrieve_latents

        pipe = self.pipe
        h, w, _ = self._size(condition)
        device = pipe.transformer.device
        embeds, mask, _, _ = pipe.encode_prompt(
            condition.prompt or "",
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length,
            device=device,
        )
        image = pipe.video_processor.preprocess(first_frame_pil(condition.first_frame), height=h, width=w).to(device)
        encoded = retrieve_latents(pipe.vae.encode(image[:, :, None]), sample_mode="argmax")
        encoded = pipe._normalize_latents(encoded, pipe.vae.latents_mean, pipe.vae.latents_std)
        return embeds.repeat(batch, 1, 1), mask.repeat(batch, 1), encoded.repeat(batch, 1, 1, 1, 1)

    def rollout(self, condition: Condition, noise: torch.Tensor, grad_steps: int = 0) -> torch.Tensor:
        from diffusers.pipelines.ltx.pipeline_ltx_image2video import calculate_shift

        pipe = self.pipe
        embeds, text_mask, image_latents = self.prepared(condition, noise.shape[0])
        _, _, (f, h, w) = self._size(condition)
        p, pt = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
        first = torch.zeros_like(noise[:, :1])
        first[:, :, 0] = 1.0  # the conditioning frame
        latents = pipe._pack_latents(image_latents.expand(-1, -1, f, -1, -1) * first + noise * (1 - first), p, pt)
        cond_mask = pipe._pack_latents(first, p, pt).squeeze(-1)
        config = self.scheduler.config
        mu = calculate_shift(
            f * h * w,
            config.get("base_image_seq_len", 256),
            config.get("max_image_seq_len", 4096),
            config.get("base_shift", 0.5),
            config.get("max_shift", 1.15),
        )
        self.scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / self.steps, self.steps), mu=mu, device=noise.device)
        rope = (
            pipe.vae_temporal_compression_ratio / self.frame_rate,
            pipe.vae_spatial_compression_ratio,
            pipe.vae_spatial_compression_ratio,
        )
        for i, t in enumerate(self.scheduler.timesteps):
            with torch.set_grad_enabled(torch.is_grad_enabled() and i >= self.steps - grad_steps):
                timestep = t.expand(latents.shape[0])[:, None] * (1 - cond_mask)
                velocity = pipe.transformer(
                    hidden_states=latents,
                    encoder_hidden_states=embeds,
                    timestep=timestep,
                    encoder_attention_mask=text_mask,
                    num_frames=f,
                    height=h,
                    width=w,
                    rope_interpolation_scale=rope,
                    return_dict=False,
                )[0]
                velocity = pipe._unpack_latents(velocity, f, h, w, p, pt)
                unpacked = pipe._unpack_latents(latents, f, h, w, p, pt)
                stepped = self.scheduler.step(velocity[:, :, 1:], t, unpacked[:, :, 1:], return_dict=False)[0]
                latents = pipe._pack_latents(torch.cat([unpacked[:, :, :1], stepped], dim=2), p, pt)
        with torch.set_grad_enabled(torch.is_grad_enabled() and grad_steps > 0):
            latents = pipe._unpack_latents(latents, f, h, w, p, pt)
            if self.decoder is not None:
                return self.decoder(latents)
            latents = pipe._denormalize_latents(
                latents, pipe.vae.latents_mean, pipe.vae.latents_std, pipe.vae.config.scaling_factor
            )
            timestep = latents.new_zeros(latents.shape[0]) if pipe.vae.config.timestep_conditioning else None
            return latents_to_video(pipe.vae.decode(latents, timestep, return_dict=False)[0])
