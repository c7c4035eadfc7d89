"""Corruptions of the ground truth that break a family's rules, for testing judges.

Each one changes the plan of the primary mover (the agent, or the blue box) and leaves
everything else as in the ground truth.
"""

from __future__ import annotations

from ruledsl.tasks.families import Cell, Instance, neighbours
from ruledsl.tasks.render import Plan, solution_plan

KINDS = {
    "frozen": "nothing moves: every frame shows the first frame",
    "vanish": "the agent disappears for the middle third of the video",
    "duplicate": "a second copy of the agent appears from a third of the way on",
    "color-change": "the agent turns cyan from half-way on",
    "teleport": "the agent waits at its start, then jumps to the goal in one frame",
    "wall-crossing": "the agent steps into a forbidden cell (wall, blocked cell, obstacle) mid-path "
    "(the nearest one if none is next to the path)",
    "wrong-end": "the agent ends one cell short of its goal",
    "stops-early": "the agent stops half-way along its path",
}


def corrupt(instance: Instance, kind: str, frames: int | None = None) -> Plan:
    if kind not in KINDS:
        raise ValueError(f"unknown corruption {kind!r}; choose from {', '.join(KINDS)}")
    plan = solution_plan(instance, frames)
    name = instance.primary
    mover = instance.movers[name]
    positions = plan.positions[name]
    total = plan.frames
    start = mover.start_frame
    if kind == "frozen":
        for key in plan.positions:
            plan.positions[key] = [plan.positions[key][0]] * total
    elif kind == "vanish":
        for t in range(total // 3, 2 * total // 3):
            positions[t] = None
    elif kind == "duplicate":
        spot = _far_free_cell(instance, set(mover.path) | _all_mover_cells(instance))
        plan.extras += [(t, spot, mover.color) for t in range(total // 3, total)]
    elif kind == "color-change":
        plan.colors[name] = [mover.color] * (total // 2) + ["cyan"] * (total - total // 2)
    elif kind == "teleport":
        half = start + len(mover.path) // 2
        for t in range(total):
            positions[t] = mover.path[0] if t < half else mover.path[-1]
    elif kind == "wall-crossing":
        index, cell = _forbidden_step(instance, mover.path)
        positions[start + index] = cell
    elif kind == "wrong-end":
        for t in range(start + len(mover.path) - 1, total):
            positions[t] = mover.path[-2]
    elif kind == "stops-early":
        stop = len(mover.path) // 2
        for t in range(start + stop, total):
            positions[t] = mover.path[stop]
    return plan


def _all_mover_cells(instance: Instance) -> set[Cell]:
    return {cell for m in instance.movers.values() for cell in m.path}


def _far_free_cell(instance: Instance, avoid: set[Cell]) -> Cell:
    """A free cell as far as possible (Chebyshev) from every cell in `avoid`."""
    best, best_distance = None, -1
    for r in range(instance.rows):
        for c in range(instance.cols):
            cell = (r, c)
            if not instance.free(cell) or any(cell in cells for cells in instance.static.values()):
                continue
            distance = min(max(abs(r - a), abs(c - b)) for a, b in avoid)
            if distance > best_distance:
                best, best_distance = cell, distance
    if best is None:
        raise ValueError("no free cell for a duplicate")
    return best


def _forbidden_step(instance: Instance, path: list[Cell]) -> tuple[int, Cell]:
    """A path index near the middle and a forbidden cell next to that step."""
    forbidden = {cell for role in instance.forbidden for cell in instance.static[role]}
    middle = len(path) // 2
    for offset in range(len(path)):
        for index in (middle + offset, middle - offset):
            if 0 < index < len(path) - 1:
                for cell in neighbours(path[index]):
                    if cell in forbidden:
                        return index, cell
    if not forbidden:
        raise ValueError(f"a {instance.family} instance has no forbidden cells to cross")
    # Open grids: the path may run clear of everything; step into the nearest forbidden cell (a jump).
    return middle, min(
        sorted(forbidden), key=lambda cell: abs(cell[0] - path[middle][0]) + abs(cell[1] - path[middle][1])
    )
