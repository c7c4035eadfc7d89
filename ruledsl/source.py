"""Source text and spans: where every node and diagnostic points to."""

from __future__ import annotations

import bisect
import functools
import os
import stat
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

    @functools.cached_property
    def line_starts(self) -> list[int]:
        """Offset of the first character of every line (built once: a file with thousands of
        diagnostics must not be split once per diagnostic)."""
        starts = [0]
        find = self.text.find
        position = find("\n")
        while position != -1:
            starts.append(position + 1)
            position = find("\n", position + 1)
        return starts

    def line_text(self, line: int) -> str:
        """Line `line` (1-based) without its newline; "" past the end. Lines end at `\n` only,
        like the parser's line numbers."""
        starts = self.line_starts
        if not 1 <= line <= len(starts):
            return ""
        end = starts[line] - 1 if line < len(starts) else len(self.text)
        return self.text[starts[line - 1] : end].removesuffix("\r")

    def span_at(self, start: int, end: int | None = None) -> Span:
        """Span for character offsets (used where the parser gives offsets only)."""
        end = start if end is None else end
        line, column = self._line_col(start)
        end_line, end_column = self._line_col(end)
        return Span(start, end, line, column, end_line, end_column)

    def _line_col(self, offset: int) -> tuple[int, int]:
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self.line_starts, offset)
        return line, offset - self.line_starts[line - 1] + 1


class SourceError(Exception):
    """The file cannot be read as a rule program at all (usage / I/O problem, exit 2)."""


def file_kind(mode: int) -> str | None:
    """What a non-regular file is, in words (None for a regular file)."""
    for test, words in (
        (stat.S_ISREG, None),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return words
    return "not a regular file"


def stat_mode(path: Path, error: type[Exception] | None = None, missing: str = "no such file") -> int:
    """The file's mode (links followed), or `error` (SourceError by default) in words."""
    error = error or SourceError
    try:
        return path.stat().st_mode
    except FileNotFoundError:
        raise error(f"{path}: {missing}") from None
    except OSError as failure:
        raise error(f"{path}: cannot read ({failure.strerror or failure})") from failure


def read_bounded(path: str | Path, limit: int, expected: str) -> bytes:
    """The bytes of a regular file or a pipe (`<(generate)`), at most `limit`; a directory, a
    device or a socket is refused (`/dev/zero` would never end), as is anything longer."""
    path = Path(path)
    mode = stat_mode(path)
    kind = file_kind(mode)
    if kind is not None and not stat.S_ISFIFO(mode):
        raise SourceError(f"{path}: is {kind}, expected {expected}")
    try:
        with open(path, "rb") as stream:
            data = stream.read(limit + 1)
    except OSError as error:
        raise SourceError(f"{path}: cannot read ({error.strerror or error})") from error
    if len(data) > limit:
        size = f"{os.stat(path).st_size} bytes" if kind is None else "more than that"
        raise SourceError(f"{path}: {size} is over the {limit}-byte limit for {expected}")
    return data


def read_source(path: str | Path) -> Source:
    """Read a .rule file: UTF-8, at most MAX_SOURCE_BYTES, with a clear reason otherwise."""
    data = read_bounded(path, MAX_SOURCE_BYTES, "a .rule file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise SourceError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start})"
        ) from error
    return Source(text.removeprefix("\ufeff"), str(path))
