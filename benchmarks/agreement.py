"""Agreement between each family's rule program (compiled, exact semantics) and its independent scorer.

Usage: python benchmarks/agreement.py [--n 30] [--splits test ood] [--families sliding cards ...]

For every instance: the ground truth and each of the family's corruptions are rendered (at the
family's default size: 64 x 64 for the grid families, 96 x 96 for the shape families), judged by the
scorer (`passed`) and by `examples/<family>.rule` (`report.satisfied`), with the program's params set
from the instance's metadata. Agreement means both say the same. Prints a markdown table (family x
ground truth / corruption: agreements / instances) per split and per group of families with the same
corruptions, then every disagreement with both sides' reasons. `judge` is also used by
tests/test_tasks.py and tests/test_shape_tasks.py on a few seeds.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

from ruledsl.tasks import suite
from ruledsl.tasks.corrupt import KINDS
from ruledsl.tasks.layout import params_for

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CASES = ("ground truth", *KINDS)  # the grid families' cases


def cases(family: str) -> tuple[str, ...]:
    return ("ground truth", *suite.corruption_kinds(family))


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
    size: tuple[int, int] | None = None,
    examples: Path = EXAMPLES,
) -> list[Outcome]:
    import ruledsl
    from ruledsl.compiler.video_io import to_tensor

    size = size or suite.default_size(family)
    program = ruledsl.load(examples / f"{family}.rule")
    outcomes = []
    for index in indices:
        instance = suite.generate(family, index, seed, split)
        compiled = program.compile(params=params_for(program, instance.to_dict(), size))
        meta = instance.to_dict()
        for case in cases(family):
            plan = suite.solution(instance) if case == "ground truth" else suite.corrupt(instance, case)
            frames = suite.render(instance, plan, size)
            verdict = suite.score(frames, meta)
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
    """Markdown: family x case, agreements / instances (and the disagreeing side, if any); one table per
    set of cases (the grid families share theirs, each shape family has its own)."""
    families = sorted({o.family for o in outcomes}, key=list(suite.ALL_FAMILIES).index)
    groups: dict[tuple[str, ...], list[str]] = {}
    for family in families:
        groups.setdefault(cases(family), []).append(family)
    out = []
    for columns, members in groups.items():
        lines = ["| family | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        for family in members:
            cells = []
            for case in columns:
                rows = [o for o in outcomes if o.family == family and o.case == case]
                agree = sum(o.agree for o in rows)
                cells.append(f"{agree}/{len(rows)}" + ("" if agree == len(rows) else " ⚠"))
            lines.append(f"| {family} | " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--splits", nargs="+", default=["test", "ood"])
    parser.add_argument("--families", nargs="+", default=list(suite.ALL_FAMILIES), choices=suite.ALL_FAMILIES)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    for split in args.splits:
        start = time.perf_counter()
        outcomes = [o for family in args.families for o in judge(family, range(args.n), split=split)]
        print(f"\n### split `{split}`: {args.n} instances per family ({time.perf_counter() - start:.0f} s)\n")
        print(table(outcomes))
        for o in outcomes:
            if not o.agree:
                print(
                    f"- {o.family} #{o.index} {o.case}: scorer {'pass' if o.scorer else 'fail'} {o.reasons}, "
                    f"program {'pass' if o.program else 'fail'} {o.failed_rules}"
                )


if __name__ == "__main__":
    main()
