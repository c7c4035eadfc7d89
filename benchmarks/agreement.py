"""Agreement table: examples/<family>.rule (compiled) vs the family's independent scorer.

Usage: python benchmarks/agreement.py [--n 30] [--splits test ood]
Prints a markdown table (family x ground truth / corruption: agreements / instances) per split,
then every disagreement with both sides' reasons.
"""

from __future__ import annotations

import argparse
import time

import torch

from ruledsl.tasks.agreement import judge, table
from ruledsl.tasks.families import FAMILIES


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--splits", nargs="+", default=["test", "ood"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    for split in args.splits:
        start = time.perf_counter()
        outcomes = [o for family in FAMILIES for o in judge(family, range(args.n), split=split)]
        print(f"\n### split `{split}`: {args.n} instances per family, 64x64 ({time.perf_counter() - start:.0f} s)\n")
        print(table(outcomes))
        for o in outcomes:
            if not o.agree:
                print(f"- {o.family} #{o.index} {o.case}: scorer {'pass' if o.scorer else 'fail'} {o.reasons}, "
                      f"program {'pass' if o.program else 'fail'} {o.failed_rules}")


if __name__ == "__main__":
    main()
