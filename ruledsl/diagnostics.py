"""Diagnostics: stable codes, severity, span, message, hint; text and JSON rendering.

Codes are part of the public interface (tools and the teacher's repair loop key on
them): E1xx syntax, E2xx names, E3xx types and values, W1xx warnings. Never renumber.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum

from ruledsl.source import Source, Span


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


# code -> one-line title (used by docs/language.md and the tests that cover every code).
CODES: dict[str, str] = {
    "E101": "unexpected token",
    "E102": "unexpected character",
    "E103": "unexpected end of input",
    "E104": "expression nested too deeply",
    "E201": "undefined name",
    "E202": "duplicate definition",
    "E203": "quantifier variable shadows an entity",
    "E204": "unknown function",
    "E205": "name used before its definition",
    "E301": "argument of the wrong type",
    "E302": "wrong number of arguments",
    "E303": "unknown or repeated keyword argument",
    "E304": "operand of the wrong type",
    "E305": "rule body is not a formula",
    "E306": "time unit error",
    "E307": "empty or reversed window",
    "E308": "invalid declaration",
    "E309": "value out of range",
    "E310": "file path outside the program's folder",
    "W101": "unused declaration",
    "W102": "program has no goal rule",
    "W103": "declaration shadows a built-in colour name",
}


@dataclass(frozen=True)
class Diagnostic:
    code: str
    message: str
    span: Span
    hint: str | None = None

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unknown diagnostic code {self.code!r}")

    @property
    def severity(self) -> Severity:
        return Severity.WARNING if self.code.startswith("W") else Severity.ERROR

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def to_dict(self, source: Source) -> dict:
        """Stable JSON fields: file, line, column, end_line, end_column, start, end, code, severity, message, hint."""
        return {
            "file": source.name,
            **self.span.to_dict(),
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "hint": self.hint,
        }


def sort_key(diagnostic: Diagnostic) -> tuple:
    return (diagnostic.span.start, diagnostic.span.end, diagnostic.code)


def render_json(diagnostics: list[Diagnostic], source: Source) -> str:
    return json.dumps([d.to_dict(source) for d in sorted(diagnostics, key=sort_key)], indent=2)


# A generated program can put everything on one line; each diagnostic shows at most this many
# characters of it, around the caret, instead of re-printing the whole line every time.
LINE_WINDOW = 120
_WINDOW_BEFORE = 40


def _line_window(text: str, column: int) -> tuple[str, int]:
    """(the part of a source line to show, the caret's 1-based column in that part)."""
    if len(text) <= LINE_WINDOW:
        return text, column
    start = max(0, min(column - 1 - _WINDOW_BEFORE, len(text) - LINE_WINDOW))
    end = start + LINE_WINDOW
    head = "…" if start > 0 else ""
    tail = "…" if end < len(text) else ""
    return head + text[start:end] + tail, column - start + len(head)


def render_plain(diagnostic: Diagnostic, source: Source) -> str:
    """Compiler-style text: header, location, the source line with a caret, the hint."""
    span = diagnostic.span
    full_line = source.line_text(span.line).expandtabs(1)
    line_text, column = _line_window(full_line, span.column)
    width = len(str(span.line))
    # Underline to the end of the span, or to the end of the line for multi-line spans; never
    # past the part of the line shown.
    last = span.end_column if span.end_line == span.line else len(full_line) + 1
    shown_end = len(line_text) - line_text.endswith("…") + 1
    carets = "^" * max(1, min(last - span.column, shown_end - column))
    gutter = " " * width
    lines = [
        f"{diagnostic.severity.value}[{diagnostic.code}]: {diagnostic.message}",
        f"{gutter}--> {source.name}:{span.line}:{span.column}",
        f"{gutter} |",
        f"{span.line} | {line_text}",
        f"{gutter} | {' ' * (column - 1)}{carets}",
    ]
    if diagnostic.hint:
        lines.append(f"{gutter} = hint: {diagnostic.hint}")
    return "\n".join(lines)


def render_text(diagnostics: list[Diagnostic], source: Source) -> str:
    return "\n\n".join(render_plain(d, source) for d in sorted(diagnostics, key=sort_key))
