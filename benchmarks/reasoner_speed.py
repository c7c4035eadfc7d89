"""Reasoner speed (v1 or v2): one sample at the model's steps (per frame for the autoregressive v2), and forward +
backward through the sampler with a LoRA attached (gradients through the last 2 steps, and through all of them).

Usage: python benchmarks/reasoner_speed.py [--threads 1 2] [--repeats 5] [--model FOLDER]
"""

from __future__ import annotations

import argparse

import torch
from timing import timed

import ruledsl
from ruledsl.runtime.generators import ReasonerGenerator, condition_from_instance
from ruledsl.runtime.lora import attach_lora, detach_lora
from ruledsl.tasks.families import generate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default=None, help="a reasoner folder (default: the shipped one)")
    args = parser.parse_args()
    generator = ReasonerGenerator(path=args.model)
    instance = generate("maze", 0, 0, "test")
    condition = condition_from_instance(instance)
    program = ruledsl.load("examples/maze.rule").compile(params={"cell": 1 / instance.rows})
    print(
        f"reasoner: {sum(p.numel() for p in generator.denoiser.parameters()) / 1e6:.2f} M params, "
        f"{generator.steps} steps, {condition.frames} frames at {generator.size}x{generator.size}"
    )
    for threads in args.threads:
        torch.set_num_threads(threads)

        def sample():
            with torch.no_grad():
                generator.sample(condition, 0)

        params = attach_lora(generator.denoiser, generator.lora_targets, rank=8)

        def step(k, params=params):
            def run():
                for p in params:
                    p.grad = None
                program(generator.sample(condition, 0, grad_steps=k)).loss.backward()

            return run

        rows = {
            "sample (no grad)": timed(sample, args.repeats),
            "fwd+bwd, LoRA, grads through last 2 steps": timed(step(2), args.repeats),
            f"fwd+bwd, LoRA, grads through all {generator.steps} steps": timed(step(generator.steps), args.repeats),
        }
        detach_lora(generator.denoiser)
        for name, seconds in rows.items():
            print(f"threads {threads}  {name:45s} {seconds * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
