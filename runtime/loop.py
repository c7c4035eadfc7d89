"""Test-time optimization of a frozen video model against a compiled rule program.

    result = optimize(program, condition, generator, Budget(steps=16), Settings(method="tto"))

Methods share one accounting (denoiser forward-equivalents, NFE) so they can be compared at
equal cost:
- `tto` (the default; runtime/tto.py): each step a population of fresh seeds through the frozen
  model, judged exactly (Best-of-N's search), plus one gradient rollout of a LoRA on the best
  candidate's seed with per-rule normalised losses and randomized truncation; a plateau lowers the
  learning rate, then restarts the LoRA;
- `lora` (`lora-v1` in `ruledsl bench`): a fresh LoRA on the denoiser, AdamW on the smooth rule loss through the last
  `grad_steps` sampling steps, same seed every rollout (iteration 0 is the base sample);
- `best-of-n`: N seeds, no gradients, the compiled program picks the best (N from the budget);
- `noise`: optimize the initial noise instead of weights (ReNO-style), gradients through every
  step, with a penalty keeping the noise's norm Gaussian-like.
Every rollout's video is judged with the exact semantics; the best one (all rules hold, then
most rules holding, then lowest loss) is kept. Stops when every rule holds, on plateau, on the
budget (steps, seconds, NFE), after repeated non-finite losses, or on Ctrl-C (best-so-far kept).

Crash safety: after the base sample and after every step the loop hands a `Checkpoint` (everything a
later run needs to continue exactly: the step counter, history, NFE, the method's tensors with the
optimizer moments, the method's own counters, the best video and its LoRA, the RNG state) to `checkpoint=`, which
ruledsl.runtime.run writes atomically. `resume=` continues from one: the curve is the one an
uninterrupted run with the same seed gives, bit for bit on CPU. The run draws random numbers (peft's
LoRA init) from its own RNG, forked from the caller's and seeded with `Settings.seed`, so the same seed
gives the same result and the caller's RNG state is left as it was.
"""

from __future__ import annotations

import contextlib
import copy
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

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
class Checkpoint:
    """A committed point of a run: everything needed to continue it exactly (see ruledsl.runtime.run)."""

    step: int  # the next step to run (0 after the base sample)
    history: list[Step]
    nfe: float
    seconds: float
    nonfinite: int  # non-finite steps in a row so far
    tensors: dict[str, torch.Tensor]  # the method's: LoRA and AdamW moments, or the noise and Adam moments
    best_video: torch.Tensor  # [T, 3, H, W]
    best_step: int
    best_rank: tuple  # (every rule holds, rules holding, -loss): how later videos are compared with it
    best_lora: dict[str, torch.Tensor] | None
    rng: dict[str, torch.Tensor] | None = None  # the run's RNG states at the top of step `step` (None: fresh)
    finished: str = ""  # a final stop (rules hold, plateau, non-finite): resuming does not continue it
    phases: dict[str, float] = field(default_factory=dict)  # NFE per phase, restarts (Result.phases)
    extra: dict = field(default_factory=dict)  # the method's own state as JSON values (tto: seeds, plateaus)
    best_seed: int | None = None  # the noise seed of the best video (see Result.best_seed)
    best_draws: list[int] | None = None  # its frame draws, when frame guidance made it (Result.best_draws)


@dataclass
class Result:
    method: str
    base_video: torch.Tensor  # [T, 3, H, W] in [0, 1]
    best_video: torch.Tensor
    base_report: Any  # ruledsl Report of the base sample
    best_report: Any
    best_step: int  # -1: the base sample
    history: list[Step] = field(default_factory=list)
    nfe: float = 0.0
    seconds: float = 0.0
    stop_reason: str = ""
    interrupted: bool = False
    lora: dict[str, torch.Tensor] | None = None  # the LoRA that produced the best video
    phases: dict[str, float] = field(default_factory=dict)  # NFE per phase (base, search, gradient), restarts
    checkpoint: Checkpoint | None = None  # the last committed point: what `resume` continues from
    # The noise seed that made the best video: with `lora` (when not None) the same seed regenerates it;
    # None when no seed alone does (the noise method optimizes the noise itself).
    best_seed: int | None = None
    # With frame guidance (Settings.frame_retries), the draw kept for each frame after the first
    # (frame_guide.GuidedSample.attempts; `guided_noise(generator, condition, best_seed, best_draws)`
    # is the noise that makes the best video again); None for an unguided seed.
    best_draws: list[int] | None = None

    @property
    def solved(self) -> bool:
        return bool(self.best_report.satisfied[0])


def _rank(report) -> tuple:
    """Better is larger: every rule holds, then more rules hold, then lower loss."""
    held = sum(bool(r.verdict[0]) for r in report.rules.values())
    return (bool(report.satisfied[0]), held, -report.loss.item())


class ResumeMismatchError(ValueError):
    """The run being resumed was made with another model, task or rule program: its base sample differs."""


class _Tracker:
    """Shared accounting, best-so-far and checkpoints for every method."""

    def __init__(
        self,
        program,
        budget: Budget,
        settings: Settings,
        checkpoint=None,
        resume: Checkpoint | None = None,
        on_best=None,
    ):
        self.program, self.budget, self.settings = program, budget, settings
        self.on_best = on_best
        self.write_checkpoint = checkpoint  # called with every committed Checkpoint (None: kept in memory only)
        self.resumed = resume
        self.start = time.perf_counter() - (resume.seconds if resume else 0.0)
        self.nfe = resume.nfe if resume else 0.0
        self.history: list[Step] = list(resume.history) if resume else []
        self.nonfinite = resume.nonfinite if resume else 0
        self.next_step = resume.step if resume else 0
        self.tensors = dict(resume.tensors) if resume else {}  # the method's state to start from
        self.best: tuple | None = None  # (rank, video, report, step, lora)
        self.best_seed: int | None = resume.best_seed if resume else None
        self.best_draws: list[int] | None = resume.best_draws if resume else None
        self.stop_reason = ""
        self.devices: list[int] = []  # CUDA devices whose RNG the run owns
        self.committed: Checkpoint | None = None
        self.committed_report = None  # the report of `committed.best_video`
        # How the budget was spent: NFE per phase, and restarts (tto).
        self.phases: dict[str, float] = {"base": 0.0, "search": 0.0, "gradient": 0.0, "restarts": 0}
        self.phases.update(resume.phases if resume else {})
        self.extra: dict = copy.deepcopy(resume.extra) if resume else {}  # the method's counters (JSON values)

    def spend(self, cost: float, phase: str) -> None:
        """Count `cost` NFE, and what it was spent on ("base", "search": rollouts without gradient that
        are judged, "gradient": rollouts whose loss updates the LoRA or the noise)."""
        self.nfe += cost
        self.phases[phase] += cost

    def judge(self, video: torch.Tensor, step: int, report=None, lora=None, seed: int | None = None, draws=None):
        """Keep `video` if it is the best so far. `report`: its report if already computed (the exact
        verdicts in a report do not depend on gradients); `lora`: a callable giving the weights to keep;
        `seed`: the noise seed that made it (None: not a plain seed's rollout); `draws`: its frame
        draws when frame guidance made it (Result.best_draws)."""
        if report is None:
            with torch.no_grad():
                report = self.program(video.detach())
        rank = _rank(report)
        if self.best is None or rank > self.best[0]:
            self.best = (rank, video.detach()[0].clone(), report, step, lora() if callable(lora) else lora)
            self.best_seed = seed
            self.best_draws = None if seed is None or not draws or not any(draws) else list(draws)
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

    def commit(self, step: int, tensors: dict[str, torch.Tensor], finished: str = "", rng: bool = True) -> None:
        """Make everything up to now the point a resume continues from (`step`: the next one), and hand it to
        the checkpoint writer. Nothing after the last commit survives an interrupt or a kill. `rng`: save
        the RNG state (not after the base sample: a resume replays the method's set-up from there)."""
        assert self.best is not None  # the base sample is judged before the first commit
        rank, video, report, best_step, lora = self.best
        self.committed = Checkpoint(
            step,
            list(self.history),
            self.nfe,
            time.perf_counter() - self.start,
            self.nonfinite,
            tensors,
            video,
            best_step,
            rank,
            lora,
            _rng_states(self.devices) if rng else None,
            finished,
            dict(self.phases),
            copy.deepcopy(self.extra),
            self.best_seed,
            self.best_draws,
        )
        self.committed_report = report
        if self.write_checkpoint is not None:
            self.write_checkpoint(self.committed)

    def restore_rng(self) -> None:
        """Continue the resumed run's random stream (call once the method is set up, before its first step)."""
        if self.resumed is not None and self.resumed.rng:
            _set_rng_states(self.resumed.rng, self.devices)

    def finish_step(
        self,
        video,
        step: int,
        report,
        finite: bool,
        on_step,
        tensors,
        update=None,
        lora=None,
        plateau: bool = True,
        seed: int | None = None,
        draws=None,
    ) -> bool:
        """Judge and record one gradient step, call `update(finite)` if the loop goes on, commit, then report
        the step; True when the loop must stop (every rule holds, too many non-finite losses or gradients in
        a row, or — with `plateau` — no lower loss for a while). `tensors()`: the method's state after the
        update; `lora()`: the weights that made `video`, kept if it is the best; `seed`: its noise seed."""
        self.judge(video, step, report, lora, seed, draws)  # before the update: these weights made this video
        self.record(step, report, skipped=not finite)
        self.nonfinite = 0 if finite else self.nonfinite + 1
        if bool(report.satisfied[0]):
            final = f"every rule holds (step {step})"
        elif self.nonfinite >= self.settings.max_nonfinite:
            final = f"non-finite loss or gradient {self.nonfinite} times in a row"
        else:
            final = self._plateau() if plateau else ""
        if not final and update is not None:
            update(finite)
        self.stop_reason = final or self.stop_reason
        self.commit(step + 1, tensors(), final)
        if on_step:
            on_step(self.history[-1], report)
        return bool(final)

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

    def _plateau(self) -> str:
        losses = [s.loss for s in self.history if not s.skipped]
        p = self.settings.plateau
        if len(losses) > p and min(losses[-p:]) >= min(losses[:-p]) - 1e-4:
            return f"plateau (no lower loss in {p} steps)"
        return ""


def _cuda_devices(generator: VideoGenerator) -> list[int]:
    return sorted({p.device.index or 0 for p in generator.denoiser.parameters() if p.device.type == "cuda"})


@contextlib.contextmanager
def _own_rng(seed: int, devices: list[int]):
    """The run's own random stream: forked from the caller's (restored on exit), seeded with `seed`."""
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(seed)
        for index in devices:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def _rng_states(devices: list[int]) -> dict[str, torch.Tensor]:
    states = {"cpu": torch.get_rng_state()}
    states.update({f"cuda:{index}": torch.cuda.get_rng_state(index) for index in devices})
    return states


def _set_rng_states(states: dict[str, torch.Tensor], devices: list[int]) -> None:
    torch.set_rng_state(states["cpu"])
    for index in devices:  # states of devices this run does not use are left alone
        if f"cuda:{index}" in states:
            torch.cuda.set_rng_state(states[f"cuda:{index}"], index)


def optimize(
    program,
    condition: Condition,
    generator: VideoGenerator,
    budget: Budget | None = None,
    settings: Settings | None = None,
    on_step=None,
    resume: Checkpoint | None = None,
    checkpoint=None,
    on_best=None,
) -> Result:
    """Optimize one task instance; `on_step(step, report)` is called after every judged rollout, once
    it is committed, and `on_best(video, report, step, nfe)` whenever a rollout becomes the best so far
    (`nfe`: spent by then; after a resume, only for bests found since).

    `checkpoint(Checkpoint)` is called after the base sample and after every step (ruledsl.runtime.run's
    `CheckpointWriter` saves it atomically). `resume` (a Checkpoint: `Result.checkpoint`, or
    ruledsl.runtime.run.load_resume) continues that run with the same curve as if it had not stopped; a
    run that had finished (rules hold, plateau, non-finite) stays finished, one stopped by its budget
    continues up to the new budget. ResumeMismatchError if the base sample is not the run's.
    """
    budget, settings = budget or Budget(), settings or Settings()
    if settings.method not in METHODS:
        raise ValueError(f"unknown method {settings.method!r}; choose from {', '.join(METHODS)}")
    tracker = _Tracker(program, budget, settings, checkpoint, resume, on_best)
    tracker.devices = _cuda_devices(generator)
    interrupted = False
    with _own_rng(settings.seed, tracker.devices):
        # The base sample: seed `settings.seed`, no gradient. Every method starts from it.
        with torch.no_grad():
            base = generator.sample(condition, settings.seed)
            base_report = program(base)
        if resume is not None:
            _check_same_base(resume, base_report)
            best_video = resume.best_video.to(base.device)
            with torch.no_grad():
                best_report = program(best_video[None])
            tracker.best = (tuple(resume.best_rank), best_video, best_report, resume.best_step, resume.best_lora)
            tracker.committed, tracker.committed_report = resume, best_report
            tracker.stop_reason = resume.finished
        try:
            if resume is None:
                tracker.spend(generator.nfe(0), "base")
                tracker.judge(base, -1, base_report, seed=settings.seed)
                tracker.record(-1, base_report)
                tracker.stop_reason = "every rule holds (base sample)" if base_report.satisfied[0] else ""
                tracker.commit(0, {}, tracker.stop_reason, rng=False)
                if on_step:
                    on_step(tracker.history[-1], base_report)
            if tracker.stop_reason:
                pass  # finished: the base sample holds every rule, or the resumed run had stopped for good
            elif settings.method == "tto":
                from ruledsl.runtime.tto import run_tto

                run_tto(program, condition, generator, tracker, on_step, _backward, _snapshot, _restore)
            elif settings.method == "lora":
                _lora(program, condition, generator, tracker, on_step)
            elif settings.method == "best-of-n":
                _best_of_n(program, condition, generator, tracker, on_step)
            else:
                _noise(program, condition, generator, tracker, on_step)
        except KeyboardInterrupt:
            if tracker.committed is None:
                raise  # before the base sample was judged: nothing to keep
            interrupted = True
            tracker.stop_reason = "interrupted"
        finally:
            if settings.method in ("lora", "tto"):
                detach_lora(generator.denoiser)
    # What survives is the last commit: a step cut short by Ctrl-C is dropped, as a kill would drop it.
    committed = tracker.committed
    assert committed is not None  # the base sample is committed, or the interrupt was re-raised
    result = Result(
        settings.method,
        base[0].detach(),
        committed.best_video,
        base_report,
        tracker.committed_report,
        committed.best_step,
        list(committed.history),
        committed.nfe,
        time.perf_counter() - tracker.start,
        tracker.stop_reason,
        interrupted,
        committed.best_lora,
        dict(committed.phases),
        committed,
        committed.best_seed,
        committed.best_draws,
    )
    return result


def _check_same_base(resume: Checkpoint, base_report) -> None:
    """Refuse to continue a run whose base sample (model, task, rules) differs from this one's."""
    if not resume.history or resume.history[0].index != -1:
        raise ResumeMismatchError("the checkpoint has no base sample")
    expected, got = resume.history[0].loss, base_report.loss.item()
    same = math.isclose(got, expected, rel_tol=1e-4, abs_tol=1e-6) or (math.isnan(got) and math.isnan(expected))
    if not same:
        raise ResumeMismatchError(
            f"the base sample's loss is {got:.6g}, the run's was {expected:.6g}: the model, the task or the rules "
            "differ from the run being resumed"
        )


def _lora(program, condition, generator, tracker: _Tracker, on_step) -> None:
    s = tracker.settings
    params = attach_lora(generator.denoiser, s.targets or generator.lora_targets, s.rank)
    optimizer = torch.optim.AdamW(params, lr=s.lr, weight_decay=0.0)
    _restore(generator.denoiser, optimizer, params, tracker.tensors)
    tracker.restore_rng()
    noise = generator.initial_noise(condition, s.seed)
    cost, step = generator.nfe(s.grad_steps), tracker.next_step

    def update(finite: bool) -> None:
        if finite:
            torch.nn.utils.clip_grad_norm_(params, s.clip)
            optimizer.step()

    while tracker.can_afford(cost, step):
        video = generator.rollout(condition, noise, grad_steps=s.grad_steps)
        tracker.spend(cost, "gradient")
        report = program(video)
        optimizer.zero_grad(set_to_none=True)
        finite = _backward(report.loss, params)
        if tracker.finish_step(
            video,
            step,
            report,
            finite,
            on_step,
            tensors=lambda: _snapshot(generator.denoiser, optimizer, params),
            update=update,
            lora=lambda: lora_state(generator.denoiser),
            seed=s.seed,
        ):
            return
        step += 1


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
    """Put a checkpoint's LoRA weights and AdamW moments back; ResumeMismatchError if they do not fit."""
    from ruledsl.runtime.lora import load_lora_state

    lora = {name[5:]: value for name, value in tensors.items() if name.startswith("lora/")}
    try:
        if lora:
            load_lora_state(model, lora)
    except (ValueError, RuntimeError) as error:
        raise ResumeMismatchError(f"the saved LoRA does not fit this model ({error})") from None
    moments: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        match = re.fullmatch(r"adamw/(\d+)/(\w+)", key) if key.startswith("adamw/") else None
        if key.startswith("adamw/") and (match is None or int(match[1]) >= len(params)):
            raise ResumeMismatchError(f"the saved optimizer state {key!r} does not fit this model's LoRA")
        if match:
            moments.setdefault(int(match[1]), {})[match[2]] = value
    for i, state in moments.items():
        param = params[i]
        if any(k != "step" and v.shape != param.shape for k, v in state.items()):
            raise ResumeMismatchError("the saved optimizer moments do not fit this model's LoRA")
        optimizer.state[param] = _on_device(state, param.device)


def _on_device(state: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    """Saved optimizer moments (read on the CPU) on the parameter's device; `step` stays a CPU tensor
    as torch's non-capturable Adam expects."""
    return {key: value if key == "step" else value.to(device) for key, value in state.items()}


def _best_of_n(program, condition, generator, tracker: _Tracker, on_step) -> None:
    from ruledsl.runtime.frame_guide import FrameGuide

    tracker.restore_rng()
    guide = FrameGuide.for_settings(program, tracker.settings)
    cost, n = generator.nfe(0), tracker.next_step
    while tracker.can_afford(cost, n):
        seed = tracker.settings.seed + 1 + n
        drawn = guide.sample(generator, condition, seed, guide.redraws_affordable(generator, condition, tracker, cost))
        tracker.spend(cost + drawn.redraws * guide.frame_cost(generator, condition), "search")
        report = tracker.judge(drawn.video, n, seed=seed, draws=drawn.attempts)
        tracker.record(n, report)
        final = f"every rule holds (candidate {n})" if bool(report.satisfied[0]) else ""
        tracker.stop_reason = final or tracker.stop_reason
        tracker.commit(n + 1, {}, final)
        if on_step:
            on_step(tracker.history[-1], report)
        if final:
            return
        n += 1


def _noise(program, condition, generator, tracker: _Tracker, on_step) -> None:
    s = tracker.settings
    noise = generator.initial_noise(condition, s.seed)
    if "noise" in tracker.tensors:  # resumed: the noise as the last committed step left it
        if tracker.tensors["noise"].shape != noise.shape:
            raise ResumeMismatchError(
                f"the saved noise has shape {tuple(tracker.tensors['noise'].shape)}, not {tuple(noise.shape)}"
            )
        noise = tracker.tensors["noise"].to(noise.device, noise.dtype)
    noise = noise.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([noise], lr=s.noise_lr)
    moments = {key[5:]: value for key, value in tracker.tensors.items() if key.startswith("adam/")}
    if moments:
        optimizer.state[noise] = _on_device(moments, noise.device)
    tracker.restore_rng()
    dims = noise.numel()
    cost, step = generator.nfe(generator.steps), tracker.next_step

    def tensors() -> dict[str, torch.Tensor]:
        state = {f"adam/{k}": torch.as_tensor(v).detach().clone() for k, v in optimizer.state.get(noise, {}).items()}
        return {"noise": noise.detach().clone(), **state}

    def update(finite: bool) -> None:
        if finite:
            optimizer.step()

    while tracker.can_afford(cost, step):
        video = generator.rollout(condition, noise, grad_steps=generator.steps)
        tracker.spend(cost, "gradient")
        report = program(video)
        # Keep the noise on the Gaussian shell (||z||² ≈ dims), as ReNO does.
        loss = report.loss + 0.5 * ((noise.pow(2).sum() - dims) / dims) ** 2
        optimizer.zero_grad(set_to_none=True)
        finite = _backward(loss, [noise])
        if tracker.finish_step(video, step, report, finite, on_step, tensors=tensors, update=update):
            return
        step += 1


def nfe_budget_for(generator: VideoGenerator, settings: Settings, steps: int) -> float:
    """The NFE of `steps` LoRA iterations plus the base sample: give it to another method to match cost."""
    return generator.nfe(0) + steps * generator.nfe(settings.grad_steps)


__all__ = [
    "Budget",
    "Checkpoint",
    "METHODS",
    "ResumeMismatchError",
    "Result",
    "Settings",
    "Step",
    "nfe_budget_for",
    "optimize",
]
