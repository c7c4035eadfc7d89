"""Character offsets <-> LSP positions for one text.

Our spans are character offsets (and 1-based line/column in characters). LSP positions are a 0-based
line and a column in the code units the client negotiated (UTF-16 unless it asked otherwise), so a
column moves on a line with characters beyond U+FFFF (an emoji counts 2 in UTF-16) or, in UTF-8, with
any non-ASCII character. Lines are split at "\\n" only, like the parser's line numbers.
"""

from __future__ import annotations

import bisect
import re

from lsprotocol import types
from pygls.workspace.position_codec import PositionCodec

_NEWLINE = re.compile("\n")


class LineIndex:
    def __init__(self, text: str, codec: PositionCodec):
        self.text = text
        self.codec = codec
        self.starts = [0, *(m.end() for m in _NEWLINE.finditer(text))]
        self._ascii = text.isascii()  # every encoding counts one unit per character

    def _line_bounds(self, line: int) -> tuple[int, int]:
        start = self.starts[line]
        end = self.starts[line + 1] - 1 if line + 1 < len(self.starts) else len(self.text)
        return start, end

    def position(self, offset: int) -> types.Position:
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self.starts, offset) - 1
        start = self.starts[line]
        units = offset - start if self._ascii else self.codec.client_num_units(self.text[start:offset])
        return types.Position(line=line, character=units)

    def range(self, start: int, end: int) -> types.Range:
        return types.Range(start=self.position(start), end=self.position(end))

    def offset(self, position: types.Position) -> int:
        """The character offset of a client position; past the end of a line or the text, its end."""
        if position.line >= len(self.starts):
            return len(self.text)
        start, end = self._line_bounds(max(0, position.line))
        if self._ascii:
            return min(start + max(0, position.character), end)
        units = 0
        for i in range(start, end):
            if units >= position.character:
                return i
            units += self.codec.client_num_units(self.text[i])
        return end

    def end(self) -> types.Position:
        return self.position(len(self.text))
