"""The autoregressive v2 reasoner (config `context` K > 0) on tiny random configs: per-frame timesteps,
the warm start from a joint model, causal sampling (a frame never depends on later frames' noise),
gradients through the frame chain, NFE accounting, the next-frame loss, and a tto run on it."""

import pytest
import torch
from conftest import ROOT
from test_reasoner_v2 import _run, tiny_model

import ruledsl
from ruledsl.runtime.generators import ReasonerGenerator, condition_from_instance, load_reasoner
from ruledsl.runtime.latent_reasoner import (
    context_window,
    motion_history,
    next_frame_loss,
    widen_to_autoregressive,
)
from ruledsl.runtime.loop import Budget, Settings, optimize
from ruledsl.runtime.lora import attach_lora, detach_lora
from ruledsl.runtime.settings import GradientWindow
from ruledsl.tasks import generate


def tiny_ar(seed=0, context=2):
    model = widen_to_autoregressive(tiny_model(seed), context)
    with torch.no_grad():  # trained weights would use the motion history too
        model.proj_in.weight.normal_(0, 0.2)
    return model.eval()


@pytest.fixture()
def condition():
    return condition_from_instance(generate("maze", 0, 0, "test"), size=64)


def test_per_frame_timesteps_equal_one_shared_timestep():
    model = tiny_model()
    x, z0 = torch.randn(2, 4, 4, 8, 8), torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        shared = model(x, torch.tensor([300.0, 700.0]), z0)
        per_frame = model(x, torch.tensor([[300.0] * 4, [700.0] * 4]), z0, frame_index=torch.arange(4))
        other = model(x, torch.tensor([[300.0] * 3 + [900.0], [700.0] * 4]), z0)
    assert torch.allclose(shared, per_frame, atol=1e-5)
    assert not torch.allclose(shared[0], other[0], atol=1e-3)  # the per-frame timestep is used


def test_the_warm_start_is_the_joint_model_on_a_window():
    joint = tiny_model()
    ar = widen_to_autoregressive(joint, 2).eval()
    assert ar.config["context"] == 2
    window, z0 = torch.randn(1, 3, 4, 8, 8), torch.randn(1, 4, 8, 8)
    t, index = torch.tensor([[0.0, 0.0, 500.0]]), torch.tensor([3, 4, 5])
    with torch.no_grad():
        a = joint(window, t, z0, frame_index=index)
        b = ar(window, t, z0, frame_index=index, history=torch.randn(1, 4, 8, 8))
    assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="needs `history`"):
        ar(window, t, z0)
    with pytest.raises(ValueError, match="takes none"):
        joint(window, t, z0, history=torch.zeros(1, 4, 8, 8))


def test_context_window_and_motion_history():
    assert context_window(1, 2) == [0, 0, 1] and context_window(5, 2) == [3, 4, 5] and context_window(3, 0) == [3]
    changes = torch.zeros(1, 3, 1, 2, 2)
    changes[0, 1, 0, 0, 0], changes[0, 2, 0, 1, 1] = -2.0, 1.0
    assert motion_history(changes)[0, 0].tolist() == [[2.0, 0.0], [0.0, 1.0]]


def test_frames_are_generated_causally(condition):
    generator = ReasonerGenerator(model=tiny_ar())
    noise = generator.initial_noise(condition, 0)
    changed = noise.clone()
    changed[:, 2] = torch.randn_like(changed[:, 2])
    with torch.no_grad():
        a, b = generator.rollout(condition, noise), generator.rollout(condition, changed)
        again = generator.rollout(condition, noise)
    assert a.shape == (1, condition.frames, 3, 32, 32) and torch.equal(a, again)
    first = torch.nn.functional.interpolate(condition.first_frame[None], size=(32, 32), mode="area")[0]
    assert torch.allclose(a[0, 0], first)
    assert torch.equal(a[:, :2], b[:, :2])  # frames before 2 never see its noise
    assert not torch.allclose(a[:, 2], b[:, 2]) and not torch.allclose(a[:, -1], b[:, -1])  # later ones do


def test_gradient_reaches_early_frames_through_the_context(condition):
    generator = ReasonerGenerator(model=tiny_ar())
    noise = generator.initial_noise(condition, 0).requires_grad_(True)
    video = generator.rollout(condition, noise, grad_steps=GradientWindow.every())
    video[:, -1].sum().backward()  # a loss on the last frame only
    per_frame = noise.grad.abs().flatten(2).sum(-1)[0]
    assert per_frame[0] == 0 and bool((per_frame[1:] > 0).all())
    # with the last step of every frame in the window, a LoRA gets gradient from a last-frame loss
    params = attach_lora(generator.denoiser, generator.lora_targets, rank=4)
    try:
        generator.sample(condition, 0, grad_steps=1)[:, -1].sum().backward()
        assert sum(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params) >= len(params) // 2
    finally:
        detach_lora(generator.denoiser)


def test_nfe_counts_frames_seen_per_call():
    model = tiny_ar(context=2)
    generator = ReasonerGenerator(model=model)
    frames, steps = model.config["frames"], generator.steps
    # one call per frame after the first and step, each over K + 1 of the model's frames
    assert generator.nfe(0) == pytest.approx(steps * (frames - 1) * 3 / frames)
    joint = ReasonerGenerator(model=tiny_model())
    assert generator.nfe(2) / generator.nfe(0) == pytest.approx(joint.nfe(2) / joint.nfe(0))
    assert generator.window_step(steps + 1) == 1 and joint.window_step(steps + 1) == steps + 1


def test_next_frame_loss_fits_a_video():
    torch.manual_seed(0)
    model = tiny_ar().train()
    video = torch.rand(2, 4, 3, 32, 32)
    z0, changes = model.latent_changes(video)
    params = [p for n, p in model.named_parameters() if not n.startswith("codec.")]
    optimizer = torch.optim.Adam(params, lr=3e-3)

    def loss(seed):
        return next_frame_loss(model, z0, changes, None, torch.Generator().manual_seed(seed))

    with torch.no_grad():
        before = sum(float(loss(s)) for s in range(8))
    for step in range(40):
        optimizer.zero_grad()
        loss(step % 8).backward()
        optimizer.step()
    with torch.no_grad():
        after = sum(float(loss(s)) for s in range(8))
    assert after < 0.7 * before


def test_tto_runs_on_the_autoregressive_reasoner(condition):
    generator = ReasonerGenerator(model=tiny_ar())
    program = ruledsl.load(ROOT / "examples" / "maze.rule").compile(params={"cell": 1 / 7})
    settings = Settings(method="tto", population=2, rank=4)
    # base + a population of 2 guided samples (each frame drawn up to twice for the goals, plus redraws) + one gradient rollout
    budget = Budget(steps=10**6, nfe=generator.nfe(0) * 7 + generator.nfe(generator.steps))
    result = optimize(program, condition, generator, budget, settings)
    assert result.phases["search"] > 0 and result.phases["gradient"] > 0
    assert result.nfe <= budget.nfe


def test_training_turns_a_joint_model_autoregressive(tmp_path):
    tiny_model().save_pretrained(tmp_path / "joint")
    common = ["--arch", "v2", "--init", tmp_path / "joint", "--context", "2", "--sample-steps", "2"]
    common += ["--run", tmp_path / "run", "--batch", "2", "--buffer-start", "4", "--eval-minutes", "100"]
    _run(ROOT / "scripts" / "train_reasoner.py", *common, "--max-steps", "2")
    result = _run(
        ROOT / "scripts" / "train_reasoner.py", *common, "--max-steps", "3", "--resume", "--out", tmp_path / "out"
    )
    assert "resumed" in result.stdout
    model = load_reasoner(tmp_path / "out")
    assert model.config["context"] == 2 and model.config["steps"] == 2
    generator = ReasonerGenerator(model=model)
    with torch.no_grad():
        video = generator.sample(condition_from_instance(generate("avoid", 0, 0, "test"), size=64), 0)
    assert video.shape[:3] == (1, 16, 3)


def test_lora_capacity_probe_fits_a_lora_and_selects_failing_tasks(monkeypatch):
    from benchmarks import lora_capacity

    generator = ReasonerGenerator(model=tiny_ar())
    row = lora_capacity.fit(generator, generate("maze", 0, 0, "train"), steps=2, check_every=1, batch=2, lr=1e-2)
    assert row["lr"] == 1e-2 and row["base_passed"] is False  # a random model fails the scorer
    assert not any("lora" in name for name, _ in generator.denoiser.named_parameters())  # the LoRA is detached

    class Verdict:
        def __init__(self, passed):
            self.passed = passed

    # Every even instance "passes" its base sample: --only-failing must skip it.
    monkeypatch.setattr(lora_capacity, "seed0_score", lambda g, instance: Verdict(instance.index % 2 == 0))
    picked = [i.index for i, base in lora_capacity.tasks(generator, "maze", "train", 3, only_failing=True)]
    assert picked == [1, 3, 5]
    assert [i.index for i, base in lora_capacity.tasks(generator, "maze", "train", 2, False)] == [0, 1]
