"""Degenerate videos through every example program: losses, robustness and gradients stay finite.

    python benchmarks/fuzz_videos.py [--videos 10000] [--seed 0] [--out benchmarks/results/fuzz_videos.json]

Each video is drawn from a family of degenerate shapes (see `degenerate_video`): one frame, one pixel,
extreme aspect ratios, constant frames (black, white, exactly an entity's colour), saturated noise,
values a hair outside [0, 1], half precision, a single lit pixel, frames that alternate. Every video
goes through one example program (cycled), exact and smooth semantics, with a backward pass. A video
the compiler refuses must be refused with its documented error (VideoError / WindowError); anything
else that raises is a crash, and any NaN/inf in robustness, loss or gradient is counted as non-finite.
`tests/test_fuzz.py` runs a few of the same videos in the default suite.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
KINDS = (
    "one frame",
    "one pixel",
    "tall",
    "wide",
    "black",
    "white",
    "entity colour",
    "saturated noise",
    "near range",
    "half precision",
    "lit pixel",
    "alternating",
)


def degenerate_video(kind: str, rng: torch.Generator) -> torch.Tensor:
    """One [1, T, 3, H, W] video of a degenerate kind; sizes and colours drawn from `rng`."""

    def randint(low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (1,), generator=rng))

    t, h, w = randint(1, 12), randint(1, 48), randint(1, 48)
    video = torch.rand(1, t, 3, h, w, generator=rng)
    if kind == "one frame":
        video = video[:, :1]
    elif kind == "one pixel":
        video = video[..., :1, :1]
    elif kind == "tall":
        video = torch.rand(1, t, 3, randint(64, 400), randint(1, 3), generator=rng)
    elif kind == "wide":
        video = torch.rand(1, t, 3, randint(1, 3), randint(64, 400), generator=rng)
    elif kind == "black":
        video = torch.zeros_like(video)
    elif kind == "white":
        video = torch.ones_like(video)
    elif kind == "entity colour":  # every pixel is the agent's red: masks are the whole frame
        video = torch.zeros_like(video)
        video[:, :, 0] = 1.0
    elif kind == "saturated noise":
        video = (video > 0.5).float()
    elif kind == "near range":  # within the accepted tolerance just outside [0, 1]
        video = video * 1.08 - 0.04
    elif kind == "half precision":
        video = video.to(torch.float16 if randint(0, 1) else torch.bfloat16)
    elif kind == "lit pixel":
        video = torch.zeros_like(video)
        video[..., randint(0, h - 1), randint(0, w - 1)] = 1.0
    elif kind == "alternating":
        video[:, 1::2] = 1.0 - video[:, 1::2]
    return video


def check(program, video: torch.Tensor) -> str:
    """'ok', 'refused' (a documented error), 'non-finite', or 'crash: ...'."""
    from ruledsl.compiler.program import VideoError, WindowError

    leaf = video.clone().requires_grad_(True)
    try:
        report = program(leaf)
        report.loss.backward()
    except (VideoError, WindowError):
        return "refused"
    except Exception as error:  # noqa: BLE001  (counted and reported, never hidden)
        return f"crash: {type(error).__name__}: {error}"[:200]
    values = [report.loss.detach()] + [r.robustness.detach() for r in report.rules.values()]
    values += [r.smooth_robustness.detach() for r in report.rules.values()]
    if leaf.grad is not None:
        values.append(leaf.grad.float())
    finite = all(bool(torch.isfinite(v.float()).all()) for v in values)
    return "ok" if finite else "non-finite"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--videos", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fuzz_videos.json")
    args = parser.parse_args()
    import ruledsl

    torch.set_num_threads(1)
    programs = [ruledsl.load(path).compile() for path in sorted((ROOT / "examples").glob("*.rule"))]
    rng = torch.Generator().manual_seed(args.seed)
    counts: dict[str, dict[str, int]] = {kind: {} for kind in KINDS}
    failures: list[dict] = []
    start = time.perf_counter()
    for i in range(args.videos):
        kind = KINDS[i % len(KINDS)]
        outcome = check(programs[(i // len(KINDS)) % len(programs)], degenerate_video(kind, rng))
        key = outcome.split(":")[0]
        counts[kind][key] = counts[kind].get(key, 0) + 1
        if key in ("crash", "non-finite") and len(failures) < 50:
            failures.append({"video": i, "kind": kind, "outcome": outcome})
    totals = {k: sum(c.get(k, 0) for c in counts.values()) for k in ("ok", "refused", "non-finite", "crash")}
    result = {
        "videos": args.videos,
        "seed": args.seed,
        "seconds": round(time.perf_counter() - start, 1),
        **totals,
        "by kind": counts,
        "failures (first 50)": failures,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("videos", "seconds", *totals)}))
    if totals["crash"] or totals["non-finite"] or not math.isfinite(result["seconds"]):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
