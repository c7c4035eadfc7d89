"""Every task family behind one interface: the grid families (`families.py`) and the shape families
(`shape_families.py`), for the `ruledsl tasks` commands, the folder layout and benchmarks.

`families.FAMILIES` stays the grid families alone: the reasoner, its frame codec and `ruledsl bench`
were built on those five (their ids are fixed), so they keep reading that table. Everything that only
generates, renders, corrupts or scores a task goes through here and sees all families (`ALL_FAMILIES`).
"""

from __future__ import annotations

import numpy as np

from ruledsl.tasks import corrupt as grid_corrupt
from ruledsl.tasks import render as grid_render
from ruledsl.tasks.families import FAMILIES, Instance
from ruledsl.tasks.families import generate as generate_grid
from ruledsl.tasks.scorers import Score, score_video
from ruledsl.tasks.shape_families import (
    SHAPE_DEFAULT_SIZE,
    SHAPE_FAMILIES,
    SHAPE_KINDS,
    corrupt_shapes,
    generate_shapes,
)
from ruledsl.tasks.shape_scorers import score_shapes
from ruledsl.tasks.shapes import ShapeInstance, ShapePlan, render_shapes, shape_solution_plan

ALL_FAMILIES: tuple[str, ...] = (*FAMILIES, *SHAPE_FAMILIES)
AnyInstance = Instance | ShapeInstance


def generate(family: str, index: int, seed: int = 0, split: str = "train") -> AnyInstance:
    """The `index`-th instance of any family's split for a seed (deterministic)."""
    if family in SHAPE_FAMILIES:
        return generate_shapes(family, index, seed, split)
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {', '.join(ALL_FAMILIES)}")
    return generate_grid(family, index, seed, split)


def from_dict(data: dict) -> AnyInstance:
    return ShapeInstance.from_dict(data) if data.get("kind") == "shapes" else Instance.from_dict(data)


def default_size(family: str) -> tuple[int, int]:
    return SHAPE_DEFAULT_SIZE if family in SHAPE_FAMILIES else grid_render.DEFAULT_SIZE


def corruption_kinds(family: str) -> dict[str, str]:
    """The corruptions of a family: kind -> what it does."""
    return SHAPE_KINDS[family] if family in SHAPE_FAMILIES else grid_corrupt.KINDS


def solution(instance: AnyInstance, frames: int | None = None):
    if isinstance(instance, ShapeInstance):
        return shape_solution_plan(instance, frames)
    return grid_render.solution_plan(instance, frames)


def corrupt(instance: AnyInstance, kind: str, frames: int | None = None):
    if isinstance(instance, ShapeInstance):
        return corrupt_shapes(instance, kind, frames)
    return grid_corrupt.corrupt(instance, kind, frames)


def render(instance: AnyInstance, plan, size: tuple[int, int]) -> np.ndarray:
    if isinstance(instance, ShapeInstance):
        assert isinstance(plan, ShapePlan)
        return render_shapes(instance, plan, size)
    return grid_render.render(instance, plan, size)


def score(frames: np.ndarray, meta: dict) -> Score:
    """The family's independent judge (numpy only)."""
    return score_shapes(frames, meta) if meta.get("kind") == "shapes" else score_video(frames, meta)
