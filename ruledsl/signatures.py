"""The types of the language and the one table of built-in functions.

Everything that knows what a built-in is reads this table: the checker (arity,
argument types, value ranges), the compiler (one lowering per entry, tested to be
complete), docs/language.md (generated, tested to match) and the teacher's prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


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


@dataclass(frozen=True)
class Param:
    name: str
    types: tuple[Type, ...]
    doc: str
    default: float | None = None  # only numbers have defaults
    low: float | None = None  # inclusive bounds checked on literal arguments
    high: float | None = None

    @property
    def required(self) -> bool:
        return self.default is None

    def type_names(self) -> str:
        names = [t.value for t in self.types]
        return names[0] if len(names) == 1 else " or ".join(names)


@dataclass(frozen=True)
class Builtin:
    name: str
    kind: str  # "selector" | "predicate" | "measure" | "point" | "image"
    params: tuple[Param, ...]
    returns: Type
    doc: str
    example: str
    differentiable: bool = True

    def signature(self) -> str:
        parts = []
        for p in self.params:
            text = f"{p.name}: {p.type_names()}"
            if not p.required:
                text += f" = {p.default:g}"
            parts.append(text)
        return f"{self.name}({', '.join(parts)}) -> {self.returns.value}"


def _num(
    name: str, doc: str, default: float | None = None, low: float | None = 0.0, high: float | None = None
) -> Param:
    return Param(name, (Type.NUMBER,), doc, default, low, high)


def _reg(name: str, doc: str) -> Param:
    return Param(name, (Type.REGION,), doc)


def _obj(name: str, doc: str) -> Param:
    return Param(name, (Type.OBJECT,), doc)


_BUILTINS = [
    # ---- selectors: build regions from pixels --------------------------------------------
    Builtin(
        "color",
        "selector",
        (
            Param("c", (Type.COLOR,), "the colour, #rrggbb or a named colour"),
            _num(
                "tol",
                "tolerance: CIE76 colour difference (ΔE in Lab) at which membership falls to ~0.6",
                12.0,
                0.5,
                100.0,
            ),
        ),
        Type.REGION,
        "Pixels of this colour (a soft mask, compared in CIE Lab).",
        "object agent = color(#ff0000, tol=15)",
    ),
    Builtin(
        "box",
        "selector",
        (
            _num("x0", "left edge, fraction of the width", None, 0.0, 1.0),
            _num("y0", "top edge, fraction of the height", None, 0.0, 1.0),
            _num("x1", "right edge, fraction of the width", None, 0.0, 1.0),
            _num("y1", "bottom edge, fraction of the height", None, 0.0, 1.0),
        ),
        Type.REGION,
        "An axis-aligned box; (0, 0) is the top-left corner, (1, 1) the bottom-right.",
        "region left_half = box(0, 0, 0.5, 1)",
    ),
    Builtin(
        "grow",
        "selector",
        (_reg("r", "the region"), _num("by", "distance, fraction of the frame's longer side", None, 0.0, 1.0)),
        Type.REGION,
        "Morphological dilation: every pixel within `by` of the region.",
        "region near_goal = grow(goal, 0.05)",
    ),
    Builtin(
        "shrink",
        "selector",
        (_reg("r", "the region"), _num("by", "distance, fraction of the frame's longer side", None, 0.0, 1.0)),
        Type.REGION,
        "Morphological erosion: the pixels of the region at least `by` from its outside.",
        "region core = shrink(floor, 0.01)",
    ),
    # ---- points -------------------------------------------------------------------------
    Builtin(
        "centroid",
        "point",
        (_reg("r", "the region or object"),),
        Type.POINT,
        "Mask-weighted mean position of a region.",
        "distance(centroid(agent), goal) <= 0.1",
    ),
    Builtin(
        "point",
        "point",
        (_num("x", "fraction of the width", None, 0.0, 1.0), _num("y", "fraction of the height", None, 0.0, 1.0)),
        Type.POINT,
        "A fixed point in the frame.",
        "distance(agent, point(0.5, 0.5)) <= 0.2",
    ),
    Builtin(
        "file",
        "image",
        (Param("path", (Type.STRING,), "image file, relative to the .rule file"),),
        Type.IMAGE,
        "An image loaded from disk (PNG or JPEG), resized to the video's resolution.",
        'image target = file("final_frame.png")',
    ),
    # ---- measures: numbers per frame ------------------------------------------------------
    Builtin(
        "area",
        "measure",
        (_reg("r", "the region or object"),),
        Type.NUMBER,
        "Area as a fraction of the frame (0 to 1).",
        "area(agent) >= 0.005",
    ),
    Builtin(
        "speed",
        "measure",
        (_obj("o", "the object"),),
        Type.NUMBER,
        "Centroid displacement to the next frame, in fractions of the frame's longer side (0 on the last frame).",
        "speed(agent) <= 0.2",
    ),
    Builtin(
        "distance",
        "measure",
        (
            Param("a", LOCATABLE, "a point, or the centroid of a region"),
            Param("b", LOCATABLE, "a point, or the centroid of a region"),
        ),
        Type.NUMBER,
        "Euclidean distance between two positions, in fractions of the frame's longer side.",
        "distance(agent, goal) <= 0.05",
    ),
    Builtin(
        "x",
        "measure",
        (Param("p", LOCATABLE, "a point, or the centroid of a region"),),
        Type.NUMBER,
        "Horizontal position, fraction of the width (0 left, 1 right).",
        "x(agent) >= 0.5",
    ),
    Builtin(
        "y",
        "measure",
        (Param("p", LOCATABLE, "a point, or the centroid of a region"),),
        Type.NUMBER,
        "Vertical position, fraction of the height (0 top, 1 bottom).",
        "y(agent) <= 0.5",
    ),
    Builtin(
        "count",
        "measure",
        (_reg("r", "the region"),),
        Type.NUMBER,
        "Number of connected blobs of the region's hard (> 0.5) mask. Not differentiable: use `single` for gradients.",
        "count(color(#0000ff)) >= 2",
        differentiable=False,
    ),
    Builtin(
        "abs",
        "measure",
        (Param("n", (Type.NUMBER,), "a number"),),
        Type.NUMBER,
        "Absolute value.",
        "abs(x(agent) - 0.5) <= 0.1",
    ),
    # ---- predicates: formulas with a signed margin -----------------------------------------
    Builtin(
        "persists",
        "predicate",
        (_obj("o", "the object"), _num("frac", "fraction of its first-frame area that must remain", 0.5, 0.01, 1.0)),
        Type.FORMULA,
        "The object is present: its area is at least `frac` of its area in the first frame.",
        "always persists(agent)",
    ),
    Builtin(
        "keeps_area",
        "predicate",
        (_obj("o", "the object"), _num("tol", "allowed relative change of area", 0.3, 0.0, 10.0)),
        Type.FORMULA,
        "The object's area stays within `tol` (relative) of its first-frame area.",
        "always keeps_area(box1)",
    ),
    Builtin(
        "keeps_color",
        "predicate",
        (_obj("o", "the object"), _num("tol", "allowed ΔE (CIE76) of its mean colour", 10.0, 0.5, 100.0)),
        Type.FORMULA,
        "The object's mean colour stays within `tol` of its mean colour in the first frame.",
        "always keeps_color(agent)",
    ),
    Builtin(
        "single",
        "predicate",
        (_obj("o", "the object"), _num("spread", "allowed spread relative to one compact blob", 2.0, 1.0, 100.0)),
        Type.FORMULA,
        "The object is one compact blob (no duplicate or stray pieces): its spatial variance is at most "
        "`spread` times that of a square of the same area.",
        "always single(agent)",
    ),
    Builtin(
        "unchanged",
        "predicate",
        (
            _reg("r", "the region (its selector is re-evaluated on every frame)"),
            _num("tol", "allowed changed area, as a fraction of the region's first-frame area", 0.05, 0.0, 10.0),
        ),
        Type.FORMULA,
        "The region looks as it did in the first frame (e.g. walls are not erased or moved).",
        "always unchanged(walls)",
    ),
    Builtin(
        "inside",
        "predicate",
        (
            _reg("a", "the region or object that must be inside"),
            _reg("b", "the containing region"),
            _num("frac", "fraction of `a` that must lie in `b`", 0.9, 0.0, 1.0),
        ),
        Type.FORMULA,
        "At least `frac` of `a`'s mass lies inside `b`.",
        "at end inside(agent, goal)",
    ),
    Builtin(
        "avoids",
        "predicate",
        (
            _reg("a", "the region or object"),
            _reg("b", "the region to keep out of"),
            _num("frac", "largest fraction of `a` allowed in `b`", 0.05, 0.0, 1.0),
        ),
        Type.FORMULA,
        "At most `frac` of `a`'s mass overlaps `b`.",
        "always avoids(agent, walls)",
    ),
    Builtin(
        "touches",
        "predicate",
        (
            _reg("a", "the region or object"),
            _reg("b", "the other region"),
            _num("within", "gap allowed, fraction of the frame's longer side", 0.02, 0.0, 1.0),
        ),
        Type.FORMULA,
        "Some part of `a` is within `within` of `b`.",
        "eventually touches(agent, key)",
    ),
    Builtin(
        "axis_aligned",
        "predicate",
        (
            _obj("o", "the object"),
            _num("tol", "largest off-axis displacement per frame, fraction of the longer side", 0.02, 0.0, 1.0),
        ),
        Type.FORMULA,
        "Each move to the next frame is horizontal or vertical (no diagonal steps).",
        "always axis_aligned(agent)",
    ),
    Builtin(
        "grid_step",
        "predicate",
        (
            _obj("o", "the object"),
            _num("cell", "grid cell size, fraction of the frame's longer side", None, 0.0, 1.0),
            _num("tol", "allowed deviation, as a fraction of `cell`", 0.25, 0.0, 1.0),
        ),
        Type.FORMULA,
        "Each move to the next frame is either no move or one grid step of length `cell`.",
        "always grid_step(agent, 1/7)",
    ),
    Builtin(
        "matches",
        "predicate",
        (
            Param("target", (Type.IMAGE,), "the target image"),
            _reg("where", "the region compared"),
            _num("tol", "allowed mean ΔE (CIE76) inside the region", 10.0, 0.5, 100.0),
        ),
        Type.FORMULA,
        "The frame looks like the target image inside the region.",
        "at end matches(target, box(0, 0, 1, 1))",
    ),
]

BUILTINS: dict[str, Builtin] = {b.name: b for b in _BUILTINS}

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
