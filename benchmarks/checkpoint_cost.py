"""What crash safety costs: seconds per step with and without the per-step checkpoint.

    python benchmarks/checkpoint_cost.py [--steps 8] [--repeats 3] [--threads 1] [--methods lora tto]

On a tiny random reasoner (the tests' size) and on the shipped reasoner (maze test instance 0,
examples/maze.rule), for each method: the loop run `--repeats` times without a checkpoint writer
and with ruledsl.runtime.run.CheckpointWriter (atomic; fsync at most once a second), interleaved so
that load on the machine hits both alike. CPU time is given beside wall time: on a loaded machine
wall time mostly measures the other processes. Then the parts of one checkpoint write on their own
(serializing; writing and renaming, without and with fsync) and its size."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from timing import timed

import ruledsl
from ruledsl.runtime.generators import Condition, ReasonerGenerator, condition_from_instance
from ruledsl.runtime.loop import Budget, Settings, optimize
from ruledsl.runtime.reasoner import ReasonerModel
from ruledsl.runtime.run import CheckpointWriter, checkpoint_bytes, write_atomic
from ruledsl.tasks.families import generate
from ruledsl.tasks.layout import params_for

ROOT = Path(__file__).resolve().parent.parent


def tiny_case():
    torch.manual_seed(0)
    model = ReasonerModel(channels=(16, 16), embed=16, heads=2, size=16, frames=4)
    with torch.no_grad():
        model.proj_out.weight.normal_(0, 0.2)
    program = ruledsl.loads("object agent = color(#ff0000, tol=40)\ngoal g: at end area(agent) >= 0.99\n").compile()
    condition = Condition(torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0)), "p", "maze", frames=4)
    return program, condition, ReasonerGenerator(model=model, steps=3)


def shipped_case():
    instance = generate("maze", 0, 0, "test")
    maze = ruledsl.load(ROOT / "examples" / "maze.rule")
    program = maze.compile(params=params_for(maze, instance.to_dict(), (64, 64)))
    return program, condition_from_instance(instance), ReasonerGenerator()


def measure(name, case, method: str, steps: int, repeats: int) -> None:
    program, condition, generator = case
    settings = Settings(method=method, grad_steps=2, plateau=10**6)
    per_step = {"without": [], "with": []}
    with tempfile.TemporaryDirectory() as folder:
        writer = CheckpointWriter(Path(folder))
        for _ in range(repeats):
            for label, checkpoint in (("without", None), ("with", writer)):
                start, cpu = time.perf_counter(), time.process_time()
                result = optimize(program, condition, generator, Budget(steps=steps), settings, checkpoint=checkpoint)
                n = len({s.index for s in result.history if s.index >= 0})  # tto judges several rollouts a step
                per_step[label].append(((time.perf_counter() - start) / n, (time.process_time() - cpu) / n))
        data = checkpoint_bytes(result.checkpoint)
        path = Path(folder) / "probe.safetensors"
        serialize = timed(lambda: checkpoint_bytes(result.checkpoint), 10)
        write = {sync: timed(lambda sync=sync: write_atomic(path, data, sync=sync), 10) for sync in (False, True)}
    wall = {label: statistics.median(w for w, _ in runs) * 1000 for label, runs in per_step.items()}
    cpu = {label: statistics.median(c for _, c in runs) * 1000 for label, runs in per_step.items()}
    print(
        f"| {name} | {method} | {wall['without']:.1f} / {cpu['without']:.1f} ms | {wall['with']:.1f} / {cpu['with']:.1f} ms "
        f"| {serialize * 1000:.2f} ms | "
        f"{write[False] * 1000:.2f} ms | {write[True] * 1000:.2f} ms | {len(data) / 1024:.0f} KiB |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", nargs="+", default=["lora", "tto"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        "| model | method | step without writer (wall / CPU) | step, checkpoint every step (wall / CPU) | serialize | write + rename "
        "| write + fsync + rename | size |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for method in args.methods:
        measure("tiny random reasoner (tests)", tiny_case(), method, args.steps * 3, args.repeats)
        measure("shipped reasoner, maze", shipped_case(), method, args.steps, args.repeats)


if __name__ == "__main__":
    main()
