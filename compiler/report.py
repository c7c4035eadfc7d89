"""Evaluation results as pydantic models: tensors in memory, plain lists in JSON.

Tensors keep their graph (`loss`, `smooth_robustness`) so a report can be
back-propagated; `model_dump_json()` turns them into lists, with frames that a rule
does not constrain written as null.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, field_serializer

from ruledsl.compiler.semantics import BIG


def _plain(value: torch.Tensor):
    value = value.detach().cpu()
    if value.dtype == torch.bool:
        return value.tolist()
    return (
        [
            [None if abs(x) >= BIG / 2 else round(x, 6) for x in row]
            if isinstance(row, list)
            else (None if abs(row) >= BIG / 2 else round(row, 6))
            for row in value.tolist()
        ]
        if value.dim()
        else round(value.item(), 6)
    )


class RuleReport(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    role: str
    weight: float
    robustness: torch.Tensor  # [B] exact margin; > 0 means satisfied
    smooth_robustness: torch.Tensor  # [B] smooth margin (differentiable)
    verdict: torch.Tensor  # [B] bool, from the exact semantics
    trace: torch.Tensor  # [B, T] exact margin of the rule's constraint at each frame (BIG: not constrained)
    violations: list[list[tuple[int, int]]]  # per candidate: inclusive frame intervals where the rule breaks
    loss: torch.Tensor  # [B] smooth, differentiable

    @field_serializer("robustness", "smooth_robustness", "verdict", "trace", "loss")
    def _tensor(self, value: torch.Tensor):
        return _plain(value)


class Report(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    satisfied: torch.Tensor  # [B] bool: every rule holds (exact semantics)
    rules: dict[str, RuleReport]
    loss: torch.Tensor  # scalar: mean over candidates of the weighted sum of rule losses
    loss_per_candidate: torch.Tensor  # [B]
    frames: int
    candidates: int
    semantics: str  # the smooth semantics used for losses

    @field_serializer("satisfied", "loss", "loss_per_candidate")
    def _tensor(self, value: torch.Tensor):
        return _plain(value)

    def failed_rules(self, candidate: int = 0) -> list[str]:
        return [name for name, rule in self.rules.items() if not bool(rule.verdict[candidate])]
