"""Adapter for diffusers' Wan image-to-video models (Wan 2.1 I2V with a CLIP image encoder,
and Wan 2.2-style `expand_timesteps` models without one).

The pipeline's `__call__` runs under no_grad, so this drives its parts by hand: conditioning
(text, image, first-frame latents) comes from the pipeline's own helpers once per task
(no gradient); the denoising loop is flow-matching Euler (`FlowMatchEulerDiscreteScheduler`,
`set_timesteps` before every rollout; Wan's default UniPC keeps history across steps and is not
used here); the last `grad_steps` transformer calls and the VAE decode keep the graph.
Classifier-free guidance is off (guidance 1): one transformer call per step. A `decoder` hook
can replace the VAE for a cheaper surrogate (latents [B, C, t, h, w] -> video [B, T, 3, H, W] in [0, 1]).
"""

from __future__ import annotations

import numpy as np
import torch

from ruledsl.runtime.generators import Condition, VideoGenerator


class WanI2VGenerator(VideoGenerator):
    lora_targets = ("to_q", "to_k", "to_v", "to_out.0")

    def __init__(self, pipeline, steps: int = 8, height: int | None = None, width: int | None = None,
                 decoder=None, max_sequence_length: int = 64):
        from diffusers import FlowMatchEulerDiscreteScheduler

        self.pipe = pipeline
        self.steps = steps
        self.height, self.width = height, width
        self.decoder = decoder
        self.max_sequence_length = max_sequence_length
        shift = pipeline.scheduler.config.get("flow_shift", pipeline.scheduler.config.get("shift", 1.0))
        self.scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
        for module in (pipeline.transformer, pipeline.vae, pipeline.text_encoder, pipeline.image_encoder):
            if module is not None:
                module.eval().requires_grad_(False)
        self._prepared: dict = {}

    @classmethod
    def from_pretrained(cls, path, **kwargs) -> "WanI2VGenerator":
        from diffusers import WanImageToVideoPipeline

        return cls(WanImageToVideoPipeline.from_pretrained(path), **kwargs)

    @property
    def denoiser(self):
        return self.pipe.transformer

    # ---- geometry -------------------------------------------------------------------------

    def _size(self, condition: Condition) -> tuple[int, int, int]:
        """Frames as 4k + 1, height and width as multiples of 16 (VAE x8, patch x2)."""
        t_scale = self.pipe.vae_scale_factor_temporal
        frames = ((max(condition.frames, 2) - 2) // t_scale + 1) * t_scale + 1
        h = self.height or condition.first_frame.shape[-2]
        w = self.width or condition.first_frame.shape[-1]
        return frames, max(16, h // 16 * 16), max(16, w // 16 * 16)

    def initial_noise(self, condition: Condition, seed: int) -> torch.Tensor:
        frames, h, w = self._size(condition)
        s = self.pipe.vae_scale_factor_spatial
        shape = (1, self.pipe.vae.config.z_dim, (frames - 1) // self.pipe.vae_scale_factor_temporal + 1, h // s, w // s)
        return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(self.pipe.transformer.device)

    # ---- conditioning, once per task ------------------------------------------------------

    @torch.no_grad()
    def _prepare(self, condition: Condition, batch: int):
        key = (id(condition), batch)
        if key in self._prepared:
            return self._prepared[key]
        pipe = self.pipe
        frames, h, w = self._size(condition)
        device = pipe.transformer.device
        prompt_embeds, _ = pipe.encode_prompt(prompt=condition.prompt or "", do_classifier_free_guidance=False,
                                              max_sequence_length=self.max_sequence_length, device=device)
        image_embeds = None
        pil = _to_pil(condition.first_frame)
        if pipe.transformer.config.image_dim is not None:
            image_embeds = pipe.encode_image(pil, device).repeat(batch, 1, 1)
        image = pipe.video_processor.preprocess(pil, height=h, width=w).to(device, dtype=torch.float32)
        latents_shape_noise = self.initial_noise(condition, 0).expand(batch, -1, -1, -1, -1)
        outputs = pipe.prepare_latents(image, batch, pipe.vae.config.z_dim, h, w, frames, torch.float32, device,
                                       None, latents_shape_noise)
        prepared = (prompt_embeds.repeat(batch, 1, 1), image_embeds, outputs[1:])
        self._prepared = {key: prepared}  # keep only the current task
        return prepared

    # ---- the loop ---------------------------------------------------------------------------

    def rollout(self, condition: Condition, noise: torch.Tensor, grad_steps: int = 0) -> torch.Tensor:
        pipe = self.pipe
        prompt_embeds, image_embeds, cond = self._prepare(condition, noise.shape[0])
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
                velocity = pipe.transformer(hidden_states=model_input, timestep=timestep, encoder_hidden_states=prompt_embeds,
                                            encoder_hidden_states_image=image_embeds, return_dict=False)[0]
                latents = self.scheduler.step(velocity, t, latents, return_dict=False)[0]
        if expand:
            condition_latents, first_frame_mask = cond
            latents = (1 - first_frame_mask) * condition_latents + first_frame_mask * latents
        with torch.set_grad_enabled(torch.is_grad_enabled() and grad_steps > 0):
            return self.decode(latents)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> [B, T, 3, H, W] in [0, 1] (the VAE, or the surrogate `decoder`)."""
        if self.decoder is not None:
            return self.decoder(latents)
        vae = self.pipe.vae
        mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1).to(latents)
        inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1).to(latents)
        video = vae.decode(latents / inv_std + mean, return_dict=False)[0]  # [B, 3, T, H, W] in [-1, 1]
        return ((video.permute(0, 2, 1, 3, 4) + 1) / 2).clamp(0, 1)


def _to_pil(frame: torch.Tensor):
    from PIL import Image

    array = (frame.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(array)
