"""Measure a reasoner's base results and write its model card (v1 or v2, from the folder's config).

    python scripts/model_card.py models/reasoner [--n 20] [--decoder-agreement A.json] [--lora-capacity L.json]
    python scripts/model_card.py RUN/ema --n 10 --choose 3 4 6 8    # sampling steps, chosen on `train`

Samples `--n` held-out instances per family of the `test` and `ood` splits (noise seed 0, the
model's Euler steps), judges them with the independent scorers, and writes `results.json` and
`README.md` next to the weights: architecture, parameters, training command and time, pass rate,
mean score and most common failure kinds per family and split, the failure breakdown (among
failing samples: how many fail a *logical* check, how many fail *rendering* checks only), and the
time of one 16-frame sample on 1 and 2 threads. Results of scripts/decoder_agreement.py and
benchmarks/lora_capacity.py (their --json files) are added when given.
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

# The scorer checks (ruledsl.tasks.scorers), split as issue 13 does: what the video does vs how it is drawn.
LOGICAL = ("goal", "legal", "optimal", "key_first", "apart")  # goal, walls/avoid, shortest path, key first, order
RENDERING = ("present", "single", "size", "steady", "static")  # colour/vanish, pieces, blur, jumps, layout


def failed_checks(verdict) -> set[str]:
    return {name.split(".")[-1] for name, value in verdict.checks.items() if value < 1}


def measure(generator: ReasonerGenerator, n: int, splits=("test", "ood")) -> dict:
    results = {}
    for split in splits:
        for family in FAMILIES:
            scores, failures, kinds = [], collections.Counter(), collections.Counter()
            for index in range(n):
                instance = generate(family, index, 0, split)
                with torch.no_grad():
                    video = generator.sample(condition_from_instance(instance), seed=0)[0]
                verdict = score_video(to_uint8(video), instance.to_dict())
                scores.append(verdict)
                failed = failed_checks(verdict)
                failures.update(failed)
                if failed:
                    kinds["logical"] += bool(failed & set(LOGICAL))
                    kinds["rendering_only"] += not (failed & set(LOGICAL))
            results.setdefault(split, {})[family] = {
                "n": n,
                "pass_rate": float(np.mean([s.passed for s in scores])),
                "mean_score": float(np.mean([s.score for s in scores])),
                "failures": dict(failures.most_common()),
                "failing": n - sum(s.passed for s in scores),
                "failing_logical": kinds["logical"],
                "failing_rendering_only": kinds["rendering_only"],
            }
    return results


def sample_seconds(generator: ReasonerGenerator, threads: int, repeats: int = 3) -> float:
    """Median wall time of one 16-frame sample (every step and the decode)."""
    torch.set_num_threads(threads)
    condition = condition_from_instance(generate("maze", 0, 0, "test"))
    condition.frames = 16
    times = []
    with torch.no_grad():
        generator.sample(condition, seed=0)
        for _ in range(repeats):
            start = time.perf_counter()
            generator.sample(condition, seed=0)
            times.append(time.perf_counter() - start)
    torch.set_num_threads(1)
    return float(np.median(times))


def breakdown(results: dict) -> list[str]:
    rows = []
    for split, families in results.items():
        failing = sum(r["failing"] for r in families.values())
        logical = sum(r["failing_logical"] for r in families.values())
        rendering = sum(r["failing_rendering_only"] for r in families.values())
        total = sum(r["n"] for r in families.values())
        passed = total - failing
        rows.append(
            f"| {split} | {passed}/{total} ({passed / total:.0%}) | {failing} | "
            f"{logical} ({logical / max(failing, 1):.0%}) | {rendering} ({rendering / max(failing, 1):.0%}) |"
        )
    return rows


def training_text(path: Path, log: dict) -> str:
    prior = log.get("prior")
    if prior:  # a warm start (`--init`): the earlier stage(s) first, then this one, and the total
        total = round(float(prior_minutes(log)), 2)
        return (
            f"{training_text(path, prior)}\n  Then, warm-started from those weights "
            f"(`--init`, fresh optimizer and schedule): {_training_stage_text(path, log)}\n"
            f"  Total denoiser training time: {total} min (the frame codec is trained separately, scripts/train_decoder.py)."
        )
    return _training_stage_text(path, log)


def prior_minutes(log: dict) -> float:
    """Training minutes of this stage and every stage it was warm-started from."""
    return float(log.get("minutes", 0.0)) + (prior_minutes(log["prior"]) if log.get("prior") else 0.0)


def _training_stage_text(path: Path, log: dict) -> str:
    args = log.get("args", {})
    chunks = log.get("chunks", [])
    if args.get("arch") == "v2":
        first = chunks[0]["command_args"] if chunks else args
        command = (
            "OMP_NUM_THREADS=1 python scripts/train_reasoner.py --arch v2 "
            + (f"--init {first.get('init')} " if first.get("init") not in (None, "None") else "--codec CODEC ")
            + f"--run RUN --out {path} "
            + (
                ""
                if first.get("init") not in (None, "None")
                else f"--channels {first.get('channels')} --depth {first.get('depth')} "
            )
            + (
                f"--context {first.get('context')} --sample-steps {first.get('sample_steps')} "
                if first.get("context") not in (None, "None", "0")
                else ""
            )
            + f"--batch {first.get('batch')} "
            f"--lr {first.get('lr')} --warmup {first.get('warmup')} --max-steps {first.get('max_steps')} "
            f"--minutes {first.get('minutes')}"
            + (
                "  (then `--resume` with the same arguments"
                + (", --max-steps changed" if len({c["command_args"].get("max_steps") for c in chunks}) > 1 else "")
                + ")"
                if len(chunks) > 1
                else ""
            )
        )
        return (
            f"`{command}` — {log.get('steps', '?')} steps of batch {args.get('batch', '?')} in "
            f"{log.get('minutes', '?')} min on {args.get('threads', '1')} CPU thread, in {max(len(chunks), 1)} chunk(s) "
            f"(chunk start steps: {', '.join(str(c['start_step']) for c in chunks)}; schedule lengths: "
            f"{', '.join(str(c['command_args'].get('max_steps')) for c in chunks)}); EMA weights."
        )
    return (
        f"`python scripts/train_reasoner.py --out {path} --minutes {args.get('minutes', '?')}` — "
        f"{log.get('steps', '?')} steps of batch {args.get('batch', '?')} in {log.get('minutes', '?')} min on "
        f"{args.get('threads', '1')} CPU thread(s); EMA weights."
    )


def curve_text(log: dict) -> str:
    """Loss every ~10 % of training and the held-out evaluations during training (from training_log.json)."""
    losses = log.get("losses", [])
    if not losses:
        return ""
    picks = losses[:: max(1, len(losses) // 10)] + ([losses[-1]] if len(losses) % max(1, len(losses) // 10) else [])
    text = "Loss (step: value): " + ", ".join(f"{entry['step']}: {entry['loss']:.4f}" for entry in picks) + "."
    evals = log.get("evals", [])
    if evals and "test" in evals[0]:
        text += (
            "\nHeld-out during training (5 families × a few instances, noise seed = index; test pass / mean score): "
            + ", ".join(
                f"step {e['step']}: {np.mean([r['pass_rate'] for r in e['test'].values()]):.0%} / "
                f"{np.mean([r['mean_score'] for r in e['test'].values()]):.2f}"
                for e in evals
            )
            + "."
        )
    return text


def architecture_text(config: dict, params: int, codec_params: int) -> str:
    if config.get("_class_name") == "LatentReasonerModel":
        codec = config["codec_config"]
        down = 2 ** (len(codec["encoder_blocks"]) - 1)
        latent = config["size"] // down
        k = config.get("context", 0)
        denoiser = (
            f"**autoregressive** — generates frame after frame, each frame's latent *change* from the first "
            f"frame's latent (zero where nothing moves) denoised from the {k} frames before it and a motion history "
            f"(the largest change so far at each place: which cells were visited), so the next move is decided "
            f"from where the mover is now"
            if k
            else "generates the latent *change* of every frame from the first frame's latent (zero where\n"
            "  nothing moves), all frames denoised together"
        )
        return f"""- **Version**: v2 — latent flow matching with a crisp decoder (`LatentReasonerModel`,
  `runtime/latent_reasoner.py`; diffusers `ModelMixin` + `ConfigMixin`, one safetensors file).
- **Decoder**: a diffusers `AutoencoderTiny` per frame (`runtime/frame_codec.py`), {config["size"]}×{config["size"]} RGB ↔
  {codec["latent_channels"]}×{latent}×{latent} latents ({down}× down), whose decoder outputs one logit per palette colour
  ({len(codec.get("palette") or []) or 13} colours); frames are the softmax mix of the palette, so cells come out flat
  and crisp (no colour bleed) and the decode stays differentiable. {codec_params / 1e3:.0f} k parameters, frozen.
  `AutoencoderTiny` rather than `AutoencoderKL`: a plain conv stack (no attention, no norms, no
  sampling) that decodes a 16-frame video in tens of ms and backpropagates cheaply on a CPU.
- **Denoiser**: {denoiser}; 2×2 latent patches ({latent // config["patch"]}×{latent // config["patch"]} tokens per frame), {config["depth"]} blocks of
  [pseudo-3D residual conv with FiLM on time and family, self-attention within each frame, self-attention
  across frames at each position], width {config["channels"]}; projections `to_q`, `to_k`, `to_v`, `to_out.0`
  (the runtime's LoRA targets, with the temporal convs). {params / 1e6:.2f} M parameters.
- **Config**: {json.dumps({k: v for k, v in config.items() if not k.startswith("_") and k != "codec_config"})}"""
    return f"""- **Version**: v1 — pixel space. Pseudo-3D conv net on 4×4 pixel patches (spatial 3×3 and temporal 3-tap
  convolutions, FiLM time/family conditioning) with one spatio-temporal self-attention block at the coarse
  level; `ReasonerModel` in `runtime/reasoner.py` (diffusers `ModelMixin` + `ConfigMixin`, safetensors).
- **Config**: {json.dumps({k: v for k, v in config.items() if not k.startswith("_")})}
- **Parameters**: {params / 1e6:.2f} M"""


def extra_sections(decoder_agreement: dict | None, lora_capacity: dict | None) -> str:
    text = ""
    if decoder_agreement:
        rows = [
            f"| {case} | {r['videos']} | {r['scorer_same']:.1%} | {r['program_same']:.1%} | {r['both_same']:.1%} | "
            f"{r['failed_checks_same']:.1%} | {r['pixels_exact']:.2%} |"
            for case, r in decoder_agreement["cases"].items()
        ]
        text += f"""
## Decoder agreement (`python scripts/decoder_agreement.py FOLDER --n {decoder_agreement["n_per_family"]}`)

`{decoder_agreement["split"]}` ground truth and every corruption kind, encode→decode, judged by the scorers and by
`examples/<family>.rule`; bar: both verdicts kept for ≥ 98 % of videos overall and per case —
**{"met" if decoder_agreement.get("bar_met") else "NOT met"}**.

| case | videos | scorer verdict kept | program verdict kept | both kept | same failed checks | pixels exact |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}
"""
    if lora_capacity:
        rows_ = lora_capacity["rows"]
        fixed = sum(r["fixed_at_step"] is not None for r in rows_)
        args = lora_capacity["args"]
        lines = [
            f"| {r['family']}/{r['index']} | {'pass' if r['base_passed'] else 'fail'} ({r['base_score']}) | "
            f"{r['fixed_at_step'] or '-'} | {r['final_score']} | {'; '.join(r['final_reasons'][:2]) or '-'} |"
            for r in rows_
        ]
        flags = " ".join(
            f"--{name.replace('_', '-')} {args[name]}"
            for name in ("split", "per_family", "steps", "batch", "size")
            if args.get(name) not in (None, "None")
        )
        text += f"""
## Can a LoRA express the fix? (`python benchmarks/lora_capacity.py {flags}`)

A fresh LoRA (the runtime's default rank and targets) trained on each task's own ground-truth video with
the denoising loss, up to {args["steps"]} steps; fixed = the seed-0 sample passes the scorer. **{fixed}/{len(rows_)} fixed.**

| task | base (score) | fixed at step | final score | remaining failures |
|---|---|---|---|---|
{chr(10).join(lines)}
"""
    return text


def card(path: Path, results: dict, log: dict, seconds: dict, extras: str) -> str:
    config = json.loads((path / "config.json").read_text())
    generator_params = log.get("params", 0)
    codec_params = 0
    if config.get("_class_name") == "LatentReasonerModel":
        from ruledsl.runtime.generators import load_reasoner

        model = load_reasoner(path)
        codec_params = sum(p.numel() for p in model.codec.parameters())
        generator_params = sum(p.numel() for p in model.parameters()) - codec_params
    rows = []
    for split, families in results.items():
        for family, r in families.items():
            common = ", ".join(f"{k} {v}/{r['n']}" for k, v in list(r["failures"].items())[:3]) or "-"
            rows.append(f"| {split} | {family} | {r['pass_rate']:.0%} | {r['mean_score']:.2f} | {common} |")
    n = next(iter(next(iter(results.values())).values()))["n"]
    steps = config.get("steps", 8)
    per_frame = " per frame (frame after frame)" if config.get("context") else ""
    return f"""# ruledsl reasoner

A small image-to-video model for the ruledsl task suite: given a task's first frame (and its family when
known) it generates the video that should solve it. It runs on a CPU in a fraction of a second and, like
large video models, often breaks the task's rules — which test-time optimization then has to fix.

{architecture_text(config, generator_params, codec_params)}
- **Sampling**: rectified flow, `FlowMatchEulerDiscreteScheduler`, {steps} steps{per_frame}, {config.get("size")}×{config.get("size")} frames,
  16 frames (more for longer `ood` solutions); one 16-frame sample (every step and the decode):
  {seconds[1]:.3f} s on 1 CPU thread, {seconds[2]:.3f} s on 2 (median of 3 when this card was written; a 2-core machine, where other jobs slow 2 threads most).
- **Training data**: generated on the fly by `ruledsl.tasks` (all five families, `train` split, seed 0),
  ground-truth videos at {config.get("size")}×{config.get("size")}.
- **Training**: {training_text(path, log)}

{curve_text(log)}

## Base results (independent scorers, `python scripts/model_card.py {path}`)

Held-out instances 0..{n - 1} of each split, noise seed 0, first frames rendered at 64×64 (resized to the
model's size). Failure kinds are the scorer checks that failed (see docs/tasks.md).

| split | family | pass rate | mean score | most common failures |
|---|---|---|---|---|
{chr(10).join(rows)}

Failure breakdown: *logical* checks are {", ".join(LOGICAL)}; *rendering* checks are {", ".join(RENDERING)}
(`present` fails when the mover vanishes or changes colour).

| split | passed | failing | failing a logical check | failing rendering checks only |
|---|---|---|---|---|
{chr(10).join(breakdown(results))}
{extras}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--decoder-agreement", type=Path, default=None, help="JSON from scripts/decoder_agreement.py")
    parser.add_argument("--lora-capacity", type=Path, default=None, help="JSON from benchmarks/lora_capacity.py")
    parser.add_argument("--notes", type=Path, default=None, help="a markdown file appended to the card")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="take the scorer results from the folder's results.json (timing is re-measured)",
    )
    parser.add_argument(
        "--choose",
        nargs="+",
        type=int,
        metavar="STEPS",
        help="choose the sampling steps: the pass rate and failure breakdown on `train` instances for each "
        "step count, printed; nothing is written",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.choose:
        for steps in args.choose:
            train = measure(ReasonerGenerator(path=args.path, steps=steps), args.n, splits=("train",))
            passed = sum(r["n"] - r["failing"] for r in train["train"].values())
            print(f"{steps} steps: {passed}/{5 * args.n} pass on train; " + ", ".join(
                f"{family} {r['pass_rate']:.0%}" for family, r in train["train"].items()))  # fmt: skip
            print("\n".join(breakdown(train)))
        return
    generator = ReasonerGenerator(path=args.path)
    seconds = {threads: sample_seconds(generator, threads) for threads in (1, 2)}
    if args.reuse:
        results = json.loads((args.path / "results.json").read_text())["results"]
    else:
        results = measure(generator, args.n)
    log = (
        json.loads((args.path / "training_log.json").read_text()) if (args.path / "training_log.json").exists() else {}
    )
    extras = {
        "decoder_agreement": json.loads(args.decoder_agreement.read_text()) if args.decoder_agreement else None,
        "lora_capacity": json.loads(args.lora_capacity.read_text()) if args.lora_capacity else None,
    }
    (args.path / "results.json").write_text(
        json.dumps({"seconds_per_sample": seconds, "results": results, **extras}, indent=1) + "\n"
    )
    notes = "\n" + args.notes.read_text() if args.notes else ""
    (args.path / "README.md").write_text(card(args.path, results, log, seconds, extra_sections(**extras)) + notes)
    print((args.path / "README.md").read_text())


if __name__ == "__main__":
    main()
