"""The shipped reasoner: from_pretrained, a short deterministic sample (bit-identical to the reference loop),
gradients into a LoRA; a training smoke run."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT

import ruledsl
from ruledsl.runtime.generators import DEFAULT_REASONER, Condition, ReasonerGenerator, condition_from_instance
from ruledsl.runtime.lora import attach_lora, detach_lora
from ruledsl.runtime.reasoner import ReasonerModel
from ruledsl.tasks import generate

V1_REASONER = DEFAULT_REASONER.parent / "reasoner_v1"  # v1 stays loadable by folder, for comparisons


@pytest.fixture(scope="module")
def shipped():
    return ReasonerGenerator(path=V1_REASONER, steps=4)


def test_shipped_weights_are_safetensors_and_small():
    files = {p.name: p.stat().st_size for p in V1_REASONER.iterdir()}
    assert "diffusion_pytorch_model.safetensors" in files and "config.json" in files
    assert files["diffusion_pytorch_model.safetensors"] < 20 * 2**20
    assert not any(name.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl")) for name in files)


def test_sample_shape_range_determinism(shipped):
    condition = condition_from_instance(generate("maze", 0, 0, "test"))
    with torch.no_grad():
        a = shipped.sample(condition, seed=5)
        b = shipped.sample(condition, seed=5)
        c = shipped.sample(condition, seed=6)
    assert a.shape == (1, condition.frames, 3, 32, 32)
    assert 0 <= float(a.min()) and float(a.max()) <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    # frame 0 is the given first frame (at the model's resolution)
    first = torch.nn.functional.interpolate(condition.first_frame[None], size=(32, 32), mode="area")[0]
    assert torch.allclose(a[0, 0], first)


def reference_sample(model: ReasonerModel, condition: Condition, seed: int, steps: int) -> torch.Tensor:
    """The sampling loop as it was written before it moved into VideoGenerator (commit 6d0b2a3): the
    scheduler's Euler steps over the model, frame 0 replaced by the first frame. Same ops in the same
    order, so the same bits on any one machine (recorded checksums only held on the CPU that made them)."""
    from ruledsl.runtime.reasoner import family_ids, make_scheduler, sample_noise

    size = model.config["size"]
    first = torch.nn.functional.interpolate(condition.first_frame[None], size=(size, size), mode="area")
    family = family_ids([condition.family])
    scheduler = make_scheduler()
    scheduler.set_timesteps(steps)
    x = sample_noise(1, condition.frames, size, size, seed)
    for t in scheduler.timesteps:
        x = scheduler.step(model(x, t.expand(1), first * 2 - 1, family), t, x, return_dict=False)[0]
    video = ((x + 1) / 2).clamp(0, 1)
    return torch.cat([first[:, None], video[:, 1:]], dim=1)


def test_samples_are_bit_identical_to_the_reference_loop():
    generator = ReasonerGenerator(path=V1_REASONER, steps=2)
    maze = condition_from_instance(generate("maze", 0, 0, "test"))
    for condition, seed in ((maze, 0), (Condition(maze.first_frame, "", None, 4), 7)):
        with torch.no_grad():
            video = generator.sample(condition, seed=seed)
            expected = reference_sample(generator.model, condition, seed, steps=2)
        assert video.dtype == torch.float32 and video.shape[1] == condition.frames
        assert torch.equal(video, expected), (condition.family, seed)


def test_gradients_reach_a_lora(shipped):
    condition = condition_from_instance(generate("key_door", 0, 0, "test"))
    program = ruledsl.load("examples/key_door.rule").compile(params={"cell": 1 / 7})
    params = attach_lora(shipped.denoiser, shipped.lora_targets, rank=4)
    try:
        program(shipped.sample(condition, 0, grad_steps=2)).loss.backward()
        assert sum(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params) >= len(params) // 2
    finally:
        detach_lora(shipped.denoiser)


def test_training_smoke_run(tmp_path):
    out = tmp_path / "r"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "train_reasoner.py"),
            "--out",
            str(out),
            "--max-steps",
            "2",
            "--batch",
            "2",
            "--eval-minutes",
            "100",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    log = json.loads((out / "training_log.json").read_text())
    assert log["steps"] == 2
    model = ReasonerModel.from_pretrained(out, use_safetensors=True)
    assert sum(p.numel() for p in model.parameters()) == log["params"]
