"""The runtime on a tiny random reasoner: LoRA semantics and state files, the sampling loop's gradient window,
the optimizer's stops, outputs, resume, NFE accounting, loading models, and the CLI's model options."""

import json

import pytest
import torch
from helpers import tiny_model
from typer.testing import CliRunner

import ruledsl
from ruledsl.cli import app
from ruledsl.runtime.generators import GradientWindow, ReasonerGenerator
from ruledsl.runtime.load import GeneratorLoadError, load_generator
from ruledsl.runtime.loop import Budget, Settings, nfe_budget_for, optimize
from ruledsl.runtime.lora import attach_lora, detach_lora, load_lora, load_lora_state, lora_state, save_lora
from ruledsl.runtime.run import write_run
from ruledsl.tasks import generate
from ruledsl.tasks.layout import write_task

runner = CliRunner()
RULES = (
    "object agent = color(#ff0000, tol=40)\ngoal g: at end area(agent) >= 0.2\nprocess p: always area(agent) <= 0.9\n"
)


def program(text=RULES):
    return ruledsl.loads(text).compile()


def test_iteration_zero_is_the_base_sample(generator, condition):
    with torch.no_grad():
        base = generator.sample(condition, seed=3)
    attach_lora(generator.denoiser, generator.lora_targets, rank=4)
    with torch.no_grad():
        assert torch.equal(generator.sample(condition, seed=3), base)
    detach_lora(generator.denoiser)
    assert not any("lora_" in n for n, _ in generator.denoiser.named_parameters())


def test_a_step_changes_only_lora_and_lowers_the_loss(generator, condition):
    compiled = program()
    base_weights = {k: v.clone() for k, v in generator.denoiser.state_dict().items()}
    params = attach_lora(generator.denoiser, generator.lora_targets, rank=4)
    optimizer = torch.optim.SGD(params, lr=0.05)
    noise = generator.initial_noise(condition, 0)
    loss0 = compiled(generator.rollout(condition, noise, grad_steps=2)).loss
    loss0.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    optimizer.step()
    with torch.no_grad():
        loss1 = compiled(generator.rollout(condition, noise)).loss
    assert loss1 < loss0
    for name, value in generator.denoiser.state_dict().items():
        if "lora_" not in name:
            assert torch.equal(value, base_weights[name.replace(".base_layer", "")]), name
    detach_lora(generator.denoiser)


def test_lora_loop_records_steps_and_keeps_the_base_model(generator, condition):
    before = {k: v.clone() for k, v in generator.denoiser.state_dict().items()}
    result = optimize(program(), condition, generator, Budget(steps=3), Settings(method="lora", rank=4, grad_steps=1))
    assert [s.index for s in result.history] == [-1, 0, 1, 2]
    assert result.stop_reason in ("step budget (3)",) or "every rule holds" in result.stop_reason
    assert result.nfe == generator.nfe(0) + (len(result.history) - 1) * generator.nfe(1)
    assert result.best_video.shape == (4, 3, 16, 16) and 0 <= result.best_video.min() <= result.best_video.max() <= 1
    after = generator.denoiser.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert result.lora and all("lora_" in k for k in result.lora)


def test_early_stop_when_rules_already_hold(generator, condition):
    result = optimize(program("goal g: always true\n"), condition, generator, Budget(steps=5))
    assert result.solved and result.stop_reason == "every rule holds (base sample)"
    assert len(result.history) == 1 and result.nfe == generator.nfe(0)


def test_interrupt_keeps_best_so_far(generator, condition, tmp_path):
    def stop(step, report):
        if step.index == 1:
            raise KeyboardInterrupt

    result = optimize(
        program(), condition, generator, Budget(steps=10), Settings(method="lora", rank=4, grad_steps=1), on_step=stop
    )
    assert result.interrupted and result.stop_reason == "interrupted"
    assert [s.index for s in result.history] == [-1, 0, 1]
    report = write_run(tmp_path / "run", result, "r.rule", None, "tiny", Settings(), Budget(steps=10), {})
    assert report.interrupted and json.loads((tmp_path / "run" / "report.json").read_text())["interrupted"]
    for name in ("base.mp4", "best.mp4", "best.gif", "curves.png", "lora.safetensors"):
        assert (tmp_path / "run" / name).stat().st_size > 0


def test_nfe_accounting_is_shared_across_methods(generator, condition):
    settings = Settings(method="lora", rank=4, grad_steps=1)
    budget = nfe_budget_for(generator, settings, steps=2)  # 3 + 2 * 5 = 13
    results = {
        m: optimize(program(), condition, generator, Budget(steps=10**6, nfe=budget), Settings(method=m, grad_steps=1))
        for m in ("best-of-n", "noise")
    }
    results["lora"] = optimize(program(), condition, generator, Budget(steps=2), settings)
    assert budget == 13 and results["lora"].nfe == 13
    for method, result in results.items():
        assert result.nfe <= budget, method
        costs = [b.nfe - a.nfe for a, b in zip(result.history, result.history[1:])]
        expected = {"lora": 5.0, "best-of-n": 3.0, "noise": 9.0}[method]
        assert all(c == expected for c in costs), (method, costs)
    assert len(results["best-of-n"].history) - 1 == (budget - 3) // 3


def test_cli_force_and_resume(tmp_path):
    model_dir = tmp_path / "model"
    tiny_model().save_pretrained(model_dir)
    task = write_task(generate("maze", 0, 0, "test"), tmp_path / "task", size=(32, 32), frames=4)
    rules = tmp_path / "r.rule"
    rules.write_text("object agent = color(#ff0000, tol=40)\ngoal g: at end area(agent) >= 0.99\n")  # never holds here
    run = ["--out", str(tmp_path / "run"), "--model", str(model_dir), "--method", "lora"]  # one rollout a step
    base = ["optimize", str(rules), "--task", str(task), *run]
    first = runner.invoke(app, base + ["--steps", "2", "--grad-steps", "1", "--rank", "4"])
    assert first.exit_code in (0, 1), first.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    task_frames = json.loads((task / "metadata.json").read_text())["render"]["frames"]
    assert report["model"] == str(model_dir) and report["frames"] == task_frames
    refused = runner.invoke(app, base + ["--steps", "2"])
    assert refused.exit_code == 2 and "--force" in refused.stderr
    assert not report["solved_after"] and report["steps"] == 2
    resumed = runner.invoke(app, base + ["--steps", "4", "--grad-steps", "1", "--rank", "4", "--resume"])
    assert resumed.exit_code in (0, 1), resumed.output
    again = json.loads((tmp_path / "run" / "report.json").read_text())
    assert [c["index"] for c in again["curve"]][: len(report["curve"])] == [c["index"] for c in report["curve"]]
    assert again["nfe"] > report["nfe"]
    forced = runner.invoke(app, base + ["--steps", "1", "--grad-steps", "1", "--rank", "4", "--force"])
    assert forced.exit_code in (0, 1)
    assert len(json.loads((tmp_path / "run" / "report.json").read_text())["curve"]) <= 2


def test_from_pretrained_round_trip(tmp_path, condition):
    model = tiny_model()
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "diffusion_pytorch_model.safetensors").exists()
    loaded = ReasonerGenerator(path=tmp_path / "m", steps=3)
    with torch.no_grad():
        a = ReasonerGenerator(model=model.eval(), steps=3).sample(condition, 1)
        b = loaded.sample(condition, 1)
    assert torch.allclose(a, b)


def test_nonfinite_losses_are_skipped_then_stop(generator, condition):
    compiled = program()

    def nan_loss(video):
        report = compiled(video)
        return report.model_copy(update={"loss": report.loss * float("nan")})

    b_sums = []

    def watch(step, report):
        b_sums.append(sum(float(v.abs().sum()) for k, v in lora_state(generator.denoiser).items() if "lora_B" in k))

    result = optimize(
        nan_loss,
        condition,
        generator,
        Budget(steps=10),
        Settings(method="lora", rank=4, grad_steps=1, max_nonfinite=3),
        on_step=watch,
    )
    assert result.stop_reason == "non-finite loss or gradient 3 times in a row"
    assert [s.skipped for s in result.history] == [False, True, True, True]
    assert b_sums[1:] == [0.0, 0.0, 0.0]  # gaussian init has B = 0, and no update was ever applied
    assert result.best_step == -1 and result.lora is None


def test_gradient_window_steps_and_cost(generator):
    assert list(GradientWindow.last(2).indices(3)) == [1, 2]
    assert list(GradientWindow.last(0).indices(3)) == [] and list(GradientWindow.last(5).indices(3)) == [0, 1, 2]
    assert list(GradientWindow.first(1).indices(3)) == [0] and list(GradientWindow.every().indices(3)) == [0, 1, 2]
    assert GradientWindow.of(2) == GradientWindow.last(2)
    assert generator.nfe(0) == 3 and generator.nfe(1) == 5 and generator.nfe(GradientWindow.last(1)) == 5
    assert generator.nfe(GradientWindow.first(1)) == 5  # later steps without graph cost 1 each
    assert generator.nfe(GradientWindow.every(checkpoint=True)) == 3 + 3 * 3  # recomputed forward


def _lora_grads(generator, condition, window):
    params = [p for n, p in generator.denoiser.named_parameters() if "lora_" in n]
    for p in params:
        p.grad = None
    video = generator.sample(condition, 0, grad_steps=window)
    program()(video).loss.backward()
    return video.detach(), [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]


def test_gradient_window_reach_and_checkpointing(generator, condition):
    torch.manual_seed(0)
    params = attach_lora(generator.denoiser, generator.lora_targets, rank=4)
    try:
        with torch.no_grad():  # a LoRA away from its init, so every LoRA tensor gets gradient
            for p in params:
                p.add_(torch.randn_like(p) * 0.1)
        plain_video, plain = _lora_grads(generator, condition, GradientWindow.every())
        ckpt_video, ckpt = _lora_grads(generator, condition, GradientWindow.every(checkpoint=True))
        assert torch.equal(plain_video, ckpt_video)
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, ckpt))
        assert sum(bool(g.abs().sum() > 0) for g in plain) == len(params)
        # Only the first (noisiest) step's denoiser keeps its graph: the gradient still reaches it
        # through the later Euler updates, and it is not the full gradient.
        first_video, first = _lora_grads(generator, condition, GradientWindow.first(1))
        assert torch.equal(first_video, plain_video)
        assert any(g.abs().sum() > 0 for g in first)
        assert not all(torch.allclose(a, b) for a, b in zip(first, plain))
        with torch.no_grad():
            assert not generator.sample(condition, 0, grad_steps=GradientWindow.every()).requires_grad
        assert not generator.sample(condition, 0, grad_steps=0).requires_grad
    finally:
        detach_lora(generator.denoiser)


def test_lora_state_round_trip_through_a_file(generator, condition, tmp_path):
    torch.manual_seed(0)
    params = attach_lora(generator.denoiser, generator.lora_targets, rank=4)
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn_like(p) * 0.1)
        tuned = generator.sample(condition, 2)
    state = lora_state(generator.denoiser)
    assert len(state) == len(params) and all(k.endswith(("lora_A.weight", "lora_B.weight")) for k in state)
    assert not any("ruledsl" in k for k in state)  # peft's format: no adapter name
    save_lora(state, tmp_path / "lora.safetensors", {"method": "lora"})
    attach_lora(generator.denoiser, generator.lora_targets, rank=4)  # fresh: B = 0, the base model again
    with torch.no_grad():
        assert not torch.equal(generator.sample(condition, 2), tuned)
        load_lora_state(generator.denoiser, load_lora(tmp_path / "lora.safetensors"))
        assert torch.equal(generator.sample(condition, 2), tuned)
    attach_lora(generator.denoiser, generator.lora_targets, rank=2)
    with pytest.raises(ValueError, match="do not fit"):
        load_lora_state(generator.denoiser, state)
    attach_lora(generator.denoiser, ("to_q",), rank=4)
    with pytest.raises(ValueError, match="do not fit"):
        load_lora_state(generator.denoiser, state)
    detach_lora(generator.denoiser)
    assert not hasattr(generator.denoiser, "peft_config") and lora_state(generator.denoiser) == {}
    with pytest.raises(ValueError, match="no LoRA is attached"):
        load_lora_state(generator.denoiser, state)


def test_load_generator_detects_a_reasoner_and_explains_what_it_cannot_load(tmp_path):
    tiny_model().save_pretrained(tmp_path / "m")
    loaded = load_generator(tmp_path / "m", device="cpu", steps=3)
    assert type(loaded) is ReasonerGenerator and loaded.steps == 3 and loaded.device.type == "cpu"
    assert load_generator(tmp_path / "m", device="cpu", dtype="bfloat16").dtype == torch.bfloat16
    (tmp_path / "sd").mkdir()
    (tmp_path / "sd" / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    with pytest.raises(GeneratorLoadError, match="StableDiffusionPipeline.*not supported.*WanImageToVideoPipeline"):
        load_generator(tmp_path / "sd")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GeneratorLoadError, match="neither model_index.json"):
        load_generator(tmp_path / "empty")
    with pytest.raises(GeneratorLoadError, match="no such folder"):
        load_generator(tmp_path / "missing")
    with pytest.raises(GeneratorLoadError, match="choose from float32, bfloat16, float16"):
        load_generator(tmp_path / "m", device="cpu", dtype="int8")
    with pytest.raises(GeneratorLoadError, match="not a torch device"):
        load_generator(tmp_path / "m", device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(GeneratorLoadError, match="no CUDA device"):
            load_generator(tmp_path / "m", device="cuda")


def test_cli_model_errors_exit_2_and_write_nothing(tmp_path):
    task = write_task(generate("maze", 0, 0, "test"), tmp_path / "task", size=(32, 32), frames=4)
    rules = tmp_path / "r.rule"
    rules.write_text(RULES)
    (tmp_path / "sd").mkdir()
    (tmp_path / "sd" / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    base = ["optimize", str(rules), "--task", str(task), "--out", str(tmp_path / "run")]
    unsupported = runner.invoke(app, base + ["--model", str(tmp_path / "sd")])
    assert unsupported.exit_code == 2
    assert "StableDiffusionPipeline" in unsupported.stderr and "LTXImageToVideoPipeline" in unsupported.stderr
    bad_dtype = runner.invoke(app, base + ["--dtype", "float8"])
    assert bad_dtype.exit_code == 2 and "float8" in bad_dtype.stderr
    assert not (tmp_path / "run").exists()
    bench = runner.invoke(app, ["bench", "--out", str(tmp_path / "bench"), "--n", "1", "--model", str(tmp_path / "sd")])
    assert bench.exit_code == 2 and "StableDiffusionPipeline" in bench.stderr and not (tmp_path / "bench").exists()


def test_cli_option_defaults_are_the_settings_defaults():
    """One source: `optimize`'s options take their defaults from Settings and Budget."""
    import typer.main

    options = {p.name: p.default for p in typer.main.get_command(app).commands["optimize"].params}
    settings, budget = Settings(), Budget()
    for name in ("method", "seed", "lr", "rank", "grad_steps"):
        assert options[name] == getattr(settings, name), name
    assert (options["steps"], options["seconds"], options["nfe"]) == (budget.steps, budget.seconds, budget.nfe)


def test_optimize_through_every_step_with_checkpointing(generator, condition, tmp_path):
    window = GradientWindow.every(checkpoint=True)
    settings = Settings(method="lora", rank=4, grad_steps=window)
    result = optimize(program(), condition, generator, Budget(steps=2), settings)
    assert (
        result.nfe == generator.nfe(0) + (len(result.history) - 1) * generator.nfe(window) and len(result.history) > 1
    )
    write_run(tmp_path / "run", result, "r.rule", None, "tiny", settings, Budget(steps=2), {})
    saved = json.loads((tmp_path / "run" / "report.json").read_text())["settings"]["grad_steps"]
    assert saved == {"start": 0, "stop": None, "checkpoint": True}
