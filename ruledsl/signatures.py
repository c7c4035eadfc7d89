"""The types of the language and the registry of built-in functions: one entry per built-in.

An entry holds everything about one built-in: its parameters (types, defaults, value
ranges), its docs line and example, an optional static check, and its lowering (how
the compiler computes it). Everything that knows what a built-in is reads `BUILTINS`:
the checker (arity, argument types, ranges, the entry's check), the compiler (the
entry's lowering), docs/language.md (generated, tested to match) and the teacher's
prompt. Adding a built-in is one decorated function here plus its tests
(docs/compiler.md, "Adding a built-in").

No torch at import: `ruledsl check` reads this table. A lowering reaches torch and the
pixel primitives through `torch` and `P` below, which import their module on first use
(only the compiler calls lowerings), and reads the video through its first argument,
the per-call evaluation (`ruledsl.compiler.spatial.SpatialEvaluation`):
`ev.mask(r)`, `ev.point(p)`, `ev.number(n)`, `ev.image(i)`, `ev.field(r)`,
`ev.live_mask(r)`, `ev.lab`, `ev.video`, `ev.b, ev.t, ev.h, ev.w`, `ev.scale`.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any


class Type(str, Enum):
    FORMULA = "formula"
    NUMBER = "number"
    COLOR = "colour"
    STRING = "string"
    REGION = "region"  # a mask per frame (or one static mask)
    OBJECT = "object"  # a region tracked through every frame: has area, centroid, speed
    POINT = "point"
    IMAGE = "image"
    COLLECTION = "objects"  # a list of objects, for forall / exists

    def accepts(self, other: Type) -> bool:
        """Subtyping: an object is a region; everything else only itself."""
        return self is other or (self is Type.REGION and other is Type.OBJECT)


# Anything with a position: distance() and x()/y() take the centroid of a region.
LOCATABLE = (Type.POINT, Type.REGION)

# What each kind of built-in returns.
KIND_RETURNS = {
    "selector": Type.REGION,
    "point": Type.POINT,
    "image": Type.IMAGE,
    "measure": Type.NUMBER,
    "predicate": Type.FORMULA,
    "object": Type.OBJECT,  # one member of a collection (`largest(tiles)`)
    "collection": Type.COLLECTION,  # `components(...)`: the value of an `objects` declaration
}


@dataclass(frozen=True)
class Param:
    name: str
    types: tuple[Type, ...]
    doc: str
    default: float | None = None  # only numbers have defaults
    low: float | None = None  # bounds checked on constant arguments (literals, params, overrides)
    high: float | None = None
    open_low: bool = False  # `low` itself is excluded (the lowering divides by the value)
    flag: bool = False  # a constant `true` / `false` (types FORMULA: the literal's type); 1.0 or 0.0 when lowered

    @property
    def required(self) -> bool:
        return self.default is None

    def type_names(self) -> str:
        if self.flag:
            return "bool"
        names = [t.value for t in self.types]
        return names[0] if len(names) == 1 else " or ".join(names)

    def admits(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return False
        return self.high is None or value <= self.high

    def range_text(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.open_low else '['}{low}, {high}]"


@dataclass(frozen=True)
class Problem:
    """What a built-in's static check found: reported by the checker at `param`'s argument (or the call)."""

    message: str
    hint: str | None = None
    param: str | None = None
    code: str = "E309"  # a diagnostic code of ruledsl.diagnostics.CODES


@dataclass(frozen=True)
class CallContext:
    """What a static check may know besides the arguments: where the program lives."""

    folder: Path  # the .rule file's folder (the working directory for a program from a string)
    allow_paths: tuple[Path, ...] = ()  # further folders `file()` may read, by the caller's choice


@dataclass(frozen=True)
class Builtin:
    name: str
    kind: str  # "selector" | "predicate" | "measure" | "point" | "image"
    params: tuple[Param, ...]
    returns: Type
    doc: str
    example: str
    differentiable: bool = True
    # lower(ev, **arguments) -> tensor: region/point/image/number arguments arrive as IR terms,
    # constant numbers as floats; the result is a mask, point track, image or per-frame numbers
    # (a margin [B, T|1] for predicates: > 0 where the predicate holds).
    lower: Callable[..., Any] = lambda ev, **arguments: _no_lowering()
    # check(values, context) -> problems: static rules beyond each parameter's range (constant
    # argument values by parameter name; None where an argument is not constant).
    check: Callable[[dict[str, Any], CallContext], Iterable[Problem]] | None = None
    # prepare(load, **arguments) -> resource: compile-time work (reading a file); the lowering then
    # receives the resource as `prepared`.
    prepare: Callable[..., Any] | None = None

    def signature(self) -> str:
        parts = []
        for p in self.params:
            text = f"{p.name}: {p.type_names()}"
            if p.flag:
                text += f" = {'true' if p.default else 'false'}"
            elif not p.required:
                text += f" = {p.default:g}"
            parts.append(text)
        return f"{self.name}({', '.join(parts)}) -> {self.returns.value}"

    def is_constant(self, param: Param) -> bool:
        """Number parameters are compile-time constants, except a measure's (arithmetic on measures); flags too."""
        return param.flag or (param.types == (Type.NUMBER,) and self.kind != "measure")

    def term_params(self) -> tuple[Param, ...]:
        """The parameters whose arguments the compiler passes as terms (not constants), in order."""
        return tuple(p for p in self.params if not self.is_constant(p))


def _no_lowering():
    raise NotImplementedError("this built-in has no lowering")


class _Lazy:
    """A module imported on first attribute access: lowerings use torch, `ruledsl check` must not load it."""

    def __init__(self, name: str):
        self._name = name
        self._module: Any = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)


torch: Any = _Lazy("torch")
P: Any = _Lazy("ruledsl.compiler.primitives")
O: Any = _Lazy("ruledsl.compiler.objects")

BUILTINS: dict[str, Builtin] = {}


def builtin(
    name: str,
    kind: str,
    params: tuple[Param, ...],
    doc: str,
    example: str,
    differentiable: bool = True,
    check: Callable[[dict[str, Any], CallContext], Iterable[Problem]] | None = None,
    prepare: Callable[..., Any] | None = None,
) -> Callable[[Callable[..., Any]], Builtin]:
    """Register the decorated function as the lowering of a new built-in `name`."""

    def register(lower: Callable[..., Any]) -> Builtin:
        entry = Builtin(name, kind, params, KIND_RETURNS[kind], doc, example, differentiable, lower, check, prepare)
        expected = ["ev", *(p.name for p in params), *(["prepared"] if prepare else [])]
        got = list(inspect.signature(lower).parameters)
        if got != expected:
            raise TypeError(f"lowering of `{name}` takes ({', '.join(got)}), expected ({', '.join(expected)})")
        if name in BUILTINS:
            raise ValueError(f"built-in `{name}` is registered twice")
        BUILTINS[name] = entry
        return entry

    return register


def _num(
    name: str,
    doc: str,
    default: float | None = None,
    low: float | None = 0.0,
    high: float | None = None,
    open_low: bool = False,
) -> Param:
    return Param(name, (Type.NUMBER,), doc, default, low, high, open_low)


def _reg(name: str, doc: str) -> Param:
    return Param(name, (Type.REGION,), doc)


def _obj(name: str, doc: str) -> Param:
    return Param(name, (Type.OBJECT,), doc)


def _loc(name: str) -> Param:
    return Param(name, LOCATABLE, "a point, or the centroid of a region")


_BY = _num("by", "distance, fraction of the frame's longer side", None, 0.0, 1.0)  # grow and shrink


# ---- selectors: build regions from pixels ------------------------------------------------------


@builtin(
    "color",
    "selector",
    (
        Param("c", (Type.COLOR,), "the colour, #rrggbb or a named colour"),
        _num(
            "tol",
            "tolerance: CIE76 colour difference (ΔE in Lab) at which membership falls to ~0.6 (0 beyond 1.5 tol)",
            12.0,
            0.5,
            100.0,
        ),
        Param("hard", (Type.FORMULA,), "`true`: membership is 0 or 1 (> 0.5); gradients as if soft", 0.0, flag=True),
        _num("min_area", "blobs smaller than this fraction of the frame are dropped", 0.0, 0.0, 1.0),
    ),
    "Pixels of this colour (a soft mask, compared in CIE Lab; exactly 0 beyond 1.5 tol).",
    "object agent = color(#ff0000, tol=15)",
)
def _color(ev, c, tol, hard, min_area):
    mask = P.color_mask(ev.lab, c.rgb, tol, ev.surrogate)
    if hard:
        mask = P.straight_through((mask > 0.5).to(mask.dtype), mask)
    return O.drop_small(mask, min_area)


def _box_not_empty(values: dict[str, Any], context: CallContext) -> Iterable[Problem]:
    x0, y0, x1, y1 = (values[k] for k in ("x0", "y0", "x1", "y1"))
    if all(isinstance(v, float) for v in (x0, y0, x1, y1)) and (x0 >= x1 or y0 >= y1):
        yield Problem(
            "an empty box: need x0 < x1 and y0 < y1",
            "box(x0, y0, x1, y1) takes the top-left then the bottom-right corner",
        )


@builtin(
    "box",
    "selector",
    (
        _num("x0", "left edge, fraction of the width", None, 0.0, 1.0),
        _num("y0", "top edge, fraction of the height", None, 0.0, 1.0),
        _num("x1", "right edge, fraction of the width", None, 0.0, 1.0),
        _num("y1", "bottom edge, fraction of the height", None, 0.0, 1.0),
    ),
    "An axis-aligned box; (0, 0) is the top-left corner, (1, 1) the bottom-right.",
    "region left_half = box(0, 0, 0.5, 1)",
    check=_box_not_empty,
)
def _box(ev, x0, y0, x1, y1):
    return P.box_mask(x0, y0, x1, y1, ev.h, ev.w, ev.video).expand(ev.b, 1, ev.h, ev.w)


@builtin(
    "grow",
    "selector",
    (_reg("r", "the region"), _BY),
    "Morphological dilation: every pixel within `by` of the region.",
    "region near_goal = grow(goal, 0.05)",
)
def _grow(ev, r, by):
    return P.grow(ev.mask(r), P.pixels(by, ev.h, ev.w))


@builtin(
    "shrink",
    "selector",
    (_reg("r", "the region"), _BY),
    "Morphological erosion: the pixels of the region at least `by` from its outside.",
    "region core = shrink(floor, 0.01)",
)
def _shrink(ev, r, by):
    return P.shrink(ev.mask(r), P.pixels(by, ev.h, ev.w))


# ---- points and images -------------------------------------------------------------------------


@builtin(
    "centroid",
    "point",
    (_reg("r", "the region or object"),),
    "Mask-weighted mean position of a region.",
    "distance(centroid(agent), goal) <= 0.1",
)
def _centroid(ev, r):
    return ev.point(r)  # a region's position is its centroid: one track, shared with distance(agent, ...)


@builtin(
    "point",
    "point",
    (_num("x", "fraction of the width", None, 0.0, 1.0), _num("y", "fraction of the height", None, 0.0, 1.0)),
    "A fixed point in the frame.",
    "distance(agent, point(0.5, 0.5)) <= 0.2",
)
def _point(ev, x, y):
    return ev.video.new_tensor([x * ev.w / ev.scale, y * ev.h / ev.scale]).view(1, 1, 2).expand(ev.b, 1, 2)


def path_problem(path: str, context: CallContext) -> str | None:
    """Why `file(path)` may not read `path`, judged on the text (the compiler checks the resolved file again)."""
    if not path.strip():
        return "the path is empty"
    full = os.path.normpath(os.path.join(os.path.abspath(context.folder), path))
    for folder in (context.folder, *context.allow_paths):
        root = os.path.normpath(os.path.abspath(folder))
        if os.path.commonpath([full, root]) == root:
            return None
    where = "an absolute path" if os.path.isabs(path) else "the path leads"
    return f"{where} outside the program's folder"


def _file_inside_folder(values: dict[str, Any], context: CallContext) -> Iterable[Problem]:
    path = values["path"]
    problem = path_problem(path, context) if isinstance(path, str) else None
    if problem:
        yield Problem(
            f"`file({path!r})`: {problem}",
            "put the image beside the .rule file or below its folder; a caller can allow another folder with "
            "ruledsl.load(path, allow_paths=[folder])",
            "path",
            "E310",
        )


@builtin(
    "file",
    "image",
    (Param("path", (Type.STRING,), "image file, relative to the .rule file's folder (and inside it)"),),
    "An image loaded from disk (PNG or JPEG), resized to the video's resolution.",
    'image target = file("final_frame.png")',
    check=_file_inside_folder,
    prepare=lambda load, path: load.image(path.value),
)
def _file(ev, path, prepared):
    return P.resize_image(prepared.to(ev.video), ev.h, ev.w)


# ---- measures: numbers per frame ---------------------------------------------------------------


@builtin(
    "area",
    "measure",
    (_reg("r", "the region or object"),),
    "Area as a fraction of the frame (0 to 1).",
    "area(agent) >= 0.005",
)
def _area(ev, r):
    return P.area(ev.mask(r))


@builtin(
    "overlap",
    "measure",
    (_reg("a", "the region or object"), _reg("b", "the other region")),
    "Fraction of `a`'s mass that lies in `b` (0 to 1; 0 when `a` is absent). A graded `inside`: use it in "
    "arithmetic and comparisons.",
    "at end overlap(box1, target1) + overlap(box2, target2) >= 1.5",
)
def _overlap(ev, a, b):
    return P.overlap_fraction(ev.mask(a), ev.mask(b))


@builtin(
    "speed",
    "measure",
    (_obj("o", "the object"),),
    "Centroid displacement to the next frame, in fractions of the frame's longer side (0 on the last frame).",
    "speed(agent) <= 0.2",
)
def _speed(ev, o):
    return P.norm(P.step(ev.point(o)))


@builtin(
    "distance",
    "measure",
    (_loc("a"), _loc("b")),
    "Euclidean distance between two positions, in fractions of the frame's longer side.",
    "distance(agent, goal) <= 0.05",
)
def _distance(ev, a, b):
    return P.norm(ev.point(a) - ev.point(b))


@builtin(
    "x",
    "measure",
    (_loc("p"),),
    "Horizontal position, fraction of the width (0 left, 1 right).",
    "x(agent) >= 0.5",
)
def _x(ev, p):
    return ev.point(p)[..., 0] * ev.scale / ev.w


@builtin(
    "y",
    "measure",
    (_loc("p"),),
    "Vertical position, fraction of the height (0 top, 1 bottom).",
    "y(agent) <= 0.5",
)
def _y(ev, p):
    return ev.point(p)[..., 1] * ev.scale / ev.h


@builtin(
    "count",
    "measure",
    (_reg("r", "the region"),),
    "Number of objects in the region's hard (> 0.5) mask: 8-connected blobs, a blob inside another's hole "
    "(the inside of a `0`) part of it. Not differentiable: use `single` for gradients.",
    "count(color(#0000ff)) >= 2",
    differentiable=False,
)
def _count(ev, r):
    return O.count(ev.mask(r))


@builtin(
    "abs",
    "measure",
    (Param("n", (Type.NUMBER,), "a number"),),
    "Absolute value.",
    "abs(x(agent) - 0.5) <= 0.1",
)
def _abs(ev, n):
    return ev.number(n).abs()


# ---- predicates: formulas with a signed margin [B, T|1], > 0 where they hold -------------------


@builtin(
    "persists",
    "predicate",
    (_obj("o", "the object"), _num("frac", "fraction of its first-frame area that must remain", 0.5, 0.01, 1.0)),
    "The object is present: its area is at least `frac` of its area in the first frame.",
    "always persists(agent)",
)
def _persists(ev, o, frac):
    a = P.area(ev.mask(o))
    a0 = a[:, :1].detach()
    half_pixel = 0.5 / (ev.h * ev.w)  # so an object absent from the start does not "persist"
    return P.clamp_margin((a - frac * a0 - half_pixel) / (a0 + half_pixel))


@builtin(
    "keeps_area",
    "predicate",
    (_obj("o", "the object"), _num("tol", "allowed relative change of area", 0.3, 0.0, 10.0)),
    "The object's area stays within `tol` (relative) of its first-frame area.",
    "always keeps_area(box1)",
)
def _keeps_area(ev, o, tol):
    a = P.area(ev.mask(o))
    a0 = a[:, :1].detach()
    return P.clamp_margin(tol - (a / (a0 + P.EPS) - 1.0).abs())


@builtin(
    "keeps_color",
    "predicate",
    (_obj("o", "the object"), _num("tol", "allowed ΔE (CIE76) of its mean colour", 10.0, 0.5, 100.0)),
    "The object's mean colour stays within `tol` of its mean colour in the first frame.",
    "always keeps_color(agent)",
)
def _keeps_color(ev, o, tol):
    m = ev.mask(o)
    mean = P.ratio(torch.einsum("bthw,btchw->btc", m, ev.lab), m.sum((-2, -1))[..., None])
    delta = P.norm(mean - mean[:, :1].detach())
    return P.clamp_margin((tol - delta) / tol)


@builtin(
    "single",
    "predicate",
    (_obj("o", "the object"), _num("spread", "allowed spread relative to one compact blob", 2.0, 1.0, 100.0)),
    "The object is one compact blob (no duplicate or stray pieces): its spatial variance is at most "
    "`spread` times that of a square of the same area.",
    "always single(agent)",
)
def _single(ev, o, spread):
    # The log keeps a stray blob far away (a huge ratio) in range; no tanh on top: it would
    # saturate exactly for badly broken videos and leave them without a gradient.
    return 0.25 * torch.log(spread / (P.spread_ratio(ev.mask(o)) + P.EPS))


@builtin(
    "unchanged",
    "predicate",
    (
        _reg("r", "the region (its selector is re-evaluated on every frame)"),
        _num("tol", "allowed changed area, as a fraction of the region's first-frame area", 0.05, 0.0, 10.0),
    ),
    "The region looks as it did in the first frame (e.g. walls are not erased or moved).",
    "always unchanged(walls)",
)
def _unchanged(ev, r, tol):
    live = ev.live_mask(r)
    reference = live[:, :1].detach()
    changed = (live - reference).abs().sum((-2, -1)) / (reference.sum((-2, -1)) + 1.0)
    return P.clamp_margin(tol - changed)


@builtin(
    "inside",
    "predicate",
    (
        _reg("a", "the region or object that must be inside"),
        _reg("b", "the containing region"),
        _num("frac", "fraction of `a` that must lie in `b`", 0.9, 0.0, 1.0),
    ),
    "At least `frac` of `a`'s mass lies inside `b`. Margin: the fraction inside minus `frac`; short of it, "
    "scaled by 1 + d / `frac`, d the mean distance of `a`'s mass to `b` (2 if `a` is absent): the farther, the lower.",
    "at end inside(agent, goal)",
)
def _inside(ev, a, b, frac):
    mask = ev.mask(a)
    margin = P.overlap_fraction(mask, ev.mask(b)) - frac
    # Once `a` is clear of `b` the overlap is 0 at any distance: the margin alone is flat there, so
    # neither a search's ranking nor a gradient could tell one cell away from across the frame. The
    # shortfall grows with the distance instead; the sign (every verdict) and the margin where it
    # holds are unchanged.
    mass = mask.sum((-2, -1))
    # An absent `a` (under one pixel of mass) is as far as anything can be (the field's 2), not at 0.
    distance = torch.where(mass >= 1.0, P.ratio((mask * ev.field(b)).sum((-2, -1)), mass), 2.0)
    return margin + margin.clamp(max=0.0) * distance / max(frac, 1e-3)


@builtin(
    "avoids",
    "predicate",
    (
        _reg("a", "the region or object"),
        _reg("b", "the region to keep out of"),
        _num("frac", "largest fraction of `a` allowed in `b`", 0.05, 0.0, 1.0),
    ),
    "At most `frac` of `a`'s mass overlaps `b`.",
    "always avoids(agent, walls)",
)
def _avoids(ev, a, b, frac):
    return frac - P.overlap_fraction(ev.mask(a), ev.mask(b))


@builtin(
    "touches",
    "predicate",
    (
        _reg("a", "the region or object"),
        _reg("b", "the other region"),
        _num("within", "gap allowed, fraction of the frame's longer side", 0.02, 0.0, 1.0),
    ),
    "Some part of `a` is within `within` of `b`.",
    "eventually touches(agent, key)",
)
def _touches(ev, a, b, within):
    gap = P.min_distance(ev.mask(a), ev.field(b))
    # Pixel centres of adjacent pixels are 1 px apart (diagonal: 1.41): 1.5 px of slack
    # makes blobs that share an edge or a corner touch at `within=0`.
    return P.clamp_margin(within + 1.5 / ev.scale - gap)


@builtin(
    "axis_aligned",
    "predicate",
    (
        _obj("o", "the object"),
        _num("tol", "largest off-axis displacement per frame, fraction of the longer side", 0.02, 0.0, 1.0),
    ),
    "Each move to the next frame is horizontal or vertical (no diagonal steps).",
    "always axis_aligned(agent)",
)
def _axis_aligned(ev, o, tol):
    move = P.step(ev.point(o)).abs()
    return P.clamp_margin(tol - move.amin(-1))


@builtin(
    "grid_step",
    "predicate",
    (
        _obj("o", "the object"),
        _num("cell", "grid cell size, fraction of the frame's longer side", None, 0.0, 1.0, open_low=True),
        _num("tol", "allowed deviation, as a fraction of `cell`", 0.25, 0.0, 1.0),
    ),
    "Each move to the next frame is either no move or one grid step of length `cell`.",
    "always grid_step(agent, 1/7)",
)
def _grid_step(ev, o, cell, tol):
    d = P.norm(P.step(ev.point(o)))
    return P.clamp_margin((tol * cell - torch.minimum(d, (d - cell).abs())) / cell)


@builtin(
    "matches",
    "predicate",
    (
        Param("target", (Type.IMAGE,), "the target image"),
        _reg("where", "the region compared"),
        _num("tol", "allowed mean ΔE (CIE76) inside the region", 10.0, 0.5, 100.0),
    ),
    "The frame looks like the target image inside the region.",
    "at end matches(target, box(0, 0, 1, 1))",
)
def _matches(ev, target, where, tol):
    image = ev.image(target)  # [3, H, W] from a file, [B, 3, H, W] from a frame of each candidate
    lab_target = P.to_lab(image[None, None] if image.dim() == 3 else image[:, None])
    mask = ev.mask(where)
    delta = P.norm((ev.lab - lab_target).movedim(2, -1))
    mean = P.ratio((delta * mask).sum((-2, -1)), mask.sum((-2, -1)))
    return P.clamp_margin((tol - mean) / tol)


# ---- collections and their members (compiler/objects.py) ---------------------------------------


def _whole_number(names: tuple[str, ...]) -> Callable[[dict[str, Any], CallContext], Iterable[Problem]]:
    def check(values: dict[str, Any], context: CallContext) -> Iterable[Problem]:
        for name in names:
            value = values.get(name)
            if isinstance(value, float) and not value.is_integer():
                yield Problem(f"`{name}` must be a whole number, got {value:g}", f"write `{name}={round(value)}`", name)

    return check


@builtin(
    "components",
    "collection",
    (
        _reg("sel", "the selector whose blobs are the members, e.g. color(#52c41a)"),
        _num("min_area", "blobs smaller than this fraction of the frame are not members", 0.001, 0.0, 1.0),
        _num("max", "number of slots (members beyond it are ignored)", 16.0, 1.0, 256.0),
    ),
    "The blobs of a selector's hard mask at one frame (`objects tiles = components(...) at start`; default "
    "`at start`), in reading order (top to bottom, then left to right), each tracked through the video as "
    "its own object. Slots without a blob hold no object: `forall`/`exists` skip them.",
    "objects tiles = components(color(#52c41a), min_area=0.002, max=16) at start",
    check=_whole_number(("max",)),
)
def _components(ev, sel, min_area, max):
    raise NotImplementedError("components() is lowered by the compiler's lowering, not called")  # ir.Components


_COLL = Param("c", (Type.COLLECTION,), "the collection (declared with `objects`)")
_RANK_BY = ("x", "y", "area")


def _rank_by(values: dict[str, Any], context: CallContext) -> Iterable[Problem]:
    yield from _whole_number(("k",))(values, context)
    by = values.get("by")
    if isinstance(by, str) and by not in _RANK_BY:
        yield Problem(
            f"`by` of `nth` is {by!r}; choose one of {', '.join(repr(b) for b in _RANK_BY)}",
            'e.g. `nth(tiles, 1, by="x")` is the leftmost member',
            "by",
        )


@builtin(
    "largest",
    "object",
    (_COLL,),
    "The member with the largest area at the collection's frame (a literal list `[a, b]`: the first frame).",
    "object big = largest(circles)",
)
def _largest(ev, c):
    return O.rank_mask(ev, c, "largest")


@builtin(
    "smallest",
    "object",
    (_COLL,),
    "The member with the smallest area at the collection's frame (a literal list: the first frame).",
    "object small = smallest(circles)",
)
def _smallest(ev, c):
    return O.rank_mask(ev, c, "smallest")


@builtin(
    "nth",
    "object",
    (
        _COLL,
        _num("k", "rank, from 1", None, 1.0, 256.0),
        Param("by", (Type.STRING,), 'order: "x" (left to right), "y" (top to bottom) or "area" (smallest first)'),
    ),
    "The k-th member in an order at the collection's frame (a literal list: the first frame); no object "
    "when there are fewer than k members.",
    'object second = nth(tiles, 2, by="x")',
    check=_rank_by,
)
def _nth(ev, c, k, by):
    return O.rank_mask(ev, c, "nth", k=int(k), by=by.value)


@builtin(
    "nearest",
    "object",
    (_COLL, _loc("p")),
    "The member nearest to a position at the collection's frame (a literal list: the first frame).",
    "object mine = nearest(rings, ball)",
)
def _nearest(ev, c, p):
    return O.rank_mask(ev, c, "nearest", target=ev.point(p))


@builtin(
    "filled",
    "predicate",
    (_obj("o", "the object"),),
    "The object exists: a collection slot or rank choice that found a blob at the collection's frame "
    "(+1, else -1; constant in time). Any other object: always true. Quantifiers over collections use it.",
    'at start filled(nth(tiles, 9, by="x"))',
    differentiable=False,
)
def _filled(ev, o):
    return O.filled(ev, o)


# ---- regions from objects: per frame, around the object's centroid ------------------------------


@builtin(
    "around",
    "selector",
    (_reg("o", "the object or region"), _num("r", "radius, fraction of the frame's longer side", None, 0.0, 1.0)),
    "A disc of radius `r` centred on the object's centroid in every frame (a one-pixel soft edge; "
    "empty while the object is absent).",
    "always avoids(agent, around(enemy, 0.1))",
)
def _around(ev, o, r):
    return O.around(ev, ev.mask(o), ev.point(o), r)


@builtin(
    "bbox",
    "selector",
    (_reg("o", "the object or region"), _num("pad", "margin added on every side, fraction of the longer side", 0.0)),
    "The bounding box of the object's hard (> 0.5) mask in every frame, grown by `pad` (no gradient "
    "through its extent).",
    "at end inside(ball, bbox(ring, pad=0.01))",
    differentiable=False,
)
def _bbox(ev, o, pad):
    return O.bbox(ev.mask(o), pad)


def _half_plane(side: str, doc: str, example: str) -> None:
    def lower(ev, o):
        return O.half_plane(ev, ev.mask(o), ev.point(o), side)

    builtin(f"{side}", "selector", (_reg("o", "the object or region"),), doc, example)(lower)


_half_plane(
    "left_of",
    "The pixels left of the object's centroid in every frame (soft one-pixel edge; empty while it is absent).",
    "at end inside(small, left_of(big))",
)
_half_plane(
    "right_of",
    "The pixels right of the object's centroid in every frame.",
    "at end inside(big, right_of(small))",
)
_half_plane("above", "The pixels above the object's centroid in every frame.", "at end inside(lid, above(box))")
_half_plane("below", "The pixels below the object's centroid in every frame.", "at end inside(box, below(lid))")


# ---- frames as images, occlusion --------------------------------------------------------------


@builtin(
    "frame",
    "image",
    (),
    "The video's frame at a time, as an image: only as `image NAME = frame() at T`.",
    "image first = frame() at start",
    differentiable=False,
)
def _frame(ev):
    raise NotImplementedError("frame() is only lowered as a snapshot")  # spatial._snapshot


@builtin(
    "visible_or_covered",
    "predicate",
    (
        _obj("o", "the object (a collection member, usually)"),
        _reg("by", "the region that may cover it"),
        _num("tol", "how far from its last-seen place it may reappear, fraction of the longer side", 0.05, 0.0, 1.0),
    ),
    "The object is present (area at least half its first-frame area), or hidden while `by` reaches its "
    "last-seen place (within the object's own size: it went under `by`); and when it reappears, it is "
    "within `tol` of where it was last seen.",
    "forall c in cards: always visible_or_covered(c, by=cards_region)",
)
def _visible_or_covered(ev, o, by, tol):
    return O.visible_or_covered(ev, ev.mask(o), ev.field(by), tol)


# Named colours (sRGB). Users can shadow them (with a warning) by declaring an entity of that name.
NAMED_COLORS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "cyan": (0, 255, 255),
    "magenta": (255, 0, 255),
    "orange": (255, 165, 0),
    "purple": (128, 0, 128),
    "pink": (255, 192, 203),
    "brown": (139, 69, 19),
    "gray": (128, 128, 128),
    "grey": (128, 128, 128),
}


def parse_hex(text: str) -> tuple[int, int, int]:
    value = text.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)
