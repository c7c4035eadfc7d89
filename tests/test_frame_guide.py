"""Frame guidance (runtime/frame_guide.py): which rules get safety monitors; that a broken monitor is final
(brute force over every prefix of ground-truth and corrupted task videos, every family); and guided
sampling on the shipped autoregressive reasoner: reproducible from its seed and draws, within its redraw
budget, the plain sample when off, fewer broken monitors than without it, and inside best-of-n and tto runs
(budget, best_draws, resume)."""

import json

import pytest
import torch
from test_reasoner_ar import tiny_ar

import ruledsl
from ruledsl.compiler import ir
from ruledsl.runtime.bench import example_program
from ruledsl.runtime.frame_guide import FrameGuide, goal_program, guided_noise, monitor_program, safety_monitor
from ruledsl.runtime.generators import Condition, ReasonerGenerator, condition_from_instance
from ruledsl.runtime.loop import Budget, Settings, optimize
from ruledsl.tasks import generate
from ruledsl.tasks.corrupt import KINDS, corrupt
from ruledsl.tasks.render import render, solution_plan

FAMILIES = ("maze", "grid_path", "avoid", "two_targets", "key_door")

RULES = """
object agent = color(#ff0000)
region goal = color(#00ff00) at start
region walls = color(#000000) at start
region last_walls = color(#000000) at end
goal reach: at end inside(agent, goal)
process legal: always avoids(agent, walls)
process order: not touches(agent, walls) until inside(agent, goal)
process mixed: (always avoids(agent, walls)) and (eventually inside(agent, goal))
process either: (always avoids(agent, walls)) or (eventually inside(agent, goal))
process once: always inside(agent, goal) implies next inside(agent, goal)
process late: always avoids(agent, last_walls)
"""


def test_only_rules_a_prefix_can_break_for_good_get_monitors():
    program = ruledsl.loads(RULES).compile()
    monitors = monitor_program(program)
    assert [rule.name for rule in monitors.rules] == ["legal", "order", "mixed"]
    by_name = {rule.name: rule.formula for rule in program.rules}
    assert safety_monitor(by_name["legal"]) == by_name["legal"]
    order = safety_monitor(by_name["order"])  # weak until: broken once `left` fails before `right` held
    assert isinstance(order, ir.Or) and order.children == (by_name["order"], ir.Always(by_name["order"].left))
    assert isinstance(safety_monitor(by_name["mixed"]), ir.Always)  # the `always` part of the conjunction
    assert monitor_program(ruledsl.loads("object a = color(#ff0000)\ngoal g: at end area(a) > 0\n").compile()) is None


def test_goals_are_judged_on_the_frame_just_drawn():
    text = RULES + "goal early: at 3 inside(agent, goal)\ngoal sometime: eventually inside(agent, goal)\n"
    program = ruledsl.loads(text).compile()
    goals = goal_program(program)
    by_name = {rule.name: rule.formula for rule in program.rules}
    assert [rule.name for rule in goals.rules] == ["reach", "early"]  # processes and `eventually`: none
    for rule in goals.rules:
        assert rule.formula == ir.At(("end", 0.0), by_name[rule.name].body)
    assert goal_program(ruledsl.loads("object a = color(#ff0000)\nprocess p: always area(a) > 0\n").compile()) is None


def _video(instance, plan):
    frames = torch.from_numpy(render(instance, plan, (64, 64))).float().div(255)
    return frames.permute(0, 3, 1, 2)[None]


@pytest.mark.parametrize("family", FAMILIES)
def test_a_broken_monitor_stays_broken_and_the_rule_fails(family):
    """Brute force: every prefix of the ground truth and of every corruption of two instances."""
    checked = broken = 0
    for index in range(2):
        instance = generate(family, index, 0, "test")
        program = example_program(family, instance.to_dict(), 64)
        monitors = monitor_program(program)
        plans = {"truth": solution_plan(instance), **{kind: corrupt(instance, kind) for kind in KINDS}}
        for kind, plan in plans.items():
            video = _video(instance, plan)
            final = program.robustness(video)
            prefixes = [monitors.robustness(video[:, :n]) for n in range(2, video.shape[1] + 1)]
            for rule in monitors.rules:
                held = [bool(p[rule.name][0] > 0) for p in prefixes]
                assert held == sorted(held, reverse=True), (kind, rule.name, held)  # never repaired
                if not held[-1]:
                    assert not bool(final[rule.name][0] > 0), (kind, rule.name)  # and the rule fails
                    broken += 1
                if bool(final[rule.name][0] > 0):
                    assert all(held), (kind, rule.name)  # a rule that holds breaks no prefix
                checked += 1
    assert broken > 0 and checked > broken  # the corruptions break some monitors, not all


@pytest.fixture(scope="module")
def shipped():
    return ReasonerGenerator()


@pytest.fixture(scope="module")
def key_door():
    instance = generate("key_door", 1, 1, "train")
    return example_program("key_door", instance.to_dict(), 64), condition_from_instance(instance, 64)


@pytest.fixture(scope="module")
def two_targets():
    instance = generate("two_targets", 0, 1, "train")
    return example_program("two_targets", instance.to_dict(), 64), condition_from_instance(instance, 64)


@pytest.mark.parametrize("backtracks", [0, 8])
def test_a_guided_sample_is_reproducible_from_its_seed_and_draws(shipped, key_door, two_targets, backtracks):
    program, condition = two_targets if backtracks else key_door
    guide = FrameGuide(program, retries=2, backtracks=backtracks)
    seed, guided = next((seed, g) for seed in range(8) if (g := guide.sample(shipped, condition, seed)).redraws > 1)
    assert len(guided.attempts) == condition.frames - 1 and any(guided.attempts)
    assert guided.redraws >= sum(a > 0 for a in guided.attempts)
    assert max(guided.attempts) <= 2 if not backtracks else guided.redraws > 2  # a backtrack redraws frames again
    # Capped: never more redraws than allowed, backtracks included (each frame after one is owed a draw).
    for cap in (1, 3, 7):
        assert guide.sample(shipped, condition, seed, max_redraws=cap).redraws <= cap
    with torch.no_grad():
        assert torch.equal(shipped.rollout(condition, guided.noise), guided.video)
    assert torch.equal(guided_noise(shipped, condition, seed, guided.attempts), guided.noise)
    with pytest.raises(ValueError, match="one per frame after the first"):
        guided_noise(shipped, condition, seed, guided.attempts[:-1])
    with torch.no_grad():
        plain = shipped.sample(condition, seed)
    assert torch.equal(FrameGuide(program, retries=0).sample(shipped, condition, seed).video, plain)
    assert torch.equal(FrameGuide(program, retries=2).sample(shipped, condition, seed, max_redraws=0).video, plain)


def test_guidance_breaks_fewer_monitors_than_plain_sampling(shipped, key_door):
    program, condition = key_door
    monitors = monitor_program(program)

    def broken(video):
        return sum(not bool(v[0] > 0) for v in monitors.robustness(video).values())

    guide = FrameGuide(program, retries=3)
    with torch.no_grad():
        plain = sum(broken(shipped.sample(condition, seed)) for seed in range(6))
    guided = sum(broken(guide.sample(shipped, condition, seed).video) for seed in range(6))
    assert guided < plain


def test_goal_draws_end_nearer_the_goal_and_are_drawn_again_from_seed_and_draws(shipped):
    instance = generate("avoid", 0, 1, "train")  # a plain guided sample of seed 0 ends off the goal
    program, condition = example_program("avoid", instance.to_dict(), 64), condition_from_instance(instance, 64)
    goals = goal_program(program)

    def final_goal_margin(video):
        return sum(float(v[0]) for v in goals.robustness(video[:, [0, -1]]).values())

    plain, steered = FrameGuide(program, retries=2), FrameGuide(program, retries=2, goal_draws=3)
    seeds = range(4)
    samples = [steered.sample(shipped, condition, seed) for seed in seeds]
    assert sum(map(final_goal_margin, (s.video for s in samples))) > sum(
        final_goal_margin(plain.sample(shipped, condition, seed).video) for seed in seeds
    )
    assert all(s.redraws >= condition.frames - 1 for s in samples if not s.broken)  # each frame drawn again
    with torch.no_grad():
        assert torch.equal(shipped.rollout(condition, samples[0].noise), samples[0].video)
        assert torch.equal(FrameGuide(program, retries=0, goal_draws=3).sample(shipped, condition, 0).video,
                           shipped.sample(condition, 0))  # fmt: skip
    with pytest.raises(ValueError, match="goal draws must be >= 1"):
        FrameGuide(program, goal_draws=0)


def test_backtracking_keeps_every_monitor_more_often_than_redrawing_alone(shipped):
    instance = generate("two_targets", 1, 1, "train")  # boxes that vanish: frames no redraw alone can keep
    program, condition = example_program("two_targets", instance.to_dict(), 64), condition_from_instance(instance, 64)

    def clean(guide):
        return sum(not guide.sample(shipped, condition, seed).broken for seed in range(6))

    assert clean(FrameGuide(program, retries=2, backtracks=16)) > clean(FrameGuide(program, retries=2))


def unsolvable(family: str, index: int):
    """The family's rules plus a goal no video meets (a run spends its whole budget), and the condition."""
    from conftest import ROOT

    from ruledsl.tasks.layout import params_for

    instance = generate(family, index, 1, "train")
    mover = "blue_box" if family == "two_targets" else "agent"
    text = (ROOT / "examples" / f"{family}.rule").read_text() + f"goal never: at end area({mover}) >= 0.9\n"
    loaded = ruledsl.loads(text)
    program = loaded.compile(params=params_for(loaded, instance.to_dict(), (64, 64)))
    return program, condition_from_instance(instance, 64)


def test_guided_best_of_n_stays_within_its_budget_and_its_best_is_drawn_again(shipped):
    program, condition = unsolvable("key_door", 1)
    budget = Budget(steps=10**9, nfe=5.5 * shipped.nfe(0))  # the redraws must fit in what is left
    result = optimize(program, condition, shipped, budget, Settings(method="best-of-n", frame_retries=3))
    assert result.nfe <= budget.nfe and result.phases["search"] == pytest.approx(result.nfe - result.phases["base"])
    assert result.nfe > 4 * shipped.nfe(0)  # the half sample left over went to redraws
    noise = shipped.initial_noise(condition, result.best_seed)
    if result.best_draws is not None:
        noise = guided_noise(shipped, condition, result.best_seed, result.best_draws)
    with torch.no_grad():
        assert torch.equal(shipped.rollout(condition, noise)[0], result.best_video)


def test_a_generator_that_denoises_all_frames_together_samples_whole(generator, condition):
    program = ruledsl.loads("object agent = color(#ff0000)\nprocess p: always area(agent) >= 0.9\n").compile()
    plain = optimize(program, condition, generator, Budget(steps=3), Settings(method="best-of-n"))
    guided = optimize(program, condition, generator, Budget(steps=3), Settings(method="best-of-n", frame_retries=3))
    assert [s.loss for s in guided.history] == [s.loss for s in plain.history] and guided.best_draws is None


def test_a_guided_tto_run_resumes_to_the_same_curve(tmp_path):
    from test_crashsafe import points

    from ruledsl.runtime.run import load_resume, write_run

    generator = ReasonerGenerator(model=tiny_ar())
    condition = Condition(torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1)), "p", "maze", frames=5)
    program = ruledsl.loads(
        "object agent = color(#ff0000, tol=40)\ngoal g: at end area(agent) >= 0.99\n"
        "process p: always area(agent) >= 0.01\n"  # broken from frame 1: every seed redraws it
    ).compile()
    settings, budget = Settings(method="tto", population=2, rank=4, frame_retries=2), Budget(steps=4)
    whole = optimize(program, condition, generator, budget, settings)
    seeds = whole.checkpoint.extra["next_seed"] - (settings.seed + 1)
    assert whole.phases["search"] > seeds * generator.nfe(0) + 1e-6  # some frames were drawn again

    def stop(step, report):
        if step.index == 2:
            raise KeyboardInterrupt

    stopped = optimize(program, condition, generator, budget, settings, on_step=stop)
    write_run(tmp_path / "run", stopped, "r.rule", None, "tiny", settings, budget, {})
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert saved["best_draws"] == stopped.best_draws
    resumed = optimize(program, condition, generator, budget, settings, resume=load_resume(tmp_path / "run"))
    assert points(resumed.history) == points(whole.history) and resumed.nfe == whole.nfe
    assert resumed.best_seed == whole.best_seed and resumed.best_draws == whole.best_draws


@pytest.mark.parametrize("lr", [3e-3, 0.0])
def test_a_guided_tto_runs_best_video_is_drawn_again_from_seed_draws_and_lora(shipped, lr):
    """As `ruledsl reasoner sample --seed S --draws D [--lora lora.safetensors]` with report.json's values."""
    from ruledsl.runtime.lora import attach_saved_lora, detach_lora

    generator = shipped
    program, condition = unsolvable("two_targets", 1)  # boxes that vanish: the guide redraws frames
    settings = Settings(method="tto", population=2, rank=4, lr=lr, frame_retries=2, frame_backtracks=4)
    result = optimize(program, condition, generator, Budget(steps=2), settings)
    assert result.best_draws is not None and any(result.best_draws)
    detach_lora(generator.denoiser)
    if result.lora:
        attach_saved_lora(generator.denoiser, result.lora)
    with torch.no_grad():
        again = generator.rollout(condition, guided_noise(generator, condition, result.best_seed, result.best_draws))
    torch.testing.assert_close(again[0], result.best_video)
    detach_lora(generator.denoiser)
