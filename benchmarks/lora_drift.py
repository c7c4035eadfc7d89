"""Do tto's LoRA updates make the *next* seeds better or worse? For each task: k gradient steps of tto's
kind (the normalised rule loss on one seed's rollout, randomized truncation, AdamW at the default lr,
clipped), then the same fresh seeds sampled with and without that LoRA, judged by the task's scorer.

    python benchmarks/lora_drift.py --split train --per-family 4 --steps 3 --seeds 8

tto's search after an update draws from the updated model; if those draws pass less often than the base
model's, the gradient costs the search twice (its NFE, and worse seeds).
"""

from __future__ import annotations

import argparse
import random

import torch

from ruledsl.runtime.bench import example_program
from ruledsl.runtime.generators import ReasonerGenerator, condition_from_instance, to_uint8
from ruledsl.runtime.lora import attach_lora, detach_lora
from ruledsl.runtime.settings import Settings
from ruledsl.runtime.tto import grad_steps_for, loss_scales, normalised_loss
from ruledsl.tasks.families import FAMILIES, generate
from ruledsl.tasks.scorers import score_video


def passes(generator, condition, meta, seeds) -> int:
    with torch.no_grad():
        return sum(bool(score_video(to_uint8(generator.sample(condition, s)[0]), meta).passed) for s in seeds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", default="train")
    parser.add_argument("--stream", type=int, default=1)
    parser.add_argument("--per-family", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    s = Settings()
    generator = ReasonerGenerator()
    seeds = list(range(100, 100 + args.seeds))
    totals = [0, 0]
    print(f"| task | base model: passing of {args.seeds} seeds | after {args.steps} tto gradient steps |")
    print("|---|---|---|")
    for family in FAMILIES:
        for index in range(args.per_family):
            instance = generate(family, index, args.stream, args.split)
            meta = instance.to_dict()
            program = example_program(family, meta, generator.size)
            condition = condition_from_instance(instance, generator.size)
            before = passes(generator, condition, meta, seeds)
            params = attach_lora(generator.denoiser, generator.lora_targets, s.rank)
            optimizer = torch.optim.AdamW(params, lr=s.lr, weight_decay=0.0)
            rng, scales = random.Random(s.seed * 7919), None
            for _ in range(args.steps):
                window = grad_steps_for(s.grad_reach, s.grad_steps, generator.steps, rng)
                report = program(generator.sample(condition, s.seed, grad_steps=window))
                scales = scales or loss_scales(report)
                optimizer.zero_grad(set_to_none=True)
                normalised_loss(report, scales, s.focus).backward()
                torch.nn.utils.clip_grad_norm_(params, s.clip)
                optimizer.step()
            after = passes(generator, condition, meta, seeds)
            detach_lora(generator.denoiser)
            totals[0] += before
            totals[1] += after
            print(f"| {family}/{index} | {before} | {after} |", flush=True)
    print(f"| all | {totals[0]} | {totals[1]} |")


if __name__ == "__main__":
    main()
