"""Videos as torch tensors for the compiler: [T, 3, H, W] float in [0, 1] (see ruledsl.video for files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ruledsl.video import VideoReadError, read_frames, write_frames

__all__ = ["VideoReadError", "read_video", "write_video", "to_tensor", "to_frames"]


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float [T, 3, H, W] in [0, 1]."""
    return torch.from_numpy(frames.astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()


def to_frames(video: torch.Tensor) -> np.ndarray:
    """float [T, 3, H, W] in [0, 1] -> uint8 [T, H, W, 3]."""
    return (video.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


def read_video(path: str | Path) -> torch.Tensor:
    """A video file (mp4, gif, ...) or a folder of frame images -> [T, 3, H, W] in [0, 1]."""
    return to_tensor(read_frames(path))


def write_video(path: str | Path, video: torch.Tensor, fps: int = 4) -> Path:
    """[T, 3, H, W] in [0, 1] -> mp4, gif, or a folder of PNGs (lossless) if `path` has no suffix."""
    return write_frames(path, to_frames(video), fps)
