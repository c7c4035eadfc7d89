"""Agreement between each family's rule program (compiled, exact semantics) and its independent scorer.

For every instance: the ground truth and each corruption are rendered, judged by the scorer
(`passed`) and by `examples/<family>.rule` (`report.satisfied`), with the program's `cell`
param set from the instance's grid. Agreement means both say the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ruledsl.tasks.corrupt import KINDS, corrupt
from ruledsl.tasks.families import FAMILIES, Instance, generate
from ruledsl.tasks.render import DEFAULT_SIZE, render, solution_plan
from ruledsl.tasks.scorers import score_video

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CASES = ("ground truth", *KINDS)


@dataclass
class Outcome:
    family: str
    case: str
    index: int
    scorer: bool
    program: bool
    failed_rules: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def agree(self) -> bool:
        return self.scorer == self.program


def cell_size(instance: Instance, size: tuple[int, int]) -> float:
    """A grid cell in fractions of the frame's longer side (the unit of the rule programs)."""
    height, width = size
    return max(height / instance.rows, width / instance.cols) / max(height, width)


def judge(family: str, indices, split: str = "test", seed: int = 0, size: tuple[int, int] = DEFAULT_SIZE,
          examples: Path = EXAMPLES) -> list[Outcome]:
    import ruledsl
    from ruledsl.compiler.video_io import to_tensor

    program = ruledsl.load(examples / f"{family}.rule")
    outcomes = []
    for index in indices:
        instance = generate(family, index, seed, split)
        compiled = program.compile(params={"cell": cell_size(instance, size)})
        meta = instance.to_dict()
        for case in CASES:
            plan = solution_plan(instance) if case == "ground truth" else corrupt(instance, case)
            frames = render(instance, plan, size)
            verdict = score_video(frames, meta)
            report = compiled(to_tensor(frames)[None])
            outcomes.append(Outcome(family, case, index, verdict.passed, bool(report.satisfied[0]),
                                    report.failed_rules(), verdict.reasons))
    return outcomes


def table(outcomes: list[Outcome]) -> str:
    """Markdown: family x case, agreements / instances (and the disagreeing side, if any)."""
    families = sorted({o.family for o in outcomes}, key=list(FAMILIES).index)
    lines = ["| family | " + " | ".join(CASES) + " |", "|---" * (len(CASES) + 1) + "|"]
    for family in families:
        cells = []
        for case in CASES:
            rows = [o for o in outcomes if o.family == family and o.case == case]
            agree = sum(o.agree for o in rows)
            cells.append(f"{agree}/{len(rows)}" + ("" if agree == len(rows) else " ⚠"))
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
