"""Reference tables generated from the built-in registry (docs/language.md).

`python -m ruledsl.docs` rewrites the generated block of docs/language.md; a test
fails if the committed block differs, so docs and checker cannot drift.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ruledsl.diagnostics import CODES
from ruledsl.signatures import BUILTINS, NAMED_COLORS, Param

BEGIN, END = "<!-- generated: builtins -->", "<!-- end generated -->"
_KIND_TITLES = {
    "selector": "Selectors (regions)",
    "point": "Points",
    "image": "Images",
    "measure": "Measures (numbers)",
    "predicate": "Predicates (formulas)",
    "object": "Members (objects chosen from a collection)",
    "collection": "Collections",
}


def _range(param: Param) -> str:
    """The values the checker accepts for a constant argument, e.g. " (in [0, 1])"."""
    return "" if param.low is None and param.high is None else f" (in {param.range_text()})"


def builtins_markdown() -> str:
    out = []
    for kind, title in _KIND_TITLES.items():
        out += [f"### {title}", "", "| signature | meaning | example |", "|---|---|---|"]
        for b in BUILTINS.values():
            if b.kind != kind:
                continue
            meaning = b.doc + ("" if b.differentiable else " *(no gradient)*")
            params = "; ".join(f"`{p.name}`: {p.doc}{_range(p)}" for p in b.params)
            out.append(f"| `{b.signature()}` | {meaning}<br>{params} | `{b.example}` |")
        out.append("")
    colours = ", ".join(f"`{name}`" for name in NAMED_COLORS)
    out += ["### Named colours", "", colours, "", "### Diagnostic codes", "", "| code | meaning |", "|---|---|"]
    out += [f"| {code} | {title} |" for code, title in CODES.items()]
    return "\n".join(out) + "\n"


def render_into(text: str) -> str:
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{builtins_markdown()}{END}{tail}"


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/language.md")
    path.write_text(render_into(path.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"updated {path}")


if __name__ == "__main__":
    main()
