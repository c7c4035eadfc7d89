"""Where a tto step's time goes on the default reasoner: seconds per step, and the compiled program's share.

    python benchmarks/step_cost.py [--families maze two_targets key_door] [--steps 3] [--threads 1] [--size 64]

For `test` instance 0 of each family (seed 0, `examples/<family>.rule` with the task's params): a tto run of
up to --steps steps with the default settings (each step: `population` guided samples, one gradient
rollout). Every call of the compiled program in the run is timed (exact judgements of each sample, the
frame guide's monitors on every prefix, the smooth loss's forward); the loss's backward through the program
alone is timed on the base video and counted once per step. Seconds per step = (run time - base sample) /
steps. A run whose base sample already passes takes no step and is skipped.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ruledsl.runtime.bench import example_program
from ruledsl.runtime.generators import ReasonerGenerator, condition_from_instance
from ruledsl.runtime.loop import Budget, Settings, optimize
from ruledsl.tasks.families import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=["maze", "two_targets", "key_door"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = ReasonerGenerator(size=args.size)
    settings = Settings()
    print(f"threads {args.threads}, size {args.size}, tto population {settings.population}\n")
    print(
        "| task | tto steps | s per step | program calls in the run | loss backward (program only) | program's share |"
    )
    print("|---|---|---|---|---|---|")
    compiled_type = None
    for family in args.families:
        instance = generate(family, 0, 0, "test")
        program = example_program(family, instance.to_dict(), args.size)
        condition = condition_from_instance(instance, args.size)
        spent = [0.0]
        compiled_type = compiled_type or type(program)
        # Judgements and the smooth loss go through __call__, the frame guide's monitors through robustness.
        real = {name: getattr(compiled_type, name) for name in ("__call__", "robustness")}
        depth = [0]

        def timing(method, spent=spent, depth=depth):
            def counted(self, *a, **k):
                depth[0] += 1
                start = time.perf_counter()
                try:
                    return method(self, *a, **k)
                finally:
                    depth[0] -= 1
                    if depth[0] == 0:  # a call inside a timed call is not counted twice
                        spent[0] += time.perf_counter() - start

            return counted

        for name, method in real.items():
            setattr(compiled_type, name, timing(method))
        try:
            result = optimize(program, condition, generator, Budget(steps=args.steps), settings)
        finally:
            for name, method in real.items():
                setattr(compiled_type, name, method)
        steps = len({s.index for s in result.history[1:]})
        if steps < 1:
            print(f"| {family}/0 | 0 | - | - | - | - (the base sample passes) |")
            continue
        run_s = result.seconds - result.history[0].seconds
        with torch.no_grad():
            video = generator.sample(condition, settings.seed)

        def backward(video=video, program=program):
            leaf = video.detach().requires_grad_(True)
            loss = program(leaf).loss
            start = time.perf_counter()
            loss.backward()
            return time.perf_counter() - start

        backward_s = statistics.median(backward() for _ in range(args.repeats))
        share = (spent[0] + steps * backward_s) / result.seconds
        print(
            f"| {family}/0 | {steps} | {run_s / steps:.2f} | {spent[0]:.2f} s | {backward_s * 1000:.1f} ms |"
            f" {share:.1%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
