"""Independent judges of the shape families (sliding, sort_size, cards) in plain numpy (no compiler).

Each reads the layout from the instance's metadata (what the first frame shows: colours, sizes, the
board, the slots, each tile's mark) and finds the shapes in every frame by colour, never using the
ground-truth path. Checks are *logical* (the task's rules: legal moves, one at a time, the goal) or
*rendering* (the picture: every shape present once at its size, steady motion, a fixed backdrop):
`Score.kinds` names each check's kind.

| family | check | kind | passes when |
|---|---|---|---|
| sliding | present | rendering | every frame shows exactly n*n - 1 tile blobs of tile size (a vanished, merged or extra tile fails) |
| sliding | marks | rendering | every tile's mark reads as a distinct tile number |
| sliding | steady | rendering | no tile moves more than 0.6 cells between frames |
| sliding | static | rendering | pixels outside the board keep the background colour (>= 97 %) |
| sliding | on_grid | logical | every tile is on the board with at least one coordinate on a cell centre (it slides along a row or column) |
| sliding | one_cell | logical | between two rests, a tile moves to a neighbouring cell (no jumps over tiles) |
| sliding | one_at_a_time | logical | at most one tile moves between consecutive frames |
| sliding | goal | logical | in the last frame every tile is at its solved cell |
| sort_size | present | rendering | every circle is found exactly once per frame, at its size (overlaps and vanishing fail) |
| sort_size | steady | rendering | no circle moves more than 0.2 of the frame between frames |
| sort_size | apart | logical | circles never touch (centres >= 0.95 x the sum of radii apart) |
| sort_size | one_at_a_time | logical | at most one circle moves between consecutive frames |
| sort_size | goal | logical | in the last frame the circles form one row in the bottom half, sorted left to right by size |
| cards | present | rendering | each card's visible area is at most 1.15 cards (no copies) |
| cards | steady | rendering | a card's centre moves at most 0.12 of the frame between frames |
| cards | static | rendering | the uncovered part of every slot keeps its tint |
| cards | covered | logical | a card that is not fully visible is hidden only by cards drawn above it, where it was last seen |
| cards | goal | logical | in the last frame every card is fully visible inside its slot |

Shapes are found by RGB distance <= 80 to their colour; positions are fractions of the frame and
sizes fractions of its shorter side, so any resolution and frame count works.
"""

from __future__ import annotations

import math

import numpy as np

from ruledsl.tasks.scorers import Score, _frames_text, color_mask

KINDS = {
    "sliding": {
        "present": "rendering",
        "marks": "rendering",
        "steady": "rendering",
        "static": "rendering",
        "on_grid": "logical",
        "one_cell": "logical",
        "one_at_a_time": "logical",
        "goal": "logical",
    },
    "sort_size": {
        "present": "rendering",
        "steady": "rendering",
        "apart": "logical",
        "one_at_a_time": "logical",
        "goal": "logical",
    },
    "cards": {
        "present": "rendering",
        "steady": "rendering",
        "static": "rendering",
        "covered": "logical",
        "goal": "logical",
    },
}


def label(mask: np.ndarray) -> list[np.ndarray]:
    """The 4-connected blobs of a 2-D bool mask, each as an array of (y, x) pixels (in order of first pixel).

    Every pixel takes the smallest index among itself and its 4 neighbours in the mask until nothing
    changes (as many rounds as the longest path inside a blob; blobs here are small shapes)."""
    h, w = mask.shape
    big = h * w
    labels = np.where(mask, np.arange(big).reshape(h, w), big)
    while True:
        padded = np.pad(labels, 1, constant_values=big)
        low = np.minimum.reduce([labels, padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
        low = np.where(mask, low, big)
        if np.array_equal(low, labels):
            break
        labels = low
    ys, xs = np.nonzero(mask)
    ids = labels[ys, xs]
    order = np.argsort(ids, kind="stable")
    ys, xs, ids = ys[order], xs[order], ids[order]
    cuts = np.nonzero(np.diff(ids))[0] + 1
    return [np.stack([y, x], 1) for y, x in zip(np.split(ys, cuts), np.split(xs, cuts))] if len(ids) else []


class _Judge:
    """Collects checks: frame checks score the share of good frames, the others 0 or 1."""

    def __init__(self, family: str, frames: int):
        self.family, self.frames = family, frames
        self.checks: dict[str, float] = {}
        self.reasons: list[str] = []

    def frame_check(self, name: str, bad, words: str) -> None:
        bad = sorted(set(bad))
        self.checks[name] = 1.0 - len(bad) / self.frames
        if bad:
            self.reasons.append(f"{words} at frame{'s' * (len(bad) > 1)} {_frames_text(bad)}")

    def check(self, name: str, ok: bool, words: str) -> None:
        self.checks[name] = float(ok)
        if not ok:
            self.reasons.append(words)

    def score(self) -> Score:
        score = float(np.mean(list(self.checks.values())))
        kinds = {name: KINDS[self.family][name] for name in self.checks}
        return Score(score, all(v == 1.0 for v in self.checks.values()), self.checks, self.reasons, kinds)


def score_shapes(frames: np.ndarray, meta: dict) -> Score:
    """Judge a video (uint8 [T, H, W, 3], any size and length) against a shape instance's metadata."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"expected frames [T, H, W, 3], got {frames.shape}")
    judge = {"sliding": _sliding, "sort_size": _sort_size, "cards": _cards}[meta["family"]]
    return judge(frames, meta)


# ---- sliding ----------------------------------------------------------------------------------


def _sliding(frames: np.ndarray, meta: dict) -> Score:
    T, H, W, _ = frames.shape
    side = min(H, W)
    p = meta["params"]
    n, cell, tile = p["n"], p["cell"], p["tile"]
    bx0, by0, bx1, by1 = p["board"]
    shapes = meta["shapes"]
    first = next(iter(shapes.values()))
    tile_mask = color_mask(frames, first["rgb"])
    mark_mask = color_mask(frames, first["mark_rgb"])
    by_number = {number: name for name, number in p["numbers"].items()}
    expected_area = (tile * side) ** 2
    j = _Judge("sliding", T)
    # Per frame: tile name -> position in cells (row, col), from each blob's box and mark.
    tracks: list[dict[str, tuple[float, float]]] = []
    bad_count, bad_marks = [], []
    for t in range(T):
        found: dict[str, tuple[float, float]] = {}
        blobs = [b for b in label(tile_mask[t]) if len(b) >= 0.3 * expected_area]
        sizes_ok = True
        for blob in blobs:
            y0, x0 = blob.min(0)
            y1, x1 = blob.max(0) + 1
            if not (0.75 < (y1 - y0) / (tile * side) < 1.25 and 0.75 < (x1 - x0) / (tile * side) < 1.25):
                sizes_ok = False  # merged or cut tiles
                continue
            number = 0
            for bit, (qx0, qy0, qx1, qy1) in enumerate(p["quadrants"]):
                # the quadrant's inner half: a pixel of rounding at the mark's edges does not matter
                qy0, qy1 = (3 * qy0 + qy1) / 4, (qy0 + 3 * qy1) / 4
                qx0, qx1 = (3 * qx0 + qx1) / 4, (qx0 + 3 * qx1) / 4
                region = mark_mask[t, int(y0 + qy0 * (y1 - y0)) : math.ceil(y0 + qy1 * (y1 - y0)),
                                   int(x0 + qx0 * (x1 - x0)) : math.ceil(x0 + qx1 * (x1 - x0))]  # fmt: skip
                if region.size and region.mean() > 0.5:
                    number |= 1 << bit
            name = by_number.get(number)
            if name is None or name in found:
                bad_marks.append(t)
                continue
            cx, cy = (x0 + x1) / 2 / W, (y0 + y1) / 2 / H
            found[name] = ((cy - by0) / cell - 0.5, (cx - bx0) / cell - 0.5)
        if len(blobs) != len(shapes) or not sizes_ok:
            bad_count.append(t)
        tracks.append(found)
    j.frame_check("present", bad_count, f"not exactly {len(shapes)} tiles of tile size (vanished, merged or extra)")
    j.frame_check("marks", bad_marks, "a tile's mark is unreadable or repeated")
    jumps, off_grid, two_moving = [], [], []
    for t, found in enumerate(tracks):
        for r, c in found.values():
            on_line = min(abs(r - round(r)), abs(c - round(c))) <= 0.15
            if not (on_line and -0.15 <= r <= n - 0.85 and -0.15 <= c <= n - 0.85):
                off_grid.append(t)
        if t:
            moved = [
                name
                for name, at in found.items()
                if name in tracks[t - 1]
                and max(abs(at[0] - tracks[t - 1][name][0]), abs(at[1] - tracks[t - 1][name][1])) > 0.05
            ]
            if any(
                max(abs(found[m][0] - tracks[t - 1][m][0]), abs(found[m][1] - tracks[t - 1][m][1])) > 0.6 for m in moved
            ):
                jumps.append(t)
            if len(moved) > 1:
                two_moving.append(t)
    j.frame_check("steady", jumps, "a tile jumps more than 0.6 cells")
    j.frame_check("on_grid", off_grid, "a tile is off the board's rows and columns")
    j.frame_check("one_at_a_time", two_moving, "more than one tile moves")
    far = []
    for name in shapes:
        # Rests are read only from frames where every tile is seen: a tile exactly over another (half-way
        # through a jump) would otherwise look like a rest on the cell it jumps over.
        rests = [(t, (round(f[name][0]), round(f[name][1]))) for t, f in enumerate(tracks)
                 if len(f) == len(shapes) and
                 max(abs(f[name][0] - round(f[name][0])), abs(f[name][1] - round(f[name][1]))) <= 0.1]  # fmt: skip
        for (_, a), (t, b) in zip(rests, rests[1:]):
            if abs(a[0] - b[0]) + abs(a[1] - b[1]) > 1:
                far.append((name, t))
    j.check(
        "one_cell",
        not far,
        "a tile moves further than one cell between rests: " + ", ".join(f"{nm} at frame {t}" for nm, t in far[:4]),
    )
    last = tracks[-1]
    wrong = [
        name
        for name, (r, c) in p["solved"].items()
        if name not in last or max(abs(last[name][0] - r), abs(last[name][1] - c)) > 0.2
    ]
    j.check("goal", not wrong, f"tiles not at their solved cells at the end: {', '.join(wrong[:6])}")
    ys = (np.arange(H) + 0.5)[:, None] / H
    xs = (np.arange(W) + 0.5)[None, :] / W
    outside = ~((xs >= bx0) & (xs < bx1) & (ys >= by0) & (ys < by1))
    outside = (
        outside & np.roll(outside, 1, 0) & np.roll(outside, -1, 0) & np.roll(outside, 1, 1) & np.roll(outside, -1, 1)
    )
    backdrop = color_mask(frames, meta["background_rgb"])
    changed = [t for t in range(T) if outside.sum() and (backdrop[t] & outside).sum() / outside.sum() < 0.97]
    j.frame_check("static", changed, "the background outside the board changed")
    return j.score()


# ---- sort_size --------------------------------------------------------------------------------


def _find_circles(frames: np.ndarray, meta: dict) -> list[dict[str, tuple[float, float]]]:
    """Per frame: circle name -> centre (x, y), for blobs whose colour and area identify exactly one circle."""
    T, H, W, _ = frames.shape
    side = min(H, W)
    shapes = meta["shapes"]
    masks = {tuple(s["rgb"]): color_mask(frames, s["rgb"]) for s in shapes.values()}
    out = []
    for t in range(T):
        found: dict[str, tuple[float, float]] = {}
        seen: set[str] = set()
        for rgb, mask in masks.items():
            for blob in label(mask[t]):
                candidates = [n for n, s in shapes.items() if tuple(s["rgb"]) == rgb]
                areas = {n: math.pi * (shapes[n]["size"][0] * side / 2) ** 2 for n in candidates}
                name = min(candidates, key=lambda n: abs(math.log(len(blob) / areas[n])))
                if not 0.6 <= len(blob) / areas[name] <= 1.4:
                    continue  # noise, or two circles merged, or a circle partly hidden
                if name in seen:
                    found.pop(name, None)  # twice: neither copy counts
                    continue
                seen.add(name)
                y, x = blob.mean(0) + 0.5
                found[name] = (x / W, y / H)
        out.append(found)
    return out


def _sort_size(frames: np.ndarray, meta: dict) -> Score:
    T, H, W, _ = frames.shape
    side = min(H, W)
    shapes = meta["shapes"]
    radius = {n: s["size"][0] / 2 for n, s in shapes.items()}
    tracks = _find_circles(frames, meta)
    j = _Judge("sort_size", T)
    j.frame_check("present", [t for t, f in enumerate(tracks) if len(f) != len(shapes)], "a circle is missing, "
                  "overlapped or not at its size")  # fmt: skip
    jumps, touching, two_moving = [], [], []
    for t, found in enumerate(tracks):
        pixels = {n: (x * W, y * H) for n, (x, y) in found.items()}
        for a in pixels:
            for b in pixels:
                if a < b and math.dist(pixels[a], pixels[b]) < 0.95 * (radius[a] + radius[b]) * side:
                    touching.append(t)
        if t:
            before = {n: (x * W, y * H) for n, (x, y) in tracks[t - 1].items()}
            moved = [n for n in pixels if n in before and math.dist(pixels[n], before[n]) > 0.01 * side]
            if any(math.dist(pixels[n], before[n]) > 0.2 * max(H, W) for n in moved):
                jumps.append(t)
            if len(moved) > 1:
                two_moving.append(t)
    j.frame_check("steady", jumps, "a circle jumps more than 0.2 of the frame")
    j.frame_check("apart", touching, "two circles touch or overlap")
    j.frame_check("one_at_a_time", two_moving, "more than one circle moves")
    last = tracks[-1]
    if len(last) != len(shapes):
        j.check("goal", False, "not every circle is visible at the end")
    else:
        by_x = sorted(last, key=lambda n: last[n][0])
        ys = [last[n][1] for n in by_x]
        problems = []
        if not all(radius[a] < radius[b] for a, b in zip(by_x, by_x[1:])):
            problems.append("the circles are not sorted by size from left to right at the end")
        if not (max(ys) - min(ys) <= 0.05 and min(ys) > 0.5):
            problems.append("the circles do not end in one row in the bottom half")
        j.check("goal", not problems, "; ".join(problems))
    return j.score()


# ---- cards ------------------------------------------------------------------------------------


def _cards(frames: np.ndarray, meta: dict) -> Score:
    T, H, W, _ = frames.shape
    side = min(H, W)
    shapes = meta["shapes"]
    names = list(shapes)
    masks = {n: color_mask(frames, shapes[n]["rgb"]) for n in names}
    # Pixel counts of a card, with a pixel of rounding either way on each side (cards sit anywhere).
    dims = {n: (shapes[n]["size"][0] * side, shapes[n]["size"][1] * side) for n in names}
    least = {n: max(w - 2.5, 0.5) * max(h - 2.5, 0.5) for n, (w, h) in dims.items()}  # mp4 blurs edges
    most = {n: (w + 1) * (h + 1) for n, (w, h) in dims.items()}
    ys = (np.arange(H) + 0.5)[:, None]
    xs = (np.arange(W) + 0.5)[None, :]

    def rect(n: str, centre) -> np.ndarray:
        """The card's pixels less 1.5 at each side (its edges are uncertain by a pixel or so)."""
        w, h = shapes[n]["size"][0] * side - 3, shapes[n]["size"][1] * side - 3
        return (np.abs(xs - centre[0]) < w / 2) & (np.abs(ys - centre[1]) < h / 2)

    j = _Judge("cards", T)
    centres: dict[str, list] = {n: [] for n in names}  # pixel centre per frame (last seen while hidden)
    visible: dict[str, list[bool]] = {n: [] for n in names}
    too_big, uncovered = [], []
    for t in range(T):
        for n in names:
            area = masks[n][t].sum()
            if area > 1.15 * most[n]:
                too_big.append(t)
            # The card's box from the rows and columns it fills at least 30 % of (stray pixels of its
            # colour elsewhere, as lossy video makes at edges, do not stretch it); whole when the box has
            # the card's size and is filled.
            w, h = dims[n]
            cols = np.nonzero(masks[n][t].sum(0) >= 0.3 * h)[0]
            rows = np.nonzero(masks[n][t].sum(1) >= 0.3 * w)[0]
            whole = bool(
                area >= least[n]
                and len(cols)
                and len(rows)
                and -max(3, 0.2 * w) <= cols[-1] + 1 - cols[0] - w <= max(4, 0.35 * w)  # lossy video smears
                and -max(3, 0.2 * h) <= rows[-1] + 1 - rows[0] - h <= max(4, 0.35 * h)
            )
            if whole:
                centres[n].append(((cols[0] + cols[-1] + 1) / 2, (rows[0] + rows[-1] + 1) / 2))
            else:
                centres[n].append(centres[n][-1] if centres[n] and centres[n][-1] is not None else None)
            visible[n].append(bool(whole))
        for n in names:
            if visible[n][t]:
                continue
            at = centres[n][t]
            if at is None:
                uncovered.append(t)
                continue
            box = rect(n, at)
            above = np.zeros((H, W), bool)
            for o in names:
                if shapes[o]["z"] > shapes[n]["z"]:
                    above |= masks[o][t]
            seen = masks[n][t] | above
            seen = seen | np.roll(seen, 1, 0) | np.roll(seen, -1, 0)  # the seam between two colours blends
            seen = seen | np.roll(seen, 1, 1) | np.roll(seen, -1, 1)
            if (box & seen).sum() < 0.85 * box.sum():
                uncovered.append(t)
    j.frame_check("present", too_big, "a card covers more than 1.15 cards (a copy)")
    j.frame_check("covered", uncovered, "a card is hidden (or gone) where no card above it covers it")
    jumps = [
        t
        for n in names
        for t in range(1, T)
        if centres[n][t] is not None
        and centres[n][t - 1] is not None
        and math.dist(centres[n][t], centres[n][t - 1]) > 0.12 * max(H, W)
    ]
    j.frame_check("steady", jumps, "a card jumps more than 0.12 of the frame")
    slots = {n: meta["params"]["slots"][n] for n in names}
    statics = {s["role"]: s for s in meta["statics"]}
    any_card = np.zeros((T, H, W), bool)
    for n in names:
        any_card |= masks[n]
    faded = []
    for n in names:
        x0, y0, x1, y1 = slots[n]
        inner = (xs >= x0 * W + 1) & (xs < x1 * W - 1) & (ys >= y0 * H + 1) & (ys < y1 * H - 1)
        tint = color_mask(frames, statics[f"slot:{n}"]["rgb"])
        for t in range(T):
            near_card = any_card[t]
            for _ in range(2):  # two pixels around a card: lossy video blends the edge
                near_card = near_card | np.roll(near_card, 1, 0) | np.roll(near_card, -1, 0)
                near_card = near_card | np.roll(near_card, 1, 1) | np.roll(near_card, -1, 1)
            free = inner & ~near_card
            if free.sum() >= 4 and (free & tint[t]).sum() / free.sum() < 0.8:
                faded.append(t)
    j.frame_check("static", faded, "a slot's uncovered part lost its tint")
    outside = []
    for n in names:
        x0, y0, x1, y1 = slots[n]
        at = centres[n][-1]
        w, h = shapes[n]["size"][0] * side, shapes[n]["size"][1] * side
        inside = (
            at is not None
            and visible[n][-1]
            and at[0] - w / 2 >= x0 * W - 1
            and at[0] + w / 2 <= x1 * W + 1
            and at[1] - h / 2 >= y0 * H - 1
            and at[1] + h / 2 <= y1 * H + 1
        )
        if not inside:
            outside.append(n)
    j.check("goal", not outside, f"not fully visible inside their slots at the end: {', '.join(outside)}")
    return j.score()
