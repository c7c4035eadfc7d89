"""Objects found in a mask: connected components, holes, tracking of collection slots, and rank choices.

`objects tiles = components(sel, min_area=a, max=n) at start` makes n slots: slot i is the i-th
component (reading order) of sel's hard mask (> 0.5) at that frame, each tracked through the video.
Tracking runs once per collection and call (cached by the spatial evaluation) on the hard masks,
without gradient; a slot's mask per frame is the *soft* selector mask restricted to its assigned
component (grown by one pixel into unassigned pixels, so soft edges count), so gradients reach
exactly that object's pixels.

Components are 8-connected; holes (background enclosed by the mask) are filled before labelling, so
a component inside a hole (the inside of a `0` on a tile) belongs to the enclosing object.
Labelling is a parallel union-find on torch tensors (no scipy or OpenCV needed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ruledsl.compiler import primitives as P

# Centroids whose rows differ by less than this share of a blob's side (the square root of its area)
# read as one row, left to right: tiles of a row drawn a pixel apart, or of slightly different sizes.
ROW_TOLERANCE = 0.5


def label(hard: torch.Tensor, connectivity: int = 8) -> torch.Tensor:
    """Connected components of a bool mask [..., H, W]: int64 labels, 0 for background (ids arbitrary).

    Parallel union-find: every edge between two foreground neighbours hooks the larger of its two
    roots onto the smaller, then pointer jumping flattens the trees; a few rounds for any shape.
    """
    shape = hard.shape
    h, w = shape[-2:]
    fg = hard.reshape(-1, h, w)
    n = fg.numel()
    index = torch.arange(n, device=hard.device).view(fg.shape)
    offsets = [(0, 1), (1, 0)] + ([(1, 1), (1, -1)] if connectivity == 8 else [])
    edges_a, edges_b = [], []
    for dy, dx in offsets:
        a_rows, b_rows = slice(0, h - dy), slice(dy, h)
        a_cols, b_cols = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
        both = fg[:, a_rows, a_cols] & fg[:, b_rows, b_cols]
        edges_a.append(index[:, a_rows, a_cols][both])
        edges_b.append(index[:, b_rows, b_cols][both])
    a, b = torch.cat(edges_a), torch.cat(edges_b)
    parent = index.reshape(-1).clone()
    while True:
        ra, rb = parent[a], parent[b]
        differ = ra != rb
        if not bool(differ.any()):
            break
        ra, rb = ra[differ], rb[differ]
        parent.scatter_reduce_(0, torch.maximum(ra, rb), torch.minimum(ra, rb), "amin")
        while True:
            jumped = parent[parent]
            if torch.equal(jumped, parent):
                break
            parent = jumped
        keep = differ.nonzero()[:, 0]
        a, b = a[keep], b[keep]
    labels = torch.where(fg.reshape(-1), parent % (h * w) + 1, 0)  # a root lies in its own frame
    return labels.reshape(shape)


def _run_any(reached: torch.Tensor, open_: torch.Tensor, dim: int) -> torch.Tensor:
    """Every pixel of a run of `open_` pixels along `dim` is reached when one pixel of the run is."""
    x, f = reached.movedim(dim, -1), open_.movedim(dim, -1)
    n = x.shape[-1]
    starts = f & ~torch.cat([torch.zeros_like(f[..., :1]), f[..., :-1]], -1)
    run = torch.cumsum(starts.reshape(-1, n), -1)
    lines = torch.arange(run.shape[0], device=x.device)[:, None] * (n + 1)
    ids = torch.where(f.reshape(-1, n), run + lines, 0).reshape(-1)
    hit = torch.zeros(run.shape[0] * (n + 1), dtype=torch.bool, device=x.device)
    hit[ids[x.reshape(-1) & f.reshape(-1)]] = True
    return (hit[ids] & f.reshape(-1)).reshape(x.shape).movedim(-1, dim)


def fill_holes(hard: torch.Tensor) -> torch.Tensor:
    """The mask with every background region that does not reach the frame's border filled in.

    Background (4-connected: the dual of 8-connected blobs) is flooded from the border along whole
    rows and columns at a time, so the rounds needed are the turns of the longest path, not its length.
    """
    h, w = hard.shape[-2:]
    background = ~hard.reshape(-1, h, w)
    reached = torch.zeros_like(background)
    reached[:, 0], reached[:, -1], reached[:, :, 0], reached[:, :, -1] = (
        background[:, 0],
        background[:, -1],
        background[:, :, 0],
        background[:, :, -1],
    )
    while True:
        updated = _run_any(_run_any(reached, background, -1), background, -2)
        if torch.equal(updated, reached):
            break
        reached = updated
    return (hard.reshape(-1, h, w) | (background & ~reached)).reshape(hard.shape)


def objects_mask(hard: torch.Tensor) -> torch.Tensor:
    """Labels of the objects of a hard mask: components of the hole-filled mask, restricted to the mask."""
    return torch.where(hard, label(fill_holes(hard)), 0)


def count(mask: torch.Tensor) -> torch.Tensor:
    """Number of objects (8-connected blobs, holes filled) of mask > 0.5 per frame, [B, T]; no gradient."""
    with torch.no_grad():
        filled = fill_holes(mask > 0.5)
        labels = label(filled)
        h, w = labels.shape[-2:]
        ids = torch.arange(1, h * w + 1, device=mask.device).view(1, 1, h, w)
        return ((labels == ids) & filled).sum((-2, -1)).to(mask.dtype)


def drop_small(mask: torch.Tensor, min_area: float) -> torch.Tensor:
    """The soft mask with blobs of its hard mask smaller than `min_area` (fraction of the frame) removed.

    Pixels within one pixel of a kept blob keep their soft value (its anti-aliased edge); the rest are 0.
    """
    if min_area <= 0:
        return mask
    with torch.no_grad():
        b, t, h, w = mask.shape
        labels = label(mask > 0.5).reshape(b * t, h * w)
        sizes = torch.zeros(b * t, h * w + 1, device=mask.device).scatter_add_(
            1, labels, torch.ones_like(labels, dtype=torch.float32)
        )
        sizes[:, 0] = 0
        big = torch.gather(sizes, 1, labels) >= min_area * h * w
        keep = P.grow(big.reshape(b, t, h, w).to(mask.dtype), 1)
    return mask * keep


# ---- tracking -----------------------------------------------------------------------------------


@dataclass
class Tracking:
    """What tracking found. labels [B, T, H, W] int16: slot index + 1, 0 where no slot; filled [B, S]:
    the slot held a component at the collection's frame; area [B, T, S] (pixels), centre [B, T, S, 2]
    (pixel x, y; the last-seen place while hidden); frame: the collection's frame; grown: labels grown
    one pixel into unlabelled pixels (a pixel next to two slots goes to the higher one)."""

    labels: torch.Tensor
    filled: torch.Tensor
    area: torch.Tensor
    centre: torch.Tensor
    frame: int
    grown: torch.Tensor


def reading_order(centres: np.ndarray, tolerance: np.ndarray) -> list[int]:
    """Indices of points (x, y) in reading order: rows top to bottom (a point within its row's first
    point's `tolerance` of it, in y, joins that row), each row left to right."""
    order = sorted(range(len(centres)), key=lambda i: centres[i][1])
    rows: list[list[int]] = []
    for i in order:
        if rows and centres[i][1] - centres[rows[-1][0]][1] <= tolerance[rows[-1][0]]:
            rows[-1].append(i)
        else:
            rows.append([i])
    return [i for row in rows for i in sorted(row, key=lambda j: centres[j][0])]


def _stats(labels: np.ndarray, n: int, xs: np.ndarray, ys: np.ndarray):
    """Pixel count and centre (x, y) of labels 1..n of one frame."""
    flat = labels.reshape(-1)
    area = np.bincount(flat, minlength=n + 1)[1:].astype(np.float64)
    cx = np.bincount(flat, weights=xs, minlength=n + 1)[1:]
    cy = np.bincount(flat, weights=ys, minlength=n + 1)[1:]
    safe = np.maximum(area, 1)
    return area, np.stack([cx / safe, cy / safe], -1)


def _compact(labels: np.ndarray, min_pixels: float) -> tuple[np.ndarray, int]:
    """Relabel one frame's components 1..n, dropping those under `min_pixels`."""
    ids, inverse, counts = np.unique(labels.reshape(-1), return_inverse=True, return_counts=True)
    keep = (ids != 0) & (counts >= min_pixels)
    new = np.zeros(len(ids), dtype=np.int64)
    new[keep] = np.arange(1, int(keep.sum()) + 1)
    return new[inverse].reshape(labels.shape), int(keep.sum())


def track(soft: torch.Tensor, frame: int, min_area: float, slots: int) -> Tracking:
    """Track the components of `soft`'s hard mask from `frame` forward and backward through the video."""
    b, t, h, w = soft.shape
    with torch.no_grad():
        components = objects_mask(soft > 0.5).cpu().numpy()
    yy, xx = np.mgrid[0:h, 0:w]
    xs, ys = (xx.reshape(-1) + 0.5).astype(np.float64), (yy.reshape(-1) + 0.5).astype(np.float64)
    min_pixels = max(1.0, min_area * h * w)
    out = np.zeros((b, t, h, w), dtype=np.int16)
    area = np.zeros((b, t, slots))
    centre = np.zeros((b, t, slots, 2))
    filled = np.zeros((b, slots), dtype=bool)
    for i in range(b):
        first, n = _compact(components[i, frame], min_pixels)
        a, c = _stats(first, n, xs, ys)
        order = reading_order(c, ROW_TOLERANCE * np.sqrt(a))[:slots]
        slot_of = np.zeros(n + 1, dtype=np.int16)
        slot_of[np.array(order, dtype=np.int64) + 1] = np.arange(1, len(order) + 1)
        out[i, frame] = slot_of[first]
        filled[i, : len(order)] = True
        area[i, frame, : len(order)] = a[order]
        centre[i, frame, : len(order)] = c[order]
        for direction in (1, -1):
            _follow(components[i], out[i], area[i], centre[i], frame, direction, len(order), min_pixels, xs, ys)
    to = soft.device
    labels = torch.from_numpy(out).to(to)
    around = F.max_pool2d(labels.reshape(b * t, 1, h, w).float(), 3, stride=1, padding=1).reshape(labels.shape)
    grown = torch.where(labels > 0, labels, around.to(labels.dtype))
    return Tracking(
        labels,
        torch.from_numpy(filled).to(to),
        torch.from_numpy(area).to(to, soft.dtype),
        torch.from_numpy(centre).to(to, soft.dtype),
        frame,
        grown,
    )


def _follow(components, out, area, centre, frame, direction, n, min_pixels, xs, ys) -> None:
    """Assign frame by frame, from `frame` in `direction`, each frame's components to the n tracks.

    A track that was alone on its blob takes the component it overlaps most; two tracks that take
    one component share it (merged): each pixel goes to the track with the nearest previous pixel
    (shifted by the track's velocity when the blob is smaller than the tracks together, i.e. they
    overlap), so touching objects keep their identities. Tracks left over (hidden, or merged on the
    frame before) take the nearest free component to their predicted place (a moving track: last
    position plus velocity; a hidden one: its last-seen place). A track with no component is hidden:
    zero mask, centre kept at its last-seen place.
    """
    t_count = components.shape[0]
    if n == 0:
        return
    visible = np.ones(n, dtype=bool)
    was_merged = np.zeros(n, dtype=bool)
    velocity = np.zeros((n, 2))
    position = centre[frame, :n].copy()
    t = frame + direction
    while 0 <= t < t_count:
        previous = out[t - direction].astype(np.int64).reshape(-1)
        labels, m = _compact(components[t], min_pixels)
        flat = labels.reshape(-1)
        predicted = position + np.where(visible[:, None], velocity, 0.0)
        result = np.zeros(flat.shape, dtype=np.int16)
        taken: dict[int, list[int]] = {}
        if m:
            overlap = np.bincount(previous * (m + 1) + flat, minlength=(n + 1) * (m + 1)).reshape(n + 1, m + 1)
            overlap = overlap[1:, 1:]
            for k in range(n):
                if visible[k] and not was_merged[k] and overlap[k].max() > 0:
                    taken.setdefault(int(overlap[k].argmax()), []).append(k)
            _, comp_centres = _stats(labels, m, xs, ys)
            free_tracks = [k for k in range(n) if not any(k in ks for ks in taken.values())]
            pairs = sorted(
                (float(np.hypot(*(comp_centres[c] - predicted[k]))), k, c) for k in free_tracks for c in range(m)
            )
            used: set[int] = set()
            for _, k, c in pairs:  # a free component first; a merged track may rejoin a taken one
                if k not in used and (c not in taken or was_merged[k]):
                    taken.setdefault(c, []).append(k)
                    used.add(k)
        assigned = np.zeros(n, dtype=bool)
        for c, ks in taken.items():
            pixels = np.nonzero(flat == c + 1)[0]
            if len(ks) == 1:
                result[pixels] = ks[0] + 1
            else:
                result[pixels] = _split(pixels, ks, previous, velocity, xs, ys) + 1
            assigned[ks] = True
        out[t] = result.reshape(out[t].shape)
        a, c_now = _stats(out[t].astype(np.int64), n, xs, ys)
        merged = {k for ks in taken.values() if len(ks) > 1 for k in ks}
        for k in range(n):
            if not assigned[k]:
                visible[k] = False  # hidden: keeps its last-seen place, no velocity
                velocity[k] = 0.0
            elif a[k] == 0:  # merged, but no pixel of the blob is nearest to it: carry on as predicted
                position[k] = predicted[k]
                visible[k] = True
            else:
                velocity[k] = c_now[k] - position[k] if visible[k] else 0.0
                position[k] = c_now[k]
                visible[k] = True
            was_merged[k] = k in merged
        area[t, :n] = a
        centre[t, :n] = np.where((a > 0)[:, None], c_now, position)
        t += direction


def _split(pixels, tracks, previous, velocity, xs, ys, samples: int = 256) -> np.ndarray:
    """The track (of `tracks`) each pixel of a merged blob belongs to: the one with the nearest pixel on
    the frame before, moved by its velocity when the blob is smaller than the tracks were together."""
    where = np.stack([xs[pixels], ys[pixels]], -1)
    before = [np.nonzero(previous == k + 1)[0] for k in tracks]
    overlapping = len(pixels) < 0.9 * sum(len(b) for b in before)
    best = np.full(len(pixels), np.inf)
    choice = np.zeros(len(pixels), dtype=np.int64)
    for j, (k, own) in enumerate(zip(tracks, before)):
        if len(own) == 0:
            continue
        own = own[:: max(1, len(own) // samples)]  # a subsample of its outline and inside is enough
        points = np.stack([xs[own], ys[own]], -1) + (velocity[k] if overlapping else 0.0)
        distance = ((where[:, None, :] - points[None]) ** 2).sum(-1).min(1)
        closer = distance < best
        best[closer], choice[closer] = distance[closer], j
    return np.array(tracks, dtype=np.int16)[choice]


def slot_mask(soft: torch.Tensor, tracking: Tracking, index: torch.Tensor) -> torch.Tensor:
    """The soft mask on the component tracked as slot `index` ([B] long, -1: none), grown one pixel into
    pixels no other slot holds. [B, T, H, W]."""
    wanted = (index + 1).to(tracking.grown.dtype).view(-1, 1, 1, 1)
    own = (tracking.grown == wanted) & (index >= 0).view(-1, 1, 1, 1)
    return soft.expand(own.shape) * own.to(soft.dtype)


# ---- members chosen by rank, and whether a member exists ------------------------------------------


def _slots_of(members: tuple) -> tuple | None:
    """(collection, indices) when every member is a slot of one components collection, else None."""
    from ruledsl.compiler import ir

    if members and all(isinstance(m, ir.Slot) and m.collection is members[0].collection for m in members):
        return members[0].collection, [m.index for m in members]
    return None


def _member_stats(ev, members: tuple):
    """Per member at the collection's frame: present [B, n], area [B, n], centroid [B, n, 2] (L-units), frame."""
    slots = _slots_of(members)
    if slots is not None:
        collection, indices = slots
        tracking = ev.tracking(collection)
        k = tracking.frame
        area = tracking.area[:, k, indices] / (ev.h * ev.w)
        centre = tracking.centre[:, k, indices] / ev.scale
        return tracking.filled[:, indices], area, centre, k
    masks = [ev.mask(m) for m in members]
    area = torch.stack([P.area(m[:, :1]).detach()[:, 0] for m in masks], 1)
    centre = torch.stack([P.centroid(m[:, :1]).detach()[:, 0] for m in masks], 1)
    return area > 0.5 / (ev.h * ev.w), area, centre, 0


def choose(ev, members: tuple, how: str, k: int = 1, by: str = "x", target=None) -> torch.Tensor:
    """Index [B] of the member a rank names (-1: none), chosen at the collection's frame, no gradient."""
    # Not under no_grad: the members' masks land in the evaluation's cache, and later users need their graph.
    present, area, centre, frame = _member_stats(ev, members)
    with torch.no_grad():
        if target is not None:
            target = target.detach()
        if how in ("largest", "smallest"):
            key = area if how == "smallest" else -area
        elif how == "nearest":
            where = target[:, min(frame, target.shape[1] - 1)]
            key = (centre - where[:, None]).pow(2).sum(-1)
        else:
            key = {"x": centre[..., 0], "y": centre[..., 1], "area": area}[by]
        big = torch.finfo(key.dtype).max
        key = torch.where(present, key, big)
        order = torch.argsort(key, dim=1, stable=True)  # ties: the collection's order
        rank = k - 1 if how == "nth" else 0
        if rank >= len(members):
            return torch.full((ev.b,), -1, dtype=torch.long, device=key.device)
        pick = order[:, rank]
        return torch.where(present.gather(1, pick[:, None])[:, 0], pick, -1)


def _member_mask(ev, members: tuple, index: torch.Tensor) -> torch.Tensor:
    """The mask of member `index[b]` for each candidate b (zero where -1)."""
    slots = _slots_of(members)
    if slots is not None:
        collection, indices = slots
        slot = torch.tensor(indices, device=index.device)[index.clamp(min=0)]
        slot = torch.where(index >= 0, slot, -1)
        return slot_mask(ev.mask(collection.selector), ev.tracking(collection), slot)
    masks = [ev.mask(m).expand(ev.b, -1, ev.h, ev.w) for m in members]
    frames = max(m.shape[1] for m in masks)
    rows = [
        masks[i][b].expand(frames, ev.h, ev.w) if i >= 0 else masks[0][b].expand(frames, ev.h, ev.w) * 0
        for b, i in enumerate(index.tolist())
    ]
    return torch.stack(rows)


def rank_mask(ev, collection, how: str, **options) -> torch.Tensor:
    return _member_mask(ev, collection.items, choose(ev, collection.items, how, **options))


def filled(ev, member) -> torch.Tensor:
    """[B, 1] margin: +1 where the member exists (a filled slot, a rank that found a member), else -1."""
    from ruledsl.compiler import ir

    ones = ev.video.new_ones((ev.b, 1))
    if isinstance(member, ir.Slot):
        present = ev.tracking(member.collection).filled[:, member.index]
    elif isinstance(member, ir.Call) and member.name in ("largest", "smallest", "nth", "nearest"):
        args = ir.arguments(member)
        options: dict = {}
        if member.name == "nth":
            options = {"k": int(args["k"]), "by": args["by"].value}
        elif member.name == "nearest":
            options = {"target": ev.point(args["p"])}
        present = choose(ev, args["c"].items, member.name, **options) >= 0
    else:
        return ones
    return torch.where(present[:, None], ones, -ones)


# ---- regions from objects --------------------------------------------------------------------


def _present(ev, mask: torch.Tensor) -> torch.Tensor:
    """[B, T, 1, 1] 1 where the object has at least half a pixel of mass, else 0 (no gradient)."""
    return (mask.detach().sum((-2, -1)) >= 0.5).to(mask.dtype)[..., None, None]


def around(ev, mask: torch.Tensor, centre: torch.Tensor, radius: float) -> torch.Tensor:
    """A disc of `radius` (L-units) around `centre` [B, T, 2] with a one-pixel soft edge."""
    grid = P.coordinates(ev.h, ev.w, ev.video)
    distance = (grid[None, None] - centre[:, :, None, None, :]).pow(2).sum(-1).add(P.EPS**2).sqrt()
    return torch.sigmoid((radius - distance) * ev.scale) * _present(ev, mask)


def half_plane(ev, mask: torch.Tensor, centre: torch.Tensor, side: str) -> torch.Tensor:
    """The pixels on one side of `centre`'s vertical (left_of, right_of) or horizontal (above, below) line."""
    grid = P.coordinates(ev.h, ev.w, ev.video)
    axis = 0 if side in ("left_of", "right_of") else 1
    offset = grid[None, None, :, :, axis] - centre[:, :, None, None, axis]
    sign = -1.0 if side in ("left_of", "above") else 1.0
    return torch.sigmoid(sign * offset * ev.scale) * _present(ev, mask)


def bbox(mask: torch.Tensor, pad: float) -> torch.Tensor:
    """Per frame, the box around mask > 0.5, grown by `pad` (L-units); empty where the mask is. No gradient."""
    with torch.no_grad():
        hard = mask > 0.5
        h, w = mask.shape[-2:]
        margin = P.pixels(pad, h, w)
        rows, cols = hard.any(-1), hard.any(-2)  # [B, T, H], [B, T, W]
        r = torch.arange(h, device=mask.device)
        c = torch.arange(w, device=mask.device)
        top = torch.where(rows, r, h).amin(-1) - margin
        bottom = torch.where(rows, r, -1).amax(-1) + margin
        left = torch.where(cols, c, w).amin(-1) - margin
        right = torch.where(cols, c, -1).amax(-1) + margin
        inside_rows = (r >= top[..., None]) & (r <= bottom[..., None])
        inside_cols = (c >= left[..., None]) & (c <= right[..., None])
        return (inside_rows[..., :, None] & inside_cols[..., None, :]).to(mask.dtype)


# ---- occlusion ------------------------------------------------------------------------------


def visible_or_covered(ev, mask: torch.Tensor, cover_field: torch.Tensor, tol: float) -> torch.Tensor:
    """[B, T] margin: present (area at least half the first frame's), or hidden with the cover (its
    distance field) within the object's side of its last-seen mask; at a frame where it reappears, also
    within `tol` of its last-seen centroid. The last-seen mask is what was visible, so the cover abuts it
    rather than overlapping it."""
    b, t, h, w = mask.shape
    area = P.area(mask)
    a0 = area[:, :1].detach()
    half_pixel = 0.5 / (h * w)
    presence = P.clamp_margin((area - 0.5 * a0 - half_pixel) / (a0 + half_pixel))
    with torch.no_grad():
        shown = presence > 0
        frames = torch.arange(t, device=mask.device).expand(b, t)
        last = torch.where(shown, frames, -1).cummax(1).values  # last frame it was present, up to t
        seen = mask.detach()[torch.arange(b, device=mask.device)[:, None], last.clamp(min=0)]
        seen = seen * (last >= 0)[..., None, None].to(mask.dtype)
        seen_centre = P.centroid(seen)
    side = (a0 * (h * w)).sqrt() / max(h, w)  # the object's side at the first frame, L-units
    gap = P.min_distance(seen, cover_field.expand(b, t, h, w))
    covered = P.clamp_margin((side - gap) / (side + P.EPS))
    margin = torch.maximum(presence, torch.where(last >= 0, covered, presence))
    # Reappearing: present now, hidden on the frame before; compare with where it was last seen then.
    back = shown[:, 1:] & ~shown[:, :-1] & (last[:, :-1] >= 0)
    distance = P.norm(P.centroid(mask)[:, 1:] - seen_centre[:, :-1])
    near = P.clamp_margin(tol - distance)
    later = torch.where(back, torch.minimum(margin[:, 1:], near), margin[:, 1:])
    return torch.cat([margin[:, :1], later], 1)
