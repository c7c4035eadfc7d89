"""`ruledsl check` on a 200-line program as a fresh process, beside `python -c pass`.

Usage: python benchmarks/check_speed.py [--runs 20]
Prints the median and min wall time of each; target for check: <= 0.25 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def program_of_200_lines() -> str:
    lines = ['task big "A long program."', "param step = 0.1"]
    i = 0
    while len(lines) < 200:
        lines += [
            f"object o{i} = color(#ff{i % 100:02d}00)",
            f"region r{i} = grow(color(#00{i % 100:02d}ff), 0.02) at start",
            f"goal g{i}: at end inside(o{i}, r{i})",
            f"process p{i}: always persists(o{i}) and speed(o{i}) <= step and not touches(o{i}, r{i}) until single(o{i})",
        ]
        i += 1
    return "\n".join(lines[:200]) + "\n"


def time_command(cmd: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.rule"
        path.write_text(program_of_200_lines())
        ruledsl = shutil.which("ruledsl") or str(Path(sys.executable).with_name("ruledsl"))
        subprocess.run(
            [ruledsl, "check", str(path)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )  # warm the LALR cache
        rows = {
            "python -c pass": time_command([sys.executable, "-c", "pass"], args.runs),
            "ruledsl check (200 lines)": time_command([ruledsl, "check", str(path)], args.runs),
        }
    print(f"machine: {os.cpu_count()} cores; {args.runs} runs each")
    for name, times in rows.items():
        print(f"{name:28s} median {statistics.median(times) * 1000:7.1f} ms   min {min(times) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
