"""Pull a rule program out of untrusted model output, and check it. Never evaluates anything.

Candidates, in order: fenced blocks (```rule, ```ruledsl, ``` or ~~~; an unterminated fence at
the end of a truncated answer counts), else runs of lines from the first line that starts with
a statement keyword. The first candidate that checks clean wins; otherwise the one with the
fewest errors is returned with its diagnostics. Harmless variants are normalised first:
CRLF, tabs, smart quotes, non-breaking and zero-width spaces, `≤`/`≥`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ruledsl.checker import CheckedProgram, check
from ruledsl.source import Source

MAX_INPUT_CHARS = 200_000
# An answer holds a few programs; checking stops after this many candidates (in order).
MAX_CANDIDATES = 100
KEYWORDS = ("task", "param", "object", "region", "image", "objects", "goal", "process")
# Fences are found by plain scanning (`fenced_blocks`), not one regex: `(```)...\n(.*?)\1` retries
# from every backtick of a line that never ends, which is quadratic (200,000 backticks: 40 s).
_FENCE_MARK = re.compile(r"```|~~~")
_INFO_LANGUAGE = re.compile(r"[ \t]*([A-Za-z0-9_+-]*)")
_STATEMENT = re.compile(r"^\s*(%s)\b" % "|".join(KEYWORDS))
_REPLACEMENTS = {
    "\r\n": "\n",
    "\r": "\n",
    "\t": "    ",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u2033": '"',
    "\u2018": "'",
    "\u2019": "'",
    "\u00a0": " ",
    "\u200b": "",
    "\ufeff": "",
    "\u2264": "<=",
    "\u2265": ">=",
    "\u2212": "-",
}
_LANGUAGES = {"", "rule", "rules", "ruledsl", "text", "plain", "txt"}


class ExtractionError(Exception):
    """The input is not usable text at all (binary, too large)."""


@dataclass
class Extraction:
    program: str | None  # the chosen candidate, normalised
    checked: CheckedProgram | None
    candidates: int
    reason: str | None = None  # why nothing was found
    all_checked: list[CheckedProgram] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.checked is not None and self.checked.ok


def normalize(text: str) -> str:
    for old, new in _REPLACEMENTS.items():
        text = text.replace(old, new)
    return text


def ensure_text(text: str) -> None:
    if len(text) > MAX_INPUT_CHARS:
        raise ExtractionError(f"input of {len(text)} characters is over the {MAX_INPUT_CHARS}-character limit")
    control = sum(1 for ch in text if ord(ch) < 32 and ch not in "\n\r\t")
    if "\x00" in text or (text and control / len(text) > 0.05):
        raise ExtractionError("input looks binary (NUL or control characters), not model text")


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, in one left-to-right pass (linear time).

    A fence is ``` or ~~~ followed by an info string up to the end of its line; the body runs
    to the next same fence, or to the end of the text (a truncated answer)."""
    blocks = []
    position = 0
    while (opening := _FENCE_MARK.search(text, position)) is not None:
        mark = opening.group()
        line_end = text.find("\n", opening.end())
        if line_end == -1:  # a fence on the last line has no body
            break
        info = text[opening.end() : line_end]
        match = _INFO_LANGUAGE.match(info)  # always matches (all optional)
        language = match.group(1) if match else ""
        closing = text.find(mark, line_end + 1)
        end = len(text) if closing == -1 else closing
        blocks.append((language, text[line_end + 1 : end]))
        position = end + len(mark)
    return blocks


def candidates(text: str) -> list[str]:
    fenced = [body for language, body in fenced_blocks(text) if language.lower() in _LANGUAGES]
    fenced = [body for body in fenced if any(_STATEMENT.match(line) for line in body.splitlines())]
    if fenced:
        return fenced
    lines = text.split("\n")
    starts = [i for i, line in enumerate(lines) if _STATEMENT.match(line)]
    if not starts:
        return []
    # One run from the first statement to the last one, plus its continuation lines (indented or
    # starting with an operator); prose after the program is left out.
    last = starts[-1]
    while last + 1 < len(lines) and (
        lines[last + 1].startswith((" ", "#"))
        or lines[last + 1].lstrip().startswith(("and ", "or ", "implies ", "until ", ")", "weight"))
    ):
        last += 1
    return ["\n".join(lines[starts[0] : last + 1])]


def extract(text: str, name: str = "<model output>") -> Extraction:
    ensure_text(text)
    text = normalize(text)
    found = candidates(text)
    if not found:
        reason = (
            (
                "no program found: expected a ```rule fenced block or lines starting with "
                + ", ".join(f"`{k}`" for k in KEYWORDS)
            )
            if text.strip()
            else "empty input"
        )
        return Extraction(None, None, 0, reason)
    results = [check(Source(body.strip() + "\n", name)) for body in found[:MAX_CANDIDATES]]
    best = next((r for r in results if r.ok), None) or min(results, key=lambda r: len(r.errors))
    return Extraction(best.source.text, best, len(found), None, results)
