"""The diffusers image-to-video adapters on tiny random models built from configs (no downloads):
from_pretrained on a saved folder, deterministic sampling, LoRA starting at the base model and
getting gradients through the last steps and the VAE, and the optimization loop."""

import pytest
import torch
from tiny_cogvideox import tiny_cogvideox_pipeline
from tiny_ltx import tiny_ltx_pipeline
from tiny_wan import tiny_wan_pipeline

import ruledsl
from ruledsl.runtime.cogvideox import CogVideoXI2VGenerator
from ruledsl.runtime.generators import Condition
from ruledsl.runtime.loop import Budget, Settings, optimize
from ruledsl.runtime.lora import attach_lora, detach_lora
from ruledsl.runtime.ltx import LTXI2VGenerator
from ruledsl.runtime.wan import WanI2VGenerator

RULES = "object agent = color(#ff0000, tol=40)\ngoal g: at end area(agent) >= 0.3\n"
ADAPTERS = {
    "wan2.1-i2v": (WanI2VGenerator, lambda: tiny_wan_pipeline(image_encoder=True)),
    "wan2.2-expand-timesteps": (WanI2VGenerator, lambda: tiny_wan_pipeline(image_encoder=False)),
    "cogvideox-i2v": (CogVideoXI2VGenerator, tiny_cogvideox_pipeline),
    "ltx-i2v": (LTXI2VGenerator, tiny_ltx_pipeline),
}


@pytest.fixture(scope="module", params=list(ADAPTERS))
def generator(request, tmp_path_factory):
    cls, build = ADAPTERS[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    build().save_pretrained(folder)
    return cls.from_pretrained(folder, steps=3)


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
