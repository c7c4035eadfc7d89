"""What an `ask` atom costs in an optimization step, next to the geometric rules, and a projection for real VLMs.

Usage: python benchmarks/ask_cost.py [--repeats 5] [--ask-frames 4] [--json out.json]

Measured (CPU, 1 thread): one gradient step of the built-in reasoner on a maze task (a rollout with
gradient through its last `grad_steps` sampling steps, the program's loss, backward to the LoRA), for
the maze program (geometry only) and for the same program plus two `ask` rules (one video-level clip
of `--ask-frames` frames, one per frame under `always`), scored by the tests' tiny random LLaVA-style
VLM (CLIP vision 1 layer, Llama text 1 layer). The rules' own cost is timed on a fixed video
(program + backward to the pixels), since the rollout dominates a step and varies with load; the ask
share is the asks' cost over a step's (geometry step + asks).

Projected: a VLM's forward is ~2·P FLOPs per token (P parameters), its backward ~4·P, so one ask
costs ~6·P·tokens per candidate (~8·P·tokens with the default gradient checkpointing, which recomputes
the forward); tokens = frames · image tokens per frame + the question. The
projection prints this for LLaVA-1.5-7B-like and 2B-like models against the geometric rules'
measured cost; divide by a GPU's sustained FLOP/s for seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # tiny_lm: the tests' tiny VLM, built from a config

ASKS = """
process pushes: during [0.2, 0.8] ask "Is the red agent moving along the white corridor?"
process visible: always ask "Is the red agent visible?"
"""

# name: (parameters, image tokens per frame, question tokens), public model cards' sizes.
PROJECTED = {
    "LLaVA-1.5-7B (CLIP ViT-L/336 + Vicuna-7B)": (7.06e9, 576, 40),
    "2B VLM (SigLIP-400M + 1.5B LM, 256 tokens/frame)": (2.0e9, 256, 40),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ask-frames", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import torch
    from timing import timed
    from tiny_lm import tiny_vlm

    import ruledsl
    from ruledsl.runtime.generators import condition_from_task
    from ruledsl.runtime.load import load_generator
    from ruledsl.runtime.lora import attach_lora
    from ruledsl.runtime.run import task_params
    from ruledsl.runtime.settings import Settings
    from ruledsl.runtime.vqa import VLMScorer
    from ruledsl.tasks import generate
    from ruledsl.tasks.layout import read_task, write_task

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp())
    task = read_task(write_task(generate("maze", 0, 0, "test"), work / "task"))
    scorer = VLMScorer.load(tiny_vlm(work / "vlm", words=("yes", "no", "Yes", "No")), device="cpu")
    generator = load_generator(None, device="cpu")
    settings = Settings()
    attach_lora(generator.denoiser, generator.lora_targets, rank=settings.rank)
    condition = condition_from_task(task)
    geometry = ruledsl.load(ROOT / "examples" / "maze.rule")
    params = task_params(geometry, task, {})
    hybrid = ruledsl.loads((ROOT / "examples" / "maze.rule").read_text() + ASKS, "hybrid.rule")
    programs = {
        "geometry": geometry.compile(params=params),
        "hybrid": hybrid.compile(params=params, vqa=scorer, ask_frames=args.ask_frames),
    }
    noise = generator.initial_noise(condition, 0)

    def step(program):
        generator.denoiser.zero_grad(set_to_none=True)
        video = generator.rollout(condition, noise, grad_steps=settings.grad_steps)
        program(video).loss.backward()

    seconds = {name: timed(lambda p=p: step(p), args.repeats) for name, p in programs.items()}
    with torch.no_grad():
        video = generator.sample(condition, 0)
    frames = video.shape[1]

    def judge(program):
        v = video.detach().requires_grad_(True)
        program(v).loss.backward()

    judged = {name: timed(lambda p=p: judge(p), args.repeats) for name, p in programs.items()}
    # The step times are dominated by the rollout and vary with the machine's load; the rules' own cost
    # is measured on a fixed video (program + backward to the pixels) and added to the geometry step.
    ask_seconds = judged["hybrid"] - judged["geometry"]
    ask_share = ask_seconds / (seconds["geometry"] + ask_seconds)
    result = {
        "video": list(video.shape),
        "ask_frames": args.ask_frames,
        "step_seconds": seconds,
        "program_seconds_with_backward": judged,
        "ask_seconds": ask_seconds,
        "ask_share_of_hybrid_step": ask_share,
        "geometry_share_of_step": judged["geometry"] / (seconds["geometry"] + ask_seconds),
        "projection": {},
    }
    # Images the two ask rules show per candidate per step: one clip + one per frame.
    images = args.ask_frames + frames
    for name, (params_count, per_frame, question) in PROJECTED.items():
        tokens = args.ask_frames * per_frame + question + frames * (per_frame + question)
        result["projection"][name] = {
            "images": images,
            "tokens": tokens,
            "tflop_fwd_bwd": 6 * params_count * tokens / 1e12,
            "tflop_checkpointed": 8 * params_count * tokens / 1e12,  # the default: the forward is recomputed
        }
    print(json.dumps(result, indent=2))
    print(
        f"\nstep: geometry {seconds['geometry'] * 1e3:.0f} ms, hybrid {seconds['hybrid'] * 1e3:.0f} ms "
        f"; program + backward on one video: geometry {judged['geometry'] * 1e3:.0f} ms, "
        f"hybrid {judged['hybrid'] * 1e3:.0f} ms; ask share of a step {100 * ask_share:.1f} %"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
