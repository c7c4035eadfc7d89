"""How quickly `ruledsl lsp` answers, for a real program and for a 1 MB document.

Usage: python benchmarks/lsp_latency.py [--size 990000] [--runs 5]

Prints: server start (spawn to the `initialize` reply, beside a fresh `ruledsl check`); open -> diagnostics for examples/maze.rule;
edit -> diagnostics (includes the debounce); hover; for a document of --size characters: open ->
diagnostics, and the latency of completion and hover on a small document *while* the big one is
being checked (what decides whether the editor feels frozen); and `check` of the big document in
this process (parser + checker, no server).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from lsp_client import LspClient  # noqa: E402
from test_lsp import _big_program  # noqa: E402

from ruledsl.checker import check  # noqa: E402
from ruledsl.source import Source  # noqa: E402

DEBOUNCE = 0.2


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=990_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    maze = (ROOT / "examples" / "maze.rule").read_text()
    rows: dict[str, list[float]] = {}

    def record(name: str, seconds: float) -> None:
        rows.setdefault(name, []).append(seconds)

    for run in range(args.runs):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "ruledsl", "check", str(ROOT / "examples" / "maze.rule")],
            check=True,
            capture_output=True,
        )
        record("for comparison: ruledsl check maze.rule (fresh process)", time.perf_counter() - start)
        start = time.perf_counter()
        client = LspClient("--debounce", str(DEBOUNCE))
        client.initialize()
        record("start (spawn -> initialize reply)", time.perf_counter() - start)
        uri = f"file:///tmp/maze{run}.rule"
        start = time.perf_counter()
        client.open(uri, maze)
        client.diagnostics(uri, 1)
        record("maze: open -> diagnostics", time.perf_counter() - start)
        start = time.perf_counter()
        client.change(uri, 2, [{"text": maze + "goal extra: at end inside(agent, goal)\n"}])
        client.diagnostics(uri, 2)
        record(f"maze: edit -> diagnostics (debounce {DEBOUNCE} s)", time.perf_counter() - start)
        start = time.perf_counter()
        client.at(uri, "hover", 10, 22)
        record("maze: hover", time.perf_counter() - start)

        big_uri = f"file:///tmp/big{run}.rule"
        big = _big_program(args.size)
        start = time.perf_counter()
        client.open(big_uri, big)
        time.sleep(0.5)  # let the big check start
        for _ in range(5):
            t = time.perf_counter()
            client.at(uri, "completion", 10, 26)
            record("maze: completion while the big check runs", time.perf_counter() - t)
            t = time.perf_counter()
            client.at(uri, "hover", 10, 22)
            record("maze: hover while the big check runs", time.perf_counter() - t)
        client.diagnostics(big_uri, 1, timeout=600)
        record(f"big ({len(big) / 1e6:.2f} MB): open -> diagnostics", time.perf_counter() - start)
        client.close()
    big = _big_program(args.size)
    start = time.perf_counter()
    check(Source(big))
    record(f"check of the big document in-process ({len(big) / 1e6:.2f} MB)", time.perf_counter() - start)

    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; {args.runs} runs")
    for name, times in rows.items():
        print(f"{name:58s} median {ms(statistics.median(times))}   max {ms(max(times))}")


if __name__ == "__main__":
    main()
