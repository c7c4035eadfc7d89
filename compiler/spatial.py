"""Spatial evaluation: the value of every term and the margin of every atom, at every frame.

One `SpatialEvaluation` per call holds the video (at working resolution), its Lab form
and a cache keyed by IR node, so a term shared by many rules (a colour mask, a centroid
track) is computed once. Built-ins are computed by their registry entry's lowering
(`ruledsl.signatures`), which receives this object and reads its inputs through
`mask`, `point`, `number`, `image`, `field` and `live_mask`.

Shapes: masks [B, T|1, H, W] in [0, 1]; numbers [B, T|1]; points [B, T|1, 2] in L-units
(fractions of the longer side L = max(H, W)); images [3, H, W]; atom margins [B, T].
Values are computed inputs-first with an explicit stack (`ruledsl.dag`), so terms nested
hundreds deep need no deeper Python recursion than shallow ones.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

import torch

from ruledsl.compiler import ir
from ruledsl.compiler import primitives as P
from ruledsl.dag import evaluate
from ruledsl.signatures import BUILTINS, LOCATABLE, Type

# Cache keys: (what, node). "value": a term's own value (mask, number, point track, image);
# "centroid": a region's centroid track; "field": a region's distance field; "live": a region
# with its snapshots re-evaluated per frame; "atom": the margin of a positive atom; "tracking": a
# components collection's tracked slots (compiler/objects.py), once per collection and call.
Key = tuple[str, Any]


class SpatialEvaluation:
    """One call's per-frame values. `video` is [B, T, 3, H, W] at working resolution."""

    def __init__(
        self,
        video: torch.Tensor,
        surrogate: float | None,
        prepared: Mapping[ir.Term, Any],
        source_name: str,
    ):
        self.video = video
        self.b, self.t, _, self.h, self.w = video.shape
        self.scale = float(max(self.h, self.w))  # L: distances are fractions of the longer side
        self.surrogate = surrogate
        self.prepared = prepared  # compile-time resources of built-ins (loaded images), by Call term
        self.source_name = source_name
        self.cache: dict = {}
        self._lab: torch.Tensor | None = None

    @property
    def lab(self) -> torch.Tensor:
        """The video in CIE Lab, [B, T, 3, H, W] (computed once, on first use)."""
        if self._lab is None:
            self._lab = P.to_lab(self.video)
        return self._lab

    # ---- what lowerings read -------------------------------------------------------------------

    def mask(self, term: ir.Term) -> torch.Tensor:
        return self._get(("value", term))

    def number(self, term: ir.Term) -> torch.Tensor:
        return self._get(("value", term))

    def image(self, term: ir.Term) -> torch.Tensor:
        return self._get(("value", term))

    def point(self, term: ir.Term) -> torch.Tensor:
        """A point term's track, or a region's centroid track: [B, T|1, 2] in L-units."""
        return self._get(self._point_key(term))

    def field(self, term: ir.Term) -> torch.Tensor:
        """Distance field of a region (no gradient; computed once per call, static regions once per video)."""
        return self._get(("field", term))

    def live_mask(self, term: ir.Term) -> torch.Tensor:
        """The region's mask with its snapshots re-evaluated on every frame (what `unchanged` compares)."""
        return self.mask(self._get(("live", term)))

    def tracking(self, collection: ir.Components):
        """The tracked slots of a components collection (objects.Tracking), computed once per call."""
        return self._get(("tracking", collection))

    def atom(self, formula: ir.Formula) -> torch.Tensor:
        """[B, T] margin of a positive atom at every frame (> 0 where it holds)."""
        return self._get(("atom", formula))

    # ---- the graph ---------------------------------------------------------------------------

    def _get(self, key: Key):
        return evaluate(key, self.cache, self._inputs, self._compute)

    def _point_key(self, term: ir.Term) -> Key:
        return ("value", term) if ir.term_type(term) is Type.POINT else ("centroid", term)

    def _argument_keys(self, name: str, args: tuple[ir.Term, ...]) -> list[Key]:
        """What a built-in reads of its term arguments, from its parameter types."""
        keys = []
        for param, arg in zip(BUILTINS[name].term_params(), args):
            if param.types == LOCATABLE:
                keys.append(self._point_key(arg))
            elif param.types not in ((Type.COLOR,), (Type.STRING,), (Type.COLLECTION,)):
                keys.append(("value", arg))
        return keys

    def _inputs(self, key: Key) -> list[Key]:
        what, node = key
        if what in ("centroid", "field"):
            return [("value", node)]
        if what == "live":
            return [("live", a) for a in ir.children(node) if isinstance(a, ir.Term)]
        if what == "tracking":
            return [("value", node.selector)]
        match node:
            case ir.Slot(collection=collection):
                return [("value", collection.selector), ("tracking", collection)]
            case ir.RegionOp(args=args) | ir.Arith(args=args):
                return [("value", a) for a in args]
            case ir.Call(name=name, args=args) | ir.Atom(name=name, args=args):
                return self._argument_keys(name, args)
            case ir.Compare(left=left, right=right):
                return [("value", left), ("value", right)]
        return []  # constants, snapshots (evaluated on their own frame), truth (asks: compiler/asks.py)

    def _compute(self, key: Key):
        what, node = key
        if what == "centroid":
            return P.centroid(self.cache[("value", node)])
        if what == "field":
            return P.distance_field(self.cache[("value", node)])
        if what == "live":
            return self._live(node)
        if what == "atom":
            return self._atom(node)
        if what == "tracking":
            return self._track(node)
        return self._value(node)

    def _track(self, collection: ir.Components):
        from ruledsl.compiler import objects
        from ruledsl.compiler.temporal import frame_index

        k = frame_index(collection.time, 0, self.t - 1, f"{self.source_name}: a components collection")
        soft = self.cache[("value", collection.selector)]
        soft = soft.expand(self.b, self.t, self.h, self.w)
        return objects.track(soft, k, collection.min_area, collection.slots)

    def _value(self, term: ir.Term):
        match term:
            case ir.Const(value=value):
                return self.video.new_full((self.b, 1), value)
            case ir.Call(name=name):
                return _apply(self, term, name)
            case ir.Snapshot(region=region, time=time) if ir.term_type(region) is Type.IMAGE:
                from ruledsl.compiler.temporal import frame_index

                k = frame_index(time, 0, self.t - 1, f"{self.source_name}: an image snapshot")
                return self.video[:, k].detach()  # [B, 3, H, W]: each candidate's own frame
            case ir.Snapshot(region=region, time=time):
                return self._snapshot(region, time)
            case ir.Slot(collection=collection, index=index):
                from ruledsl.compiler import objects

                soft = self.cache[("value", collection.selector)]
                chosen = torch.full((self.b,), index, dtype=torch.long, device=self.video.device)
                return objects.slot_mask(soft, self.cache[("tracking", collection)], chosen)
            case ir.RegionOp(op="complement", args=(a,)):
                return 1.0 - self.cache[("value", a)]
            case ir.RegionOp(op="union", args=args):
                return self._fold(args, lambda x, y: x + y - x * y)  # fuzzy union
            case ir.RegionOp(op="intersection", args=args) | ir.Arith(op="*", args=args):
                return self._fold(args, operator.mul)
            case ir.Arith(op="+", args=args):
                return self._fold(args, operator.add)
            case ir.Arith(op="neg", args=(a,)):
                return -self.cache[("value", a)]
            case ir.Arith(op="/", args=(a, b)):
                x, y = self.cache[("value", a)], self.cache[("value", b)]
                return x / torch.where(y.abs() < P.EPS, torch.full_like(y, P.EPS), y)
        raise TypeError(f"not a term with a value: {term!r}")

    def _fold(self, args: tuple[ir.Term, ...], combine) -> torch.Tensor:
        """An n-ary operator as its binary one applied left to right (the order the source wrote)."""
        out = self.cache[("value", args[0])]
        for a in args[1:]:
            out = combine(out, self.cache[("value", a)])
        return out

    def _snapshot(self, region: ir.Term, time: tuple[str, float]) -> torch.Tensor:
        from ruledsl.compiler.temporal import frame_index

        k = frame_index(time, 0, self.t - 1, f"{self.source_name}: a region snapshot")
        live = self.cache.get(("value", region))
        if live is None and _holds_snapshot(region):
            # A snapshot inside keeps its own frame of *this* video: no one-frame shortcut for it.
            live = self.mask(region)
        if live is not None:  # the live mask exists already: slice it (a static mask is every frame)
            return (live if live.shape[1] == 1 else live[:, k : k + 1]).detach()
        # Otherwise evaluate the selector on that one frame only (T times less work).
        frame = self.cache.get(("frame", k))
        if frame is None:
            frame = SpatialEvaluation(
                self.video[:, k : k + 1].detach(), self.surrogate, self.prepared, self.source_name
            )
            self.cache[("frame", k)] = frame
        return frame.mask(region).detach()

    def _live(self, term: ir.Term) -> ir.Term:
        """The same region with snapshots removed (inputs first: sub-terms are already rewritten)."""
        match term:
            case ir.Snapshot(region=region):
                return self.cache[("live", region)]
            case ir.RegionOp(op=op, args=args):
                return ir.RegionOp(op, tuple(self.cache[("live", a)] for a in args))
            case ir.Call(name=name, args=args, params=params, span=span) if BUILTINS[name].kind == "selector":
                return ir.Call(name, tuple(self.cache[("live", a)] for a in args), params, span)
        return term

    def _atom(self, formula: ir.Formula) -> torch.Tensor:
        full = (self.b, self.t)
        match formula:
            case ir.Truth(value=value):
                return self.video.new_full(full, 1.0 if value else -1.0)
            case ir.Compare(op=op, left=left, right=right):
                x, y = self.cache[("value", left)], self.cache[("value", right)]
                return (y - x if op in ("<", "<=") else x - y).expand(full)
            case ir.Atom(name=name):
                return _apply(self, formula, name).expand(full)
        raise TypeError(f"not an atom: {formula!r}")


def _apply(ev: SpatialEvaluation, node: ir.Call | ir.Atom, name: str):
    """Run a built-in's lowering on a call: term arguments by parameter name, constants as floats."""
    builtin = BUILTINS[name]
    arguments = ir.arguments(node)
    if builtin.prepare is not None:
        arguments["prepared"] = ev.prepared[node]
    return builtin.lower(ev, **arguments)


def _holds_snapshot(term: ir.Term) -> bool:
    """Whether a snapshot occurs anywhere inside `term` (iterative)."""
    stack: list = [term]
    while stack:
        node = stack.pop()
        if isinstance(node, ir.Snapshot):
            return True
        stack.extend(ir.children(node))
    return False
