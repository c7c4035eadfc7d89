"""A tiny random-weight Wan image-to-video pipeline built from configs (no downloads), for tests."""

import torch


def word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<unk>", "</s>", "move", "the", "red", "agent", "to", "green", "goal", "a", "maze"]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>", eos_token="</s>")


def tiny_wan_pipeline(image_encoder: bool = True, seed: int = 0):
    """Wan 2.1-style I2V (CLIP image encoder) when `image_encoder`, else Wan 2.2-style `expand_timesteps`."""
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanImageToVideoPipeline,
        WanTransformer3DModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    z = 4
    vae = AutoencoderKLWan(
        base_dim=8,
        z_dim=z,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.0] * z,
        latents_std=[1.0] * z,
    )
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=16, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, relative_attention_num_buckets=8
        )
    )
    kwargs = dict(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=8,
        out_channels=z,
        text_dim=16,
        freq_dim=16,
        ffn_dim=32,
        num_layers=1,
        rope_max_seq_len=32,
    )
    if image_encoder:
        transformer = WanTransformer3DModel(in_channels=2 * z + 4, image_dim=16, added_kv_proj_dim=16, **kwargs)
        encoder = CLIPVisionModel(
            CLIPVisionConfig(
                hidden_size=16,
                intermediate_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=32,
                patch_size=8,
            )
        )
        processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    else:
        transformer = WanTransformer3DModel(in_channels=z, **kwargs)
        encoder = processor = None
    return WanImageToVideoPipeline(
        tokenizer=word_tokenizer(),
        text_encoder=text_encoder,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        image_processor=processor,
        image_encoder=encoder,
        transformer=transformer,
        expand_timesteps=not image_encoder,
    )
