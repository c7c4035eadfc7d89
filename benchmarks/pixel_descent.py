"""Does the compiled loss repair a broken clip when we descend on the pixels directly?

A sanity check of gradient quality (the runtime optimizes a model, not pixels): the broken
maze clips of examples/videos (a stray blob in a wall; the broken clip: wall crossing, stray blob, jump), blurred by a 3x3 box filter,
60 normalised gradient steps, for the true colour-mask gradient and for surrogate widths.

Usage: python benchmarks/pixel_descent.py
"""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import torch
import torch.nn.functional as F

import ruledsl

ROOT = Path(__file__).resolve().parent.parent


def clips() -> dict[str, torch.Tensor]:
    spec = importlib.util.spec_from_file_location("make_videos", ROOT / "examples" / "videos" / "make_videos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    solved = [(3, c) for c in (1, 2, 3, 4, 5, 6, 6, 6)]
    broken = [(3, 1), (3, 2), (2, 2), (2, 3), (3, 5), (3, 6), (3, 6), (3, 6)]
    videos = {
        "stray blob in a wall": module.maze(solved, stray_at=(1, 3))[None],
        "maze_broken.gif": module.maze(broken, stray_at=(4, 3))[None],
    }
    return {
        name: F.avg_pool3d(v.permute(0, 2, 1, 3, 4), (1, 3, 3), 1, (0, 1, 1)).permute(0, 2, 1, 3, 4)
        for name, v in videos.items()
    }


def main() -> None:
    torch.set_num_threads(1)
    print(f"{'clip':>22} {'surrogate':>9} {'step':>5} {'loss: start':>12} {'end':>7}  rules still broken")
    for (name, clip), surrogate, lr in itertools.product(clips().items(), (None, 2.0, 4.0), (0.1, 0.3)):
        program = ruledsl.load(ROOT / "examples" / "maze.rule").compile(surrogate=surrogate)
        video = clip.clone().requires_grad_(True)
        start = float(program(video.detach()).loss)
        for _ in range(60):
            (grad,) = torch.autograd.grad(program(video).loss, video)
            with torch.no_grad():
                video -= lr * grad / (grad.norm() + 1e-12)
                video.clamp_(0, 1)
        report = program(video.detach())
        print(
            f"{name:>22} {str(surrogate):>9} {lr:5.1f} {start:12.3f} {float(report.loss):7.3f}  {report.failed_rules() or '-'}"
        )


if __name__ == "__main__":
    main()
