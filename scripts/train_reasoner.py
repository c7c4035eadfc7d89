"""Train the small video reasoner on tasks generated on the fly (all families, `train` split).

    python scripts/train_reasoner.py --out models/reasoner --minutes 60

Rectified flow: x_σ = (1 - σ)·x₀ + σ·ε with σ logit-normal, the model predicts ε - x₀;
pixels that differ from the first frame (what moves) weigh MOVING_WEIGHT times more, the
task family is dropped 10 % of the time (so unknown tasks work). Seeded; logs loss and,
every --eval-minutes, the independent scorers' pass rate on held-out `test` instances.
Writes the EMA weights with save_pretrained (safetensors + config) and training_log.json.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch

from ruledsl.runtime.generators import Condition, ReasonerGenerator
from ruledsl.runtime.reasoner import FAMILY_IDS, UNKNOWN_FAMILY, ReasonerModel
from ruledsl.tasks.families import FAMILIES, generate
from ruledsl.tasks.render import render, solution_plan
from ruledsl.tasks.scorers import score_video

MOVING_WEIGHT = 10.0
SIZE, FRAMES = 32, 16


def batch_of_tasks(rng: random.Random, batch: int, seed: int, split: str = "train"):
    families = [rng.choice(list(FAMILIES)) for _ in range(batch)]
    instances = [generate(f, rng.randrange(10**9), seed, split) for f in families]
    videos = np.stack([render(i, solution_plan(i, FRAMES), (SIZE, SIZE)) for i in instances])
    return instances, torch.from_numpy(videos).float().div(255).permute(0, 1, 4, 2, 3)


def evaluate(model: ReasonerModel, per_family: int = 5, seed: int = 0, split: str = "test", steps: int = 8) -> dict:
    """Scorer pass rate and mean score per family on held-out instances (fixed noise seeds)."""
    generator = ReasonerGenerator(model=model, steps=steps)  # puts the model in eval mode
    results = {}
    with torch.no_grad():
        for family in FAMILIES:
            scores = []
            for index in range(per_family):
                instance = generate(family, index, seed, split)
                frames = max(FRAMES, instance.frames_needed())
                first = torch.from_numpy(render(instance, solution_plan(instance, frames), (SIZE, SIZE))[0]).float()
                condition = Condition(first.div(255).permute(2, 0, 1), family=family, frames=frames)
                video = generator.sample(condition, seed=index)
                frames_np = (video[0].permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
                scores.append(score_video(frames_np, instance.to_dict()))
            results[family] = {
                "pass_rate": float(np.mean([s.passed for s in scores])),
                "mean_score": float(np.mean([s.score for s in scores])),
            }
    model.train()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=60.0, help="wall-clock training budget")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-minutes", type=float, default=10.0)
    parser.add_argument("--eval-per-family", type=int, default=5)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    model = ReasonerModel(size=SIZE, frames=FRAMES)
    ema = ReasonerModel(size=SIZE, frames=FRAMES)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    budget = args.minutes * 60
    start = last_log = last_eval = time.time()
    log = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "params": sum(p.numel() for p in model.parameters()),
        "losses": [],
        "evals": [],
    }
    step, running = 0, []
    while time.time() - start < budget and (args.max_steps is None or step < args.max_steps):
        instances, video = batch_of_tasks(rng, args.batch, args.seed)
        x0 = video * 2 - 1
        first = x0[:, 0]
        sigma = torch.sigmoid(torch.randn(args.batch))[:, None, None, None, None]
        noise = torch.randn_like(x0)
        x = (1 - sigma) * x0 + sigma * noise
        family = torch.tensor([UNKNOWN_FAMILY if rng.random() < 0.1 else FAMILY_IDS[i.family] for i in instances])
        prediction = model(x, sigma.flatten() * 1000, first, family)
        moving = ((x0 - first[:, None]).abs().sum(2, keepdim=True) > 0.1).float()
        weight = 1 + MOVING_WEIGHT * moving
        loss = (weight * (prediction - (noise - x0)) ** 2).mean() / weight.mean()
        lr = (
            args.lr
            * min(1.0, (step + 1) / 200)
            * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, (time.time() - start) / budget))))
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            decay = min(0.999, (1 + step) / (10 + step))
            for e, p in zip(ema.parameters(), model.parameters()):
                e.mul_(decay).add_(p.detach(), alpha=1 - decay)
        running.append(loss.item())
        step += 1
        now = time.time()
        if now - last_log > 60:
            elapsed = now - start
            log["losses"].append({"step": step, "minutes": round(elapsed / 60, 2), "loss": float(np.mean(running))})
            print(
                f"step {step:6d}  {elapsed / 60:5.1f} min  loss {np.mean(running):.4f}  {step / elapsed:.2f} steps/s  lr {lr:.2e}",
                flush=True,
            )
            running, last_log = [], now
        if now - last_eval > args.eval_minutes * 60:
            result = evaluate(ema, args.eval_per_family, seed=args.seed)
            log["evals"].append({"step": step, "minutes": round((now - start) / 60, 2), "test": result})
            print(
                f"eval at step {step}: "
                + ", ".join(f"{f} {r['pass_rate']:.0%}/{r['mean_score']:.2f}" for f, r in result.items()),
                flush=True,
            )
            last_eval = time.time()
    log["steps"], log["minutes"] = step, round((time.time() - start) / 60, 2)
    args.out.mkdir(parents=True, exist_ok=True)
    ema.save_pretrained(args.out)
    (args.out / "training_log.json").write_text(json.dumps(log, indent=1) + "\n")
    print(f"saved {args.out} after {step} steps ({log['minutes']} min)")


if __name__ == "__main__":
    main()
