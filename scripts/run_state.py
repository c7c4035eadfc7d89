"""Training-loop parts shared by the training scripts: the update step, and the resumable state (one
`last.pt` per run folder).

The checkpoint holds the model, optimizer, lr schedule, EMA and RNG states plus the script's own
fields (step, log, ...); it is written atomically (temp file, then rename) and read with
`torch.load(weights_only=True)` (plain tensors and containers, no pickled code). Shipped weights
never go through this file: they are written with save_pretrained (safetensors).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch


def save_run_state(path: Path, model, optimizer, scheduler, ema, rng: random.Random, **fields) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "ema": ema.state_dict(),
        "rng": rng.getstate(),
        "torch_rng": torch.get_rng_state(),
        **fields,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    torch.save(state, temporary)
    temporary.replace(path)
    if "log" in fields:
        (path.parent / "log.json").write_text(json.dumps(fields["log"], indent=1) + "\n")


def load_run_state(path: Path, model, optimizer, scheduler, ema, rng: random.Random) -> dict:
    """Restore everything `save_run_state` wrote into the given objects; returns the script's own fields."""
    state = torch.load(path, weights_only=True)
    model.load_state_dict(state.pop("model"))
    optimizer.load_state_dict(state.pop("optimizer"))
    scheduler.load_state_dict(state.pop("scheduler"))
    ema.load_state_dict(state.pop("ema"))
    version, internal, gauss = state.pop("rng")
    rng.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state.pop("torch_rng"))
    return state


def update(loss: torch.Tensor, params, optimizer, scheduler, ema, clip: float = 1.0) -> float:
    """One training step: backward, gradient clipping, optimizer and lr-schedule step, EMA update."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, clip)
    optimizer.step()
    scheduler.step()
    ema.step(params)
    return loss.item()
