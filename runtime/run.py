"""One optimization run on disk: the folder checked and claimed, the state committed after every step,
the outputs written at the end, resumable after Ctrl-C or a kill.

    runs/maze0/ ruledsl-run.json  state/checkpoint.safetensors
                base.mp4  best.mp4  best.gif  report.json  curves.png  lora.safetensors

`ruledsl-run.json` (the manifest) marks the folder as a run of ours; it is written before any work, and
only folders that have it are continued (`--resume`) or cleared (`--force`, which removes only the
files named here). `state/checkpoint.safetensors` is the loop's last `Checkpoint` — LoRA or noise,
optimizer moments, the best video and its LoRA, RNG state as tensors; step counter, history, NFE and
the best's rank as JSON in the safetensors metadata — replaced after the base sample and after every
step. `report.json` is a `RunReport` (pydantic), written last. Every file is written to a temporary
sibling, flushed to disk, then renamed over the old one, so a kill leaves the old file or the new one,
never half of either: a run killed at any moment loses at most the step in flight.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import resource
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from pydantic import BaseModel

from ruledsl.runtime.loop import Budget, Checkpoint, Result, Settings, Step

MANIFEST = "ruledsl-run.json"
CHECKPOINT = "state/checkpoint.safetensors"
OUTPUTS = ("base.mp4", "best.mp4", "best.gif", "report.json", "curves.png", "lora.safetensors")
RUN_FILES = (MANIFEST, CHECKPOINT, *OUTPUTS)  # everything a run writes: all `--force` ever removes
RUN_KIND = "ruledsl optimize run"
FORMAT = 1


class RunFolderError(Exception):
    """The output folder cannot hold this run: not creatable or writable, the task folder, someone else's
    files, or a damaged run. The message says which and what to do."""


class RunExistsError(RunFolderError):
    """The output folder already holds a run (pass force=True, or resume it), or holds nothing to resume."""


class RunStateError(RunFolderError):
    """A run's saved state cannot be read (damaged or missing): it cannot be resumed, only started over."""


class RuleOutcome(BaseModel):
    role: str
    before: bool
    before_margin: float
    after: bool
    after_margin: float


class RunReport(BaseModel):
    rule_file: str
    task: str | None
    model: str
    method: str
    seed: int
    settings: dict
    budget: dict
    params: dict[str, float]
    frames: int
    solved_before: bool
    solved_after: bool
    rules: dict[str, RuleOutcome]
    best_step: int
    # The noise seed of the best video: `ruledsl reasoner sample ... --seed N` (with lora.safetensors when
    # the run saved one) draws it again; None when no seed alone makes it (the noise method).
    best_seed: int | None = None
    # With frame guidance: the draw kept per frame after the first (`reasoner sample --draws`); None otherwise.
    best_draws: list[int] | None = None
    steps: int
    nfe: float
    phases: dict[str, float]  # NFE spent on the base sample, the search and the gradient; restarts (tto)
    seconds: float
    peak_memory_mb: float
    stop_reason: str
    interrupted: bool
    curve: list[dict]
    versions: dict[str, str]


def task_params(program, task, given: dict[str, float]) -> dict[str, float]:
    """The program's params that the task's metadata sets (e.g. `cell`), unless given explicitly."""
    from ruledsl.tasks import layout

    return {**layout.task_params(task, program.params), **given}


def check_out_folder(out: Path, force: bool = False, resume: bool = False, task: Path | None = None) -> None:
    """Check, before any work and without changing anything, that `out` can hold this run: it is a folder
    or can be created, is writable, is not the task folder or inside it, and is empty, a run of ours (to
    start over with `force` or continue with `resume`), or absent. A non-empty folder that is not a run
    of ours is refused even with `force` (its files are not ours to delete)."""
    out = Path(out)
    if force and resume:
        raise RunFolderError("--force starts the run over and --resume continues it: pass one of them")
    if task is not None:
        where, inside = out.resolve(), Path(task).resolve()
        if where == inside or inside in where.parents:
            what = "the task folder" if where == inside else f"inside the task folder {task}"
            raise RunFolderError(f"--out {out} is {what}; write the run somewhere else")
    _check_writable(out)
    kind = _folder_kind(out)
    if resume:
        if kind != "run":
            reason = {"missing": "no such folder", "empty": "the folder is empty"}.get(
                kind, f"no {MANIFEST}: not a ruledsl run folder"
            )
            raise RunExistsError(f"{out}: nothing to resume ({reason})")
    elif kind == "foreign":
        raise RunFolderError(
            f"{out} is not empty and is not a ruledsl run (no {MANIFEST}); choose another --out or empty it "
            "(--force only replaces a previous run, never other files)"
        )
    elif kind == "run" and not force:
        raise RunExistsError(f"{out} already holds a run; pass --force to start it over or --resume to continue it")


def _check_writable(out: Path) -> None:
    if out.is_symlink() and not out.exists():
        raise RunFolderError(f"{out} is a broken symbolic link")
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"{out} exists and is not a folder")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RunFolderError(f"cannot create {out}: {existing} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):  # a probe that leaves nothing behind
            pass
    except OSError as error:
        raise RunFolderError(f"cannot write in {existing}: {error.strerror or error}") from None


def _folder_kind(out: Path) -> str:
    """missing, empty, run (has our manifest) or foreign."""
    if not out.exists():
        return "missing"
    if not any(out.iterdir()):
        return "empty"
    return "run" if (out / MANIFEST).is_file() else "foreign"


def start_run(out: Path, force: bool, manifest: dict) -> None:
    """Claim `out` for a new run (after `check_out_folder`): with `force`, remove the previous run's files
    (only those, never anything else in the folder); then write the manifest, before any work."""
    out = Path(out)
    if force and _folder_kind(out) == "run":
        clear_run(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_manifest(out, manifest)


def clear_run(out: Path) -> None:
    """Remove the files a run of ours writes (and their temporary siblings), the manifest last so that a
    kill half-way leaves a folder that is still recognised as ours."""
    for name in (*RUN_FILES[1:], MANIFEST):
        for path in (out / name, _temporary(out / name)):
            if path.is_file() or path.is_symlink():
                path.unlink()
    with contextlib.suppress(OSError):  # not empty: someone else's files are in it
        (out / "state").rmdir()


def _write_manifest(out: Path, fields: dict) -> None:
    manifest = {"kind": RUN_KIND, "format": FORMAT, "files": list(RUN_FILES), **fields}
    manifest.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    write_atomic(out / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())


def run_manifest(out: Path) -> dict:
    """The manifest of the run in `out`; RunStateError if it is not readable."""
    path = Path(out) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunStateError(f"{path}: unreadable ({error}); pass --force to start the run over") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != RUN_KIND:
        raise RunStateError(f"{path}: not a ruledsl run manifest; pass --force to start the run over")
    return manifest


def manifest_fields(settings: Settings, rule_file: str, task: str | None, model: str, size: int | None = None) -> dict:
    """What the manifest records about a run (and what `--resume` must match: the settings and the
    frame size the model samples at)."""
    fields = {"rule_file": rule_file, "task": task, "model": model, "settings": _settings_dict(settings)}
    return fields if size is None else {**fields, "size": size}


def resume_conflicts(manifest: dict, settings: Settings, size: int | None = None) -> list[str]:
    """The settings that differ from the run's (a resume with them would not continue the same curve);
    budgets may differ (extend a run with more steps)."""
    saved = manifest.get("settings") or {}
    conflicts = [
        f"--{name.replace('_', '-')} {value!r} (the run used {saved[name]!r})"
        for name, value in _settings_dict(settings).items()
        if name in saved and saved[name] != value
    ]
    if manifest.get("size") != size:
        used, asked = manifest.get("size") or "the model's own", size or "the model's own"
        conflicts.append(f"--size {asked} (the run used {used})")
    return conflicts


def _settings_dict(settings: Settings) -> dict:
    """Settings as JSON values (a GradientWindow as its fields, tuples as lists)."""

    def plain(value):
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        return list(value) if isinstance(value, tuple) else value

    return {name: plain(value) for name, value in vars(settings).items()}


def load_resume(out: Path) -> Checkpoint | None:
    """The last committed state of the run in `out`; None if it was stopped before its base sample was
    saved (resuming is then starting it). RunStateError if the state is damaged or missing."""
    path = Path(out) / CHECKPOINT
    if not path.exists():
        if (Path(out) / "report.json").exists():  # the run got far, but its state is gone
            raise RunStateError(f"{path} is missing, so the run cannot be continued; pass --force to start it over")
        return None
    return read_checkpoint(path)


class CheckpointWriter:
    """`checkpoint=` for ruledsl.runtime.loop.optimize: replaces state/checkpoint.safetensors atomically
    after every step. The rename is atomic against the process dying (kill, OOM, Ctrl-C) every time; the
    data is flushed to the disk (fsync, some ms) at most every `sync_every` seconds, so that on a fast
    model the flush does not cost more than the step, and a crash of the machine itself loses at most
    that much."""

    def __init__(self, out: Path, sync_every: float = 1.0):
        self.path = Path(out) / CHECKPOINT
        self.sync_every = sync_every
        self.synced = -math.inf

    def __call__(self, checkpoint: Checkpoint) -> None:
        self.path.parent.mkdir(exist_ok=True)
        sync = time.monotonic() - self.synced >= self.sync_every
        write_atomic(self.path, checkpoint_bytes(checkpoint), sync=sync)
        if sync:
            self.synced = time.monotonic()


def checkpoint_bytes(checkpoint: Checkpoint) -> bytes:
    """A Checkpoint as safetensors: tensors by role (`method/`, `best/`, `rng/`), the rest as JSON metadata."""
    from safetensors.torch import save

    tensors = {f"method/{k}": v for k, v in checkpoint.tensors.items()}
    tensors["best/video"] = checkpoint.best_video
    tensors.update({f"best/lora/{k}": v for k, v in (checkpoint.best_lora or {}).items()})
    tensors.update({f"rng/{k}": v for k, v in (checkpoint.rng or {}).items()})
    info = {
        "format": FORMAT,
        "step": checkpoint.step,
        "history": [vars(step) for step in checkpoint.history],
        "nfe": checkpoint.nfe,
        "seconds": checkpoint.seconds,
        "nonfinite": checkpoint.nonfinite,
        "best_step": checkpoint.best_step,
        "best_rank": list(checkpoint.best_rank),
        "best_has_lora": checkpoint.best_lora is not None,
        "finished": checkpoint.finished,
        "phases": checkpoint.phases,
        "extra": checkpoint.extra,
        "best_seed": checkpoint.best_seed,
        "best_draws": checkpoint.best_draws,
    }
    cpu = {name: value.detach().cpu().contiguous() for name, value in tensors.items()}
    return save(cpu, metadata={"ruledsl": json.dumps(info)})


def read_checkpoint(path: Path) -> Checkpoint:
    """The Checkpoint saved at `path`; RunStateError (never anything else) if it is damaged."""
    from safetensors.torch import load

    try:
        data = Path(path).read_bytes()
        tensors = load(data)
        info = json.loads(_safetensors_metadata(data)["ruledsl"])
        history = [Step(**point) for point in info["history"]]
        satisfied, held, loss = info["best_rank"]
        by_role = {role: {k[len(role) :]: v for k, v in tensors.items() if k.startswith(role)} for role in _ROLES}
        checkpoint = Checkpoint(
            step=int(info["step"]),
            history=history,
            nfe=float(info["nfe"]),
            seconds=float(info["seconds"]),
            nonfinite=int(info["nonfinite"]),
            tensors=by_role["method/"],
            best_video=tensors["best/video"],
            best_step=int(info["best_step"]),
            best_rank=(bool(satisfied), int(held), float(loss)),
            best_lora=by_role["best/lora/"] if info["best_has_lora"] else None,
            rng=by_role["rng/"] or None,
            finished=str(info["finished"]),
            phases={str(k): float(v) for k, v in info.get("phases", {}).items()},
            best_seed=None if info.get("best_seed") is None else int(info["best_seed"]),
            best_draws=None if info.get("best_draws") is None else [int(d) for d in info["best_draws"]],
            extra=dict(info.get("extra", {})),
        )
        if checkpoint.step < 0 or not history or history[0].index != -1 or checkpoint.best_video.ndim != 4:
            raise ValueError("inconsistent contents")
    except Exception as error:  # the file is untrusted input: any failure to read it means "damaged"
        raise RunStateError(f"{path}: damaged ({error}); pass --force to start the run over") from None
    return checkpoint


_ROLES = ("method/", "best/lora/", "rng/")


def _safetensors_metadata(data: bytes) -> dict:
    """The `__metadata__` of a safetensors file (its header: 8-byte length, then JSON)."""
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + size]).get("__metadata__") or {}


def write_atomic(path: Path, data: bytes, sync: bool = True) -> None:
    """Replace `path` with `data` so that a reader (or a kill) sees the old file or the new one, never half."""
    with replacing(path, sync) as temporary:
        temporary.write_bytes(data)


@contextlib.contextmanager
def replacing(path: Path, sync: bool = True):
    """Yield a temporary sibling of `path` to write; on success rename it over `path` (with `sync`, flush
    it to the disk first and the rename after, so that a crash of the machine cannot leave half a file)."""
    temporary = _temporary(path)
    try:
        yield temporary
        if sync:
            with open(temporary, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
        if sync:
            _fsync_folder(path.parent)
    finally:
        temporary.unlink(missing_ok=True)


def _temporary(path: Path) -> Path:
    """`.NAME.tmp.SUFFIX` beside `path`: the suffix is kept because video and image writers choose the
    format from it."""
    return path.with_name(f".{path.stem}.tmp{path.suffix}")


def _fsync_folder(folder: Path) -> None:
    """Make a rename durable (a crash of the machine, not only of the process); not every system allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_run(
    out: Path,
    result: Result,
    rule_file: str,
    task: str | None,
    model: str,
    settings: Settings,
    budget: Budget,
    params: dict[str, float],
) -> RunReport:
    """Write the run's outputs (and its last checkpoint, so it can be resumed), `report.json` last. A folder
    that is not yet a run of ours is claimed first (refused if it holds someone else's files)."""
    from ruledsl.compiler.video_io import write_video
    from ruledsl.runtime.lora import save_lora

    out = Path(out)
    if _folder_kind(out) != "run":
        check_out_folder(out)
        start_run(out, False, manifest_fields(settings, rule_file, task, model))
    if result.checkpoint is not None:
        CheckpointWriter(out)(result.checkpoint)
    for name, video in (
        ("base.mp4", result.base_video),
        ("best.mp4", result.best_video),
        ("best.gif", result.best_video),
    ):
        with replacing(out / name) as temporary:
            write_video(temporary, video)
    if result.lora:
        with replacing(out / "lora.safetensors") as temporary:
            save_lora(result.lora, temporary, {"method": result.method, "best_step": str(result.best_step)})
    else:  # the best is the base sample: no LoRA belongs to this run
        (out / "lora.safetensors").unlink(missing_ok=True)
    rules = {}
    for name, before in result.base_report.rules.items():
        after = result.best_report.rules[name]
        rules[name] = RuleOutcome(
            role=before.role,
            before=bool(before.verdict[0]),
            before_margin=float(before.robustness[0]),
            after=bool(after.verdict[0]),
            after_margin=float(after.robustness[0]),
        )
    report = RunReport(
        rule_file=rule_file,
        task=task,
        model=model,
        method=result.method,
        seed=settings.seed,
        settings=_settings_dict(settings),
        budget=vars(budget),
        params=params,
        frames=int(result.best_video.shape[0]),
        solved_before=bool(result.base_report.satisfied[0]),
        solved_after=result.solved,
        rules=rules,
        best_step=result.best_step,
        best_seed=result.best_seed,
        best_draws=result.best_draws,
        steps=len({s.index for s in result.history if s.index >= 0}),  # tto judges several rollouts a step
        nfe=result.nfe,
        phases=result.phases,
        seconds=round(result.seconds, 3),
        peak_memory_mb=round(_peak_memory_mb(), 1),
        stop_reason=result.stop_reason,
        interrupted=result.interrupted,
        curve=[vars(step) for step in result.history],
        versions=_versions(),
    )
    with replacing(out / "curves.png") as temporary:
        _plot(temporary, result)
    write_atomic(out / "report.json", (report.model_dump_json(indent=1) + "\n").encode())
    return report


def _plot(path: Path, result: Result) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s.index for s in result.history]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [s.loss for s in result.history], "k-o", label="total", linewidth=2, markersize=3)
    for name in result.history[0].rule_losses:
        ax.plot(steps, [s.rule_losses[name] for s in result.history], label=name, linewidth=1)
    solved = [s.index for s in result.history if s.satisfied]
    if solved:
        ax.axvline(solved[0], color="green", linestyle="--", label="all rules hold")
    ax.set_xlabel("step (-1: base sample)")
    ax.set_ylabel("loss")
    ax.set_title(f"{result.method}: {result.stop_reason}")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _peak_memory_mb() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return usage / 1024 if platform.system() != "Darwin" else usage / 2**20


def _versions() -> dict[str, str]:
    import diffusers
    import peft

    import ruledsl

    return {
        "ruledsl": ruledsl.__version__,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "peft": peft.__version__,
        "python": platform.python_version(),
    }
