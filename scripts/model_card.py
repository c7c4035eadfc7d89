"""Measure the reasoner's base results and write its model card.

    python scripts/model_card.py models/reasoner [--n 20]

Samples `--n` held-out instances per family of the `test` and `ood` splits (seed 0 noise,
8 Euler steps), judges them with the independent scorers, and writes `results.json` and
`README.md` (architecture, parameters, training command and time, pass rate, mean score and
most common failure kinds per family and split) next to the weights.
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path

import numpy as np
import torch

from ruledsl.runtime.generators import ReasonerGenerator, condition_from_instance, to_uint8
from ruledsl.tasks.families import FAMILIES, generate
from ruledsl.tasks.scorers import score_video


def measure(generator: ReasonerGenerator, n: int, splits=("test", "ood")) -> dict:
    results = {}
    for split in splits:
        for family in FAMILIES:
            scores, failures = [], collections.Counter()
            for index in range(n):
                instance = generate(family, index, 0, split)
                with torch.no_grad():
                    video = generator.sample(condition_from_instance(instance), seed=0)[0]
                verdict = score_video(to_uint8(video), instance.to_dict())
                scores.append(verdict)
                failures.update({name.split(".")[-1] for name, value in verdict.checks.items() if value < 1})
            results.setdefault(split, {})[family] = {
                "n": n,
                "pass_rate": float(np.mean([s.passed for s in scores])),
                "mean_score": float(np.mean([s.score for s in scores])),
                "failures": dict(failures.most_common()),
            }
    return results


def card(path: Path, results: dict, log: dict, seconds_per_sample: float) -> str:
    config = json.loads((path / "config.json").read_text())
    rows = []
    for split, families in results.items():
        for family, r in families.items():
            common = ", ".join(f"{k} {v}/{r['n']}" for k, v in list(r["failures"].items())[:3]) or "-"
            rows.append(f"| {split} | {family} | {r['pass_rate']:.0%} | {r['mean_score']:.2f} | {common} |")
    args = log.get("args", {})
    return f"""# ruledsl reasoner

A small image-to-video model for the ruledsl task suite: given a task's first frame (and its family when
known) it generates the video that should solve it. It runs on a CPU in a fraction of a second and, like
large video models, often breaks the task's rules — which test-time optimization then has to fix.

- **Architecture**: pseudo-3D conv net on 4×4 pixel patches (spatial 3×3 and temporal 3-tap convolutions,
  FiLM time/family conditioning) with one spatio-temporal self-attention block at the coarse level;
  `ReasonerModel` in `runtime/reasoner.py` (diffusers `ModelMixin` + `ConfigMixin`, safetensors).
- **Config**: {json.dumps({k: v for k, v in config.items() if not k.startswith("_")})}
- **Parameters**: {log.get("params", 0) / 1e6:.2f} M
- **Sampling**: rectified flow, `FlowMatchEulerDiscreteScheduler`, 8 steps, {config.get("size")}×{config.get("size")} pixels,
  16 frames (more for longer `ood` solutions); {seconds_per_sample:.2f} s per sample on 1 CPU thread.
- **Training data**: generated on the fly by `ruledsl.tasks` (all five families, `train` split, seed {args.get("seed", "0")}),
  ground-truth videos at 32×32.
- **Training**: `python scripts/train_reasoner.py --out {path} --minutes {args.get("minutes", "?")}` —
  {log.get("steps", "?")} steps of batch {args.get("batch", "?")} in {log.get("minutes", "?")} min on {args.get("threads", "1")} CPU thread(s);
  loss weights moving pixels ×10; EMA weights.

Samples: `docs/reasoner_samples.png` — rows alternate ground truth and the model (noise seed 0) for `test`
instance 3 of maze, key_door and two_targets, 32×32, the first 16 frames: the agent walks toward the goal,
with blur, stray pieces and duplicates in mid-motion.

## Base results (independent scorers, `python scripts/model_card.py {path}`)

Held-out instances 0..{next(iter(next(iter(results.values())).values()))["n"] - 1} of each split, noise seed 0, frames rendered at 64×64 and
fed to the model at 32×32. Failure kinds are the scorer checks that failed (see docs/tasks.md).

| split | family | pass rate | mean score | most common failures |
|---|---|---|---|---|
{chr(10).join(rows)}
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", type=Path)
    parser.add_argument("--n", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator = ReasonerGenerator(path=args.path)
    start = time.perf_counter()
    with torch.no_grad():
        generator.sample(condition_from_instance(generate("maze", 0, 0, "test")), seed=0)
    seconds = time.perf_counter() - start
    results = measure(generator, args.n)
    log = (
        json.loads((args.path / "training_log.json").read_text()) if (args.path / "training_log.json").exists() else {}
    )
    (args.path / "results.json").write_text(
        json.dumps({"seconds_per_sample": seconds, "results": results}, indent=1) + "\n"
    )
    (args.path / "README.md").write_text(card(args.path, results, log, seconds))
    print((args.path / "README.md").read_text())


if __name__ == "__main__":
    main()
