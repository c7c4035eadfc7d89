"""The diffusers image-to-video adapters on tiny random models built from configs (no downloads):
loaded from a save_pretrained folder by `load_generator` (detected from model_index.json),
deterministic sampling, LoRA starting at the base model and getting gradients through the last
steps and the VAE, the optimization loop, bfloat16 on the CPU, and the CLI with `--model FOLDER`."""

import json

import pytest
import torch
from tiny_cogvideox import tiny_cogvideox_pipeline
from tiny_ltx import tiny_ltx_pipeline
from tiny_wan import tiny_wan_pipeline
from typer.testing import CliRunner

import ruledsl
from ruledsl.cli import app
from ruledsl.runtime.cogvideox import CogVideoXI2VGenerator
from ruledsl.runtime.generators import Condition, GradientWindow
from ruledsl.runtime.load import load_generator
from ruledsl.runtime.loop import Budget, Settings, optimize
from ruledsl.runtime.lora import attach_lora, detach_lora
from ruledsl.runtime.ltx import LTXI2VGenerator
from ruledsl.runtime.wan import WanI2VGenerator
from ruledsl.tasks import generate
from ruledsl.tasks.layout import write_task

runner = CliRunner()
RULES = "object agent = color(#ff0000, tol=40)\ngoal g: at end area(agent) >= 0.3\n"
ADAPTERS = {
    "wan2.1-i2v": (WanI2VGenerator, lambda: tiny_wan_pipeline(image_encoder=True)),
    "wan2.2-expand-timesteps": (WanI2VGenerator, lambda: tiny_wan_pipeline(image_encoder=False)),
    "cogvideox-i2v": (CogVideoXI2VGenerator, tiny_cogvideox_pipeline),
    "ltx-i2v": (LTXI2VGenerator, tiny_ltx_pipeline),
}


@pytest.fixture(scope="module", params=list(ADAPTERS))
def pipeline_folder(request, tmp_path_factory):
    """(adapter class, a save_pretrained folder of its tiny pipeline)."""
    cls, build = ADAPTERS[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    build().save_pretrained(folder)
    return cls, folder


@pytest.fixture(scope="module")
def generator(pipeline_folder):
    cls, folder = pipeline_folder
    loaded = load_generator(folder, device="cpu", steps=3)
    assert type(loaded) is cls  # detected from model_index.json's _class_name
    return loaded


@pytest.fixture()
def condition():
    return Condition(torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0)), "move the red agent", frames=5)


def test_sample_shape_range_and_determinism(generator, condition):
    with torch.no_grad():
        a = generator.sample(condition, seed=1)
        b = generator.sample(condition, seed=1)
        c = generator.sample(condition, seed=2)
    assert a.shape[0] == 1 and a.shape[1] >= 5 and a.shape[2] == 3 and a.shape[3] == a.shape[4] == 32
    assert 0 <= float(a.min()) <= float(a.max()) <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_lora_starts_at_the_base_and_gets_gradients(generator, condition):
    with torch.no_grad():
        base = generator.sample(condition, seed=1)
    params = attach_lora(generator.denoiser, generator.lora_targets, rank=4)
    try:
        video = generator.sample(condition, seed=1, grad_steps=1)
        assert torch.allclose(video.detach(), base, atol=1e-6)
        ruledsl.loads(RULES).compile()(video).loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
        assert all(not p.requires_grad for n, p in generator.denoiser.named_parameters() if "lora_" not in n)
    finally:
        detach_lora(generator.denoiser)


def test_checkpointed_steps_give_the_same_gradients(generator, condition):
    torch.manual_seed(0)
    params = attach_lora(generator.denoiser, generator.lora_targets, rank=4)
    try:
        with torch.no_grad():  # away from the init, so both LoRA factors get gradient
            for p in params:
                p.add_(torch.randn_like(p) * 0.05)
        grads = []
        for window in (GradientWindow.every(), GradientWindow.every(checkpoint=True)):
            for p in params:
                p.grad = None
            ruledsl.loads(RULES).compile()(generator.sample(condition, seed=1, grad_steps=window)).loss.backward()
            grads.append(torch.cat([p.grad.flatten() for p in params]))
        assert grads[0].abs().sum() > 0 and torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-7)
    finally:
        detach_lora(generator.denoiser)


def test_a_batch_of_seeds_is_the_seeds_one_by_one(generator, condition):
    """The loop and the conditioning handle a batch (a population of seeds) like single rollouts."""
    with torch.no_grad():
        noise = torch.cat([generator.initial_noise(condition, s) for s in (1, 2)])
        batch = generator.rollout(condition, noise)
        one, two = generator.sample(condition, 1), generator.sample(condition, 2)
    assert torch.allclose(batch[0], one[0], atol=1e-5) and torch.allclose(batch[1], two[0], atol=1e-5)


def test_optimize_runs(generator, condition):
    result = optimize(
        ruledsl.loads(RULES).compile(),
        condition,
        generator,
        Budget(steps=2),
        Settings(method="lora", rank=4, grad_steps=1),
    )
    assert [s.index for s in result.history][:2] == [-1, 0]
    assert result.nfe == generator.nfe(0) + (len(result.history) - 1) * generator.nfe(1)
    assert not any("lora_" in n for n, _ in generator.denoiser.named_parameters())


def test_bfloat16_base_on_cpu_with_an_fp32_lora(pipeline_folder, condition):
    _, folder = pipeline_folder
    generator = load_generator(folder, device="cpu", dtype="bfloat16", steps=2)
    params = attach_lora(generator.denoiser, generator.lora_targets, rank=4)
    try:
        base_dtypes = {p.dtype for n, p in generator.denoiser.named_parameters() if "lora_" not in n}
        assert torch.bfloat16 in base_dtypes and all(p.dtype == torch.float32 for p in params)
        video = generator.sample(condition, seed=1, grad_steps=1)
        assert video.dtype == torch.float32 and 0 <= float(video.detach().min()) <= float(video.detach().max()) <= 1
        ruledsl.loads(RULES).compile()(video).loss.backward()
        grads = [p.grad for p in params if p.grad is not None]
        assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)
    finally:
        detach_lora(generator.denoiser)


@pytest.fixture(scope="module")
def task_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("task")
    return write_task(generate("maze", 0, 0, "test"), folder / "maze", size=(32, 32), frames=4)


def test_cli_optimize_and_sample_with_a_pipeline_folder(pipeline_folder, task_folder, tmp_path):
    _, folder = pipeline_folder
    rules = tmp_path / "r.rule"
    rules.write_text(RULES)
    common = ["--model", str(folder), "--device", "cpu", "--sample-steps", "2"]
    optimized = runner.invoke(
        app,
        ["optimize", str(rules), "--task", str(task_folder), "--out", str(tmp_path / "run")]
        + common
        + ["--steps", "1", "--grad-steps", "1", "--rank", "4"],
    )
    assert optimized.exit_code in (0, 1), optimized.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["model"] == str(folder) and report["curve"][0]["index"] == -1
    assert report["nfe"] == report["curve"][-1]["nfe"] and report["nfe"] >= 2
    sampled = runner.invoke(
        app, ["reasoner", "sample", str(task_folder), "--out", str(tmp_path / "s.mp4"), "--model", str(folder)]
    )
    assert sampled.exit_code == 0, sampled.output
    assert (tmp_path / "s.mp4").stat().st_size > 0


def test_cli_optimize_bfloat16(task_folder, tmp_path):
    folder = tmp_path / "wan"
    tiny_wan_pipeline(image_encoder=True).save_pretrained(folder)
    rules = tmp_path / "r.rule"
    rules.write_text(RULES)
    args = ["optimize", str(rules), "--task", str(task_folder), "--out", str(tmp_path / "run"), "--model", str(folder)]
    result = runner.invoke(
        app, args + ["--device", "cpu", "--dtype", "bfloat16", "--sample-steps", "2", "--steps", "1", "--rank", "4"]
    )
    assert result.exit_code in (0, 1), result.output
    assert len(json.loads((tmp_path / "run" / "report.json").read_text())["curve"]) >= 2
