"""Fuzz ruledsl: >= 100,000 inputs through check and fmt, and compile + eval (loss, robustness and
the loss's gradient) on small videos for the programs that check clean; reports counts of
crashes, hangs and non-finite values.

Usage:
    python benchmarks/fuzz.py [--inputs 100000] [--seed 0] [--timeout 60] [--cli 300]
                              [--out benchmarks/results/fuzz.json]
    python benchmarks/fuzz.py --reproduce 1234      # print input 1234 and run it here

Inputs (benchmarks/fuzz_inputs.py, one seeded random.Random per input, so any input can be
reproduced from its number): programs derived from the grammar, well-typed programs from the
signature table, mutated examples, degenerate shapes (deep, long, huge numbers), random text.

Subprocess-safe: a worker process runs the inputs and reports each one on a line before and
after; the parent kills a worker that is silent for --timeout seconds (a hang) or restarts one
that dies (a crash of the interpreter), and carries on from the next input. Documented errors
(syntax/type diagnostics, CompileError, VideoError, WindowError) are results, not crashes.
`--cli N` also runs N inputs through `python -m ruledsl check|fmt` and counts exit codes other
than 0/1/2 and any traceback printed.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import select
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

KINDS = ("grammar", "typed", "mutated", "degenerate", "text")
WEIGHTS = (35, 25, 25, 5, 10)  # percent of inputs of each kind


def input_for(seed: int, index: int) -> tuple[str, str]:
    """(kind, program text) of input `index`: the same for the same seed, on any machine."""
    from benchmarks import fuzz_inputs as gen

    rng = random.Random(seed * 1_000_003 + index)
    draw = rng.randrange
    roll, kind = draw(100), KINDS[-1]
    for candidate, weight in zip(KINDS, WEIGHTS):
        if roll < weight:
            kind = candidate
            break
        roll -= weight
    if kind == "grammar":
        return kind, gen.grammar_program(draw)
    if kind == "typed":
        return kind, gen.typed_program(draw)
    if kind == "mutated":
        return kind, gen.mutated_example(draw)
    if kind == "degenerate":
        return kind, gen.degenerate_program(draw)
    alphabet = 'abcdegilnorstwx_ ()[],:=<>+-*/|&#."0123456789\n\t\\\u00e9\u2264'
    return kind, "".join(rng.choice(alphabet) for _ in range(draw(300)))


# ---- one input, in a worker ------------------------------------------------------------------


def small_videos():
    """Crisp [1, T, 3, H, W] videos in the generators' colours: a red square walking past a blue
    one on white with a black wall and a green goal; an all-white video (every object absent);
    a one-frame video."""
    import torch

    def paint(video, t, y, x, rgb, side=6):
        video[0, t, :, y : y + side, x : x + side] = torch.tensor(rgb, dtype=torch.float32)[:, None, None] / 255

    walk = torch.ones(1, 6, 3, 32, 32)
    for t in range(6):
        paint(walk, t, 0, 20, (0, 0, 0), side=12)
        paint(walk, t, 24, 24, (0, 255, 0))
        paint(walk, t, 20, 2, (0, 0, 255))
        paint(walk, t, 4 + 3 * t, 4 + 3 * t, (255, 0, 0))
        paint(walk, t, 10, 26, (255, 255, 0), side=4)
    return {"walk": walk, "blank": torch.ones(1, 6, 3, 32, 32), "one_frame": walk[:, :1].clone()}


def run_one(kind: str, text: str, videos) -> dict:
    """Outcome of one input: "ok", a documented error, or a failure with its phase and detail."""
    from ruledsl import RuleProgram
    from ruledsl.checker import check
    from ruledsl.formatter import format_source
    from ruledsl.parser import ParseError, parse
    from ruledsl.source import Source

    phase = "check"
    try:
        source = Source(text, "fuzz.rule")
        checked = check(source)
        if checked.program is None:
            return {"outcome": "syntax error"}
        phase = "fmt"
        formatted = format_source(source)
        try:
            again = parse(Source(formatted))
        except ParseError as error:
            return {"outcome": "failure", "phase": "fmt", "detail": f"output does not parse: {error}"}
        if again != checked.program:
            return {"outcome": "failure", "phase": "fmt", "detail": "output parses to another tree"}
        if format_source(Source(formatted)) != formatted:
            return {"outcome": "failure", "phase": "fmt", "detail": "not a fixed point"}
        if not checked.ok:
            return {"outcome": "diagnostics"}
        return run_compiled(RuleProgram(checked), videos)
    except Exception as error:  # anything else is a crash: that is what we count
        return {
            "outcome": "failure",
            "phase": phase,
            "detail": f"{type(error).__name__}: {error}"[:300],
            "traceback": traceback.format_exc()[-2000:],
        }


def run_compiled(program, videos) -> dict:
    import torch

    from ruledsl.compiler.ir import CompileError
    from ruledsl.compiler.program import VideoError, WindowError

    phase = "compile"
    try:
        compiled = program.compile()
        phase = "eval"
        outcomes = []
        for name, video in videos.items():
            video = video.clone().requires_grad_(True)
            try:
                report = compiled(video)
            except (VideoError, WindowError) as error:
                outcomes.append(f"{name}: {type(error).__name__}")
                continue
            values = [report.loss] + [v for rule in report.rules.values() for v in (rule.robustness, rule.loss)]
            bad = [
                name
                for name, v in zip(
                    ["loss"] + [f"{r}.{k}" for r in report.rules for k in ("robustness", "loss")], values
                )
                if not bool(torch.isfinite(torch.as_tensor(v, dtype=torch.float32)).all())
            ]
            if bad:
                return {"outcome": "failure", "phase": "non-finite", "detail": f"{name} video: {', '.join(bad)}"}
            phase = "gradient"
            if report.loss.requires_grad:
                report.loss.backward()
                if video.grad is not None and not bool(torch.isfinite(video.grad).all()):
                    return {"outcome": "failure", "phase": "non-finite", "detail": f"{name} video: gradient"}
            phase = "eval"
        return {"outcome": "evaluated", "detail": "; ".join(outcomes)}
    except (CompileError, VideoError, WindowError) as error:
        return {"outcome": "documented error", "detail": f"{type(error).__name__}"}
    except Exception as error:
        return {
            "outcome": "failure",
            "phase": phase,
            "detail": f"{type(error).__name__}: {error}"[:300],
            "traceback": traceback.format_exc()[-2000:],
        }


def worker(seed: int, start: int, stop: int) -> None:
    import torch

    torch.set_num_threads(1)
    videos = small_videos()
    for index in range(start, stop):
        print(json.dumps({"start": index}), flush=True)
        kind, text = input_for(seed, index)
        result = run_one(kind, text, videos)
        print(json.dumps({"done": index, "kind": kind, **result}), flush=True)


# ---- the parent: workers, hangs, crashes, counts ---------------------------------------------


def run_inputs(seed: int, count: int, timeout: float, progress_every: int = 5000) -> list[dict]:
    results: list[dict] = []
    next_index = 0
    begun = time.time()
    while next_index < count:
        process = subprocess.Popen(
            [sys.executable, __file__, "--worker", str(seed), str(next_index), str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        current = None
        while True:
            ready, _, _ = select.select([process.stdout], [], [], timeout)
            if not ready:  # silent for `timeout` seconds: a hang (or a very slow input)
                process.kill()
                process.wait()
                index = next_index if current is None else current
                results.append({"done": index, "kind": input_for(seed, index)[0], "outcome": "hang"})
                next_index = index + 1
                break
            line = process.stdout.readline()
            if not line:  # the worker died
                process.wait()
                if current is not None:
                    results.append(
                        {
                            "done": current,
                            "kind": input_for(seed, current)[0],
                            "outcome": "failure",
                            "phase": "process",
                            "detail": f"worker died with exit code {process.returncode}",
                        }
                    )
                    next_index = current + 1
                else:
                    next_index = count if next_index >= count else next_index
                    if process.returncode != 0:
                        raise SystemExit(f"worker failed to start (exit {process.returncode})")
                break
            message = json.loads(line)
            if "start" in message:
                current = message["start"]
                continue
            results.append(message)
            current = None
            next_index = message["done"] + 1
            if next_index % progress_every == 0:
                rate = next_index / (time.time() - begun)
                print(
                    f"{next_index} inputs, {rate:.0f}/s, failures so far: "
                    f"{sum(r['outcome'] in ('failure', 'hang') for r in results)}",
                    file=sys.stderr,
                    flush=True,
                )
        if next_index >= count:
            process.kill()
            process.wait()
    return results


def run_cli(seed: int, count: int, timeout: float) -> dict:
    """`python -m ruledsl check|fmt` on inputs: exit codes other than 0/1/2 and tracebacks."""
    counts = collections.Counter()
    bad = []
    with tempfile.TemporaryDirectory() as folder:
        for index in range(count):
            kind, text = input_for(seed + 1, index)
            path = Path(folder) / f"input{index}.rule"
            path.write_text(text, encoding="utf-8")
            command = ["check", "fmt", "check --format json"][index % 3].split()
            try:
                done = subprocess.run(
                    [sys.executable, "-m", "ruledsl", *command, str(path)],
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    cwd=ROOT,
                )
            except subprocess.TimeoutExpired:
                counts["hang"] += 1
                bad.append({"index": index, "command": command, "outcome": "hang"})
                continue
            counts[f"exit {done.returncode}"] += 1
            if done.returncode not in (0, 1, 2) or "Traceback" in done.stderr:
                bad.append({"index": index, "command": command, "exit": done.returncode, "stderr": done.stderr[-500:]})
    return {"runs": count, "exit codes": dict(counts), "bad": bad}


def cause(result: dict) -> str:
    """`phase: ExceptionType in file:function` (the innermost frame of ruledsl's own code), or the
    phase and detail."""
    import re

    detail = result.get("detail") or ""
    frames = re.findall(r'File "([^"]+)", line \d+, in (\S+)', result.get("traceback") or "")
    where = ""
    ours = [f for f in frames if f[0].startswith(str(ROOT)) and "benchmarks" not in f[0]] or frames
    if ours:
        path, function = ours[-1]
        where = f" in {path.replace(str(ROOT) + '/', '')}:{function}"
    kind = detail.split(":")[0] if result.get("traceback") else detail
    return f"{result.get('phase', 'hang')}: {kind}{where}"


def summarize(results: list[dict], seconds: float) -> dict:
    by_kind = collections.defaultdict(collections.Counter)
    for r in results:
        by_kind[r["kind"]][r["outcome"]] += 1
    failures = [r for r in results if r["outcome"] in ("failure", "hang")]
    phases = collections.Counter(r.get("phase", "hang") for r in failures)
    first = {}
    for r in failures:
        key = (r.get("phase", "hang"), r.get("detail", "")[:80])
        first.setdefault(key, r)
    return {
        "inputs": len(results),
        "seconds": round(seconds, 1),
        "crashes": sum(r["outcome"] == "failure" and r["phase"] not in ("non-finite", "fmt") for r in results),
        "hangs": sum(r["outcome"] == "hang" for r in results),
        "non-finite": phases.get("non-finite", 0),
        "fmt property failures": phases.get("fmt", 0),
        "evaluated programs": sum(r["outcome"] == "evaluated" for r in results),
        "failures by phase": dict(phases),
        "failures by cause": dict(collections.Counter(cause(r) for r in failures).most_common()),
        "failing inputs by cause (first 20)": {
            c: [r["done"] for r in failures if cause(r) == c][:20] for c in {cause(r) for r in failures}
        },
        "outcomes by kind": {kind: dict(counts) for kind, counts in sorted(by_kind.items())},
        "examples": [
            {
                "input": r["done"],
                "kind": r["kind"],
                "phase": r.get("phase", "hang"),
                "detail": r.get("detail"),
                "traceback": r.get("traceback"),
            }
            for r in list(first.values())[:30]
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds of silence that count as a hang")
    parser.add_argument("--cli", type=int, default=300, help="inputs also run through the CLI (subprocesses)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fuzz.json")
    parser.add_argument("--reproduce", type=int, help="print one input and run it in this process")
    parser.add_argument("--worker", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    if args.reproduce is not None:
        kind, text = input_for(args.seed, args.reproduce)
        print(f"--- input {args.reproduce} ({kind}) ---\n{text}--- result ---")
        print(json.dumps(run_one(kind, text, small_videos()), indent=1))
        return
    begun = time.time()
    results = run_inputs(args.seed, args.inputs, args.timeout)
    summary = summarize(results, time.time() - begun)
    summary["seed"] = args.seed
    summary["command"] = "python benchmarks/fuzz.py " + " ".join(sys.argv[1:])
    if args.cli:
        summary["cli"] = run_cli(args.seed, args.cli, args.timeout)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    shown = {k: v for k, v in summary.items() if k not in ("examples",)}
    print(json.dumps(shown, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
