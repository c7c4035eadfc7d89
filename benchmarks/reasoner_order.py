"""Does the reasoner know *where* the mover goes but not *when*? Where-vs-when accuracy of samples.

Usage: python benchmarks/reasoner_order.py [--model FOLDER] [--split test] [--per-family 10] [--json OUT]

For each instance (0..per_family-1 of every family) the seed-0 sample is drawn and, frame by
frame, the primary mover's cell is read from the video (the largest blob of its colour, by the
scorer's colour distance). Two accuracies over frames where the mover is visible:
  - *where*: its cell is one of the ground-truth path's cells (any frame);
  - *when*: its cell is the ground-truth cell of that same frame.
A model that drew the right path in scrambled order scores high on *where* and low on *when*;
one that draws wrong places scores low on both. Also counts frames where the mover is absent.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from ruledsl.runtime.generators import ReasonerGenerator, condition_from_instance, to_uint8
from ruledsl.runtime.load import load_generator
from ruledsl.tasks.families import FAMILIES, PALETTE, generate
from ruledsl.tasks.render import frames_for, render, solution_plan
from ruledsl.tasks.scorers import COLOR_DISTANCE, _Geometry, components


def mover_cells(video: np.ndarray, instance) -> list[tuple[int, int] | None]:
    """[T, H, W, 3] uint8 -> the primary mover's cell per frame (None where it is absent)."""
    rgb = np.array(PALETTE[instance.movers[instance.primary].color], dtype=float)
    geometry = _Geometry(instance.to_dict(), video.shape[1], video.shape[2])
    cells: list[tuple[int, int] | None] = []
    for frame in video:
        mask = np.linalg.norm(frame.astype(float) - rgb, axis=-1) < COLOR_DISTANCE
        if not components(mask):
            cells.append(None)
            continue
        ys, xs = np.nonzero(mask)
        cells.append(geometry.cell_of((ys.mean(), xs.mean())))
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="reasoner folder (default: the shipped one)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--per-family", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator = load_generator(args.model) if args.model else ReasonerGenerator()
    if not isinstance(generator, ReasonerGenerator):
        raise SystemExit("--model must be a reasoner folder")
    rows = []
    for family in FAMILIES:
        where = when = visible = absent = 0
        for index in range(args.per_family):
            instance = generate(family, index, 0, args.split)
            frames = frames_for(instance)
            truth = mover_cells(render(instance, solution_plan(instance, frames), (64, 64)), instance)
            with torch.no_grad():
                video = to_uint8(generator.sample(condition_from_instance(instance, generator.size), 0)[0])
            sample = mover_cells(video, instance)
            path = {c for c in truth if c is not None}
            for t, cell in enumerate(sample):
                if cell is None:
                    absent += 1
                    continue
                visible += 1
                where += cell in path
                when += cell == truth[t]
        rows.append(
            {
                "family": family,
                "frames_visible": visible,
                "frames_absent": absent,
                "where": round(where / max(visible, 1), 3),
                "when": round(when / max(visible, 1), 3),
            }
        )
    print(f"| family ({args.split}, {args.per_family} each, seed 0) | where | when | frames absent |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['family']} | {r['where']:.0%} | {r['when']:.0%} | {r['frames_absent']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
