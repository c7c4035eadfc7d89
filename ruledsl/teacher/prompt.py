"""The teacher prompt: generated from the signature table and the example programs, never hand-kept."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ruledsl.signatures import BUILTINS, NAMED_COLORS

EXAMPLES = Path(str(resources.files("ruledsl.examples")))  # examples/, shipped in the package
DEFAULT_EXAMPLES = ("maze", "key_door", "two_targets")

SYSTEM = (
    "You write rule programs in the ruledsl language. A rule program states what a correct video of a "
    "visual puzzle must satisfy, so that a video model can be checked and corrected. Answer with exactly "
    "one program in a ```rule fenced block and nothing else."
)

LANGUAGE = """\
A program declares entities, then rules. One statement per line; `#` starts a comment.
  task NAME "prompt"                         the task (optional)
  param NAME = NUMBER                        a constant
  object NAME = color(#rrggbb)               tracked in every frame (an agent, a box)
  region NAME = color(#rrggbb) at start      fixed: the mask of the first frame (walls, goals)
  region NAME = not walls | a & b | a - b    set operations on regions
  objects NAME = [a, b]                      a collection for `forall x in NAME: ...`
  objects NAME = components(color(#rrggbb), max=8) at start
                                             every blob of a colour at that frame, each tracked as its own
                                             object (`largest(NAME)`, `nth(NAME, 2, by="x")` pick one)
  image NAME = frame() at start              a frame of the video, for `at end matches(NAME, region)`
  def NAME(o, r: region) = FORMULA-or-NUMBER a named formula or measure, used as NAME(a, b)
                                             (a def without parameters is used as NAME)
  goal NAME: FORMULA [weight N]              a property of the final state
  process NAME: FORMULA [weight N]           a property of the whole trajectory
Formulas: `always F`, `eventually F`, `at end F`, `at start F`, `next F`, `F until G`,
`during [0.5, end] F` (fractions of the video, or integer frames), `not F`, `F and G`, `F or G`,
`F implies G`, comparisons of measures like `speed(agent) <= 0.1`.
Over collections: `forall a, b in C where G: F` (pairs of distinct members), `at most 1 of x in C: F`,
`at least 2 of ...`, `exactly 3 of x in C where G: F` (members satisfying F at a frame), `exactly 9 times F`
(how many times F becomes true), `sorted(C, by=area, along=x)`, `distinct(C, by=x, tol=0.05)`.
A prefix (always, eventually, at, during, forall, at most, exactly) takes everything to its right: `always a and b`
means `always (a and b)`; write `a and (always b)`.
Positions and distances are fractions of the frame (0 to 1), so programs work at any resolution.
`ask "yes/no question"` is a formula answered by a vision-language model looking at the video (a few
frames spread over its window; under always/eventually/at, frame by frame). It is slow and
approximate: use it ONLY for a statement that no built-in below can express (e.g. `ask "Is the agent
pushing the box?"`), never for positions, colours, overlap, motion or counts. Put it in its own rule:
  process pushes: during [0.2, 0.8] ask "Is the red agent pushing the blue box?"
"""


def reference() -> str:
    """One line per built-in, from the checker's signature table."""
    lines = []
    for kind, title in (
        ("selector", "Regions"),
        ("point", "Points"),
        ("image", "Images"),
        ("measure", "Measures"),
        ("predicate", "Predicates"),
        ("object", "Members of a collection"),
        ("collection", "Collections"),
    ):
        lines.append(f"{title}:")
        lines += [f"  {b.signature()}  # {b.doc}" for b in BUILTINS.values() if b.kind == kind]
    lines.append("Named colours: " + ", ".join(NAMED_COLORS))
    return "\n".join(lines)


def build_prompt(task_prompt: str, palette: str | None = None, examples=DEFAULT_EXAMPLES) -> str:
    parts = [LANGUAGE, "", "Built-in functions (name(parameter: type = default) -> result):", reference(), ""]
    for name in examples:
        path = EXAMPLES / f"{name}.rule"
        if path.exists():
            parts += [f"Example ({name}):", "```rule", path.read_text().strip(), "```", ""]
    if palette:
        parts += ["Colours of the first frame (use them in color(...)):", palette, ""]
    parts += [
        f"Task: {task_prompt.strip()}",
        "",
        "Write the rule program for this task: entities by their colours, one or more `goal` rules for the "
        "final state, `process` rules that keep the video valid (persistence, no crossing, no jumps). "
        "Answer with exactly one ```rule fenced block.",
    ]
    return "\n".join(parts)


def repair_message(diagnostics_text: str) -> str:
    return (
        "Your program has errors:\n\n"
        + diagnostics_text
        + "\n\nFix every error and answer again with the whole corrected program in one ```rule fenced block."
    )
