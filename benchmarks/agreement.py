"""Agreement between each family's rule program (compiled, exact semantics) and its independent scorer.

Usage: python benchmarks/agreement.py [--n 30] [--splits test ood]

For every instance: the ground truth and each corruption are rendered, judged by the scorer
(`passed`) and by `examples/<family>.rule` (`report.satisfied`), with the program's params set
from the instance's metadata. Agreement means both say the same. Prints a markdown table
(family x ground truth / corruption: agreements / instances) per split, then every disagreement
with both sides' reasons. `judge` is also used by tests/test_tasks.py on a few seeds.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

from ruledsl.tasks.corrupt import KINDS, corrupt
from ruledsl.tasks.families import FAMILIES, generate
from ruledsl.tasks.layout import program_params
from ruledsl.tasks.render import DEFAULT_SIZE, render, solution_plan
from ruledsl.tasks.scorers import score_video

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
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


def judge(
    family: str,
    indices,
    split: str = "test",
    seed: int = 0,
    size: tuple[int, int] = DEFAULT_SIZE,
    examples: Path = EXAMPLES,
) -> list[Outcome]:
    import ruledsl
    from ruledsl.compiler.video_io import to_tensor

    program = ruledsl.load(examples / f"{family}.rule")
    outcomes = []
    for index in indices:
        instance = generate(family, index, seed, split)
        compiled = program.compile(params=program_params(instance.to_dict(), size))
        meta = instance.to_dict()
        for case in CASES:
            plan = solution_plan(instance) if case == "ground truth" else corrupt(instance, case)
            frames = render(instance, plan, size)
            verdict = score_video(frames, meta)
            report = compiled(to_tensor(frames)[None])
            outcomes.append(
                Outcome(
                    family,
                    case,
                    index,
                    verdict.passed,
                    bool(report.satisfied[0]),
                    report.failed_rules(),
                    verdict.reasons,
                )
            )
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--splits", nargs="+", default=["test", "ood"])
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    for split in args.splits:
        start = time.perf_counter()
        outcomes = [o for family in FAMILIES for o in judge(family, range(args.n), split=split)]
        print(f"\n### split `{split}`: {args.n} instances per family, 64x64 ({time.perf_counter() - start:.0f} s)\n")
        print(table(outcomes))
        for o in outcomes:
            if not o.agree:
                print(
                    f"- {o.family} #{o.index} {o.case}: scorer {'pass' if o.scorer else 'fail'} {o.reasons}, "
                    f"program {'pass' if o.program else 'fail'} {o.failed_rules}"
                )


if __name__ == "__main__":
    main()
