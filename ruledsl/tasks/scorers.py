"""Independent rule-based judges, one per family, in plain numpy (they never import the compiler).

A scorer reads the layout from the instance's metadata (the model is given the first
frame, so the layout is known), finds each mover in every frame by colour, and checks:

| check | passes when (thresholds below) |
|---|---|
| present | in every frame the mover covers >= PRESENT_AREA of a cell in its colour (vanishing and colour changes fail) |
| single | in every frame at most one blob of its colour is >= PIECE_AREA of a cell (duplicates and stray pieces fail) |
| size | in every frame the mover covers at most MAX_AREA cells (a copy touching the original makes one big blob) |
| legal | in every frame at most FORBIDDEN_OVERLAP of the mover lies on forbidden cells (walls, blocked cells, obstacles and, for `avoid`, the 8 cells around each obstacle cell; for `key_door` the key cell) |
| steady | its centroid moves at most MAX_STEP cells between consecutive frames (no teleports) |
| goal | in the last frame >= GOAL_OVERLAP of the mover lies on its target cell |
| static | in every frame at most STATIC_CHANGE of each forbidden region's visible interior pixels (border pixels are ignored: lossy video smears them) changed colour |
| optimal (grid_path) | the agent visits exactly `shortest` + 1 distinct cells in order (a shortest path) |
| key_first (key_door) | the agent is next to the key (8-neighbourhood) before it is next to or on the door |
| apart (two_targets) | the boxes' cells are never equal or 8-adjacent |

Frame checks score the fraction of good frames, the others 0 or 1; the score is their mean
and `passed` means every check is perfect. Colours are matched by RGB distance, sizes are
in cells, so any resolution and frame count works.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

COLOR_DISTANCE = 80.0  # RGB Euclidean distance (0-255) within which a pixel has an entity's colour
PRESENT_AREA = 0.4  # of a cell
PIECE_AREA = 0.2  # of a cell: smaller blobs are noise
MAX_AREA = 1.6  # cells
FORBIDDEN_OVERLAP = 0.25  # of the mover's pixels
MAX_STEP = 1.5  # cells per frame
GOAL_OVERLAP = 0.5  # of the mover's pixels, last frame
STATIC_CHANGE = 0.1  # of a static region's visible pixels


@dataclass
class Score:
    score: float
    passed: bool
    checks: dict[str, float]
    reasons: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)  # check -> "logical" | "rendering" (shape families)

    def to_dict(self) -> dict:
        out = {
            "score": round(self.score, 4),
            "passed": self.passed,
            "checks": {k: round(v, 4) for k, v in self.checks.items()},
            "reasons": self.reasons,
        }
        if self.kinds:
            out["kinds"] = self.kinds
        return out


class _Geometry:
    def __init__(self, meta: dict, height: int, width: int):
        self.rows, self.cols = meta["grid"]["rows"], meta["grid"]["cols"]
        self.height, self.width = height, width
        self.cell_h, self.cell_w = height / self.rows, width / self.cols
        self.cell_area = self.cell_h * self.cell_w

    def cells_mask(self, cells) -> np.ndarray:
        mask = np.zeros((self.height, self.width), dtype=bool)
        for r, c in cells:
            y0, y1 = r * self.height // self.rows, (r + 1) * self.height // self.rows
            x0, x1 = c * self.width // self.cols, (c + 1) * self.width // self.cols
            mask[y0:y1, x0:x1] = True
        return mask

    def cell_of(self, centroid) -> tuple[int, int]:
        y, x = centroid
        return min(int(y / self.cell_h), self.rows - 1), min(int(x / self.cell_w), self.cols - 1)


def color_mask(frames: np.ndarray, rgb) -> np.ndarray:
    """[T, H, W] bool: pixels within COLOR_DISTANCE of the colour."""
    diff = frames.astype(np.float32) - np.asarray(rgb, dtype=np.float32)
    return (diff * diff).sum(-1) <= COLOR_DISTANCE**2


def components(mask: np.ndarray) -> list[int]:
    """Sizes of the 4-connected blobs of a 2-D bool mask."""
    seen = np.zeros_like(mask)
    sizes = []
    h, w = mask.shape
    for y, x in zip(*np.nonzero(mask)):
        if seen[y, x]:
            continue
        seen[y, x] = True
        queue, size = deque([(y, x)]), 0
        while queue:
            cy, cx = queue.popleft()
            size += 1
            for ny, nx in ((cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        sizes.append(size)
    return sizes


def _erode(mask: np.ndarray) -> np.ndarray:
    """Drop a region's border pixels: lossy video (mp4 chroma subsampling) smears colours there."""
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return inner


def _frames_text(frames: list[int]) -> str:
    return ", ".join(map(str, frames[:8])) + (" ..." if len(frames) > 8 else "")


def _neighbours8(cell):
    r, c = cell
    return {(r + dr, c + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)}


def score_video(frames: np.ndarray, meta: dict) -> Score:
    """Judge a video (uint8 [T, H, W, 3], any size and length) against an instance's metadata."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"expected frames [T, H, W, 3], got {frames.shape}")
    T, H, W, _ = frames.shape
    geo = _Geometry(meta, H, W)
    checks: dict[str, float] = {}
    reasons: list[str] = []
    family = meta["family"]
    forbidden_cells = {tuple(c) for role in meta["forbidden"] for c in meta["static"][role]["cells"]}
    if family == "avoid":  # touching an obstacle counts, at a corner too: its 8 neighbours are off limits
        forbidden_cells |= {n for cell in list(forbidden_cells) for n in _neighbours8(cell)}
    forbidden = geo.cells_mask(forbidden_cells)

    def frame_check(name: str, bad: list[int], words: str) -> None:
        checks[name] = 1.0 - len(bad) / T
        if bad:
            reasons.append(f"{words} at frame{'s' * (len(bad) > 1)} {_frames_text(bad)}")

    tracks: dict[str, list] = {}
    any_mover = np.zeros((T, H, W), dtype=bool)
    for name, mover in meta["movers"].items():
        mask = color_mask(frames, mover["rgb"])
        any_mover |= mask
        areas = mask.sum((1, 2))
        present = areas >= PRESENT_AREA * geo.cell_area
        frame_check(
            f"{name}.present", [t for t in range(T) if not present[t]], f"{name} absent (vanished or changed colour)"
        )
        pieces = [sum(1 for s in components(mask[t]) if s >= PIECE_AREA * geo.cell_area) for t in range(T)]
        frame_check(f"{name}.single", [t for t in range(T) if pieces[t] > 1], f"{name} in several pieces")
        frame_check(
            f"{name}.size",
            [t for t in range(T) if areas[t] > MAX_AREA * geo.cell_area],
            f"{name} larger than {MAX_AREA} cells",
        )
        overlap = (mask & forbidden[None]).sum((1, 2)) / np.maximum(areas, 1)
        frame_check(
            f"{name}.legal",
            [t for t in range(T) if present[t] and overlap[t] > FORBIDDEN_OVERLAP],
            f"{name} on forbidden cells ({', '.join(meta['forbidden'])})",
        )
        ys, xs = np.mgrid[0:H, 0:W]
        centroids = [
            ((ys * mask[t]).sum() / areas[t], (xs * mask[t]).sum() / areas[t]) if present[t] else None for t in range(T)
        ]
        jumps = [
            t
            for t, (a, b) in enumerate(zip(centroids, centroids[1:]))
            if a is not None
            and b is not None
            and np.hypot((b[0] - a[0]) / geo.cell_h, (b[1] - a[1]) / geo.cell_w) > MAX_STEP
        ]
        frame_check(f"{name}.steady", jumps, f"{name} jumps more than {MAX_STEP} cells")
        target_role = meta["targets"][name]
        target = geo.cells_mask([tuple(c) for c in meta["static"][target_role]["cells"]])
        on_target = (mask[-1] & target).sum() / max(areas[-1], 1)
        checks[f"{name}.goal"] = float(present[-1] and on_target >= GOAL_OVERLAP)
        if not checks[f"{name}.goal"]:
            reasons.append(f"{name} does not end on the {target_role}")
        tracks[name] = [geo.cell_of(c) if c else None for c in centroids]

    changed = []
    for role in meta["forbidden"]:
        region = _erode(geo.cells_mask([tuple(c) for c in meta["static"][role]["cells"]]))
        has_color = color_mask(frames, meta["static"][role]["rgb"])
        for t in range(T):
            visible = region & ~any_mover[t]
            if visible.sum() and (visible & ~has_color[t]).sum() / visible.sum() > STATIC_CHANGE:
                changed.append(t)
    frame_check("static", sorted(set(changed)), "the fixed layout changed")

    primary = next(iter(meta["movers"]))
    cells = [c for c in tracks[primary] if c is not None]
    if family == "grid_path":
        visited = [c for i, c in enumerate(cells) if i == 0 or c != cells[i - 1]]
        checks["optimal"] = float(len(visited) - 1 == meta["params"]["shortest"])
        if not checks["optimal"]:
            reasons.append(f"the path has {len(visited) - 1} moves; the shortest has {meta['params']['shortest']}")
    if family == "key_door":
        key = tuple(meta["static"]["key"]["cells"][0])
        door = tuple(meta["static"]["door"]["cells"][0])
        track = tracks[primary]
        t_key = next((t for t, c in enumerate(track) if c and c in _neighbours8(key)), None)
        t_door = next((t for t, c in enumerate(track) if c and (c == door or c in _neighbours8(door))), None)
        checks["key_first"] = float(t_key is not None and (t_door is None or t_key < t_door))
        if not checks["key_first"]:
            reasons.append(
                "the agent never touches the key"
                if t_key is None
                else f"the agent reaches the door (frame {t_door}) before the key (frame {t_key})"
            )
    if family == "two_targets":
        a, b = (tracks[name] for name in meta["movers"])
        close = [t for t in range(T) if a[t] and b[t] and max(abs(a[t][0] - b[t][0]), abs(a[t][1] - b[t][1])) < 2]
        frame_check("apart", close, "the boxes touch")
    score = float(np.mean(list(checks.values())))
    passed = all(v == 1.0 for v in checks.values())
    return Score(score, passed, checks, reasons)
