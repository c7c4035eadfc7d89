"""ruledsl.compiler: checked program -> IR -> exact/smooth robustness and losses (torch, kornia).

    program = ruledsl.load("examples/maze.rule").compile()
    report = program(video)          # video: float [B, T, 3, H, W] in [0, 1]
    report.satisfied, report.rules["legal"].violations, report.loss.backward()

Where things are: `ir.py` (IR and lowering, no torch), `semantics.py` (the one
exact/smooth min-max dispatch), `primitives.py` (masks, measures, margins),
`spatial.py` (terms and atom margins per frame), `temporal.py` (formulas over
windows, blame), `program.py` (CompiledProgram: input checks, one call's evaluation,
reports), `report.py` (pydantic results),
`video_io.py` (reading videos for `ruledsl eval`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ruledsl.checker import CheckedProgram


def compile_program(
    checked: CheckedProgram,
    temperature: float = 0.05,
    margin: float = 0.05,
    scale: float = 0.05,
    surrogate: float | None = 2.0,
    resolution: int | None = 256,
    params: dict | None = None,
    allow_paths: Iterable[str | Path] | None = None,
):
    """Lower a checked program and wrap it for evaluation; raises CompileError for unsupported constructs.

    `params` overrides numeric `param` values for this compilation (e.g. a task's cell size); the
    values are checked like the declarations they replace. `allow_paths`: folders besides the
    program's own that `file()` may read (default: those the program was checked with).
    """
    from ruledsl.compiler import ir
    from ruledsl.compiler.program import CompiledProgram

    program = ir.lower(checked, params or {})
    for node in ir.walk(program):
        if isinstance(node, ir.Ask):
            raise ir.CompileError(
                f"`ask {node.question!r}`: VQA atoms are not yet supported by this backend "
                "(they parse and type-check; a VQA backend will lower them)",
                program.source_name,
                node.span,
            )
    return CompiledProgram(
        program,
        temperature=temperature,
        margin=margin,
        scale=scale,
        surrogate=surrogate,
        resolution=resolution,
        allow_paths=checked.allow_paths if allow_paths is None else allow_paths,
    )
