"""Parse .rule text into the AST (`ruledsl.ast`), or a syntax diagnostic in user words.

The grammar lives in grammars/rule.lark (package `ruledsl.grammars`); this module
turns lark's tree into immutable nodes with spans, and lark's errors into E1xx
diagnostics that say what was expected ("a rule role `goal` or `process`"), not
terminal names.

Deep input never recurses: lark's LALR parser keeps its own stack, the tree becomes the
AST in one loop over the tree in post-order (`_ToAst.transform`), and a program nested deeper than
`ast.MAX_NESTING` levels is refused here (E104) so that every later pass (checker,
formatter, compiler) can recurse over genuine nesting. Chains like `a and b and ...`
do not count as nesting, however long: see `ast.nesting_depth`.
"""

from __future__ import annotations

import functools
from importlib import resources

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from ruledsl import ast
from ruledsl.diagnostics import Diagnostic
from ruledsl.source import Source, Span


@functools.cache
def grammar_text() -> str:
    return resources.files("ruledsl.grammars").joinpath("rule.lark").read_text(encoding="utf-8")


@functools.cache
def _lark() -> Lark:
    # cache=True stores the LALR tables in the temp dir (keyed by grammar hash): ~60 ms saved per process.
    return Lark(
        grammar_text(), parser="lalr", lexer="contextual", propagate_positions=True, maybe_placeholders=True, cache=True
    )


class ParseError(Exception):
    def __init__(self, diagnostic: Diagnostic):
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def parse(source: Source) -> ast.Program:
    """Parse a whole program; raises ParseError with one E1xx diagnostic."""
    try:
        tree = _lark().parse(source.text)
    except UnexpectedInput as error:
        raise ParseError(_syntax_diagnostic(error, source)) from None
    return to_ast(tree, source)


def to_ast(tree: Tree, source: Source) -> ast.Program:
    """lark's tree -> the AST; raises ParseError (E104) for nesting deeper than ast.MAX_NESTING."""
    program: ast.Program = _ToAst(source).transform(tree)
    for statement in program.statements:
        for part in ast.children(statement):
            depth, culprit = ast.nesting_depth(part)
            if culprit is not None:
                raise ParseError(
                    Diagnostic(
                        "E104",
                        f"expression nested deeper than {ast.MAX_NESTING} levels",
                        _start_span(culprit.span, source),
                        "split it: declare parts as regions or objects, or write rules separately; "
                        "long chains like `a and b and c` are fine, deep parentheses and "
                        "`not not ...` are not",
                    )
                )
    return program


def _start_span(span: Span, source: Source) -> Span:
    """The first character of `span`: the caret points where the too-deep part begins."""
    return source.span_at(span.start, min(span.end, span.start + 1))


# ---- lark tree -> AST ------------------------------------------------------------------------


def _token_span(token: Token) -> Span:
    # lark types positions as optional; the parser is built with positions kept, so they are set.
    fields = (token.start_pos, token.end_pos, token.line, token.column, token.end_line, token.end_column)
    return Span(*(0 if value is None else value for value in fields))


def _meta_span(meta) -> Span:
    return Span(meta.start_pos, meta.end_pos, meta.line, meta.column, meta.end_line, meta.end_column)


def _unquote(token: Token) -> str:
    body = token[1:-1]
    out, i = [], 0
    escapes = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            out.append(escapes.get(body[i + 1], body[i + 1]))
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def _time(token: Token) -> ast.Time:
    if token.type in ("START", "END"):
        kind = token.type.lower()
    elif token.type == "NUMBER":
        kind = "fraction" if "." in token else "frame"
    else:
        kind = "name"
    return ast.Time(kind, str(token), _token_span(token))


class _ToAst:
    """One method per grammar rule, called as `method(meta, children)` with the children built.

    Like lark's Transformer_NonRecursive, without its per-call v_args wrappers (a third of the
    time on a large file)."""

    def __init__(self, source: Source):
        self.source = source

    def transform(self, tree: Tree):
        order: list = []  # reversed post-order: a node before its children, children right to left
        pending = [tree]
        while pending:
            node = pending.pop()
            order.append(node)
            if isinstance(node, Tree):
                pending.extend(node.children)
        built: list = []
        for node in reversed(order):
            if isinstance(node, Tree):
                count = len(node.children)
                children = built[len(built) - count :] if count else []
                del built[len(built) - count :]
                built.append(getattr(self, node.data)(node.meta, children))
            else:
                built.append(node)  # a token, or None for an absent optional part
        (result,) = built
        return result

    def start(self, meta, statements):
        span = _meta_span(meta) if not meta.empty else self.source.span_at(0, 0)
        return ast.Program(tuple(statements), span)

    # statements
    def task_decl(self, meta, items):
        name, prompt = items
        return ast.TaskDecl(str(name), _unquote(prompt), _meta_span(meta), _token_span(name))

    def param_decl(self, meta, items):
        name, value = items
        return ast.ParamDecl(str(name), value, _meta_span(meta), _token_span(name))

    def entity_decl(self, meta, items):
        kind, name, value, *rest = items
        snapshot = rest[0] if rest else None
        return ast.EntityDecl(str(kind), str(name), value, snapshot, _meta_span(meta), _token_span(name))

    def snapshot(self, meta, items):
        return items[0]

    def time(self, meta, items):
        return _time(items[0])

    def window(self, meta, items):
        return ast.Window(items[0], items[1], _meta_span(meta))

    def collection_decl(self, meta, items):
        name, *members = items
        names = tuple(ast.Name(str(m), _token_span(m)) for m in members if m is not None)
        return ast.CollectionDecl(str(name), names, _meta_span(meta), _token_span(name))

    def components_decl(self, meta, items):
        name, value, *rest = items
        snapshot = rest[0] if rest else None
        return ast.ComponentsDecl(str(name), value, snapshot, _meta_span(meta), _token_span(name))

    def rule_decl(self, meta, items):
        role, name, body, *rest = items
        weight = rest[0] if rest else None
        return ast.RuleDecl(str(role), str(name), body, weight, _meta_span(meta), _token_span(name))

    def weight(self, meta, items):
        return items[0]

    # formulas
    def always(self, meta, items):
        return ast.Temporal("always", items[0], None, _meta_span(meta))

    def eventually(self, meta, items):
        return ast.Temporal("eventually", items[0], None, _meta_span(meta))

    def next(self, meta, items):
        return ast.Temporal("next", items[0], None, _meta_span(meta))

    def at(self, meta, items):
        time, body = items
        return ast.Temporal("at", body, time, _meta_span(meta))

    def during(self, meta, items):
        window, body = items
        return ast.During(window, body, _meta_span(meta))

    def quantified(self, meta, items):
        quantifier, var, *others, collection, where, body = items
        return ast.Quantified(
            str(quantifier),
            str(var),
            str(collection),
            body,
            _meta_span(meta),
            _token_span(var),
            _token_span(collection),
            tuple(ast.Name(str(o), _token_span(o)) for o in others),
            where,
        )

    def where(self, meta, items):
        return items[0]

    def counted_members(self, meta, items):
        bound, count, var, collection, where, body = items
        return ast.CountMembers(
            str(bound),
            count,
            str(var),
            str(collection),
            where,
            body,
            _meta_span(meta),
            _token_span(var),
            _token_span(collection),
        )

    def counted_events(self, meta, items):
        bound, count, body = items
        return ast.CountEvents(str(bound), count, body, _meta_span(meta))

    def def_decl(self, meta, items):
        name, params, body = items
        params = params or ()
        names = tuple(ast.Name(str(p), _token_span(p)) for p, _ in params)
        types = tuple(str(t) if t is not None else None for _, t in params)
        return ast.DefDecl(str(name), names, types, body, _meta_span(meta), _token_span(name))

    def def_params(self, meta, items):
        return tuple(item for item in items if item is not None)

    def def_param(self, meta, items):
        return (items[0], items[1])

    def implies(self, meta, items):
        return ast.Implies(items[0], items[1], _meta_span(meta))

    def or_(self, meta, items):
        return ast.Or(items[0], items[1], _meta_span(meta))

    def and_(self, meta, items):
        return ast.And(items[0], items[1], _meta_span(meta))

    def until(self, meta, items):
        return ast.Until(items[0], items[1], _meta_span(meta))

    def not_(self, meta, items):
        return ast.Not(items[0], _meta_span(meta))

    def compare(self, meta, items):
        left, op, right = items
        return ast.Compare(str(op), left, right, _meta_span(meta))

    def binary(self, meta, items):
        left, op, right = items
        return ast.Binary(str(op), left, right, _meta_span(meta))

    def neg(self, meta, items):
        return ast.Neg(items[1], _meta_span(meta))

    # atoms
    def number(self, meta, items):
        return ast.Number(str(items[0]), _token_span(items[0]))

    def color(self, meta, items):
        return ast.Color(str(items[0]).lower(), _token_span(items[0]))

    def string(self, meta, items):
        return ast.String(_unquote(items[0]), _token_span(items[0]))

    def boolean(self, meta, items):
        return ast.Bool(items[0] == "true", _token_span(items[0]))

    def name(self, meta, items):
        return ast.Name(str(items[0]), _token_span(items[0]))

    def ask(self, meta, items):
        return ast.Ask(_unquote(items[0]), _meta_span(meta))

    def call(self, meta, items):
        func, *arguments = items
        if str(func) in _PREFIX_WORDS:
            raise ParseError(_prefix_after_operator(str(func), _token_span(func), self.source))
        args, kwargs = [], []
        for argument in arguments:
            if argument is None:  # `f()` placeholder
                continue
            (kwargs if isinstance(argument, ast.KeywordArg) else args).append(argument)
        return ast.Call(str(func), tuple(args), tuple(kwargs), _meta_span(meta), _token_span(func))

    def keyword_argument(self, meta, items):
        name, value = items
        return ast.KeywordArg(str(name), value, _meta_span(meta))


# ---- syntax errors in words a user knows -------------------------------------------------------

_STATEMENT_KEYWORDS = {
    "TASK": "task",
    "DEF": "def",
    "PARAM": "param",
    "OBJECT": "object",
    "REGION": "region",
    "IMAGE": "image",
    "OBJECTS": "objects",
    "GOAL": "goal",
    "PROCESS": "process",
}
_EXPRESSION_STARTS = {
    "NAME",
    "NUMBER",
    "LPAR",
    "COLOR",
    "STRING",
    "NOT",
    "MINUS",
    "ASK",
    "TRUE",
    "FALSE",
    "ALWAYS",
    "EVENTUALLY",
    "NEXT",
    "AT",
    "DURING",
    "FORALL",
    "EXISTS",
    "EXACTLY",
}
_OPERATORS = {"AND", "OR", "IMPLIES", "UNTIL", "CMP", "ADD_OP", "MINUS", "MUL_OP"}
_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "COLOR": "a colour like `#ff0000`",
    "STRING": "a quoted string",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "LSQB": "`[`",
    "RSQB": "`]`",
    "COMMA": "`,`",
    "COLON": "`:`",
    "EQUAL": "`=`",
    "IN": "`in`",
    "WEIGHT": "`weight`",
    "START": "`start`",
    "END": "`end`",
    "AT": "`at`",
    "CMP": "a comparison (`<=`, `>=`, `<`, `>`)",
    "$END": "the end of the file",
}


def describe_expected(expected: set[str]) -> str:
    expected = set(expected)
    parts: list[str] = []
    roles = {"GOAL", "PROCESS"}
    statements = expected & set(_STATEMENT_KEYWORDS)
    if statements and statements <= roles:
        parts.append("a rule role `goal` or `process`")
    elif len(statements) >= 3:
        parts.append(
            "a statement (`task`, `param`, `object`, `region`, `image`, `objects`, `def`, `goal` or `process`)"
        )
    elif statements:
        parts.extend(f"`{_STATEMENT_KEYWORDS[s]}`" for s in sorted(statements))
    expected -= set(_STATEMENT_KEYWORDS)
    if {"NAME", "NUMBER", "LPAR"} <= expected:
        parts.append("an expression")
        expected -= _EXPRESSION_STARTS
    if len(expected & _OPERATORS) >= 3:
        parts.append("an operator (`and`, `or`, `implies`, `until`, a comparison, arithmetic)")
        expected -= _OPERATORS
    for name in sorted(expected):
        parts.append(_WORDS.get(name, f"`{name.lower()}`" if name.isalpha() else name))
    if not parts:
        return "something else"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


_PREFIX_WORDS = {"always", "eventually", "next", "during", "forall", "exists", "at", "exactly"}


def _prefix_after_operator(word: str, span: Span, source: Source) -> Diagnostic:
    """`a and eventually (b)`: after an operator the prefix reads as a call; say how to parenthesise."""
    operator = _previous_word(source.text, span.start)
    before = (
        f"a {operator} " if operator in ("and", "or", "implies", "until") else ("not " if operator == "not" else "")
    )
    return Diagnostic(
        "E101",
        f"`{word}` needs parentheses here: it takes everything to its right",
        span,
        f"a prefix cannot follow `{operator or 'this operator'}` directly: write `{before}({word} ...)`",
    )


def _previous_word(text: str, offset: int) -> str:
    end = len(text[:offset].rstrip())
    start = end
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):  # indices: a long word stays linear
        start -= 1
    return text[start:end]


def _token_words(token: Token) -> str:
    if token.type == "$END":
        return "end of file"
    if token.type == "NAME":
        return f"name `{token}`"
    if token.type == "NUMBER":
        return f"number `{token}`"
    return f"`{token}`"


def _syntax_diagnostic(error: UnexpectedInput, source: Source) -> Diagnostic:
    if isinstance(error, UnexpectedCharacters):
        start = error.pos_in_stream or 0
        char = source.text[start] if start < len(source.text) else ""
        hint = None
        if source.text.startswith("==", start) or (char == "=" and source.text[start - 1 : start] in "<>"):
            hint = "compare with `<=`, `>=`, `<` or `>`; for equality use `abs(a - b) <= tolerance`"
        elif char == "'":
            hint = 'strings use double quotes: "like this"'
        elif char == "#":
            hint = "a colour is `#` and six hex digits, like `#ff8800`; a comment needs a space after `#` here"
        elif char == "!":
            hint = "negate with `not`"
        expected = describe_expected(set(error.allowed or ()))
        return Diagnostic(
            "E102", f"unexpected character {char!r}; expected {expected}", source.span_at(start, start + 1), hint
        )
    assert isinstance(error, UnexpectedToken)
    token = error.token
    expected_set = set(error.expected or ())
    if error.interactive_parser is not None:
        # LALR merges look-aheads, so `expected` can list tokens this context never takes;
        # asking the parser which tokens it would really accept gives an honest list.
        try:
            expected_set = set(error.interactive_parser.accepts()) or expected_set
        except Exception:  # pragma: no cover - best effort only; keep lark's own list
            pass
    expected = describe_expected(expected_set)
    if token.type == "$END":
        end = len(source.text.rstrip())
        return Diagnostic(
            "E103",
            f"unexpected end of input; expected {expected}",
            source.span_at(end, end),
            "the last statement is incomplete",
        )
    span = _token_span(token)
    hint = None
    previous = _previous_word(source.text, token.start_pos)
    following = source.text[token.end_pos :].lstrip()[:1]
    if previous in _PREFIX_WORDS:
        # After `and`/`or`/... the lexer reads `always` as a name; the real mistake is the prefix.
        start = source.text.rindex(previous, 0, token.start_pos)
        span = source.span_at(start, start + len(previous))
        return Diagnostic(
            "E101",
            f"`{previous}` needs parentheses here: it takes everything to its right",
            span,
            f"`{previous}` takes everything to its right: write `a and ({previous} ...)`",
        )
    if token.type == "NAME" and following == ":" and expected_set & {"GOAL", "PROCESS"}:
        hint = f"a rule starts with its role: `goal {token}: ...` or `process {token}: ...`"
    elif token.type == "EQUAL" and "CMP" in expected_set:
        hint = "compare with `<=`, `>=`, `<` or `>`; `=` only names things in declarations and keyword arguments"
    elif "COLON" in expected_set and token.type != "COLON":
        hint = "a rule is `goal NAME: formula` or `process NAME: formula`"
    return Diagnostic("E101", f"unexpected {_token_words(token)}; expected {expected}", span, hint)
