"""Evaluating a graph of sub-computations without recursion.

Lowering and evaluation both compute a value per node of a tree or DAG from the values
of its inputs. Written as recursion, a program with a formula nested a few hundred deep
(or a long chain, which the parser nests) exhausts Python's stack. `evaluate` walks the
graph with an explicit stack instead: it computes each input before its user, and each
node once (the cache is the caller's, so shared sub-terms are computed once per call).
No torch here: the checker folds constants with it, the compiler lowers and evaluates with it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any


def evaluate(
    root: Hashable,
    cache: dict,
    inputs: Callable[[Any], Iterable[Hashable]],
    compute: Callable[[Any], Any],
) -> Any:
    """The value of `root`: `compute(key)` runs once every key of `inputs(key)` is in `cache`.

    `compute` reads its inputs' values from `cache`; it may also ask for values that
    `inputs` did not declare (they are evaluated on demand, one level deeper).
    """
    if root in cache:
        return cache[root]
    stack = [root]
    while stack:
        key = stack[-1]
        if key in cache:
            stack.pop()
            continue
        missing = [k for k in inputs(key) if k not in cache]
        if missing:
            stack.extend(reversed(missing))  # the first input is computed first
            continue
        cache[key] = compute(key)
        stack.pop()
    return cache[root]


class ByIdentity:
    """A cache key for a node compared by identity (syntax nodes hash their whole subtree)."""

    __slots__ = ("node",)

    def __init__(self, node: Any):
        self.node = node

    def __hash__(self) -> int:
        return id(self.node)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ByIdentity) and other.node is self.node
