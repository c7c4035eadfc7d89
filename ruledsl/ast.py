"""Immutable syntax tree with source spans.

Spans are excluded from equality so that `parse(fmt(src)) == parse(src)` compares
structure only. Binary and/or stay binary here; the compiler flattens them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ruledsl.source import Span


def _span():
    """A span field: not part of equality or repr."""
    return field(compare=False, repr=False)


@dataclass(frozen=True)
class Node:
    pass


# ---- expressions (formulas, numbers, regions, ... share one tree; the checker types them) ----


@dataclass(frozen=True)
class Number(Node):
    text: str  # as written: "2" is a frame count in a window, "0.5" a fraction
    span: Span = _span()

    @property
    def value(self) -> float:
        return float(self.text)

    @property
    def is_integer(self) -> bool:
        return "." not in self.text


@dataclass(frozen=True)
class Color(Node):
    text: str  # "#rrggbb", lower case
    span: Span = _span()


@dataclass(frozen=True)
class String(Node):
    value: str
    span: Span = _span()


@dataclass(frozen=True)
class Bool(Node):
    value: bool
    span: Span = _span()


@dataclass(frozen=True)
class Name(Node):
    id: str
    span: Span = _span()


@dataclass(frozen=True)
class KeywordArg(Node):
    name: str
    value: Node
    span: Span = _span()


@dataclass(frozen=True)
class Call(Node):
    func: str
    args: tuple[Node, ...]
    kwargs: tuple[KeywordArg, ...]
    span: Span = _span()
    func_span: Span = _span()


@dataclass(frozen=True)
class Ask(Node):
    question: str
    span: Span = _span()


@dataclass(frozen=True)
class Neg(Node):
    operand: Node
    span: Span = _span()


@dataclass(frozen=True)
class Binary(Node):
    op: str  # + - * / | &
    left: Node
    right: Node
    span: Span = _span()


@dataclass(frozen=True)
class Compare(Node):
    op: str  # <= < >= >
    left: Node
    right: Node
    span: Span = _span()


@dataclass(frozen=True)
class Not(Node):
    operand: Node
    span: Span = _span()


@dataclass(frozen=True)
class And(Node):
    left: Node
    right: Node
    span: Span = _span()


@dataclass(frozen=True)
class Or(Node):
    left: Node
    right: Node
    span: Span = _span()


@dataclass(frozen=True)
class Implies(Node):
    left: Node
    right: Node
    span: Span = _span()


@dataclass(frozen=True)
class Until(Node):
    left: Node
    right: Node
    span: Span = _span()


@dataclass(frozen=True)
class Time(Node):
    """A point in time: `start`, `end`, a frame (integer), a fraction (decimal) or a param name."""

    kind: str  # "start" | "end" | "frame" | "fraction" | "name"
    text: str
    span: Span = _span()


@dataclass(frozen=True)
class Window(Node):
    low: Time
    high: Time
    span: Span = _span()


@dataclass(frozen=True)
class Temporal(Node):
    """`always`, `eventually`, `next` (time None) and `at T` (time set)."""

    op: str  # "always" | "eventually" | "next" | "at"
    body: Node
    time: Time | None  # set for `at`
    span: Span = _span()


@dataclass(frozen=True)
class During(Node):
    window: Window
    body: Node
    span: Span = _span()


@dataclass(frozen=True)
class Quantified(Node):
    quantifier: str  # "forall" | "exists"
    var: str
    collection: str
    body: Node
    span: Span = _span()
    var_span: Span = _span()
    collection_span: Span = _span()


# ---- statements ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskDecl(Node):
    name: str
    prompt: str
    span: Span = _span()
    name_span: Span = _span()


@dataclass(frozen=True)
class ParamDecl(Node):
    name: str
    value: Node
    span: Span = _span()
    name_span: Span = _span()


@dataclass(frozen=True)
class EntityDecl(Node):
    kind: str  # "object" | "region" | "image"
    name: str
    value: Node
    snapshot: Time | None
    span: Span = _span()
    name_span: Span = _span()


@dataclass(frozen=True)
class CollectionDecl(Node):
    name: str
    members: tuple[Name, ...]
    span: Span = _span()
    name_span: Span = _span()


@dataclass(frozen=True)
class RuleDecl(Node):
    role: str  # "goal" | "process"
    name: str
    body: Node
    weight: Node | None
    span: Span = _span()
    name_span: Span = _span()


Statement = TaskDecl | ParamDecl | EntityDecl | CollectionDecl | RuleDecl


@dataclass(frozen=True)
class Program(Node):
    statements: tuple[Statement, ...]
    span: Span = _span()


def children(node: Node) -> list[Node]:
    """Direct sub-nodes of a node, in source order (for generic walks)."""
    out: list[Node] = []
    for name in node.__dataclass_fields__:
        if name.endswith("span"):
            continue
        value = getattr(node, name)
        if isinstance(value, Node):
            out.append(value)
        elif isinstance(value, tuple):
            out.extend(v for v in value if isinstance(v, Node))
    return out


def walk(node: Node):
    """Pre-order traversal."""
    yield node
    for child in children(node):
        yield from walk(child)
