"""Pixel-level building blocks on torch/kornia: masks, measures and predicate margins.

Shapes: a video is [B, T, 3, H, W] in [0, 1]; a mask is [B, T, H, W] (per frame) or
[B, 1, H, W] (static) with values in [0, 1]; a per-frame number is [B, T] or [B, 1];
a point track is [B, T, 2] in *L-units*: x and y divided by L = max(H, W), so
distances mean the same along both axes and at any resolution.

Every division is guarded by EPS and unbounded margins are squashed into (-1, 1), so no
input (an absent object, an empty region, an all-black frame) yields inf or NaN.
"""

from __future__ import annotations

import contextlib
import contextvars

import torch
import torch.nn.functional as F

EPS = 1e-6


# ---- colour ---------------------------------------------------------------------------------


def to_lab(video: torch.Tensor) -> torch.Tensor:
    """[B, T, 3, H, W] sRGB in [0, 1] -> CIE Lab, same shape (kornia)."""
    from kornia.color import rgb_to_lab

    b, t, c, h, w = video.shape
    return rgb_to_lab(video.reshape(b * t, c, h, w)).reshape(b, t, c, h, w)


def lab_of(rgb: tuple[int, int, int], like: torch.Tensor) -> torch.Tensor:
    """Lab of one sRGB colour, shaped [1, 1, 3, 1, 1] to broadcast against a Lab video."""
    from kornia.color import rgb_to_lab

    pixel = torch.tensor(rgb, dtype=like.dtype, device=like.device).view(1, 3, 1, 1) / 255.0
    return rgb_to_lab(pixel).view(1, 1, 3, 1, 1)


def color_mask(
    lab: torch.Tensor, rgb: tuple[int, int, int], tol: float, surrogate: float | None = None
) -> torch.Tensor:
    """Soft membership exp(-ΔE² / 2·tol²) (CIE76 ΔE): 1 at the colour, 0.61 at ΔE = tol, tapered to
    exactly 0 at ΔE = SUPPORT·tol (compact support: a large background a few tol away adds no mass).

    A Gaussian's gradient vanishes for pixels far from the colour (a white pixel is
    ΔE ≈ 100 from red: exp(-35)), so an optimizer could never turn a pixel red. With
    `surrogate=k` the value stays exactly the Gaussian but the gradient is that of a
    Gaussian k times wider (a straight-through estimator), which still points each
    pixel towards the colour. `surrogate=None` gives the true gradient.
    """
    delta2 = (lab - lab_of(rgb, lab)).pow(2).sum(2)
    mask = torch.exp(-delta2 / (2.0 * tol * tol)) * _taper(delta2, tol)
    if surrogate is None or not lab.requires_grad:
        return mask
    wide = torch.exp(-delta2 / (2.0 * (surrogate * tol) ** 2))
    return mask.detach() + (wide - wide.detach())


# Membership is exactly 0 beyond this multiple of tol. A Gaussian's tail never ends: over a large
# background a few ΔE tolerances away (white around a light-cyan disc: ΔE ≈ 2 tol) its small values
# add up to more mass than the object itself, and centroids, spreads and overlaps follow that mass.
SUPPORT = 1.5


def _taper(delta2: torch.Tensor, tol: float) -> torch.Tensor:
    """1 up to ΔE = tol, then (1 - s²)² down to 0 at SUPPORT·tol (s goes 0 → 1): smooth at both ends."""
    s = ((delta2 + EPS).sqrt() / tol - 1.0) / (SUPPORT - 1.0)
    return (1.0 - s.clamp(0.0, 1.0).pow(2)).pow(2)


def straight_through(value: torch.Tensor, gradient_of: torch.Tensor) -> torch.Tensor:
    """`value` forward, the gradient of `gradient_of` backward (a hard threshold that still learns)."""
    return value.detach() + (gradient_of - gradient_of.detach())


# ---- geometry -------------------------------------------------------------------------------


def coordinates(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """Pixel centres in L-units, [H, W, 2] as (x, y)."""
    scale = float(max(h, w))
    ys = (torch.arange(h, dtype=like.dtype, device=like.device) + 0.5) / scale
    xs = (torch.arange(w, dtype=like.dtype, device=like.device) + 0.5) / scale
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)


def box_mask(x0: float, y0: float, x1: float, y1: float, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """Pixels whose centre lies in the box (fractions of width and height), [1, 1, H, W]."""
    xs = (torch.arange(w, dtype=like.dtype, device=like.device) + 0.5) / w
    ys = (torch.arange(h, dtype=like.dtype, device=like.device) + 0.5) / h
    inside = ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]
    return inside.to(like.dtype)[None, None]


def pixels(amount: float, h: int, w: int) -> int:
    """A distance in L-units as a whole number of pixels."""
    return int(round(amount * max(h, w)))


def grow(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Dilation by a (2r+1)² square, as two separable max-pools (O(r) per pixel)."""
    if radius <= 0:
        return mask
    b, t, h, w = mask.shape
    flat = mask.reshape(b * t, 1, h, w)
    k = 2 * radius + 1
    flat = F.max_pool2d(flat, (1, k), stride=1, padding=(0, radius))
    flat = F.max_pool2d(flat, (k, 1), stride=1, padding=(radius, 0))
    return flat.reshape(b, t, h, w)


def shrink(mask: torch.Tensor, radius: int) -> torch.Tensor:
    return 1.0 - grow(1.0 - mask, radius)


def area(mask: torch.Tensor) -> torch.Tensor:
    return mask.mean(dim=(-2, -1))


# One pixel of mask mass: the prior that keeps a mass-normalised measure's gradient bounded (`ratio`).
# Set for the smooth pass by CompiledProgram when it is compiled with surrogate gradients (the default);
# 0 (the exact gradient) otherwise.
MASS_PRIOR = 1.0
_mass_prior: contextvars.ContextVar[float] = contextvars.ContextVar("ruledsl_mass_prior", default=0.0)


@contextlib.contextmanager
def mass_prior(prior: float):
    """Within the block, `ratio` damps its gradient by `prior` pixels of mass (0: the exact gradient)."""
    token = _mass_prior.set(float(prior))
    try:
        yield
    finally:
        _mass_prior.reset(token)


def ratio(num: torch.Tensor, den: torch.Tensor, unit: float = 1.0, eps: float = EPS) -> torch.Tensor:
    """num / (den + eps), for the per-mass means of the smooth semantics (a centroid, a mean colour, the
    share of a mask inside another), where den is a mask's mass in pixels (times `unit`).

    The value is exact. Inside `mass_prior(m0)` the gradient is that of (num + m0·unit·r) / (den + m0·unit),
    r the value held constant: within m0/mass of the exact gradient for a visible object, but bounded
    where the exact one grows as 1/den. Without this a nearly vanished object (soft mass ~1e-6) gave
    `speed` a gradient of 5e6 at the video on a train two_targets task, against ≤ 908 for every other
    rule: after clipping, the whole update (benchmarks/rule_gradients.py, docs/compiler.md)."""
    value = num / (den + eps)
    prior = _mass_prior.get() * unit
    if prior <= 0 or not (num.requires_grad or den.requires_grad):
        return value
    return straight_through(value, (num + prior * value.detach()) / (den + prior))


def centroid(mask: torch.Tensor) -> torch.Tensor:
    """Mask-weighted mean position, [B, T, 2] in L-units (the frame centre's corner for an empty mask)."""
    h, w = mask.shape[-2:]
    grid = coordinates(h, w, mask)
    mass = mask.sum(dim=(-2, -1))
    weighted = torch.einsum("bthw,hwc->btc", mask, grid)
    return ratio(weighted, mass[..., None])


def norm(v: torch.Tensor) -> torch.Tensor:
    """Euclidean norm with a finite gradient at 0."""
    return torch.sqrt(v.pow(2).sum(-1) + EPS * EPS)


def step(track: torch.Tensor) -> torch.Tensor:
    """Displacement to the next frame, [B, T, 2]; zero on the last frame (the last frame repeats)."""
    moved = track[:, 1:] - track[:, :-1]
    return torch.cat([moved, torch.zeros_like(track[:, :1])], dim=1)


def count_components(mask: torch.Tensor) -> torch.Tensor:
    """Number of 8-connected blobs of mask > 0.5 per frame, [B, T] (no gradient)."""
    with torch.no_grad():
        hard = mask > 0.5
        b, t, h, w = hard.shape
        ids = torch.arange(1, h * w + 1, device=mask.device, dtype=torch.float32).view(1, 1, h, w)
        labels = torch.where(hard, ids.expand(b, t, h, w), torch.zeros((), device=mask.device))
        while True:  # max-label propagation; converges in (largest blob's diameter) steps
            grown = F.max_pool2d(labels.reshape(b * t, 1, h, w), 3, stride=1, padding=1).reshape(b, t, h, w)
            updated = torch.where(hard, grown, labels)
            if torch.equal(updated, labels):
                break
            labels = updated
        roots = hard & (labels == ids)
        return roots.sum(dim=(-2, -1)).to(mask.dtype)


def distance_field(mask: torch.Tensor, resolution: int = 128) -> torch.Tensor:
    """Euclidean distance (L-units) from each pixel to the nearest pixel of mask > 0.5; no gradient.

    Computed exactly at <= `resolution` pixels on the long side (separable min-plus
    transform) and resized, so it costs the same at any video size; error <= 1/resolution.
    An empty mask gives 2 (farther than anything in the frame).
    """
    with torch.no_grad():
        b, t, h, w = mask.shape
        scale = min(1.0, resolution / max(h, w))
        hs, ws = max(1, round(h * scale)), max(1, round(w * scale))
        small = F.adaptive_max_pool2d(mask.reshape(b * t, 1, h, w).float(), (hs, ws))[:, 0] > 0.5
        unit = 1.0 / max(hs, ws)
        # Each distinct mask once: a video's masks repeat (static walls, an object at rest), and the
        # transform is the cost here. Exact: a repeated mask gets the very same field.
        distinct, which = torch.unique(small.flatten(1), dim=0, return_inverse=True)
        fields = torch.empty(len(distinct), hs, ws, device=mask.device)
        xs = torch.arange(ws, device=mask.device, dtype=torch.float32)
        ys = torch.arange(hs, device=mask.device, dtype=torch.float32)
        col_cost = (ys[:, None] - ys[None, :]).pow(2)  # [hs, hs]
        row_cost = (xs[:, None] - xs[None, :]).pow(2)  # [ws, ws]
        for i, flat in enumerate(distinct):  # one mask at a time keeps memory at hs·ws·max(hs, ws)
            f = torch.where(flat.view(hs, ws), 0.0, 1e12)
            f = (f[:, None, :] + row_cost[None]).amin(-1)  # along x: [hs, ws]
            f = (f.T[:, None, :] + col_cost[None]).amin(-1).T  # along y
            fields[i] = f.sqrt() * unit
        out = fields.clamp(max=2.0)[which]
        if (hs, ws) != (h, w):
            out = F.interpolate(out[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        return out.reshape(b, t, h, w).to(mask.dtype)


def clamp_margin(x: torch.Tensor) -> torch.Tensor:
    """Squash a margin into (-1, 1) keeping its sign; tanh, not clamp, so a badly broken rule still has a gradient."""
    return torch.tanh(x)


def overlap_fraction(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Share of a's mass inside b, [B, T] (0 for an empty a)."""
    return ratio((a * b).sum(dim=(-2, -1)), a.sum(dim=(-2, -1)))


def spread_ratio(mask: torch.Tensor) -> torch.Tensor:
    """Spatial variance of the mask over that of one square blob of the same area (1 for a square)."""
    h, w = mask.shape[-2:]
    grid = coordinates(h, w, mask)
    mass = mask.sum(dim=(-2, -1))
    centre = centroid(mask)
    diff2 = (grid[None, None] - centre[:, :, None, None, :]).pow(2).sum(-1)
    variance = ratio((mask * diff2).sum(dim=(-2, -1)), mass)
    pixel_area = 1.0 / float(max(h, w)) ** 2
    square_variance = mass * pixel_area / 6.0  # a square of side s has variance s²/6 (x and y together)
    return ratio(variance, square_variance, pixel_area / 6.0, EPS * pixel_area)


def min_distance(a: torch.Tensor, field_b: torch.Tensor) -> torch.Tensor:
    """Distance from a's pixels to b (through b's distance field); gradient flows through a's mask."""
    return (field_b + 2.0 * (1.0 - a)).amin(dim=(-2, -1))


def resize_image(image: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[3, h', w'] -> [3, H, W] bilinear (antialiased when shrinking)."""
    if image.shape[-2:] == (h, w):
        return image
    return F.interpolate(image[None], size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0]


__all__ = [name for name in dir() if not name.startswith("_") and name not in ("math", "torch", "F", "annotations")]
