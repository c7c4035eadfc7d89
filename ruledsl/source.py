"""Source text and spans: where every node and diagnostic points to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# A .rule program is a few hundred lines at most; anything far larger is not a
# rule file (a video, a log) and is refused before parsing.
MAX_SOURCE_BYTES = 1_000_000


@dataclass(frozen=True)
class Span:
    """A half-open character range [start, end) with 1-based line/column of both ends."""

    start: int
    end: int
    line: int
    column: int
    end_line: int
    end_column: int

    def to_dict(self) -> dict:
        return {
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
            "start": self.start,
            "end": self.end,
        }


@dataclass(frozen=True)
class Source:
    """A program text with the name used in messages (a path, or `<string>`)."""

    text: str
    name: str = "<string>"

    def line_text(self, line: int) -> str:
        lines = self.text.splitlines()
        return lines[line - 1] if 1 <= line <= len(lines) else ""

    def span_at(self, start: int, end: int | None = None) -> Span:
        """Span for character offsets (used where the parser gives offsets only)."""
        end = start if end is None else end
        line, column = self._line_col(start)
        end_line, end_column = self._line_col(end)
        return Span(start, end, line, column, end_line, end_column)

    def _line_col(self, offset: int) -> tuple[int, int]:
        offset = max(0, min(offset, len(self.text)))
        line = self.text.count("\n", 0, offset) + 1
        column = offset - (self.text.rfind("\n", 0, offset) + 1) + 1
        return line, column


class SourceError(Exception):
    """The file cannot be read as a rule program at all (usage / I/O problem, exit 2)."""


def read_source(path: str | Path) -> Source:
    """Read a .rule file: UTF-8, at most MAX_SOURCE_BYTES, with a clear reason otherwise."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file")
    if path.is_dir():
        raise SourceError(f"{path}: is a directory, expected a .rule file")
    try:
        size = path.stat().st_size
        if size > MAX_SOURCE_BYTES:
            raise SourceError(f"{path}: {size} bytes is over the {MAX_SOURCE_BYTES}-byte limit for a rule file")
        data = path.read_bytes()
    except OSError as error:
        raise SourceError(f"{path}: cannot read ({error.strerror or error})") from error
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise SourceError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start})"
        ) from error
    return Source(text.removeprefix("\ufeff"), str(path))
