"""Can a LoRA of the runtime's default rank and targets express the fix? Fit one to a task's own answer.

Usage: python benchmarks/lora_capacity.py [--model FOLDER] [--split ood] [--per-family 2] [--steps 100] [--size 96]

For each task (instances 0..per_family-1 of every family of the split): the seed-0 sample of the
base model is scored; then a fresh LoRA (rank and lr of runtime.loop.Settings, targets of the
generator) is trained on that task's ground-truth video alone with the model's denoising loss
(rectified flow, moving parts upweighted, as in training; for an autoregressive model the
next-frame loss) for up to --steps steps, checking the
seed-0 sample every --check-every steps; a task counts as fixed when that sample passes the
scorer. If a LoRA cannot reach a task's answer when shown it, test-time optimization with rule
losses cannot find it either. Prints a table and the fixed count; --json writes the rows.
`--only-failing` fits the first tasks per family whose base sample fails instead (what choosing the
probe's settings on `train` needs: there most base samples already pass).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ruledsl.runtime.generators import ReasonerGenerator, condition_from_instance, to_uint8
from ruledsl.runtime.latent_reasoner import flow_matching_loss, moving_mask, next_frame_loss
from ruledsl.runtime.lora import attach_lora, detach_lora
from ruledsl.runtime.reasoner import family_ids
from ruledsl.runtime.settings import Settings
from ruledsl.tasks.families import FAMILIES, generate
from ruledsl.tasks.render import render, solution_plan
from ruledsl.tasks.scorers import score_video

# The probe's learning rate: the runtime's. Checked on train (2026-12-04; 20 tasks, the first 4 per
# family whose base sample fails, 64 px, `--split train --size 64 --per-family 4 --only-failing
# --batch 16 --lr X`; benchmarks/results/lora_capacity_train64_lr*.json): 3e-3 and 1e-2 fix 14/20
# each, 3e-2 10/20; a different rate would have needed to fix more there.
LR = Settings().lr


def ground_truth(
    generator: ReasonerGenerator, instance, frames: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x0, cond, moving) of the model's denoising loss for the task's ground-truth video."""
    size = generator.size
    video = render(instance, solution_plan(instance, frames), (size, size))
    video = torch.from_numpy(video).float().div(255).permute(0, 3, 1, 2)[None]
    if generator.latent:
        with torch.no_grad():
            z0, changes = generator.model.latent_changes(video)
        return changes, z0, moving_mask(changes)
    x0 = video * 2 - 1
    moving = ((x0 - x0[:, :1]).abs().sum(2, keepdim=True) > 0.1).float()
    return x0, x0[:, 0], moving


def seed0_score(generator, instance):
    """The scorer's result on the seed-0 sample of the model as it is (with any LoRA attached)."""
    with torch.no_grad():
        video = generator.sample(condition_from_instance(instance, generator.size), 0)
    return score_video(to_uint8(video[0]), instance.to_dict())


def fit(
    generator, instance, steps: int, check_every: int, batch: int, lr: float, base=None, rank=None, targets=None
) -> dict:
    condition = condition_from_instance(instance, generator.size)

    def seed0():
        return seed0_score(generator, instance)

    base = seed0() if base is None else base
    x0, cond, moving = ground_truth(generator, instance, condition.frames)
    family = family_ids([instance.family], x0.device)
    settings = Settings()
    params = attach_lora(generator.denoiser, targets or generator.lora_targets, rank or settings.rank)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    fixed_at, last = None, base
    start = time.time()
    try:
        for step in range(1, steps + 1):
            if generator.context:  # autoregressive: random frames, each from its context
                loss = next_frame_loss(
                    generator.denoiser,
                    cond.expand(batch, *cond.shape[1:]),
                    x0.expand(batch, *x0.shape[1:]),
                    family.expand(batch),
                )
            else:
                loss = flow_matching_loss(
                    generator.denoiser,
                    x0.expand(batch, *x0.shape[1:]),
                    cond.expand(batch, *cond.shape[1:]),
                    family.expand(batch),
                    moving.expand(batch, *moving.shape[1:]),
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % check_every == 0 or step == steps:
                generator.denoiser.eval()
                last = seed0()
                if last.passed:
                    fixed_at = step
                    break
    finally:
        detach_lora(generator.denoiser)
    return {
        "family": instance.family,
        "index": instance.index,
        "base_passed": base.passed,
        "base_score": round(base.score, 3),
        "fixed_at_step": fixed_at,
        "lr": lr,
        "final_score": round(last.score, 3),
        "final_reasons": last.reasons,
        "seconds": round(time.time() - start, 1),
    }


def tasks(generator, family: str, split: str, count: int, only_failing: bool):
    """(instance, its base score or None) for the tasks to fit: instances 0..count-1, or with
    `only_failing` the first `count` of instances 0..39 whose base sample fails the scorer."""
    if not only_failing:
        yield from ((generate(family, index, 0, split), None) for index in range(count))
        return
    found = 0
    for index in range(40):
        instance = generate(family, index, 0, split)
        base = seed0_score(generator, instance)
        if not base.passed:
            yield instance, base
            found += 1
            if found == count:
                return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="reasoner folder (default: the shipped one)")
    parser.add_argument("--split", default="ood")
    parser.add_argument("--per-family", type=int, default=2)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--check-every", type=int, default=25)
    parser.add_argument("--batch", type=int, default=4, help="noise draws of the one video per step")
    parser.add_argument("--size", type=int, default=None, help="frame size (v2: any multiple of 8; default: trained)")
    parser.add_argument(
        "--lr",
        type=float,
        default=LR,
        help=f"the LoRA's learning rate (default {LR:g}, checked on train: see LR in this file; "
        f"the runtime's tto uses {Settings().lr:g})",
    )
    parser.add_argument("--rank", type=int, default=None, help="LoRA rank (default: the runtime's)")
    parser.add_argument(
        "--targets", nargs="+", default=None, help="LoRA target module names (default: the generator's)"
    )
    parser.add_argument(
        "--only-failing",
        action="store_true",
        help="per family, the first --per-family instances whose base sample fails (of the first 40), "
        "instead of instances 0..per_family-1: what choosing the probe's settings on train needs",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = ReasonerGenerator(path=args.model, size=args.size)
    rows = []
    print("| task | base | fixed at step | final score | seconds |\n|---|---|---|---|---|")
    for family in args.families:
        for instance, base in tasks(generator, family, args.split, args.per_family, args.only_failing):
            row = fit(
                generator, instance, args.steps, args.check_every, args.batch, args.lr, base, args.rank, args.targets
            )
            rows.append(row)
            print(
                f"| {family}/{instance.index} | {'pass' if row['base_passed'] else 'fail'} {row['base_score']} | "
                f"{row['fixed_at_step'] or '-'} | {row['final_score']} | {row['seconds']} |",
                flush=True,
            )
    fixed = sum(r["fixed_at_step"] is not None for r in rows)
    print(f"fixed {fixed}/{len(rows)} {args.split} tasks within {args.steps} LoRA steps (seed-0 sample passes)")
    if args.json:
        args.json.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1) + "\n"
        )


if __name__ == "__main__":
    main()
