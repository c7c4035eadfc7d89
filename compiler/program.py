"""CompiledProgram: IR + semantics -> a callable from videos to Reports.

One call builds a spatial evaluation (every term and atom margin at every frame, each
shared sub-term once: `spatial.py`) and a temporal one over its atom margins (formulas
over windows, blame: `temporal.py`), then evaluates every rule twice over the same
atoms: with the exact semantics (verdicts, traces, violations; no gradient) and with the
smooth semantics (losses; differentiable).

Half-precision videos (float16, bfloat16) are evaluated in float32: the colour
conversion and the log-sum-exp overflow or underflow in half precision. Gradients still
flow back to the half-precision input.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F

from ruledsl.compiler import ir, primitives
from ruledsl.compiler.asks import DEFAULT_ASK_FRAMES, AskEvaluation
from ruledsl.compiler.report import Report, RuleReport
from ruledsl.compiler.semantics import Exact, Semantics, Smooth, make_semantics
from ruledsl.compiler.spatial import SpatialEvaluation
from ruledsl.compiler.temporal import TemporalEvaluation, WindowError
from ruledsl.compiler.video_io import shrink
from ruledsl.signatures import BUILTINS

__all__ = ["CompiledProgram", "VideoError", "WindowError", "check_video"]


class VideoError(ValueError):
    """The video tensor is not a [B, T, 3, H, W] float video in [0, 1]."""


def check_video(video) -> torch.Tensor:
    """Verify the public input: a float tensor [B, T, 3, H, W] with finite values in [0, 1].

    Returns the video in float32 or float64 (half precision is widened; see the module docs).
    """
    if not isinstance(video, torch.Tensor):
        raise VideoError(f"expected a torch.Tensor video [B, T, 3, H, W], got {type(video).__name__}")
    if video.dim() == 4:
        raise VideoError(
            f"expected [B, T, 3, H, W], got 4 dimensions {tuple(video.shape)}: add a batch dimension with video[None]"
        )
    if video.dim() != 5 or video.shape[2] != 3:
        raise VideoError(f"expected [B, T, 3, H, W] with 3 colour channels, got shape {tuple(video.shape)}")
    if min(video.shape) == 0:
        raise VideoError(f"empty video: shape {tuple(video.shape)}")
    if not video.is_floating_point():
        raise VideoError(f"expected a float video in [0, 1], got dtype {video.dtype} (divide uint8 frames by 255)")
    if video.dtype in (torch.float16, torch.bfloat16):
        video = _Widen.apply(video)  # differentiable: the gradient arrives in the input's dtype, finite
    # One pass over the video: NaN and inf propagate into the min or the max.
    low, high = (float(x) for x in torch.aminmax(video.detach()))
    if not (math.isfinite(low) and math.isfinite(high)):
        bad = (~torch.isfinite(video.detach())).nonzero()[0].tolist()
        raise VideoError(f"video has NaN or infinite values (first at index {bad})")
    if low < -0.05 or high > 1.05:
        raise VideoError(
            f"video values span [{low:.3g}, {high:.3g}], expected [0, 1]"
            + (" (a [-1, 1] model output? map it with (x + 1) / 2)" if low < -0.05 else "")
        )
    return video if low >= 0.0 and high <= 1.0 else video.clamp(0.0, 1.0)


class _Widen(torch.autograd.Function):
    """Half precision -> float32; the float32 gradient goes back clamped to the input dtype's finite range
    (a per-pixel gradient can exceed float16's 65504 on tiny or degenerate frames: inf, not a number)."""

    @staticmethod
    def forward(ctx, video):
        ctx.dtype = video.dtype
        return video.float()

    @staticmethod
    def backward(ctx, grad):
        limit = torch.finfo(ctx.dtype).max
        return grad.clamp(-limit, limit).to(ctx.dtype)


class CompiledProgram:
    """A rule program ready to score videos. `program(video) -> Report`.

    `allow_paths`: folders besides the program's own that `file()` may read.
    """

    def __init__(
        self,
        program: ir.IRProgram,
        temperature: float = 0.05,
        margin: float = 0.05,
        scale: float = 0.05,
        surrogate: float | None = 2.0,
        resolution: int | None = 256,
        allow_paths: Iterable[str | Path] = (),
        mass_prior: float = primitives.MASS_PRIOR,
        vqa=None,
        ask_frames: int = DEFAULT_ASK_FRAMES,
    ):
        if not temperature > 0 or not scale > 0:
            raise ValueError("temperature and scale must be positive")
        if resolution is not None and resolution < 8:
            raise ValueError(f"resolution must be at least 8 pixels (or None for full size), got {resolution}")
        self.resolution = resolution
        if surrogate is not None and not surrogate >= 1:
            raise ValueError(f"surrogate must be >= 1 (a kernel width multiplier) or None, got {surrogate}")
        self.surrogate = surrogate
        if not mass_prior >= 0:
            raise ValueError(f"mass_prior must be >= 0 (pixels of mass; 0: exact gradients), got {mass_prior}")
        self.mass_prior = float(mass_prior) if surrogate is not None else 0.0
        self.ir = program
        self.temperature = float(temperature)
        self.margin = float(margin)
        self.scale = float(scale)
        self.vqa = vqa  # scores `ask` atoms (compiler/asks.py); None for a program without them
        self.ask_frames = int(ask_frames)
        self.has_asks = any(isinstance(node, ir.Ask) for node in ir.walk(program))
        # Compile-time work of built-ins (reading images), once per distinct call.
        loader = _Loader(program, allow_paths)
        self.prepared: dict[ir.Term, object] = {}
        for node in ir.walk(program):
            prepare = BUILTINS[node.name].prepare if isinstance(node, ir.Call) else None
            if prepare is not None and node not in self.prepared:
                loader.span = node.span
                self.prepared[node] = prepare(loader, **ir.arguments(node))

    @property
    def rules(self) -> tuple[ir.Rule, ...]:
        return self.ir.rules

    def __repr__(self) -> str:
        return (
            f"CompiledProgram({self.ir.task or self.ir.source_name}, {len(self.rules)} rules, τ={self.temperature:g})"
        )

    def __str__(self) -> str:
        return ir.to_text(self.ir)

    def evaluation(self, video: torch.Tensor) -> tuple[SpatialEvaluation, TemporalEvaluation]:
        """The per-call evaluations of a checked video: spatial (terms, atoms) and temporal (formulas) over it."""
        small = _working_resolution(video, self.resolution)
        spatial = SpatialEvaluation(small, self.surrogate, self.prepared, self.ir.source_name)
        # `ask` sees the frames at full resolution: the VQA model's processor resizes them its own way.
        asks = AskEvaluation(video, self.vqa, self.ask_frames) if self.has_asks else None
        temporal = TemporalEvaluation(spatial.atom, small, spatial.b, spatial.t, self.ir.source_name, asks)
        return spatial, temporal

    def robustness(self, video: torch.Tensor, semantics: str | Semantics = "exact") -> dict[str, torch.Tensor]:
        """Per-rule robustness [B] under one semantics (no report, no losses)."""
        _, temporal = self.evaluation(check_video(video))
        sem = make_semantics(semantics, self.temperature)
        with self._gradients():
            return {rule.name: temporal.rule_value(rule, sem) for rule in self.rules}

    def _gradients(self):
        """The context of a pass that may keep a graph: with surrogate gradients (the default) the
        per-mass means damp theirs near an empty mask by `mass_prior` pixels (primitives.ratio);
        surrogate=None (or mass_prior=0) is exact."""
        return primitives.mass_prior(self.mass_prior)

    def __call__(self, video: torch.Tensor, temperature: float | None = None) -> Report:
        video = check_video(video)
        _, temporal = self.evaluation(video)
        smooth = Smooth(self.temperature if temperature is None else temperature)
        exact = Exact()
        reports = {}
        total = torch.zeros(video.shape[0], dtype=video.dtype, device=video.device)
        # Smooth first: it fills the term cache with tensors that carry gradients; the exact
        # pass then reuses them under no_grad (a no_grad pass first would cache graph-less tensors).
        with self._gradients():
            softs = {rule.name: temporal.rule_value(rule, smooth) for rule in self.rules}
        for rule in self.rules:
            with torch.no_grad():
                value = temporal.rule_value(rule, exact).detach()
                trace = temporal.blame(rule.formula, 0, video.shape[1] - 1, 0).detach()
            soft = softs[rule.name]
            loss = self.scale * F.softplus((self.margin - soft) / self.scale)
            total = total + rule.weight * loss
            verdict = value > 0
            reports[rule.name] = RuleReport(
                name=rule.name,
                role=rule.role,
                weight=rule.weight,
                robustness=value,
                smooth_robustness=soft,
                verdict=verdict,
                trace=trace,
                violations=_intervals(trace, verdict),
                loss=loss,
            )
        satisfied = (
            torch.stack([r.verdict for r in reports.values()]).all(0)
            if reports
            else torch.ones(video.shape[0], dtype=torch.bool, device=video.device)
        )
        return Report(
            satisfied=satisfied,
            rules=reports,
            loss=total.mean(),
            loss_per_candidate=total,
            frames=video.shape[1],
            candidates=video.shape[0],
            semantics=smooth.name,
        )


def _working_resolution(video: torch.Tensor, resolution: int | None) -> torch.Tensor:
    """Area-average the frames so the long side is at most `resolution` pixels (`video_io.shrink`)."""
    return shrink(video, resolution)


def _intervals(trace: torch.Tensor, verdict: torch.Tensor) -> list[list[tuple[int, int]]]:
    out = []
    for row, ok in zip((trace <= 0).tolist(), verdict.tolist()):
        spans, start = [], None
        for t, bad in enumerate(row + [False]):
            if bad and start is None:
                start = t
            elif not bad and start is not None:
                spans.append((start, t - 1))
                start = None
        if not ok and not spans:  # e.g. a margin of exactly 0: blame the evaluation frame
            spans = [(0, 0)]
        out.append(spans if not ok else [])
    return out


class _Loader:
    """Compile-time file access for built-ins: only below the program's folder or an allowed one."""

    def __init__(self, program: ir.IRProgram, allow_paths: Iterable[str | Path]):
        self.program = program
        self.folders = [Path(program.base_dir).resolve(), *(Path(p).resolve() for p in allow_paths)]
        self.span = None  # the call being prepared, for messages

    def error(self, message: str) -> ir.CompileError:
        return ir.CompileError(message, self.program.source_name, self.span)

    def path(self, path: str) -> Path:
        """The file `path` names, after links are followed; it must lie inside an allowed folder."""
        full = (Path(self.program.base_dir) / path).resolve()
        if not any(full == folder or folder in full.parents for folder in self.folders):
            raise self.error(
                f"file({path!r}) is outside the program's folder (links are followed); "
                "pass allow_paths=[folder] to compile() to read from another folder"
            )
        return full

    def image(self, path: str) -> torch.Tensor:
        """An image file as [3, H, W] float in [0, 1]; a file that is not a readable image is a CompileError."""
        from ruledsl.video import VideoReadError, read_image

        full = self.path(path)
        if not full.is_file():
            raise self.error(f"file({path!r}): no such file")
        try:
            array = read_image(os.fspath(full))
        except VideoReadError:
            # The decoder's own message describes the file's bytes: not shown (the file may be anything).
            raise self.error(f"file({path!r}) is not a readable PNG or JPEG image") from None
        return torch.from_numpy(array.astype("float32") / 255.0).permute(2, 0, 1).contiguous()
