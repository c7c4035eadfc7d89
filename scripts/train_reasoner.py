"""Train a video reasoner on tasks generated on the fly (all families, `train` split).

    # v1: pixel space, 32x32 (runtime/reasoner.py)
    python scripts/train_reasoner.py --out models/reasoner_v1 --minutes 45
    # v2: latent flow over a trained frame codec (runtime/latent_reasoner.py, scripts/train_decoder.py)
    OMP_NUM_THREADS=1 python scripts/train_reasoner.py --arch v2 --codec RUN/codec/best \
        --run RUN/reasoner --out models/reasoner --max-steps 12000 --minutes 45 [--resume]

    # v2 autoregressive, warm-started from a joint v2 model (runtime/latent_reasoner.py, next_frame_loss)
    OMP_NUM_THREADS=1 python scripts/train_reasoner.py --arch v2 --init models/reasoner --context 2 \
        --sample-steps 4 --run RUN --out RUN/ema --batch 24 --max-steps 12000 --minutes 45 [--resume]

Rectified flow: x_σ = (1 - σ)·x₀ + σ·ε with σ logit-normal, the model predicts ε - x₀; what moves
weighs MOVING_WEIGHT (runtime/latent_reasoner.py) times more (v1: pixels that differ from the first frame; v2: latent positions
whose change from the first frame's latent is non-zero), and the task family is dropped 10 % of the
time (so unknown tasks work). v2's x₀ is the latent change from the first frame, from a replay
buffer of encoded ground-truth videos that grows by --new-per-step videos each step.

AdamW with warm-up + cosine decay over --max-steps (`diffusers.optimization.get_scheduler`),
gradient clipping, EMA (`diffusers.training_utils.EMAModel`). Seeded. Logs loss every minute and,
every --eval-minutes, the independent scorers' pass rate on held-out `test` (and `ood`) instances.
With --run, a checkpoint (`last.pt`: model, EMA, optimizer, schedule, RNG, log) is written every
--checkpoint-minutes and `--resume` continues from it; a chunk ends after --minutes. When the
schedule is done (or every chunk, with --out), the EMA weights are written with save_pretrained
(safetensors + config) plus training_log.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from run_state import load_run_state, save_run_state, update

from ruledsl.runtime.generators import Condition, ReasonerGenerator
from ruledsl.runtime.latent_reasoner import flow_matching_loss, moving_mask, next_frame_loss
from ruledsl.runtime.reasoner import FAMILY_IDS, UNKNOWN_FAMILY
from ruledsl.tasks.families import FAMILIES, generate
from ruledsl.tasks.render import render, solution_plan
from ruledsl.tasks.scorers import score_video

FRAMES = 16
V1_SIZE, V2_SIZE = 32, 64
BUFFER_MAX = 8000  # videos kept in v2's replay buffer (fp16 latents, ~33 KB each)


def render_videos(instances, size: int) -> torch.Tensor:
    """Ground-truth videos [B, FRAMES, 3, size, size] in [0, 1]."""
    videos = np.stack([render(i, solution_plan(i, FRAMES), (size, size)) for i in instances])
    return torch.from_numpy(videos).float().div(255).permute(0, 1, 4, 2, 3)


def random_instances(rng: random.Random, count: int, seed: int):
    return [generate(rng.choice(list(FAMILIES)), rng.randrange(10**9), seed, "train") for _ in range(count)]


def family_labels(rng: random.Random, instances) -> torch.Tensor:
    return torch.tensor([UNKNOWN_FAMILY if rng.random() < 0.1 else FAMILY_IDS[i.family] for i in instances])


class V1:
    """Pixel-space reasoner at 32x32."""

    def __init__(self, args):
        from ruledsl.runtime.reasoner import ReasonerModel

        self.model = ReasonerModel(size=V1_SIZE, frames=FRAMES)
        self.seed = args.seed

    def loss(self, rng: random.Random, batch: int) -> torch.Tensor:
        instances = random_instances(rng, batch, self.seed)
        x0 = render_videos(instances, V1_SIZE) * 2 - 1
        first = x0[:, 0]
        moving = ((x0 - first[:, None]).abs().sum(2, keepdim=True) > 0.1).float()
        return flow_matching_loss(self.model, x0, first, family_labels(rng, instances), moving)


class V2:
    """Latent reasoner over a trained, frozen frame codec."""

    def __init__(self, args):
        from ruledsl.runtime.frame_codec import PaletteAutoencoder
        from ruledsl.runtime.latent_reasoner import LatentReasonerModel, widen_to_autoregressive

        if args.init is not None:
            # Warm start: the whole model (denoiser and codec) from an exported folder; its config wins,
            # except that --context K > 0 turns a joint model into an autoregressive one and a given
            # --sample-steps replaces its steps.
            self.model = LatentReasonerModel.from_pretrained(args.init, use_safetensors=True)
            if args.context and not self.model.config["context"]:
                self.model = widen_to_autoregressive(self.model, args.context)
            if args.sample_steps is not None:
                self.model.register_to_config(steps=args.sample_steps)
        else:
            if args.codec is None:
                raise SystemExit("--arch v2 needs --codec FOLDER (a frame codec from scripts/train_decoder.py)")
            codec = PaletteAutoencoder.from_pretrained(args.codec, use_safetensors=True)
            self.model = LatentReasonerModel(
                codec_config={k: v for k, v in codec.config.items() if not k.startswith("_")},
                channels=args.channels,
                depth=args.depth,
                size=V2_SIZE,
                frames=FRAMES,
                steps=args.sample_steps or 8,
                context=args.context,
            )
            self.model.codec.load_state_dict(codec.state_dict())
        self.model.codec.eval().requires_grad_(False)
        self.seed, self.new_per_step, self.buffer_start = args.seed, args.new_per_step, args.buffer_start
        self.buffer: list[tuple[torch.Tensor, torch.Tensor, int]] = []  # (z0, changes, family id), fp16

    @torch.no_grad()
    def _add(self, rng: random.Random, count: int) -> None:
        instances = random_instances(rng, count, self.seed)
        z0, changes = self.model.latent_changes(render_videos(instances, V2_SIZE))
        for i, instance in enumerate(instances):
            self.buffer.append((z0[i].half(), changes[i].half(), FAMILY_IDS[instance.family]))
        if len(self.buffer) > BUFFER_MAX:
            del self.buffer[: len(self.buffer) - BUFFER_MAX]

    def loss(self, rng: random.Random, batch: int) -> torch.Tensor:
        while len(self.buffer) < self.buffer_start:
            self._add(rng, min(32, self.buffer_start))
        self._add(rng, self.new_per_step)
        picks = [self.buffer[rng.randrange(len(self.buffer))] for _ in range(batch)]
        z0 = torch.stack([p[0] for p in picks]).float()
        x0 = torch.stack([p[1] for p in picks]).float()
        family = torch.tensor([UNKNOWN_FAMILY if rng.random() < 0.1 else p[2] for p in picks])
        if self.model.config["context"]:
            return next_frame_loss(self.model, z0, x0, family)
        return flow_matching_loss(self.model, x0, z0, family, moving_mask(x0))


def trainable_parameters(model) -> list[torch.nn.Parameter]:
    """Everything but a frozen frame codec (v2's `codec` submodule)."""
    return [p for name, p in model.named_parameters() if not name.startswith("codec.")]


def sample_instance(model, instance, seed: int) -> torch.Tensor:
    """The model's sample (8 steps for v1, the config's for v2) for an instance, through the runtime's adapter."""
    size = model.config["size"]
    frames = max(FRAMES, instance.frames_needed())
    first = render(instance, solution_plan(instance, frames), (size, size))[0]
    condition = Condition(
        torch.from_numpy(first).float().div(255).permute(2, 0, 1), family=instance.family, frames=frames
    )
    return ReasonerGenerator(model=model).sample(condition, seed)


def evaluate(model, per_family: int, seed: int, splits=("test", "ood")) -> dict:
    """Scorer pass rate and mean score per split and family on held-out instances (noise seed = index)."""
    model.eval()
    results: dict = {}
    with torch.no_grad():
        for split in splits:
            for family in FAMILIES:
                scores = []
                for index in range(per_family):
                    instance = generate(family, index, seed, split)
                    video = sample_instance(model, instance, seed=index)
                    frames_np = (video[0].permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
                    scores.append(score_video(frames_np, instance.to_dict()))
                results.setdefault(split, {})[family] = {
                    "pass_rate": float(np.mean([s.passed for s in scores])),
                    "mean_score": float(np.mean([s.score for s in scores])),
                }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=("v1", "v2"), default="v1")
    parser.add_argument("--out", type=Path, default=None, help="where the EMA weights are saved (save_pretrained)")
    parser.add_argument("--run", type=Path, default=None, help="run folder for last.pt (resumable checkpoints)")
    parser.add_argument("--resume", action="store_true", help="continue from RUN/last.pt")
    parser.add_argument("--minutes", type=float, default=45.0, help="wall-clock budget of this chunk")
    parser.add_argument("--max-steps", type=int, default=5000, help="total steps (length of the lr schedule)")
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-minutes", type=float, default=10.0)
    parser.add_argument("--eval-per-family", type=int, default=5)
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0)
    parser.add_argument(
        "--export", action="store_true", help="with --resume: only write RUN/last.pt's EMA weights to --out"
    )
    parser.add_argument(
        "--replace-codec",
        type=Path,
        default=None,
        help="with --export: put this codec's weights in the exported model (a decoder fine-tuned with "
        "train_decoder.py --init; its encoder must be the run's)",
    )
    parser.add_argument("--codec", type=Path, default=None, help="v2: the trained frame codec folder")
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        help="v2: start from an exported model folder (e.g. models/reasoner): its weights, codec and config; "
        "a fresh optimizer and schedule, and the folder's training log kept as 'prior'",
    )
    parser.add_argument("--channels", type=int, default=64, help="v2: denoiser width")
    parser.add_argument("--depth", type=int, default=4, help="v2: denoiser blocks")
    parser.add_argument(
        "--sample-steps",
        type=int,
        default=None,
        help="v2: Euler steps per sample (per frame if autoregressive; saved in config); default: 8, "
        "or the --init model's",
    )
    parser.add_argument(
        "--context",
        type=int,
        default=0,
        help="v2: 0 denoises all frames together; K > 0 generates frame after frame, each from the K before it "
        "and the motion history (with --init, a joint model's weights are the start)",
    )
    parser.add_argument("--buffer-start", type=int, default=256, help="v2: videos encoded before the first step")
    parser.add_argument("--new-per-step", type=int, default=2, help="v2: videos added to the replay buffer per step")
    args = parser.parse_args()
    if args.out is None and args.run is None:
        parser.error("give --out (weights) and/or --run (checkpoints)")
    if args.export and not (args.resume and args.out):
        parser.error("--export needs --resume (and --run) and --out")

    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    arch = V1(args) if args.arch == "v1" else V2(args)
    model = arch.model
    params = trainable_parameters(model)
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=args.warmup, num_training_steps=args.max_steps)
    ema = EMAModel(params, decay=0.999, use_ema_warmup=True, power=0.75)
    log = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "params": sum(p.numel() for p in params),
        "losses": [],
        "evals": [],
        "seconds": 0.0,
        "chunks": [],
    }
    if args.init is not None and (args.init / "training_log.json").exists():
        log["prior"] = json.loads((args.init / "training_log.json").read_text())
    step = 0
    last = args.run / "last.pt" if args.run else None
    if args.resume:
        if last is None or not last.exists():
            raise SystemExit(f"--resume: no checkpoint at {last}")
        fields = load_run_state(last, model, optimizer, scheduler, ema, rng)
        step, log = fields["step"], fields["log"]
        print(f"resumed {last} at step {step} ({log['seconds'] / 60:.1f} min trained)", flush=True)
    if not args.export:
        log["chunks"].append({"start_step": step, "command_args": {k: str(v) for k, v in vars(args).items()}})

    def ema_model():
        """A copy of the model holding the EMA weights (and the replacement codec, if given)."""
        import copy

        copy_ = copy.deepcopy(model)
        ema.copy_to(trainable_parameters(copy_))
        if args.replace_codec is not None:
            from ruledsl.runtime.frame_codec import PaletteAutoencoder

            codec = PaletteAutoencoder.from_pretrained(args.replace_codec, use_safetensors=True)
            encoder = {k: v for k, v in codec.state_dict().items() if k.startswith("vae.encoder.")}
            if any(not torch.equal(v, copy_.codec.state_dict()[k]) for k, v in encoder.items()):
                raise SystemExit(f"--replace-codec {args.replace_codec}: its encoder differs from the run's codec")
            copy_.codec.load_state_dict(codec.state_dict())
            copy_.codec.register_to_config(temperature=codec.config["temperature"])
            copy_.register_to_config(codec_config={k: v for k, v in codec.config.items() if not k.startswith("_")})
        return copy_.eval()

    def save_checkpoint():
        save_run_state(last, model, optimizer, scheduler, ema, rng, step=step, log=log)

    model.train()
    start = time.time()
    seconds0 = log["seconds"]
    last_log = last_eval = last_ckpt = start
    running = []
    while not args.export and step < args.max_steps and time.time() - start < args.minutes * 60:
        loss = arch.loss(rng, args.batch)
        running.append(update(loss, params, optimizer, scheduler, ema))
        step += 1
        now = time.time()
        log["seconds"] = seconds0 + now - start
        if now - last_log > 60:
            minutes = log["seconds"] / 60
            log["losses"].append({"step": step, "minutes": round(minutes, 2), "loss": float(np.mean(running))})
            print(
                f"step {step:6d}  {minutes:6.1f} min  loss {np.mean(running):.4f}  "
                f"{len(running) / (now - last_log):.2f} steps/s  lr {scheduler.get_last_lr()[0]:.2e}",
                flush=True,
            )
            running, last_log = [], now
        if now - last_eval > args.eval_minutes * 60:
            result = evaluate(ema_model(), args.eval_per_family, args.seed)
            log["evals"].append({"step": step, "minutes": round(log["seconds"] / 60, 2), **result})
            for split, families in result.items():
                print(
                    f"eval {split} at step {step}: "
                    + ", ".join(f"{f} {r['pass_rate']:.0%}/{r['mean_score']:.2f}" for f, r in families.items()),
                    flush=True,
                )
            last_eval = time.time()
        if last is not None and time.time() - last_ckpt > args.checkpoint_minutes * 60:
            save_checkpoint()
            last_ckpt = time.time()
    log["steps"], log["minutes"] = step, round(log["seconds"] / 60, 2)
    if last is not None and not args.export:
        save_checkpoint()
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        ema_model().save_pretrained(args.out)
        (args.out / "training_log.json").write_text(json.dumps(log, indent=1) + "\n")
        print(f"saved {args.out} after {step} steps ({log['minutes']} min)", flush=True)
    print(f"stopped at step {step}/{args.max_steps}" + (f"; resume with --run {args.run} --resume" if last else ""))


if __name__ == "__main__":
    main()
