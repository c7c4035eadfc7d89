"""`tto`: test-time optimization that contains Best-of-N's search and adds the gradient on top.

Every step spends its compute in two parts:
1. **search**: `population` fresh seeds rolled out without gradient through the frozen model
   (`search="base"`, the default: peft's adapters disabled) or through the current LoRA ("lora");
   every video is judged with the exact semantics and the best so far is kept. The seeds follow
   Best-of-N's stream (seed + 1, seed + 2, ...), so on the frozen model this part *is* Best-of-N,
   whatever the LoRA has learned, and the LoRA only makes the target's gradient rollouts (each judged
   like a searched seed). When the search finds a better candidate, `retarget="restart"` (default)
   gives it a fresh LoRA. On an autoregressive generator each seed is sampled under frame guidance
   (`frame_retries`, `frame_backtracks`; runtime/frame_guide.py): a frame that breaks a safety rule is
   drawn again as it is made, and the target's gradient rollouts start from the guided noise it kept;
2. **gradient**: one rollout with gradient on the seed of the best candidate so far (the video nearest
   to satisfying the rules; with `refine_failing`, only once it fails at most that many rules),
   through the sampling steps chosen by `grad_reach` ("last": the last `grad_steps`; "random": a
   random number of final steps each time, DRaFT/AlignProp-style randomized truncation, so early
   steps where layout and motion are decided get gradient too; "all": every step).
   The loss is each rule's smooth loss divided by its value at the first gradient step, floored at
   the rules' mean (`loss_scales`; per-rule normalisation: no rule's scale dominates), weighted by
   `1 + focus` for the rules the target video still fails. With `search="lora"` the LoRA is shared
   by every seed, so an update moves the whole search distribution.
3. **plateau**: no better candidate in `patience` steps halves the learning rate; the second plateau
   in a row resets the LoRA (a restart) — the search part keeps drawing fresh seeds throughout, so a
   plateau changes what is searched rather than ending the run. The run ends when every rule holds
   (exact semantics) or the budget is spent.

The report's history has one entry per judged rollout; `phases` counts what the budget was spent on.
"""

from __future__ import annotations

import random
from contextlib import nullcontext

import torch

from ruledsl.runtime.frame_guide import FrameGuide, GuidedSample, guided_noise
from ruledsl.runtime.lora import attach_lora, lora_disabled, lora_state
from ruledsl.runtime.settings import GradientWindow

GRAD_REACH = ("last", "random", "all")
SEARCH = ("lora", "base")
RETARGET = ("keep", "restart")


def grad_steps_for(reach: str, fixed, steps: int, rng: random.Random) -> GradientWindow:
    """Which sampling steps keep the graph this time (`fixed`: Settings.grad_steps, for "last")."""
    if reach == "last":
        return GradientWindow.of(fixed)
    if reach == "random":
        return GradientWindow.last(rng.randint(1, steps))
    if reach == "all":
        return GradientWindow.every()
    raise ValueError(f"unknown grad_reach {reach!r}; choose from {', '.join(GRAD_REACH)}")


def loss_scales(report) -> dict[str, float]:
    """Each rule's reference scale for `normalised_loss`: its smooth loss on the first gradient rollout,
    but no less than the mean over the program's rules. A rule that already holds has a near-zero
    loss; dividing by that would turn any later wobble of it into the largest term (measured on a
    train two_targets task: a held goal's normalised loss jumped to 60 and took over the update)."""
    losses = {name: float(rule.loss.detach().mean()) for name, rule in report.rules.items()}
    floor = max(sum(losses.values()) / max(len(losses), 1), 1e-6)
    return {name: max(value, floor) for name, value in losses.items()}


def normalised_loss(report, scales: dict[str, float], focus: float) -> torch.Tensor:
    """Weighted mean of per-rule losses, each over its reference scale; failing rules weigh 1 + focus."""
    terms, weights = [], 0.0
    for name, rule in report.rules.items():
        weight = rule.weight * (1.0 + focus * float(not bool(rule.verdict[0])))
        terms.append(weight * rule.loss.mean() / scales[name])
        weights += weight
    return torch.stack(terms).sum() / max(weights, 1e-12)


def improved(rank: tuple, best: tuple | None, tol: float = 0.01) -> bool:
    """A candidate rank (all hold, rules held, -loss) beats `best`: more rules hold, or the loss fell
    by more than `tol` (relative). Tiny loss changes are noise, not progress."""
    if best is None or rank[:2] != best[:2]:
        return best is None or rank[:2] > best[:2]
    return rank[2] > best[2] + tol * abs(best[2])


def plateau_action(extra: dict, progress: bool, patience: int) -> str:
    """After a step: "none"; "halve" (the learning rate) after `patience` steps without progress;
    "restart" (a fresh LoRA) when that happens twice in a row."""
    extra["stale"] = 0 if progress else extra["stale"] + 1
    if extra["stale"] < patience:
        return "none"
    extra["stale"] = 0
    extra["plateaus"] += 1
    return "restart" if extra["plateaus"] % 2 == 0 else "halve"


def run_tto(program, condition, generator, tracker, on_step, backward, snapshot, restore) -> None:
    """The `tto` method on the loop's shared tracker (accounting, best-so-far, stops, checkpoints).

    A step is committed twice: after its search (so that the judged seeds survive a kill) and after its
    gradient update. The counters that steer the search (next seed, target seed, plateaus, the loss
    scales, the truncation draws) are in `tracker.extra`, so a resume continues the same run."""
    s = tracker.settings
    targets = s.targets or generator.lora_targets
    fresh = {"next_seed": s.seed + 1, "target_seed": s.seed, "stale": 0, "plateaus": 0, "scales": {}}
    extra = tracker.extra
    for key, value in fresh.items():
        extra.setdefault(key, value)
    step = tracker.next_step
    lora = {"params": attach_lora(generator.denoiser, targets, s.rank)}
    # The learning rate in use (halved on a plateau, back on a restart); older checkpoints lack it: an
    # odd number of plateaus there meant a halved one.
    lr = extra.get("lr", s.lr * (0.5 if extra["plateaus"] % 2 else 1.0))
    lora["optimizer"] = torch.optim.AdamW(lora["params"], lr=lr, weight_decay=0.0)
    restore(generator.denoiser, lora["optimizer"], lora["params"], tracker.tensors)
    tracker.restore_rng()
    rng = random.Random(s.seed * 7919)  # the truncation draws: reproducible, and saved with every commit
    if "rng" in extra:
        version, state, gauss = extra["rng"]
        rng.setstate((version, tuple(state), gauss))
    sample_cost = generator.nfe(0)
    if s.search not in SEARCH or s.retarget not in RETARGET:
        raise ValueError(f"tto: search must be one of {SEARCH}, retarget one of {RETARGET}")
    on_base = s.search == "base"
    # The last rank that counted as progress (tolerance: not every better best is progress).
    best_rank = tuple(extra["progress_rank"]) if "progress_rank" in extra else tracker.best[0]

    def tensors():
        return snapshot(generator.denoiser, lora["optimizer"], lora["params"])

    guide = FrameGuide.for_settings(program, s)

    def search(seeds: list[int]) -> list[GuidedSample]:
        """The seeds' videos, through the frozen model (or the LoRA): guided one by one when frame
        guidance is on (within the NFE budget), else in one batch."""
        with torch.no_grad(), lora_disabled(generator.denoiser) if on_base else nullcontext():
            if guide.active and generator.autoregressive:
                drawn: list[GuidedSample] = []
                pending = 0.0  # what the seeds drawn so far cost (the caller spends it, seed by seed)
                for seed in seeds:
                    # Redraws only from what is left once every seed still to come has its one sample.
                    later = pending + sample_cost * (len(seeds) - len(drawn))
                    drawn.append(
                        guide.sample(
                            generator, condition, seed, guide.redraws_affordable(generator, condition, tracker, later)
                        )
                    )
                    pending += sample_cost + drawn[-1].redraws * guide.frame_cost(generator, condition)
                return drawn
            noise = torch.cat([generator.initial_noise(condition, seed) for seed in seeds])
            videos = generator.rollout(condition, noise, grad_steps=0)
            return [GuidedSample(video[None], n[None]) for video, n in zip(videos, noise)]

    def restart() -> None:
        """A fresh LoRA at the configured learning rate (its loss scales measured again)."""
        lora["params"] = attach_lora(generator.denoiser, targets, s.rank)
        lora["optimizer"] = torch.optim.AdamW(lora["params"], lr=s.lr, weight_decay=0.0)
        extra.update(scales={}, lr=s.lr)
        tracker.phases["restarts"] += 1

    def update(finite: bool) -> None:
        """Apply the step's gradient, then act on a plateau: progress resets the count; otherwise lower
        the lr, then restart."""
        nonlocal best_rank
        if finite:
            torch.nn.utils.clip_grad_norm_(lora["params"], s.clip)
            lora["optimizer"].step()
        progress = improved(tracker.best[0], best_rank)
        if progress:
            best_rank = tracker.best[0]
        action = plateau_action(extra, progress, s.patience)
        if action == "restart":  # a fresh LoRA, the learning rate back
            restart()
        elif action == "halve":
            for group in lora["optimizer"].param_groups:
                group["lr"] = s.lr / 2
            extra["lr"] = s.lr / 2
        extra.update(searched=False, progress_rank=list(best_rank), rng=_json_rng(rng))

    while True:
        # 1. search: fresh seeds through the frozen model (or the current LoRA), judged exactly (skipped
        # when a resumed step had done it).
        if not extra.get("searched"):
            if not tracker.can_afford(s.population * sample_cost, step):
                return
            seeds = list(range(extra["next_seed"], extra["next_seed"] + s.population))
            extra["next_seed"] += s.population
            judged, final = [], ""
            # A seed searched on the frozen model keeps no LoRA: none made its video.
            made_by = None if on_base else (lambda: lora_state(generator.denoiser))
            for seed, drawn in zip(seeds, search(seeds)):
                tracker.spend(sample_cost + drawn.redraws * guide.frame_cost(generator, condition), "search")
                before = tracker.best[0]
                report = tracker.judge(drawn.video, step, lora=made_by, seed=seed, draws=drawn.attempts)
                tracker.record(step, report)
                judged.append((tracker.history[-1], report))
                if tracker.best[0] != before:
                    if s.retarget == "restart" and extra["scales"] and extra["target_seed"] != seed:
                        restart()
                    extra["target_seed"] = seed
                    extra["target_draws"] = drawn.attempts
                if bool(report.satisfied[0]):
                    final = f"every rule holds (step {step}, seed {seed})"
                    break
            extra["searched"] = True
            tracker.stop_reason = final or tracker.stop_reason
            tracker.commit(step, tensors(), final)
            if on_step:
                for entry, report in judged:
                    on_step(entry, report)
            if final:
                return
        # 2. gradient on the best candidate's seed — with `refine_failing`, only once the best fails at
        # most that many rules (a near miss); until then the step is search only.
        if s.refine_failing is not None and len(tracker.best[2].rules) - tracker.best[0][1] > s.refine_failing:
            extra["searched"] = False
            tracker.commit(step + 1, tensors())
            step += 1
            continue
        window = grad_steps_for(s.grad_reach, s.grad_steps, generator.steps, rng)
        cost = generator.nfe(window)
        if not tracker.can_afford(cost, step):
            return
        draws = extra.get("target_draws")
        noise = (
            guided_noise(generator, condition, extra["target_seed"], draws)
            if draws
            else generator.initial_noise(condition, extra["target_seed"])
        )
        video = generator.rollout(condition, noise, grad_steps=window)
        tracker.spend(cost, "gradient")
        report = program(video)
        if not extra["scales"]:
            extra["scales"] = loss_scales(report)
        loss = normalised_loss(report, extra["scales"], s.focus)
        lora["optimizer"].zero_grad(set_to_none=True)
        finite = backward(loss, lora["params"])
        weights = lambda: lora_state(generator.denoiser)  # noqa: E731  (the weights that made `video`)
        done = tracker.finish_step(
            video, step, report, finite, on_step, tensors, update, weights, False, extra["target_seed"], draws
        )
        if done:
            return
        step += 1


def _json_rng(rng: random.Random) -> list:
    version, state, gauss = rng.getstate()
    return [version, list(state), gauss]
