"""Peak memory of `ruledsl eval` on a big video: frame-by-frame shrinking vs reading it whole.

Usage: python benchmarks/big_video_memory.py [--frames 82] [--size 1024] [--resolution 256]

Writes a synthetic maze-coloured mp4 (a red disc walking over white floor between black walls to a
green goal, `--frames` frames of `--size` x `--size`), then runs, each in its own subprocess (peak RSS
is `resource.getrusage(RUSAGE_CHILDREN).ru_maxrss` of a wrapper that runs only that child):

- `eval`: `ruledsl eval examples/maze.rule VIDEO --resolution R` (frames decoded and shrunk one at a
  time: uint8 until the working resolution);
- `whole`: the previous path, the whole video read as float32 at full size and then shrunk by the
  compiler (`to_tensor(read_frames(VIDEO))`, then the same compiled program).

Prints the figures as a markdown table (MB = 2^20 bytes).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = ROOT / "examples" / "maze.rule"

WHOLE = """
import sys, torch
torch.set_num_threads(1)
import ruledsl
from ruledsl.compiler.video_io import to_tensor
from ruledsl.video import read_frames
compiled = ruledsl.load(sys.argv[1]).compile(resolution=int(sys.argv[3]))
video = to_tensor(read_frames(sys.argv[2]))
print(bool(compiled(video[None]).satisfied.all()))
"""

MEASURE = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def synthetic_video(frames: int, size: int) -> np.ndarray:
    """uint8 [T, size, size, 3]: maze colours, a red disc moving left to right along a corridor."""
    ys, xs = np.mgrid[0:size, 0:size] / size
    base = np.full((size, size, 3), 255, np.uint8)
    base[(ys < 0.3) | (ys > 0.7)] = (0, 0, 0)  # walls above and below the corridor
    base[(ys > 0.4) & (ys < 0.6) & (xs > 0.85) & (xs < 0.95)] = (0, 255, 0)  # the goal
    video = np.repeat(base[None], frames, axis=0)
    for t in range(frames):
        cx = 0.1 + 0.8 * t / max(frames - 1, 1)
        video[t][(xs - cx) ** 2 + (ys - 0.5) ** 2 < 0.05**2] = (255, 0, 0)
    return video


def peak_rss_mb(command: list[str]) -> tuple[int, float]:
    """(exit code, peak RSS in MB) of `command` run alone in a fresh wrapper process."""
    out = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, check=True)
    code, kilobytes = out.stdout.split()
    return int(code), int(kilobytes) / 1024  # Linux reports ru_maxrss in KiB


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=82)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--resolution", type=int, default=256)
    args = parser.parse_args()
    from ruledsl.video import write_frames

    with tempfile.TemporaryDirectory() as folder:
        video = Path(folder) / "big.mp4"
        write_frames(video, synthetic_video(args.frames, args.size), fps=8)
        env_python = [sys.executable]
        runs = {
            "eval (frame by frame)": env_python
            + ["-m", "ruledsl", "eval", str(PROGRAM), str(video), "--resolution", str(args.resolution)],
            "whole video as float32 (previous path)": env_python
            + ["-c", WHOLE, str(PROGRAM), str(video), str(args.resolution)],
        }
        print(f"{args.frames} frames of {args.size}x{args.size}, working resolution {args.resolution}\n")
        print("| path | exit code | peak RSS (MB) |\n|---|---|---|")
        for name, command in runs.items():
            code, peak = peak_rss_mb(command)
            print(f"| {name} | {code} | {peak:.0f} |")


if __name__ == "__main__":
    main()
