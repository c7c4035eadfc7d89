"""ruledsl: a typed rule language for video generation, compiled to differentiable losses.

The front end (this package's top level) imports no torch, so `ruledsl check` starts
fast; `RuleProgram.compile()` loads the compiler (torch, kornia) on first use.
"""

from __future__ import annotations

from pathlib import Path

from ruledsl.checker import CheckedProgram, check
from ruledsl.diagnostics import Diagnostic, render_text
from ruledsl.source import Source, SourceError, read_source

__all__ = ["load", "loads", "RuleProgram", "RuleError", "Diagnostic", "SourceError", "check", "Source"]
__version__ = "0.1.0"


class RuleError(Exception):
    """A program with errors: carries every diagnostic, rendered like `ruledsl check`."""

    def __init__(self, checked: CheckedProgram):
        self.checked = checked
        self.diagnostics = checked.errors
        super().__init__("\n" + render_text(self.diagnostics, checked.source))


class RuleProgram:
    """A checked program (no errors; warnings allowed), ready to compile."""

    def __init__(self, checked: CheckedProgram):
        if not checked.ok:
            raise RuleError(checked)
        self.checked = checked

    @property
    def source(self) -> Source:
        return self.checked.source

    @property
    def warnings(self) -> list[Diagnostic]:
        return self.checked.warnings

    @property
    def params(self) -> dict[str, float]:
        """The numeric params a caller may override (`compile(params=...)`), with their values."""
        return {name: value for name, value in self.checked.constants.items() if isinstance(value, float)}

    def compile(self, **options):
        """Lower to IR and return a CompiledProgram (exact + smooth semantics); see ruledsl.compiler."""
        from ruledsl.compiler import compile_program

        return compile_program(self.checked, **options)


def loads(text: str, name: str = "<string>", allow_paths=()) -> RuleProgram:
    """Check a program given as text; `name` is its path (relative `file()` paths start at its folder)."""
    return RuleProgram(check(Source(text, name), allow_paths=allow_paths))


def load(path: str | Path, allow_paths=()) -> RuleProgram:
    """Read, parse and check a .rule file; raises SourceError (unreadable) or RuleError (diagnostics).

    `file("...")` in the program may read only below the file's folder, or below one of
    `allow_paths` (folders the caller trusts; a program written by a model gets none).
    """
    return RuleProgram(check(read_source(path), allow_paths=allow_paths))
