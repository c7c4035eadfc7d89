"""Render an Instance under a per-frame Plan to crisp flat-colour frames (numpy, uint8 [T, H, W, 3])."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ruledsl.tasks.families import PALETTE, Cell, Instance

DEFAULT_FRAMES = 16
DEFAULT_SIZE = (64, 64)


@dataclass
class Plan:
    """What each frame shows: per mover a cell (or None: absent) and a colour, plus extra blobs."""

    positions: dict[str, list[Cell | None]]
    colors: dict[str, list[str]]
    extras: list[tuple[int, Cell, str]] = field(default_factory=list)  # (frame, cell, colour)
    static_overrides: list[tuple[int, Cell, str]] = field(default_factory=list)  # repaint a static cell

    @property
    def frames(self) -> int:
        return len(next(iter(self.positions.values())))

    def copy(self) -> Plan:
        return Plan(
            {k: list(v) for k, v in self.positions.items()},
            {k: list(v) for k, v in self.colors.items()},
            list(self.extras),
            list(self.static_overrides),
        )


def frames_for(instance: Instance, frames: int | None = None) -> int:
    """The requested frame count, or more if the solution needs more (one move per frame)."""
    return max(frames or DEFAULT_FRAMES, instance.frames_needed())


def solution_plan(instance: Instance, frames: int | None = None) -> Plan:
    """The ground truth: each mover waits until its start frame, moves one cell per frame, then holds."""
    total = frames_for(instance, frames)
    positions: dict[str, list[tuple[int, int] | None]] = {}
    colors: dict[str, list[str]] = {}
    for name, mover in instance.movers.items():
        positions[name] = [mover.path[min(max(t - mover.start_frame, 0), len(mover.path) - 1)] for t in range(total)]
        colors[name] = [mover.color] * total
    return Plan(positions, colors)


def cell_box(cell: Cell, rows: int, cols: int, height: int, width: int) -> tuple[int, int, int, int]:
    """Pixel rows [y0, y1) and columns [x0, x1) of a cell."""
    r, c = cell
    return r * height // rows, (r + 1) * height // rows, c * width // cols, (c + 1) * width // cols


def render(instance: Instance, plan: Plan, size: tuple[int, int] = DEFAULT_SIZE) -> np.ndarray:
    height, width = size
    if height < instance.rows or width < instance.cols:
        raise ValueError(f"{height}x{width} pixels cannot show a {instance.rows}x{instance.cols} grid")
    background = np.empty((height, width, 3), dtype=np.uint8)
    background[:] = PALETTE[instance.background]

    def paint(image, cell, color):
        y0, y1, x0, x1 = cell_box(cell, instance.rows, instance.cols, height, width)
        image[y0:y1, x0:x1] = PALETTE[color]

    for role, cells in instance.static.items():
        for cell in cells:
            paint(background, cell, instance.static_colors[role])
    video = np.repeat(background[None], plan.frames, axis=0)
    for t, cell, color in plan.static_overrides:
        paint(video[t], cell, color)
    for name in instance.movers:
        for t, (at, color) in enumerate(zip(plan.positions[name], plan.colors[name])):
            if at is not None:
                paint(video[t], at, color)
    for t, cell, color in plan.extras:
        paint(video[t], cell, color)
    return video
