"""ruledsl.compiler: checked program -> IR -> exact/smooth robustness and losses (torch, kornia).

    program = ruledsl.load("examples/maze.rule").compile()
    report = program(video)          # video: float [B, T, 3, H, W] in [0, 1]
    report.satisfied, report.rules["legal"].violations, report.loss.backward()

Where things are: `ir.py` (IR and lowering, no torch), `semantics.py` (the one
exact/smooth min-max dispatch), `primitives.py` (masks, measures, margins),
`program.py` (evaluation, windows, blame), `report.py` (pydantic results),
`video_io.py` (reading videos for `ruledsl eval`).
"""

from __future__ import annotations

from ruledsl.checker import CheckedProgram


def compile_program(
    checked: CheckedProgram,
    temperature: float = 0.05,
    margin: float = 0.05,
    scale: float = 0.05,
    surrogate: float | None = 2.0,
    resolution: int | None = 256,
    params: dict | None = None,
):
    """Lower a checked program and wrap it for evaluation; raises CompileError for unsupported constructs.

    `params` overrides numeric `param` values for this compilation (e.g. a task's cell size).
    """
    from ruledsl.compiler import ir
    from ruledsl.compiler.program import CompiledProgram

    program = ir.lower(checked, params or {})
    for rule in program.rules:
        _reject_ask(rule.formula, program)
    return CompiledProgram(
        program, temperature=temperature, margin=margin, scale=scale, surrogate=surrogate, resolution=resolution
    )


def _reject_ask(formula, program) -> None:
    from ruledsl.compiler import ir

    if isinstance(formula, ir.Ask):
        raise ir.CompileError(
            f"`ask {formula.question!r}`: VQA atoms are not yet supported by this backend "
            "(they parse and type-check; a VQA backend will lower them)",
            program.source_name,
            formula.span,
        )
    for value in vars(formula).values():
        children = value if isinstance(value, tuple) else (value,)
        for child in children:
            if isinstance(child, ir.Formula):
                _reject_ask(child, program)
