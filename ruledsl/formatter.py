"""Canonical layout for .rule programs: `ruledsl fmt`.

One statement per line, single spaces, the fewest parentheses that keep the tree,
lower-case colours, numbers as written. Comments survive: a comment after a
statement on its last line stays there; any other comment keeps its own line
before the statement that follows it (comments inside a multi-line statement move
above it). Runs of blank lines become one blank line.
"""

from __future__ import annotations

import functools

from lark import Lark

from ruledsl import ast
from ruledsl.parser import ParseError, _syntax_diagnostic, _ToAst, grammar_text
from ruledsl.source import Source

# Binding strength: a child weaker than its slot requires gets parentheses.
PREFIX, IMPLIES, OR, AND, UNTIL, NOT, COMPARE, ADD, MUL, NEG, ATOM = range(11)


def _level(node: ast.Node) -> int:
    if isinstance(node, (ast.Temporal, ast.During, ast.Quantified)):
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
    if isinstance(node, ast.Binary):
        level = ADD if node.op in "+-|" else MUL
        return f"{expr(node.left, level)} {node.op} {expr(node.right, level + 1)}"
    if isinstance(node, ast.Compare):
        return f"{expr(node.left, ADD)} {node.op} {expr(node.right, ADD)}"
    if isinstance(node, ast.Not):
        return f"not {expr(node.operand, NOT)}"
    if isinstance(node, ast.Implies):
        return f"{expr(node.left, OR)} implies {expr(node.right, PREFIX)}"
    if isinstance(node, ast.Or):
        return f"{expr(node.left, OR)} or {expr(node.right, AND)}"
    if isinstance(node, ast.And):
        return f"{expr(node.left, AND)} and {expr(node.right, UNTIL)}"
    if isinstance(node, ast.Until):
        return f"{expr(node.left, NOT)} until {expr(node.right, NOT)}"
    if isinstance(node, ast.Temporal):
        head = f"at {_time(node.time)}" if node.op == "at" else node.op
        return f"{head} {expr(node.body)}"
    if isinstance(node, ast.During):
        return f"during [{_time(node.window.low)}, {_time(node.window.high)}] {expr(node.body)}"
    if isinstance(node, ast.Quantified):
        return f"{node.quantifier} {node.var} in {node.collection}: {expr(node.body)}"
    raise TypeError(f"formatter has no case for {type(node).__name__}")


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
    program: ast.Program = _ToAst(source).transform(tree)
    found = [(c.line, c.start_pos, str(c).rstrip()) for c in comments]
    comments.clear()
    return layout(program, found)


def layout(program: ast.Program, comments: list[tuple[int, int, str]]) -> str:
    # Items are (first line, last line, text); trailing comments are glued to their statement.
    trailing: dict[int, str] = {}
    items: list[tuple[int, int, int, str]] = []  # (sort line, first line, last line, text)
    statements = list(program.statements)
    for line, offset, text in comments:
        owner = next((s for s in statements if s.span.end_line == line and s.span.end <= offset), None)
        if owner is not None and id(owner) not in trailing:
            trailing[id(owner)] = text
            continue
        inside = next((s for s in statements if s.span.start <= offset < s.span.end), None)
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
