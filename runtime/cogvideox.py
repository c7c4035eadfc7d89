"""Adapter for diffusers' CogVideoX image-to-video models (CogVideoXImageToVideoPipeline parts).

Conditioning (T5 prompt embeddings, first-frame latents, rotary embeddings) comes from the
pipeline once per task. CogVideoX is v-prediction, stepped with the stateless (eta = 0)
`CogVideoXDDIMScheduler`: its multistep DPM scheduler carries state across steps and is not used
for gradients. One transformer call per step (no classifier-free guidance); latents are
[B, F, C, H, W] (frames before channels), decoded by the pipeline's public `decode_latents`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ruledsl.runtime.generators import Condition, DiffusersI2VGenerator, latents_to_video


class CogVideoXConditioning(NamedTuple):
    prompt_embeds: torch.Tensor
    image_latents: torch.Tensor  # first-frame latents, zero-padded over the frames; concatenated on channels
    rotary: tuple[torch.Tensor, torch.Tensor] | None
    ofs: torch.Tensor | None  # CogVideoX 1.5's offset embedding input


def rotary_embeddings(pipe, height: int, width: int, latent_frames: int, device):
    """The transformer's 3-D rotary position embeddings for this size. diffusers 0.42 has no public
    API for them: this is the adapter's only call of a private pipeline method, so a diffusers
    change breaks here and nowhere else."""
    return pipe._prepare_rotary_positional_embeddings(height, width, latent_frames, device)


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

    def encode(self, condition: Condition, batch: int) -> CogVideoXConditioning:
        pipe = self.pipe
        h, w = self.pixel_size(condition, self._unit())
        prompt_embeds, _ = pipe.encode_prompt(
            condition.prompt or "",
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length,
            device=self.device,
            dtype=self.dtype,
        )
        noise = self.initial_noise(condition, 0)
        _, image_latents = pipe.prepare_latents(  # for one video (it encodes one image per batch entry)
            self.first_frame(condition, h, w),
            1,
            pipe.transformer.config.in_channels // 2,
            self.frame_count(condition),
            h,
            w,
            torch.float32,
            self.device,
            torch.Generator(device="cpu").manual_seed(0),
            noise,
        )
        config = pipe.transformer.config
        rotary = (
            rotary_embeddings(pipe, h, w, noise.shape[1], self.device)
            if config.use_rotary_positional_embeddings
            else None
        )
        ofs = None if config.ofs_embed_dim is None else noise.new_full((1,), 2.0)
        return CogVideoXConditioning(
            prompt_embeds.repeat(batch, 1, 1), image_latents.repeat(batch, 1, 1, 1, 1), rotary, ofs
        )

    def start(self, noise, conditioning):
        return noise * self.scheduler.init_noise_sigma

    def predict(self, latents, t, conditioning: CogVideoXConditioning):
        model_input = torch.cat([self.scheduler.scale_model_input(latents, t), conditioning.image_latents], dim=2)
        return self.pipe.transformer(
            hidden_states=model_input.to(self.dtype),
            encoder_hidden_states=conditioning.prompt_embeds,
            timestep=t.expand(latents.shape[0]),
            ofs=conditioning.ofs,
            image_rotary_emb=conditioning.rotary,
            return_dict=False,
        )[0]

    def decode(self, latents, conditioning):
        if self.decoder is not None:
            return self.decoder(latents)
        return latents_to_video(self.pipe.decode_latents(latents.to(self.pipe.vae.dtype)))
