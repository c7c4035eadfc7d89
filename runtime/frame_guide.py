"""Rule-guided autoregressive sampling: a frame that breaks a safety rule is redrawn at once.

A model that makes frames one after another (the autoregressive reasoner v2) can be judged while it
samples. A *safety* rule — one whose violation no later frame can undo, like `always inside(agent,
floor)` — is decided on the frames drawn so far: once the prefix breaks it, every continuation does.
So after each frame the program's safety monitors (below) are evaluated on the prefix with the exact
semantics; if the new frame makes a monitor fail that held on the prefix before it, the frame is drawn
again from fresh noise, up to `retries` times, and the attempt that breaks the fewest monitors is kept.
A redraw costs one frame's denoiser calls (1/(T-1) of a sample), where Best-of-N pays a whole video.

The monitors are built from the rules' IR (`safety_monitor`): `always φ` and `φ until ψ` (as
"φ weakly until ψ": broken once φ fails before ψ has held) over per-frame formulas, and conjunctions of
them; everything else (`at end`, `eventually`, `next`, windows, asks) cannot be judged on a prefix and
is left to the video's final verdict. A program with no monitorable rule samples exactly as unguided.

Goals steer too (`goal_draws` > 1): a goal `at end ψ` (or `at K ψ`) cannot be judged before its frame,
but ψ on the frame just drawn says how near the video is to it (for `inside`, the margin falls with the
distance to the region). Each frame is then drawn `goal_draws` times and, among the draws that break
the fewest monitors, the one whose goals' margins (those still short of 0, summed) are highest is kept:
a greedy step toward the goal, with the monitors (and backtracking) keeping it legal. A frame on which
every goal already holds keeps its first legal draw.

Everything is deterministic in the seed: the redraws' noise is a function of (seed, frame, attempt),
and the returned `noise` (the initial noise with each frame's accepted draw) reproduces the video
through a plain `generator.rollout`, with or without a LoRA's gradient.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import torch

from ruledsl.compiler import ir

# Operators whose value at frame t depends on frames after t, or on a window: not per-frame.
_TEMPORAL = (ir.Always, ir.Eventually, ir.Next, ir.Until, ir.Release, ir.Events, ir.At, ir.During)


def _per_frame(formula: ir.Formula) -> bool:
    """True if the formula's value at frame t depends only on frames up to t: no temporal operator,
    no VQA question, no snapshot of a frame other than the first."""
    for node in _walk(formula):
        if isinstance(node, (*_TEMPORAL, ir.Ask)):
            return False
        if isinstance(node, ir.Snapshot) and node.time[0] != "start" and node.time != ("frame", 0):
            return False
    return True


def _walk(node):
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(ir.children(current))


def safety_monitor(formula: ir.Formula) -> ir.Formula | None:
    """A formula that is false on a prefix exactly when no continuation of the prefix can satisfy
    `formula` (for the forms handled; None when no such part of it is known). `always φ` is its own
    monitor; `φ until ψ` becomes `(φ until ψ) or always φ` (weak until); a conjunction keeps its
    monitorable parts (any one broken breaks the whole); a disjunction only if every part is."""
    if isinstance(formula, ir.Always) and _per_frame(formula.body):
        return formula
    if isinstance(formula, ir.Until) and _per_frame(formula.left) and _per_frame(formula.right):
        return ir.Or((formula, ir.Always(formula.left)))
    if isinstance(formula, (ir.And, ir.Or)):
        parts = [safety_monitor(child) for child in formula.children]
        kept = [p for p in parts if p is not None]
        if isinstance(formula, ir.Or) and len(kept) < len(parts):
            return None
        if not kept:
            return None
        return kept[0] if len(kept) == 1 else type(formula)(tuple(kept))
    return None


def monitor_program(program):
    """The compiled program's safety monitors as a program of their own (same compile options and
    prepared built-ins), one rule per monitorable rule; None if no rule has a monitor."""
    return _subprogram(program, lambda rule: safety_monitor(rule.formula))


def goal_progress(formula: ir.Formula) -> ir.Formula | None:
    """What a goal says of the frame just drawn: `at T ψ` (ψ per frame, any T) becomes ψ at the prefix's
    last frame, a conjunction keeps its parts that have one; None for anything else."""
    if isinstance(formula, ir.At) and _per_frame(formula.body):
        return ir.At(("end", 0.0), formula.body)
    if isinstance(formula, ir.And):
        kept = [p for p in (goal_progress(child) for child in formula.children) if p is not None]
        if kept:
            return kept[0] if len(kept) == 1 else ir.And(tuple(kept))
    return None


def _subprogram(program, rewrite):
    """The compiled program with each rule's formula rewritten by `rewrite(rule)` (rules rewritten to None
    dropped; same compile options and prepared built-ins); None if no rule is left."""
    rules = []
    for rule in program.rules:
        formula = rewrite(rule)
        if formula is not None:
            rules.append(replace(rule, formula=formula))
    if not rules:
        return None
    sub = copy.copy(program)
    sub.ir = replace(program.ir, rules=tuple(rules))
    sub.has_asks = False  # _per_frame excludes them
    return sub


def goal_program(program):
    """The program's goal rules as ψ on the last frame of a prefix (`goal_progress`), one rule per goal that
    has one; None if none has."""
    return _subprogram(program, lambda rule: goal_progress(rule.formula) if rule.role == "goal" else None)


def draw_seed(seed: int, frame: int, attempt: int) -> int:
    """The noise seed of a frame's redraw: distinct per (seed, frame, attempt), fixed forever."""
    return (seed * 1_000_003 + frame * 10_007 + attempt) % (2**63)


@dataclass
class GuidedSample:
    video: torch.Tensor  # [1, T, 3, H, W] in [0, 1]
    noise: torch.Tensor  # the initial noise with each frame's accepted draw: rollout(noise) gives `video`
    redraws: int = 0  # frames drawn again (each costs one frame's denoiser calls)
    attempts: list[int] = field(default_factory=list)  # per frame after the first: the draw kept (0: the seed's own)
    broken: list[str] = field(default_factory=list)  # monitors that no attempt could keep


def frame_noise(generator, condition, seed: int, frame: int, attempt: int) -> torch.Tensor:
    """The noise of one frame's redraw [1, C, h, w], from its own seed (`draw_seed`)."""
    return generator.initial_noise(condition, draw_seed(seed, frame, attempt))[:, frame]


def guided_noise(generator, condition, seed: int, attempts: list[int]) -> torch.Tensor:
    """The initial noise of a guided sample from its seed and the draw kept per frame
    (`GuidedSample.attempts`): what `generator.rollout` turns into the same video again."""
    noise = generator.initial_noise(condition, seed)
    if len(attempts) != noise.shape[1] - 1:
        raise ValueError(
            f"{len(attempts)} frame draws given for a video of {noise.shape[1]} frames (one per frame after the first)"
        )
    for frame, attempt in enumerate(attempts, start=1):
        if attempt:
            noise[:, frame] = frame_noise(generator, condition, seed, frame, attempt)
    return noise


@dataclass
class FrameGuide:
    """Samples an autoregressive generator frame by frame under a program's safety monitors."""

    program: object  # the CompiledProgram whose rules are monitored
    retries: int = 3  # redraws of a frame before giving up on it
    backtracks: int = 0  # per video: times a frame no draw could keep sends the search one frame back
    goal_draws: int = 1  # draws of each frame compared on the goals' margins (1: the first legal draw is kept)

    def __post_init__(self):
        if self.retries < 0:
            raise ValueError(f"frame retries must be >= 0, got {self.retries}")
        if self.goal_draws < 1:
            raise ValueError(f"frame goal draws must be >= 1, got {self.goal_draws}")
        self.monitors = monitor_program(self.program)
        # Part of frame guidance: retries 0 (guidance off) samples plainly whatever goal_draws says.
        self.goals = goal_program(self.program) if self.goal_draws > 1 and self.retries > 0 else None

    @classmethod
    def for_settings(cls, program, settings) -> FrameGuide:
        """The guide a run's Settings ask for (`frame_retries`, `frame_backtracks`, `frame_goal_draws`)."""
        return cls(program, settings.frame_retries, settings.frame_backtracks, settings.frame_goal_draws)

    @property
    def active(self) -> bool:
        return self.retries > 0 and (self.monitors is not None or self.goals is not None)

    def _goal_margin(self, first: torch.Tensor, image: torch.Tensor) -> float:
        """How near the frame just drawn is to the goals: the sum of their margins short of 0 on it
        (0 once every goal holds there; 0 without goals)."""
        if self.goals is None:
            return 0.0
        values = self.goals.robustness(torch.stack([first, image], 1), "exact")
        return sum(min(float(v[0]), 0.0) for v in values.values())

    def frame_cost(self, generator, condition) -> float:
        """NFE of drawing one frame again: a sample's NFE spread over the frames it generates."""
        return generator.nfe(0) / max(condition.frames - 1, 1)

    def redraws_affordable(self, generator, condition, tracker, sample_cost: float) -> int | None:
        """How many redraws the run's NFE budget still pays for after a sample of `sample_cost` (None: no
        NFE budget), so that a guided sample never overspends it."""
        if tracker.budget.nfe is None:
            return None
        left = tracker.budget.nfe - tracker.nfe - sample_cost
        return max(int(left / self.frame_cost(generator, condition) + 1e-9), 0)

    def sample(self, generator, condition, seed: int, max_redraws: int | None = None) -> GuidedSample:
        """One guided video from `seed` (no gradient; the LoRA, if attached and enabled, takes part), with at
        most `max_redraws` redraws in all (None: `retries` per frame; what a budget can still pay for)."""
        noise = generator.initial_noise(condition, seed)
        # A generator that denoises all frames together has no prefix to judge: its seeds are sampled whole.
        if not self.active or max_redraws == 0 or not getattr(generator, "autoregressive", False):
            with torch.no_grad():
                video = generator.rollout(condition, noise)
            return GuidedSample(video, noise, 0, [0] * (noise.shape[1] - 1))
        with torch.no_grad():
            return self._sample(generator, condition, seed, noise.clone(), max_redraws)

    def _sample(self, generator, condition, seed, noise, max_redraws) -> GuidedSample:
        conditioning = generator.conditioning(condition, 1)
        latents = generator.start(noise, conditioning)
        frames = [generator.decode(latents[:, :2], conditioning)[:, 0]]  # frame 0: the condition's own
        # broken[k]: the monitors lost before frame k (no attempt could keep them; not counted again)
        broken: list[set[str]] = [set(), set()]
        tries = [0] * noise.shape[1]  # draws of each frame so far: the next draw's attempt number
        attempts = [0] * noise.shape[1]  # the draw kept for each frame
        redraws, backtracks, frame, reached = 0, 0, 1, 1
        left = float("inf") if max_redraws is None else max_redraws

        def affordable(at: int) -> bool:
            """One more redraw of frame `at`, keeping one in reserve for each frame after it up to the furthest
            reached (after a backtrack each of those must be drawn again): `max_redraws` is never exceeded."""
            return redraws + 1 + max(reached - at, 0) <= left

        while frame < noise.shape[1]:
            reached = max(reached, frame)
            best = None  # (rank, frame noise, frame latent, image, monitors it breaks, attempt)
            drawn = 0
            while True:
                attempt = tries[frame]
                if attempt and best is not None and not affordable(frame):
                    break  # (a frame's first draw after a backtrack was kept in reserve: always made)
                tries[frame] += 1
                drawn += 1
                draw = noise[:, frame] if attempt == 0 else frame_noise(generator, condition, seed, frame, attempt)
                redraws += attempt > 0
                latents = torch.cat([latents[:, :frame], draw[:, None], latents[:, frame + 1 :]], 1)
                for call in generator.frame_calls(frame):
                    latents = generator.step(
                        generator.predict(latents, call, conditioning), call, latents, conditioning
                    )
                image = generator.decode(latents[:, [0, frame]], conditioning)[:, 1]
                values = {}
                if self.monitors is not None:
                    values = self.monitors.robustness(torch.stack([*frames, image], 1), "exact")
                lost = broken[frame]
                newly = [name for name, value in values.items() if name not in lost and not bool(value[0] > 0)]
                goal = self._goal_margin(frames[0], image)
                rank = (-len(newly), goal, sum(min(float(v[0]), 0.0) for v in values.values()))
                if best is None or rank > best[0]:
                    best = (rank, draw, latents[:, frame].clone(), image, newly, attempt)
                # A frame is drawn until a draw keeps the monitors (at most `retries` redraws) and, with
                # goal draws, at least `goal_draws` times unless a legal draw meets every goal.
                if best[4] == [] and (drawn >= self.goal_draws or (not newly and goal >= 0.0)):
                    break
                if best[4] and drawn > self.retries:
                    break
            assert best is not None
            if best[4] and backtracks < self.backtracks and frame > 1 and affordable(frame - 1):
                # No draw of this frame keeps the monitors: the frame before it may be what dooms it;
                # draw that one again (its next attempt) and go on from there.
                backtracks += 1
                frame -= 1
                frames.pop()
                continue
            _, draw, latent, image, newly, kept = best
            attempts[frame] = kept
            noise[:, frame] = draw
            latents = torch.cat([latents[:, :frame], latent[:, None], latents[:, frame + 1 :]], 1)
            frames.append(image)
            del broken[frame + 1 :]
            broken.append(broken[frame] | set(newly))
            frame += 1
        if generator.decodes_per_frame:
            video = torch.stack(frames, 1).float()  # the frames as judged: what decoding all of them gives
        else:
            video = generator.decode(latents, conditioning).float()
        return GuidedSample(video, noise, redraws, attempts[1:], sorted(broken[-1]))
