"""ruledsl.compiler: checked program -> IR -> exact/smooth robustness and losses (torch, kornia).

    program = ruledsl.load("examples/maze.rule").compile()
    report = program(video)          # video: float [B, T, 3, H, W] in [0, 1]
    report.satisfied, report.rules["legal"].violations, report.loss.backward()

Where things are: `ir.py` (IR and lowering, no torch), `semantics.py` (the one
exact/smooth min-max dispatch), `primitives.py` (masks, measures, margins),
`spatial.py` (terms and atom margins per frame), `temporal.py` (formulas over
windows, blame), `asks.py` (`ask` margins from a VQA scorer), `program.py` (CompiledProgram: input checks, one call's evaluation,
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
    vqa=None,
    ask_frames: int | None = None,
    mass_prior: float | None = None,
):
    """Lower a checked program and wrap it for evaluation; raises CompileError for unsupported constructs.

    `params` overrides numeric `param` values for this compilation (e.g. a task's cell size); the
    values are checked like the declarations they replace. `allow_paths`: folders besides the
    program's own that `file()` may read (default: those the program was checked with).
    `vqa`: the scorer `ask` atoms need (`ruledsl.runtime.vqa.VLMScorer`; a program with `ask` and no
    scorer is a CompileError naming its rules); `ask_frames`: frames a video-level ask shows the model
    (default `asks.DEFAULT_ASK_FRAMES`). `mass_prior`: pixels of mass by which the surrogate gradients of
    per-mass means (centroids, overlaps, mean colours) are damped near an empty mask (default
    `primitives.MASS_PRIOR`; 0: their exact gradients, which grow as 1 / mass).
    """
    from ruledsl.compiler import asks, ir, primitives
    from ruledsl.compiler.program import CompiledProgram

    program = ir.lower(checked, params or {})
    ask_frames = asks.DEFAULT_ASK_FRAMES if ask_frames is None else int(ask_frames)
    if ask_frames < 1:
        raise ValueError(f"ask_frames must be at least 1, got {ask_frames}")
    _prepare_asks(program, vqa, ask_frames)
    return CompiledProgram(
        program,
        temperature=temperature,
        margin=margin,
        scale=scale,
        surrogate=surrogate,
        resolution=resolution,
        allow_paths=checked.allow_paths if allow_paths is None else allow_paths,
        vqa=vqa,
        mass_prior=primitives.MASS_PRIOR if mass_prior is None else mass_prior,
        ask_frames=ask_frames,
    )


def _prepare_asks(program, vqa, ask_frames: int) -> None:
    """Refuse `ask` without a scorer (naming the rules), and questions the scorer cannot ask (at their line)."""
    from ruledsl.compiler import asks, ir

    found = ir.asks(program)
    if found and vqa is None:
        names = list(dict.fromkeys(rule.name for rule, _ in found))
        first = found[0][1]
        raise ir.CompileError(
            f"rule{'s' if len(names) > 1 else ''} {', '.join(f'`{n}`' for n in names)} use `ask`, which needs a "
            "vision-language model: pass --vlm PATH (a transformers image-text-to-text model folder), or "
            "vqa=VLMScorer.load(PATH) to compile()",
            program.source_name,
            first.span,
        )
    for _, node in found:
        try:
            vqa.prepare(node.question, 1 if node.per_frame else ask_frames)
        except asks.VQAError as error:
            raise ir.CompileError(f"`ask {node.question!r}`: {error}", program.source_name, node.span) from None
