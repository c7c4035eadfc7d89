"""Time and peak memory of `until` on long videos (one process per case, so peaks do not mix).

Usage: python benchmarks/until_cost.py [--frames 500 2000 5000] [--repeats 3]
Each case scores a [1, T, 3, 8, 8] video with `persists(a) until inside(a, right_half)`:
one report (smooth pass with backward, exact pass, blame) per repeat, and the same with
the exact semantics alone (`robustness(video, "exact")`). Peak memory is the process's
maximum resident size above what it held after building the program and the video.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

PROGRAM = """
object a = color(#ff0000)
region right_half = box(0.5, 0, 1, 1)
goal g: persists(a) until inside(a, right_half)
"""


def child(frames: int, repeats: int) -> None:
    import torch
    from timing import timed

    import ruledsl

    torch.set_num_threads(1)
    program = ruledsl.loads(PROGRAM).compile()
    video = torch.rand(1, frames, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    program(video[:, :8])  # imports and first-call set-up outside the measurement
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def report():
        leaf = video.clone().requires_grad_(True)
        program(leaf).loss.backward()

    def exact():
        program.robustness(video, "exact")

    result = {"exact_s": timed(exact, repeats)}
    exact_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result["report_s"] = timed(report, repeats)
    result["exact_mb"] = (exact_peak - base) / 1024
    result["report_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, nargs="+", default=[500, 2000, 5000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.repeats)
        return
    print(f"{'frames':>7} {'exact s':>8} {'exact +MB':>10} {'report+bwd s':>13} {'report +MB':>11}")
    for frames in args.frames:
        run = subprocess.run(
            [sys.executable, __file__, "--child", str(frames), "--repeats", str(args.repeats)],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"{frames:>7} {r['exact_s']:8.3f} {r['exact_mb']:10.0f} {r['report_s']:13.2f} {r['report_mb']:11.0f}")


if __name__ == "__main__":
    main()
