"""Immutable syntax tree with source spans.

Spans are excluded from equality so that `parse(fmt(src)) == parse(src)` compares
structure only. Binary and/or stay binary here (left-deep for chains like `a and b and c`);
the compiler flattens them.

A chain of thousands of terms is a tree thousands of levels deep, so nothing here
recurses: `walk`, equality and hashing use explicit stacks, and `nesting_depth` measures
the depth that matters to the recursive consumers (checker, formatter, compiler), which
walk a chain's left spine in a loop. The parser refuses programs nested deeper than
MAX_NESTING.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

from ruledsl.source import Span


def _span():
    """A span field: not part of equality or repr."""
    return field(compare=False, repr=False)


# Genuine nesting (parentheses, `not not ...`, prefixes, calls in calls) deeper than this is a
# syntax error (E104). Real programs nest fewer than 10 levels; the recursive passes over the
# tree need a few Python frames per level, and 100 levels keep them far below the interpreter's
# limit of 1000 frames.
MAX_NESTING = 100


@dataclass(frozen=True, eq=False)
class Node:
    """Structural equality and hashing over the fields that are not spans (iterative)."""

    if TYPE_CHECKING:  # every subclass declares `span` as a dataclass field (excluded from equality)

        @property
        def span(self) -> Span: ...

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Node):
            return NotImplemented
        return _same_tree(self, other)

    def __hash__(self) -> int:
        return _tree_hash(self)


# ---- expressions (formulas, numbers, regions, ... share one tree; the checker types them) ----


@dataclass(frozen=True, eq=False)
class Number(Node):
    text: str  # as written: "2" is a frame count in a window, "0.5" a fraction
    span: Span = _span()

    @property
    def value(self) -> float:
        return float(self.text)

    @property
    def is_integer(self) -> bool:
        return "." not in self.text


@dataclass(frozen=True, eq=False)
class Color(Node):
    text: str  # "#rrggbb", lower case
    span: Span = _span()


@dataclass(frozen=True, eq=False)
class String(Node):
    value: str
    span: Span = _span()


@dataclass(frozen=True, eq=False)
class Bool(Node):
    value: bool
    span: Span = _span()


@dataclass(frozen=True, eq=False)
class Name(Node):
    id: str
    span: Span = _span()


@dataclass(frozen=True, eq=False)
class KeywordArg(Node):
    name: str
    value: Node
    span: Span = _span()


@dataclass(frozen=True, eq=False)
class Call(Node):
    func: str
    args: tuple[Node, ...]
    kwargs: tuple[KeywordArg, ...]
    span: Span = _span()
    func_span: Span = _span()


@dataclass(frozen=True, eq=False)
class Ask(Node):
    question: str
    span: Span = _span()


@dataclass(frozen=True, eq=False)
class Neg(Node):
    operand: Node
    span: Span = _span()


@dataclass(frozen=True, eq=False)
class Binary(Node):
    op: str  # + - * / | &
    left: Node
    right: Node
    span: Span = _span()


@dataclass(frozen=True, eq=False)
class Compare(Node):
    op: str  # <= < >= >
    left: Node
    right: Node
    span: Span = _span()


@dataclass(frozen=True, eq=False)
class Not(Node):
    operand: Node
    span: Span = _span()


@dataclass(frozen=True, eq=False)
class And(Node):
    left: Node
    right: Node
    span: Span = _span()


@dataclass(frozen=True, eq=False)
class Or(Node):
    left: Node
    right: Node
    span: Span = _span()


@dataclass(frozen=True, eq=False)
class Implies(Node):
    left: Node
    right: Node
    span: Span = _span()


@dataclass(frozen=True, eq=False)
class Until(Node):
    left: Node
    right: Node
    span: Span = _span()


@dataclass(frozen=True, eq=False)
class Time(Node):
    """A point in time: `start`, `end`, a frame (integer), a fraction (decimal) or a param name."""

    kind: str  # "start" | "end" | "frame" | "fraction" | "name"
    text: str
    span: Span = _span()


@dataclass(frozen=True, eq=False)
class Window(Node):
    low: Time
    high: Time
    span: Span = _span()


@dataclass(frozen=True, eq=False)
class Temporal(Node):
    """`always`, `eventually`, `next` (time None) and `at T` (time set)."""

    op: str  # "always" | "eventually" | "next" | "at"
    body: Node
    time: Time | None  # set for `at`
    span: Span = _span()


@dataclass(frozen=True, eq=False)
class During(Node):
    window: Window
    body: Node
    span: Span = _span()


@dataclass(frozen=True, eq=False)
class Quantified(Node):
    quantifier: str  # "forall" | "exists"
    var: str
    collection: str
    body: Node
    span: Span = _span()
    var_span: Span = _span()
    collection_span: Span = _span()
    others: tuple[Name, ...] = ()  # further variables: `forall a, b in C` ranges over ordered pairs
    where: Node | None = None  # the filter of `... in C where psi: phi`


@dataclass(frozen=True, eq=False)
class CountMembers(Node):
    """`at least K of x in C where psi: phi` (bound "least" | "most" | "exactly"), per frame."""

    bound: str
    count: Node
    var: str
    collection: str
    where: Node | None
    body: Node
    span: Span = _span()
    var_span: Span = _span()
    collection_span: Span = _span()


@dataclass(frozen=True, eq=False)
class CountEvents(Node):
    """`at least K times phi`: the rising edges of phi from the current frame to the window's end."""

    bound: str  # "least" | "most" | "exactly"
    count: Node
    body: Node
    span: Span = _span()


# ---- statements ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TaskDecl(Node):
    name: str
    prompt: str
    span: Span = _span()
    name_span: Span = _span()


@dataclass(frozen=True, eq=False)
class ParamDecl(Node):
    name: str
    value: Node
    span: Span = _span()
    name_span: Span = _span()


@dataclass(frozen=True, eq=False)
class EntityDecl(Node):
    kind: str  # "object" | "region" | "image"
    name: str
    value: Node
    snapshot: Time | None
    span: Span = _span()
    name_span: Span = _span()


@dataclass(frozen=True, eq=False)
class CollectionDecl(Node):
    name: str
    members: tuple[Name, ...]
    span: Span = _span()
    name_span: Span = _span()


@dataclass(frozen=True, eq=False)
class ComponentsDecl(Node):
    """`objects NAME = components(...) at T`: a collection of the blobs found at one frame (T optional)."""

    name: str
    value: Node
    snapshot: Time | None
    span: Span = _span()
    name_span: Span = _span()


@dataclass(frozen=True, eq=False)
class RuleDecl(Node):
    role: str  # "goal" | "process"
    name: str
    body: Node
    weight: Node | None
    span: Span = _span()
    name_span: Span = _span()


@dataclass(frozen=True, eq=False)
class DefDecl(Node):
    """`def NAME(a, b: region) = expr`: a named formula, number, region or point, inlined where called."""

    name: str
    params: tuple[Name, ...]
    param_types: tuple[str | None, ...]  # as written: "object" | "region" | "point" | "number", None = object
    body: Node
    span: Span = _span()
    name_span: Span = _span()


Statement = TaskDecl | ParamDecl | EntityDecl | CollectionDecl | ComponentsDecl | RuleDecl | DefDecl


@dataclass(frozen=True, eq=False)
class Program(Node):
    statements: tuple[Statement, ...]
    span: Span = _span()


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _compared_fields(node: object) -> tuple[str, ...]:
    """The structural fields of a node (spans excluded), in declaration order."""
    cls = type(node)
    if cls not in _FIELD_NAMES:
        _FIELD_NAMES[cls] = tuple(f.name for f in fields(node) if f.compare)  # type: ignore[arg-type]
    return _FIELD_NAMES[cls]


def children(node: Node) -> list[Node]:
    """Direct sub-nodes of a node, in source order (for generic walks)."""
    out: list[Node] = []
    for name in _compared_fields(node):
        value = getattr(node, name)
        if isinstance(value, Node):
            out.append(value)
        elif isinstance(value, tuple):
            out.extend(v for v in value if isinstance(v, Node))
    return out


def walk(node: Node):
    """Pre-order traversal (an explicit stack: any depth)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(children(current)))


def _same_tree(a: Node, b: Node) -> bool:
    pairs: list[tuple[object, object]] = [(a, b)]
    while pairs:
        x, y = pairs.pop()
        if isinstance(x, Node) or isinstance(y, Node):
            if type(x) is not type(y):
                return False
            pairs.extend((getattr(x, name), getattr(y, name)) for name in _compared_fields(x))
        elif isinstance(x, tuple) and isinstance(y, tuple):
            if len(x) != len(y):
                return False
            pairs.extend(zip(x, y))
        elif x != y:
            return False
    return True


def _tree_hash(node: Node) -> int:
    parts: list[object] = []
    stack: list[object] = [node]
    while stack:
        value = stack.pop()
        if isinstance(value, Node):
            parts.append(type(value).__name__)
            stack.extend(getattr(value, name) for name in _compared_fields(value))
        elif isinstance(value, tuple):
            parts.append(len(value))
            stack.extend(value)
        else:
            parts.append(value)
    return hash(tuple(parts))


# Nodes whose left operand continues a chain (`a and b and c`, `a + b - c`, `a | b | c`): the
# recursive passes loop down a chain's left spine, so those edges add no nesting.
CHAINS = (And, Or, Binary)
Chain = And | Or | Binary


def left_spine(node: Chain, until: Collection[int] = ()) -> list[Chain]:
    """`node` and its left operands while they are chain nodes whose id is not in `until`, top first."""
    spine = [node]
    while isinstance(spine[-1].left, CHAINS) and id(spine[-1].left) not in until:
        spine.append(spine[-1].left)
    return spine


def nesting_depth(node: Node, limit: int = MAX_NESTING) -> tuple[int, Node | None]:
    """(depth, None), or (depth, the first node found deeper than `limit`): a chain's left
    operand sits at its chain's depth, every other child one level deeper."""
    deepest = 0
    stack: list[tuple[Node, int]] = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > limit:
            return depth, current
        deepest = max(deepest, depth)
        for child in children(current):
            same_level = isinstance(current, CHAINS) and child is current.left and isinstance(child, CHAINS)
            stack.append((child, depth if same_level else depth + 1))
    return deepest, None
