"""A tiny random-weight CogVideoX image-to-video pipeline built from configs (no downloads), for tests."""

import torch
from tiny_wan import word_tokenizer


def tiny_cogvideox_pipeline(seed: int = 0):
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXImageToVideoPipeline,
        CogVideoXTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    z = 4
    vae = AutoencoderKLCogVideoX(
        block_out_channels=(8, 8, 8, 8),
        latent_channels=z,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
        sample_height=32,
        sample_width=32,
    )
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=16, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, relative_attention_num_buckets=8
        )
    )
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=2 * z,
        out_channels=z,
        time_embed_dim=8,
        text_embed_dim=16,
        num_layers=1,
        sample_width=4,
        sample_height=4,
        sample_frames=9,
        patch_size=2,
        max_text_seq_length=32,
        use_rotary_positional_embeddings=True,
    )
    return CogVideoXImageToVideoPipeline(
        tokenizer=word_tokenizer(),
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=CogVideoXDDIMScheduler(),
    )
