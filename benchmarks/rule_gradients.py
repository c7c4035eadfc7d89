"""How large is each rule's gradient? Per rule: its smooth loss and the norm of its gradient at the
video and at a LoRA on the shipped reasoner, with the exact per-mass gradients (mass_prior 0) and the
damped ones (the default), for one generated task (train split by default).

    python benchmarks/rule_gradients.py --family two_targets --index 1 --seed 0

A rule whose gradient is orders of magnitude above the others is, after clipping, the whole update.
The LoRA is given small random weights (seeded), as after a few optimizer steps; its B matrices start
at zero otherwise, and every gradient but B's would be zero.
"""

from __future__ import annotations

import argparse

import torch

from ruledsl.runtime.bench import example_program
from ruledsl.runtime.generators import ReasonerGenerator, condition_from_instance
from ruledsl.runtime.lora import attach_lora
from ruledsl.runtime.settings import GradientWindow
from ruledsl.tasks.families import FAMILIES, generate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--family", default="two_targets", choices=list(FAMILIES))
    parser.add_argument("--index", type=int, default=1)
    parser.add_argument("--split", default="train")
    parser.add_argument("--stream", type=int, default=1, help="the split's instance stream (tasks generate --seed)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed of the rollout")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator = ReasonerGenerator(path=args.model)
    instance = generate(args.family, args.index, args.stream, args.split)
    condition = condition_from_instance(instance, generator.size)
    params = attach_lora(generator.denoiser, generator.lora_targets, 8)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in params:
            p.normal_(0, 0.01)
    video = generator.rollout(
        condition, generator.initial_noise(condition, args.seed), grad_steps=GradientWindow.every()
    )
    print(
        f"{args.family}/{args.index} ({args.split}, stream {args.stream}), noise seed {args.seed}, grads through every step"
    )
    print("| rule | holds | loss | mass_prior | |grad| at the video | |grad| at the LoRA |")
    print("|---|---|---|---|---|---|")
    for prior in (0.0, None):
        program = example_program(args.family, instance.to_dict(), generator.size, mass_prior=prior)
        frames = video.detach().requires_grad_(True)
        report = program(frames)
        for name, rule in report.rules.items():
            frames.grad = None
            for p in params:
                p.grad = None
            # The LoRA's gradient: the same loss through the rollout's graph.
            (video_grad,) = torch.autograd.grad(rule.loss.mean(), frames, retain_graph=True)
            torch.autograd.backward(video, video_grad, retain_graph=True)
            lora = torch.sqrt(sum((p.grad**2).sum() for p in params if p.grad is not None))
            label = "exact (0)" if prior == 0.0 else "default"
            print(f"| {name} | {bool(rule.verdict[0])} | {float(rule.loss.detach().mean()):.4g} | {label} | "
                  f"{float(video_grad.norm()):.3g} | {float(lora):.3g} |")  # fmt: skip


if __name__ == "__main__":
    main()
