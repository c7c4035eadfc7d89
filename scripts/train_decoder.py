"""Train the v2 reasoner's frame autoencoder (runtime/frame_codec.py) on task frames.

    OMP_NUM_THREADS=1 python scripts/train_decoder.py --run /work/wt/reasoner2-runs/codec \
        --max-steps 6000 --minutes 40 [--resume]

Frames: all families, `train` split, generated on the fly at 64x64; ground truth and, a third of
the time, a corruption (so the decoder also sees stray copies, cyan agents, empty frames).
Loss: cross-entropy of the decoder's palette logits against each pixel's palette colour (the
frames are flat colours, so every pixel has an exact class: this is what punishes colour bleed),
with small gaussian noise on the latents so slightly-off latents from the denoiser still decode
to clean cells. AdamW with warm-up + cosine decay (`diffusers.optimization.get_scheduler`),
gradient clipping, EMA (`diffusers.training_utils.EMAModel`). Every --eval-minutes the EMA weights
are scored on held-out `test` videos (ground truth and every corruption kind): the fraction whose
scorer verdict after encode->decode equals the original's, and the checkpoint with the best
agreement (then the most exactly decoded pixels) is kept (`best/`, save_pretrained). `last.pt` holds
everything needed to `--resume`. `--init CODEC` fine-tunes only the decoder of a trained codec (the
latent space stays the one a reasoner was trained on); `--balance` weighs rare colours up.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from run_state import load_run_state, save_run_state, update

from ruledsl.runtime.frame_codec import PaletteAutoencoder
from ruledsl.tasks.corrupt import KINDS, corrupt
from ruledsl.tasks.families import FAMILIES, generate
from ruledsl.tasks.render import render, solution_plan
from ruledsl.tasks.scorers import score_video

SIZE = 64
LATENT_NOISE = 0.1  # std of the noise added to (unit-scale) latents in training


def render_plan(instance, kind: str | None) -> np.ndarray:
    """uint8 [T, H, W, 3]: the ground truth (kind None) or a corruption."""
    plan = solution_plan(instance) if kind is None else corrupt(instance, kind)
    return render(instance, plan, (SIZE, SIZE))


LARGE_GRID_SEED = 1  # layouts of `ood` sizes come from this generator seed; evaluations use seed 0


def frame_batch(rng: random.Random, videos: int, per_video: int, large_grids: float = 0.0) -> torch.Tensor:
    """Frames of random instances: `train` split, or with probability `large_grids` a layout of the
    `ood` sizes (generator seed LARGE_GRID_SEED, so never an instance the benchmarks evaluate), so the
    codec also learns the finer cells of the largest grids."""
    frames = []
    while len(frames) < videos * per_video:
        family = rng.choice(list(FAMILIES))
        if rng.random() < large_grids:
            instance = generate(family, rng.randrange(10**9), LARGE_GRID_SEED, "ood")
        else:
            instance = generate(family, rng.randrange(10**9), 0, "train")
        kind = rng.choice(list(KINDS)) if rng.random() < 1 / 3 else None
        try:
            video = render_plan(instance, kind)
        except ValueError:  # a corruption that does not apply to this instance
            continue
        frames += [video[rng.randrange(len(video))] for _ in range(per_video)]
    return torch.from_numpy(np.stack(frames)).float().div(255).permute(0, 3, 1, 2)


def held_out_videos(per_family: int) -> list[tuple[np.ndarray, dict, bool]]:
    """(video, metadata, original verdict) for `test` ground truth and every corruption kind."""
    out = []
    for family in FAMILIES:
        for index in range(per_family):
            instance = generate(family, index, 0, "test")
            for kind in (None, *KINDS):
                try:
                    video = render_plan(instance, kind)
                except ValueError:
                    continue
                meta = instance.to_dict()
                out.append((video, meta, score_video(video, meta).passed))
    return out


@torch.no_grad()
def roundtrip(codec: PaletteAutoencoder, video: np.ndarray) -> np.ndarray:
    frames = torch.from_numpy(video).float().div(255).permute(0, 3, 1, 2)
    decoded = codec.decode(codec.encode(frames))
    return (decoded.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)


def agreement(codec: PaletteAutoencoder, videos) -> dict:
    codec.eval()
    same, exact = 0, 0
    for video, meta, verdict in videos:
        decoded = roundtrip(codec, video)
        same += score_video(decoded, meta).passed == verdict
        exact += float(np.all(decoded == video, axis=-1).mean())
    codec.train()
    return {"verdicts_agree": same / len(videos), "pixels_exact": exact / len(videos), "videos": len(videos)}


@torch.no_grad()
def latent_stats(codec: PaletteAutoencoder, videos) -> tuple[float, float]:
    raw = torch.cat(
        [
            codec.vae.encoder(torch.from_numpy(v).float().div(127.5).sub(1).permute(0, 3, 1, 2))
            for v, _, _ in videos[:40]
        ]
    )
    return float(raw.mean()), float(raw.std())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="run folder: checkpoints, log, best/")
    parser.add_argument("--max-steps", type=int, default=6000, help="length of the lr schedule")
    parser.add_argument("--minutes", type=float, default=45.0, help="wall-clock budget of this chunk")
    parser.add_argument("--videos", type=int, default=8, help="videos per batch")
    parser.add_argument("--per-video", type=int, default=4, help="frames drawn from each video")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-minutes", type=float, default=4.0)
    parser.add_argument("--eval-per-family", type=int, default=3)
    parser.add_argument("--checkpoint-minutes", type=float, default=3.0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start from this codec folder and train its decoder only (the encoder, "
        "so the latent space a reasoner was trained on, stays fixed)",
    )
    parser.add_argument(
        "--large-grids", type=float, default=0.0, help="share of frames from layouts of the `ood` sizes (seed 1)"
    )
    parser.add_argument(
        "--balance", action="store_true", help="weigh each colour by its inverse frequency in the batch (square root)"
    )
    args = parser.parse_args()

    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    args.run.mkdir(parents=True, exist_ok=True)
    codec = PaletteAutoencoder.from_pretrained(args.init, use_safetensors=True) if args.init else PaletteAutoencoder()
    if args.init:
        codec.vae.encoder.requires_grad_(False)
    params = [p for p in codec.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=args.warmup, num_training_steps=args.max_steps)
    ema = EMAModel(params, decay=0.999, use_ema_warmup=True, power=0.75)
    log = {"args": {k: str(v) for k, v in vars(args).items()}, "losses": [], "evals": [], "seconds": 0.0}
    step, best = 0, -1.0
    last = args.run / "last.pt"
    if args.resume and last.exists():
        fields = load_run_state(last, codec, optimizer, scheduler, ema, rng)
        step, best, log = fields["step"], fields["best"], fields["log"]
        print(f"resumed at step {step} (best agreement {best:.3f})", flush=True)
    held_out = held_out_videos(args.eval_per_family)
    eval_codec = PaletteAutoencoder(**{k: v for k, v in codec.config.items() if not k.startswith("_")})
    eval_codec.load_state_dict(codec.state_dict())
    eval_params = [p for p, q in zip(eval_codec.parameters(), codec.parameters()) if q.requires_grad]

    def save_checkpoint():
        save_run_state(last, codec, optimizer, scheduler, ema, rng, step=step, best=best, log=log)

    start = time.time()
    seconds0 = log["seconds"]
    last_log = last_eval = last_ckpt = start
    running = []
    while step < args.max_steps and time.time() - start < args.minutes * 60:
        frames = frame_batch(rng, args.videos, args.per_video, args.large_grids)
        target = codec.palette_index(frames)
        with torch.set_grad_enabled(args.init is None):
            latents = codec.encode(frames)
        logits = codec.decode_logits(latents + LATENT_NOISE * torch.randn_like(latents))
        weight = None
        if args.balance:  # rare colours (pads, key, door) are a few pixels of a frame; square-root inverse frequency
            counts = torch.bincount(target.flatten(), minlength=logits.shape[1]).float()
            weight = torch.where(counts > 0, (counts.sum() / counts.clamp(min=1)).sqrt(), torch.zeros_like(counts))
            weight = weight / weight[counts > 0].mean()
        loss = F.cross_entropy(logits, target, weight=weight)
        running.append(update(loss, params, optimizer, scheduler, ema))
        step += 1
        now = time.time()
        log["seconds"] = seconds0 + now - start
        if now - last_log > 60:
            entry = {"step": step, "minutes": round(log["seconds"] / 60, 2), "loss": float(np.mean(running))}
            log["losses"].append(entry)
            print(
                f"step {step} {entry['minutes']} min loss {entry['loss']:.4f} lr {scheduler.get_last_lr()[0]:.2e}",
                flush=True,
            )
            running, last_log = [], now
        final = step >= args.max_steps or now - start >= args.minutes * 60
        if now - last_eval > args.eval_minutes * 60 or final:
            ema.copy_to(eval_params)
            result = agreement(eval_codec, held_out)
            log["evals"].append({"step": step, "minutes": round(log["seconds"] / 60, 2), **result})
            print(f"eval step {step}: {result}", flush=True)
            quality = result["verdicts_agree"] + 0.01 * result["pixels_exact"]  # verdicts first, then exact pixels
            if quality >= best:
                best = quality
                if args.init:  # the encoder is the init's: keep its latent scale (a reasoner depends on it)
                    eval_codec.save_pretrained(args.run / "best")
                else:
                    mean, std = latent_stats(eval_codec, held_out)
                    eval_codec.register_to_config(latent_mean=mean, latent_std=std)
                    eval_codec.save_pretrained(args.run / "best")
                    eval_codec.register_to_config(latent_mean=0.0, latent_std=1.0)
                (args.run / "best" / "training.json").write_text(
                    json.dumps({"step": step, "minutes": round(log["seconds"] / 60, 2), **result}, indent=1) + "\n"
                )
            last_eval = time.time()
        if time.time() - last_ckpt > args.checkpoint_minutes * 60 or final:
            save_checkpoint()
            last_ckpt = time.time()
    save_checkpoint()
    print(f"stopped at step {step}; best agreement {best:.3f}; {args.run}", flush=True)


if __name__ == "__main__":
    main()
