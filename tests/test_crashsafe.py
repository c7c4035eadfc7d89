"""`optimize` never loses a run and never touches what is not its own (issue 12, D11-D18): per-step atomic
checkpoints, kill-and-resume to the same curve, seeded runs, the out-folder guard, task metadata checks."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import tiny_model
from safetensors.torch import load_file
from typer.testing import CliRunner

import ruledsl
from ruledsl.cli import app
from ruledsl.runtime.generators import Condition, ReasonerGenerator
from ruledsl.runtime.loop import Budget, Settings, optimize
from ruledsl.runtime.run import CHECKPOINT, MANIFEST, checkpoint_bytes, load_resume, read_checkpoint, write_run
from ruledsl.tasks import generate
from ruledsl.tasks.layout import MAX_FRAMES, TaskMetadataError, program_params, read_task, write_task

runner = CliRunner()
NEVER_HOLDS = "object agent = color(#ff0000, tol=40)\ngoal g: at end area(agent) >= 0.99\n"
TINY = ["--steps", "6", "--grad-steps", "1", "--rank", "4", "--seed", "5"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny reasoner on disk, a 4-frame maze task, a rule that never holds (so runs use their budget)."""
    root = tmp_path_factory.mktemp("crashsafe")
    tiny_model().save_pretrained(root / "model")
    task = write_task(generate("maze", 0, 0, "test"), root / "task", size=(32, 32), frames=4)
    rules = root / "r.rule"
    rules.write_text(NEVER_HOLDS)
    return root, task, rules


def command(setup, out, *extra):
    root, task, rules = setup
    return ["optimize", str(rules), "--task", str(task), "--out", str(out), "--model", str(root / "model"), *extra]


def run_cli(args):
    result = runner.invoke(app, args)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def curve_of(out):
    """Everything in report.json that an identical run must reproduce exactly (wall times excluded)."""
    report = json.loads((out / "report.json").read_text())
    curve = [{k: v for k, v in point.items() if k != "seconds"} for point in report["curve"]]
    return curve, {
        k: report[k] for k in ("nfe", "steps", "best_step", "best_seed", "rules", "stop_reason", "solved_after")
    }


def assert_same_run(a, b):
    assert curve_of(a) == curve_of(b)
    lora_a, lora_b = load_file(str(a / "lora.safetensors")), load_file(str(b / "lora.safetensors"))
    assert lora_a.keys() == lora_b.keys() and all(torch.equal(lora_a[k], lora_b[k]) for k in lora_a)
    state_a, state_b = read_checkpoint(a / CHECKPOINT), read_checkpoint(b / CHECKPOINT)
    assert state_a.step == state_b.step and torch.equal(state_a.best_video, state_b.best_video)
    assert torch.equal(state_a.rng["cpu"], state_b.rng["cpu"]) and state_a.tensors.keys() == state_b.tensors.keys()
    assert all(torch.equal(state_a.tensors[k], state_b.tensors[k]) for k in state_a.tensors)  # LoRA, AdamW moments


# A real `ruledsl optimize` in a child process; only the checkpoint write is wrapped, to kill the process
# at a chosen moment (mid-write: half of the new checkpoint on disk, not yet renamed) or to slow it down
# so that the parent's SIGKILL lands at an arbitrary moment.
CHILD = r"""
import os, signal, sys, time
import ruledsl.runtime.run as run

mode, at = sys.argv[1], int(sys.argv[2])
original, count = run.write_atomic, [0]

def write_atomic(path, data, **options):
    if path.name == "checkpoint.safetensors":
        count[0] += 1
        if mode == "mid-write" and count[0] == at:
            run._temporary(path).write_bytes(data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "slow":
            time.sleep(0.3)  # the step is computed but not yet on disk
    original(path, data, **options)

run.write_atomic = write_atomic
from ruledsl.cli import app
sys.argv = ["ruledsl", *sys.argv[3:]]
app()
"""


def start_child(args, mode, at, log):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "wb") as stream:  # a file, not a pipe: a full pipe would stall the child
        return subprocess.Popen(
            [sys.executable, "-c", CHILD, mode, str(at), *args], env=env, stdout=stream, stderr=stream
        )


@pytest.fixture(scope="module")
def reference(setup):
    """The uninterrupted run, per method, that every killed-and-resumed one must reproduce."""
    runs = {}

    def run(method):
        if method not in runs:
            runs[method] = setup[0] / f"reference-{method}"
            assert run_cli(command(setup, runs[method], *TINY, "--method", method)).exit_code == 1
        return runs[method]

    return run


def points(history):
    return [{k: v for k, v in vars(step).items() if k != "seconds"} for step in history]


@pytest.mark.parametrize(("moment", "method"), [("mid-write", "lora"), ("any", "tto"), ("sigterm", "tto")])
def test_sigkill_loses_at_most_the_step_in_flight_and_resume_gives_the_uninterrupted_curve(
    setup, reference, moment, method
):
    root, expected = setup[0], reference(method)
    killed, log = root / f"killed-{moment}", root / f"child-{moment}.log"
    args = command(setup, killed, *TINY, "--method", method)
    child = start_child(args, moment if moment == "mid-write" else "slow", 4, log)
    if moment != "mid-write":  # a signal from outside once 2 steps are on disk, wherever the child then is
        deadline = time.monotonic() + 120
        while not (killed / CHECKPOINT).exists() or read_checkpoint(killed / CHECKPOINT).step < 2:
            assert child.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        time.sleep(0.1)
        child.send_signal(signal.SIGKILL if moment == "any" else signal.SIGTERM)
    code = child.wait(timeout=120)
    saved = read_checkpoint(killed / CHECKPOINT)
    assert (killed / MANIFEST).exists() and 2 <= saved.step < 6
    complete = read_checkpoint(expected / CHECKPOINT).history
    assert points(saved.history) == points(complete)[: len(saved.history)] and len(saved.history) < len(complete)
    if moment == "sigterm":  # stopped like Ctrl-C: the outputs of the steps so far are written
        assert code == 1 and "continue it with --resume" in log.read_text()
        report = json.loads((killed / "report.json").read_text())
        assert report["interrupted"] and len(report["curve"]) == len(saved.history)
    else:
        assert code == -signal.SIGKILL and not (killed / "report.json").exists(), log.read_text()
    if moment == "mid-write":  # the 4th write (after step 2) was cut short: step 2 is the one lost
        assert saved.step == 2 and [s.index for s in saved.history] == [-1, 0, 1]
        assert (killed / "state" / ".checkpoint.tmp.safetensors").exists()
    resumed = run_cli(args + ["--resume"])
    assert resumed.exit_code == 1, resumed.output
    assert_same_run(expected, killed)
    assert not (killed / "state" / ".checkpoint.tmp.safetensors").exists()


@pytest.fixture()
def tiny():
    """The tiny random reasoner (3 sampling steps) and a random first frame."""
    frame = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))
    return ReasonerGenerator(model=tiny_model(), steps=3), Condition(frame, "prompt", "maze", frames=4)


def losses(result):
    return points(result.history)


def test_same_seed_gives_the_same_run_whatever_the_callers_rng(tiny):
    generator, condition = tiny
    program = ruledsl.loads(NEVER_HOLDS).compile()
    settings = Settings(rank=4, grad_steps=1, seed=3)
    torch.manual_seed(1)
    first = optimize(program, condition, generator, Budget(steps=3), settings)
    torch.manual_seed(2)  # peft draws the LoRA A matrices at random: not from this stream
    caller_state = torch.get_rng_state()
    second = optimize(program, condition, generator, Budget(steps=3), settings)
    assert torch.equal(torch.get_rng_state(), caller_state)  # the run's draws leave the caller's stream alone
    assert losses(first) == losses(second) and torch.equal(first.best_video, second.best_video)
    # tto's best may be a seed searched on the frozen model, which keeps no LoRA: then neither has one
    first_lora, second_lora = first.lora or {}, second.lora or {}
    assert first_lora.keys() == second_lora.keys() and all(
        torch.equal(first_lora[k], second_lora[k]) for k in first_lora
    )
    other = optimize(program, condition, generator, Budget(steps=3), Settings(rank=4, grad_steps=1, seed=4))
    assert losses(other) != losses(first)


@pytest.mark.parametrize("where", ["display", "update", "rollout"])
@pytest.mark.parametrize("method", ["lora", "noise", "tto"])
def test_resume_after_ctrl_c_never_repeats_a_step(tiny, tmp_path, monkeypatch, where, method):
    generator, condition = tiny
    program = ruledsl.loads(NEVER_HOLDS).compile()
    settings, budget = Settings(method=method, rank=4, grad_steps=1, plateau=100), Budget(steps=6)
    uninterrupted = optimize(program, condition, generator, budget, settings)
    # Ctrl-C while step 2 is shown, while its update is applied, or while its video is sampled (the base
    # sample is rollout 1; lora and noise roll out once a step, tto twice: its search, then its gradient).
    optimizer = torch.optim.Adam if method == "noise" else torch.optim.AdamW
    target = {"update": 3, "rollout": 4}
    for name, owner, attribute in (("update", optimizer, "step"), ("rollout", ReasonerGenerator, "rollout")):
        original, calls = getattr(owner, attribute), [0]

        def interrupting(*args, _original=original, _calls=calls, _name=name, **kwargs):
            _calls[0] += 1
            if where == _name and _calls[0] == target[_name]:
                raise KeyboardInterrupt
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, attribute, interrupting)

    def on_step(step, report):
        if where == "display" and step.index == 2:
            raise KeyboardInterrupt

    stopped = optimize(program, condition, generator, budget, settings, on_step=on_step)
    monkeypatch.undo()
    assert stopped.interrupted and stopped.stop_reason == "interrupted"
    assert points(stopped.history) == points(uninterrupted.history)[: len(stopped.history)]  # nothing repeated
    if method != "tto":  # a step cut short is dropped whole; one shown was committed first
        assert [s.index for s in stopped.history] == ([-1, 0, 1, 2] if where == "display" else [-1, 0, 1])
    write_run(tmp_path / "run", stopped, "r.rule", None, "tiny", settings, budget, {})
    resumed = optimize(program, condition, generator, budget, settings, resume=load_resume(tmp_path / "run"))
    assert points(resumed.history) == points(uninterrupted.history) and resumed.nfe == uninterrupted.nfe
    assert resumed.phases == uninterrupted.phases and len({s.index for s in resumed.history if s.index >= 0}) == 6
    if method != "tto":  # 6 steps for a 6-step budget, each once
        assert [s.index for s in resumed.history] == list(range(-1, 6))
        assert resumed.nfe == generator.nfe(0) + 6 * generator.nfe(1 if method == "lora" else 3)
    assert resumed.lora is None or all(torch.equal(resumed.lora[k], uninterrupted.lora[k]) for k in resumed.lora)


def test_resume_of_a_finished_run_stays_finished(tiny):
    generator, condition = tiny
    program = ruledsl.loads("object agent = color(#ff0000, tol=40)\ngoal g: always area(agent) <= 1\n").compile()
    done = optimize(program, condition, generator, Budget(steps=4), Settings(rank=4, grad_steps=1))
    assert done.solved and done.checkpoint.finished
    again = optimize(
        program, condition, generator, Budget(steps=8), Settings(rank=4, grad_steps=1), resume=done.checkpoint
    )
    assert losses(again) == losses(done) and again.stop_reason == done.stop_reason


def test_resume_refuses_another_model(tiny):
    generator, condition = tiny
    from ruledsl.runtime.loop import ResumeMismatchError

    program = ruledsl.loads(NEVER_HOLDS).compile()
    first = optimize(program, condition, generator, Budget(steps=1), Settings(rank=4, grad_steps=1))
    other = ReasonerGenerator(model=tiny_model(seed=9), steps=3)
    with pytest.raises(ResumeMismatchError, match="differ from the run being resumed"):
        optimize(program, condition, other, Budget(steps=2), Settings(rank=4, grad_steps=1), resume=first.checkpoint)


@pytest.fixture()
def finished_run(setup, tmp_path):
    out = tmp_path / "run"
    assert run_cli(command(setup, out, "--steps", "2", "--grad-steps", "1", "--rank", "4")).exit_code == 1
    return out


def remove_state(out):
    for path in (out / "state").iterdir():
        path.unlink()
    (out / "state").rmdir()


def foreign_lora(out):
    saved = read_checkpoint(out / CHECKPOINT)
    saved.tensors = {key.replace("lora_A", "lora_X"): value for key, value in saved.tensors.items()}
    (out / CHECKPOINT).write_bytes(checkpoint_bytes(saved))


DAMAGE = {
    "no state folder": remove_state,
    "LoRA of another model": foreign_lora,
    "empty checkpoint": lambda out: (out / CHECKPOINT).write_bytes(b""),
    "truncated checkpoint": lambda out: (out / CHECKPOINT).write_bytes((out / CHECKPOINT).read_bytes()[:300]),
    "checkpoint of garbage": lambda out: (out / CHECKPOINT).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}"),
    "damaged manifest": lambda out: (out / MANIFEST).write_text("{"),
    "no manifest": lambda out: (out / MANIFEST).unlink(),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_resume_of_a_damaged_run_folder_is_a_clear_error(setup, finished_run, damage):
    DAMAGE[damage](finished_run)
    before = {p: p.read_bytes() for p in finished_run.rglob("*") if p.is_file()}
    result = run_cli(command(setup, finished_run, "--steps", "4", "--grad-steps", "1", "--rank", "4", "--resume"))
    assert result.exit_code == 2 and result.stderr.startswith("error: "), result.output
    assert ("--force" in result.stderr) == (damage != "no manifest")
    assert {p: p.read_bytes() for p in finished_run.rglob("*") if p.is_file()} == before


def test_resume_ignores_a_truncated_report_and_rewrites_it(setup, finished_run):
    (finished_run / "report.json").write_text('{"rule_file": ')
    result = run_cli(command(setup, finished_run, "--steps", "3", "--grad-steps", "1", "--rank", "4", "--resume"))
    assert result.exit_code == 1, result.output
    assert json.loads((finished_run / "report.json").read_text())["steps"] == 3


def test_resume_with_other_settings_is_refused(setup, finished_run):
    result = run_cli(command(setup, finished_run, "--steps", "4", "--grad-steps", "1", "--rank", "8", "--resume"))
    assert result.exit_code == 2 and "--rank 8 (the run used 4)" in result.stderr


def test_force_clears_the_previous_runs_files_and_only_those(setup, finished_run, monkeypatch):
    assert (finished_run / "lora.safetensors").exists()
    (finished_run / "notes.txt").write_text("mine")
    (finished_run / "state" / "mine.txt").write_text("mine too")
    forced = run_cli(command(setup, finished_run, "--method", "best-of-n", "--steps", "1", "--force"))
    assert forced.exit_code == 1, forced.output
    assert json.loads((finished_run / "report.json").read_text())["method"] == "best-of-n"
    assert not (finished_run / "lora.safetensors").exists()  # a best-of-n run has no LoRA

    # Started over and stopped at once: none of the previous run's files may be left beside the new one.
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ReasonerGenerator, "rollout", interrupted)
    stopped = run_cli(command(setup, finished_run, "--steps", "1", "--force"))
    assert stopped.exit_code == 130 and "nothing saved yet" in stopped.stderr
    left = sorted(str(p.relative_to(finished_run)) for p in finished_run.rglob("*") if p.is_file())
    assert left == ["notes.txt", MANIFEST, "state/mine.txt"]
    assert (finished_run / "notes.txt").read_text() == "mine"
    assert (finished_run / "state" / "mine.txt").read_text() == "mine too"


def test_out_folder_guard_refuses_a_folder_that_is_not_a_run(setup, tmp_path):
    folder = tmp_path / "user"
    (folder / "state").mkdir(parents=True)
    (folder / "state" / "state.json").write_text('{"mine": true}')
    for extra in ([], ["--force"]):
        result = run_cli(command(setup, folder, "--steps", "1", *extra))
        assert result.exit_code == 2 and "not a ruledsl run" in result.stderr, result.output
    assert (folder / "state" / "state.json").read_text() == '{"mine": true}' and len(list(folder.rglob("*"))) == 2
    (tmp_path / "empty").mkdir()
    assert run_cli(command(setup, tmp_path / "empty", "--steps", "1")).exit_code == 1


@pytest.mark.parametrize("where", ["the task folder", "inside the task folder"])
def test_out_folder_guard_refuses_the_task_folder(setup, where):
    task = setup[1]
    before = sorted(p.name for p in task.rglob("*"))
    out = task if where == "the task folder" else task / "runs" / "r0"
    result = run_cli(command(setup, out, "--steps", "1", "--force"))
    assert result.exit_code == 2 and where in result.stderr, result.output
    assert sorted(p.name for p in task.rglob("*")) == before


@pytest.mark.parametrize("where", ["a regular file", "below a regular file"])
def test_unusable_out_is_refused_before_any_work(setup, tmp_path, where):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" if where == "a regular file" else tmp_path / "file" / "run"
    args = command(setup, out, "--steps", "1")
    args[args.index("--model") + 1] = str(tmp_path / "no-such-model")  # found later: --out is checked first
    result = run_cli(args)
    assert result.exit_code == 2 and "is not a folder" in result.stderr and "model" not in result.stderr
    assert (tmp_path / "file").read_text() == "x"


def with_field(meta, section, **values):
    return {**meta, section: {**meta[section], **values}}


MALFORMED = {  # the reproductions, and their neighbours
    "rows 0": (lambda m: with_field(m, "grid", rows=0), "grid.rows must be in [1, 1000], got 0"),
    "a list": (lambda m: [m], "expected a JSON object, got a list"),
    "frames 0": (lambda m: with_field(m, "render", frames=0), f"render.frames must be in [2, {MAX_FRAMES}], got 0"),
    "frames '16'": (lambda m: with_field(m, "render", frames="16"), "render.frames must be an integer, got a string"),
    "frames huge": (lambda m: with_field(m, "render", frames=10**9), "render.frames must be in"),
    "grid a list": (lambda m: {**m, "grid": [7, 7]}, "field 'grid' must be an object, got a list"),
    "no cols": (lambda m: {**m, "grid": {"rows": 7}}, "grid.cols is missing"),
}


def malformed_task(setup, tmp_path, change):
    """A copy of the task whose metadata.json is `change(metadata)`."""
    task = tmp_path / "task"
    task.mkdir(parents=True)
    for file in setup[1].iterdir():
        (task / file.name).write_bytes(file.read_bytes())
    meta = json.loads((task / "metadata.json").read_text())
    (task / "metadata.json").write_text(json.dumps(change(meta)))
    return task


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_task_metadata_is_a_clear_error_naming_file_and_field(setup, tmp_path, case):
    change, message = MALFORMED[case]
    task = malformed_task(setup, tmp_path, change)
    with pytest.raises(TaskMetadataError, match="metadata.json: .*" + re.escape(message)):
        read_task(task)
    args = command(setup, tmp_path / "run", "--steps", "1")
    args[args.index("--task") + 1] = str(task)
    result = run_cli(args)
    assert result.exit_code == 2 and message in result.stderr, result.output
    video = setup[1] / "ground_truth.mp4"
    scored = run_cli(["tasks", "score", str(task), str(video)])
    assert scored.exit_code == 2 and message in scored.stderr
    corrupted = run_cli(["tasks", "corrupt", str(task), "--kind", "frozen", "--out", str(tmp_path / "c.mp4")])
    assert corrupted.exit_code == 2 and message in corrupted.stderr and not (tmp_path / "c.mp4").exists()


def test_task_without_grid_is_read_but_not_scored(setup, tmp_path):
    task = malformed_task(setup, tmp_path, lambda m: {k: v for k, v in m.items() if k != "grid"})
    assert program_params(read_task(task).metadata, (32, 32)) == {}  # other benchmarks have no grid
    scored = run_cli(["tasks", "score", str(task), str(setup[1] / "ground_truth.mp4")])
    assert scored.exit_code == 2 and "metadata.json: no field 'grid'" in scored.stderr
    no_render = malformed_task(setup, tmp_path / "b", lambda m: {k: v for k, v in m.items() if k != "render"})
    corrupted = run_cli(["tasks", "corrupt", str(no_render), "--kind", "frozen", "--out", str(tmp_path / "c.mp4")])
    assert corrupted.exit_code == 2 and "no field render.frames, render.height, render.width" in corrupted.stderr


def test_program_params_checks_metadata_given_directly():
    with pytest.raises(TaskMetadataError, match="grid.rows"):
        program_params({"grid": {"rows": 0, "cols": 3}}, (64, 64))
    with pytest.raises(TaskMetadataError, match="a list"):
        program_params([{"grid": {"rows": 3, "cols": 3}}], (64, 64))
    assert program_params({"grid": {"rows": 4, "cols": 8}}, (64, 64)) == {"cell": 1 / 4}
