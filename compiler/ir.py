"""The IR: what a checked program means, with no syntax left.

Lowering (`lower`) does the compile-time work once:
- names resolved to their definitions, constants folded (by the checker's folding);
- `implies` rewritten, `forall`/`exists` unrolled over the collection;
- negation pushed to the atoms (negation normal form) while lowering: `not always p`
  becomes `eventually not p`, `not (p until q)` becomes `(not p) release (not q)`, a
  negated atom carries `negated=True` (its margin is flipped), region complements stay terms;
- chains of one associative operator flattened into one n-ary node (`a | b | c`,
  `p and q and r`, `x + y - z`, `a * b * c`, `a & b - c`), so a long chain is one wide
  node, not a deep one; the order of operands (and so of floating-point rounding) is kept;
- every built-in call becomes a `Call` (a value) or an `Atom` (a formula) that names its
  registry entry: the lowering knows no built-in by name;
- nodes are frozen dataclasses with structural equality and a hash computed once at
  construction, and the lowering interns them, so the evaluator's per-call cache computes
  each shared sub-term (a colour mask, a centroid track) once and compares keys cheaply.

Lowering walks the syntax tree with an explicit stack (`ruledsl.dag`), so a deep or long
formula cannot exhaust Python's stack. This module imports no torch: `ruledsl compile`
prints the IR without loading it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields
from dataclasses import replace as _dataclass_replace
from typing import Any

from ruledsl import ast
from ruledsl.checker import CheckedProgram, ParamError
from ruledsl.dag import ByIdentity, evaluate
from ruledsl.diagnostics import render_text
from ruledsl.signatures import BUILTINS, NAMED_COLORS, Type, parse_hex
from ruledsl.source import Span


class CompileError(Exception):
    """A construct the compiler cannot lower (e.g. `ask` without a VQA model), with its location."""

    def __init__(self, message: str, source_name: str, span: Span | None):
        where = f"{source_name}:{span.line}:{span.column}: " if span else f"{source_name}: "
        super().__init__(where + message)


@dataclass(frozen=True)
class _Hashed:
    """Base of IR nodes: frozen dataclasses whose hash is computed once, when built (children hash first).

    The generated hash would walk the whole subtree on every cache lookup: quadratic for
    deep formulas, exponential for a region used twice in a region used twice in ...
    (a `__hash__` in the class keeps `dataclass` from generating one).
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.__hash__ = _Hashed.__hash__

    def __post_init__(self) -> None:
        key = tuple(getattr(self, f.name) for f in fields(self) if f.compare)
        object.__setattr__(self, "_hash", hash((type(self).__name__, key)))

    def __hash__(self) -> int:
        return self.__dict__["_hash"]


# ---- terms: values per frame (masks, numbers, points, images) ---------------------------------


@dataclass(frozen=True)
class Term(_Hashed):
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
class RegionOp(Term):
    """A set operation on masks: "union" and "intersection" (n-ary, in order) or "complement" (one)."""

    op: str
    args: tuple[Term, ...]


@dataclass(frozen=True)
class Snapshot(Term):
    """The mask of `region` at one frame, fixed for the whole video (no gradient)."""

    region: Term
    time: tuple[str, float]  # ("start"|"end"|"frame"|"fraction", value)


@dataclass(frozen=True)
class Call(Term):
    """A built-in selector, point, image or measure applied to its arguments (see ruledsl.signatures).

    `args` are the terms of the entry's term parameters in order; `params` its constant numbers.
    """

    name: str
    args: tuple[Term, ...]
    params: tuple[tuple[str, float], ...] = ()
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Arith(Term):
    """Arithmetic on numbers: "+" and "*" (n-ary, in order), "/" (two), "neg" (one)."""

    op: str
    args: tuple[Term, ...]


@dataclass(frozen=True)
class Components(Term):
    """`components(selector, min_area, max)` taken at `time`: the source of a collection's slots."""

    selector: Term
    time: tuple[str, float]
    min_area: float
    slots: int


@dataclass(frozen=True)
class Slot(Term):
    """Member `index` of a components collection: the blob tracked from that slot (an object)."""

    collection: Components
    index: int


@dataclass(frozen=True)
class Members(Term):
    """A collection as an argument (`largest(tiles)`): its members in order."""

    items: tuple[Term, ...]


def arguments(call: Call | Atom) -> dict[str, Any]:
    """A built-in call's arguments by parameter name: terms for its term parameters, floats for constants."""
    names = (p.name for p in BUILTINS[call.name].term_params())
    return {**dict(zip(names, call.args)), **dict(call.params)}


def term_type(term: Term) -> Type:
    """What a term's value is: a mask, a number, a point, an image, or a raw colour/string argument."""
    if isinstance(term, Call):
        return BUILTINS[term.name].returns
    if isinstance(term, Slot):
        return Type.OBJECT
    if isinstance(term, (Members, Components)):
        return Type.COLLECTION
    if isinstance(term, Snapshot) and term_type(term.region) is Type.IMAGE:
        return Type.IMAGE  # `image first = frame() at start`
    if isinstance(term, (RegionOp, Snapshot)):
        return Type.REGION
    if isinstance(term, ColorRef):
        return Type.COLOR
    if isinstance(term, StringRef):
        return Type.STRING
    return Type.NUMBER


# ---- formulas (negation normal form) ----------------------------------------------------------


@dataclass(frozen=True)
class Formula(_Hashed):
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
    """A yes/no question to a VQA model (compiler/asks.py). `per_frame`: asked about each frame (under a
    temporal operator) rather than about a clip spread over its window; set by `place_asks` while lowering."""

    question: str
    negated: bool = False
    span: Span | None = field(default=None, compare=False, repr=False)
    per_frame: bool = False


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
class Count(Formula):
    """Per frame: at least / at most `k` of `children` hold (`bound` "least" | "most").

    Margin: the k-th largest child margin ("least"), minus the (k+1)-th largest ("most"): the
    order statistic that changes sign exactly when the count crosses k (Semantics.kth_largest).
    """

    bound: str
    k: int
    children: tuple[Formula, ...]


@dataclass(frozen=True)
class Events(Formula):
    """At frame t: `body` becomes true at least / at most `k` times in [t, window end].

    A rise at s: body holds at s and did not at s - 1 (t itself counts if body holds there);
    margin: the order statistic of the rise margins min(body[s], -body[s-1]) (body[t] at t).
    """

    bound: str
    k: int
    body: Formula


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
    base_dir: str  # the program's folder: `file()` paths start (and must stay) there


ATOMIC = (Truth, Atom, Compare, Ask)


def positive(atom: Any) -> Formula:
    """The atom with its negation removed (its margin is computed once, then flipped where negated)."""
    return _dataclass_replace(atom, negated=False) if getattr(atom, "negated", False) else atom


def negate(formula: Formula) -> Formula:
    """Negation normal form of `not formula` (lowering does this on the way; this is for IR built by hand)."""
    match formula:
        case Truth(value):
            return Truth(not value)
        case Atom() | Compare() | Ask():
            return _dataclass_replace(formula, negated=not formula.negated)
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
        case Count(bound, k, parts):  # not (at least k) = at most k - 1; not (at most k) = at least k + 1
            return count("most", k - 1, parts) if bound == "least" else count("least", k + 1, parts)
        case Events(bound, k, body):
            return events("most", k - 1, body) if bound == "least" else events("least", k + 1, body)
    raise TypeError(f"cannot negate {formula!r}")


def count(bound: str, k: int, parts: tuple[Formula, ...]) -> Formula:
    """`Count`, with the cases that need no video folded to `Truth` (at least 0, at most n, ...)."""
    if bound == "least":
        return Truth(True) if k <= 0 else Truth(False) if k > len(parts) else Count("least", k, parts)
    return Truth(False) if k < 0 else Truth(True) if k >= len(parts) else Count("most", k, parts)


def events(bound: str, k: int, body: Formula) -> Formula:
    """`Events`, with at least 0 / at most -1 folded (the window length is only known per video)."""
    if bound == "least" and k <= 0:
        return Truth(True)
    if bound == "most" and k < 0:
        return Truth(False)
    return Events(bound, k, body)


def counted(bound: str, k: int, make, neg: bool) -> Formula:
    """`at least | at most | exactly k` (optionally negated) over `make(kind_bound, k)`; exactly = both."""
    if bound == "exactly":
        both = [make("least", k), make("most", k)]
        if neg:
            return Or(_flatten(Or, tuple(negate(f) for f in both)))
        return And(_flatten(And, tuple(both)))
    formula = make(bound, k)
    return negate(formula) if neg else formula


def member_guard(member: Any) -> Formula | None:
    """The formula "this collection member exists in this video", or None when it always does.

    A collection declared from `components(...)` has a fixed number of slots, and a video may fill
    fewer; quantifiers and counting lower `forall x in C: phi` to `guard(x) implies phi` and
    `exists` / counting to `guard(x) and phi` for each member (members of a literal list `[a, b]`
    have no guard). The guard is the atom `filled(slot)`: margin +1 when the slot found a blob at
    the collection's frame, -1 otherwise (constant in time, no gradient; compiler/objects.py).
    """
    if isinstance(member, Slot):
        return Atom("filled", (member,), ())
    return None


def guarded(member: Any, body: Formula, conjunction: bool) -> Formula:
    """One member's part of a quantifier: `guard implies body` in a conjunction, `guard and body` in a
    disjunction (negation normal form: `not guard` is the guard atom negated)."""
    guard = member_guard(member)
    if guard is None:
        return body
    if conjunction:
        return Or(_flatten(Or, (negate(guard), body)))
    return And(_flatten(And, (guard, body)))


def children(node: Term | Formula) -> list[Term | Formula]:
    """Direct sub-terms and sub-formulas of an IR node."""
    out: list[Term | Formula] = []
    for f in fields(node):
        value = getattr(node, f.name)
        if isinstance(value, (Term, Formula)):
            out.append(value)
        elif isinstance(value, tuple):
            out.extend(v for v in value if isinstance(v, (Term, Formula)))
    return out


def walk(program: IRProgram):
    """Every distinct node of the program's rules, each once, in source order (iterative: any depth)."""
    seen: set[int] = set()
    stack: list[Any] = [rule.formula for rule in reversed(program.rules)]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        stack.extend(reversed(children(node)))


def _flatten(kind, parts):
    out = []
    for part in parts:
        out.extend(part.children if isinstance(part, kind) else (part,))
    return tuple(out)


# ---- lowering ---------------------------------------------------------------------------------


def lower(checked: CheckedProgram, params: dict[str, float] | None = None) -> IRProgram:
    """Lower a checked program; `params` overrides numeric `param` values.

    Overrides are checked by the checker, exactly like the declarations they replace
    (`CheckedProgram.with_params`); a value that does not fit is a CompileError naming it.
    """
    if not checked.ok:
        raise ValueError("cannot lower a program with errors; check it first")
    if params:
        checked = _with_params(checked, params)
    return place_asks(_Lowering(checked).program())


def _with_params(checked: CheckedProgram, params: dict[str, float]) -> CheckedProgram:
    try:
        result = checked.with_params(params)
    except ParamError as error:
        raise CompileError(str(error), checked.source.name, None) from None
    if not result.ok:
        given = ", ".join(f"{name}={value:g}" for name, value in result.params.items())
        raise CompileError(
            f"the param values {given} do not fit this program:\n" + render_text(result.errors, result.source).rstrip(),
            checked.source.name,
            None,
        )
    return result


# Operators that chain into one n-ary node: (type group, operator) -> (IR op, how the right operand enters).
_CHAINS = {
    ("number", "+"): ("+", "plain"),
    ("number", "-"): ("+", "negated"),
    ("number", "*"): ("*", "plain"),
    ("region", "|"): ("union", "plain"),
    ("region", "&"): ("intersection", "plain"),
    ("region", "-"): ("intersection", "complemented"),
}


class _Lowering:
    def __init__(self, checked: CheckedProgram):
        self.checked = checked
        self.defs: dict[str, Any] = {}
        self.interned: dict = {}

    def make(self, node):
        """One object per distinct node: cache lookups then compare by identity."""
        return self.interned.setdefault(node, node)

    def program(self) -> IRProgram:
        assert self.checked.program is not None  # lower() refuses programs with errors
        rules = []
        for statement in self.checked.program.statements:
            if isinstance(statement, ast.EntityDecl):
                value = self.term(statement.value, {})
                if statement.snapshot is not None:
                    value = self.make(Snapshot(value, self.time(statement.snapshot)))
                self.defs[statement.name] = value
            elif isinstance(statement, ast.CollectionDecl):
                self.defs[statement.name] = tuple(self.term(m, {}) for m in statement.members)
            elif isinstance(statement, ast.ComponentsDecl):
                members = self.term(statement.value, {}, statement.snapshot)
                self.defs[statement.name] = members.items
            elif isinstance(statement, ast.RuleDecl):
                weight = self.number(statement.weight) if statement.weight is not None else 1.0
                rules.append(
                    Rule(statement.name, statement.role, weight, self.formula(statement.body, {}), statement.span)
                )
        task = self.checked.task
        base = str(self.checked.folder.resolve())
        return IRProgram(
            task.name if task else None, task.prompt if task else None, tuple(rules), self.checked.source.name, base
        )

    def number(self, node: ast.Node) -> float:
        value = self.checked.constant(node)
        if not isinstance(value, float):
            raise TypeError(f"not a constant number: {node!r}")  # the checker guarantees we never get here
        return value

    def time(self, time: ast.Time) -> tuple[str, float]:
        if time.kind in ("start", "end"):
            return (time.kind, 0.0)
        if time.kind == "name":
            value = self.checked.constants[time.text]
            assert isinstance(value, float)  # the checker made sure a time is a number
            literal = getattr(self.checked.symbols[time.text].decl, "value", None)
            frame = literal.is_integer if isinstance(literal, ast.Number) else value.is_integer()
            return ("frame" if frame else "fraction", value)
        return (time.kind, float(time.text))

    # terms ------------------------------------------------------------------------------------

    def group(self, node: ast.Node) -> str:
        kind = self.checked.type_of(node)
        return "number" if kind is Type.NUMBER else "region"

    def chain(self, node: ast.Binary) -> list[tuple[str, ast.Node]]:
        """The operands of the chain `node` ends, left to right, each with how it enters (one n-ary node).

        Walks down the left spine while the operator stays in the same n-ary op; a constant
        prefix stays one operand (folded, as written).
        """
        group = self.group(node)
        op = _CHAINS[(group, node.op)][0]
        operands = []
        while True:
            operands.append((_CHAINS[(group, node.op)][1], node.right))
            left = node.left
            if (
                isinstance(left, ast.Binary)
                and _CHAINS.get((group, left.op), ("",))[0] == op
                and not isinstance(self.checked.constant(left), float)
            ):
                node = left
                continue
            operands.append(("plain", left))
            return operands[::-1]

    def term_inputs(self, node: ast.Node) -> list[ast.Node]:
        if isinstance(self.checked.constant(node), float) or isinstance(node, ast.Name):
            return []
        match node:
            case ast.Neg(operand=operand) | ast.Not(operand=operand):
                return [operand]
            case ast.Binary(op="/", left=left, right=right):
                return [left, right]
            case ast.Binary():
                return [operand for _, operand in self.chain(node)]
            case ast.Call(func=func) if func in self.checked.defs:
                return list(node.args)
            case ast.Call():
                return list(self.bound(node)[0].values())
        return []

    def term(self, root: ast.Node, scope: dict, snapshot: ast.Time | None = None) -> Any:
        """Lower an expression that is not a formula (a region, number, point, image, colour or string).

        `snapshot`: the frame of a `components(...)` call at the root (an `objects` declaration's `at`)."""
        cache: dict = {}

        def value(node: ast.Node):
            return cache[ByIdentity(node)]

        def compute(key: ByIdentity):
            when = snapshot if key.node is root else None
            return self.make(self.term_node(key.node, scope, value, when))

        return evaluate(
            ByIdentity(root), cache, lambda key: [ByIdentity(n) for n in self.term_inputs(key.node)], compute
        )

    def term_node(self, node: ast.Node, scope: dict, value, snapshot: ast.Time | None = None) -> Any:
        constant = self.checked.constant(node)
        if isinstance(constant, float):
            return Const(constant)
        match node:
            case ast.Name(id=name):
                if name in scope:
                    return scope[name]
                if name in self.checked.defs:  # a def without parameters
                    return self.term(self.checked.defs[name].decl.body, {})
                if name in self.checked.constants:  # a colour param (numbers were folded above)
                    return ColorRef(self.checked.constants[name])  # type: ignore[arg-type]
                if name in self.defs:
                    found = self.defs[name]
                    return Members(found) if isinstance(found, tuple) else found  # a collection as an argument
                if name in NAMED_COLORS:
                    return ColorRef(NAMED_COLORS[name])
            case ast.Color(text=text):
                return ColorRef(parse_hex(text))
            case ast.String(value=text):
                return StringRef(text)
            case ast.Neg(operand=operand):
                return Arith("neg", (value(operand),))
            case ast.Not(operand=operand):
                return RegionOp("complement", (value(operand),))
            case ast.Binary(op="/", left=left, right=right):
                return Arith("/", (value(left), value(right)))
            case ast.Binary():
                group = self.group(node)
                op = _CHAINS[(group, node.op)][0]
                args = []
                for how, operand in self.chain(node):
                    term = value(operand)
                    if how == "negated":
                        term = self.make(Const(-term.value) if isinstance(term, Const) else Arith("neg", (term,)))
                    elif how == "complemented":
                        term = self.make(RegionOp("complement", (term,)))
                    args.append(term)
                return (Arith if group == "number" else RegionOp)(op, tuple(args))
            case ast.Call(func="components"):
                terms, numbers = self.bound(node)
                time = self.time(snapshot) if snapshot is not None else ("start", 0.0)
                options = dict(numbers)
                source = self.make(Components(value(terms["sel"]), time, options["min_area"], int(options["max"])))
                return Members(tuple(self.make(Slot(source, i)) for i in range(source.slots)))
            case ast.Call(func=func) if func in self.checked.defs:
                info = self.checked.defs[func]
                params = {name: value(arg) for (name, _), arg in zip(info.params, node.args)}
                return self.term(info.decl.body, params)
            case ast.Call():
                terms, numbers = self.bound(node)
                return Call(node.func, tuple(value(t) for t in terms.values()), numbers, node.span)
        raise TypeError(f"cannot lower term {node!r}")

    # defs and collection forms ----------------------------------------------------------------

    def def_scope(self, node: ast.Call, scope: dict) -> dict:
        """A def's body sees its parameters only (bound to the call's lowered arguments) and the globals."""
        info = self.checked.defs[node.func]
        return {name: self.term(arg, scope) for (name, _), arg in zip(info.params, node.args)}

    def count_value(self, node: ast.Node) -> int:
        return int(round(self.number(node)))  # the checker made sure it is a non-negative integer

    def apply(self, function: str, member: Any) -> Any:
        """The number `function(member)`: a one-argument built-in measure, or a one-parameter def."""
        if function in self.checked.defs:
            info = self.checked.defs[function]
            return self.term(info.decl.body, {info.params[0][0]: member})
        builtin = BUILTINS[function]
        numbers = tuple(sorted((p.name, p.default) for p in builtin.params[1:]))
        return self.make(Call(function, (member,), numbers, None))

    def collection_form(self, node: ast.Call, scope: dict) -> Formula:
        """`sorted(C, by=f, along=g, descending=false)` and `distinct(C, by=f, tol=0)` over member pairs."""
        given = {k.name: k.value for k in node.kwargs}
        collection = node.args[0]
        assert isinstance(collection, ast.Name)
        members = self.defs[collection.id]
        by = given["by"]
        assert isinstance(by, ast.Name)
        values = [self.apply(by.id, m) for m in members]
        parts: list[Formula] = []
        if node.func == "sorted":
            along_node = given["along"]
            assert isinstance(along_node, ast.Name)
            along = [self.apply(along_node.id, m) for m in members]
            descending = isinstance(given.get("descending"), ast.Bool) and given["descending"].value  # type: ignore[union-attr]
            for i, j in itertools.combinations(range(len(members)), 2):
                # i before j along  =>  by ordered the same way; j before i  =>  the other way.
                low, high = (values[j], values[i]) if descending else (values[i], values[j])
                forward = And((Compare("<=", along[i], along[j], False), Compare("<=", low, high, False)))
                backward = And((Compare(">=", along[i], along[j], False), Compare(">=", low, high, False)))
                pair: Formula = Or((forward, backward))
                parts.append(guarded(members[i], guarded(members[j], pair, True), True))
        else:
            tol = self.number(given["tol"]) if "tol" in given else 0.0
            for i, j in itertools.combinations(range(len(members)), 2):
                gap = self.make(
                    Call("abs", (self.make(Arith("+", (values[i], self.make(Arith("neg", (values[j],)))))),), (), None)
                )
                pair = Compare(">", gap, self.make(Const(tol)), False)
                parts.append(guarded(members[i], guarded(members[j], pair, True), True))
        if not parts:
            return Truth(True)
        return And(_flatten(And, tuple(parts)))  # the checker guarantees we never get here

    def bound(self, node: ast.Call) -> tuple[dict[str, Any], tuple[tuple[str, Any], ...]]:
        """A call's arguments: syntax of its term parameters (in order), values of its constant ones."""
        builtin = BUILTINS[node.func]
        given = dict(zip((p.name for p in builtin.params), node.args))
        given.update({k.name: k.value for k in node.kwargs})
        terms: dict[str, Any] = {}
        numbers: list[tuple[str, Any]] = []
        for param in builtin.params:
            arg = given.get(param.name)
            if param.flag:
                numbers.append((param.name, float(arg.value) if isinstance(arg, ast.Bool) else param.default))
            elif builtin.is_constant(param):
                numbers.append((param.name, self.number(arg) if arg is not None else param.default))
            else:
                terms[param.name] = arg
        return terms, tuple(sorted(numbers))

    # formulas ---------------------------------------------------------------------------------

    def formula(self, root: ast.Node, scope: dict, negated: bool = False) -> Formula:
        """Lower a formula in negation normal form: `negated` lowers `not root` (pushed to the atoms)."""
        cache: dict = {}

        def inputs(key):
            node, neg = key[0].node, key[1]
            match node:
                case ast.Not(operand=operand):
                    return [(ByIdentity(operand), not neg)]
                case ast.Implies(left=left, right=right):
                    return [(ByIdentity(left), not neg), (ByIdentity(right), neg)]
                case (
                    ast.And(left=left, right=right) | ast.Or(left=left, right=right) | ast.Until(left=left, right=right)
                ):
                    return [(ByIdentity(left), neg), (ByIdentity(right), neg)]
                case ast.Temporal(body=body) | ast.During(body=body):
                    return [(ByIdentity(body), neg)]
            return []

        def compute(key):
            node, neg = key[0].node, key[1]
            values = [cache[k] for k in inputs(key)]
            return self.make(self.formula_node(node, neg, values, scope))

        return evaluate((ByIdentity(root), negated), cache, inputs, compute)

    def formula_node(self, node: ast.Node, neg: bool, values: list, scope: dict) -> Formula:
        match node:
            case ast.Bool(value=value):
                return Truth(value != neg)
            case ast.Ask(question=question):
                return Ask(question, negated=neg, span=node.span)
            case ast.Not():
                return values[0]
            case ast.And() | ast.Or() | ast.Implies():
                conjunction = isinstance(node, ast.And) != neg if not isinstance(node, ast.Implies) else neg
                kind = And if conjunction else Or
                return kind(_flatten(kind, values))
            case ast.Until():
                return (Release if neg else Until)(values[0], values[1])
            case ast.Temporal(op="always"):
                return (Eventually if neg else Always)(values[0])
            case ast.Temporal(op="eventually"):
                return (Always if neg else Eventually)(values[0])
            case ast.Temporal(op="next"):
                return Next(values[0])
            case ast.Temporal(op="at", time=ast.Time() as time):
                return At(self.time(time), values[0])
            case ast.During(window=window):
                return During(self.time(window.low), self.time(window.high), values[0], window.span)
            case ast.Quantified(quantifier=quantifier, collection=collection, body=body):
                conjunction = (quantifier == "forall") != neg
                names = [node.var, *(o.id for o in node.others)]
                parts = []
                for members in itertools.permutations(self.defs[collection], len(names)):
                    inner = {**scope, **dict(zip(names, members))}
                    part = self.formula(body, inner, neg)
                    if node.where is not None:  # forall: not where or body; exists: where and body
                        where = self.formula(node.where, inner, conjunction)
                        part = (Or if conjunction else And)(_flatten(Or if conjunction else And, (where, part)))
                    for member in reversed(members):
                        part = guarded(member, part, conjunction)
                    parts.append(part)
                if not parts:  # forall over nothing holds, exists over nothing fails
                    return Truth(conjunction)
                kind = And if conjunction else Or
                return kind(_flatten(kind, tuple(parts)))
            case ast.CountMembers(collection=collection, var=var, body=body):
                members_parts = []
                for member in self.defs[collection]:
                    inner = {**scope, var: member}
                    part = self.formula(body, inner)
                    if node.where is not None:
                        part = And(_flatten(And, (self.formula(node.where, inner), part)))
                    members_parts.append(guarded(member, part, conjunction=False))
                parts_ = tuple(members_parts)
                return counted(node.bound, self.count_value(node.count), lambda b, k: count(b, k, parts_), neg)
            case ast.CountEvents(body=body):
                inner_formula = self.formula(body, scope)
                return counted(node.bound, self.count_value(node.count), lambda b, k: events(b, k, inner_formula), neg)
            case ast.Call(func=func) if func in self.checked.defs:
                info = self.checked.defs[func]
                return self.formula(info.decl.body, self.def_scope(node, scope), neg)
            case ast.Name(id=name) if name in self.checked.defs and name not in scope:
                return self.formula(self.checked.defs[name].decl.body, {}, neg)
            case ast.Call(func="sorted" | "distinct"):
                formula = self.collection_form(node, scope)
                return negate(formula) if neg else formula
            case ast.Compare(op=op, left=left, right=right):
                return Compare(op, self.term(left, scope), self.term(right, scope), neg)
            case ast.Call():
                terms, numbers = self.bound(node)
                args = tuple(self.term(t, scope) for t in terms.values())
                return Atom(node.func, args, numbers, neg, span=node.span)
        raise TypeError(f"cannot lower formula {node!r}")


# ---- where `ask` atoms look (compiler/asks.py evaluates them) ---------------------------------

_TEMPORAL = (Always, Eventually, Next, Until, Release, At, Events)


def place_asks(program: IRProgram) -> IRProgram:
    """The program with every ask marked per-frame (under a temporal operator) or clip-level (video level).

    A sub-formula without asks stays the same object; rebuilt nodes are interned like the lowering's.
    """
    cache: dict = {}
    interned: dict = {}

    def inputs(key):
        node, under = key
        nested = under or isinstance(node, _TEMPORAL)
        return [(c, nested) for c in children(node) if isinstance(c, Formula)]

    def compute(key):
        node, under = key
        if isinstance(node, Ask):
            return _dataclass_replace(node, per_frame=under)
        old = [c for c in children(node) if isinstance(c, Formula)]
        new = [cache[k] for k in inputs(key)]
        if all(a is b for a, b in zip(old, new)):
            return node
        rebuilt = _rebuild(node, iter(new))
        return interned.setdefault(rebuilt, rebuilt)

    rules = tuple(
        _dataclass_replace(rule, formula=evaluate((rule.formula, False), cache, inputs, compute))
        for rule in program.rules
    )
    return _dataclass_replace(program, rules=rules)


def _rebuild(node: Formula, parts) -> Formula:
    """`node` with its sub-formulas replaced by `parts`, in `children` order (terms kept)."""
    values: dict[str, Any] = {}
    for name in node.__dataclass_fields__:
        value = getattr(node, name)
        if isinstance(value, Formula):
            values[name] = next(parts)
        elif isinstance(value, tuple) and value and isinstance(value[0], Formula):
            values[name] = tuple(next(parts) for _ in value)
    return _dataclass_replace(node, **values)


def asks(program: IRProgram) -> list[tuple[Rule, Ask]]:
    """Every (rule, ask) pair, in source order."""
    out = []
    for rule in program.rules:
        single = IRProgram(None, None, (rule,), program.source_name, program.base_dir)
        out += [(rule, node) for node in walk(single) if isinstance(node, Ask)]
    return out


# ---- printing (`ruledsl compile`) ------------------------------------------------------------


def term_text(term: Term) -> str:
    match term:
        case Const(value=value):
            return f"{value:g}"
        case ColorRef(rgb=rgb):
            return "#%02x%02x%02x" % rgb
        case StringRef(value=value):
            return repr(value)
        case Snapshot(region=region, time=time):
            return f"snapshot({term_text(region)}, {_time_text(time)})"
        case Components(selector=selector, time=time, min_area=min_area, slots=slots):
            return f"components({term_text(selector)}, min_area={min_area:g}, max={slots}, {_time_text(time)})"
        case Slot(collection=collection, index=index):
            return f"{term_text(collection)}[{index}]"
        case Members(items=items):
            return f"[{', '.join(term_text(i) for i in items)}]"
        case Call(name=name, args=args, params=params):
            shown = [(k, v) for k, v in params if not _quiet(name, k, v)]
            return f"{name}({', '.join([term_text(a) for a in args] + [f'{k}={v:g}' for k, v in shown])})"
        case RegionOp(op=name, args=args) | Arith(op=name, args=args):
            return f"{name}({', '.join(term_text(a) for a in args)})"
    return repr(term)


# Options of `color` that print only when set, so a program that does not use them reads as before.
_QUIET = {("color", "hard"), ("color", "min_area")}


def _quiet(name: str, param: str, value: float) -> bool:
    default = next(p.default for p in BUILTINS[name].params if p.name == param)
    return (name, param) in _QUIET and value == default


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
        case Ask(question=question, per_frame=per_frame):
            return f"{pad}{neg}ask({question!r}) " + ("per frame" if per_frame else "over the window")
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
        case Count(bound=bound, k=k, children=children):
            return f"{pad}at {bound} {k} of\n" + "\n".join(formula_text(c, indent + 1) for c in children)
        case Events(bound=bound, k=k, body=body):
            return f"{pad}at {bound} {k} times\n{formula_text(body, indent + 1)}"
    return pad + repr(f)


def to_text(program: IRProgram) -> str:
    lines = [f"# IR of {program.source_name}" + (f" (task {program.task})" if program.task else "")]
    for rule in program.rules:
        lines.append(f"rule {rule.name} [{rule.role}, weight {rule.weight:g}]")
        lines.append(formula_text(rule.formula, 1))
    return "\n".join(lines) + "\n"
