"""The `tto` method: it contains Best-of-N's search, spends the budget until success, accounts for it."""

import json
import random
from types import SimpleNamespace

import pytest
import torch
from test_runtime import RULES, program

import ruledsl
from ruledsl.runtime.loop import Budget, Settings, optimize
from ruledsl.runtime.tto import grad_steps_for, improved, loss_scales, normalised_loss, plateau_action

# Rules a random tiny model never satisfies: the run must use its whole budget.
IMPOSSIBLE = (
    "object agent = color(#ff0000, tol=5)\ngoal g: at end area(agent) >= 0.9\nprocess p: always area(agent) >= 0.9\n"
)


def test_with_no_learning_the_search_is_best_of_n(generator, condition):
    population = 3
    budget = Budget(steps=1, nfe=generator.nfe(0) * (1 + population) + generator.nfe(3))
    tto = optimize(program(), condition, generator, budget, Settings(method="tto", population=population, lr=0.0))
    bon = optimize(program(), condition, generator, Budget(steps=population), Settings(method="best-of-n"))
    searched = [s.loss for s in tto.history[1 : 1 + population]]
    assert searched == pytest.approx([s.loss for s in bon.history[1 : 1 + population]], rel=1e-6)


def test_a_base_sample_that_holds_costs_one_sample(generator, condition):
    always = ruledsl.loads("object agent = color(#ff0000)\ngoal g: at end area(agent) >= 0\n").compile()
    result = optimize(always, condition, generator, Budget(steps=10), Settings(method="tto"))
    assert result.nfe == generator.nfe(0) and result.phases["base"] == result.nfe
    assert result.stop_reason == "every rule holds (base sample)"


def test_the_budget_is_spent_until_the_end_and_plateaus_change_the_search(generator, condition):
    settings = Settings(method="tto", population=2, patience=1, rank=4)
    per_step = 2 * generator.nfe(0) + generator.nfe(3)
    budget = Budget(steps=10**6, nfe=generator.nfe(0) + 6 * per_step)
    result = optimize(ruledsl.loads(IMPOSSIBLE).compile(), condition, generator, budget, settings)
    assert not result.solved
    assert result.stop_reason.startswith("NFE budget")  # not a plateau with budget left
    assert result.nfe > budget.nfe - per_step
    phases = result.phases
    assert phases["base"] + phases["search"] + phases["gradient"] == pytest.approx(result.nfe)
    assert phases["search"] > 0 and phases["gradient"] > 0


def test_the_run_report_says_how_the_budget_was_spent(generator, condition, tmp_path):
    from ruledsl.runtime.run import write_run

    settings, budget = Settings(method="tto", population=2, rank=4), Budget(steps=2)
    result = optimize(ruledsl.loads(IMPOSSIBLE).compile(), condition, generator, budget, settings)
    write_run(tmp_path / "run", result, "r.rule", None, "tiny", settings, budget, {})
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert saved["phases"] == result.phases and saved["steps"] == 2
    assert saved["phases"]["search"] == 2 * 2 * generator.nfe(0)


def test_plateaus_halve_the_learning_rate_then_restart():
    extra = {"stale": 0, "plateaus": 0}
    actions = [plateau_action(extra, progress, patience=2) for progress in [False] * 8 + [True, False, False]]
    assert actions == ["none", "halve", "none", "restart", "none", "halve", "none", "restart", "none", "none", "halve"]
    assert improved((False, 2, -1.0), (False, 1, -0.5)) and not improved((False, 1, -0.999), (False, 1, -1.0))
    assert improved((False, 1, -0.9), (False, 1, -1.0)) and not improved((False, 1, -0.1), (True, 0, -5.0))


def test_gradient_reach():
    rng = random.Random(0)
    draws = {grad_steps_for("random", 2, 8, rng).indices(8).start for _ in range(200)}
    assert draws == set(range(8))  # every truncation point, the first step included
    assert grad_steps_for("all", 2, 8, rng).indices(8) == range(8)
    assert grad_steps_for("last", 2, 8, rng).indices(8) == range(6, 8)
    with pytest.raises(ValueError, match="last, random, all"):
        grad_steps_for("first", 2, 8, rng)


def test_a_held_rule_is_scaled_by_the_programs_mean_loss_not_its_own_near_zero_one():
    def report(**losses):
        rules = {
            n: SimpleNamespace(loss=torch.tensor([v]), weight=1.0, verdict=torch.tensor([v > 0.1]))
            for n, v in losses.items()
        }
        return SimpleNamespace(rules=rules)

    scales = loss_scales(report(failing=0.9, held=0.001, other=0.2))
    assert scales == pytest.approx({"failing": 0.9, "held": 0.367, "other": 0.367}, abs=1e-3)
    # A wobble of the held rule (0.001 -> 0.06) stays a small term instead of becoming 60.
    later = normalised_loss(report(failing=0.9, held=0.06, other=0.2), scales, focus=0.0)
    assert float(later) < 1.0


def test_normalised_loss_is_scale_free(generator, condition):
    compiled = ruledsl.loads(RULES).compile()
    with torch.no_grad():
        report = compiled(generator.sample(condition, 0))
    scales = {n: float(r.loss.mean()) for n, r in report.rules.items()}
    # At the reference every rule contributes exactly 1, whatever its raw scale and weight.
    assert float(normalised_loss(report, scales, focus=3.0)) == pytest.approx(1.0)
    louder = {n: v * 1000 for n, v in scales.items()}
    assert float(normalised_loss(report, louder, focus=3.0)) == pytest.approx(1e-3)


def test_a_search_on_the_base_model_stays_best_of_n_after_updates(generator, condition):
    """search="base": the LoRA's updates do not move the searched seeds (they do with search="lora")."""
    population, steps, rules = 2, 3, ruledsl.loads(IMPOSSIBLE).compile()
    bon = optimize(rules, condition, generator, Budget(steps=population * steps), Settings(method="best-of-n"))

    def searched(search: str) -> list[float]:
        settings = Settings(method="tto", population=population, rank=4, lr=0.5, search=search)
        history = optimize(rules, condition, generator, Budget(steps=steps), settings).history
        # base sample, then per step: `population` searched seeds and the gradient rollout
        return [history[1 + k * (population + 1) + i].loss for k in range(steps) for i in range(population)]

    assert searched("base") == pytest.approx([s.loss for s in bon.history[1:]], rel=1e-6)
    assert searched("lora") != pytest.approx([s.loss for s in bon.history[1:]], rel=1e-6)


def test_lora_disabled_runs_the_base_model_and_puts_the_lora_back(generator, condition):
    from ruledsl.runtime.lora import attach_lora, lora_disabled

    noise = generator.initial_noise(condition, 0)
    with torch.no_grad():
        base = generator.rollout(condition, noise, grad_steps=0)
    params = attach_lora(generator.denoiser, generator.lora_targets, 4)
    with torch.no_grad():
        for param in params:
            param.add_(0.3 * torch.randn_like(param))
        tuned = generator.rollout(condition, noise, grad_steps=0)
        with lora_disabled(generator.denoiser):
            off = generator.rollout(condition, noise, grad_steps=0)
        again = generator.rollout(condition, noise, grad_steps=0)
    assert not torch.allclose(tuned, base)
    torch.testing.assert_close(off, base)
    torch.testing.assert_close(again, tuned)
    assert all(param.requires_grad for param in params)


@pytest.mark.parametrize("method, lr", [("tto", 3e-3), ("tto", 0.0), ("best-of-n", 0.0), ("lora", 3e-3)])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_best_videos_seed_draws_it_again(generator, condition, method, lr, seed):
    """Result.best_seed (report.json's best_seed): that seed, through the saved LoRA if any, remakes the
    best video. (With lr 0 tto's best is a seed it searched on the frozen model: no LoRA.)"""
    from ruledsl.runtime.lora import attach_saved_lora, detach_lora

    settings = Settings(method=method, population=3, rank=4, grad_steps=1, seed=seed, lr=lr)
    result = optimize(ruledsl.loads(IMPOSSIBLE).compile(), condition, generator, Budget(steps=3), settings)
    assert result.best_seed is not None
    assert (result.lora is None) == (lr == 0.0 or result.best_step == -1)
    detach_lora(generator.denoiser)
    if result.lora:  # as `ruledsl reasoner sample --lora`: modules and rank read from the saved weights
        attach_saved_lora(generator.denoiser, result.lora)
    with torch.no_grad():
        again = generator.sample(condition, result.best_seed)[0]
    torch.testing.assert_close(again, result.best_video)


def test_refining_only_near_misses_searches_until_one_is_found(generator, condition):
    """refine_failing=0 never refines (a run stops when every rule holds): it is Best-of-N, NFE for NFE."""
    rules, population = ruledsl.loads(IMPOSSIBLE).compile(), 2
    budget = Budget(steps=10**6, nfe=generator.nfe(0) * (1 + 3 * population))
    settings = Settings(method="tto", population=population, rank=4, refine_failing=0)
    tto = optimize(rules, condition, generator, budget, settings)
    bon = optimize(rules, condition, generator, budget, Settings(method="best-of-n"))
    assert tto.phases["gradient"] == 0 and tto.nfe == bon.nfe
    assert [s.loss for s in tto.history] == pytest.approx([s.loss for s in bon.history], rel=1e-6)
    assert tto.best_seed == bon.best_seed
    refining = optimize(rules, condition, generator, budget, Settings(method="tto", population=population, rank=4))
    assert refining.phases["gradient"] > 0
