"""Reasoner v2 on tiny random configs: palette codec, from_pretrained, sampling, decoder-in-graph gradients
to a LoRA, iteration 0 = base sample, the folder detection; the shipped weights load; training smoke runs."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT

import ruledsl
from ruledsl.runtime.frame_codec import PaletteAutoencoder, decode_video, encode_video
from ruledsl.runtime.generators import DEFAULT_REASONER, ReasonerGenerator, condition_from_instance, load_reasoner
from ruledsl.runtime.latent_reasoner import LatentReasonerModel, flow_matching_loss, moving_mask
from ruledsl.runtime.lora import attach_lora, detach_lora
from ruledsl.runtime.reasoner import ReasonerModel
from ruledsl.tasks import generate

TINY_CODEC = {"encoder_channels": 8, "decoder_channels": 8, "latent_channels": 4}


def tiny_model(seed=0, size=32):
    torch.manual_seed(seed)
    model = LatentReasonerModel(
        codec_config=TINY_CODEC, channels=16, depth=1, embed=16, heads=2, size=size, frames=4, steps=3
    )
    with torch.no_grad():  # like trained weights: the init zeroes output layers (attention out, temporal, last)
        for name, param in model.named_parameters():
            if not name.startswith("codec.") and not param.any():
                param.normal_(0, 0.2)
    return model.eval()


@pytest.fixture()
def generator():
    return ReasonerGenerator(model=tiny_model())


@pytest.fixture()
def condition():
    return condition_from_instance(generate("maze", 0, 0, "test"), size=64)


def test_codec_draws_palette_colours_and_has_4x_latents():
    codec = PaletteAutoencoder(**TINY_CODEC).eval()
    frames = torch.rand(2, 3, 32, 32)
    latents = codec.encode(frames)
    assert latents.shape == (2, 4, 8, 8)
    logits = codec.decode_logits(latents).detach()
    assert logits.shape == (2, len(codec.config.palette), 32, 32)
    palette = codec.palette_rgb
    index = torch.randint(0, len(palette), (1, 32, 32))
    frame = palette[index].permute(0, 3, 1, 2)
    # confident logits draw exactly the palette colour (no bleed); the training targets invert it
    confident = torch.nn.functional.one_hot(index, len(palette)).permute(0, 3, 1, 2).float() * 50
    assert torch.allclose(codec.logits_to_frames(confident + torch.rand_like(confident)), frame, atol=1e-6)
    assert torch.equal(codec.palette_index(frame), index)
    video = torch.rand(1, 3, 3, 32, 32)
    assert decode_video(codec, encode_video(codec, video)).shape == video.shape


def test_decode_video_frames_are_exactly_the_frames_decoded_alone():
    # Frame guidance judges frames decoded one at a time and ships them as the video: each frame of a
    # decoded batch must be bit for bit that frame decoded alone, wherever it sits in the batch.
    torch.manual_seed(0)
    codec = PaletteAutoencoder(**TINY_CODEC).eval()
    latents = torch.randn(2, 3, 4, 8, 8)
    with torch.no_grad():
        video = decode_video(codec, latents)
        for b in range(2):
            for t in range(3):
                assert torch.equal(video[b, t], decode_video(codec, latents[b : b + 1, t : t + 1])[0, 0])


def test_from_pretrained_round_trip_and_folder_detection(tmp_path, condition):
    model = tiny_model()
    model.save_pretrained(tmp_path / "v2")
    files = {p.name for p in (tmp_path / "v2").iterdir()}
    assert "diffusion_pytorch_model.safetensors" in files
    loaded = load_reasoner(tmp_path / "v2")
    assert isinstance(loaded, LatentReasonerModel)
    with torch.no_grad():
        a = ReasonerGenerator(model=model).sample(condition, 1)
        b = ReasonerGenerator(path=tmp_path / "v2").sample(condition, 1)
    assert torch.allclose(a, b, atol=1e-5)
    ReasonerModel(channels=(16, 16), embed=16, heads=2, size=16, frames=4).save_pretrained(tmp_path / "v1")
    assert isinstance(load_reasoner(tmp_path / "v1"), ReasonerModel)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(ValueError, match="not a reasoner"):
        load_reasoner(tmp_path / "bad")
    with pytest.raises(FileNotFoundError, match="no reasoner"):
        load_reasoner(tmp_path / "missing")


def test_sample_shape_range_determinism_first_frame(generator, condition):
    with torch.no_grad():
        a = generator.sample(condition, seed=5)
        b = generator.sample(condition, seed=5)
        c = generator.sample(condition, seed=6)
    assert a.shape == (1, condition.frames, 3, 32, 32)
    assert 0 <= float(a.min()) and float(a.max()) <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    first = torch.nn.functional.interpolate(condition.first_frame[None], size=(32, 32), mode="area")[0]
    assert torch.allclose(a[0, 0], first)
    # later frames are decoded latents: every pixel a softmax mix of the palette (inside its hull)
    assert generator.initial_noise(condition, 0).shape == (1, condition.frames, 4, 8, 8)


def test_v2_samples_at_another_size_and_refuses_sizes_off_its_unit(condition):
    model = tiny_model()
    big = ReasonerGenerator(model=model, size=48)  # a multiple of 4 (codec) x 2 (patch), not the trained 32
    with torch.no_grad():
        video = big.sample(condition, seed=1)
    assert video.shape == (1, condition.frames, 3, 48, 48)
    assert 0 <= float(video.min()) and float(video.max()) <= 1
    first = torch.nn.functional.interpolate(condition.first_frame[None], size=(48, 48), mode="area")[0]
    assert torch.allclose(video[0, 0], first)
    assert big.initial_noise(condition, 0).shape == (1, condition.frames, 4, 12, 12)
    with pytest.raises(ValueError, match="multiple of 8"):
        ReasonerGenerator(model=model, size=44)
    v1 = ReasonerModel(channels=(16, 16), embed=16, heads=2, size=16, frames=4)
    with pytest.raises(ValueError, match="trained size only"):
        ReasonerGenerator(model=v1, size=32)


def test_decoder_in_graph_gradients_reach_the_lora_only(generator, condition):
    program = ruledsl.load(ROOT / "examples" / "maze.rule").compile(params={"cell": 1 / 7})
    params = attach_lora(generator.denoiser, generator.lora_targets, rank=4)
    try:
        targets = {n.split(".lora_")[0] for n, _ in generator.denoiser.named_parameters() if "lora_" in n}
        for kind in ("to_q", "temporal", "spatial", "film"):  # attention, time and space convs, FiLM
            assert any(t.endswith(kind) for t in targets), kind
        assert not any(t.startswith("codec") for t in targets)
        program(generator.sample(condition, 0, grad_steps=2)).loss.backward()
        assert sum(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params) >= len(params) // 2
        assert all(p.grad is None for n, p in generator.denoiser.named_parameters() if "lora_" not in n)
    finally:
        detach_lora(generator.denoiser)


def test_iteration_zero_is_the_base_sample(generator, condition):
    with torch.no_grad():
        base = generator.sample(condition, seed=3)
    attach_lora(generator.denoiser, generator.lora_targets, rank=4)
    try:
        with torch.no_grad():
            assert torch.equal(generator.sample(condition, seed=3), base)
    finally:
        detach_lora(generator.denoiser)


def test_flow_matching_loss_trains_a_lora_on_latent_changes(generator):
    model = generator.model
    video = torch.rand(1, 4, 3, 32, 32)
    z0, changes = model.latent_changes(video)
    assert torch.equal(changes[:, 0], torch.zeros_like(changes[:, 0]))
    params = attach_lora(model, generator.lora_targets, rank=4)
    try:
        loss = flow_matching_loss(model, changes, z0, None, moving_mask(changes))
        loss.backward()
        assert torch.isfinite(loss) and any(p.grad is not None for p in params)
    finally:
        detach_lora(model)


def test_shipped_reasoner_is_v2_small_safetensors():
    files = {p.name: p.stat().st_size for p in DEFAULT_REASONER.iterdir()}
    assert files["diffusion_pytorch_model.safetensors"] < 20 * 2**20
    assert not any(name.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl")) for name in files)
    model = load_reasoner(DEFAULT_REASONER)
    assert isinstance(model, LatentReasonerModel)
    assert model.latent_shape == (4, 16, 16) and model.config.size == 64


def _run(*args):
    result = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_decoder_and_v2_training_smoke_runs_resume(tmp_path):
    decoder = [ROOT / "scripts" / "train_decoder.py", "--max-steps", "2", "--videos", "2", "--per-video", "1"]
    decoder += ["--eval-per-family", "1", "--eval-minutes", "100"]
    _run(*decoder, "--run", tmp_path / "codec")
    assert (tmp_path / "codec" / "best" / "config.json").exists()
    # decoder-only fine-tuning keeps the encoder (the latent space) and the latent scale
    _run(*decoder, "--run", tmp_path / "ft", "--init", tmp_path / "codec" / "best", "--balance", "--large-grids", "0.5")
    before = PaletteAutoencoder.from_pretrained(tmp_path / "codec" / "best")
    after = PaletteAutoencoder.from_pretrained(tmp_path / "ft" / "best")
    assert after.config["latent_std"] == before.config["latent_std"]
    changed = {k for k, v in after.state_dict().items() if not torch.equal(v, before.state_dict()[k])}
    assert changed and all(k.startswith("vae.decoder.") for k in changed)
    common = [
        "--arch",
        "v2",
        "--codec",
        tmp_path / "codec" / "best",
        "--run",
        tmp_path / "run",
        "--batch",
        "2",
        "--channels",
        "16",
        "--depth",
        "1",
        "--buffer-start",
        "4",
        "--eval-minutes",
        "100",
    ]
    _run(ROOT / "scripts" / "train_reasoner.py", *common, "--max-steps", "2")
    result = _run(
        ROOT / "scripts" / "train_reasoner.py", *common, "--max-steps", "3", "--resume", "--out", tmp_path / "out"
    )
    assert "resumed" in result.stdout and "after 3 steps" in result.stdout
    assert isinstance(load_reasoner(tmp_path / "out"), LatentReasonerModel)
    log = json.loads((tmp_path / "out" / "training_log.json").read_text())
    assert log["steps"] == 3 and len(log["chunks"]) == 2
    # export the run's EMA weights with the fine-tuned decoder
    _run(
        ROOT / "scripts" / "train_reasoner.py",
        *common,
        "--resume",
        "--export",
        "--out",
        tmp_path / "shipped",
        "--replace-codec",
        tmp_path / "ft" / "best",
    )
    shipped = load_reasoner(tmp_path / "shipped")
    assert all(torch.equal(v, after.state_dict()[k]) for k, v in shipped.codec.state_dict().items())
    assert json.loads((tmp_path / "run" / "log.json").read_text())["steps"] == 3  # export leaves the run alone
