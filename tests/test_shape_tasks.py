"""The shape families (sliding, sort_size, cards): determinism, valid solutions, scorers vs corruptions,
any resolution, the folder layout and the CLI; the grid families' table stays as the reasoner knows it."""

import json
import math

import pytest
from typer.testing import CliRunner

from benchmarks.agreement import judge
from ruledsl.cli import app
from ruledsl.tasks import suite
from ruledsl.tasks.layout import program_params, read_task, write_task
from ruledsl.tasks.shape_families import SHAPE_FAMILIES, SHAPE_KINDS, generate_shapes
from ruledsl.tasks.shape_scorers import KINDS, score_shapes
from ruledsl.tasks.shapes import render_shapes, shape_solution_plan

SEEDS = range(6)
runner = CliRunner()


def truth(inst, size=(96, 96), frames=None):
    return render_shapes(inst, shape_solution_plan(inst, frames), size)


@pytest.mark.parametrize("family", SHAPE_FAMILIES)
def test_generation_is_deterministic_and_splits_differ(family, tmp_path):
    a = write_task(generate_shapes(family, 3, seed=7, split="test"), tmp_path / "a")
    b = write_task(generate_shapes(family, 3, seed=7, split="test"), tmp_path / "b")
    assert (a / "first_frame.png").read_bytes() == (b / "first_frame.png").read_bytes()
    assert (a / "metadata.json").read_text() == (b / "metadata.json").read_text()
    one = generate_shapes(family, 3, seed=7, split="test").to_dict()
    assert generate_shapes(family, 3, seed=8, split="test").to_dict() != one
    assert generate_shapes(family, 3, seed=7, split="train").to_dict() != one
    stored = json.loads((a / "metadata.json").read_text())
    again = json.loads(json.dumps(suite.from_dict(stored).to_dict()))
    assert again == {k: v for k, v in stored.items() if k not in ("format", "render")}


def test_ood_is_harder():
    def mean(family, split, measure):
        return sum(measure(generate_shapes(family, i, 0, split)) for i in SEEDS) / len(SEEDS)

    assert mean("sliding", "ood", lambda i: i.params["n"]) > mean("sliding", "test", lambda i: i.params["n"])
    moves = lambda i: len(i.params["solution"])  # noqa: E731
    assert mean("sliding", "ood", moves) > mean("sliding", "test", moves)
    assert mean("sort_size", "ood", lambda i: len(i.shapes)) > mean("sort_size", "test", lambda i: len(i.shapes))
    assert mean("cards", "ood", lambda i: len(i.shapes)) > mean("cards", "test", lambda i: len(i.shapes))


@pytest.mark.parametrize("split", ["train", "ood"])
def test_sliding_solutions_slide_one_tile_into_the_blank(split):
    for index in SEEDS:
        inst = generate_shapes("sliding", index, 0, split)
        p = inst.params
        n = p["n"]
        board = {tuple(rc): tile for tile, rc in p["start"].items()}
        assert board != {tuple(rc): tile for tile, rc in p["solved"].items()}, "scrambled"
        for tile, a, b in p["solution"]:
            a, b = tuple(a), tuple(b)
            assert board[a] == tile and b not in board and abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1
            board[b] = board.pop(a)
        assert board == {tuple(rc): tile for tile, rc in p["solved"].items()}
        assert len(board) == n * n - 1 and (n - 1, n - 1) not in board
        marks = {tuple(map(tuple, s.marks)) for s in inst.shapes.values()}
        assert len(marks) == len(inst.shapes) and len({s.color for s in inst.shapes.values()}) == 1
        moving = [
            sum(inst.path[m][t] != inst.path[m][t - 1] for m in inst.path) for t in range(1, inst.frames_needed())
        ]
        assert max(moving) == 1


@pytest.mark.parametrize("split", ["train", "ood"])
def test_sort_size_circles_never_touch_and_end_sorted(split):
    for index in SEEDS:
        inst = generate_shapes("sort_size", index, 0, split)
        radii = {n: s.size[0] / 2 for n, s in inst.shapes.items()}
        ordered = sorted(radii.values())
        assert all(b / a >= 1.3 - 1e-9 for a, b in zip(ordered, ordered[1:]))
        assert len({s.color for s in inst.shapes.values()}) < len(inst.shapes), "some share a colour"
        for t in range(inst.frames_needed()):
            for a in radii:
                for b in radii:
                    if a < b:
                        assert math.dist(inst.path[a][t], inst.path[b][t]) > radii[a] + radii[b]
        start = sorted(radii, key=lambda n: inst.path[n][0][0])
        end = sorted(radii, key=lambda n: inst.path[n][-1][0])
        assert [radii[n] for n in end] == ordered and [radii[n] for n in start] != ordered


@pytest.mark.parametrize("split", ["train", "ood"])
def test_cards_hide_one_card_under_a_card_drawn_above_it(split):
    for index in SEEDS:
        inst = generate_shapes("cards", index, 0, split)
        big, small = list(inst.shapes)[:2]
        assert inst.shapes[big].z > inst.shapes[small].z
        assert len(inst.params["hidden_frames"]) >= 2
        frames = render_shapes(inst, shape_solution_plan(inst), (96, 96))
        from ruledsl.tasks.scorers import color_mask

        hidden = color_mask(frames, inst.shapes[small].to_dict()["rgb"]).sum((1, 2))
        assert all(hidden[t] == 0 for t in inst.params["hidden_frames"]), "fully hidden"
        assert hidden[0] > 0 and hidden[-1] > 0


@pytest.mark.parametrize("family", SHAPE_FAMILIES)
@pytest.mark.parametrize("split", ["test", "ood"])
def test_scorer_passes_ground_truth_and_fails_every_corruption(family, split):
    for index in SEEDS:
        inst = generate_shapes(family, index, 0, split)
        meta = inst.to_dict()
        verdict = score_shapes(truth(inst), meta)
        assert verdict.passed and verdict.score == 1.0, (index, verdict.reasons)
        assert set(verdict.kinds.values()) == {"logical", "rendering"}
        for kind in SHAPE_KINDS[family]:
            bad = score_shapes(render_shapes(inst, suite.corrupt(inst, kind), (96, 96)), meta)
            assert not bad.passed and bad.reasons and bad.score < 1.0, (index, kind)


# The check each corruption is about fails (others may fail too).
EXPECTED = {
    ("sliding", "frozen"): "goal",
    ("sliding", "vanish"): "present",
    ("sliding", "wrong-end"): "goal",
    ("sliding", "teleport"): "steady",
    ("sliding", "jump"): "one_cell",
    ("sliding", "two-at-once"): "one_at_a_time",
    ("sort_size", "frozen"): "goal",
    ("sort_size", "vanish"): "present",
    ("sort_size", "wrong-end"): "goal",
    ("sort_size", "teleport"): "one_at_a_time",
    ("sort_size", "pass-through"): "apart",
    ("sort_size", "resize"): "present",  # a circle of a colour at a size no circle of that colour has
    ("cards", "frozen"): "goal",
    ("cards", "vanish"): "covered",
    ("cards", "wrong-end"): "goal",
    ("cards", "teleport"): "steady",
    ("cards", "z-swap"): "covered",
}


@pytest.mark.parametrize("family, kind", sorted(EXPECTED))
def test_each_corruption_breaks_its_own_check(family, kind):
    for index in range(3):
        inst = generate_shapes(family, index, 0, "test")
        verdict = score_shapes(render_shapes(inst, suite.corrupt(inst, kind), (96, 96)), inst.to_dict())
        assert verdict.checks[EXPECTED[family, kind]] < 1.0, (index, verdict.checks)
        assert set(verdict.checks) == set(KINDS[family])
    if kind == "two-at-once":  # the end is solved and every move legal: only the timing is wrong
        failed = {c for c, v in verdict.checks.items() if v < 1}
        assert failed == {"one_at_a_time"}, verdict.reasons


@pytest.mark.parametrize("family", SHAPE_FAMILIES)
def test_any_resolution_and_length(family):
    for index, split in ((0, "test"), (1, "ood")):
        inst = generate_shapes(family, index, 0, split)
        meta = inst.to_dict()
        for size, frames in (((64, 64), None), ((128, 128), 60), ((80, 120), None), ((120, 80), None)):
            assert score_shapes(truth(inst, size, frames), meta).passed, (size, index)
            frozen = render_shapes(inst, suite.corrupt(inst, "frozen", frames), size)
            assert not score_shapes(frozen, meta).passed


@pytest.mark.parametrize("family", SHAPE_FAMILIES)
def test_folder_round_trip_and_lossy_ground_truth(family, tmp_path):
    inst = generate_shapes(family, 1, 0, "test")
    folder = write_task(inst, tmp_path / "00000")
    task = read_task(folder)
    assert task.family == family and task.first_frame.shape == (96, 96, 3)
    assert json.dumps(task.instance.to_dict()) == json.dumps(inst.to_dict())
    video = task.ground_truth()
    assert video.shape[0] == task.metadata["render"]["frames"] == inst.frames_needed()
    assert suite.score(video, task.metadata).passed  # survives the lossy mp4 round trip
    params = program_params(task.metadata, (96, 96))
    assert params == inst.program_params


def test_cli_generate_score_corrupt_list(tmp_path):
    out = tmp_path / "sliding"
    result = runner.invoke(app, ["tasks", "generate", "sliding", "--n", "2", "--split", "ood", "--out", str(out)])
    assert result.exit_code == 0, result.output
    task = out / "00001"
    good = runner.invoke(app, ["tasks", "score", str(task), str(task / "ground_truth.mp4"), "--json"])
    assert good.exit_code == 0 and json.loads(good.stdout)["kinds"]["goal"] == "logical"
    bad_video = tmp_path / "jump.gif"
    made = runner.invoke(app, ["tasks", "corrupt", str(task), "--kind", "jump", "--out", str(bad_video)])
    assert made.exit_code == 0, made.output
    bad = runner.invoke(app, ["tasks", "score", str(task), str(bad_video)])
    assert bad.exit_code == 1 and "further than one cell" in bad.stdout
    wrong_kind = runner.invoke(app, ["tasks", "corrupt", str(task), "--kind", "wall-crossing", "--out", str(bad_video)])
    assert wrong_kind.exit_code == 2 and "jump" in wrong_kind.stderr  # names the family's kinds
    listing = runner.invoke(app, ["tasks", "list"])
    assert listing.exit_code == 0 and "sort_size" in listing.stdout and "z-swap" in listing.stdout
    unknown = runner.invoke(app, ["tasks", "generate", "tetris", "--out", str(tmp_path / "t")])
    assert unknown.exit_code == 2 and "cards" in unknown.stderr


def test_reasoner_and_bench_keep_the_grid_families():
    from ruledsl.runtime.reasoner import FAMILY_IDS
    from ruledsl.tasks.families import FAMILIES

    grid = ["maze", "grid_path", "avoid", "two_targets", "key_door"]
    assert list(FAMILIES) == grid == list(FAMILY_IDS)
    assert suite.ALL_FAMILIES == (*grid, "sliding", "sort_size", "cards")


@pytest.mark.parametrize("family", SHAPE_FAMILIES)
@pytest.mark.parametrize("split", ["test", "ood"])
def test_example_programs_agree_with_scorers(family, split):
    # examples/<family>.rule vs the independent scorer on the ground truth and every corruption
    # (benchmarks/agreement.py runs 30 instances per split).
    outcomes = judge(family, range(2), split=split)
    assert {o.case for o in outcomes} == {"ground truth", *SHAPE_KINDS[family]}
    disagreements = [o for o in outcomes if not o.agree]
    assert not disagreements, [(o.case, o.index, o.scorer, o.program, o.failed_rules, o.reasons) for o in disagreements]
