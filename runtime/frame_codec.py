"""The v2 reasoner's frame autoencoder: 64x64 RGB frames <-> 4x16x16 latents, decoding to flat colours.

A diffusers `AutoencoderTiny` (per-frame 2-D, 4x spatial downsampling from three stages), whose
decoder outputs one logit per palette colour instead of RGB. The image is the softmax-weighted
mix of the palette: near one-hot in practice, so the decoder always draws clean flat cells (no
colour bleed, no in-between shades that the colour-matching scorers would read as something
else), and it stays differentiable, so compiled rule losses backpropagate through it.

Why `AutoencoderTiny` and not `AutoencoderKL`: the runtime decodes every rollout (16 frames and
more) and backpropagates through the decode on every LoRA step, on a CPU. The tiny decoder is a
plain conv stack (no attention, no group norms, no sampling), measured at ~80 ms per 16 frames
(/work/shared/facts.md); a KL decoder with mid-block attention costs several times that.
The frames are flat colour grids, so a deterministic latent (no KL term) is all we need.

The palette is stored in the config, so a saved codec knows the colours it draws.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import AutoencoderTiny, ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config


def default_palette() -> list[list[int]]:
    from ruledsl.tasks.families import PALETTE

    return [list(rgb) for rgb in PALETTE.values()]


class PaletteAutoencoder(ModelMixin, ConfigMixin):
    """encode: frames [N, 3, H, W] in [0, 1] -> latents [N, C, H/4, W/4] (unit scale);
    decode: latents -> frames [N, 3, H, W] in [0, 1] drawn from the palette."""

    @register_to_config
    def __init__(
        self,
        palette: list[list[int]] | None = None,
        latent_channels: int = 4,
        encoder_channels: int = 16,
        decoder_channels: int = 32,
        encoder_blocks: tuple[int, ...] = (0, 1, 2),
        decoder_blocks: tuple[int, ...] = (1, 1, 1),
        latent_mean: float = 0.0,
        latent_std: float = 1.0,
        temperature: float = 1.0,
    ):
        super().__init__()
        if palette is None:
            palette = default_palette()
            self.register_to_config(palette=palette)
        self.register_buffer("palette_rgb", torch.tensor(palette, dtype=torch.float32) / 255.0, persistent=False)
        self.vae = AutoencoderTiny(
            in_channels=3,
            out_channels=len(palette),
            encoder_block_out_channels=(encoder_channels,) * len(encoder_blocks),
            decoder_block_out_channels=(decoder_channels,) * len(decoder_blocks),
            num_encoder_blocks=tuple(encoder_blocks),
            num_decoder_blocks=tuple(decoder_blocks),
            latent_channels=latent_channels,
        )

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.config["encoder_blocks"]) - 1)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        raw = self.vae.encoder(frames * 2 - 1)  # type: ignore[attr-defined]  # set in AutoencoderTiny.__init__
        return (raw - self.config["latent_mean"]) / self.config["latent_std"]

    def decode_logits(self, latents: torch.Tensor) -> torch.Tensor:
        """[N, C, h, w] -> palette logits [N, K, 4h, 4w]."""
        raw = latents * self.config["latent_std"] + self.config["latent_mean"]
        # Channels-last input: oneDNN's convolutions run ~35 % faster on it on a CPU (same values up
        # to float rounding); the logits come back in the default layout.
        raw = raw.contiguous(memory_format=torch.channels_last)
        return self.vae.decoder(raw).contiguous()  # type: ignore[attr-defined]

    def logits_to_frames(self, logits: torch.Tensor, temperature: float | None = None) -> torch.Tensor:
        weights = torch.softmax(logits / (temperature or self.config["temperature"]), dim=1)
        return torch.einsum("nkhw,kc->nchw", weights, self.palette_rgb.to(logits.dtype))

    def decode(self, latents: torch.Tensor, temperature: float | None = None) -> torch.Tensor:
        return self.logits_to_frames(self.decode_logits(latents), temperature)

    def palette_index(self, frames: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [0, 1] -> [N, H, W] index of the nearest palette colour (training targets)."""
        distance = (frames[:, None] - self.palette_rgb[None, :, :, None, None]).pow(2).sum(2)
        return distance.argmin(1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(frames))


def decode_video(codec: PaletteAutoencoder, latents: torch.Tensor, temperature: float | None = None) -> torch.Tensor:
    """[B, T, C, h, w] latents -> [B, T, 3, H, W] frames in [0, 1], one decoder call per frame.

    Why one at a time: batched convolutions round differently (by ~1e-6) with the batch, so a frame
    decoded alone (as frame guidance draws them, runtime/frame_guide.py) would not be exactly that
    frame of the decoded video; per frame it is, whatever else is decoded. On a CPU it costs no more
    (measured: the same at 64 px, ~25 % less at 96 px, where a frame's activations stay in cache)."""
    b, t = latents.shape[:2]
    frames = torch.cat([codec.decode(frame[None], temperature) for frame in latents.flatten(0, 1)])
    return frames.view(b, t, *frames.shape[1:])


def encode_video(codec: PaletteAutoencoder, video: torch.Tensor) -> torch.Tensor:
    """[B, T, 3, H, W] in [0, 1] -> [B, T, C, h, w] latents."""
    b, t = video.shape[:2]
    latents = codec.encode(video.flatten(0, 1))
    return latents.view(b, t, *latents.shape[1:])


def resize_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Resize [N, 3, H, W] to size x size by area (down) or nearest (up): what the codec takes."""
    if frames.shape[-2:] == (size, size):
        return frames
    mode = "area" if frames.shape[-1] > size else "nearest"
    return F.interpolate(frames, size=(size, size), mode=mode)
