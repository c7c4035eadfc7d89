"""A/B of the v2 decode (2026-12-04 change), interleaved so machine drift hits both alike.

old: the codec's decoder on the default memory layout, all frames in one batched call, and a guided
sample decoded again at the end; new (shipped): channels-last decoder input, one frame per call (each
frame bit for bit the frame decoded alone), and a guided sample built from the frames it judged.
Times a plain 16-frame sample and 3 frame-guided samples (retries 2) on a maze `test` task at 64 px
and a key_door `ood` task at 96 px, the shipped reasoner.

Usage: python benchmarks/decode_speed.py [--threads 1] [--rounds 6]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import ruledsl.runtime.frame_codec as codec_module
from ruledsl.runtime.bench import example_program
from ruledsl.runtime.frame_guide import FrameGuide
from ruledsl.runtime.generators import ReasonerGenerator, condition_from_instance
from ruledsl.tasks import generate

NEW = (codec_module.PaletteAutoencoder.decode_logits, codec_module.decode_video)


def old_decode_logits(self, latents):
    return self.vae.decoder(latents * self.config["latent_std"] + self.config["latent_mean"])


def old_decode_video(codec, latents, temperature=None):
    frames = codec.decode(latents.flatten(0, 1), temperature)
    return frames.view(*latents.shape[:2], *frames.shape[1:])


def use(old: bool) -> None:
    logits, video = (old_decode_logits, old_decode_video) if old else NEW
    codec_module.PaletteAutoencoder.decode_logits = logits  # type: ignore[method-assign]
    codec_module.decode_video = video
    ReasonerGenerator.decodes_per_frame = not old


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = {}
    for family, split, size in [("maze", "test", 64), ("key_door", "ood", 96)]:
        generator = ReasonerGenerator(size=size)
        instance = generate(family, 0, 0, split)
        condition = condition_from_instance(instance, size)
        condition.frames = 16
        guide = FrameGuide(example_program(family, instance.to_dict(), size), retries=2)
        cases[f"{family} {size} px, one sample"] = lambda c=condition, m=generator: m.sample(c, 0)
        cases[f"{family} {size} px, 3 guided samples"] = lambda c=condition, m=generator, g=guide: [
            g.sample(m, c, seed) for seed in range(3)
        ]
    times: dict[tuple[str, bool], list[float]] = {(name, old): [] for name in cases for old in (False, True)}
    with torch.no_grad():
        for round_ in range(args.rounds):
            for old in (bool(round_ % 2), not round_ % 2):  # alternate which variant goes first
                use(old)
                for name, run in cases.items():
                    run()  # warm-up
                    start = time.perf_counter()
                    run()
                    times[(name, old)].append(time.perf_counter() - start)
    use(False)
    print(f"threads {args.threads}, medians of {args.rounds} rounds")
    for name in cases:
        old, new = statistics.median(times[(name, True)]), statistics.median(times[(name, False)])
        print(f"{name:34s} old {old * 1000:7.0f} ms   new {new * 1000:7.0f} ms   ({(1 - new / old) * 100:+.0f} % less)")


if __name__ == "__main__":
    main()
