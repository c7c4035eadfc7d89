"""What may be typed at the cursor.

Completion runs while the text is being typed, so it is mostly asked for in text that does not parse.
The context is therefore read lexically from the statement before the cursor: the start of a
statement takes a statement keyword; after `at` and in `during [...]` a time; after `in` of a
quantifier a collection; inside a built-in's parentheses the argument it expects (entities of the
right kind, measures for numbers, colours for colours) and its keyword arguments not yet given;
elsewhere any expression. Declared names come from the latest analysis (which skips statements with
syntax errors but keeps the rest), quantified variables from the statement itself.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from lsprotocol import types

from ruledsl.lsp.analysis import STATEMENT_KEYWORDS, Definition, statement_starts
from ruledsl.parser import grammar_text
from ruledsl.signatures import BUILTINS, NAMED_COLORS, Builtin, Type

PREFIX_KEYWORDS = ("always", "eventually", "next", "at", "during", "forall", "exists", "not")
INFIX_KEYWORDS = ("and", "or", "implies", "until")
VALUE_KEYWORDS = ("true", "false", "ask")
TIME_KEYWORDS = ("start", "end")
# Words after which an expression must go on: a statement ending in one of them is not finished.
_CONTINUES = {*PREFIX_KEYWORDS, *INFIX_KEYWORDS, "in", "weight", "ask", *STATEMENT_KEYWORDS}

_WORD_BEFORE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")
_QUANTIFIED = re.compile(r"\b(?:forall|exists)\s+([A-Za-z_]\w*)\s+in\s+([A-Za-z_]\w*)\s*:")
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}(?![0-9a-zA-Z_])")
_DECLARING = re.compile(r"[ \t]*(?:" + "|".join(STATEMENT_KEYWORDS) + r")[ \t]+")
_LOOKBACK = 20_000  # characters searched back for the statement start (a statement is far shorter)

# Which declared kinds fit an argument of each type (an object is also a region; a quantified
# variable is an object; params are numbers or colours).
_FITS: dict[Type, set[str]] = {
    Type.REGION: {"object", "region", "variable"},
    Type.OBJECT: {"object", "variable"},
    Type.POINT: {"object", "region", "variable"},
    Type.IMAGE: {"image"},
    Type.NUMBER: {"param"},
    Type.COLOR: {"param"},
    Type.COLLECTION: {"objects"},
}
_KIND_ITEM = {
    "param": types.CompletionItemKind.Constant,
    "object": types.CompletionItemKind.Variable,
    "region": types.CompletionItemKind.Variable,
    "image": types.CompletionItemKind.File,
    "objects": types.CompletionItemKind.Enum,
    "variable": types.CompletionItemKind.Variable,
}


@functools.cache
def language_keywords() -> frozenset[str]:
    """Every keyword of the grammar (grammars/rule.lark), read from the grammar itself."""
    return frozenset(re.findall(r'"([a-z_]+)"', grammar_text()))


def _blank_strings_and_comments(text: str) -> str:
    """The text with string contents and comments replaced by spaces (colours `#rrggbb` kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] not in '"\n':
                j += 2 if text[j] == "\\" else 1
            out.append('"' + " " * (min(j, n) - i - 1) + ('"' if j < n and text[j] == '"' else ""))
            i = j + 1 if j < n and text[j] == '"' else j
        elif c == "#" and not _COLOUR.match(text, i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _ends_inside(line_before: str) -> bool:
    """Is the end of this line's text inside a string or a comment?"""
    in_string = False
    i = 0
    while i < len(line_before):
        c = line_before[i]
        if in_string:
            if c == "\\":
                i += 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == "#" and not _COLOUR.match(line_before, i):
            return True
        i += 1
    return in_string


def _finished(statement: str) -> bool:
    """Does this (cleaned) statement text read as complete, so that a new line may start another?"""
    body = statement.rstrip()
    if not body or body.count("(") > body.count(")") or body.count("[") > body.count("]"):
        return False
    last = _WORD_BEFORE.search(body)
    if last is not None and last.end() == len(body):
        return last.group() not in _CONTINUES and not re.fullmatch(r"\s*\w+\s+\w+", body)
    return body[-1] in ')]"' or body[-1].isdigit() or bool(_COLOUR.search(body[-7:]))


def _open_call(statement: str) -> tuple[str, int, str | None] | None:
    """The innermost call whose parentheses are open at the end: (function, argument index, keyword)."""
    depth, commas = 0, 0
    for i in range(len(statement) - 1, -1, -1):
        c = statement[i]
        if c in ")]":
            depth += 1
        elif c in "([":
            if depth == 0:
                if c == "[":
                    return None
                name = _WORD_BEFORE.search(statement[:i].rstrip())
                if name is None:
                    return None
                argument = statement[i + 1 :].rsplit(",", 1)[-1] if commas else statement[i + 1 :]
                keyword = re.match(r"\s*([A-Za-z_]\w*)\s*=", argument)
                return name.group(), commas, keyword.group(1) if keyword else None
            depth -= 1
        elif c == "," and depth == 0:
            commas += 1
    return None


def _item(label: str, kind, group: int, detail: str | None = None, doc: str | None = None):
    return types.CompletionItem(
        label=label,
        kind=kind,
        detail=detail,
        documentation=types.MarkupContent(kind=types.MarkupKind.Markdown, value=doc) if doc else None,
        sort_text=f"{group}{label}",
    )


def _builtin_item(builtin: Builtin, group: int) -> types.CompletionItem:
    return _item(builtin.name, types.CompletionItemKind.Function, group, builtin.signature(), builtin.doc)


def _keyword_items(words, group: int) -> list[types.CompletionItem]:
    return [_item(w, types.CompletionItemKind.Keyword, group) for w in words]


def _colour_items(group: int) -> list[types.CompletionItem]:
    # The hex value as plain-string documentation: editors that support it draw a swatch.
    return [
        types.CompletionItem(
            label=name,
            kind=types.CompletionItemKind.Color,
            detail="colour",
            documentation="#%02x%02x%02x" % rgb,
            sort_text=f"{group}{name}",
        )
        for name, rgb in NAMED_COLORS.items()
    ]


def _name_items(names: dict[str, Definition], kinds: set[str] | None, group: int) -> list[types.CompletionItem]:
    items = []
    for name, d in names.items():
        if kinds is None or d.kind in kinds:
            detail = f"object in `{d.over}`" if d.over else d.kind
            items.append(_item(name, _KIND_ITEM.get(d.kind, types.CompletionItemKind.Variable), group, detail))
    return items


def _argument_items(builtin: Builtin, index: int, keyword: str | None, given: str, names) -> list:
    """Items for argument `index` (or keyword argument `keyword`) of a built-in call."""
    by_name = {p.name: p for p in builtin.params}
    param = by_name.get(keyword) if keyword else (builtin.params[index] if index < len(builtin.params) else None)
    items = []
    if keyword is None:  # keyword arguments still free (positional ones before the cursor are taken)
        used = set(re.findall(r"([A-Za-z_]\w*)\s*=", given))
        for p in builtin.params[index:]:
            if p.name not in used:
                detail = p.type_names() + ("" if p.required else f" = {p.default:g}")
                items.append(_item(f"{p.name}=", types.CompletionItemKind.Field, 0, detail, p.doc))
    if param is None:
        return items
    wanted = set(param.types)
    kinds = set().union(*(_FITS.get(t, set()) for t in wanted))
    items += _name_items(names, kinds, 1)
    returns = wanted | ({Type.REGION} if Type.POINT in wanted else set())
    if builtin.kind != "measure":
        returns.discard(Type.NUMBER)  # other built-ins take constant numbers only (E304)
    items += [_builtin_item(b, 2) for b in BUILTINS.values() if any(t.accepts(b.returns) for t in returns)]
    if Type.COLOR in wanted:
        items += _colour_items(1)
    return items


@dataclass(frozen=True)
class Cursor:
    """What is before the cursor: the name being typed, the rest of its line, and its statement."""

    word: str
    head: str  # the line before the word
    statement: str  # the statement before the word, strings and comments blanked
    at_statement_start: bool  # the word could start a new statement


def cursor_at(text: str, offset: int) -> Cursor | None:
    """The context at `offset`, or None inside a string, a comment or a colour literal."""
    line_start = text.rfind("\n", 0, offset) + 1
    line_before = text[line_start:offset]
    if _ends_inside(line_before):
        return None
    match = _WORD_BEFORE.search(line_before)
    word = match.group() if match else ""
    word_start = offset - len(word)
    if text[word_start - 1 : word_start] == "#":
        return None  # a colour literal being typed
    window = text[max(0, word_start - _LOOKBACK) : word_start]
    starts = statement_starts(window)
    statement = _blank_strings_and_comments(window[starts[-1] :] if starts else window)
    head = line_before[: len(line_before) - len(word)]
    # The word starts a line, after a complete statement (or none at all).
    at_start = not head.strip() and (not statement.strip() or _finished(statement))
    return Cursor(word, head, statement, at_start)


def call_at(text: str, offset: int) -> tuple[Builtin, int, str | None] | None:
    """The built-in call whose parentheses hold the cursor: (built-in, argument index, keyword or None)."""
    cursor = cursor_at(text, offset)
    call = _open_call(cursor.statement) if cursor is not None else None
    if call is None or call[0] not in BUILTINS:
        return None
    return BUILTINS[call[0]], call[1], call[2]


def complete(text: str, offset: int, values: dict[str, Definition]) -> list[types.CompletionItem]:
    """Completion items at `offset` of `text`; `values` are the declared names (SymbolIndex.values())."""
    cursor = cursor_at(text, offset)
    if cursor is None:
        return []
    statement = cursor.statement
    if cursor.at_statement_start:
        return _keyword_items(STATEMENT_KEYWORDS, 0)
    if _DECLARING.fullmatch(cursor.head) or re.search(r"\b(?:forall|exists)\s+$", statement):
        return []  # the name being declared, or a new quantified variable
    first = statement.split(None, 1)[0] if statement.split() else ""
    local = {
        m.group(1): Definition(m.group(1), "variable", 0, 0, 0, 0, True, m.group(2))
        for m in _QUANTIFIED.finditer(statement)
    }
    names = {**values, **local}
    if re.search(r"\b(?:forall|exists)\s+\w+\s+in\s+$", statement):
        return _name_items(names, {"objects"}, 0)
    if re.search(r"(?:\bat\s+|\bduring\s*\[[^\]]*)$", statement):
        return _keyword_items(TIME_KEYWORDS, 0) + _name_items(names, {"param"}, 1)
    if re.match(r"\s*objects\s+\w+\s*=\s*\[", statement):
        return _name_items(names, {"object"}, 0)
    call = _open_call(statement)
    if call is not None and call[0] in BUILTINS:
        function, index, keyword = call
        given = statement[statement.rfind(function + "(") :]
        return _argument_items(BUILTINS[function], index, keyword, given, names)
    items = _name_items(names, None, 0) + [_builtin_item(b, 1) for b in BUILTINS.values()]
    keywords = [*PREFIX_KEYWORDS, *INFIX_KEYWORDS, *VALUE_KEYWORDS]
    if first in ("goal", "process") and ":" in statement:
        keywords.append("weight")
    return items + _keyword_items(keywords, 2) + _colour_items(3)
