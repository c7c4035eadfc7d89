"""Test-time optimization of a frozen video model against a compiled rule program.

    result = optimize(program, condition, generator, Budget(steps=16), Settings(method="tto"))

Methods share one accounting (denoiser forward-equivalents, NFE) so they can be compared at
equal cost:
- `tto` (the default; runtime/tto.py): each step a population of fresh seeds through the current
  LoRA, judged exactly (Best-of-N's search), plus one gradient rollout on the best candidate's seed
  with per-rule normalised losses and randomized truncation; a plateau lowers the learning rate,
  then restarts the LoRA;
- `lora` (`lora-v1` in `ruledsl bench`): a fresh LoRA on the denoiser, AdamW on the smooth rule loss through the last
  `grad_steps` sampling steps, same seed every rollout (iteration 0 is the base sample);
- `best-of-n`: N seeds, no gradients, the compiled program picks the best (N from the budget);
- `noise`: optimize the initial noise instead of weights (ReNO-style), gradients through every
  step, with a penalty keeping the noise's norm Gaussian-like.
Every rollout's video is judged with the exact semantics; the best one (all rules hold, then
most rules holding, then lowest loss) is kept. Stops when every rule holds, on plateau, on the
budget (steps, seconds, NFE), after repeated non-finite losses, or on Ctrl-C (best-so-far kept).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ruledsl.runtime.generators import Condition, VideoGenerator
from ruledsl.runtime.lora import attach_lora, detach_lora, lora_state
from ruledsl.runtime.settings import Budget, Settings

METHODS = ("tto", "lora", "best-of-n", "noise")


@dataclass
class Step:
    index: int
    loss: float
    rule_losses: dict[str, float]
    satisfied: bool
    held: int
    nfe: float
    seconds: float
    skipped: bool = False


@dataclass
class Result:
    method: str
    base_video: torch.Tensor  # [T, 3, H, W] in [0, 1]
    best_video: torch.Tensor
    base_report: object  # ruledsl Report of the base sample
    best_report: object
    best_step: int  # -1: the base sample
    history: list[Step] = field(default_factory=list)
    nfe: float = 0.0
    seconds: float = 0.0
    stop_reason: str = ""
    interrupted: bool = False
    lora: dict[str, torch.Tensor] | None = None  # the LoRA that produced the best video
    phases: dict[str, float] = field(default_factory=dict)  # NFE per phase (base, search, gradient), restarts
    state: dict = field(default_factory=dict)  # what `resume` needs to continue this run

    @property
    def solved(self) -> bool:
        return bool(self.best_report.satisfied[0])


def _rank(report) -> tuple:
    """Better is larger: every rule holds, then more rules hold, then lower loss."""
    held = sum(bool(r.verdict[0]) for r in report.rules.values())
    return (bool(report.satisfied[0]), held, -report.loss.item())


class _Tracker:
    """Shared accounting and best-so-far for every method."""

    def __init__(self, program, budget: Budget, settings: Settings, resume: dict | None = None, on_best=None):
        self.program, self.budget, self.settings = program, budget, settings
        self.on_best = on_best
        resume = resume or {}
        self.start = time.perf_counter() - resume.get("seconds", 0.0)
        self.nfe = resume.get("nfe", 0.0)
        self.history: list[Step] = list(resume.get("history", []))
        self.best = None  # (rank, video, report, step, lora)
        self.stop_reason = ""
        self.nonfinite = 0
        # How the budget was spent: NFE per phase, and restarts (tto).
        self.phases: dict[str, float] = {"base": 0.0, "search": 0.0, "gradient": 0.0, "restarts": 0}
        self.phases.update(resume.get("phases", {}))
        # What a later run needs to continue: the next step, and the method's tensors.
        self.state: dict = {"step": resume.get("step", 0), "tensors": dict(resume.get("tensors", {}))}

    def spend(self, cost: float, phase: str) -> None:
        """Count `cost` NFE, and what it was spent on ("base", "search": rollouts without gradient that
        are judged, "gradient": rollouts whose loss updates the LoRA or the noise)."""
        self.nfe += cost
        self.phases[phase] += cost

    def judge(self, video: torch.Tensor, step: int, report=None, lora=None):
        """Keep `video` if it is the best so far. `report`: its report if already computed (the exact
        verdicts in a report do not depend on gradients); `lora`: a callable giving the weights to keep."""
        if report is None:
            with torch.no_grad():
                report = self.program(video.detach())
        rank = _rank(report)
        if self.best is None or rank > self.best[0]:
            self.best = (rank, video.detach()[0].clone(), report, step, lora() if callable(lora) else lora)
            if self.on_best:
                self.on_best(self.best[1], report, step, self.nfe)
        return report

    def record(self, step: int, report, skipped: bool = False) -> None:
        self.history.append(
            Step(
                step,
                report.loss.item(),
                {n: r.loss[0].item() for n, r in report.rules.items()},
                bool(report.satisfied[0]),
                sum(bool(r.verdict[0]) for r in report.rules.values()),
                self.nfe,
                time.perf_counter() - self.start,
                skipped,
            )
        )

    def after_step(self, video, step: int, report, finite: bool, on_step, lora=None) -> bool:
        """Judge, record and report one gradient step; True when the loop must stop (all rules hold,
        or too many non-finite losses or gradients in a row)."""
        self.judge(video, step, report, lora)
        self.record(step, report, skipped=not finite)
        if on_step:
            on_step(self.history[-1], report)
        if bool(report.satisfied[0]):
            self.stop_reason = f"every rule holds (step {step})"
            return True
        self.nonfinite = 0 if finite else self.nonfinite + 1
        if self.nonfinite >= self.settings.max_nonfinite:
            self.stop_reason = f"non-finite loss or gradient {self.nonfinite} times in a row"
            return True
        return False

    def can_afford(self, cost: float, steps_done: int) -> bool:
        if steps_done >= self.budget.steps:
            self.stop_reason = f"step budget ({self.budget.steps})"
        elif self.budget.nfe is not None and self.nfe + cost > self.budget.nfe:
            self.stop_reason = f"NFE budget ({self.budget.nfe:g})"
        elif self.budget.seconds is not None and time.perf_counter() - self.start > self.budget.seconds:
            self.stop_reason = f"time budget ({self.budget.seconds:g} s)"
        else:
            return True
        return False

    def plateaued(self) -> bool:
        losses = [s.loss for s in self.history if not s.skipped]
        p = self.settings.plateau
        if len(losses) > p and min(losses[-p:]) >= min(losses[:-p]) - 1e-4:
            self.stop_reason = f"plateau (no lower loss in {p} steps)"
            return True
        return False


def optimize(
    program,
    condition: Condition,
    generator: VideoGenerator,
    budget: Budget | None = None,
    settings: Settings | None = None,
    on_step=None,
    resume: dict | None = None,
    on_best=None,
) -> Result:
    """Optimize one task instance; `on_step(step, report)` is called after every judged rollout, and
    `on_best(video, report, step, nfe)` whenever a rollout becomes the best so far (`nfe`: spent by then).

    `resume` (from `Result.state` of an interrupted run, plus its history/nfe/seconds and best
    video) continues where that run stopped.
    """
    budget, settings = budget or Budget(), settings or Settings()
    if settings.method not in METHODS:
        raise ValueError(f"unknown method {settings.method!r}; choose from {', '.join(METHODS)}")
    tracker = _Tracker(program, budget, settings, resume, on_best)
    interrupted = False
    # The base sample: seed `settings.seed`, no gradient. Every method starts from it.
    with torch.no_grad():
        base = generator.sample(condition, settings.seed)
    if resume is None:
        tracker.spend(generator.nfe(0), "base")
    base_report = tracker.judge(base, -1)
    if resume is None:
        tracker.record(-1, base_report)
        if on_step:
            on_step(tracker.history[-1], base_report)
    elif "best_video" in resume:
        tracker.judge(resume["best_video"][None], resume.get("best_step", -1), lora=resume.get("best_lora"))
    try:
        if base_report.satisfied[0]:
            tracker.stop_reason = "every rule holds (base sample)"
        elif settings.method == "tto":
            from ruledsl.runtime.tto import run_tto

            run_tto(program, condition, generator, tracker, on_step, _backward, _snapshot, _restore)
        elif settings.method == "lora":
            _lora(program, condition, generator, tracker, on_step)
        elif settings.method == "best-of-n":
            _best_of_n(condition, generator, tracker, on_step)
        else:
            _noise(program, condition, generator, tracker, on_step)
    except KeyboardInterrupt:
        interrupted = True
        tracker.stop_reason = "interrupted"
    finally:
        if settings.method in ("lora", "tto"):
            detach_lora(generator.denoiser)
    _, best_video, best_report, best_step, best_lora = tracker.best
    result = Result(
        settings.method,
        base[0].detach(),
        best_video,
        base_report,
        best_report,
        best_step,
        tracker.history,
        tracker.nfe,
        time.perf_counter() - tracker.start,
        tracker.stop_reason,
        interrupted,
        best_lora,
    )
    result.state = tracker.state
    result.phases = dict(tracker.phases)
    return result


def _lora(program, condition, generator, tracker: _Tracker, on_step) -> None:
    s = tracker.settings
    params = attach_lora(generator.denoiser, s.targets or generator.lora_targets, s.rank)
    optimizer = torch.optim.AdamW(params, lr=s.lr, weight_decay=0.0)
    _restore(generator.denoiser, optimizer, params, tracker.state["tensors"])
    noise = generator.initial_noise(condition, s.seed)
    cost, step = generator.nfe(s.grad_steps), tracker.state["step"]
    while tracker.can_afford(cost, step):
        video = generator.rollout(condition, noise, grad_steps=s.grad_steps)
        tracker.spend(cost, "gradient")
        report = program(video)
        optimizer.zero_grad(set_to_none=True)
        finite = _backward(report.loss, params)
        # Judge the video this LoRA made (before the update), and keep its weights if it is the best.
        if tracker.after_step(video, step, report, finite, on_step, lambda: lora_state(generator.denoiser)):
            return
        if finite:
            torch.nn.utils.clip_grad_norm_(params, s.clip)
            optimizer.step()
        step += 1
        tracker.state = {"step": step, "tensors": _snapshot(generator.denoiser, optimizer, params)}
        if tracker.plateaued():
            return


def _backward(loss: torch.Tensor, params) -> bool:
    """Back-propagate a finite loss; False (nothing to apply) if the loss or any gradient is not finite."""
    if not bool(torch.isfinite(loss)):
        return False
    loss.backward()
    return all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params)


def _snapshot(model, optimizer, params) -> dict[str, torch.Tensor]:
    """LoRA weights and AdamW moments as plain tensors (saved as safetensors, never pickled)."""
    tensors = {f"lora/{name}": value for name, value in lora_state(model).items()}
    for i, param in enumerate(params):
        for key, value in optimizer.state.get(param, {}).items():
            tensors[f"adamw/{i}/{key}"] = torch.as_tensor(value).detach().clone()
    return tensors


def _restore(model, optimizer, params, tensors: dict[str, torch.Tensor]) -> None:
    from ruledsl.runtime.lora import load_lora_state

    lora = {name[5:]: value for name, value in tensors.items() if name.startswith("lora/")}
    if lora:
        load_lora_state(model, lora)
    for i, param in enumerate(params):
        state = {key.split("/")[2]: value for key, value in tensors.items() if key.startswith(f"adamw/{i}/")}
        if state:
            optimizer.state[param] = _on_device(state, param.device)


def _on_device(state: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    """Saved optimizer moments (read on the CPU) on the parameter's device; `step` stays a CPU tensor
    as torch's non-capturable Adam expects."""
    return {key: value if key == "step" else value.to(device) for key, value in state.items()}


def _best_of_n(condition, generator, tracker: _Tracker, on_step) -> None:
    cost, n = generator.nfe(0), tracker.state["step"]
    while tracker.can_afford(cost, n):
        with torch.no_grad():
            video = generator.sample(condition, tracker.settings.seed + 1 + n)
        tracker.spend(cost, "search")
        report = tracker.judge(video, n)
        tracker.record(n, report)
        if on_step:
            on_step(tracker.history[-1], report)
        if bool(report.satisfied[0]):
            tracker.stop_reason = f"every rule holds (candidate {n})"
            return
        n += 1
        tracker.state = {"step": n, "tensors": {}}


def _noise(program, condition, generator, tracker: _Tracker, on_step) -> None:
    s = tracker.settings
    start = tracker.state["tensors"].get("noise")
    start = start.to(generator.device) if start is not None else generator.initial_noise(condition, s.seed)
    noise = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([noise], lr=s.noise_lr)
    for key in ("exp_avg", "exp_avg_sq", "step"):
        if f"adam/{key}" in tracker.state["tensors"]:
            optimizer.state.setdefault(noise, {})[key] = tracker.state["tensors"][f"adam/{key}"]
    if noise in optimizer.state:
        optimizer.state[noise] = _on_device(optimizer.state[noise], noise.device)
    dims = noise.numel()
    cost, step = generator.nfe(generator.steps), tracker.state["step"]
    while tracker.can_afford(cost, step):
        video = generator.rollout(condition, noise, grad_steps=generator.steps)
        tracker.spend(cost, "gradient")
        report = program(video)
        # Keep the noise on the Gaussian shell (||z||² ≈ dims), as ReNO does.
        loss = report.loss + 0.5 * ((noise.pow(2).sum() - dims) / dims) ** 2
        optimizer.zero_grad(set_to_none=True)
        finite = _backward(loss, [noise])
        if tracker.after_step(video, step, report, finite, on_step):
            return
        if finite:
            optimizer.step()
        step += 1
        tensors = {"noise": noise.detach().clone()}
        tensors.update({f"adam/{k}": torch.as_tensor(v).detach().clone() for k, v in optimizer.state[noise].items()})
        tracker.state = {"step": step, "tensors": tensors}
        if tracker.plateaued():
            return


def nfe_budget_for(generator: VideoGenerator, settings: Settings, steps: int) -> float:
    """The NFE of `steps` LoRA iterations plus the base sample: give it to another method to match cost."""
    return generator.nfe(0) + steps * generator.nfe(settings.grad_steps)


__all__ = ["Budget", "Settings", "Result", "Step", "METHODS", "optimize", "nfe_budget_for"]
