"""Canonical layout for .rule programs: `ruledsl fmt`.

One statement per line, single spaces, the fewest parentheses that keep the tree,
lower-case colours, numbers as written. Comments survive: a comment after a
statement on its last line stays there; any other comment keeps its own line
before the statement that follows it (comments inside a multi-line statement move
above it). Runs of blank lines become one blank line.

Chains (`a and b and ...`, `a + b - ...`) are printed along their left spine in a loop, so
their length costs no stack; anything else recurses over the nesting the parser bounds.
"""

from __future__ import annotations

import bisect
import functools
import re

from lark import Lark

from ruledsl import ast
from ruledsl.parser import ParseError, _syntax_diagnostic, grammar_text, to_ast
from ruledsl.source import Source

# Binding strength: a child weaker than its slot requires gets parentheses.
PREFIX, IMPLIES, OR, AND, UNTIL, NOT, COMPARE, ADD, MUL, NEG, ATOM = range(11)


def _level(node: ast.Node) -> int:
    if isinstance(node, (ast.Temporal, ast.During, ast.Quantified, ast.CountMembers, ast.CountEvents)):
        return PREFIX
    if isinstance(node, ast.Binary):
        return ADD if node.op in "+-|" else MUL
    return {
        ast.Implies: IMPLIES,
        ast.Or: OR,
        ast.And: AND,
        ast.Until: UNTIL,
        ast.Not: NOT,
        ast.Compare: COMPARE,
        ast.Neg: NEG,
    }.get(type(node), ATOM)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def _time(time: ast.Time) -> str:
    return time.text


# After `at TIME` the parser could also be ending an `object x = ... at TIME` snapshot (LALR
# shares that state), so there the lexer reads a statement keyword as the keyword even where a
# name is meant: `at end goal >= 1` breaks, `at end (goal >= 1)` keeps the name.
_STARTS_WITH_STATEMENT_KEYWORD = re.compile(r"(task|param|object|region|image|objects|goal|process)(?![A-Za-z0-9_])")


def _slots(node: ast.Chain) -> tuple[int, int]:
    """Binding strength required of a chain node's left and right operands."""
    if isinstance(node, ast.Binary):
        level = ADD if node.op in "+-|" else MUL
        return level, level + 1
    return (OR, AND) if isinstance(node, ast.Or) else (AND, UNTIL)


def _operator(node: ast.Chain) -> str:
    return node.op if isinstance(node, ast.Binary) else ("or" if isinstance(node, ast.Or) else "and")


def _chain(node: ast.Chain) -> str:
    """A chain node's text, built along its left spine (bottom up) without recursing down it."""
    spine = ast.left_spine(node)
    parts = [expr(spine[-1].left, _slots(spine[-1])[0])]
    opened = 0  # parentheses opened at the very start, for left operands that bind too loosely
    previous = None
    for link in reversed(spine):
        left_slot, right_slot = _slots(link)
        if previous is not None and _level(previous) < left_slot:
            opened += 1
            parts.append(")")
        parts.append(f" {_operator(link)} {expr(link.right, right_slot)}")
        previous = link
    return "(" * opened + "".join(parts)


def expr(node: ast.Node, slot: int = PREFIX) -> str:
    """Source text of an expression placed where binding strength `slot` is required."""
    text = _expr(node)
    return f"({text})" if _level(node) < slot else text


def _expr(node: ast.Node) -> str:
    if isinstance(node, ast.Number):
        return node.text
    if isinstance(node, ast.Color):
        return node.text
    if isinstance(node, ast.String):
        return _quote(node.value)
    if isinstance(node, ast.Bool):
        return "true" if node.value else "false"
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Ask):
        return f"ask {_quote(node.question)}"
    if isinstance(node, ast.Call):
        args = [expr(a) for a in node.args] + [f"{k.name}={expr(k.value)}" for k in node.kwargs]
        return f"{node.func}({', '.join(args)})"
    if isinstance(node, ast.Neg):
        return f"-{expr(node.operand, NEG)}"
    if isinstance(node, ast.CHAINS):
        return _chain(node)
    if isinstance(node, ast.Compare):
        return f"{expr(node.left, ADD)} {node.op} {expr(node.right, ADD)}"
    if isinstance(node, ast.Not):
        return f"not {expr(node.operand, NOT)}"
    if isinstance(node, ast.Implies):
        return f"{expr(node.left, OR)} implies {expr(node.right, PREFIX)}"
    if isinstance(node, ast.Until):
        return f"{expr(node.left, NOT)} until {expr(node.right, NOT)}"
    if isinstance(node, ast.Temporal):
        if node.op != "at":
            return f"{node.op} {expr(node.body)}"
        body = expr(node.body)
        if _STARTS_WITH_STATEMENT_KEYWORD.match(body):
            body = f"({body})"
        assert node.time is not None  # `at` always has its time
        return f"at {_time(node.time)} {body}"
    if isinstance(node, ast.During):
        return f"during [{_time(node.window.low)}, {_time(node.window.high)}] {expr(node.body)}"
    if isinstance(node, ast.Quantified):
        names = ", ".join([node.var, *(o.id for o in node.others)])
        return f"{node.quantifier} {names} in {node.collection}{_where(node.where)}: {expr(node.body)}"
    if isinstance(node, ast.CountMembers):
        return (
            f"{_bound(node.bound)} {expr(node.count, ADD)} of {node.var} in {node.collection}"
            f"{_where(node.where)}: {expr(node.body)}"
        )
    if isinstance(node, ast.CountEvents):
        return f"{_bound(node.bound)} {expr(node.count, ADD)} times {expr(node.body)}"
    raise TypeError(f"formatter has no case for {type(node).__name__}")


def _bound(bound: str) -> str:
    return "exactly" if bound == "exactly" else f"at {bound}"


def _where(where: ast.Node | None) -> str:
    return "" if where is None else f" where {expr(where, IMPLIES)}"


def statement(node: ast.Statement) -> str:
    if isinstance(node, ast.TaskDecl):
        return f"task {node.name} {_quote(node.prompt)}"
    if isinstance(node, ast.ParamDecl):
        return f"param {node.name} = {expr(node.value)}"
    if isinstance(node, ast.EntityDecl):
        # The value stops before `at`: a prefix formula there would swallow the snapshot.
        text = f"{node.kind} {node.name} = {expr(node.value, IMPLIES if node.snapshot else PREFIX)}"
        return text + (f" at {_time(node.snapshot)}" if node.snapshot else "")
    if isinstance(node, ast.CollectionDecl):
        return f"objects {node.name} = [{', '.join(m.id for m in node.members)}]"
    if isinstance(node, ast.ComponentsDecl):
        text = f"objects {node.name} = {expr(node.value, IMPLIES if node.snapshot else PREFIX)}"
        return text + (f" at {_time(node.snapshot)}" if node.snapshot else "")
    if isinstance(node, ast.DefDecl):
        params = ", ".join(
            p.id + (f": {kind}" if kind is not None else "") for p, kind in zip(node.params, node.param_types)
        )
        return f"def {node.name}" + (f"({params})" if node.params else "") + f" = {expr(node.body)}"
    if isinstance(node, ast.RuleDecl):
        text = f"{node.role} {node.name}: {expr(node.body)}"
        return text + (f" weight {expr(node.weight, ADD)}" if node.weight is not None else "")
    raise TypeError(f"formatter has no case for {type(node).__name__}")


@functools.cache
def _lark_with_comments() -> tuple[Lark, list]:
    comments: list = []
    parser = Lark(
        grammar_text(),
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=True,
        lexer_callbacks={"COMMENT": comments.append},
    )
    return parser, comments


def format_source(source: Source) -> str:
    """Canonical text of a program; raises ParseError on a syntax error."""
    from lark.exceptions import UnexpectedInput

    parser, comments = _lark_with_comments()
    comments.clear()
    try:
        tree = parser.parse(source.text)
    except UnexpectedInput as error:
        raise ParseError(_syntax_diagnostic(error, source)) from None
    program = to_ast(tree, source)
    found = [(c.line, c.start_pos, str(c).rstrip()) for c in comments]
    comments.clear()
    return layout(program, found)


def layout(program: ast.Program, comments: list[tuple[int, int, str]]) -> str:
    # Items are (first line, last line, text); trailing comments are glued to their statement.
    trailing: dict[int, str] = {}
    items: list[tuple[float, int, int, str]] = []  # (sort line, first line, last line, text)
    statements = list(program.statements)  # in source order, not overlapping
    starts = [s.span.start for s in statements]
    ending_on: dict[int, list[ast.Statement]] = {}
    for s in statements:
        ending_on.setdefault(s.span.end_line, []).append(s)
    for line, offset, text in comments:
        owner = next((s for s in ending_on.get(line, ()) if s.span.end <= offset), None)
        if owner is not None and id(owner) not in trailing:
            trailing[id(owner)] = text
            continue
        index = bisect.bisect_right(starts, offset) - 1
        inside = statements[index] if index >= 0 and offset < statements[index].span.end else None
        if inside is not None:  # a comment within a multi-line statement: move it just above
            items.append((inside.span.line, inside.span.line, inside.span.line, text))
        else:
            items.append((line, line, line, text))
    for s in statements:
        text = statement(s)
        if id(s) in trailing:
            text += "  " + trailing[id(s)]
        # Sort after comments moved onto the same first line (they go above it).
        items.append((s.span.line + 0.5, s.span.line, s.span.end_line, text))
    items.sort(key=lambda item: item[0])
    out: list[str] = []
    previous_last = None
    for _, first, last, text in items:
        if previous_last is not None and first > previous_last + 1:
            out.append("")
        out.append(text)
        previous_last = max(last, previous_last or 0)
    return "\n".join(out) + "\n" if out else ""
