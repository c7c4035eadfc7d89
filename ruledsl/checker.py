"""Name resolution and type checking: AST -> CheckedProgram with every diagnostic.

The checker never stops at the first error: each statement and each sub-expression
is checked, an ill-typed sub-expression gets type None, and None is accepted
silently by its parents so one mistake is reported once.

Recursion follows the program's nesting, which the parser bounds (ast.MAX_NESTING); chains
like `a and b and ...` are typed along their left spine in a loop, and constants are folded
iteratively (`CheckedProgram.constant`), so their length costs no stack. Every number, written or folded from constants, is finite and at
most MAX_MAGNITUDE in size, so no inf or NaN reaches the compiler.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ruledsl import ast
from ruledsl.dag import ByIdentity, evaluate
from ruledsl.diagnostics import Diagnostic
from ruledsl.signatures import BUILTINS, NAMED_COLORS, Builtin, CallContext, Param, Type, parse_hex
from ruledsl.source import Source, Span

# Numbers in a program are fractions of the frame, frame counts, tolerances and weights; 10^15
# is far beyond any of them and far below float32's 3.4e38, so products of a few stay finite.
MAX_MAGNITUDE = 1e15
# "did you mean" compares a name with every candidate; a generated program with tens of
# thousands of names and errors would make that quadratic, so one check spends at most this
# many comparisons on suggestions (then hints fall back to the generic ones).
SUGGESTION_BUDGET = 200_000

_KIND_TYPE = {"object": Type.OBJECT, "region": Type.REGION, "image": Type.IMAGE}
# The types a `def` parameter may be declared with (`def near(a: object, r: region) = ...`).
DEF_PARAM_TYPES = {"object": Type.OBJECT, "region": Type.REGION, "point": Type.POINT, "number": Type.NUMBER}
# Formulas over a collection written as calls: `sorted(C, by=f, along=g)`, `distinct(C, by=f, tol=t)`.
COLLECTION_FORMS = ("sorted", "distinct")
# Words a `def` cannot be named: the formula keywords that read as a call after an operator.
_PREFIX_KEYWORDS = ("always", "eventually", "next", "during", "forall", "exists", "at", "exactly")
_ARTICLE = {Type.OBJECT: "an object", Type.IMAGE: "an image"}


def _number_words(text: str) -> str:
    return f"number `{text}`" if len(text) <= 24 else f"number `{text[:12]}…` ({len(text)} characters)"


def _a(t: Type | None) -> str:
    return _ARTICLE.get(t, f"a {t.value}") if t else "an invalid expression"


@dataclass
class Symbol:
    name: str
    kind: str  # "param" | "object" | "region" | "image" | "objects"
    type: Type
    decl: ast.Node
    static: bool = False  # regions: one mask for the whole video (a snapshot)
    used: bool = False


@dataclass(frozen=True)
class DefInfo:
    """A checked `def`: its parameters' types and what its body is (None: the body has an error)."""

    decl: ast.DefDecl
    params: tuple[tuple[str, Type], ...]
    returns: Type | None


@dataclass
class CheckedProgram:
    """A parsed program with its symbols, node types and diagnostics."""

    source: Source
    program: ast.Program | None
    diagnostics: list[Diagnostic]
    symbols: dict[str, Symbol] = field(default_factory=dict)
    constants: dict[str, float | tuple[int, int, int]] = field(default_factory=dict)
    types: dict[int, Type] = field(default_factory=dict)  # id(node) -> type; nodes live as long as `program`
    allow_paths: tuple[Path, ...] = ()  # folders besides the program's that `file()` may read
    params: dict[str, float] = field(default_factory=dict)  # overrides the constants were checked with
    folded: dict[ByIdentity, object] = field(default_factory=dict, repr=False)  # node -> its constant value or None
    defs: dict[str, DefInfo] = field(default_factory=dict)  # `def` declarations, in order

    @property
    def ok(self) -> bool:
        return not any(d.is_error for d in self.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if not d.is_error]

    @property
    def task(self) -> ast.TaskDecl | None:
        return next((s for s in self._statements() if isinstance(s, ast.TaskDecl)), None)

    @property
    def rules(self) -> list[ast.RuleDecl]:
        return [s for s in self._statements() if isinstance(s, ast.RuleDecl)]

    def type_of(self, node: ast.Node) -> Type | None:
        return self.types.get(id(node))

    def _statements(self) -> tuple:
        return self.program.statements if self.program else ()

    @property
    def folder(self) -> Path:
        """Where relative paths in the program (`file("...")`) start: the .rule file's folder."""
        return Path(self.source.name).parent if self.source.name != "<string>" else Path(".")

    def constant(self, node: ast.Node) -> float | tuple[int, int, int] | None:
        """The value of a constant expression (numbers, colours, params, arithmetic on them), else None.

        The one place constants are folded: the checker's range checks and the compiler's
        lowering both read it, so they cannot disagree. Each operator computes only
        itself; division by zero is not a constant (the checker reports it). Iterative
        and memoised, so a long chain of `+` costs its length.
        """

        def operands(key):
            n = key.node
            if isinstance(n, ast.Neg):
                return (ByIdentity(n.operand),)
            if isinstance(n, ast.Binary) and n.op in "+-*/":
                return (ByIdentity(n.left), ByIdentity(n.right))
            return ()

        def fold(key):
            n = key.node
            if isinstance(n, ast.Number):
                return n.value
            if isinstance(n, ast.Color):
                return parse_hex(n.text)
            if isinstance(n, ast.Name):
                if n.id in self.constants:
                    return self.constants[n.id]
                return NAMED_COLORS[n.id] if n.id in NAMED_COLORS and n.id not in self.symbols else None
            values = [self.folded[k] for k in operands(key)]
            if not values or not all(isinstance(v, float) for v in values):
                return None
            if isinstance(n, ast.Neg):
                return -values[0]
            return fold_arithmetic(n.op, values[0], values[1])

        return evaluate(ByIdentity(node), self.folded, operands, fold)

    def with_params(self, params: Mapping[str, float]) -> CheckedProgram:
        """The program checked again with some numeric params set to other values (`--param`, a task's metadata).

        The overrides go through the same checks as the declarations they replace (the
        ranges of the built-in arguments they feed, division by zero, windows, weights):
        the result's diagnostics say where a value does not fit. Raises ParamError for a
        name that is not a numeric param or a value that is not a finite number.
        """
        numeric = sorted(n for n, v in self.constants.items() if isinstance(v, float))
        overrides: dict[str, float] = {}
        for name, value in params.items():
            if name not in numeric:
                raise ParamError(
                    f"no numeric param `{name}` to override; this program's are: {', '.join(numeric) or 'none'}"
                )
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if not math.isfinite(number):
                raise ParamError(f"param `{name}` must be a finite number, got {value!r}")
            overrides[name] = number
        if not overrides or self.program is None:
            return self
        return Checker(self.source, self.program, allow_paths=self.allow_paths, params=overrides).run()


class ParamError(ValueError):
    """A param override names no numeric param of the program, or is not a finite number."""


def fold_arithmetic(op: str, a: float, b: float) -> float | None:
    """One arithmetic operator on two constants; None for a division by zero."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a / b if b != 0 else None


def check(source: Source, allow_paths: Iterable[str | Path] = ()) -> CheckedProgram:
    """Parse and check; syntax errors stop before name/type checks (there is no tree to check).

    `file("...")` may read only below the program's folder, or below one of `allow_paths`.
    """
    from ruledsl.parser import ParseError, parse

    allowed = tuple(Path(p) for p in allow_paths)
    try:
        program = parse(source)
    except ParseError as error:
        return CheckedProgram(source, None, [error.diagnostic], allow_paths=allowed)
    return Checker(source, program, allow_paths=allowed).run()


def did_you_mean(name: str, candidates) -> str | None:
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"did you mean `{match[0]}`?" if match else None


class Checker:
    def __init__(
        self,
        source: Source,
        program: ast.Program,
        allow_paths: tuple[Path, ...] = (),
        params: Mapping[str, float] | None = None,
    ):
        self.result = CheckedProgram(source, program, [], allow_paths=allow_paths, params=dict(params or {}))
        self.overrides = self.result.params
        self.symbols = self.result.symbols
        self.constants = self.result.constants
        self.diagnostics = self.result.diagnostics
        # First declaration of every name, to tell "defined later" from "undefined".
        self.declared_later: dict[str, ast.Node] = {}
        # Types of chain nodes typed ahead, along a left spine, before their parent asks (see `infer`).
        self.spine_types: dict[int, Type | None] = {}
        self.suggestion_budget = SUGGESTION_BUDGET
        self.frame_call: ast.Node | None = None  # the one `frame()` allowed: `image NAME = frame() at T`
        for statement in program.statements:
            if isinstance(
                statement, (ast.ParamDecl, ast.EntityDecl, ast.CollectionDecl, ast.ComponentsDecl, ast.DefDecl)
            ):
                self.declared_later.setdefault(statement.name, statement)
        self.defs = self.result.defs
        self.current_def: str | None = None  # the `def` whose body is being checked (no recursion)

    def error(self, code: str, message: str, span: Span, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(code, message, span, hint))

    def suggest(self, name: str, candidates) -> str | None:
        candidates = list(candidates)
        if self.suggestion_budget < len(candidates):
            return None
        self.suggestion_budget -= len(candidates)
        return did_you_mean(name, candidates)

    # ---- statements -----------------------------------------------------------------------

    def run(self) -> CheckedProgram:
        seen_task: ast.TaskDecl | None = None
        rule_names: dict[str, ast.RuleDecl] = {}
        program = self.result.program
        assert program is not None  # run() is only called on a parsed program
        for statement in program.statements:
            if isinstance(statement, ast.TaskDecl):
                if seen_task:
                    self.error(
                        "E202",
                        "a second `task` header",
                        statement.span,
                        f"the task is already declared at line {seen_task.span.line}",
                    )
                seen_task = seen_task or statement
            elif isinstance(statement, ast.ParamDecl):
                self.check_param(statement)
            elif isinstance(statement, ast.EntityDecl):
                self.check_entity(statement)
            elif isinstance(statement, ast.CollectionDecl):
                self.check_collection(statement)
            elif isinstance(statement, ast.ComponentsDecl):
                self.check_components(statement)
            elif isinstance(statement, ast.DefDecl):
                self.check_def(statement)
            elif isinstance(statement, ast.RuleDecl):
                if statement.name in rule_names:
                    first = rule_names[statement.name]
                    self.error(
                        "E202",
                        f"rule `{statement.name}` is defined twice",
                        statement.name_span,
                        f"the first `{statement.name}` is at line {first.span.line}; rename one",
                    )
                rule_names.setdefault(statement.name, statement)
                self.check_rule(statement)
        self.warn_unused()
        if not any(rule.role == "goal" for rule in rule_names.values()):
            program_span = program.span
            self.error(
                "W102",
                "the program has no `goal` rule",
                program_span.__class__(
                    program_span.start,
                    program_span.start,
                    program_span.line,
                    program_span.column,
                    program_span.line,
                    program_span.column,
                ),
                "add a rule for the final state, e.g. `goal reach: at end inside(agent, target)`",
            )
        return self.result

    def define(self, name: str, span: Span, symbol: Symbol) -> None:
        if name in self.symbols:
            first = self.symbols[name].decl
            self.error(
                "E202",
                f"`{name}` is defined twice",
                span,
                f"the first `{name}` is at line {first.span.line}; rename one",
            )
            return
        if name in NAMED_COLORS:
            self.error(
                "W103",
                f"`{name}` shadows the built-in colour `{name}`",
                span,
                f"in this program `{name}` now means the {symbol.kind}; rename it to keep the colour",
            )
        self.symbols[name] = symbol

    def check_param(self, decl: ast.ParamDecl) -> None:
        kind = self.infer(decl.value, {})
        value = self.constant(decl.value)
        if kind is Type.NUMBER and decl.name in self.overrides:
            value = self.overrides[decl.name]  # checked from here on exactly like the declared value
        if kind in (Type.NUMBER, Type.COLOR) and value is not None:
            self.constants[decl.name] = value
            self.define(decl.name, decl.name_span, Symbol(decl.name, "param", kind, decl))
        elif kind is not None:
            self.error(
                "E308",
                f"param `{decl.name}` must be a constant number or colour, got {_a(kind)}",
                decl.value.span,
                "declare regions and objects with `region` or `object`",
            )

    def check_entity(self, decl: ast.EntityDecl) -> None:
        is_frame = isinstance(decl.value, ast.Call) and decl.value.func == "frame"
        if decl.kind == "image" and is_frame:
            self.frame_call = decl.value
            if decl.snapshot is None:
                self.error(
                    "E308",
                    "`frame()` needs the frame it takes",
                    decl.value.span,
                    f"write `image {decl.name} = frame() at start` (or `at end`, `at 3`, `at 0.5`)",
                )
        kind = self.infer(decl.value, {})
        self.frame_call = None
        want = _KIND_TYPE[decl.kind]
        static = decl.snapshot is not None
        if decl.snapshot is not None:
            self.check_time(decl.snapshot)
            if decl.kind != "region" and not (decl.kind == "image" and is_frame):
                self.error(
                    "E308",
                    f"{_a(want)} cannot be taken `at {decl.snapshot.text}`",
                    decl.snapshot.span,
                    f"an object is tracked in every frame; for a fixed mask write `region {decl.name} = ...`"
                    if decl.kind == "object"
                    else "an image is the same in every frame already; a frame of the video is "
                    f"`image {decl.name} = frame() at {decl.snapshot.text}`",
                )
        if kind is not None:
            ok = want.accepts(kind) or (want is Type.OBJECT and kind is Type.REGION)
            if not ok:
                example = 'file("target.png")' if want is Type.IMAGE else "color(#ff0000)"
                self.error(
                    "E308",
                    f"{decl.kind} `{decl.name}` must be given {_a(Type.IMAGE if want is Type.IMAGE else Type.REGION)}, "
                    f"got {_a(kind)}",
                    decl.value.span,
                    f"for example `{decl.kind} {decl.name} = {example}`",
                )
            elif decl.kind == "region":
                static = static or self.is_static(decl.value)
        self.define(decl.name, decl.name_span, Symbol(decl.name, decl.kind, want, decl, static=static))

    def check_collection(self, decl: ast.CollectionDecl) -> None:
        for member in decl.members:
            kind = self.infer(member, {})
            if kind is not None and kind is not Type.OBJECT:
                self.error(
                    "E301",
                    f"`{member.id}` is {_a(kind)}; a collection holds objects",
                    member.span,
                    f"declare it with `object {member.id} = ...`",
                )
        self.define(decl.name, decl.name_span, Symbol(decl.name, "objects", Type.COLLECTION, decl))

    def check_components(self, decl: ast.ComponentsDecl) -> None:
        if decl.snapshot is not None:
            self.check_time(decl.snapshot)
        if not (isinstance(decl.value, ast.Call) and decl.value.func == "components"):
            self.infer(decl.value, {})
            self.error(
                "E308",
                f"objects `{decl.name}` must be a list `[a, b]` or `components(...)`",
                decl.value.span,
                f"e.g. `objects {decl.name} = components(color(#52c41a), max=8) at start`",
            )
        else:
            self.infer(decl.value, {})
        self.define(decl.name, decl.name_span, Symbol(decl.name, "objects", Type.COLLECTION, decl))

    def check_def(self, decl: ast.DefDecl) -> None:
        """Type the body once, with the declared parameter types; calls are checked against those types."""
        ok = True
        if decl.name in BUILTINS or decl.name in COLLECTION_FORMS or decl.name in _PREFIX_KEYWORDS:
            what = "a keyword" if decl.name in _PREFIX_KEYWORDS else "a built-in function"
            self.error("E308", f"`{decl.name}` is {what}; a `def` cannot take its name", decl.name_span, "rename it")
            ok = False
        scope: dict[str, Type] = {}
        params: list[tuple[str, Type]] = []
        for param, written in zip(decl.params, decl.param_types):
            kind = DEF_PARAM_TYPES.get(written or "object")
            if kind is None:
                self.error(
                    "E308",
                    f"unknown parameter type `{written}`",
                    param.span,
                    f"a parameter is one of {', '.join(f'`{t}`' for t in DEF_PARAM_TYPES)} (default `object`)",
                )
                ok, kind = False, Type.OBJECT
            if param.id in scope:
                self.error("E202", f"parameter `{param.id}` is named twice", param.span, "rename one")
                ok = False
            elif param.id in self.symbols or param.id in NAMED_COLORS or param.id in self.declared_later:
                # A parameter must not hide a declared name: constants are folded by name.
                self.error(
                    "E203",
                    f"parameter `{param.id}` hides the declared `{param.id}`",
                    param.span,
                    f"choose another parameter name, e.g. `{param.id}_`",
                )
                ok = False
            scope[param.id] = kind
            params.append((param.id, kind))
        self.current_def = decl.name
        returns = self.infer(decl.body, scope)
        self.current_def = None
        if returns is not None and returns not in (Type.FORMULA, Type.NUMBER, Type.REGION, Type.OBJECT, Type.POINT):
            self.error(
                "E308",
                f"`def {decl.name}` is {_a(returns)}; a def names a formula, number, region or point",
                decl.body.span,
            )
            returns = None
        info = DefInfo(decl, tuple(params), returns if ok else None)
        self.defs.setdefault(decl.name, info)
        self.define(decl.name, decl.name_span, Symbol(decl.name, "def", returns or Type.FORMULA, decl))

    def check_def_call(self, node: ast.Call, info: DefInfo, scope: dict[str, Type]) -> Type | None:
        """A call of a `def`: positional arguments of the declared types (E301, E302, E303)."""
        name, signature = node.func, self.def_signature(info)
        ok = True
        for kwarg in node.kwargs:
            self.infer(kwarg.value, scope)
            self.error("E303", f"`{name}` takes no keyword arguments", kwarg.span, f"`{signature}`")
            ok = False
        if len(node.args) != len(info.params):
            self.error(
                "E302",
                f"`{name}` takes {len(info.params)} argument{'s' * (len(info.params) != 1)}, got {len(node.args)}",
                node.args[len(info.params)].span if len(node.args) > len(info.params) else node.span,
                f"`{signature}`",
            )
            ok = False
        for arg, (param, want) in zip(node.args, info.params):
            kind = self.infer(arg, scope)
            if kind is not None and not (want.accepts(kind) or (want is Type.REGION and kind is Type.OBJECT)):
                self.error(
                    "E301",
                    f"argument `{param}` of `{name}` must be {_a(want)}, got {_a(kind)}",
                    arg.span,
                    f"`{signature}`",
                )
                ok = False
            ok &= kind is not None
        for arg in node.args[len(info.params) :]:
            self.infer(arg, scope)
        return info.returns if ok else None

    @staticmethod
    def def_signature(info: DefInfo) -> str:
        params = ", ".join(f"{name}: {kind.value}" for name, kind in info.params)
        returns = info.returns.value if info.returns else "?"
        return f"{info.decl.name}({params}) -> {returns}"

    def check_rule(self, rule: ast.RuleDecl) -> None:
        kind = self.infer(rule.body, {})
        if kind is not None and kind is not Type.FORMULA:
            hint = (
                "compare it with a number, e.g. `speed(agent) <= 0.1`"
                if kind is Type.NUMBER
                else "use a predicate, e.g. `inside(agent, goal)`"
            )
            self.error("E305", f"the body of rule `{rule.name}` is {_a(kind)}, not a formula", rule.body.span, hint)
        if rule.weight is not None:
            wkind = self.infer(rule.weight, {})
            value = self.constant(rule.weight)
            if wkind is not None and (wkind is not Type.NUMBER or value is None):
                self.error("E304", "a rule weight must be a constant number", rule.weight.span)
            elif isinstance(value, float) and value <= 0:
                self.error(
                    "E309",
                    f"rule weight {value:g} must be positive",
                    rule.weight.span,
                    "to switch a rule off, delete it or comment it out",
                )

    def warn_unused(self) -> None:
        for symbol in self.symbols.values():
            if not symbol.used:
                self.error(
                    "W101",
                    f"{symbol.kind} `{symbol.name}` is never used",
                    getattr(symbol.decl, "name_span", symbol.decl.span),
                    "use it in a rule or delete the declaration",
                )

    # ---- helpers: constants and static regions -------------------------------------------------

    def constant(self, node: ast.Node) -> float | tuple[int, int, int] | None:
        """Fold literal numbers, colours and params (no side effects, no diagnostics)."""
        return self.result.constant(node)

    def is_static(self, node: ast.Node) -> bool:
        """A region expression is static when it reads no pixels except through static names."""

        def static(part: ast.Node) -> bool:
            if isinstance(part, ast.Name):
                symbol = self.symbols.get(part.id)
                return symbol is None or symbol.static or symbol.kind == "param"
            return not (isinstance(part, ast.Call) and part.func == "color")

        return all(static(part) for part in ast.walk(node))

    # ---- expressions ------------------------------------------------------------------------

    def infer(self, node: ast.Node, scope: dict[str, Type]) -> Type | None:
        if id(node) in self.spine_types:
            return self.spine_types.pop(id(node))
        if isinstance(node, ast.CHAINS):
            # Type the left spine bottom-up first, so that this node's own check finds its left
            # operand typed already and no chain recurses deeper than one link.
            for link in reversed(ast.left_spine(node, until=self.spine_types)[1:]):
                self.spine_types[id(link)] = self.infer(link, scope)
        kind = self._infer(node, scope)
        if kind is not None:
            self.result.types[id(node)] = kind
        return kind

    def check_magnitude(self, value: float, what: str, span: Span, source: str = "") -> bool:
        """E309 unless `value` is finite and within ±MAX_MAGNITUDE; `what` names it in the message,
        `source` says which param overrides it comes from."""
        if math.isfinite(value) and abs(value) <= MAX_MAGNITUDE:
            return True
        size = f"{value:.3g}" if math.isfinite(value) else "beyond any floating-point number"
        self.error(
            "E309",
            f"{what} is {size}{source}; numbers must be within ±{MAX_MAGNITUDE:g}",
            span,
            "numbers in a program are fractions of the frame, frame counts, tolerances or weights",
        )
        return False

    def _infer(self, node: ast.Node, scope: dict[str, Type]) -> Type | None:
        if isinstance(node, ast.Number):
            return Type.NUMBER if self.check_magnitude(node.value, _number_words(node.text), node.span) else None
        if isinstance(node, ast.Color):
            return Type.COLOR
        if isinstance(node, ast.String):
            return Type.STRING
        if isinstance(node, ast.Ask) and not node.question.strip():
            self.error(
                "E309",
                "the question of `ask` is empty",
                node.span,
                'write a yes/no question about the video, e.g. `ask "Is the red agent on the green goal?"`',
            )
        if isinstance(node, (ast.Bool, ast.Ask)):
            return Type.FORMULA
        if isinstance(node, ast.Name):
            return self.resolve(node, scope)
        if isinstance(node, ast.Call):
            return self.check_call(node, scope)
        if isinstance(node, ast.Neg):
            kind = self.infer(node.operand, scope)
            if kind not in (None, Type.NUMBER):
                self.error("E304", f"`-` needs a number, got {_a(kind)}", node.span)
                return None
            return kind
        if isinstance(node, ast.Binary):
            return self.check_binary(node, scope)
        if isinstance(node, ast.Compare):
            left, right = self.infer(node.left, scope), self.infer(node.right, scope)
            for side, kind in ((node.left, left), (node.right, right)):
                if kind not in (None, Type.NUMBER):
                    self.error(
                        "E304",
                        f"`{node.op}` compares numbers, got {_a(kind)}",
                        side.span,
                        "measure it first, e.g. `area(agent)` or `distance(agent, goal)`",
                    )
                    return None
            return Type.FORMULA
        if isinstance(node, ast.Not):
            kind = self.infer(node.operand, scope)
            if kind is None:
                return None
            if kind is Type.FORMULA:
                return Type.FORMULA
            if Type.REGION.accepts(kind):
                return Type.REGION  # complement of a region
            self.error("E304", f"`not` needs a formula or a region, got {_a(kind)}", node.operand.span)
            return None
        if isinstance(node, (ast.And, ast.Or, ast.Implies, ast.Until)):
            op = {ast.And: "and", ast.Or: "or", ast.Implies: "implies", ast.Until: "until"}[type(node)]
            ok = True
            for side in (node.left, node.right):
                kind = self.infer(side, scope)
                if kind not in (None, Type.FORMULA):
                    hint = (
                        "combine regions with `&` (both), `|` (either) or `-` (difference)"
                        if kind is not None and Type.REGION.accepts(kind) and op in ("and", "or")
                        else None
                    )
                    self.error("E304", f"`{op}` needs formulas, got {_a(kind)}", side.span, hint)
                    ok = False
            return Type.FORMULA if ok else None
        if isinstance(node, ast.Temporal):
            if node.time is not None:
                self.check_time(node.time)
            label = f"at {node.time.text}" if node.op == "at" and node.time is not None else node.op
            return self.check_body(label, node.body, scope)
        if isinstance(node, ast.During):
            self.check_window(node.window)
            return self.check_body("during", node.body, scope)
        if isinstance(node, ast.Quantified):
            return self.check_quantified(node, scope)
        if isinstance(node, (ast.CountMembers, ast.CountEvents)):
            return self.check_counting(node, scope)
        raise TypeError(f"checker has no case for {type(node).__name__}")  # a bug, not a user error

    def check_body(self, op: str, body: ast.Node, scope: dict[str, Type]) -> Type | None:
        kind = self.infer(body, scope)
        if kind not in (None, Type.FORMULA):
            self.error("E304", f"`{op}` needs a formula, got {_a(kind)}", body.span)
            return None
        return kind

    def resolve(self, node: ast.Name, scope: dict[str, Type]) -> Type | None:
        if node.id in scope:
            return scope[node.id]
        symbol = self.symbols.get(node.id)
        if symbol is not None:
            symbol.used = True
            info = self.defs.get(node.id)
            if info is not None and info.params:
                self.error(
                    "E201",
                    f"`{node.id}` is a def with parameters, not a value",
                    node.span,
                    f"call it: `{self.def_signature(info)}`",
                )
                return None
            return info.returns if info is not None else symbol.type
        if node.id == self.current_def:
            self.error("E205", f"`def {node.id}` uses itself", node.span, "a def cannot be recursive")
            return None
        if node.id in NAMED_COLORS:
            return Type.COLOR
        later = self.declared_later.get(node.id)
        if later is not None:
            self.error(
                "E205",
                f"`{node.id}` is used before its definition",
                node.span,
                f"`{node.id}` is defined at line {later.span.line}; move that declaration above this line",
            )
            return None
        if node.id in BUILTINS:
            self.error(
                "E201",
                f"`{node.id}` is a function, not a value",
                node.span,
                f"call it: `{BUILTINS[node.id].signature()}`",
            )
            return None
        hint = self.suggest(node.id, [*scope, *self.symbols, *NAMED_COLORS])
        self.error(
            "E201",
            f"undefined name `{node.id}`",
            node.span,
            hint or "declare it first, e.g. `object name = color(#ff0000)`",
        )
        return None

    def check_binary(self, node: ast.Binary, scope: dict[str, Type]) -> Type | None:
        left, right = self.infer(node.left, scope), self.infer(node.right, scope)
        if left is None or right is None:
            return None
        if node.op in "+-*/" and left is Type.NUMBER and right is Type.NUMBER:
            if node.op == "/" and self.constant(node.right) == 0.0:
                self.error(
                    "E309",
                    "division by zero: the divisor is a constant 0",
                    node.right.span,
                    "divide by a non-zero number; a param that is 0 (declared or set with --param) counts too",
                )
                return None
            value = self.constant(node)
            if isinstance(value, float) and not self.check_magnitude(
                value, f"this `{node.op}` of constants", node.span, self.overridden(node)
            ):
                return None
            return Type.NUMBER
        if node.op in "|&-" and Type.REGION.accepts(left) and Type.REGION.accepts(right):
            return Type.REGION
        wants = (
            "two regions" if node.op in "|&" else ("two numbers or two regions" if node.op == "-" else "two numbers")
        )
        self.error("E304", f"`{node.op}` needs {wants}, got {_a(left)} and {_a(right)}", node.span)
        return None

    def check_quantified(self, node: ast.Quantified, scope: dict[str, Type]) -> Type | None:
        variables = [(node.var, node.var_span), *((o.id, o.span) for o in node.others)]
        return self.check_binder(node.quantifier, variables, node.collection, node.collection_span, node, scope)

    def check_binder(
        self,
        label: str,
        variables: list[tuple[str, Span]],
        collection: str,
        collection_span: Span,
        node: ast.Quantified | ast.CountMembers,
        scope: dict[str, Type],
    ) -> Type | None:
        """Variables over a collection, an optional `where` filter and the body (quantifiers, counting)."""
        ok = True
        inner = dict(scope)
        for var, span in variables:
            if var in self.symbols or var in inner:
                self.error(
                    "E203",
                    f"`{var}` already names {'a quantified object' if var in inner else _a(self.symbols[var].type)}",
                    span,
                    f"choose another variable name, e.g. `{var}_i`",
                )
                ok = False
            inner[var] = Type.OBJECT
        coll = self.resolve(ast.Name(collection, collection_span), scope)
        if coll is not None and coll is not Type.COLLECTION:
            self.error(
                "E301",
                f"`{label}` ranges over objects declared with `objects`, and `{collection}` is {_a(coll)}",
                collection_span,
                f"declare `objects many = [a, b]` and write `{label} x in many: ...`",
            )
            ok = False
        if node.where is not None:
            ok &= self.check_body("where", node.where, inner) is not None
        kind = self.check_body(label, node.body, inner)
        return kind if ok else None

    def check_count(self, count: ast.Node, label: str, scope: dict[str, Type]) -> bool:
        """K of a counting form: a non-negative integer constant (a literal or a param), else E309."""
        kind = self.infer(count, scope)
        if kind is None:
            return False
        value = self.constant(count)
        if kind is not Type.NUMBER or not isinstance(value, float) or value < 0 or not value.is_integer():
            shown = f" is {value:g}{self.overridden(count)}" if isinstance(value, float) else " is not a constant"
            self.error(
                "E309",
                f"the count of `{label}`{shown}; it must be a non-negative whole number",
                count.span,
                "write a literal like `2` or a `param` holding a whole number",
            )
            return False
        return True

    def check_counting(self, node: ast.CountMembers | ast.CountEvents, scope: dict[str, Type]) -> Type | None:
        label = {"least": "at least", "most": "at most", "exactly": "exactly"}[node.bound]
        ok = self.check_count(node.count, label, scope)
        if isinstance(node, ast.CountMembers):
            variables = [(node.var, node.var_span)]
            kind = self.check_binder(label, variables, node.collection, node.collection_span, node, scope)
        else:
            kind = self.check_body(f"{label} ... times", node.body, scope)
        return kind if ok else None

    def number_function(self, node: ast.Node, form: str, key: str) -> bool:
        """`by=f` of sorted/distinct: the name of a one-argument number function taking an object."""
        hint = "name a measure of one object, like `area`, `x` or `y`, or a `def f(o) = ...` giving a number"
        if not isinstance(node, ast.Name):
            self.infer(node, {})
            self.error("E301", f"`{key}` of `{form}` must name a function, e.g. `{key}=area`", node.span, hint)
            return False
        builtin, info = BUILTINS.get(node.id), self.defs.get(node.id)
        if builtin is not None:
            first, rest = (builtin.params[0], builtin.params[1:]) if builtin.params else (None, ())
            fits = (
                builtin.returns is Type.NUMBER
                and first is not None
                and any(t.accepts(Type.OBJECT) for t in first.types)
                and not any(p.required for p in rest)
            )
        elif info is not None:
            self.symbols[node.id].used = True
            fits = (
                len(info.params) == 1
                and info.params[0][1].accepts(Type.OBJECT)
                or (len(info.params) == 1 and info.params[0][1] is Type.REGION)
            )
            fits = fits and info.returns in (Type.NUMBER, None)
        else:
            self.error(
                "E204",
                f"unknown function `{node.id}`",
                node.span,
                self.suggest(node.id, [*BUILTINS, *self.defs]) or hint,
            )
            return False
        if not fits:
            self.error(
                "E301", f"`{key}` of `{form}`: `{node.id}` is not a number function of one object", node.span, hint
            )
        return fits

    def check_collection_form(self, node: ast.Call, scope: dict[str, Type]) -> Type | None:
        """`sorted(C, by=f, along=g, descending=false)` and `distinct(C, by=f, tol=0)`: formulas."""
        form = node.func
        keys = ("by", "along", "descending") if form == "sorted" else ("by", "tol")
        signature = (
            "sorted(C: objects, by: function, along: function, descending: bool = false) -> formula"
            if form == "sorted"
            else "distinct(C: objects, by: function, tol: number = 0) -> formula"
        )
        ok = True
        if len(node.args) != 1:
            for arg in node.args[1:]:
                self.infer(arg, scope)
            span = node.args[1].span if len(node.args) > 1 else node.span
            self.error("E302", f"`{form}` takes one collection, then keyword arguments", span, f"`{signature}`")
            ok = False
        if node.args:
            coll = self.infer(node.args[0], scope)
            if coll is not None and (coll is not Type.COLLECTION or not isinstance(node.args[0], ast.Name)):
                self.error("E301", f"`{form}` needs a collection, got {_a(coll)}", node.args[0].span, f"`{signature}`")
                ok = False
            ok &= coll is not None
        given: dict[str, ast.Node] = {}
        for kwarg in node.kwargs:
            if kwarg.name not in keys or kwarg.name in given:
                what = "is given twice" if kwarg.name in given else "is not a parameter"
                self.error("E303", f"`{kwarg.name}` of `{form}` {what}", kwarg.span, f"`{signature}`")
                ok = False
                continue
            given[kwarg.name] = kwarg.value
        missing = [k for k in ("by", "along")[: 2 if form == "sorted" else 1] if k not in given]
        if missing:
            names = ", ".join(f"`{m}`" for m in missing)
            self.error("E302", f"`{form}` is missing {names}", node.span, f"`{signature}`")
            ok = False
        for key in ("by", "along"):
            if key in given:
                ok &= self.number_function(given[key], form, key)
        if "descending" in given and not isinstance(given["descending"], ast.Bool):
            self.error("E301", "`descending` of `sorted` is `true` or `false`", given["descending"].span)
            ok = False
        if "tol" in given:
            kind = self.infer(given["tol"], scope)
            value = self.constant(given["tol"])
            if kind is not None and (not isinstance(value, float) or value < 0):
                self.error(
                    "E309", "`tol` of `distinct` must be a constant number >= 0", given["tol"].span, f"`{signature}`"
                )
                ok = False
            ok &= kind is not None
        return Type.FORMULA if ok else None

    def check_call(self, node: ast.Call, scope: dict[str, Type]) -> Type | None:
        builtin = BUILTINS.get(node.func)
        info = self.defs.get(node.func) if node.func not in scope else None
        if builtin is None and info is not None and info.params:
            self.symbols[node.func].used = True
            return self.check_def_call(node, info, scope)
        if builtin is None and node.func in COLLECTION_FORMS:
            return self.check_collection_form(node, scope)
        if (
            builtin is None
            and (node.func == self.current_def or node.func in self.declared_later)
            and (node.func not in self.symbols and node.func not in scope)
        ):
            for arg in (*node.args, *(k.value for k in node.kwargs)):
                self.infer(arg, scope)
            if node.func == self.current_def:
                self.error("E205", f"`def {node.func}` calls itself", node.func_span, "a def cannot be recursive")
            else:
                later = self.declared_later[node.func]
                self.error(
                    "E205",
                    f"`{node.func}` is used before its definition",
                    node.func_span,
                    f"`{node.func}` is defined at line {later.span.line}; move that declaration above this line",
                )
            return None
        if builtin is None:
            for arg in (*node.args, *(k.value for k in node.kwargs)):
                self.infer(arg, scope)
            if node.func in self.symbols or node.func in scope:
                what = self.symbols[node.func].kind if node.func in self.symbols else "quantified object"
                self.error(
                    "E204",
                    f"`{node.func}` is a {what}, not a function",
                    node.func_span,
                    f"write `{node.func}` without parentheses",
                )
            else:
                self.error(
                    "E204",
                    f"unknown function `{node.func}`",
                    node.func_span,
                    self.suggest(node.func, BUILTINS) or "see docs/language.md for the built-in functions",
                )
            return None
        if builtin.name == "frame" and node is not self.frame_call:
            self.error(
                "E308",
                "`frame()` stands only in an image declaration with a time",
                node.span,
                "declare it: `image first = frame() at start`, then use `first`",
            )
            return None
        bound = self.bind_arguments(builtin, node)
        ok = bound is not None
        for param, arg in (bound or {}).items():
            kind = self.infer(arg, scope)
            if kind is None:
                ok = False
            elif param.flag and not isinstance(arg, ast.Bool):
                self.error(
                    "E304",
                    f"`{param.name}` of `{builtin.name}` must be `true` or `false`",
                    arg.span,
                    f"write `{param.name}=true`",
                )
                ok = False
            elif not any(t.accepts(kind) for t in param.types):
                self.error(
                    "E301",
                    f"argument `{param.name}` of `{builtin.name}` must be {' or '.join(_a(t) for t in param.types)}, got {_a(kind)}",
                    arg.span,
                    f"`{builtin.signature()}`",
                )
                ok = False
            elif kind is Type.NUMBER:
                if builtin.is_constant(param) and self.constant(arg) is None:
                    self.error(
                        "E304",
                        f"`{param.name}` of `{builtin.name}` must be a constant number",
                        arg.span,
                        "use a literal or a `param`; measures like `area(x)` change from frame to frame",
                    )
                    ok = False
                else:
                    ok &= self.check_range(builtin, param, arg)
        if bound is None:  # still type the arguments so their names count as used and their errors show
            for arg in (*node.args, *(k.value for k in node.kwargs)):
                self.infer(arg, scope)
        if ok and bound is not None:
            ok = self.check_builtin_rules(builtin, node, bound)
        return builtin.returns if ok else None

    def check_builtin_rules(self, builtin: Builtin, node: ast.Call, bound: dict) -> bool:
        """The entry's own static rules (an empty box, a file outside the program's folder)."""
        if builtin.check is None:
            return True
        values = {p.name: self.constant_argument(bound[p]) if p in bound else p.default for p in builtin.params}
        context = CallContext(self.result.folder, self.result.allow_paths)
        ok = True
        for problem in builtin.check(values, context):
            param = next((p for p in bound if p.name == problem.param), None)
            self.error(problem.code, problem.message, bound[param].span if param else node.span, problem.hint)
            ok = False
        return ok

    def constant_argument(self, arg: ast.Node):
        return arg.value if isinstance(arg, (ast.String, ast.Bool)) else self.constant(arg)

    def bind_arguments(self, builtin: Builtin, node: ast.Call) -> dict | None:
        params = builtin.params
        bound: dict = {}
        ok = True
        if len(node.args) > len(params):
            self.error(
                "E302",
                f"`{builtin.name}` takes at most {len(params)} argument{'s' * (len(params) != 1)}, got {len(node.args)}",
                node.args[len(params)].span,
                f"`{builtin.signature()}`",
            )
            ok = False
        for param, arg in zip(params, node.args):
            bound[param] = arg
        by_name = {p.name: p for p in params}
        for kwarg in node.kwargs:
            named = by_name.get(kwarg.name)
            if named is None:
                self.error(
                    "E303",
                    f"`{builtin.name}` has no parameter `{kwarg.name}`",
                    kwarg.span,
                    self.suggest(kwarg.name, by_name) or f"`{builtin.signature()}`",
                )
                ok = False
            elif named in bound:
                self.error("E303", f"argument `{kwarg.name}` of `{builtin.name}` is given twice", kwarg.span)
                ok = False
            else:
                bound[named] = kwarg.value
        missing = [p.name for p in params if p.required and p not in bound]
        if missing and ok:
            self.error(
                "E302",
                f"`{builtin.name}` is missing argument{'s' * (len(missing) > 1)} {', '.join(f'`{m}`' for m in missing)}",
                node.span,
                f"`{builtin.signature()}`",
            )
            ok = False
        return bound if ok else None

    def check_range(self, builtin: Builtin, param: Param, arg: ast.Node) -> bool:
        value = self.constant(arg)
        if not isinstance(value, float):
            return True  # a measure's argument varies per frame: nothing to check statically
        if not param.admits(value):
            self.error(
                "E309",
                f"`{param.name}` of `{builtin.name}` is {value:g}{self.overridden(arg)}, outside {param.range_text()}",
                arg.span,
                param.doc,
            )
            return False
        return True

    def overridden(self, node: ast.Node) -> str:
        """Which overridden params a value comes from, for messages: ' (from cell=0)'."""
        names: set[str] = set()
        stack = [node] if self.overrides else []
        while stack:  # not ast.walk: it recurses, and an argument may be a long chain
            n = stack.pop()
            if isinstance(n, ast.Name) and n.id in self.overrides:
                names.add(n.id)
            stack.extend(ast.children(n))
        return f" (from {', '.join(f'{n}={self.overrides[n]:g}' for n in sorted(names))})" if names else ""

    # ---- time ------------------------------------------------------------------------------

    def time_unit(self, time: ast.Time) -> tuple[str, float | None]:
        """("frame" | "fraction" | "start" | "end", value); reports unit errors."""
        if time.kind in ("start", "end"):
            return time.kind, None
        if time.kind == "name":
            symbol = self.symbols.get(time.text)
            value = self.constants.get(time.text)
            if symbol is None:
                self.resolve(ast.Name(time.text, time.span), {})
                return "error", None
            symbol.used = True
            if not isinstance(value, float):
                self.error(
                    "E306",
                    f"`{time.text}` is {_a(symbol.type)}, not a time",
                    time.span,
                    "a time is `start`, `end`, a frame (integer) or a fraction (0.0 to 1.0)",
                )
                return "error", None
            literal = getattr(symbol.decl, "value", None)  # a param declaration: its literal
            is_frame = literal.is_integer if isinstance(literal, ast.Number) else float(value).is_integer()
            kind = "frame" if is_frame else "fraction"
        else:
            kind, value = time.kind, float(time.text)
            if not self.check_magnitude(value, "the time " + _number_words(time.text), time.span):
                return "error", None
        if kind == "fraction" and not 0.0 <= value <= 1.0:
            self.error(
                "E306",
                f"fraction {value:g} of the video is outside 0 to 1",
                time.span,
                "write frames as integers (`3`) and fractions as decimals (`0.5`)",
            )
            return "error", None
        if kind == "frame" and value < 0:
            self.error("E306", f"frame {value:g} is negative", time.span)
            return "error", None
        if kind == "frame" and not float(value).is_integer():  # only an override can make a frame fractional
            self.error(
                "E306",
                f"frame {value:g} is not a whole number",
                time.span,
                "a param declared as an integer is a frame; set it to an integer",
            )
            return "error", None
        return kind, value

    def check_time(self, time: ast.Time) -> None:
        self.time_unit(time)

    def check_window(self, window: ast.Window) -> None:
        (low_kind, low), (high_kind, high) = self.time_unit(window.low), self.time_unit(window.high)
        if "error" in (low_kind, high_kind):
            return
        if {low_kind, high_kind} == {"frame", "fraction"}:
            self.error(
                "E306",
                f"window mixes a frame and a fraction: [{window.low.text}, {window.high.text}]",
                window.span,
                "use frames (integers) for both ends, or fractions (decimals like 0.5) for both",
            )
            return
        reversed_ = (
            (low_kind == "end" and high_kind != "end")
            or (high_kind == "start" and low_kind != "start")
            or (low_kind == high_kind and low is not None and high is not None and low > high)
        )
        if reversed_:
            self.error(
                "E307",
                f"window [{window.low.text}, {window.high.text}] is empty: its start is after its end",
                window.span,
                "write the earlier time first: `[a, b]` with a <= b",
            )
