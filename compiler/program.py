"""CompiledProgram: IR + semantics -> a callable from videos to Reports.

One call evaluates every term once (a per-call cache keyed by the IR's structural
equality), then the temporal formulas twice over the same atom traces: with the
exact semantics (verdicts, traces, violations; no gradient) and with the smooth
semantics (losses; differentiable).

Windows: a formula is evaluated over a window [lo, hi] of frames and returns its
robustness at every frame of the window, a trace [B, hi - lo + 1]. A rule's value is
its trace at frame 0 of the whole video.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ruledsl.compiler import ir
from ruledsl.compiler import primitives as P
from ruledsl.compiler.report import Report, RuleReport
from ruledsl.compiler.semantics import BIG, Exact, Semantics, Smooth, make_semantics


class VideoError(ValueError):
    """The video tensor is not a [B, T, 3, H, W] float video in [0, 1]."""


class WindowError(ValueError):
    """A window or time point lies outside the video (frame counts are known only at call time)."""


def check_video(video) -> torch.Tensor:
    """Verify the public input: a float tensor [B, T, 3, H, W] with finite values in [0, 1]."""
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


class CompiledProgram:
    """A rule program ready to score videos. `program(video) -> Report`."""

    def __init__(
        self,
        program: ir.IRProgram,
        temperature: float = 0.05,
        margin: float = 0.05,
        scale: float = 0.05,
        surrogate: float | None = 2.0,
        resolution: int | None = 256,
    ):
        if not temperature > 0 or not scale > 0:
            raise ValueError("temperature and scale must be positive")
        if resolution is not None and resolution < 8:
            raise ValueError(f"resolution must be at least 8 pixels (or None for full size), got {resolution}")
        self.resolution = resolution
        if surrogate is not None and not surrogate >= 1:
            raise ValueError(f"surrogate must be >= 1 (a kernel width multiplier) or None, got {surrogate}")
        self.surrogate = surrogate
        self.ir = program
        self.temperature = float(temperature)
        self.margin = float(margin)
        self.scale = float(scale)
        self.images: dict[str, torch.Tensor] = {}
        for node in _walk_terms(program):
            if isinstance(node, ir.ImageFile):
                self.images[node.path] = _load_image(program, node.path)

    @property
    def rules(self) -> tuple[ir.Rule, ...]:
        return self.ir.rules

    def __repr__(self) -> str:
        return (
            f"CompiledProgram({self.ir.task or self.ir.source_name}, {len(self.rules)} rules, τ={self.temperature:g})"
        )

    def __str__(self) -> str:
        return ir.to_text(self.ir)

    def robustness(self, video: torch.Tensor, semantics: str | Semantics = "exact") -> dict[str, torch.Tensor]:
        """Per-rule robustness [B] under one semantics (no report, no losses)."""
        evaluation = _Evaluation(self, check_video(video))
        sem = make_semantics(semantics, self.temperature)
        return {rule.name: evaluation.rule_value(rule, sem) for rule in self.rules}

    def __call__(self, video: torch.Tensor, temperature: float | None = None) -> Report:
        video = check_video(video)
        evaluation = _Evaluation(self, video)
        smooth = Smooth(self.temperature if temperature is None else temperature)
        exact = Exact()
        reports = {}
        total = torch.zeros(video.shape[0], dtype=video.dtype, device=video.device)
        # Smooth first: it fills the term cache with tensors that carry gradients; the exact
        # pass then reuses them under no_grad (a no_grad pass first would cache graph-less tensors).
        softs = {rule.name: evaluation.rule_value(rule, smooth) for rule in self.rules}
        for rule in self.rules:
            with torch.no_grad():
                value = evaluation.rule_value(rule, exact).detach()
                trace = evaluation.blame(rule.formula, 0, video.shape[1] - 1, 0).detach()
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
    """Area-average the frames so the long side is at most `resolution` pixels.

    Every measure is in fractions of the frame, so scores barely depend on the pixel
    count, while the cost (dominated by the per-pixel CIE Lab conversion) falls with it.
    """
    b, t, c, h, w = video.shape
    if resolution is None or max(h, w) <= resolution:
        return video
    factor = math.ceil(max(h, w) / resolution)  # an integer factor: plain average pooling, the cheapest kind
    small = F.avg_pool2d(video.reshape(b * t, c, h, w), factor, ceil_mode=True)
    return small.reshape(b, t, c, *small.shape[-2:])


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


def _walk_terms(program: ir.IRProgram):
    stack = [rule.formula for rule in program.rules]
    while stack:
        node = stack.pop()
        yield node
        for value in vars(node).values():
            if isinstance(value, (ir.Term, ir.Formula)):
                stack.append(value)
            elif isinstance(value, tuple):
                stack.extend(v for v in value if isinstance(v, (ir.Term, ir.Formula)))


def _load_image(program: ir.IRProgram, path: str) -> torch.Tensor:
    from ruledsl.video import VideoReadError, read_image

    full = Path(program.base_dir) / path
    try:
        array = read_image(full)
    except VideoReadError as error:
        raise ir.CompileError(f"cannot read image {path!r} ({full}): {error}", program.source_name, None) from error
    return torch.from_numpy(array.astype("float32") / 255.0).permute(2, 0, 1).contiguous()


class _Evaluation:
    """One call's state: the video, its Lab form and the cache of evaluated terms."""

    def __init__(self, compiled: CompiledProgram, video: torch.Tensor):
        self.compiled = compiled
        self.video = _working_resolution(video, compiled.resolution)
        self.b, self.t, _, self.h, self.w = self.video.shape
        self.cache: dict = {}

    def memo(self, key, compute):
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    @property
    def lab(self) -> torch.Tensor:
        return self.memo("lab", lambda: P.to_lab(self.video))

    def frame(self, time: tuple[str, float], lo: int, hi: int, where: str, clamp: bool = False) -> int:
        kind, value = time
        if kind == "start":
            return lo
        if kind == "end":
            return hi
        if kind == "fraction":
            return lo + int(round(value * (hi - lo)))
        frame = lo + int(value)
        if frame > hi:
            if clamp:
                return hi
            raise WindowError(
                f"{where}: frame {int(value)} is past the end of a window of {hi - lo + 1} frames "
                f"(frames {lo}..{hi}); use a fraction like 0.5 or `end` to work at any length"
            )
        return frame

    # ---- terms ------------------------------------------------------------------------------

    def mask(self, term: ir.Term) -> torch.Tensor:
        return self.memo(term, lambda: self._mask(term))

    def _mask(self, term: ir.Term) -> torch.Tensor:
        like = self.video
        match term:
            case ir.ColorMask(rgb=rgb, tol=tol):
                return P.color_mask(self.lab, rgb, tol, self.compiled.surrogate)
            case ir.BoxMask(x0=x0, y0=y0, x1=x1, y1=y1):
                return P.box_mask(x0, y0, x1, y1, self.h, self.w, like).expand(self.b, 1, self.h, self.w)
            case ir.Snapshot(region=region, time=time):
                k = self.frame(time, 0, self.t - 1, f"{self.compiled.ir.source_name}: a region snapshot")
                if region in self.cache:  # the live mask exists already: slice it
                    return self.cache[region][:, k : k + 1].detach()
                # Otherwise evaluate the selector on that one frame only (T times less work).
                frame = self.memo(("frame", k), lambda: _Evaluation(self.compiled, self.video[:, k : k + 1].detach()))
                return frame.mask(region).detach()
            case ir.RegionOp(op="complement", args=(a,)):
                return 1.0 - self.mask(a)
            case ir.RegionOp(op="union", args=(a, b)):
                ma, mb = self.mask(a), self.mask(b)
                return ma + mb - ma * mb
            case ir.RegionOp(op="intersection", args=(a, b)):
                return self.mask(a) * self.mask(b)
            case ir.RegionOp(op="difference", args=(a, b)):
                return self.mask(a) * (1.0 - self.mask(b))
            case ir.RegionOp(op="grow", args=(a,), amount=amount):
                return P.grow(self.mask(a), P.pixels(amount, self.h, self.w))
            case ir.RegionOp(op="shrink", args=(a,), amount=amount):
                return P.shrink(self.mask(a), P.pixels(amount, self.h, self.w))
        raise TypeError(f"not a region term: {term!r}")

    def live(self, term: ir.Term) -> ir.Term:
        """The same region with snapshots removed: what `unchanged` re-evaluates on every frame."""
        match term:
            case ir.Snapshot(region=region):
                return self.live(region)
            case ir.RegionOp(op=op, args=args, amount=amount):
                return ir.RegionOp(op, tuple(self.live(a) for a in args), amount)
        return term

    def field(self, term: ir.Term) -> torch.Tensor:
        """Distance field of a region (no gradient; computed once per call, static regions once per video)."""
        return self.memo(("field", term), lambda: P.distance_field(self.mask(term)))

    def point(self, term: ir.Term) -> torch.Tensor:
        """[B, T|1, 2] positions in L-units."""
        match term:
            case ir.PointConst(x=x, y=y):
                scale = float(max(self.h, self.w))
                return (
                    self.video.new_tensor([x * self.w / scale, y * self.h / scale]).view(1, 1, 2).expand(self.b, 1, 2)
                )
            case ir.Measure(name="centroid", args=(region,)):
                return self.memo(term, lambda: P.centroid(self.mask(region)))
        return self.memo(("centroid", term), lambda: P.centroid(self.mask(term)))  # a region: its centroid

    def number(self, term: ir.Term) -> torch.Tensor:
        """[B, T|1] per-frame numbers."""
        match term:
            case ir.Const(value=value):
                return self.video.new_full((self.b, 1), value)
            case ir.Arith(op="neg", args=(a,)):
                return -self.number(a)
            case ir.Arith(op=op, args=(a, b)):
                x, y = self.number(a), self.number(b)
                if op == "/":
                    return x / torch.where(y.abs() < P.EPS, torch.full_like(y, P.EPS), y)
                return {"+": x + y, "-": x - y, "*": x * y}[op]
            case ir.Measure():
                return self.memo(term, lambda: self._measure(term))
        raise TypeError(f"not a number term: {term!r}")

    def _measure(self, term: ir.Measure) -> torch.Tensor:
        scale = float(max(self.h, self.w))
        match term:
            case ir.Measure(name="area", args=(r,)):
                return P.area(self.mask(r))
            case ir.Measure(name="speed", args=(o,)):
                return P.norm(P.step(self.point(o)))
            case ir.Measure(name="distance", args=(a, b)):
                return P.norm(self.point(a) - self.point(b))
            case ir.Measure(name="x", args=(p,)):
                return self.point(p)[..., 0] * scale / self.w
            case ir.Measure(name="y", args=(p,)):
                return self.point(p)[..., 1] * scale / self.h
            case ir.Measure(name="count", args=(r,)):
                return P.count_components(self.mask(r))
            case ir.Measure(name="abs", args=(n,)):
                return self.number(n).abs()
        raise TypeError(f"no lowering for measure {term.name!r}")

    # ---- atoms ------------------------------------------------------------------------------

    def atom_trace(self, formula: ir.Formula) -> torch.Tensor:
        """[B, T] margin of an atom at every frame of the video (semantics-independent, cached)."""
        positive = _replace_negated(formula)
        base = self.memo(positive, lambda: self._atom(positive))
        return -base if getattr(formula, "negated", False) else base

    def _atom(self, formula: ir.Formula) -> torch.Tensor:
        full = (self.b, self.t)
        match formula:
            case ir.Truth(value=value):
                return self.video.new_full(full, 1.0 if value else -1.0)
            case ir.Compare(op=op, left=left, right=right):
                x, y = self.number(left), self.number(right)
                return (y - x if op in ("<", "<=") else x - y).expand(full)
            case ir.Atom():
                return self._predicate(formula).expand(full)
            case ir.Ask(question=question):
                raise ir.CompileError(
                    f"`ask {question!r}`: VQA atoms are not yet supported by this backend",
                    self.compiled.ir.source_name,
                    formula.span,
                )
        raise TypeError(f"not an atom: {formula!r}")

    def _predicate(self, atom: ir.Atom) -> torch.Tensor:
        p = dict(atom.params)
        args = atom.args
        match atom.name:
            case "persists":
                a = P.area(self.mask(args[0]))
                a0 = a[:, :1].detach()
                half_pixel = 0.5 / (self.h * self.w)  # so an object absent from the start does not "persist"
                return P.clamp_margin((a - p["frac"] * a0 - half_pixel) / (a0 + half_pixel))
            case "keeps_area":
                a = P.area(self.mask(args[0]))
                a0 = a[:, :1].detach()
                return P.clamp_margin(p["tol"] - (a / (a0 + P.EPS) - 1.0).abs())
            case "keeps_color":
                m = self.mask(args[0])
                mean = torch.einsum("bthw,btchw->btc", m, self.lab) / (m.sum((-2, -1))[..., None] + P.EPS)
                delta = P.norm(mean - mean[:, :1].detach())
                return P.clamp_margin((p["tol"] - delta) / p["tol"])
            case "single":
                # The log keeps a stray blob far away (a huge ratio) in range; no tanh on top: it would
                # saturate exactly for badly broken videos and leave them without a gradient.
                return 0.25 * torch.log(p["spread"] / (P.spread_ratio(self.mask(args[0])) + P.EPS))
            case "unchanged":
                live = self.mask(self.live(args[0]))
                reference = live[:, :1].detach()
                changed = (live - reference).abs().sum((-2, -1)) / (reference.sum((-2, -1)) + 1.0)
                return P.clamp_margin(p["tol"] - changed)
            case "inside":
                return P.overlap_fraction(self.mask(args[0]), self.mask(args[1])) - p["frac"]
            case "avoids":
                return p["frac"] - P.overlap_fraction(self.mask(args[0]), self.mask(args[1]))
            case "touches":
                gap = P.min_distance(self.mask(args[0]), self.field(args[1]))
                # Pixel centres of adjacent pixels are 1 px apart (diagonal: 1.41): 1.5 px of slack
                # makes blobs that share an edge or a corner touch at `within=0`.
                return P.clamp_margin(p["within"] + 1.5 / max(self.h, self.w) - gap)
            case "axis_aligned":
                move = P.step(self.point(args[0])).abs()
                return P.clamp_margin(p["tol"] - move.amin(-1))
            case "grid_step":
                d = P.norm(P.step(self.point(args[0])))
                cell = p["cell"]
                return P.clamp_margin((p["tol"] * cell - torch.minimum(d, (d - cell).abs())) / cell)
            case "matches":
                image = P.resize_image(self.compiled.images[args[0].path].to(self.video), self.h, self.w)
                target = P.to_lab(image[None, None])
                where = self.mask(args[1])
                delta = P.norm((self.lab - target).movedim(2, -1))
                mean = (delta * where).sum((-2, -1)) / (where.sum((-2, -1)) + P.EPS)
                return P.clamp_margin((p["tol"] - mean) / p["tol"])
        raise TypeError(f"no lowering for predicate {atom.name!r}")

    # ---- temporal ---------------------------------------------------------------------------

    def rule_value(self, rule: ir.Rule, sem: Semantics) -> torch.Tensor:
        return self.trace(rule.formula, 0, self.t - 1, sem)[:, 0]

    def trace(self, f: ir.Formula, lo: int, hi: int, sem: Semantics) -> torch.Tensor:
        return self.memo((f, lo, hi, sem.name), lambda: self._trace(f, lo, hi, sem))

    def _trace(self, f: ir.Formula, lo: int, hi: int, sem: Semantics) -> torch.Tensor:
        n = hi - lo + 1
        match f:
            case ir.Truth() | ir.Atom() | ir.Compare() | ir.Ask():
                return self.atom_trace(f)[:, lo : hi + 1]
            case ir.And(children=children):
                return sem.min(torch.stack([self.trace(c, lo, hi, sem) for c in children], -1), -1)
            case ir.Or(children=children):
                return sem.max(torch.stack([self.trace(c, lo, hi, sem) for c in children], -1), -1)
            case ir.Always(body=body):
                return sem.suffix_min(self.trace(body, lo, hi, sem))
            case ir.Eventually(body=body):
                return sem.suffix_max(self.trace(body, lo, hi, sem))
            case ir.Next(body=body):
                x = self.trace(body, lo, hi, sem)
                return torch.cat([x[:, 1:], x[:, -1:]], dim=1)  # the last frame repeats
            case ir.Until(left=left, right=right):
                return sem.until(self.trace(left, lo, hi, sem), self.trace(right, lo, hi, sem))
            case ir.Release(left=left, right=right):
                return sem.release(self.trace(left, lo, hi, sem), self.trace(right, lo, hi, sem))
            case ir.At(time=time, body=body):
                k = self.frame(time, lo, hi, f"{self.compiled.ir.source_name}: `at`")
                return self.trace(body, lo, hi, sem)[:, k - lo : k - lo + 1].expand(self.b, n)
            case ir.During(body=body):
                a, b = self.window(f, lo, hi)
                return self.trace(body, a, b, sem)[:, :1].expand(self.b, n)
        raise TypeError(f"not a formula: {f!r}")

    def window(self, f: ir.During, lo: int, hi: int) -> tuple[int, int]:
        where = self.compiled.ir.source_name + (f":{f.span.line}:{f.span.column}" if f.span else "")
        a = self.frame(f.low, lo, hi, where)
        b = self.frame(f.high, lo, hi, where, clamp=True)
        if a > b:
            raise WindowError(f"{where}: window is empty for a video of {self.t} frames (frames {a}..{b})")
        return a, b

    # ---- blame: which frames break a rule (exact semantics, reporting only) --------------------

    def blame(self, f: ir.Formula, lo: int, hi: int, t: int) -> torch.Tensor:
        """[B, T] margin of the constraint `f` (evaluated at frame t of window [lo, hi]) puts on each frame; BIG elsewhere."""
        exact = Exact()
        out = self.video.new_full((self.b, self.t), BIG)
        value = self.trace(f, lo, hi, exact)[:, t - lo]
        satisfied = (value > 0)[:, None]
        match f:
            case ir.Truth() | ir.Atom() | ir.Compare() | ir.Ask() | ir.Release():
                out[:, t] = value
            case ir.And(children=children):
                out = torch.stack([self.blame(c, lo, hi, t) for c in children]).amin(0)
            case ir.Or(children=children):
                out = torch.stack([self.blame(c, lo, hi, t) for c in children]).amin(0)
                out = torch.where(satisfied, BIG, out)
            case ir.Always(body=body):
                out[:, t : hi + 1] = self.trace(body, lo, hi, exact)[:, t - lo :]
            case ir.Eventually(body=body):
                out[:, t : hi + 1] = self.trace(body, lo, hi, exact)[:, t - lo :]
                out = torch.where(satisfied, BIG, out)
            case ir.Next(body=body):
                out = self.blame(body, lo, hi, min(t + 1, hi))
            case ir.At(time=time, body=body):
                out = self.blame(body, lo, hi, self.frame(time, lo, hi, "`at`"))
            case ir.During():
                a, b = self.window(f, lo, hi)
                out = self.blame(f.body, a, b, a)
            case ir.Until(left=left, right=right):
                phi = self.trace(left, lo, hi, exact)[:, t - lo :]
                psi = self.trace(right, lo, hi, exact)[:, t - lo :]
                for i in range(self.b):
                    if satisfied[i, 0]:
                        continue
                    hits = (psi[i] > 0).nonzero()
                    stop = int(hits[0]) if len(hits) else psi.shape[1]
                    broken = phi[i, :stop] <= 0
                    if broken.any():  # left side broke before the right side held
                        out[i, t : t + stop] = torch.where(broken, phi[i, :stop], BIG)
                    else:  # the right side never held
                        out[i, hi] = psi[i, -1]
        return out


def _replace_negated(formula):
    from dataclasses import replace

    return replace(formula, negated=False) if getattr(formula, "negated", False) else formula
