"""One optimization run on disk: inputs resolved, outputs written, resumable.

    runs/maze0/ base.mp4  best.mp4  best.gif  report.json  curves.png  lora.safetensors  state/

`report.json` is a `RunReport` (pydantic). `state/` holds what `--resume` needs (the last
LoRA or noise and optimizer moments as safetensors, and the best video so far).
"""

from __future__ import annotations

import json
import platform
import resource
from pathlib import Path

import torch
from pydantic import BaseModel

from ruledsl.runtime.loop import Budget, Result, Settings, Step

OUTPUTS = ("base.mp4", "best.mp4", "best.gif", "report.json", "curves.png", "lora.safetensors")


class RunExistsError(Exception):
    """The output folder already holds a run (pass force=True, or resume it)."""


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

    return {**layout.task_params(task, program.checked.constants), **given}


def check_out_folder(out: Path, force: bool, resume: bool) -> None:
    existing = [name for name in OUTPUTS if (out / name).exists()]
    if existing and not (force or resume):
        raise RunExistsError(
            f"{out} already holds a run ({', '.join(existing)}); pass --force to overwrite it "
            "or --resume to continue it"
        )
    if resume and not (out / "report.json").exists():
        raise RunExistsError(f"{out}: nothing to resume (no report.json)")


def load_resume(out: Path) -> dict:
    from safetensors.torch import load_file

    report = json.loads((out / "report.json").read_text())
    state = json.loads((out / "state" / "state.json").read_text())
    tensors = (
        load_file(str(out / "state" / "tensors.safetensors"))
        if (out / "state" / "tensors.safetensors").exists()
        else {}
    )
    best = load_file(str(out / "state" / "best.safetensors"))
    best_lora = {k[5:]: v for k, v in best.items() if k.startswith("lora/")}
    history = [Step(**{k: v for k, v in point.items()}) for point in report["curve"]]
    return {
        "step": state["step"],
        "tensors": tensors,
        "nfe": report["nfe"],
        "seconds": report["seconds"],
        "history": history,
        "best_video": best["video"],
        "best_step": report["best_step"],
        "best_lora": best_lora or None,
        "method": report["method"],
    }


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
    from safetensors.torch import save_file

    from ruledsl.compiler.video_io import write_video
    from ruledsl.runtime.lora import save_lora

    out.mkdir(parents=True, exist_ok=True)
    write_video(out / "base.mp4", result.base_video)
    write_video(out / "best.mp4", result.best_video)
    write_video(out / "best.gif", result.best_video)
    if result.lora:
        save_lora(result.lora, out / "lora.safetensors", {"method": result.method, "best_step": str(result.best_step)})
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
        settings={k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(settings).items()},
        budget=vars(budget),
        params=params,
        frames=int(result.best_video.shape[0]),
        solved_before=bool(result.base_report.satisfied[0]),
        solved_after=result.solved,
        rules=rules,
        best_step=result.best_step,
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
    (out / "report.json").write_text(report.model_dump_json(indent=1) + "\n")
    _plot(out / "curves.png", result)
    state_dir = out / "state"
    state_dir.mkdir(exist_ok=True)
    (state_dir / "state.json").write_text(json.dumps({"step": result.state.get("step", 0)}) + "\n")
    tensors = result.state.get("tensors") or {}
    if tensors:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(state_dir / "tensors.safetensors"))
    best = {"video": result.best_video.contiguous()}
    best.update({f"lora/{k}": v.contiguous() for k, v in (result.lora or {}).items()})
    save_file(best, str(state_dir / "best.safetensors"))
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
