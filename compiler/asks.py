"""`ask "question"` atoms: a VQA model's yes/no margin as one atom among the geometric ones.

The compiler knows no model: it talks to a `VQAScorer` (the runtime's `ruledsl.runtime.vqa.VLMScorer`,
or anything with the same two methods), so `ruledsl.compiler` never imports transformers.

Where an ask sits decides what the model sees (`ir.place_asks`, part of lowering):
- at video level (a rule's body, or under `and`/`or`/`during` only): one question about a clip of
  `ask_frames` frames spread evenly over the ask's window (the whole video, or the `during` window);
  its value holds for the window (its trace is constant over it);
- under a temporal operator (`always`, `eventually`, `next`, `until`, `at`): one question per frame,
  a margin trace [B, T] like any geometric atom (`at` asks about its one frame only).

The margin is log p(yes) − log p(no) of the answer's first token (each answer's token variants
summed in probability); the exact verdict is margin > 0.
"""

from __future__ import annotations

from typing import Protocol

import torch

from ruledsl.compiler import ir

DEFAULT_ASK_FRAMES = 4  # frames a video-level ask shows the model (spread over its window)


class VQAError(ValueError):
    """A question the VQA model cannot answer as asked (too long for its context, ...), or a model that cannot be used."""


class VQAScorer(Protocol):
    def prepare(self, question: str, frames: int) -> None:
        """Check (and cache) the question's text inputs for `frames` images; raise VQAError if it cannot be asked."""

    def margins(self, question: str, clips: torch.Tensor) -> torch.Tensor:
        """clips [N, K, 3, H, W] in [0, 1] -> [N] margins log p(yes) - log p(no), differentiable in the clips."""


def spread(lo: int, hi: int, k: int) -> list[int]:
    """`k` frame indices spread evenly over [lo, hi], both ends included (repeats when the window is shorter)."""
    if k == 1:
        return [(lo + hi) // 2]
    return [lo + round(i * (hi - lo) / (k - 1)) for i in range(k)]


class AskEvaluation:
    """One call's ask margins over the full-resolution video; every margin is computed once per call.

    `frames(ask, lo, hi)` -> [B, hi - lo + 1] one question per frame; `clip(ask, lo, hi)` -> [B], one
    question about `ask_frames` frames spread over [lo, hi].
    """

    def __init__(self, video: torch.Tensor, scorer: VQAScorer | None, ask_frames: int):
        self.video = video
        self.scorer = scorer
        self.ask_frames = ask_frames
        self.per_frame: dict[tuple[str, int], torch.Tensor] = {}  # (question, frame) -> [B]
        self.clips: dict[tuple[str, int, int], torch.Tensor] = {}  # (question, lo, hi) -> [B]

    def _score(self, question: str, clips: torch.Tensor) -> torch.Tensor:
        if self.scorer is None:  # compile_program refuses asks without a scorer; this is a direct caller
            raise VQAError(f"`ask {question!r}` needs a VQA model, and none was given")
        return self.scorer.margins(question, clips).to(self.video.dtype)

    def frames(self, ask: ir.Ask, lo: int, hi: int) -> torch.Tensor:
        missing = [t for t in range(lo, hi + 1) if (ask.question, t) not in self.per_frame]
        if missing:
            b = self.video.shape[0]
            clips = self.video[:, missing].reshape(b * len(missing), 1, *self.video.shape[2:])
            margins = self._score(ask.question, clips).reshape(b, len(missing))
            for i, t in enumerate(missing):
                self.per_frame[(ask.question, t)] = margins[:, i]
        return torch.stack([self.per_frame[(ask.question, t)] for t in range(lo, hi + 1)], 1)

    def clip(self, ask: ir.Ask, lo: int, hi: int) -> torch.Tensor:
        key = (ask.question, lo, hi)
        if key not in self.clips:
            self.clips[key] = self._score(ask.question, self.video[:, spread(lo, hi, self.ask_frames)])
        return self.clips[key]
