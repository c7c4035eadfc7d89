"""Test-time optimization benchmark: base vs LoRA vs Best-of-N (vs noise) at equal cost.

    python benchmarks/tto.py [--n 10] [--steps 16] [--methods lora best-of-n] [--split test] [--lr 3e-3] [--grad-steps 2]

For `--n` held-out `test` instances of each family, with the shipped reasoner and the family's
examples/<family>.rule (cell size from the task): the base sample (seed 0), then each method with
the NFE of `--steps` LoRA steps. Success is judged by the independent scorers (not by the rules
being optimized). Prints pass rates per family, median steps to success, seconds per step, and the
share of a LoRA step spent in the compiled loss; writes benchmarks/results/<--out>.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import ruledsl
from ruledsl.runtime.generators import ReasonerGenerator, condition_from_instance, to_uint8
from ruledsl.runtime.loop import Budget, Settings, nfe_budget_for, optimize
from ruledsl.tasks.families import FAMILIES, generate
from ruledsl.tasks.layout import params_for
from ruledsl.tasks.scorers import score_video

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--methods", nargs="+", default=["lora", "best-of-n"])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES))
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--grad-steps", type=int, default=2)
    parser.add_argument("--split", default="test", help="choose settings on `train`, report on `test`")
    parser.add_argument("--out", default="tto.json")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = ReasonerGenerator(path=args.model)
    settings = Settings(lr=args.lr, grad_steps=args.grad_steps)
    budget_nfe = nfe_budget_for(generator, settings, args.steps)
    rows, records = {}, []
    for family in args.families:
        program = ruledsl.load(ROOT / "examples" / f"{family}.rule")
        for index in range(args.n):
            instance = generate(family, index, 0, args.split)
            compiled = program.compile(params=params_for(program, instance.to_dict(), (64, 64)))
            condition = condition_from_instance(instance)
            meta = instance.to_dict()
            record = {"family": family, "index": index}
            for method in args.methods:
                budget = Budget(steps=args.steps) if method == "lora" else Budget(steps=10**9, nfe=budget_nfe)
                start = time.perf_counter()
                result = optimize(
                    compiled,
                    condition,
                    generator,
                    budget,
                    Settings(method=method, lr=args.lr, grad_steps=args.grad_steps),
                )
                seconds = time.perf_counter() - start
                if "base" not in record:
                    base = score_video(to_uint8(result.base_video), meta)
                    record["base"] = {"scorer": base.passed, "score": base.score, "rules": result.history[0].satisfied}
                verdict = score_video(to_uint8(result.best_video), meta)
                solved_at = next((s.index for s in result.history if s.satisfied), None)
                record[method] = {
                    "scorer": verdict.passed,
                    "score": verdict.score,
                    "rules": result.solved,
                    "steps": len(result.history) - 1,
                    "solved_at": solved_at,
                    "nfe": result.nfe,
                    "seconds": seconds,
                    "stop": result.stop_reason,
                }
            records.append(record)
            print(json.dumps(record), flush=True)
    # The share of a LoRA step spent in the compiled loss (forward + backward), measured on one instance.
    instance = generate("maze", 0, 0, "test")
    maze = ruledsl.load(ROOT / "examples" / "maze.rule")
    compiled = maze.compile(params=params_for(maze, instance.to_dict(), (64, 64)))
    video = generator.sample(condition_from_instance(instance), 0).detach().requires_grad_(True)
    start = time.perf_counter()
    for _ in range(10):
        compiled(video).loss.backward()
    loss_seconds = (time.perf_counter() - start) / 10
    methods = ["base"] + args.methods
    print("\n| family | " + " | ".join(f"{m} pass" for m in methods) + " |")
    print("|---" * (len(methods) + 1) + "|")
    for family in args.families + ["all"]:
        chosen = [r for r in records if family in ("all", r["family"])]
        rows[family] = {m: sum(r[m]["scorer"] for r in chosen) / len(chosen) for m in methods}
        print(f"| {family} | " + " | ".join(f"{rows[family][m]:.0%}" for m in methods) + " |")
    summary = {
        "n": args.n,
        "split": args.split,
        "steps": args.steps,
        "lr": args.lr,
        "grad_steps": args.grad_steps,
        "nfe_budget": budget_nfe,
        "threads": args.threads,
        "pass_rates": rows,
    }
    for method in args.methods:
        runs = [r[method] for r in records]
        solved = [r["solved_at"] for r in runs if r["solved_at"] is not None]
        per_step = [r["seconds"] / max(1, r["steps"]) for r in runs if r["steps"]]
        summary[method] = {
            "rules_hold": sum(r["rules"] for r in runs) / len(runs),
            "median_steps_to_success": statistics.median(solved) if solved else None,
            "seconds_per_step": statistics.median(per_step) if per_step else None,
            "mean_nfe": statistics.mean(r["nfe"] for r in runs),
        }
    lora_step = summary.get("lora", {}).get("seconds_per_step")
    summary["loss_seconds"] = loss_seconds
    summary["loss_share_of_lora_step"] = loss_seconds / lora_step if lora_step else None
    summary["base_rules_hold"] = sum(r["base"]["rules"] for r in records) / len(records)
    print(json.dumps(summary, indent=1))
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / args.out).write_text(json.dumps({"summary": summary, "records": records}, indent=1) + "\n")


if __name__ == "__main__":
    main()
