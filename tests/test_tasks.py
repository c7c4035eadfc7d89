"""The task suite: determinism, solvable instances, scorers vs corruptions, layout reader, CLI, agreement."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from benchmarks.agreement import judge
from ruledsl.cli import app
from ruledsl.tasks import FAMILIES, generate
from ruledsl.tasks.corrupt import KINDS, corrupt
from ruledsl.tasks.families import neighbours
from ruledsl.tasks.layout import TaskFolderError, read_task, write_task
from ruledsl.tasks.render import render, solution_plan
from ruledsl.tasks.scorers import score_video
from ruledsl.video import write_frames

SEEDS = range(20)
runner = CliRunner()


@pytest.mark.parametrize("family", FAMILIES)
def test_generation_is_deterministic(family, tmp_path):
    a = write_task(generate(family, 3, seed=7, split="test"), tmp_path / "a")
    b = write_task(generate(family, 3, seed=7, split="test"), tmp_path / "b")
    assert (a / "first_frame.png").read_bytes() == (b / "first_frame.png").read_bytes()
    assert (a / "metadata.json").read_text() == (b / "metadata.json").read_text()
    other = generate(family, 3, seed=8, split="test").to_dict()
    assert other != generate(family, 3, seed=7, split="test").to_dict()
    assert generate(family, 3, seed=7, split="train").to_dict() != generate(family, 3, seed=7, split="test").to_dict()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("split", ["train", "ood"])
def test_every_solution_is_valid_by_its_family_rules(family, split):
    for index in SEEDS:
        inst = generate(family, index, 0, split)
        forbidden = {c for role in inst.forbidden for c in inst.static[role]}
        for name, mover in inst.movers.items():
            path = mover.path
            assert all(b in neighbours(a) for a, b in zip(path, path[1:])), "one grid step per move"
            assert not set(path) & forbidden, "never on a forbidden cell"
            assert path[-1] in inst.static[inst.targets[name]], "ends on its target"
        if family == "avoid":
            obstacles = set(inst.static["obstacles"])
            assert all(not set(neighbours(c, diagonal=True)) & obstacles for c in inst.movers["agent"].path)
        if family == "key_door":
            key, door = inst.static["key"][0], inst.static["door"][0]
            path = inst.movers["agent"].path
            near = lambda c, x: c == x or c in neighbours(x, diagonal=True)  # noqa: E731
            first_key = next(i for i, c in enumerate(path) if near(c, key))
            first_door = next(i for i, c in enumerate(path) if near(c, door))
            assert first_key < first_door
        if family == "two_targets":
            plan = solution_plan(inst)
            for a, b in zip(*plan.positions.values()):
                assert max(abs(a[0] - b[0]), abs(a[1] - b[1])) >= 2, "boxes never touch"
        if split == "ood":
            assert inst.rows >= max(s.get("size", 2 * s.get("n", 0) + 1) for s in FAMILIES[family].splits["train"])


@pytest.mark.parametrize("family", FAMILIES)
def test_scorer_passes_ground_truth_and_fails_every_corruption(family):
    for index in SEEDS:
        inst = generate(family, index, 0, "test")
        meta = inst.to_dict()
        truth = score_video(render(inst, solution_plan(inst)), meta)
        assert truth.passed and truth.score == 1.0, (index, truth.reasons)
        for kind in KINDS:
            verdict = score_video(render(inst, corrupt(inst, kind)), meta)
            assert not verdict.passed and verdict.reasons and verdict.score < 1.0, (index, kind)


def test_scorer_is_resolution_and_length_independent():
    inst = generate("maze", 0, 0, "test")
    for size, frames in (((48, 80), 16), ((200, 200), 30)):
        meta = inst.to_dict()
        assert score_video(render(inst, solution_plan(inst, frames), size), meta).passed
        assert not score_video(render(inst, corrupt(inst, "teleport", frames), size), meta).passed


def test_reader_on_generated_and_foreign_folders(tmp_path):
    inst = generate("key_door", 1, 0, "test")
    folder = write_task(inst, tmp_path / "00000", size=(48, 48))
    task = read_task(folder)
    assert task.family == "key_door" and task.prompt == inst.prompt
    assert task.first_frame.shape == (48, 48, 3) and task.final_frame is not None
    assert task.instance.to_dict() == inst.to_dict()
    truth = task.ground_truth()
    assert truth.shape[0] == task.metadata["render"]["frames"]
    assert score_video(truth, task.metadata).passed  # survives the lossy mp4 round trip
    # A real benchmark's folder: only the first frame and the prompt.
    foreign = tmp_path / "vbvr" / "00007"
    foreign.mkdir(parents=True)
    write_frames(foreign / "first_frame.png", np.zeros((1, 20, 30, 3), np.uint8))
    (foreign / "prompt.txt").write_text("Solve it.\n")
    task = read_task(foreign)
    assert task.metadata is None and task.final_frame is None and task.prompt == "Solve it."
    (foreign / "prompt.txt").unlink()
    with pytest.raises(TaskFolderError, match="missing prompt.txt"):
        read_task(foreign)


def test_cli_generate_score_corrupt(tmp_path):
    out = tmp_path / "data" / "grid"
    result = runner.invoke(app, ["tasks", "generate", "grid_path", "--n", "2", "--seed", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "00000").iterdir()) == [
        "final_frame.png",
        "first_frame.png",
        "ground_truth.mp4",
        "metadata.json",
        "prompt.txt",
    ]
    again = runner.invoke(app, ["tasks", "generate", "grid_path", "--n", "2", "--out", str(out)])
    assert again.exit_code == 2 and "--force" in again.stderr
    task = out / "00001"
    good = runner.invoke(app, ["tasks", "score", str(task), str(task / "ground_truth.mp4"), "--json"])
    assert good.exit_code == 0 and json.loads(good.stdout)["passed"] is True
    bad_video = tmp_path / "bad.gif"
    made = runner.invoke(app, ["tasks", "corrupt", str(task), "--kind", "stops-early", "--out", str(bad_video)])
    assert made.exit_code == 0, made.output
    bad = runner.invoke(app, ["tasks", "score", str(task), str(bad_video)])
    assert bad.exit_code == 1 and "FAIL" in bad.stdout and "does not end on the target" in bad.stdout
    assert (
        runner.invoke(
            app, ["tasks", "corrupt", str(task), "--kind", "melt", "--out", str(tmp_path / "x.gif")]
        ).exit_code
        == 2
    )
    assert runner.invoke(app, ["tasks", "score", str(tmp_path), str(bad_video)]).exit_code == 2
    assert runner.invoke(app, ["tasks", "list"]).exit_code == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_rule_programs_agree_with_scorers(family):
    disagreements = [o for o in judge(family, range(3)) if not o.agree]
    assert not disagreements, [(o.case, o.index, o.scorer, o.program, o.failed_rules, o.reasons) for o in disagreements]
