"""Synthetic videos on a grid of cells (flat colours, crisp edges, any size) for tests and examples.

A Scene paints static cells, then moving square sprites (one position per frame,
None = absent), then per-frame edits. Positions are (row, col) cells.
"""

from __future__ import annotations

import torch

from ruledsl.tasks.families import PALETTE

# The task suite's palette, with the pad names the example programs' scenes use.
COLORS = {**PALETTE, "blue_pad": PALETTE["light_blue"], "orange_pad": PALETTE["light_orange"]}


class Scene:
    def __init__(self, frames: int = 8, cells: int = 8, px: int = 8, background: str = "white"):
        self.frames, self.cells, self.px = frames, cells, px
        self.background = background
        self.static: list[tuple[str, list]] = []
        self.sprites: list[tuple[str, list, dict]] = []
        self.edits: list[tuple[str, list, range]] = []

    def paint(self, color: str, cells) -> Scene:
        self.static.append((color, list(cells)))
        return self

    def sprite(self, color: str, path, sizes: dict | None = None) -> Scene:
        """`path`: one (row, col) or None per frame; `sizes`: {frame: side in pixels} overrides."""
        assert len(path) == self.frames, (len(path), self.frames)
        self.sprites.append((color, list(path), dict(sizes or {})))
        return self

    def repaint(self, color: str, cells, frames) -> Scene:
        """Change static cells from some frame on (drawn under the sprites)."""
        self.edits.append((color, list(cells), frames))
        return self

    def _cell(self, video, t, row, col, color, side=None):
        side = side or self.px
        off = (self.px - side) // 2
        y, x = row * self.px + off, col * self.px + off
        video[0, t, :, y : y + side, x : x + side] = torch.tensor(COLORS[color], dtype=video.dtype)[:, None, None] / 255

    def render(self) -> torch.Tensor:
        size = self.cells * self.px
        video = torch.empty(1, self.frames, 3, size, size)
        video[:] = (torch.tensor(COLORS[self.background], dtype=torch.float32) / 255)[:, None, None]
        for t in range(self.frames):
            for color, cells in self.static:
                for r, c in cells:
                    self._cell(video, t, r, c, color)
            for color, cells, frames in self.edits:
                if t in frames:
                    for r, c in cells:
                        self._cell(video, t, r, c, color)
            for color, path, sizes in self.sprites:
                if path[t] is not None:
                    self._cell(video, t, *path[t], color, sizes.get(t))
        return video


def border(cells: int = 8):
    return [(r, c) for r in range(cells) for c in range(cells) if r in (0, cells - 1) or c in (0, cells - 1)]
