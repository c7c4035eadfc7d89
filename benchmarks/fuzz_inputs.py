"""Inputs for fuzzing ruledsl: programs derived from the grammar, well-typed programs built from
the signature table, token mutations of the example programs, and degenerate shapes (deep,
long, huge numbers). Shared by tests/test_fuzz.py (hypothesis draws the choices, so failures
shrink) and benchmarks/fuzz.py (a seeded random.Random draws them, 100,000 at a time).

Every generator takes `draw(n) -> int in range(n)`: the one source of choices.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path

from ruledsl.signatures import BUILTINS, NAMED_COLORS, Type

Draw = Callable[[int], int]
ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.rule"))


def pick(draw: Draw, items):
    return items[draw(len(items))]


def chance(draw: Draw, percent: int) -> bool:
    return draw(100) < percent


# ---- programs derived from the grammar ------------------------------------------------------

# Names the lexer may read as keywords where the grammar allows them (`goal`, `end`, `at`, ...),
# built-in function names, and plain names: the mix that found the `at end (goal)` bug.
_KEYWORDS = ["task", "param", "object", "region", "image", "objects", "goal", "process", "start", "end"]
_KEYWORDS += ["weight", "at", "in", "and", "or", "not", "always", "next", "true", "until", "ask"]
_PLAIN_NAMES = ["agent", "target", "walls", "a", "b", "cell", "t", "many", "x_1", "_"]
_NUMBERS = ["0", "1", "2", "3", "7", "0.5", "0.05", "0.9", ".25", "12", "1.0", "100", "1" + "0" * 15]
_HUGE_NUMBERS = ["9" * 400, "1" + "0" * 16, "0." + "0" * 300 + "1", "9" * 20 + ".5"]
_STRINGS = ['"target.png"', '"is the agent on the goal?"', '""', '"a \\"quoted\\" word"', '"x\\ny"']
_COLORS = ["#ff0000", "#00FF00", "#0000ff", "#000000", "#ffffff", "#808080"]


@functools.cache
def _grammar() -> tuple[dict[str, list[tuple[str, ...]]], dict[str, str], dict[str, int]]:
    """lark's compiled rules (origin -> expansions), literal terminals, and the least height of
    a derivation of each non-terminal (to close a derivation once it is deep enough)."""
    from ruledsl.parser import _lark

    parser = _lark()
    rules: dict[str, list[tuple[str, ...]]] = {}
    for rule in parser.rules:
        rules.setdefault(rule.origin.name, []).append(tuple(s.name for s in rule.expansion))
    literals = {t.name: t.pattern.value for t in parser.terminals if type(t.pattern).__name__ == "PatternStr"}
    height = {name: 10**9 for name in rules}
    changed = True
    while changed:
        changed = False
        for name, expansions in rules.items():
            for expansion in expansions:
                h = 1 + max((height.get(s, 0) for s in expansion), default=0)
                if h < height[name]:
                    height[name], changed = h, True
    return rules, literals, height


def _terminal(draw: Draw, name: str, literals: dict[str, str]) -> str:
    if name in literals:
        return literals[name]
    if name == "NAME":
        pools = (_PLAIN_NAMES, list(BUILTINS), _KEYWORDS, list(NAMED_COLORS)[:4])
        return pick(draw, pick(draw, pools))
    if name == "NUMBER":
        return pick(draw, _HUGE_NUMBERS) if chance(draw, 3) else pick(draw, _NUMBERS)
    if name == "STRING":
        return pick(draw, _STRINGS)
    if name == "COLOR":
        return pick(draw, _COLORS)
    if name == "CMP":
        return pick(draw, ["<=", ">=", "<", ">"])
    if name == "ADD_OP":
        return pick(draw, ["+", "|"])
    if name == "MUL_OP":
        return pick(draw, ["*", "/", "&"])
    raise KeyError(f"no sampler for terminal {name}")


def grammar_program(draw: Draw, max_depth: int = 14, max_tokens: int = 300) -> str:
    """A token sequence derived from grammars/rule.lark, joined by spaces, newlines and comments.
    Every derivation is in the grammar; the contextual lexer may still read a name as a keyword,
    so some of these do not parse, which the properties allow."""
    rules, literals, height = _grammar()
    tokens: list[str] = []

    def expand(symbol: str, depth: int) -> None:
        if symbol not in rules:
            tokens.append(_terminal(draw, symbol, literals))
            return
        options = rules[symbol]
        if depth >= max_depth or len(tokens) >= max_tokens:  # close: take a shortest expansion
            least = min(1 + max((height.get(s, 0) for s in e), default=0) for e in options)
            options = [e for e in options if 1 + max((height.get(s, 0) for s in e), default=0) == least]
        for part in pick(draw, options):
            expand(part, depth + 1)

    expand("start", 0)
    out = []
    for token in tokens:
        out.append(token)
        separator = draw(20)
        out.append("\n" if separator == 0 else ("  # note\n" if separator == 1 else " "))
    return "".join(out)


# ---- well-typed programs from the signature table ---------------------------------------------


class _Scope:
    def __init__(self):
        self.objects: list[str] = []
        self.regions: list[str] = []
        self.collections: list[str] = []
        self.numbers: list[str] = []
        self.bound: list[str] = []  # quantified variables in scope


def _number(draw: Draw, low: float | None, high: float | None) -> str:
    """A literal in [low, high] (a checker range), three decimals at most."""
    low = 0.0 if low is None else low
    high = low + 2.0 if high is None else high
    value = low + (high - low) * draw(101) / 100
    return f"{value:.3f}".rstrip("0").rstrip(".") or "0"


def _colour_literal(draw: Draw) -> str:
    return pick(draw, [*_COLORS[:4], "red", "green", "#123456", "#ffff00"])


def _region(draw: Draw, scope: _Scope, depth: int) -> str:
    names = scope.regions + scope.objects + scope.bound
    if depth <= 0 or chance(draw, 40):
        if names and chance(draw, 70):
            return pick(draw, names)
        if chance(draw, 50):
            return f"color({_colour_literal(draw)})"
        x0, y0 = draw(50) / 100, draw(50) / 100
        return f"box({x0:g}, {y0:g}, {x0 + 0.1 + draw(40) / 100:g}, {y0 + 0.1 + draw(40) / 100:g})"
    kind = draw(5)
    if kind == 0:
        return f"({_region(draw, scope, depth - 1)} {pick(draw, ['|', '&', '-'])} {_region(draw, scope, depth - 1)})"
    if kind == 1:
        return f"(not {_region(draw, scope, depth - 1)})"
    if kind == 2:
        return f"{pick(draw, ['grow', 'shrink'])}({_region(draw, scope, depth - 1)}, {_number(draw, 0, 0.1)})"
    if kind == 3:
        return f"color({_colour_literal(draw)}, tol={_number(draw, 1, 40)})"
    return _region(draw, scope, 0)


def _object(draw: Draw, scope: _Scope) -> str:
    return pick(draw, scope.objects + scope.bound)


def _argument(draw: Draw, types: tuple[Type, ...], param, scope: _Scope, depth: int) -> str:
    kind = pick(draw, list(types))
    if param.flag:
        return pick(draw, ["true", "false"])
    if kind is Type.NUMBER:
        low = param.low
        if param.open_low and low is not None:  # `low` itself is refused (grid_step's cell)
            low += 0.01
        return _number(draw, low, param.high)
    if kind is Type.OBJECT:
        return _object(draw, scope)
    if kind is Type.REGION:
        return _region(draw, scope, depth)
    if kind is Type.POINT:
        return f"point({_number(draw, 0, 1)}, {_number(draw, 0, 1)})"
    raise KeyError(kind)


def _call(draw: Draw, name: str, scope: _Scope, depth: int) -> str:
    """A call with every required argument (positional) and some optional ones (by keyword)."""
    args = []
    for param in BUILTINS[name].params:
        if param.required:
            args.append(_argument(draw, param.types, param, scope, depth - 1))
        elif chance(draw, 40):
            args.append(f"{param.name}={_argument(draw, param.types, param, scope, depth - 1)}")
    return f"{name}({', '.join(args)})"


_MEASURES = [b.name for b in BUILTINS.values() if b.kind == "measure" and Type.IMAGE not in b.params[0].types]
_PREDICATES = [b.name for b in BUILTINS.values() if b.kind == "predicate" and b.name != "matches"]


def _measure(draw: Draw, scope: _Scope, depth: int) -> str:
    name = pick(draw, _MEASURES)
    if name == "abs":
        return f"abs({_measure(draw, scope, depth - 1)} - {_number(draw, 0, 1)})"
    return _call(draw, name, scope, depth)


def _window(draw: Draw) -> str:
    if chance(draw, 50):
        low = draw(5)
        return f"[{low}, {low + draw(4)}]"
    low = draw(50) / 100
    return f"[{low:.2f}, {low + draw(50) / 100:.2f}]"


def _formula(draw: Draw, scope: _Scope, depth: int) -> str:
    if depth <= 0 or chance(draw, 25):
        kind = draw(10)
        if kind < 6:
            return _call(draw, pick(draw, _PREDICATES), scope, depth)
        if kind < 9:
            return f"{_measure(draw, scope, depth)} {pick(draw, ['<=', '>=', '<', '>'])} {_number(draw, 0, 1)}"
        return pick(draw, ["true", "false"])
    sub = depth - 1
    kind = draw(12)
    if kind < 3:
        op = pick(draw, ["and", "or", "implies", "until"])
        return f"({_formula(draw, scope, sub)}) {op} ({_formula(draw, scope, sub)})"
    if kind == 3:
        return f"not ({_formula(draw, scope, sub)})"
    if kind < 7:
        return f"{pick(draw, ['always', 'eventually', 'next'])} {_formula(draw, scope, sub)}"
    if kind == 7:
        return f"at {pick(draw, ['start', 'end', str(draw(6)), '0.5', '1.0'])} {_formula(draw, scope, sub)}"
    if kind == 8:
        return f"during {_window(draw)} {_formula(draw, scope, sub)}"
    if kind == 9 and scope.collections:
        var = f"v{len(scope.bound)}"
        scope.bound.append(var)
        body = _formula(draw, scope, sub)
        scope.bound.pop()
        return f"{pick(draw, ['forall', 'exists'])} {var} in {pick(draw, scope.collections)}: {body}"
    if kind == 10 and scope.numbers:
        return f"{_measure(draw, scope, sub)} <= {pick(draw, scope.numbers)} * {_number(draw, 0, 3)}"
    return " and ".join(f"({_formula(draw, scope, sub)})" for _ in range(1 + draw(3)))


def typed_program(draw: Draw, max_depth: int = 4) -> str:
    """A program that the checker should accept: declarations, then rules built from the
    signature table with argument types and ranges respected (the checker still gets to say no,
    e.g. to an empty window)."""
    scope = _Scope()
    lines = []
    if chance(draw, 50):
        lines.append('task fuzz "A generated task."')
    if chance(draw, 50):
        lines.append(f"param cell = {_number(draw, 0.01, 0.5)}")
        scope.numbers.append("cell")
    for i in range(1 + draw(3)):
        lines.append(f"object o{i} = color({pick(draw, ['#ff0000', '#0000ff', '#ffff00'])})")
        scope.objects.append(f"o{i}")
    for i in range(draw(3)):
        snapshot = pick(draw, ["", " at start", " at end", " at 0.5"])
        lines.append(f"region r{i} = {_region(draw, scope, 2)}{snapshot}")
        scope.regions.append(f"r{i}")
    if len(scope.objects) > 1 and chance(draw, 50):
        lines.append(f"objects all = [{', '.join(scope.objects)}]")
        scope.collections.append("all")
    for i in range(1 + draw(3)):
        role = "goal" if i == 0 else pick(draw, ["goal", "process"])
        weight = f" weight {_number(draw, 0.1, 3)}" if chance(draw, 20) else ""
        lines.append(f"{role} rule{i}: {_formula(draw, scope, max_depth)}{weight}")
    return "\n".join(lines) + "\n"


# ---- mutations and degenerate shapes ----------------------------------------------------------

TOKENS = re.compile(r'"[^"\n]*"|#[0-9a-fA-F]{6}|[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|<=|>=|\S|\n')


@functools.cache
def example_tokens() -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(TOKENS.findall(p.read_text())) for p in EXAMPLES)


def mutated_example(draw: Draw, max_mutations: int = 4) -> str:
    """An example program with a few tokens deleted, duplicated, swapped or replaced."""
    tokens = list(pick(draw, example_tokens()))
    for _ in range(1 + draw(max_mutations)):
        if not tokens:
            break
        i = draw(len(tokens))
        op = draw(4)
        if op == 0:
            del tokens[i]
        elif op == 1:
            tokens.insert(i, tokens[i])
        elif op == 2:
            j = draw(len(tokens))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        else:
            tokens[i] = pick(draw, [*_KEYWORDS, *_NUMBERS, *_HUGE_NUMBERS[:1], "(", ")", ",", "#", "'", "=="])
    return " ".join(tokens)


def degenerate_program(draw: Draw) -> str:
    """Shapes that break recursive or quadratic code: deep nesting, long chains, huge numbers,
    keyword names after `at`, one very long line, many duplicates."""
    head = "object agent = color(#ff0000)\nregion goal = color(#00ff00) at start\n"
    atom = "inside(agent, goal)"
    n = pick(draw, [50, 99, 100, 101, 250, 500, 1200])
    shapes = [
        lambda: "goal g: at end " + "not " * n + atom,
        lambda: "goal g: at end " + " and ".join([atom] * n),
        lambda: "goal g: at end " + " or ".join([atom] * n),
        lambda: "goal g: at end speed(agent) <= " + " + ".join(["0.001"] * n),
        lambda: "region many = " + " | ".join(["box(0, 0, 0.5, 0.5)"] * n) + "\ngoal g: at end inside(agent, many)",
        lambda: "goal g: at end " + "(" * n + atom + ")" * n,
        lambda: "goal g: at end " + f"{atom} and (" * n + atom + ")" * n,
        lambda: "goal g: at end " + "always " * n + atom,
        lambda: "goal g: at end inside(agent, " + "grow(" * n + "goal" + ", 0.01)" * n + ")",
        lambda: "goal g: at end speed(agent) <= " + "-" * n + "1",
        lambda: f"goal g: at end inside(agent, goal, frac={pick(draw, _HUGE_NUMBERS)})",
        lambda: f"goal g: at {pick(draw, _HUGE_NUMBERS)} {atom}",
        lambda: f"param p = {'9' * 200} * {'9' * 200}\ngoal g: at end speed(agent) <= p",
        lambda: f"param {pick(draw, _KEYWORDS[:8])} = 0.5\ngoal g: at end ({pick(draw, _KEYWORDS[:8])}) >= x(agent)",
        lambda: " ".join(f"process p{i}: always {atom}" for i in range(n)) + f" goal g: at end {atom}",
        lambda: "region goal = box(0, 0, 1, 1)\n" * n + f"goal g: at end {atom}",
    ]
    return head + pick(draw, shapes)() + "\n"
