"""Every built-in lowered by the compiler: float64 gradcheck, and finite results on degenerate inputs."""

import pytest
import torch

from ruledsl import loads
from ruledsl.compiler import primitives as Pr
from ruledsl.signatures import BUILTINS

HEAD = """
object a = color(#d04030, tol=40)
object b = color(#3050c0, tol=40)
region r = color(#40a040, tol=40)
region s = color(#40a040, tol=40) at start
image target = file("{image.name}")
image first = frame() at start
objects cs = components(color(#d04030, tol=40), min_area=0, max=2)
objects pair = [a, b]
goal g: at end inside(a, r)
"""

# One formula per built-in (selectors, points and measures through a predicate or comparison).
USES = {
    "color": "always area(color(#808080, tol=30)) >= 0",
    "box": "always inside(a, box(0.1, 0.1, 0.9, 0.9), frac=0.3)",
    "grow": "always inside(a, grow(r, 0.2), frac=0.3)",
    "shrink": "always avoids(a, shrink(r, 0.1))",
    "centroid": "always distance(centroid(a), b) <= 0.5",
    "point": "always distance(a, point(0.5, 0.5)) <= 0.3",
    "file": "at end matches(target, box(0, 0, 1, 1), tol=30)",
    "area": "always area(a) >= 0.2",
    "overlap": "always overlap(a, r) + overlap(b, r) <= 1.5",
    "speed": "always speed(a) <= 0.1",
    "distance": "always distance(a, b) >= 0.1",
    "x": "always x(a) <= 0.5",
    "y": "always y(b) >= 0.5",
    "count": "always count(a) <= 3",
    "abs": "always abs(x(a) - 0.5) <= 0.2",
    "persists": "always persists(a)",
    "keeps_area": "always keeps_area(a)",
    "keeps_color": "always keeps_color(a)",
    "single": "always single(a)",
    "unchanged": "always unchanged(s)",
    "inside": "always inside(a, r, frac=0.3)",
    "avoids": "always avoids(a, b, frac=0.3)",
    "touches": "eventually touches(a, s, within=0.1)",
    "axis_aligned": "always axis_aligned(a)",
    "grid_step": "always grid_step(a, 0.25)",
    "matches": "at end matches(target, r, tol=30)",
    "components": "forall t in cs: always area(t) >= 0.05",
    "largest": "always area(largest(pair)) >= 0.1",
    "smallest": "always area(smallest(cs)) >= 0.1",
    "nth": 'always x(nth(pair, 2, by="x")) <= 0.5',
    "nearest": "always distance(nearest(pair, point(0.5, 0.5)), b) <= 0.5",
    "filled": "always filled(largest(cs)) and area(a) >= 0.1",
    "around": "always inside(a, around(b, 0.3), frac=0.3)",
    "bbox": "always inside(a, bbox(b, pad=0.1), frac=0.3)",
    "left_of": "always inside(a, left_of(b), frac=0.3)",
    "right_of": "always inside(a, right_of(b), frac=0.3)",
    "above": "always inside(a, above(b), frac=0.3)",
    "below": "always inside(a, below(b), frac=0.3)",
    "frame": "at end matches(first, box(0, 0, 1, 1), tol=30)",
    "visible_or_covered": "always visible_or_covered(a, by=r)",
}


def test_every_builtin_is_covered():
    assert set(USES) == set(BUILTINS)


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    import imageio.v3 as iio
    import numpy as np

    path = tmp_path_factory.mktemp("img") / "target.png"
    rng = np.random.default_rng(0)
    iio.imwrite(path, (rng.random((5, 4, 3)) * 255).astype("uint8"))
    return path


def compiled(use: str, image_path, **options):
    source = HEAD.format(image=image_path) + f"process p: {use}\n"
    return loads(source, name=str(image_path.parent / "t.rule")).compile(surrogate=None, **options)


@pytest.mark.parametrize("name", sorted(USES))
def test_gradcheck_float64(name, image_path):
    """Gradient of the smooth robustness w.r.t. frames 1.. (frame 0 is the fixed reference, detached)."""
    program = compiled(USES[name], image_path, temperature=0.3)
    generator = torch.Generator().manual_seed(0)
    first = torch.rand(1, 1, 3, 6, 5, generator=generator, dtype=torch.float64) * 0.6 + 0.2
    rest = (torch.rand(1, 3, 3, 6, 5, generator=generator, dtype=torch.float64) * 0.6 + 0.2).requires_grad_(True)

    def robustness(frames):
        return program.robustness(torch.cat([first, frames], dim=1), "smooth")["p"]

    value = robustness(rest)
    assert torch.isfinite(value).all()
    if BUILTINS[name].differentiable:
        assert torch.autograd.gradcheck(robustness, (rest,), eps=1e-6, atol=1e-5, rtol=1e-3)


DEGENERATE = {
    "one frame": torch.rand(1, 1, 3, 8, 8),
    "all black": torch.zeros(2, 4, 3, 8, 8),
    "all white": torch.ones(1, 4, 3, 8, 8),
    "one pixel": torch.rand(1, 3, 3, 1, 1),
    "wide": torch.rand(1, 2, 3, 4, 300),
    "large": torch.rand(1, 2, 3, 240, 416),
}


@pytest.mark.parametrize("case", DEGENERATE)
def test_degenerate_inputs_give_finite_loss_and_gradient(case, image_path):
    source = HEAD.format(image=image_path) + "".join(f"process p_{n}: {u}\n" for n, u in USES.items())
    program = loads(source, name=str(image_path.parent / "t.rule")).compile()
    video = DEGENERATE[case].clone().requires_grad_(True)
    report = program(video)
    report.loss.backward()
    assert torch.isfinite(report.loss)
    assert torch.isfinite(video.grad).all()
    for rule in report.rules.values():
        assert torch.isfinite(rule.robustness).all() and torch.isfinite(rule.trace).all()


def test_absent_entity_fails_instead_of_nan(image_path):
    program = loads(
        "object a = color(#ff0000)\nregion g = color(#00ff00) at start\n"
        "goal reach: at end inside(a, g)\nprocess p: always persists(a)\n"
    ).compile()
    report = program(torch.ones(1, 3, 3, 8, 8))  # white: neither red nor green anywhere
    assert not bool(report.satisfied[0])
    assert report.failed_rules() == ["reach", "p"]


def test_colour_mask_is_one_at_the_colour_and_falls_with_delta_e():
    video = torch.tensor([[1.0, 0, 0], [0.9, 0.1, 0.1], [0, 0, 1.0]]).view(1, 1, 3, 3, 1).permute(0, 1, 3, 2, 4)
    video = video.reshape(1, 1, 3, 3, 1)
    mask = Pr.color_mask(Pr.to_lab(video), (255, 0, 0), 12.0)[0, 0, :, 0]
    assert mask[0] > 0.999 and 0.01 < mask[1] < 0.99 and mask[2] < 1e-6


def test_count_and_distance_field():
    mask = torch.zeros(1, 1, 10, 10)
    mask[0, 0, 1:3, 1:3] = 1
    mask[0, 0, 6:9, 5:9] = 1
    assert Pr.count_components(mask).item() == 2
    field = Pr.distance_field(mask)
    assert field[0, 0, 1, 1] == 0 and abs(field[0, 0, 4, 1].item() - 0.2) < 1e-6  # two pixels below, in L-units
    assert (Pr.distance_field(torch.zeros(1, 1, 5, 5)) == 2).all()


def test_distance_field_matches_brute_force_on_a_batch_with_repeated_and_empty_masks():
    # Frames of a [B, T] batch, some masks repeated (distinct masks are transformed once), one empty.
    gen = torch.Generator().manual_seed(0)
    masks = (torch.rand(3, 12, 9, generator=gen) > 0.9).float()
    masks[2] = 0
    order = torch.tensor([[0, 1, 0], [2, 1, 1]])
    field = Pr.distance_field(masks[order])
    ys, xs = torch.meshgrid(torch.arange(12.0), torch.arange(9.0), indexing="ij")
    for b in range(2):
        for t in range(3):
            mask = masks[order[b, t]]
            if not mask.any():
                assert (field[b, t] == 2).all()
                continue
            on = mask.nonzero().float()
            d = ((ys[..., None] - on[:, 0]) ** 2 + (xs[..., None] - on[:, 1]) ** 2).amin(-1).sqrt() / 12
            assert torch.allclose(field[b, t], d, atol=1e-6)


def test_inside_keeps_every_verdict_and_its_miss_grows_with_the_distance():
    """A red square sliding away from a green goal: the margin is the overlap's where it holds, has the
    overlap's sign everywhere, and keeps falling once the square is clear of the goal (where the
    overlap alone is flat at -frac)."""
    program = loads(
        "object a = color(#ff0000)\nregion g = color(#00ff00) at start\ngoal reach: at end inside(a, g, frac=0.5)\n"
    ).compile()
    videos = []
    for col in range(0, 24, 2):
        video = torch.ones(2, 3, 32, 32)
        video[:, :, 8:16, 0:8] = torch.tensor([0.0, 1.0, 0.0])[:, None, None]
        video[1, :, 8:16, col : col + 8] = torch.tensor([1.0, 0.0, 0.0])[:, None, None]
        videos.append(video)
    video = torch.stack(videos)
    margin = program.robustness(video)["reach"]
    agent = (video[:, 1] == torch.tensor([1.0, 0.0, 0.0])[:, None, None]).all(1).float()[:, None]
    goal = (video[:, 0] == torch.tensor([0.0, 1.0, 0.0])[:, None, None]).all(1).float()[:, None]
    overlap = Pr.overlap_fraction(agent, goal)[:, 0] - 0.5
    assert torch.equal(margin > 0, overlap > 0) and torch.equal(margin < 0, overlap < 0)
    held = overlap >= 0
    assert torch.allclose(margin[held], overlap[held], atol=1e-4)
    assert (margin[1:] < margin[:-1]).all()
    assert (overlap[-4:] == -0.5).all() and margin[-1] < margin[-4] - 0.1  # flat overlap, falling margin
