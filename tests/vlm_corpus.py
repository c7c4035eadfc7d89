"""Realistic raw VLM answers and what extraction must make of them.

Each case: (name, text, expected) with expected one of
  ("ok", n_rules)            a clean program with that many rules
  ("errors", [codes])        a program is found; these error codes
  ("none", "words")          no program found (the reason contains the words)
  ("refused", "words")       the input is not usable text (ExtractionError)
"""

PROGRAM = """object agent = color(#ff0000)
region goal = color(#00ff00) at start
region walls = color(#000000) at start
goal reach: at end inside(agent, goal)
process legal: always avoids(agent, walls)
process persist: always persists(agent)"""


def fence(body, tag="rule"):
    return f"```{tag}\n{body}\n```"


def with_line(old, new):
    return PROGRAM.replace(old, new)


CASES = [
    ("clean fenced", fence(PROGRAM), ("ok", 3)),
    (
        "fenced in prose",
        "Sure! Looking at the image, the red square is the agent.\n\n"
        + fence(PROGRAM)
        + "\n\nThese rules ensure the agent reaches the goal without crossing walls.",
        ("ok", 3),
    ),
    ("fence without language", fence(PROGRAM, ""), ("ok", 3)),
    ("fence tagged ruledsl", fence(PROGRAM, "ruledsl"), ("ok", 3)),
    ("tilde fence", "~~~rule\n" + PROGRAM + "\n~~~", ("ok", 3)),
    ("unfenced program", PROGRAM, ("ok", 3)),
    (
        "unfenced with prose around",
        "Here are the rules:\n" + PROGRAM + "\nThese make sure the maze is solved.",
        ("ok", 3),
    ),
    (
        "second candidate fixes the first",
        fence(with_line("inside(agent, goal)", "inside(agnt, goal)")) + "\nOops, typo. Corrected:\n" + fence(PROGRAM),
        ("ok", 3),
    ),
    (
        "two good candidates",
        fence(PROGRAM) + "\nAlternatively:\n" + fence(PROGRAM + "\nprocess still: always speed(agent) <= 0.2"),
        ("ok", 3),
    ),
    ("python block then rule block", fence("print('hi')", "python") + "\n" + fence(PROGRAM), ("ok", 3)),
    ("misspelt entity", fence(with_line("inside(agent, goal)", "inside(agnet, goal)")), ("errors", ["E201"])),
    ("unknown predicate", fence(with_line("inside(agent, goal)", "reaches(agent, goal)")), ("errors", ["E204"])),
    ("type error", fence(with_line("inside(agent, goal)", "inside(agent, 0.5)")), ("errors", ["E301"])),
    ("arithmetic on a region", fence(PROGRAM + "\nprocess odd: always speed(agent) + goal <= 1"), ("errors", ["E304"])),
    ("missing role", fence(with_line("goal reach:", "reach:")), ("errors", ["E101"])),
    (
        "truncated answer",
        "```rule\nobject agent = color(#ff0000)\nregion goal = color(#00ff00) at start\ngoal reach: at end inside(agent,",
        ("errors", ["E103"]),
    ),
    ("empty", "", ("none", "empty input")),
    ("whitespace only", "  \n\n\t \n", ("none", "empty input")),
    (
        "refusal prose",
        "I'm sorry, I cannot determine the rules of this puzzle from the image.",
        ("none", "no program found"),
    ),
    ("binary junk", "\x00\x01\x02\x03PK\x03\x04" * 20, ("refused", "binary")),
    ("smart quotes", fence("task maze \u201cSolve the maze.\u201d\n" + PROGRAM), ("ok", 3)),
    ("crlf and tabs", fence(PROGRAM.replace("\n", "\r\n").replace("object agent", "object\tagent")), ("ok", 3)),
    ("unicode comparison", fence(PROGRAM + "\nprocess steady: always speed(agent) \u2264 0.2"), ("ok", 4)),
    (
        "json wrapped",
        '{"program": "object agent = color(#ff0000)\\ngoal reach: at end persists(agent)"}',
        ("none", "no program found"),
    ),
    (
        "markdown bullets",
        "- object agent = color(#ff0000)\n- goal reach: at end persists(agent)",
        ("none", "no program found"),
    ),
    ("numbered explanation then fence", "1. The agent is red.\n2. The goal is green.\n\n" + fence(PROGRAM), ("ok", 3)),
    ("duplicate rule names", fence(PROGRAM + "\nprocess legal: always persists(agent)"), ("errors", ["E202"])),
    ("reversed window", fence(PROGRAM + "\nprocess late: during [0.8, 0.2] persists(agent)"), ("errors", ["E307"])),
    (
        "hallucinated keyword argument",
        fence(with_line("inside(agent, goal)", "inside(agent, goal, threshold=0.9)")),
        ("errors", ["E303"]),
    ),
    (
        "no goal rule is only a warning",
        fence(PROGRAM.replace("goal reach: at end inside(agent, goal)\n", "")),
        ("ok", 2),
    ),
    ("huge answer", "x" * 250_000, ("refused", "limit")),
    ("comments kept", fence("# the agent\n" + PROGRAM + "  # done"), ("ok", 3)),
    (
        "html escaped comparison",
        fence(PROGRAM + "\nprocess steady: always speed(agent) &lt;= 0.2"),
        ("errors", ["E102"]),
    ),
    ("prose inside the fence", fence(PROGRAM + "\nNote: this handles the walls."), ("errors", ["E101"])),
]
