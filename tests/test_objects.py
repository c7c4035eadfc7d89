"""Collections from components, tracking, slot guards, ranks, regions from objects, frames as images,
hard/min_area colours, holes, occlusion, and the compact colour support (compiler/objects.py)."""

import numpy as np
import pytest
import torch

from ruledsl import loads
from ruledsl.checker import check
from ruledsl.compiler import ir
from ruledsl.compiler import objects as O
from ruledsl.compiler import primitives as P
from ruledsl.source import Source

GREEN, RED, WHITE = (0.0, 1.0, 0.0), (1.0, 0.0, 0.0), (1.0, 1.0, 1.0)


def canvas(frames=6, size=48, background=WHITE):
    video = torch.empty(1, frames, 3, size, size)
    video[:] = torch.tensor(background)[:, None, None]
    return video


def square(video, t, y, x, side, colour=GREEN):
    video[0, t, :, y : y + side, x : x + side] = torch.tensor(colour)[:, None, None]


def robustness(source, video, semantics="exact", **options):
    return loads(source).compile(**options).robustness(video, semantics)


def brute_labels(hard: np.ndarray) -> int:
    """8-connected components by flood fill (the oracle)."""
    seen = np.zeros_like(hard, dtype=bool)
    count = 0
    for y, x in zip(*np.nonzero(hard)):
        if seen[y, x]:
            continue
        count += 1
        stack = [(y, x)]
        seen[y, x] = True
        while stack:
            cy, cx = stack.pop()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = cy + dy, cx + dx
                    if 0 <= ny < hard.shape[0] and 0 <= nx < hard.shape[1] and hard[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
    return count


def test_labelling_matches_flood_fill_on_random_masks():
    generator = torch.Generator().manual_seed(1)
    hard = torch.rand(5, 20, 23, generator=generator) > 0.6
    labels = O.label(hard)
    for i in range(5):
        ids = labels[i][hard[i]].unique()
        assert len(ids) == brute_labels(hard[i].numpy())
        assert (labels[i][~hard[i]] == 0).all()


def test_holes_are_not_objects():
    mask = torch.zeros(1, 1, 16, 16)
    mask[0, 0, 2:12, 2:12] = 1
    mask[0, 0, 4:10, 4:10] = 0  # a ring (the stroke of a `0`) ...
    mask[0, 0, 6:8, 6:8] = 1  # ... with a blob in its hole: part of the ring's object
    mask[0, 0, 13:15, 13:15] = 1
    assert P.count_components(mask).item() == 3  # the old count saw the blob in the hole
    assert O.count(mask).item() == 2
    video = canvas(frames=1, size=16)
    video[0, 0][:, mask[0, 0] > 0] = torch.tensor(GREEN)[:, None]
    value = robustness("goal g: always count(color(#00ff00)) <= 2\n", video)["g"]
    assert value.item() == 0.0  # count is exactly 2


def two_tile_video(frames=6):
    video = canvas(frames)
    for t in range(frames):
        square(video, t, 30, 4, 6)  # bottom left
        square(video, t, 4, 30, 8)  # top right: first in reading order
        square(video, t, 4, 2 + t, 4)  # top left, moving right: row 1 read left to right
    return video


def test_components_reading_order_and_min_area():
    video = two_tile_video()
    soft = P.color_mask(P.to_lab(video), (0, 255, 0), 12.0)
    tracking = O.track(soft, 0, 0.0, 4)
    assert tracking.filled[0].tolist() == [True, True, True, False]
    centres = tracking.centre[0, 0, :3]
    assert centres[0, 0] < centres[1, 0] and centres[0, 1] < centres[1, 1]  # one row (y 6 and 8), left to right
    assert centres[2, 1] > centres[1, 1]  # then the next row
    # min_area drops the 4x4 square (16 px of 2304 < 0.01)
    assert O.track(soft, 0, 0.01, 4).filled[0].tolist() == [True, True, False, False]
    source = (
        "objects tiles = components(color(#00ff00), min_area=0.001, max=4) at start\n"
        'goal g: at end x(nth(tiles, 1, by="x")) >= 0.1\n'
    )
    # the moving tile ends at x = (2 + 5 + 2) / 48 = 0.1875, the leftmost member at the start frame
    assert abs(robustness(source, video)["g"].item() - (9 / 48 - 0.1)) < 1e-3


def test_slot_guard_makes_quantifiers_skip_empty_slots():
    video = two_tile_video()
    head = "objects tiles = components(color(#00ff00), max=8) at start\n"
    forall = robustness(head + "goal g: forall t in tiles: always persists(t)\n", video)["g"]
    exists = robustness(head + "goal g: exists t in tiles: always area(t) >= 0.05\n", video)["g"]
    assert forall.item() > 0  # 3 filled slots persist; 5 empty ones are skipped, not failed
    assert exists.item() < 0  # no tile is that large, and empty slots cannot make it hold
    program = loads(head + "goal g: forall t in tiles: always persists(t)\n").compile()
    atoms = [n for n in ir.walk(program.ir) if isinstance(n, ir.Atom) and n.name == "filled"]
    assert len({a.args[0] for a in atoms}) == 8
    assert ir.member_guard(atoms[0].args[0]) == ir.Atom("filled", atoms[0].args, ())
    assert ir.member_guard(ir.Const(1.0)) is None


def crossing_video(frames=12, size=48, touch_only=False):
    """Two green squares on one row moving towards each other; they merge into one blob, then part."""
    video = canvas(frames, size)
    for t in range(frames):
        step = 3 * t
        a, b = 2 + step, 38 - step
        if touch_only:
            a, b = min(a, 18), max(b, 24)  # they meet, touch for a while, then stop
        square(video, t, 20, a, 6)
        square(video, t, 20 if touch_only else 23, b, 6)  # crossing: offset, so they overlap partly
    return video


def test_tracking_keeps_identities_through_a_crossing():
    video = crossing_video()
    soft = P.color_mask(P.to_lab(video), (0, 255, 0), 12.0)
    tracking = O.track(soft, 0, 0.0, 2)
    x = tracking.centre[0, :, :, 0]
    assert (x[-1, 0] > x[-1, 1]).item()  # slot 0 started left and ends right: it passed the other one
    assert (x[1:, 0] >= x[:-1, 0] - 1e-6).all() and (x[1:, 1] <= x[:-1, 1] + 1e-6).all()
    source = (
        "objects sq = components(color(#00ff00), max=2) at start\n"
        'goal g: at end x(nth(sq, 1, by="x")) >= 0.6\n'
        "process p: forall s in sq: always speed(s) <= 0.15\n"
    )
    values = robustness(source, video)
    assert values["g"].item() > 0 and values["p"].item() > 0


def test_tracking_through_touching_blobs_does_not_swap():
    video = crossing_video(touch_only=True)
    soft = P.color_mask(P.to_lab(video), (0, 255, 0), 12.0)
    tracking = O.track(soft, 0, 0.0, 2)
    x = tracking.centre[0, :, :, 0]
    assert (x[:, 0] < x[:, 1]).all()


def occluded_video(frames=12, size=48):
    """A green card slides under a red card (hidden for several frames) and comes out on the far side."""
    video = canvas(frames, size)
    for t in range(frames):
        square(video, t, 20, 4 + 3 * t, 6)
        square(video, t, 14, 14, 20, RED)  # drawn on top: covers x in [14, 34)
    return video


def test_occlusion_hidden_under_a_card_then_reappearing():
    video = occluded_video()
    soft = P.color_mask(P.to_lab(video), (0, 255, 0), 12.0)
    tracking = O.track(soft, 0, 0.0, 1)
    hidden = (tracking.labels[0] > 0).flatten(1).sum(1) == 0
    assert hidden.any() and not hidden[-1]  # hidden for a while, tracked again afterwards
    head = "objects cards = components(color(#00ff00), max=1) at start\nregion top = color(#ff0000)\n"
    plain = robustness(head + "goal g: forall c in cards: always persists(c)\n", video)["g"]
    aware = robustness(head + "goal g: forall c in cards: always visible_or_covered(c, by=top, tol=0.6)\n", video)
    assert plain.item() < 0 < aware["g"].item()
    strict = robustness(head + "goal g: forall c in cards: always visible_or_covered(c, by=top, tol=0.05)\n", video)
    assert strict["g"].item() < 0  # it came out farther than 0.05 from where it went under


def test_visible_or_covered_fails_when_nothing_covers_it():
    video = occluded_video()
    video[0, :, :, 14:34, 14:34] = 1.0  # no card: the green square vanishes on white
    for t in range(video.shape[1]):
        if not 14 - 6 < 4 + 3 * t < 34:
            square(video, t, 20, 4 + 3 * t, 6)
    source = (
        "objects cards = components(color(#00ff00), max=1) at start\nregion top = color(#ff0000)\n"
        "goal g: forall c in cards: always visible_or_covered(c, by=top, tol=0.5)\n"
    )
    assert robustness(source, video)["g"].item() < 0


def test_ranks_and_regions_from_objects():
    video = canvas(frames=2, size=40)
    for t in range(2):
        square(video, t, 4, 4, 10)  # big, top left
        square(video, t, 28, 28, 4)  # small, bottom right
    head = "objects cs = components(color(#00ff00), max=3)\nobject big = largest(cs)\nobject small = smallest(cs)\n"
    values = robustness(
        head + "goal a: at end x(big) <= 0.25\n"
        "goal b: at end x(small) >= 0.7\n"
        "goal c: at end inside(small, right_of(big)) and inside(small, below(big))\n"
        "goal d: at end avoids(small, left_of(big)) and avoids(small, above(big))\n"
        "goal e: at end inside(small, around(small, 0.1)) and avoids(small, around(big, 0.1))\n"
        "goal f: at end inside(big, bbox(big)) and avoids(small, bbox(big, pad=0.1))\n"
        "goal n: at end distance(nearest(cs, point(0.9, 0.9)), small) <= 0.01\n"
        'goal k: at start not filled(nth(cs, 3, by="area")) and filled(nth(cs, 2, by="area"))\n',
        video,
    )
    assert all(v.item() > 0 for v in values.values()), values
    # exact values: x of the big square's centroid is 9 / 40; around() is a disc of radius r
    x_big = robustness(head + "goal a: at end x(big) <= 1\n", video)["a"].item()
    assert abs(x_big - (1 - 9 / 40)) < 1e-4
    disc = O.around(
        type("E", (), {"h": 40, "w": 40, "scale": 40.0, "video": video})(),
        torch.ones(1, 1, 40, 40),
        torch.tensor([[[0.5, 0.5]]]),
        0.2,
    )
    grid = (np.mgrid[0:40, 0:40] + 0.5) / 40
    inside = np.hypot(grid[1] - 0.5, grid[0] - 0.5) < 0.2 - 1 / 40
    outside = np.hypot(grid[1] - 0.5, grid[0] - 0.5) > 0.2 + 1 / 40
    assert (disc[0, 0].numpy()[inside] > 0.7).all() and (disc[0, 0].numpy()[outside] < 0.3).all()


def test_literal_lists_rank_at_the_first_frame():
    video = canvas(frames=3, size=40)
    for t in range(3):
        square(video, t, 4, 4, 4 + 4 * t)  # grows: small at the first frame
        square(video, t, 24, 24, 8, RED)
    source = (
        "object g = color(#00ff00)\nobject r = color(#ff0000)\nobjects both = [g, r]\n"
        "goal a: at end area(smallest(both)) >= 0.05\n"
    )
    assert robustness(source, video)["a"].item() > 0  # chosen at frame 0 (the green one), measured at the end


def test_frame_as_image():
    video = canvas(frames=3, size=24)
    square(video, 0, 2, 2, 6)
    square(video, 1, 2, 10, 6)
    square(video, 2, 2, 2, 6)  # back to where it started
    source = "image first = frame() at start\ngoal back: at end matches(first, box(0, 0, 1, 1), tol=1)\n"
    assert robustness(source, video)["back"].item() > 0
    source_mid = "image first = frame() at start\ngoal back: at 1 matches(first, box(0, 0, 1, 1), tol=1)\n"
    assert robustness(source_mid, video)["back"].item() < 0


def test_frame_needs_a_time_and_a_declaration():
    for text, code in (
        ("image f = frame()\ngoal g: at end matches(f, box(0, 0, 1, 1))\n", "E308"),
        ("goal g: at end matches(frame(), box(0, 0, 1, 1))\n", "E308"),
        ("objects xs = color(red)\ngoal g: true\n", "E308"),
        ('objects xs = components(color(red))\nobject o = nth(xs, 1, by="z")\ngoal g: at end persists(o)\n', "E309"),
        ("objects xs = components(color(red), max=2.5)\ngoal g: forall x in xs: persists(x)\n", "E309"),
        ("goal g: always area(color(red, hard=1)) >= 0\n", "E304"),
    ):
        checked = check(Source(text))
        assert code in {d.code for d in checked.errors}, (text, checked.errors)
    bad = check(
        Source('objects xs = components(color(red))\nobject o = nth(xs, 1, by="z")\ngoal g: at end persists(o)\n')
    )
    assert "'x', 'y', 'area'" in bad.errors[0].message


def test_hard_colour_is_binary_with_a_soft_gradient():
    video = canvas(frames=1, size=8)
    video[0, 0, :, :4] = torch.tensor([0.1, 0.9, 0.1])[:, None, None]
    video = video.requires_grad_(True)
    lab = P.to_lab(video)
    soft = P.color_mask(lab, (0, 255, 0), 12.0)
    hard = P.straight_through((soft > 0.5).to(soft.dtype), soft)
    assert set(hard.detach().unique().tolist()) <= {0.0, 1.0}
    hard.sum().backward()
    assert video.grad[0, 0, :, :, :4].abs().sum() > 0


def test_compact_support_makes_a_light_disc_on_white_single():
    size = 96
    video = canvas(frames=2, size=size)
    yy, xx = np.mgrid[0:size, 0:size]
    disc = torch.from_numpy(np.hypot(yy - 48, xx - 48) < 8)
    video[0, :, :, disc] = (torch.tensor([0xAA, 0xF0, 0xFF]) / 255.0)[:, None]
    source = "object d = color(#aaf0ff)\ngoal g: always single(d)\n"
    assert robustness(source, video)["g"].item() > 0
    # the mask is exactly 0 beyond 1.5 tol and the Gaussian up to tol
    delta = torch.linspace(0, 30, 61)
    lab = torch.stack([50 + delta, torch.zeros_like(delta), torch.zeros_like(delta)])
    from kornia.color import lab_to_rgb

    rgb = lab_to_rgb(lab.view(1, 3, 1, 61)).clamp(0, 1).view(1, 1, 3, 1, 61)
    grey = P.lab_of((119, 119, 119), rgb)[0, 0, :, 0, 0]
    d = (P.to_lab(rgb)[0, 0, :, 0] - grey[:, None]).norm(dim=0)
    m = P.color_mask(P.to_lab(rgb), (119, 119, 119), 10.0)[0, 0, 0]
    assert (m[d > 15.01] == 0).all()
    assert torch.allclose(m[d < 9.99], torch.exp(-(d[d < 9.99] ** 2) / 200), atol=1e-5)


def test_smooth_tends_to_exact_on_slots():
    video = crossing_video()
    source = "objects sq = components(color(#00ff00), max=3) at start\ngoal g: forall s in sq: always speed(s) <= 0.1\n"
    exact = robustness(source, video)["g"].item()
    gaps = [abs(robustness(source, video, "smooth", temperature=tau)["g"].item() - exact) for tau in (0.1, 0.01, 0.001)]
    assert gaps[0] > gaps[-1] and gaps[-1] < 0.01


def test_gradient_reaches_only_the_tracked_objects_pixels():
    video = canvas(frames=4, size=32)
    for t in range(4):
        square(video, t, 4, 4 + t, 5)
        square(video, t, 20, 20, 5)
    video.requires_grad_(True)
    source = 'objects sq = components(color(#00ff00), max=2) at start\ngoal g: at end x(nth(sq, 1, by="x")) >= 0.5\n'
    value = loads(source).compile(surrogate=None).robustness(video, "smooth")["g"]
    value.sum().backward()
    grad = video.grad[0, -1].abs().sum(0)
    assert grad[3:11, 6:14].sum() > 0  # the top-left square (grown one pixel) at the last frame
    assert grad[18:, 18:].sum() == 0  # the other square gets nothing
    assert video.grad[0, :-1].abs().sum() == 0  # the rule looks at the last frame only


def test_formatter_round_trips_components_and_frames():
    from ruledsl.formatter import format_source
    from ruledsl.parser import parse
    from ruledsl.source import Source

    text = (
        "objects tiles = components(color(#52c41a, hard=true), min_area=0.002, max=16) at start\n"
        "objects rings = components(color(red))\nimage first = frame() at start\n"
        "goal g: at end matches(first, bbox(largest(tiles), pad=0.01)) and (forall t in rings: persists(t))\n"
    )
    formatted = format_source(Source(text))
    assert parse(Source(formatted)) == parse(Source(text))


@pytest.mark.parametrize("frames", [1, 3])
def test_degenerate_collections_are_finite(frames):
    video = torch.rand(2, frames, 3, 9, 7).requires_grad_(True)
    source = (
        "objects cs = components(color(#808080, tol=40), min_area=0, max=3)\n"
        "goal g: forall c in cs: always visible_or_covered(c, by=around(largest(cs), 0.2)) and single(c)\n"
    )
    report = loads(source).compile()(video)
    report.loss.backward()
    assert torch.isfinite(report.loss) and torch.isfinite(video.grad).all()
