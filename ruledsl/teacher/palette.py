"""Distinct colours of an image with their area and bounding box (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Swatch:
    hex: str
    rgb: tuple[int, int, int]
    area: float  # fraction of the image
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of width and height

    def to_dict(self) -> dict:
        return {
            "hex": self.hex,
            "rgb": list(self.rgb),
            "area": round(self.area, 4),
            "box": [round(v, 3) for v in self.box],
        }


def palette(image: np.ndarray, max_colors: int = 12, min_area: float = 0.001, merge: float = 24.0) -> list[Swatch]:
    """Colours covering at least `min_area` of the image, near-duplicates (RGB distance < merge) merged.

    Exact colours are counted first (flat renders have few); each colour is then absorbed by a
    more frequent one within `merge`, so anti-aliased edges and compression noise do not show
    up as entities. Largest area first.
    """
    pixels = np.asarray(image)[..., :3].reshape(-1, 3)
    h, w = image.shape[:2]
    quantized = (pixels // 4) * 4 + 2 if len(np.unique(pixels, axis=0)) > 4096 else pixels
    colors, inverse, counts = np.unique(quantized, axis=0, return_inverse=True, return_counts=True)
    order = np.argsort(-counts)
    owner = np.arange(len(colors))
    kept: list[int] = []
    for index in order:
        close = [k for k in kept if np.linalg.norm(colors[k].astype(float) - colors[index]) < merge]
        owner[index] = close[0] if close else index
        if not close:
            kept.append(index)
    labels = owner[inverse.reshape(-1)].reshape(h, w)
    swatches = []
    for k in kept:
        mask = labels == k
        area = float(mask.mean())
        if area < min_area:
            continue
        ys, xs = np.nonzero(mask)
        r, g, b = (int(v) for v in pixels[mask.reshape(-1)].mean(0).round())
        rgb = (r, g, b)
        swatches.append(
            Swatch(
                "#%02x%02x%02x" % rgb, rgb, area, (xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h)
            )
        )
    return sorted(swatches, key=lambda s: -s.area)[:max_colors]


def palette_text(swatches: list[Swatch]) -> str:
    lines = ["colour    area    box (x0, y0, x1, y1)"]
    for s in swatches:
        x0, y0, x1, y1 = s.box
        lines.append(f"{s.hex}  {s.area * 100:5.1f}%  ({x0:.2f}, {y0:.2f}, {x1:.2f}, {y1:.2f})")
    return "\n".join(lines)
