"""The IR: what a checked program means, with no syntax left.

Lowering (`lower`) does the compile-time work once:
- names resolved to their definitions, params and arithmetic on constants folded;
- `implies` rewritten, `forall`/`exists` unrolled over the collection;
- negation pushed to the atoms (negation normal form): `not always p` becomes
  `eventually not p`, `not (p until q)` becomes `(not p) release (not q)`, a negated
  atom carries `negated=True` (its margin is flipped), region complements stay terms;
- nodes are frozen dataclasses with structural equality, so the evaluator's per-call
  cache computes each shared sub-term (a colour mask, a centroid track) once.

This module imports no torch: `ruledsl compile` prints the IR without loading it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ruledsl import ast
from ruledsl.checker import CheckedProgram
from ruledsl.signatures import BUILTINS, NAMED_COLORS, Type, parse_hex
from ruledsl.source import Span


class CompileError(Exception):
    """A construct the compiler cannot lower (e.g. `ask` without a VQA backend), with its location."""

    def __init__(self, message: str, source_name: str, span: Span | None):
        where = f"{source_name}:{span.line}:{span.column}: " if span else f"{source_name}: "
        super().__init__(where + message)


# ---- terms: values per frame (masks, numbers, points, images) ---------------------------------


@dataclass(frozen=True)
class Term:
    pass


@dataclass(frozen=True)
class Const(Term):
    value: float


@dataclass(frozen=True)
class ColorRef(Term):
    """A colour value (argument of `color`)."""

    rgb: tuple[int, int, int]


@dataclass(frozen=True)
class StringRef(Term):
    value: str


@dataclass(frozen=True)
class ColorMask(Term):
    rgb: tuple[int, int, int]
    tol: float


@dataclass(frozen=True)
class BoxMask(Term):
    x0: float
    y0: float
    x1: float
    y1: float


@dataclass(frozen=True)
class RegionOp(Term):
    op: str  # "union" | "intersection" | "difference" | "complement" | "grow" | "shrink"
    args: tuple[Term, ...]
    amount: float = 0.0  # grow/shrink distance


@dataclass(frozen=True)
class Snapshot(Term):
    """The mask of `region` at one frame, fixed for the whole video (no gradient)."""

    region: Term
    time: tuple[str, float]  # ("start"|"end"|"frame"|"fraction", value)


@dataclass(frozen=True)
class PointConst(Term):
    x: float  # fractions of width / height
    y: float


@dataclass(frozen=True)
class ImageFile(Term):
    path: str


@dataclass(frozen=True)
class Measure(Term):
    """A built-in measure or point function applied to terms (area, speed, centroid, ...)."""

    name: str
    args: tuple[Term, ...]


@dataclass(frozen=True)
class Arith(Term):
    op: str  # + - * / neg
    args: tuple[Term, ...]


# ---- formulas (negation normal form) ----------------------------------------------------------


@dataclass(frozen=True)
class Formula:
    pass


@dataclass(frozen=True)
class Truth(Formula):
    value: bool


@dataclass(frozen=True)
class Atom(Formula):
    """A predicate applied to terms; `negated` flips the sign of its margin."""

    name: str
    args: tuple[Term, ...]
    params: tuple[tuple[str, float], ...]
    negated: bool = False
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Compare(Formula):
    """`left <= right` has margin right - left; `negated` flips it."""

    op: str
    left: Term
    right: Term
    negated: bool = False


@dataclass(frozen=True)
class Ask(Formula):
    question: str
    negated: bool = False
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class And(Formula):
    children: tuple[Formula, ...]


@dataclass(frozen=True)
class Or(Formula):
    children: tuple[Formula, ...]


@dataclass(frozen=True)
class Always(Formula):
    body: Formula


@dataclass(frozen=True)
class Eventually(Formula):
    body: Formula


@dataclass(frozen=True)
class Next(Formula):
    body: Formula


@dataclass(frozen=True)
class Until(Formula):
    left: Formula
    right: Formula


@dataclass(frozen=True)
class Release(Formula):
    """Dual of until: `p release q` = not (not p until not q)."""

    left: Formula
    right: Formula


@dataclass(frozen=True)
class At(Formula):
    time: tuple[str, float]
    body: Formula


@dataclass(frozen=True)
class During(Formula):
    low: tuple[str, float]
    high: tuple[str, float]
    body: Formula
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Rule:
    name: str
    role: str
    weight: float
    formula: Formula
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class IRProgram:
    task: str | None
    prompt: str | None
    rules: tuple[Rule, ...]
    source_name: str
    base_dir: str  # for image paths


def negate(formula: Formula) -> Formula:
    """Negation normal form: push `not` to the atoms."""
    match formula:
        case Truth(value):
            return Truth(not value)
        case Atom() | Compare() | Ask():
            return _replace(formula, negated=not formula.negated)
        case And(children):
            return Or(tuple(negate(c) for c in children))
        case Or(children):
            return And(tuple(negate(c) for c in children))
        case Always(body):
            return Eventually(negate(body))
        case Eventually(body):
            return Always(negate(body))
        case Next(body):  # with a repeating last frame, next is its own dual
            return Next(negate(body))
        case Until(left, right):
            return Release(negate(left), negate(right))
        case Release(left, right):
            return Until(negate(left), negate(right))
        case At(time, body):
            return At(time, negate(body))
        case During(low, high, body):
            return During(low, high, negate(body), formula.span)
    raise TypeError(f"cannot negate {formula!r}")


def _replace(node, **changes):
    from dataclasses import replace

    return replace(node, **changes)


def _flatten(kind, children):
    out = []
    for child in children:
        out.extend(child.children if isinstance(child, kind) else (child,))
    return tuple(out)


# ---- lowering ---------------------------------------------------------------------------------


def lower(checked: CheckedProgram, params: dict[str, float] | None = None) -> IRProgram:
    """Lower a checked program; `params` overrides numeric `param` values (validated here)."""
    if not checked.ok:
        raise ValueError("cannot lower a program with errors; check it first")
    return _Lowering(checked, params or {}).program()


class _Lowering:
    def __init__(self, checked: CheckedProgram, params: dict[str, float]):
        self.checked = checked
        self.defs: dict[str, Term | tuple] = {}
        self.constants = dict(checked.constants)
        for name, value in params.items():
            current = self.constants.get(name)
            if not isinstance(current, float):
                known = sorted(n for n, v in self.constants.items() if isinstance(v, float))
                raise CompileError(
                    f"no numeric param `{name}` to override; this program's are: {', '.join(known) or 'none'}",
                    checked.source.name,
                    None,
                )
            if not math.isfinite(float(value)):
                raise CompileError(f"param `{name}` must be a finite number, got {value!r}", checked.source.name, None)
            self.constants[name] = float(value)

    def fail(self, message: str, span: Span | None):
        raise CompileError(message, self.checked.source.name, span)

    def program(self) -> IRProgram:
        rules = []
        for statement in self.checked.program.statements:
            if isinstance(statement, ast.EntityDecl):
                value = self.term(statement.value, {})
                if statement.snapshot is not None:
                    value = Snapshot(value, self.time(statement.snapshot))
                self.defs[statement.name] = value
            elif isinstance(statement, ast.CollectionDecl):
                self.defs[statement.name] = tuple(self.term(m, {}) for m in statement.members)
            elif isinstance(statement, ast.RuleDecl):
                weight = self.constant(statement.weight) if statement.weight is not None else 1.0
                rules.append(
                    Rule(statement.name, statement.role, weight, self.formula(statement.body, {}), statement.span)
                )
        task = self.checked.task
        from pathlib import Path

        base = str(Path(self.checked.source.name).resolve().parent) if self.checked.source.name != "<string>" else "."
        return IRProgram(
            task.name if task else None, task.prompt if task else None, tuple(rules), self.checked.source.name, base
        )

    def constant(self, node: ast.Node) -> float:
        match node:
            case ast.Number():
                return node.value
            case ast.Name(id=name):
                return float(self.constants[name])
            case ast.Neg(operand=operand):
                return -self.constant(operand)
            case ast.Binary(op=op, left=left, right=right):
                a, b = self.constant(left), self.constant(right)
                return {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op]
        raise TypeError(f"not a constant: {node!r}")

    def time(self, time: ast.Time) -> tuple[str, float]:
        if time.kind in ("start", "end"):
            return (time.kind, 0.0)
        if time.kind == "name":
            value = float(self.constants[time.text])
            literal = self.checked.symbols[time.text].decl.value
            frame = literal.is_integer if isinstance(literal, ast.Number) else value.is_integer()
            return ("frame" if frame else "fraction", value)
        return (time.kind, float(time.text))

    # terms ------------------------------------------------------------------------------------

    def term(self, node: ast.Node, scope: dict) -> Term:
        match node:
            case ast.Number():
                return Const(node.value)
            case ast.Name(id=name):
                if name in scope:
                    return scope[name]
                if name in self.constants:
                    value = self.constants[name]
                    return ColorRef(value) if isinstance(value, tuple) else Const(float(value))
                if name in self.defs:
                    return self.defs[name]
                if name in NAMED_COLORS:
                    return ColorRef(NAMED_COLORS[name])
            case ast.Color(text=text):
                return ColorRef(parse_hex(text))
            case ast.String(value=value):
                return StringRef(value)
            case ast.Neg(operand=operand):
                inner = self.term(operand, scope)
                return Const(-inner.value) if isinstance(inner, Const) else Arith("neg", (inner,))
            case ast.Not(operand=operand):
                return RegionOp("complement", (self.term(operand, scope),))
            case ast.Binary(op=op, left=left, right=right):
                a, b = self.term(left, scope), self.term(right, scope)
                if self.checked.type_of(node).value == "number":
                    if isinstance(a, Const) and isinstance(b, Const):
                        return Const(
                            {
                                "+": a.value + b.value,
                                "-": a.value - b.value,
                                "*": a.value * b.value,
                                "/": a.value / b.value,
                            }[op]
                        )
                    return Arith(op, (a, b))
                return RegionOp({"|": "union", "&": "intersection", "-": "difference"}[op], (a, b))
            case ast.Call():
                return self.call_term(node, scope)
        raise TypeError(f"cannot lower term {node!r}")  # the checker guarantees we never get here

    def bound_args(self, node: ast.Call, scope: dict) -> tuple[list[Term], dict[str, float]]:
        """Terms for region/point/... parameters, floats for number parameters (defaults filled)."""
        builtin = BUILTINS[node.func]
        given = dict(zip((p.name for p in builtin.params), node.args))
        given.update({k.name: k.value for k in node.kwargs})
        terms, numbers = [], {}
        for param in builtin.params:
            arg = given.get(param.name)
            if param.types == (Type.NUMBER,) and builtin.kind != "measure":  # compile-time constants
                numbers[param.name] = self.constant(arg) if arg is not None else param.default
            else:
                terms.append(self.term(arg, scope))
        return terms, numbers

    def call_term(self, node: ast.Call, scope: dict) -> Term:
        terms, numbers = self.bound_args(node, scope)
        match node.func:
            case "color":
                return ColorMask(terms[0].rgb, numbers["tol"])
            case "box":
                return BoxMask(numbers["x0"], numbers["y0"], numbers["x1"], numbers["y1"])
            case "grow" | "shrink":
                return RegionOp(node.func, (terms[0],), numbers["by"])
            case "point":
                return PointConst(numbers["x"], numbers["y"])
            case "file":
                return ImageFile(terms[0].value)
        return Measure(node.func, tuple(terms))

    # formulas ---------------------------------------------------------------------------------

    def formula(self, node: ast.Node, scope: dict) -> Formula:
        match node:
            case ast.Bool(value=value):
                return Truth(value)
            case ast.Ask(question=question):
                return Ask(question, span=node.span)
            case ast.Not(operand=operand):
                return negate(self.formula(operand, scope))
            case ast.And(left=left, right=right):
                return And(_flatten(And, (self.formula(left, scope), self.formula(right, scope))))
            case ast.Or(left=left, right=right):
                return Or(_flatten(Or, (self.formula(left, scope), self.formula(right, scope))))
            case ast.Implies(left=left, right=right):
                return Or(_flatten(Or, (negate(self.formula(left, scope)), self.formula(right, scope))))
            case ast.Until(left=left, right=right):
                return Until(self.formula(left, scope), self.formula(right, scope))
            case ast.Temporal(op="always", body=body):
                return Always(self.formula(body, scope))
            case ast.Temporal(op="eventually", body=body):
                return Eventually(self.formula(body, scope))
            case ast.Temporal(op="next", body=body):
                return Next(self.formula(body, scope))
            case ast.Temporal(op="at", body=body, time=time):
                return At(self.time(time), self.formula(body, scope))
            case ast.During(window=window, body=body):
                return During(self.time(window.low), self.time(window.high), self.formula(body, scope), window.span)
            case ast.Quantified(quantifier=quantifier, var=var, collection=collection, body=body):
                members = self.defs[collection]
                parts = tuple(self.formula(body, {**scope, var: member}) for member in members)
                if not parts:  # forall over nothing holds, exists over nothing fails
                    return Truth(quantifier == "forall")
                return And(_flatten(And, parts)) if quantifier == "forall" else Or(_flatten(Or, parts))
            case ast.Compare(op=op, left=left, right=right):
                return Compare(op, self.term(left, scope), self.term(right, scope))
            case ast.Call():
                terms, numbers = self.bound_args(node, scope)
                return Atom(node.func, tuple(terms), tuple(sorted(numbers.items())), span=node.span)
        raise TypeError(f"cannot lower formula {node!r}")


# ---- printing (`ruledsl compile`) ------------------------------------------------------------


def term_text(term: Term) -> str:
    match term:
        case Const(value=value):
            return f"{value:g}"
        case ColorRef(rgb=rgb):
            return "#%02x%02x%02x" % rgb
        case ColorMask(rgb=rgb, tol=tol):
            return "color(#%02x%02x%02x, tol=%g)" % (*rgb, tol)
        case BoxMask(x0=x0, y0=y0, x1=x1, y1=y1):
            return f"box({x0:g}, {y0:g}, {x1:g}, {y1:g})"
        case RegionOp(op=op, args=args, amount=amount):
            inner = ", ".join(term_text(a) for a in args)
            return f"{op}({inner}{f', {amount:g}' if op in ('grow', 'shrink') else ''})"
        case Snapshot(region=region, time=time):
            return f"snapshot({term_text(region)}, {_time_text(time)})"
        case PointConst(x=x, y=y):
            return f"point({x:g}, {y:g})"
        case ImageFile(path=path):
            return f"file({path!r})"
        case StringRef(value=value):
            return repr(value)
        case Measure(name=name, args=args) | Arith(op=name, args=args):
            return f"{name}({', '.join(term_text(a) for a in args)})"
    return repr(term)


def _time_text(time: tuple[str, float]) -> str:
    kind, value = time
    return (
        kind if kind in ("start", "end") else (f"frame {int(value)}" if kind == "frame" else f"{value:g} of the window")
    )


def formula_text(f: Formula, indent: int = 0) -> str:
    pad = "  " * indent
    neg = "¬" if getattr(f, "negated", False) else ""
    match f:
        case Truth(value=value):
            return f"{pad}{'true' if value else 'false'}"
        case Atom(name=name, args=args, params=params):
            extra = [f"{k}={v:g}" for k, v in params]
            return f"{pad}{neg}{name}({', '.join([term_text(a) for a in args] + extra)})"
        case Compare(op=op, left=left, right=right):
            return f"{pad}{neg}[{term_text(left)} {op} {term_text(right)}]"
        case Ask(question=question):
            return f"{pad}{neg}ask({question!r})"
        case And(children=children) | Or(children=children):
            head = "and" if isinstance(f, And) else "or"
            return f"{pad}{head}\n" + "\n".join(formula_text(c, indent + 1) for c in children)
        case Always(body=body) | Eventually(body=body) | Next(body=body):
            return f"{pad}{type(f).__name__.lower()}\n{formula_text(body, indent + 1)}"
        case Until(left=left, right=right) | Release(left=left, right=right):
            return (
                f"{pad}{type(f).__name__.lower()}\n{formula_text(left, indent + 1)}\n{formula_text(right, indent + 1)}"
            )
        case At(time=time, body=body):
            return f"{pad}at {_time_text(time)}\n{formula_text(body, indent + 1)}"
        case During(low=low, high=high, body=body):
            return f"{pad}during [{_time_text(low)}, {_time_text(high)}]\n{formula_text(body, indent + 1)}"
    return pad + repr(f)


def to_text(program: IRProgram) -> str:
    lines = [f"# IR of {program.source_name}" + (f" (task {program.task})" if program.task else "")]
    for rule in program.rules:
        lines.append(f"rule {rule.name} [{rule.role}, weight {rule.weight:g}]")
        lines.append(formula_text(rule.formula, 1))
    return "\n".join(lines) + "\n"
