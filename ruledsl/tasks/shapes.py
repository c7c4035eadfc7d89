"""Task families of free-moving shapes (circles, rectangles) off the cell grid: instances, plans, rendering.

The grid families (`families.py`) place movers on cells; these place shapes at continuous
positions. Coordinates are fractions of the frame: x of its width, y of its height; shape sizes are
fractions of the frame's shorter side (a circle stays round, and a layout that is apart in a square
frame stays apart in any other). A `ShapeInstance` holds the static backdrop (filled or outlined
rectangles), the shapes (kind, colour, size, draw order, marks of a second colour) and the ground truth
as one centre per shape per frame; a `ShapePlan` is what a video shows (the ground truth or a
corruption of it, `shape_families.corrupt_shapes`). Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ruledsl.tasks.families import PALETTE

# The grid families' palette plus the colours of these families (PALETTE itself is the reasoner's
# frame codec's colour table: it must not grow).
SHAPE_PALETTE: dict[str, tuple[int, int, int]] = {
    **PALETTE,
    "light_grey": (200, 200, 200),
    "pink": (255, 105, 180),
    "teal": (0, 128, 128),
    "tint_red": (255, 200, 200),
    "tint_blue": (200, 200, 255),
    "tint_green": (200, 255, 200),
    "tint_purple": (230, 190, 230),
}

Point = tuple[float, float]


@dataclass
class Shape:
    kind: str  # "circle" (size = [diameter, diameter]) or "rect" (size = [width, height])
    color: str
    size: tuple[float, float]  # fractions of the frame's shorter side
    z: int = 0  # draw order: higher is drawn later (on top)
    marks: list[tuple[float, float, float, float]] = field(default_factory=list)  # boxes in the shape's box, 0-1
    mark_color: str = "black"

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "color": self.color,
            "rgb": list(SHAPE_PALETTE[self.color]),
            "size": list(self.size),
            "z": self.z,
            "marks": [list(m) for m in self.marks],
            "mark_color": self.mark_color,
            "mark_rgb": list(SHAPE_PALETTE[self.mark_color]),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Shape:
        return cls(
            data["kind"],
            data["color"],
            (float(data["size"][0]), float(data["size"][1])),
            int(data["z"]),
            [tuple(float(v) for v in m) for m in data["marks"]],  # type: ignore[misc]
            data["mark_color"],
        )


@dataclass
class Static:
    role: str  # "board", "slot:<shape>", ...
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in frame fractions
    color: str
    outline: float = 0.0  # line width (fraction of the shorter side); 0 = filled

    def to_dict(self) -> dict:
        return {
            "role": self.role,
            "box": list(self.box),
            "color": self.color,
            "rgb": list(SHAPE_PALETTE[self.color]),
            "outline": self.outline,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Static:
        return cls(data["role"], tuple(float(v) for v in data["box"]), data["color"], float(data["outline"]))  # type: ignore[arg-type]


@dataclass
class ShapeInstance:
    family: str
    split: str
    index: int
    seed: int
    background: str
    statics: list[Static]
    shapes: dict[str, Shape]
    path: dict[str, list[Point]]  # the ground truth: each shape's centre in every frame (all equally long)
    prompt: str
    params: dict = field(default_factory=dict)  # family layout the scorer reads (JSON values)
    program_params: dict = field(default_factory=dict)  # rule-program params, fractions of the longer side

    def frames_needed(self) -> int:
        return len(next(iter(self.path.values())))

    def to_dict(self) -> dict:
        return {
            "family": self.family,
            "split": self.split,
            "index": self.index,
            "seed": self.seed,
            "kind": "shapes",
            "background": self.background,
            "background_rgb": list(SHAPE_PALETTE[self.background]),
            "statics": [s.to_dict() for s in self.statics],
            "shapes": {name: s.to_dict() for name, s in self.shapes.items()},
            "path": {name: [list(p) for p in points] for name, points in self.path.items()},
            "prompt": self.prompt,
            "params": self.params,
            "program_params": self.program_params,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ShapeInstance:
        return cls(
            family=data["family"],
            split=data["split"],
            index=data["index"],
            seed=data["seed"],
            background=data["background"],
            statics=[Static.from_dict(s) for s in data["statics"]],
            shapes={name: Shape.from_dict(s) for name, s in data["shapes"].items()},
            path={name: [(float(p[0]), float(p[1])) for p in points] for name, points in data["path"].items()},
            prompt=data["prompt"],
            params=dict(data.get("params", {})),
            program_params=dict(data.get("program_params", {})),
        )


@dataclass
class ShapePlan:
    """What each frame shows, per shape: its centre (None: not drawn), size, colour and draw order."""

    positions: dict[str, list[Point | None]]
    sizes: dict[str, list[tuple[float, float]]]
    colors: dict[str, list[str]]
    z: dict[str, list[int]]

    @property
    def frames(self) -> int:
        return len(next(iter(self.positions.values())))


def shape_solution_plan(instance: ShapeInstance, frames: int | None = None) -> ShapePlan:
    """The ground truth, held on its last frame up to `frames` (a shorter request keeps every move)."""
    total = max(frames or 0, instance.frames_needed())
    positions: dict[str, list[Point | None]] = {}
    for name, points in instance.path.items():
        positions[name] = [points[min(t, len(points) - 1)] for t in range(total)]
    return ShapePlan(
        positions,
        {name: [s.size] * total for name, s in instance.shapes.items()},
        {name: [s.color] * total for name, s in instance.shapes.items()},
        {name: [s.z] * total for name, s in instance.shapes.items()},
    )


def render_shapes(instance: ShapeInstance, plan: ShapePlan, size: tuple[int, int]) -> np.ndarray:
    """uint8 [T, H, W, 3]: crisp flat colours; a pixel belongs to a circle when its centre lies inside it,
    rectangles cover whole pixels."""
    height, width = size
    if min(height, width) < 8:
        raise ValueError(f"{height}x{width} pixels is too small for a shape task (at least 8 x 8)")
    side = min(height, width)
    ys = (np.arange(height) + 0.5)[:, None]
    xs = (np.arange(width) + 0.5)[None, :]
    backdrop = np.empty((height, width, 3), np.uint8)
    backdrop[:] = SHAPE_PALETTE[instance.background]
    for static in instance.statics:
        x0, y0, x1, y1 = static.box[0] * width, static.box[1] * height, static.box[2] * width, static.box[3] * height
        inside = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
        if static.outline > 0:
            line = static.outline * side
            inside &= ~((xs >= x0 + line) & (xs < x1 - line) & (ys >= y0 + line) & (ys < y1 - line))
        backdrop[inside] = SHAPE_PALETTE[static.color]
    video = np.repeat(backdrop[None], plan.frames, axis=0)
    for t in range(plan.frames):
        for name in sorted(instance.shapes, key=lambda n: (plan.z[n][t], list(instance.shapes).index(n))):
            at = plan.positions[name][t]
            if at is None:
                continue
            shape = instance.shapes[name]
            w, h = plan.sizes[name][t][0] * side, plan.sizes[name][t][1] * side
            cx, cy = at[0] * width, at[1] * height
            if shape.kind == "circle":
                inside = (xs - cx) ** 2 + (ys - cy) ** 2 < (w / 2) ** 2
                video[t][inside] = SHAPE_PALETTE[plan.colors[name][t]]
                continue
            # Rectangles snap to whole pixels with a size that does not depend on where they are, so equal
            # shapes (and their marks) cover equal pixel counts anywhere in the frame.
            pw, ph = max(1, round(w)), max(1, round(h))
            left, top = round(cx - pw / 2), round(cy - ph / 2)
            video[t][top : max(top + ph, 0), max(left, 0) : max(left + pw, 0)] = SHAPE_PALETTE[plan.colors[name][t]]
            for mx0, my0, mx1, my1 in shape.marks:
                y0, y1 = top + round(my0 * ph), top + round(my1 * ph)
                x0, x1 = left + round(mx0 * pw), left + round(mx1 * pw)
                video[t][max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = SHAPE_PALETTE[shape.mark_color]
    return video
