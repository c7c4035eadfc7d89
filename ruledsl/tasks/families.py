"""Seeded task generators on a grid of cells.

Every family produces an `Instance`: a grid, static coloured cells, movers (the agent, or
boxes) each with a solution path that moves one cell per frame and then holds, and a
prompt. Generation is deterministic in (family, split, index, seed); the `test` split
uses other seeds than `train` and the same difficulty; `ood` is harder (bigger grids,
longer paths).
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

Cell = tuple[int, int]

PALETTE: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "grey": (128, 128, 128),
    "purple": (128, 0, 128),
    "blue": (0, 0, 255),
    "orange": (255, 165, 0),
    "light_blue": (128, 192, 255),
    "light_orange": (255, 217, 160),
    "yellow": (255, 255, 0),
    "brown": (139, 69, 19),
    "cyan": (0, 255, 255),
}


@dataclass
class Mover:
    color: str
    path: list[Cell]  # one cell per move, start to end
    start_frame: int = 0  # frame at which it starts moving (two_targets moves boxes one after the other)


@dataclass
class Instance:
    family: str
    split: str
    index: int
    seed: int
    rows: int
    cols: int
    background: str
    static: dict[str, list[Cell]]  # role -> cells (walls, goal, key, ...)
    static_colors: dict[str, str]  # role -> colour name
    movers: dict[str, Mover]  # name -> mover; the first is the primary one (the agent)
    forbidden: list[str]  # static roles a mover must never overlap
    targets: dict[str, str]  # mover -> static role it must end on
    prompt: str
    params: dict = field(default_factory=dict)

    @property
    def primary(self) -> str:
        return next(iter(self.movers))

    def frames_needed(self) -> int:
        return max(m.start_frame + len(m.path) for m in self.movers.values())

    def free(self, cell: Cell) -> bool:
        r, c = cell
        if not (0 <= r < self.rows and 0 <= c < self.cols):
            return False
        return all(cell not in self.static[role] for role in self.forbidden)

    def to_dict(self) -> dict:
        return {
            "family": self.family,
            "split": self.split,
            "index": self.index,
            "seed": self.seed,
            "grid": {"rows": self.rows, "cols": self.cols},
            "background": self.background,
            "static": {
                role: {
                    "color": self.static_colors[role],
                    "rgb": PALETTE[self.static_colors[role]],
                    "cells": [list(c) for c in cells],
                }
                for role, cells in self.static.items()
            },
            "movers": {
                name: {
                    "color": m.color,
                    "rgb": PALETTE[m.color],
                    "start_frame": m.start_frame,
                    "path": [list(c) for c in m.path],
                }
                for name, m in self.movers.items()
            },
            "forbidden": self.forbidden,
            "targets": self.targets,
            "prompt": self.prompt,
            "params": self.params,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Instance:
        return cls(
            family=data["family"],
            split=data["split"],
            index=data["index"],
            seed=data["seed"],
            rows=data["grid"]["rows"],
            cols=data["grid"]["cols"],
            background=data["background"],
            static={role: [tuple(c) for c in v["cells"]] for role, v in data["static"].items()},
            static_colors={role: v["color"] for role, v in data["static"].items()},
            movers={
                name: Mover(v["color"], [tuple(c) for c in v["path"]], v["start_frame"])
                for name, v in data["movers"].items()
            },
            forbidden=list(data["forbidden"]),
            targets=dict(data["targets"]),
            prompt=data["prompt"],
            params=dict(data.get("params", {})),
        )


# ---- grid helpers ----------------------------------------------------------------------------

STEPS = ((0, 1), (1, 0), (0, -1), (-1, 0))


def neighbours(cell: Cell, diagonal: bool = False):
    r, c = cell
    steps = STEPS + (((1, 1), (1, -1), (-1, 1), (-1, -1)) if diagonal else ())
    return [(r + dr, c + dc) for dr, dc in steps]


def bfs_path(start: Cell, goals: set[Cell], passable) -> list[Cell] | None:
    """Shortest 4-connected path from start to any goal (both included), or None."""
    previous: dict[tuple[int, int], tuple[int, int] | None] = {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if cell in goals:
            path = [cell]
            while (before := previous[path[-1]]) is not None:
                path.append(before)
            return path[::-1]
        for nxt in neighbours(cell):
            if nxt not in previous and passable(nxt):
                previous[nxt] = cell
                queue.append(nxt)
    return None


def border(rows: int, cols: int) -> list[Cell]:
    return [(r, c) for r in range(rows) for c in range(cols) if r in (0, rows - 1) or c in (0, cols - 1)]


def _rng(family: str, split: str, index: int, seed: int) -> random.Random:
    digest = hashlib.sha256(f"{family}/{split}/{seed}/{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


# ---- families ---------------------------------------------------------------------------------


def make_maze(rng: random.Random, n: int) -> dict:
    """A perfect maze on n x n logical cells (depth-first carving), drawn on (2n+1)^2 blocks."""
    size = 2 * n + 1
    floor = set()
    stack, seen = [(0, 0)], {(0, 0)}
    floor.add((1, 1))
    while stack:
        r, c = stack[-1]
        options = [
            (r + dr, c + dc) for dr, dc in STEPS if 0 <= r + dr < n and 0 <= c + dc < n and (r + dr, c + dc) not in seen
        ]
        if not options:
            stack.pop()
            continue
        nr, nc = rng.choice(options)
        seen.add((nr, nc))
        floor.add((2 * nr + 1, 2 * nc + 1))
        floor.add((r + nr + 1, c + nc + 1))  # the wall block between the two cells
        stack.append((nr, nc))
    corners = [(1, 1), (1, size - 2), (size - 2, 1), (size - 2, size - 2)]
    start = rng.choice(corners)
    far = bfs_distances(start, lambda cell: cell in floor)
    logical = [cell for cell in far if cell[0] % 2 == 1 and cell[1] % 2 == 1]
    best = max(far[cell] for cell in logical)
    goal = rng.choice(sorted(cell for cell in logical if far[cell] >= best - 2))
    path = bfs_path(start, {goal}, lambda cell: cell in floor)
    assert path is not None  # the goal was chosen among the cells reachable from the start
    walls = [(r, c) for r in range(size) for c in range(size) if (r, c) not in floor]
    return dict(
        rows=size,
        cols=size,
        background="white",
        static={"walls": walls, "goal": [goal]},
        static_colors={"walls": "black", "goal": "green"},
        movers={"agent": Mover("red", path)},
        forbidden=["walls"],
        targets={"agent": "goal"},
        prompt="Move the red agent through the white corridors of the maze to the green goal. "
        "It moves one cell at a time and never enters the black walls.",
    )


def bfs_distances(start: Cell, passable) -> dict[Cell, int]:
    distances = {start: 0}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        for nxt in neighbours(cell):
            if nxt not in distances and passable(nxt):
                distances[nxt] = distances[cell] + 1
                queue.append(nxt)
    return distances


def _random_free(rng, rows, cols, taken, count=1, where=None):
    cells = [
        (r, c) for r in range(rows) for c in range(cols) if (r, c) not in taken and (where is None or where((r, c)))
    ]
    return rng.sample(cells, count) if len(cells) >= count else None


def make_grid_path(rng: random.Random, size: int, density: float) -> dict | None:
    blocked = set(rng.sample([(r, c) for r in range(size) for c in range(size)], int(density * size * size)))
    picked = _random_free(rng, size, size, blocked, 2)
    if picked is None:
        return None
    start, target = picked
    path = bfs_path(start, {target}, lambda cell: 0 <= cell[0] < size and 0 <= cell[1] < size and cell not in blocked)
    if path is None or len(path) - 1 < size // 2 + 1:
        return None
    return dict(
        rows=size,
        cols=size,
        background="white",
        static={"blocked": sorted(blocked), "target": [target]},
        static_colors={"blocked": "grey", "target": "green"},
        movers={"agent": Mover("red", path)},
        forbidden=["blocked"],
        targets={"agent": "target"},
        params={"shortest": len(path) - 1},
        prompt="Move the red agent to the green cell along a shortest path of single grid steps, "
        "never entering the grey cells.",
    )


def make_avoid(rng: random.Random, size: int, obstacles: int) -> dict | None:
    cells = set()
    for _ in range(obstacles):  # 2x2 purple blocks
        r, c = rng.randrange(size - 1), rng.randrange(size - 1)
        cells |= {(r, c), (r + 1, c), (r, c + 1), (r + 1, c + 1)}

    def safe(cell):  # free and not next to an obstacle, corners included (touching counts as hitting)
        r, c = cell
        return (
            0 <= r < size
            and 0 <= c < size
            and cell not in cells
            and not any(n in cells for n in neighbours(cell, diagonal=True))
        )

    picked = _random_free(rng, size, size, cells, 2, where=safe)
    if picked is None:
        return None
    start, goal = picked
    path = bfs_path(start, {goal}, safe)
    if path is None or len(path) - 1 < size // 2 + 1:
        return None
    return dict(
        rows=size,
        cols=size,
        background="white",
        static={"obstacles": sorted(cells), "goal": [goal]},
        static_colors={"obstacles": "purple", "goal": "green"},
        movers={"agent": Mover("red", path)},
        forbidden=["obstacles"],
        targets={"agent": "goal"},
        params={"clearance": 1},
        prompt="Move the red agent to the green goal without touching the purple obstacles "
        "(keep at least one free cell between the agent and every obstacle, corners included).",
    )


def make_two_targets(rng: random.Random, size: int) -> dict | None:
    walls = set(border(size, size))
    picked = _random_free(rng, size, size, walls, 4)
    if picked is None:
        return None
    blue, blue_pad, orange, orange_pad = picked
    apart = lambda a, b: max(abs(a[0] - b[0]), abs(a[1] - b[1])) >= 2  # noqa: E731
    if not (apart(blue, orange) and apart(blue_pad, orange)):
        return None
    inside = lambda cell: cell not in walls and 0 <= cell[0] < size and 0 <= cell[1] < size  # noqa: E731
    far_from = lambda other: lambda cell: inside(cell) and max(abs(cell[0] - other[0]), abs(cell[1] - other[1])) >= 2  # noqa: E731
    path_blue = bfs_path(blue, {blue_pad}, far_from(orange))  # orange waits at its start
    if path_blue is None or len(path_blue) < 4:
        return None
    path_orange = bfs_path(orange, {orange_pad}, far_from(blue_pad))  # blue waits on its pad
    if path_orange is None or len(path_orange) < 4:
        return None
    return dict(
        rows=size,
        cols=size,
        background="white",
        static={"walls": sorted(walls), "blue_pad": [blue_pad], "orange_pad": [orange_pad]},
        static_colors={"walls": "black", "blue_pad": "light_blue", "orange_pad": "light_orange"},
        movers={"blue_box": Mover("blue", path_blue), "orange_box": Mover("orange", path_orange, len(path_blue) - 1)},
        forbidden=["walls"],
        targets={"blue_box": "blue_pad", "orange_box": "orange_pad"},
        prompt="Push the blue box onto the light-blue pad, then the orange box onto the light-orange pad. "
        "Boxes move one cell at a time, never touch each other and never enter the black walls.",
    )


def make_key_door(rng: random.Random, size: int) -> dict | None:
    walls = set(border(size, size))
    split = rng.randrange(size // 2 - 1, size // 2 + 2)
    door = (rng.randrange(1, size - 1), split)
    walls |= {(r, split) for r in range(size) if (r, split) != door}
    left = lambda cell: 0 < cell[1] < split and 0 < cell[0] < size - 1  # noqa: E731
    right = lambda cell: split < cell[1] < size - 1 and 0 < cell[0] < size - 1  # noqa: E731
    near_door = set(neighbours(door, diagonal=True))
    picked = _random_free(rng, size, size, walls | near_door | {door}, 2, where=left)
    goal = _random_free(rng, size, size, walls, 1, where=right)
    if picked is None or goal is None:
        return None
    key, start = picked
    goal = goal[0]
    touching_key = set(neighbours(key)) - walls - {key}
    to_key = bfs_path(start, touching_key, lambda cell: left(cell) and cell != key and cell not in near_door)
    if to_key is None or len(to_key) < 3:
        return None
    to_goal = bfs_path(to_key[-1], {goal}, lambda cell: (left(cell) or right(cell) or cell == door) and cell != key)
    if to_goal is None:
        return None
    return dict(
        rows=size,
        cols=size,
        background="white",
        static={"walls": sorted(walls), "door": [door], "key": [key], "goal": [goal]},
        static_colors={"walls": "black", "door": "brown", "key": "yellow", "goal": "green"},
        movers={"agent": Mover("red", to_key + to_goal[1:])},
        forbidden=["walls", "key"],
        targets={"agent": "goal"},
        prompt="Move the red agent to touch the yellow key first, then through the brown door "
        "to the green goal, never entering the black walls.",
    )


@dataclass(frozen=True)
class Family:
    name: str
    make: Callable[..., dict | None]
    splits: dict[str, list[dict]]  # split -> difficulty settings (one drawn per instance)
    description: str


SPLITS = ("train", "test", "ood")
# train and test solutions fit in this many frames (one move per frame); ood ones may need more.
MAX_FRAMES_IN_DISTRIBUTION = 16
FAMILIES: dict[str, Family] = {
    "maze": Family(
        "maze",
        make_maze,
        {"train": [{"n": 3}, {"n": 4}], "test": [{"n": 3}, {"n": 4}], "ood": [{"n": 5}, {"n": 6}]},
        "agent through corridors to a goal; n = maze cells per side ((2n+1)^2 blocks)",
    ),
    "grid_path": Family(
        "grid_path",
        make_grid_path,
        {
            "train": [{"size": 6, "density": 0.2}, {"size": 7, "density": 0.2}],
            "test": [{"size": 6, "density": 0.2}, {"size": 7, "density": 0.2}],
            "ood": [{"size": 10, "density": 0.25}],
        },
        "shortest path of grid steps around grey cells; size, blocked density",
    ),
    "avoid": Family(
        "avoid",
        make_avoid,
        {
            "train": [{"size": 8, "obstacles": 3}],
            "test": [{"size": 8, "obstacles": 3}],
            "ood": [{"size": 11, "obstacles": 6}],
        },
        "reach the goal keeping one cell of clearance from 2x2 obstacles; size, obstacles",
    ),
    "two_targets": Family(
        "two_targets",
        make_two_targets,
        {"train": [{"size": 6}, {"size": 7}], "test": [{"size": 6}, {"size": 7}], "ood": [{"size": 9}]},
        "two boxes to two pads, one after the other; size",
    ),
    "key_door": Family(
        "key_door",
        make_key_door,
        {"train": [{"size": 7}], "test": [{"size": 7}], "ood": [{"size": 10}]},
        "touch the key, then pass the door to the goal; size",
    ),
}


def generate(family: str, index: int, seed: int = 0, split: str = "train") -> Instance:
    """The `index`-th instance of a family's split for a seed (deterministic)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    spec = FAMILIES[family]
    rng = _rng(family, split, index, seed)
    for _ in range(1000):  # rejection sampling: some draws have no valid solution
        settings = rng.choice(spec.splits[split])
        made = spec.make(rng, **settings)
        if made is not None and split != "ood":
            moves = max(m.start_frame + len(m.path) for m in made["movers"].values())
            made = made if moves <= MAX_FRAMES_IN_DISTRIBUTION else None  # train/test fit the default 16 frames
        if made is not None:
            params = {**settings, **made.pop("params", {})}
            return Instance(family=family, split=split, index=index, seed=seed, params=params, **made)
    raise RuntimeError(f"could not generate a {family} instance for seed {seed}, index {index}")
