"""Seeded generators and corruptions of the shape families (`shapes.py`): sliding, sort_size, cards.

- `sliding`: an n x n sliding-number puzzle. Every tile has one colour (orange) and a distinct mark of a
  second colour (black squares in its quadrants: tile i shows the binary digits of i), so a tile's
  identity is its mark, not its colour. The start is k random moves of the blank from the solved board;
  the solution reverses them, one tile sliding into the blank at a time (3 frames per move).
- `sort_size`: 3-6 circles of distinct radii (each >= 1.3 x the next smaller), some sharing a colour, in a
  shuffled row at the top; one at a time they move into a row at the bottom ordered left to right by
  increasing size, never touching (a straight line, or down-across-down through the empty middle lane).
- `cards`: 2-4 cards (rectangles, distinct colours) move one at a time onto their slots (tinted areas a
  little larger than the card). The first card is large and slides across the second, smaller one, which
  is fully hidden for a few frames; draw order is fixed and a moving card is always above every card it
  passes.

Generation is deterministic in (family, split, seed, index) as for the grid families; `ood` is harder
(a 4 x 4 board and more moves, more circles, more cards).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from ruledsl.tasks.families import SPLITS, _rng
from ruledsl.tasks.shapes import Point, Shape, ShapeInstance, ShapePlan, Static, shape_solution_plan

SLIDE_FRAMES = 3  # frames per sliding move
HOLD_START, HOLD_END = 1, 2  # frames without motion before the first and after the last move


def _segment(a: Point, b: Point, speed: float) -> list[Point]:
    """Points after `a` up to `b` (included) at most `speed` apart, evenly spaced."""
    steps = max(1, math.ceil(math.dist(a, b) / speed - 1e-9))
    return [(a[0] + (b[0] - a[0]) * i / steps, a[1] + (b[1] - a[1]) * i / steps) for i in range(1, steps + 1)]


def _schedule(starts: dict[str, Point], moves: list[tuple[str, list[Point]]]) -> dict[str, list[Point]]:
    """One centre per shape per frame: hold, then each move's points in turn (one shape at a time), hold."""
    current = dict(starts)
    path = {name: [p] * HOLD_START for name, p in starts.items()}
    for mover, points in moves:
        for point in points:
            current[mover] = point
            for name in path:
                path[name].append(current[name])
    for name in path:
        path[name] += [current[name]] * HOLD_END
    return path


# ---- sliding ----------------------------------------------------------------------------------

BOARD = (0.1, 0.1, 0.9, 0.9)
TILE_FILL = 0.86  # tile side / cell side
QUADRANTS = ((0.16, 0.16, 0.42, 0.42), (0.58, 0.16, 0.84, 0.42), (0.16, 0.58, 0.42, 0.84), (0.58, 0.58, 0.84, 0.84))


def tile_marks(number: int) -> list[tuple[float, float, float, float]]:
    """The mark of tile `number`: a square in quadrant k (reading order) for each set bit k."""
    return [box for bit, box in enumerate(QUADRANTS) if number >> bit & 1]


def make_sliding(rng: random.Random, n: int, moves: tuple[int, int]) -> dict | None:
    cell = (BOARD[2] - BOARD[0]) / n
    centre = lambda rc: (BOARD[0] + (rc[1] + 0.5) * cell, BOARD[1] + (rc[0] + 0.5) * cell)  # noqa: E731
    names = [f"tile{i}" for i in range(1, n * n)]
    state = {(i // n, i % n): names[i] for i in range(n * n - 1)}  # cell -> tile; solved
    blank = (n - 1, n - 1)
    seen = {frozenset(state.items())}
    scramble = []  # (tile, from, to) as the blank walks
    for _ in range(rng.randint(*moves)):
        options = []
        for dr, dc in ((0, 1), (1, 0), (0, -1), (-1, 0)):
            nxt = (blank[0] + dr, blank[1] + dc)
            if 0 <= nxt[0] < n and 0 <= nxt[1] < n:
                after = dict(state)
                after[blank] = after.pop(nxt)
                if frozenset(after.items()) not in seen:
                    options.append((nxt, after))
        if not options:
            return None
        nxt, state = rng.choice(options)
        seen.add(frozenset(state.items()))
        scramble.append((state[blank], nxt, blank))
        blank = nxt
    solution = [(tile, to, frm) for tile, frm, to in reversed(scramble)]
    # At least one tile follows another in a line (the blank walked straight twice): the `two-at-once`
    # corruption moves such a pair together without the tiles touching.
    if not any(_sub(b[1], a[1]) == _sub(a[1], a[2]) for a, b in zip(solution, solution[1:])):
        return None
    starts = {tile: centre(rc) for rc, tile in state.items()}
    path = _schedule(
        starts, [(tile, _segment(centre(a), centre(b), cell / SLIDE_FRAMES + 1e-9)) for tile, a, b in solution]
    )
    size = TILE_FILL * cell
    shapes = {
        name: Shape("rect", "orange", (size, size), 0, tile_marks(i + 1), "black") for i, name in enumerate(names)
    }
    return dict(
        background="white",
        statics=[Static("board", BOARD, "light_grey")],
        shapes=shapes,
        path=path,
        prompt="Solve the sliding puzzle: slide the orange tiles, one at a time, into the empty cell until every "
        "tile is in order (tile i, marked with the binary digits of i as black squares, at position i in "
        "reading order; the empty cell bottom-right). A tile moves one cell per move, only into the empty cell.",
        params={
            "n": n,
            "board": list(BOARD),
            "cell": cell,
            "tile": size,
            "quadrants": [list(q) for q in QUADRANTS],
            "numbers": {name: i + 1 for i, name in enumerate(names)},
            "solved": {name: [i // n, i % n] for i, name in enumerate(names)},
            "start": {tile: list(rc) for rc, tile in state.items()},
            "solution": [[tile, list(a), list(b)] for tile, a, b in solution],
        },
        program_params={"cell": cell},
    )


# ---- sort_size --------------------------------------------------------------------------------

TOP_ROW, MIDDLE_LANE, BOTTOM_ROW = 0.22, 0.5, 0.78
SORT_SPEED = 0.1  # frame fractions per frame
SORT_COLORS = ("blue", "orange", "purple", "teal")


def _pack(radii: list[float], gap: float) -> list[float]:
    """Centres (x) of circles of these radii side by side, `gap` apart, centred in the frame."""
    total = 2 * sum(radii) + gap * (len(radii) - 1)
    xs, x = [], 0.5 - total / 2
    for r in radii:
        xs.append(x + r)
        x += 2 * r + gap
    return xs


def _collides(point: Point, radius: float, others: list[tuple[Point, float]], clearance: float) -> bool:
    return any(math.dist(point, q) < radius + r + clearance for q, r in others)


def sort_paths(
    radii: dict[str, float], starts: dict[str, Point], targets: dict[str, Point], order: list[str]
) -> dict[str, list[Point]] | None:
    """Move the circles in `order`, each on a straight line if it passes clear of the others, else down to
    the middle lane, across, and down; None if even that would touch one."""
    current = dict(starts)
    moves = []
    for name in order:
        others = [(current[o], radii[o]) for o in radii if o != name]
        a, b = current[name], targets[name]
        routes = [[a, b], [a, (a[0], MIDDLE_LANE), (b[0], MIDDLE_LANE), b]]
        # A straight line must pass others with room to spare (3 % of the frame: a pixel or two apart looks
        # like touching at small sizes); the lane route passes the rows at least 1 % apart.
        for route, clearance in zip(routes, (0.03, 0.01)):
            points = [p for u, v in zip(route, route[1:]) for p in _segment(u, v, SORT_SPEED)]
            fine = [p for u, v in zip(route, route[1:]) for p in _segment(u, v, 0.005)]
            if not any(_collides(p, radii[name], others, clearance) for p in fine):
                break
        else:
            return None
        moves.append((name, points))
        current[name] = b
    return _schedule(starts, moves)


def make_sort_size(rng: random.Random, count: int, smallest: tuple[float, float], gap: float) -> dict | None:
    radii_sorted = [rng.uniform(*smallest)]
    for _ in range(count - 1):
        radii_sorted.append(radii_sorted[-1] * rng.uniform(1.3, 1.4))
    names = [f"circle{i}" for i in range(1, count + 1)]  # by increasing size
    radii = dict(zip(names, radii_sorted))
    start_order = list(names)
    while start_order == names or start_order[-1] == names[-1]:  # shuffled; the largest not already last
        rng.shuffle(start_order)
    if 2 * sum(radii_sorted) + gap * (count - 1) > 0.94:
        return None
    colors = [rng.choice(SORT_COLORS[:3]) for _ in names]
    if len(set(colors)) == count:
        colors[rng.randrange(1, count)] = colors[0]  # some circles share a colour
    starts = dict(zip(start_order, ((x, TOP_ROW) for x in _pack([radii[n] for n in start_order], gap))))
    targets = dict(zip(names, ((x, BOTTOM_ROW) for x in _pack(radii_sorted, gap))))
    order = list(names)
    rng.shuffle(order)
    path = sort_paths(radii, starts, targets, order)
    if path is None:
        return None
    return dict(
        background="white",
        statics=[],
        shapes={name: Shape("circle", c, (2 * radii[name], 2 * radii[name])) for name, c in zip(names, colors)},
        path=path,
        prompt="Move the circles, one at a time and never touching each other, from the top row into a row at "
        "the bottom, ordered from the smallest on the left to the largest on the right.",
        params={
            "radii": radii,
            "gap": gap,
            "start_order": start_order,
            "move_order": order,
            "rows": {"top": TOP_ROW, "bottom": BOTTOM_ROW},
        },
    )


# ---- cards ------------------------------------------------------------------------------------

CARD_COLORS = {"red": "tint_red", "blue": "tint_blue", "green": "tint_green", "purple": "tint_purple"}
SLOT_PAD = 0.015
COVER_SPEED, CARD_SPEED = 0.045, 0.05


def _box(centre: Point, size: tuple[float, float], pad: float = 0.0) -> tuple[float, float, float, float]:
    return (centre[0] - size[0] / 2 - pad, centre[1] - size[1] / 2 - pad, centre[0] + size[0] / 2 + pad,
            centre[1] + size[1] / 2 + pad)  # fmt: skip


def _boxes_overlap(a, b, margin: float = 0.0) -> bool:
    return a[0] < b[2] + margin and b[0] < a[2] + margin and a[1] < b[3] + margin and b[1] < a[3] + margin


def _inside_frame(box) -> bool:
    return box[0] >= 0.02 and box[1] >= 0.02 and box[2] <= 0.98 and box[3] <= 0.98


def make_cards(rng: random.Random, count: int) -> dict | None:
    names = [f"card{i}" for i in range(1, count + 1)]
    colors = dict(zip(names, rng.sample(sorted(CARD_COLORS), count)))
    sizes = {names[0]: (0.28, 0.28), names[1]: (0.14, 0.18)}
    for name in names[2:]:
        sizes[name] = (round(rng.uniform(0.12, 0.18), 3), round(rng.uniform(0.12, 0.18), 3))
    row = rng.uniform(0.18, 0.26)
    starts = {names[0]: (0.17, row), names[1]: (rng.uniform(0.45, 0.55), row)}
    targets = {names[0]: (0.83, row)}
    boxes = [_box(starts[names[0]], sizes[names[0]]), _box(starts[names[1]], sizes[names[1]]),
             _box(targets[names[0]], sizes[names[0]], SLOT_PAD)]  # fmt: skip

    def place(name: str) -> Point | None:
        for _ in range(200):
            at = (rng.uniform(0.1, 0.9), rng.uniform(0.5, 0.9))
            box = _box(at, sizes[name], SLOT_PAD)
            if _inside_frame(box) and not any(_boxes_overlap(box, other, 0.02) for other in boxes):
                boxes.append(box)
                return at
        return None

    for name in names[1:]:
        target = place(name)
        if target is None:
            return None
        targets[name] = target
    for name in names[2:]:
        start = place(name)
        if start is None:
            return None
        starts[name] = start
    later = names[1:]
    rng.shuffle(later)
    order = [names[0], *later]  # the big card crosses the small one first
    current = dict(starts)
    moves, above = [], set()  # above: (upper, lower) pairs a moving card needs
    for name in order:
        points = _segment(current[name], targets[name], COVER_SPEED if name == names[0] else CARD_SPEED)
        for other in names:
            if other != name and any(
                _boxes_overlap(_box(p, sizes[name]), _box(current[other], sizes[other])) for p in points
            ):
                above.add((name, other))
        moves.append((name, points))
        current[name] = targets[name]
    z = _draw_order(names, above, rng)
    if z is None:
        return None
    path = _schedule(starts, moves)
    hidden = [
        t
        for t in range(len(path[names[0]]))
        if _contains(_box(path[names[0]][t], sizes[names[0]]), _box(path[names[1]][t], sizes[names[1]]))
    ]
    if len(hidden) < 2:
        return None
    return dict(
        background="white",
        statics=[Static(f"slot:{n}", _box(targets[n], sizes[n], SLOT_PAD), CARD_COLORS[colors[n]]) for n in names],
        shapes={n: Shape("rect", colors[n], sizes[n], z[n]) for n in names},
        path=path,
        prompt="Move each card, one at a time, onto the tinted slot of its colour. A moving card passes over "
        "the cards it crosses, hiding them; a hidden card stays where it is, and the stacking order never changes.",
        params={
            "slots": {n: list(_box(targets[n], sizes[n], SLOT_PAD)) for n in names},
            "move_order": order,
            "hidden_frames": hidden,
        },
    )


def _contains(outer, inner) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and outer[2] >= inner[2] and outer[3] >= inner[3]


def _draw_order(names: list[str], above: set[tuple[str, str]], rng: random.Random) -> dict[str, int] | None:
    """A draw order (z) with every (upper, lower) pair in `above` respected, ties broken at random."""
    remaining, z = list(names), dict[str, int]()
    while remaining:
        free = [n for n in remaining if not any(lower == n and upper in remaining for upper, lower in above)]
        if not free:
            return None  # a cycle: two cards would each have to pass over the other
        pick = rng.choice(free)  # nothing left must be above it: the highest free draw position
        z[pick] = len(names) - 1 - len(z)
        remaining.remove(pick)
    return z


# ---- registry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShapeFamily:
    name: str
    make: Callable[..., dict | None]
    splits: dict[str, list[dict]]
    description: str


SHAPE_FAMILIES: dict[str, ShapeFamily] = {
    "sliding": ShapeFamily(
        "sliding",
        make_sliding,
        {
            "train": [{"n": 3, "moves": (4, 6)}],
            "test": [{"n": 3, "moves": (4, 6)}],
            "ood": [{"n": 4, "moves": (8, 10)}],
        },
        "sliding-number puzzle, one tile into the blank at a time; n x n board, scramble moves",
    ),
    "sort_size": ShapeFamily(
        "sort_size",
        make_sort_size,
        {
            "train": [{"count": c, "smallest": (0.036, 0.042), "gap": 0.04} for c in (3, 4, 5)],
            "test": [{"count": c, "smallest": (0.036, 0.042), "gap": 0.04} for c in (3, 4, 5)],
            "ood": [{"count": 6, "smallest": (0.028, 0.031), "gap": 0.03}],
        },
        "circles into a bottom row by increasing size, one at a time; count, smallest radius, gap",
    ),
    "cards": ShapeFamily(
        "cards",
        make_cards,
        {"train": [{"count": 2}, {"count": 3}], "test": [{"count": 2}, {"count": 3}], "ood": [{"count": 4}]},
        "cards onto their slots, one passing over (hiding) another; count",
    ),
}
SHAPE_DEFAULT_SIZE = (96, 96)


def generate_shapes(family: str, index: int, seed: int = 0, split: str = "train") -> ShapeInstance:
    """The `index`-th instance of a shape family's split for a seed (deterministic)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    spec = SHAPE_FAMILIES[family]
    rng = _rng(family, split, index, seed)
    for _ in range(1000):
        settings = rng.choice(spec.splits[split])
        made = spec.make(rng, **settings)
        if made is not None:
            params = {**{k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}, **made.pop("params")}
            return ShapeInstance(family=family, split=split, index=index, seed=seed, params=params, **made)
    raise RuntimeError(f"could not generate a {family} instance for seed {seed}, index {index}")


# ---- corruptions ------------------------------------------------------------------------------

SHAPE_KINDS: dict[str, dict[str, str]] = {
    "sliding": {
        "frozen": "nothing moves",
        "vanish": "the tile of the middle move disappears for the middle third of the video",
        "wrong-end": "the last move is never made",
        "teleport": "the board waits, then every tile jumps to its solved place in one frame",
        "jump": "an illegal shortcut: a tile two cells from the blank slides through the tile between "
        "(diagonally past two tiles when the blank is in the middle)",
        "two-at-once": "two consecutive moves happen at the same time (the end is solved)",
    },
    "sort_size": {
        "frozen": "nothing moves",
        "vanish": "the circle moving in the middle of the video disappears for the middle third",
        "wrong-end": "two neighbours of the bottom row end swapped (not sorted)",
        "teleport": "the circles wait, then all jump to the bottom row in one frame",
        "pass-through": "an illegal shortcut: the first circle slides along the top row through the others",
        "resize": "the circles swap sizes in place (the row becomes sorted), then move straight down",
    },
    "cards": {
        "frozen": "nothing moves",
        "vanish": "a card disappears for frames where nothing covers it",
        "wrong-end": "the last card stops half-way to its slot",
        "teleport": "an illegal shortcut: the cards wait, then all jump onto their slots in one frame",
        "z-swap": "the hidden card is drawn above the big card while it passes (the stacking order changes)",
    },
}


def corrupt_shapes(instance: ShapeInstance, kind: str, frames: int | None = None) -> ShapePlan:
    kinds = SHAPE_KINDS[instance.family]
    if kind not in kinds:
        raise ValueError(f"unknown corruption {kind!r} for {instance.family}; choose from {', '.join(kinds)}")
    plan = shape_solution_plan(instance, frames)
    total = plan.frames
    names = list(instance.shapes)
    if kind == "frozen":
        for name in names:
            plan.positions[name] = [plan.positions[name][0]] * total
    elif kind == "teleport":
        for name in names:
            first, last = plan.positions[name][0], plan.positions[name][-1]
            plan.positions[name] = [first if t < total // 2 else last for t in range(total)]
    elif kind == "vanish":
        name = _moving_at(instance, total // 2)
        frames_gone = list(range(total // 3, 2 * total // 3))
        if instance.family == "cards":
            frames_gone = [t for t in frames_gone if not _covered(instance, plan, name, t)]
        for t in frames_gone:
            plan.positions[name][t] = None
    elif instance.family == "sliding":
        _corrupt_sliding(instance, kind, plan)
    elif instance.family == "sort_size":
        _corrupt_sort(instance, kind, plan)
    else:
        _corrupt_cards(instance, kind, plan)
    return plan


def _moving_at(instance: ShapeInstance, t: int) -> str:
    """The shape that moves nearest to frame t."""
    best = None
    for name, points in instance.path.items():
        for u in range(1, len(points)):
            if points[u] != points[u - 1] and (best is None or abs(u - t) < best[0]):
                best = (abs(u - t), name)
    assert best is not None
    return best[1]


def _covered(instance: ShapeInstance, plan: ShapePlan, name: str, t: int) -> bool:
    at = plan.positions[name][t]
    mine = _box(at, instance.shapes[name].size) if at else None
    return mine is not None and any(
        plan.z[o][t] > plan.z[name][t]
        and (p := plan.positions[o][t]) is not None
        and _boxes_overlap(_box(p, instance.shapes[o].size), mine)
        for o in instance.shapes
        if o != name
    )


def _replace_path(plan: ShapePlan, path: dict[str, list[Point]]) -> None:
    """Put a re-planned ground truth into the plan, held to the plan's length (or longer if it needs more)."""
    total = max(plan.frames, len(next(iter(path.values()))))
    for name, points in path.items():
        plan.positions[name] = [points[min(t, len(points) - 1)] for t in range(total)]
        plan.sizes[name] = _held(plan.sizes[name], total)
        plan.colors[name] = _held(plan.colors[name], total)
        plan.z[name] = _held(plan.z[name], total)


def _held(values: list, total: int) -> list:
    """`values` cut or held on its last item to `total` items."""
    return [values[min(t, len(values) - 1)] for t in range(total)]


def _corrupt_sliding(instance: ShapeInstance, kind: str, plan: ShapePlan) -> None:
    p = instance.params
    n, cell = p["n"], p["cell"]
    centre = lambda rc: (BOARD[0] + (rc[1] + 0.5) * cell, BOARD[1] + (rc[0] + 0.5) * cell)  # noqa: E731
    starts = {tile: centre(rc) for tile, rc in p["start"].items()}
    solution = [(tile, tuple(a), tuple(b)) for tile, a, b in p["solution"]]
    step = cell / SLIDE_FRAMES + 1e-9
    if kind == "wrong-end":
        _replace_path(plan, _schedule(starts, [(t, _segment(centre(a), centre(b), step)) for t, a, b in solution[:-1]]))
        return
    if kind == "jump":
        occupied = {tuple(rc): tile for tile, rc in p["start"].items()}
        blank = next((r, c) for r in range(n) for c in range(n) if (r, c) not in occupied)
        # two cells in a line (through a tile); the blank in the middle of the board: a diagonal neighbour
        for dr, dc in ((0, 2), (2, 0), (0, -2), (-2, 0), (1, 1), (1, -1), (-1, 1), (-1, -1)):
            far = (blank[0] + dr, blank[1] + dc)
            if far in occupied:
                tile = occupied[far]
                _replace_path(plan, _schedule(starts, [(tile, _segment(centre(far), centre(blank), step))]))
                plan.z[tile] = [1] * plan.frames  # drawn over the tile it passes through
                return
        raise AssertionError("every cell of an n >= 3 board has a tile two cells away or diagonally next to it")
    # two-at-once: moves i and i + 1 at the same time, a pair in a line (the tiles never touch)
    pairs = range(len(solution) - 1)
    inline = [i for i in pairs if _sub(solution[i + 1][1], solution[i][1]) == _sub(solution[i][1], solution[i][2])]
    i = inline[0]  # there is one (make_sliding)
    moves = [(t, _segment(centre(a), centre(b), step)) for t, a, b in solution]
    current = dict(starts)
    path = {name: [pt] * HOLD_START for name, pt in starts.items()}
    for k, move in enumerate(moves):
        if k == i + 1:
            continue
        together = [move, moves[i + 1]] if k == i else [move]
        for f in range(len(move[1])):
            for name, points in together:
                current[name] = points[f]
            for name in path:
                path[name].append(current[name])
    for name in path:
        path[name] += [current[name]] * HOLD_END
    _replace_path(plan, path)


def _sub(a, b):
    return (a[0] - b[0], a[1] - b[1])


def _corrupt_sort(instance: ShapeInstance, kind: str, plan: ShapePlan) -> None:
    p = instance.params
    radii = {name: float(r) for name, r in p["radii"].items()}
    names = sorted(radii, key=radii.get)  # type: ignore[arg-type]
    gap = p["gap"]
    starts = {name: instance.path[name][0] for name in names}
    if kind == "wrong-end":
        order = list(names)
        k = len(order) // 2
        order[k - 1], order[k] = order[k], order[k - 1]
        targets = dict(zip(order, ((x, BOTTOM_ROW) for x in _pack([radii[n] for n in order], gap))))
        path = sort_paths(radii, starts, targets, p["move_order"])
        assert path is not None  # the middle lane is always clear
        _replace_path(plan, path)
    elif kind == "pass-through":
        targets = {name: instance.path[name][-1] for name in names}
        mover = names[-1]  # the largest: not last in the top row, so it slides through a neighbour
        others = [n for n in p["move_order"] if n != mover]
        top = (targets[mover][0], TOP_ROW)
        moves = [(mover, _segment(starts[mover], top, SORT_SPEED) + _segment(top, targets[mover], SORT_SPEED))]
        rest = sort_paths(radii, {**starts, mover: targets[mover]}, targets, others)
        assert rest is not None
        tail = {name: points[HOLD_START:] for name, points in rest.items()}
        path = _schedule(starts, moves)
        for name in path:
            path[name] = path[name][:-HOLD_END] + tail[name]
        _replace_path(plan, path)
    else:  # resize: at half time the sizes are re-dealt in place (sorted), then each circle goes straight down
        half = plan.frames // 2
        order = p["start_order"]  # left to right
        dealt = dict(zip(order, names))  # the k-th place from the left gets the k-th smallest size
        row = dict(zip(order, _pack([radii[dealt[n]] for n in order], gap)))
        descents = [(name, _segment((row[name], TOP_ROW), (row[name], BOTTOM_ROW), SORT_SPEED)) for name in order]
        after = _schedule({name: (row[name], TOP_ROW) for name in order}, descents)
        total = half + len(after[names[0]])
        for name in names:
            plan.positions[name] = [starts[name]] * half + after[name]  # type: ignore[assignment]
            resized = (2 * radii[dealt[name]], 2 * radii[dealt[name]])
            plan.sizes[name] = [instance.shapes[name].size] * half + [resized] * (total - half)
            plan.colors[name] = [instance.shapes[name].color] * total
            plan.z[name] = [0] * total


def _corrupt_cards(instance: ShapeInstance, kind: str, plan: ShapePlan) -> None:
    names = list(instance.shapes)
    if kind == "wrong-end":
        last = instance.params["move_order"][-1]
        points = plan.positions[last]
        final = points[-1]
        first_move = next(t for t in range(1, len(points)) if points[t] != points[t - 1])
        moves = [t for t in range(len(points)) if t >= first_move and points[t] != final]
        halfway = moves[len(moves) // 2] if moves else first_move
        plan.positions[last] = [p if t < halfway else points[halfway] for t, p in enumerate(points)]
    else:  # z-swap: the small card is drawn on top while the big one passes over it
        big, small = names[0], names[1]
        for t in instance.params["hidden_frames"]:
            for u in range(max(0, t - 3), min(plan.frames, t + 4)):
                plan.z[small][u] = plan.z[big][u] + 1
