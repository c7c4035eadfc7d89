"""Settings sweep for `tto` on `train` instances only (held-out figures come from `ruledsl bench` afterwards).

    python benchmarks/tto_sweep.py --n 3 --budget 400 --out benchmarks/results/tto_sweep

One variant changes one setting of the default (population, gradient reach, learning rate, focus on
failing rules, frame guidance); Best-of-N runs beside them at the same NFE (`bon-` variants: Best-of-N
with one setting changed). Every variant sees the same instances
(`train` split, `--seed` stream). Writes the bench outputs (table.md, summary.json, ...) to --out.
"""

from __future__ import annotations

import argparse

from ruledsl.runtime import bench
from ruledsl.runtime.generators import V2_LORA_TARGETS

VARIANTS = {
    "tto": {},
    "tto-pop2": {"population": 2},
    "tto-pop8": {"population": 8},
    "tto-pop16": {"population": 16},
    "tto-last1": {"grad_reach": "last", "grad_steps": 1},
    "tto-last2": {"grad_reach": "last", "grad_steps": 2},
    "tto-all": {"grad_reach": "all"},
    "tto-lr1e-2": {"lr": 1e-2},
    "tto-lr1e-3": {"lr": 1e-3},
    "tto-lr3e-4": {"lr": 3e-4},
    "tto-focus0": {"focus": 0.0},
    # the search on the frozen model (the default since the sweep in tto_sweep_base) against the LoRA
    "tto-lora": {"search": "lora", "retarget": "keep"},
    "tto-base": {"search": "base", "retarget": "keep"},
    "tto-base-pop16": {"search": "base", "retarget": "keep", "population": 16},
    "tto-base-restart": {"search": "base", "retarget": "restart"},
    "tto-near1": {"refine_failing": 1},  # gradient only on a near miss (the best fails at most one rule)
    "tto-near0": {"refine_failing": 0},  # never refines (a run stops once every rule holds): Best-of-N, a check
    # frame guidance (runtime/frame_guide.py): a frame breaking a safety rule is drawn again, up to R times;
    # the bon- variants are Best-of-N with it, no gradient (what the guide alone adds)
    "tto-guide1": {"frame_retries": 1},
    "tto-guide2": {"frame_retries": 2},
    "tto-guide4": {"frame_retries": 4},
    "bon-guide1": {"frame_retries": 1},
    "bon-guide2": {"frame_retries": 2},
    "bon-guide4": {"frame_retries": 4},
    # ... with backtracking: a frame no redraw keeps sends the search back one frame, up to B times a video
    "tto-g2b16": {"frame_retries": 2, "frame_backtracks": 16},
    "bon-g2b16": {"frame_retries": 2, "frame_backtracks": 16},
    "bon-g4b8": {"frame_retries": 4, "frame_backtracks": 8},
    "bon-g2b32": {"frame_retries": 2, "frame_backtracks": 32},
    # goal draws: each frame drawn K times, the legal draw nearest the goals kept (frame_guide.py)
    "tto-goal1": {"frame_goal_draws": 1},  # the default before tto_sweep_goal (goal draws off)
    "tto-goal2": {"frame_goal_draws": 2},
    "tto-goal3": {"frame_goal_draws": 3},
    "bon-goal2": {"frame_goal_draws": 2},
    "bon-goal3": {"frame_goal_draws": 3},
    # LoRA targets: attention + temporal convs plus the spatial convs and FiLM layers, which the capacity
    # probe (benchmarks/lora_capacity.py) on train found to fit more answers; the v2 default since this
    # sweep (tto_sweep_wide), kept explicit so the sweep reproduces
    "tto-wide": {"targets": V2_LORA_TARGETS},
}


def loop_method(variant: str) -> str:
    return "best-of-n" if variant.startswith("bon-") else "tto"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget", type=float, action="append")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", default="benchmarks/results/tto_sweep")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--sample-steps", type=int, default=None, help="sampling steps (default: the model's)")
    args = parser.parse_args()
    names = [v for v in args.variants.split(",") if v]
    variants = {n: {"doc": f"{loop_method(n)} with {VARIANTS[n] or 'the defaults'}", "loop_method": loop_method(n),
                    "settings": VARIANTS[n]} for n in names}  # fmt: skip
    config = bench.BenchConfig(out=args.out, split="train", n=args.n, seed=args.seed, budgets=tuple(args.budget or [400]),
                               methods=("best-of-n", *names), workers=args.workers, steps=args.sample_steps,
                               extra_methods=variants)  # fmt: skip
    summary = bench.run_bench(config, resume=args.resume, force=not args.resume)
    print(bench.table_markdown(summary))


if __name__ == "__main__":
    main()
