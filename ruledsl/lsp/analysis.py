"""What the language server knows about one document: its diagnostics and a symbol index.

Diagnostics are exactly those of `ruledsl check` (`ruledsl.checker.check`): same codes, messages, hints
and spans. The index lists every name in the document (declarations, uses, built-in calls, keyword
arguments, named colours) with what it refers to; hover, go to definition, references, highlights,
document symbols and completion read it.

The index is built from the syntax tree, so a syntax error would leave nothing to navigate. Instead
the statement around the error is blanked (every character but newlines becomes a space, so all
offsets stay valid) and the text is parsed again, up to a few times: the statements that are fine
stay navigable while one is being typed.

Pure and free of pygls: it runs in the check worker process (`ruledsl.lsp.worker`) and in tests.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import NamedTuple

from ruledsl import ast
from ruledsl.checker import check
from ruledsl.diagnostics import Diagnostic, sort_key
from ruledsl.parser import ParseError, parse
from ruledsl.signatures import BUILTINS, NAMED_COLORS
from ruledsl.source import MAX_SOURCE_BYTES, Source, Span

STATEMENT_KEYWORDS = ("task", "param", "object", "region", "image", "objects", "goal", "process")
# Where a statement starts: a line whose first word is a statement keyword followed by a name
# (`goal reach`, `region goal`), or by the `=` or `:` of a declaration whose name is missing. A formula
# continued on the next line rarely looks like that, and a wrong guess only costs navigation inside
# one broken statement. The match ends at the keyword.
STATEMENT_START = re.compile(r"^[ \t]*(?=(?:" + "|".join(STATEMENT_KEYWORDS) + r")[ \t]+[A-Za-z_=:])", re.MULTILINE)
# Recovery costs up to two parses per broken statement (a parse of 1 MB takes seconds), so it is
# bounded: a few broken statements, in documents up to a size far above any real program.
MAX_RECOVERIES = 5
MAX_RECOVERY_CHARS = 200_000

# Kinds whose names are not values: the task header and rules live apart from entities and params
# (a rule and an object may share a name). Any other declaration's name can be used in formulas.
_NOT_VALUES = {"task", "goal", "process"}
_BLANK = re.compile(r"[^\n]")


class Definition(NamedTuple):
    """A declared name. Offsets are characters into the document; [start, end) is the name."""

    name: str
    kind: str  # "task" "param" "object" "region" "image" "objects" "goal" "process" "variable", ...
    start: int
    end: int
    decl_start: int  # the whole declaration; for a quantified variable, the quantified formula
    decl_end: int
    local: bool = False  # visible only inside [decl_start, decl_end)
    over: str | None = None  # a quantified variable: the collection it ranges over


class Occurrence(NamedTuple):
    """One name in the text and what it means there (tuples: a 1 MB document has ~80k of them,
    and they cross from the worker process to the server)."""

    start: int
    end: int
    name: str
    role: str  # "definition" | "reference" | "builtin" | "keyword_argument" | "colour"
    target: int = -1  # definitions and resolved references: the index into SymbolIndex.definitions
    builtin: str | None = None  # "builtin": the function; "keyword_argument": the function called


@dataclass
class SymbolIndex:
    definitions: list[Definition] = field(default_factory=list)  # in source order, locals included
    occurrences: list[Occurrence] = field(default_factory=list)  # sorted by start offset
    starts: list[int] = field(default_factory=list)  # occurrence start offsets, for bisection

    def at(self, offset: int) -> Occurrence | None:
        """The name under a cursor at `offset` (a cursor just after a name still touches it)."""
        i = bisect.bisect_right(self.starts, offset) - 1
        if i >= 0 and offset <= self.occurrences[i].end:
            return self.occurrences[i]
        return None

    def target(self, occurrence: Occurrence) -> Definition | None:
        return self.definitions[occurrence.target] if occurrence.target >= 0 else None

    def references(self, target: int, include_declaration: bool = True) -> list[Occurrence]:
        """Occurrences of definition number `target`, in source order."""
        return [o for o in self.occurrences if o.target == target and (include_declaration or o.role != "definition")]

    def values(self) -> dict[str, Definition]:
        """Names usable in formulas: the first declaration of each, as the checker resolves them."""
        out: dict[str, Definition] = {}
        for d in self.definitions:
            if not d.local and d.kind not in _NOT_VALUES:
                out.setdefault(d.name, d)
        return out


@dataclass
class Analysis:
    diagnostics: list[Diagnostic]
    index: SymbolIndex
    blanked: list[tuple[int, int]] = field(default_factory=list)  # [start, end) left out after syntax errors
    failure: str | None = None  # the document could not be checked at all: why, in one line
    omitted: int = 0  # diagnostics left out by `max_diagnostics`


def analyze(text: str, name: str = "<string>", max_diagnostics: int | None = None) -> Analysis:
    """Check a document the way `ruledsl check` does and index its names; never raises.

    With `max_diagnostics`, only the first that many diagnostics in source order are kept (an editor
    has no use for 80,000 squiggles, and each one crosses the worker's pipe and the editor's).
    """
    analysis = _analyze(text, name)
    if max_diagnostics is not None and len(analysis.diagnostics) > max_diagnostics:
        ordered = sorted(analysis.diagnostics, key=sort_key)
        analysis.diagnostics, analysis.omitted = ordered[:max_diagnostics], len(ordered) - max_diagnostics
    return analysis


def _analyze(text: str, name: str) -> Analysis:
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_SOURCE_BYTES:
        return Analysis(
            [],
            SymbolIndex(),
            failure=f"{size} bytes is over the {MAX_SOURCE_BYTES}-byte limit for a rule file; not checked",
        )
    # `check` reads files without their byte-order mark; a space keeps the editor's offsets.
    source = Source(" " + text[1:] if text.startswith("\ufeff") else text, name)
    try:
        checked = check(source)
    except Exception as error:  # a limit or bug of the checker (e.g. RecursionError): say so, keep serving
        return Analysis(
            [], SymbolIndex(), failure=f"the checker failed on this document: {type(error).__name__}: {error}"
        )
    if checked.program is not None:
        return Analysis(checked.diagnostics, build_index(checked.program))
    program, blanked = _parse_around_errors(source, checked.diagnostics[0])
    index = build_index(program) if program is not None else SymbolIndex()
    return Analysis(checked.diagnostics, index, blanked)


# ---- recovery from syntax errors ------------------------------------------------------------------


def statement_starts(text: str) -> list[int]:
    """Offsets of the keywords that start statements, by the STATEMENT_START guess."""
    return [m.end() for m in STATEMENT_START.finditer(text)]


def _parses(text: str) -> bool:
    try:
        parse(Source(text))
    except Exception:  # ParseError, or a limit of the parser: either way not a clean prefix
        return False
    return True


def _broken_statement(text: str, offset: int) -> tuple[int, int]:
    """[start, end) of the statement to blank for a syntax error at `offset`.

    Usually the statement the error is in. But when the statement before it never ended (`inside(a,`
    and a new line), the parser reads on into the next statement and fails there; that case shows as
    a prefix up to the error's statement that does not parse on its own, and the earlier one is blanked.
    """
    starts = statement_starts(text)
    i = bisect.bisect_right(starts, offset) - 1
    if i > 0 and not _parses(text[: starts[i]]):
        i -= 1
    start = starts[i] if i >= 0 else 0
    end = starts[i + 1] if i + 1 < len(starts) else len(text)
    return start, end


def _parse_around_errors(source: Source, error: Diagnostic) -> tuple[ast.Program | None, list[tuple[int, int]]]:
    text, blanked = source.text, list[tuple[int, int]]()
    if len(text) > MAX_RECOVERY_CHARS:
        return None, blanked
    for _ in range(MAX_RECOVERIES):
        start, end = _broken_statement(text, error.span.start)
        if not text[start:end].strip():
            break  # nothing left to blank: give up rather than loop
        text = text[:start] + _BLANK.sub(" ", text[start:end]) + text[end:]
        blanked.append((start, end))
        try:
            return parse(Source(text, source.name)), blanked
        except ParseError as again:
            error = again.diagnostic
        except Exception:  # e.g. RecursionError on a deep formula: no index, diagnostics still stand
            break
    return None, blanked


# ---- the index --------------------------------------------------------------------------------------


def declared_kind(statement: ast.Node) -> str:
    """The kind of name a statement declares. A declaration added to the language later gets its class
    name (`FormulaDecl` -> "formula") and, not being in _NOT_VALUES, can be used in formulas at once."""
    if isinstance(statement, ast.EntityDecl):
        return statement.kind
    if isinstance(statement, ast.RuleDecl):
        return statement.role
    if isinstance(statement, (ast.CollectionDecl, ast.ComponentsDecl)):
        return "objects"
    return type(statement).__name__.removesuffix("Decl").lower()


def build_index(program: ast.Program) -> SymbolIndex:
    """Every name in the program with its meaning. Iterative, so deep formulas cannot overflow the stack.

    Scoping follows the checker: a quantified variable is visible in its body and hides top-level names;
    otherwise a name means the first top-level declaration of it (even one further down, which the
    checker reports as E205 but is still where the name leads). A node that binds names for its body
    (any node with a `params` tuple of ast.Name, as a named formula `def moving(o) = ...` would be)
    is handled generically.
    """
    definitions: list[Definition] = []
    occurrences: list[Occurrence] = []

    def define(name: str, kind: str, name_span: Span, decl: Span, local: bool = False, over=None) -> int:
        definitions.append(Definition(name, kind, name_span.start, name_span.end, decl.start, decl.end, local, over))
        occurrences.append(Occurrence(name_span.start, name_span.end, name, "definition", len(definitions) - 1))
        return len(definitions) - 1

    values: dict[str, int] = {}
    for statement in program.statements:
        name_span = getattr(statement, "name_span", None)
        if name_span is not None:
            kind = declared_kind(statement)
            number = define(statement.name, kind, name_span, statement.span)
            if kind not in _NOT_VALUES:
                values.setdefault(statement.name, number)

    def resolve(name: str, span: Span, scope: dict[str, int]) -> None:
        target = scope.get(name, values.get(name, -1))
        role = "colour" if target < 0 and name in NAMED_COLORS else "reference"
        occurrences.append(Occurrence(span.start, span.end, name, role, target))

    stack: list[tuple[ast.Node, dict[str, int]]] = [(s, {}) for s in reversed(program.statements)]
    while stack:
        node, scope = stack.pop()
        children: list[ast.Node] = ast.children(node)
        if isinstance(node, ast.Name):
            resolve(node.id, node.span, scope)
        elif isinstance(node, ast.Time) and node.kind == "name":
            resolve(node.text, node.span, scope)
        elif isinstance(node, ast.Call):
            if node.func not in BUILTINS:  # the checker tries built-ins first
                resolve(node.func, node.func_span, scope)  # a named formula's call, or an unknown function
            else:
                span = node.func_span
                occurrences.append(Occurrence(span.start, span.end, node.func, "builtin", builtin=node.func))
                for kwarg in node.kwargs:  # `name=value` starts with the name
                    start = kwarg.span.start
                    occurrences.append(
                        Occurrence(start, start + len(kwarg.name), kwarg.name, "keyword_argument", builtin=node.func)
                    )
            children = [*node.args, *(k.value for k in node.kwargs)]
        elif isinstance(node, ast.Quantified):
            resolve(node.collection, node.collection_span, scope)
            variable = define(node.var, "variable", node.var_span, node.span, local=True, over=node.collection)
            scope = {**scope, node.var: variable}
        params = getattr(node, "params", None)
        if isinstance(params, tuple) and params and all(isinstance(p, ast.Name) for p in params):
            bound = getattr(node, "span")  # noqa: B009 (Node itself declares no span)
            scope = {**scope, **{p.id: define(p.id, "variable", p.span, bound, local=True) for p in params}}
            children = [c for c in children if not any(c is p for p in params)]
        stack.extend((child, scope) for child in reversed(children))
    occurrences.sort(key=lambda o: o.start)
    return SymbolIndex(definitions, occurrences, [o.start for o in occurrences])
