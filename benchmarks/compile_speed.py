"""Forward+backward of the compiled maze program at three sizes, beside a memory floor.

Usage: python benchmarks/compile_speed.py [--threads 1 2] [--repeats 5]
The floor is one torch copy of the video tensor (`video.clone()`), measured in the same run;
the ratio says how many video copies' worth of time one evaluation with backward costs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from timing import timed

import ruledsl

ROOT = Path(__file__).resolve().parent.parent
SIZES = [(1, 8, 3, 32, 32), (8, 16, 3, 64, 64), (1, 49, 3, 480, 832)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    program = ruledsl.load(ROOT / "examples" / "maze.rule").compile()
    print(f"torch {torch.__version__}; rule program: examples/maze.rule ({len(program.rules)} rules)")
    print(f"{'threads':>7} {'shape':>22} {'floor ms':>9} {'fwd ms':>8} {'fwd+bwd ms':>11} {'ratio':>7}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for shape in SIZES:
            generator = torch.Generator().manual_seed(0)
            video = torch.rand(shape, generator=generator)
            floor = timed(lambda video=video: video.clone(), args.repeats * 4)

            def forward(video=video):
                with torch.no_grad():
                    program(video)

            def forward_backward(video=video):
                leaf = video.clone().requires_grad_(True)
                program(leaf).loss.backward()

            fwd = timed(forward, args.repeats)
            both = timed(forward_backward, args.repeats)
            print(
                f"{threads:>7} {str(shape):>22} {floor * 1e3:9.2f} {fwd * 1e3:8.1f} {both * 1e3:11.1f} {both / floor:7.0f}x"
            )


if __name__ == "__main__":
    main()
