"""The shipped reasoner: from_pretrained, a short deterministic sample (bit-identical to the recorded one),
gradients into a LoRA; a training smoke run."""

import hashlib
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


@pytest.fixture(scope="module")
def shipped():
    return ReasonerGenerator(path=DEFAULT_REASONER, steps=4)


def test_shipped_weights_are_safetensors_and_small():
    files = {p.name: p.stat().st_size for p in DEFAULT_REASONER.iterdir()}
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


# SHA-256 of the float32 bytes of 2-step samples of the shipped weights, recorded with the sampling loop
# before it moved into VideoGenerator (commit 6d0b2a3, torch 2.13.0+cpu, 1 thread). The refactor and any
# later change of the loop must give the same bits for the same seed. (Another CPU or BLAS may round
# differently; re-record there from the parent commit, never from the code under test.)
RECORDED_SAMPLES = {
    ("maze", 0, 16): "141d5190c1392065f0d4b0743d1a9d9f25401584e125f808b639e217405a2ec6",
    (None, 7, 4): "d9e9ee1bdaa2df946d309480847081bba8fcac508159e9e59a8056a04bc00b92",
}


def test_samples_are_bit_identical_to_the_recorded_ones():
    generator = ReasonerGenerator(path=DEFAULT_REASONER, steps=2)
    maze = condition_from_instance(generate("maze", 0, 0, "test"))
    conditions = {("maze", 0, 16): maze, (None, 7, 4): Condition(maze.first_frame, "", None, 4)}
    for key, condition in conditions.items():
        with torch.no_grad():
            video = generator.sample(condition, seed=key[1])
        assert video.dtype == torch.float32 and video.shape[1] == key[2]
        assert hashlib.sha256(video.contiguous().numpy().tobytes()).hexdigest() == RECORDED_SAMPLES[key], key


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
