"""Does the v2 frame codec keep verdicts? encode->decode `test` videos and judge both versions.

    python scripts/decoder_agreement.py models/reasoner [--n 20] [--json OUT.json]

FOLDER is a frame codec (scripts/train_decoder.py) or a v2 reasoner (its `codec` is used). For
instances 0..n-1 of every family's `test` split, the ground truth and every corruption kind
(ruledsl.tasks.corrupt.KINDS) are rendered at the codec's size (64x64), passed through
encode->decode, and judged on both versions by the family's scorer (`score_video(...).passed`) and
by `examples/<family>.rule` (compiled with the instance's params, `report.satisfied`). Prints per
case (ground truth / kind) the share of videos whose scorer verdict, program verdict and both are
unchanged, the share whose set of failed scorer checks is unchanged (stricter: a corruption must
fail for the same reasons), and the share of pixels decoded to exactly the original colour. The bar (issue 13):
both verdicts unchanged for >= 98 % of videos overall and of every case. Exit 0 when met, 1 if not.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import numpy as np
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BAR = 0.98


def load_codec(folder: Path):
    from ruledsl.runtime.frame_codec import PaletteAutoencoder

    config = json.loads((folder / "config.json").read_text())
    if config.get("_class_name") == "LatentReasonerModel":
        from ruledsl.runtime.latent_reasoner import LatentReasonerModel

        return LatentReasonerModel.from_pretrained(folder, use_safetensors=True).codec.eval(), config["size"]
    return PaletteAutoencoder.from_pretrained(folder, use_safetensors=True).eval(), 64


@torch.no_grad()
def roundtrip(codec, frames: np.ndarray) -> np.ndarray:
    video = torch.from_numpy(frames).float().div(255).permute(0, 3, 1, 2)
    decoded = codec.decode(codec.encode(video))
    return (decoded.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)


def measure(codec, size: int, n: int, split: str = "test") -> dict:
    import ruledsl
    from ruledsl.compiler.video_io import to_tensor
    from ruledsl.tasks.corrupt import KINDS, corrupt
    from ruledsl.tasks.families import FAMILIES, generate
    from ruledsl.tasks.layout import params_for
    from ruledsl.tasks.render import render, solution_plan
    from ruledsl.tasks.scorers import score_video

    counts: dict = collections.defaultdict(lambda: collections.Counter())
    changed = []
    for family in FAMILIES:
        program = ruledsl.load(EXAMPLES / f"{family}.rule")
        for index in range(n):
            instance = generate(family, index, 0, split)
            meta = instance.to_dict()
            compiled = program.compile(params=params_for(program, meta, (size, size)))
            cases = ("ground truth", *KINDS)
            originals = [
                render(
                    instance,
                    solution_plan(instance) if case == "ground truth" else corrupt(instance, case),
                    (size, size),
                )
                for case in cases
            ]
            decodeds = [roundtrip(codec, original) for original in originals]
            # one batched program call per instance: [2 * cases, T, 3, H, W], originals then decoded
            satisfied = compiled(torch.stack([to_tensor(v) for v in originals + decodeds])).satisfied
            for i, case in enumerate(cases):
                judged = [score_video(v, meta) for v in (originals[i], decodeds[i])]
                scorer = [v.passed for v in judged]
                failed = [{k for k, value in v.checks.items() if value < 1} for v in judged]
                verdicts = [bool(satisfied[i]), bool(satisfied[len(cases) + i])]
                c = counts[case]
                c["videos"] += 1
                c["scorer_same"] += scorer[0] == scorer[1]
                c["program_same"] += verdicts[0] == verdicts[1]
                c["both_same"] += scorer[0] == scorer[1] and verdicts[0] == verdicts[1]
                c["failed_checks_same"] += failed[0] == failed[1]
                c["pixels_exact"] += float(np.all(decodeds[i] == originals[i], axis=-1).mean())
                if not (scorer[0] == scorer[1] and verdicts[0] == verdicts[1]):
                    changed.append(
                        {
                            "family": family,
                            "index": index,
                            "case": case,
                            "scorer": scorer,
                            "program": verdicts,
                            "reasons_after": judged[1].reasons,
                        }
                    )
    rows = {case: {k: (v if k == "videos" else v / c["videos"]) for k, v in c.items()} for case, c in counts.items()}
    total = collections.Counter()
    for c in counts.values():
        total.update(c)
    rows["all"] = {k: (v if k == "videos" else v / total["videos"]) for k, v in total.items()}
    return {"split": split, "n_per_family": n, "cases": rows, "changed": changed}


def table(result: dict) -> str:
    lines = [
        "| case | videos | scorer verdict kept | program verdict kept | both kept | same failed checks | pixels exact |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, r in result["cases"].items():
        lines.append(
            f"| {case} | {r['videos']} | {r['scorer_same']:.1%} | {r['program_same']:.1%} | "
            f"{r['both_same']:.1%} | {r['failed_checks_same']:.1%} | {r['pixels_exact']:.2%} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--n", type=int, default=20, help="instances per family")
    parser.add_argument("--split", default="test")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    codec, size = load_codec(args.folder)
    result = measure(codec, size, args.n, args.split)
    print(table(result))
    for item in result["changed"][:20]:
        print(f"changed: {item}")
    met = all(r["both_same"] >= BAR for r in result["cases"].values())
    result["bar_met"] = met
    print(f"bar (both verdicts kept >= {BAR:.0%} overall and per case): {'met' if met else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
