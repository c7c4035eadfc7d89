"""Videos as torch tensors for the compiler: [T, 3, H, W] float in [0, 1] (see ruledsl.video for files)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ruledsl.video import VideoReadError, iter_frames, read_frames, write_frames

__all__ = ["VideoReadError", "read_video", "shrink", "write_video", "to_tensor", "to_frames"]


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float [T, 3, H, W] in [0, 1]."""
    return torch.from_numpy(frames.astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()


def to_frames(video: torch.Tensor) -> np.ndarray:
    """float [T, 3, H, W] in [0, 1] -> uint8 [T, H, W, 3]."""
    return (video.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


def shrink(frames: torch.Tensor, resolution: int | None) -> torch.Tensor:
    """Area-average frames [..., 3, H, W] so the long side is at most `resolution` pixels (None: as they are).

    Every measure is in fractions of the frame, so scores barely depend on the pixel count, while the
    cost (dominated by the per-pixel CIE Lab conversion) falls with it. Frames are pooled independently,
    so shrinking a video frame by frame gives the same tensor as shrinking it whole.
    """
    *lead, c, h, w = frames.shape
    if resolution is None or max(h, w) <= resolution:
        return frames
    factor = math.ceil(max(h, w) / resolution)  # an integer factor: plain average pooling, the cheapest kind
    small = F.avg_pool2d(frames.reshape(-1, c, h, w), factor, ceil_mode=True)
    return small.reshape(*lead, c, *small.shape[-2:])


def read_video(path: str | Path, resolution: int | None = None) -> torch.Tensor:
    """A video file (mp4, gif, ...) or a folder of frame images -> [T, 3, H, W] in [0, 1].

    With `resolution`, each frame is shrunk to the compiler's working resolution as soon as it is
    decoded, in integers (`_pool_uint8`), so memory holds one uint8 frame and the small video: a
    1024 x 1024 video costs about what a 256 x 256 one does. `CompiledProgram(resolution=N)` on the
    result scores what it would on the full-size video (it shrinks it the same way, `shrink`).
    """
    if resolution is None:
        return to_tensor(read_frames(path))
    if resolution < 8:
        raise ValueError(f"resolution must be at least 8 pixels (or None for full size), got {resolution}")
    small = [_pool_uint8(frame, resolution) for frame in iter_frames(path)]
    return torch.from_numpy(np.stack(small)).permute(0, 3, 1, 2).contiguous()


def _pool_uint8(frame: np.ndarray, resolution: int) -> np.ndarray:
    """uint8 [H, W, 3] -> float32 [h, w, 3] in [0, 1]: `shrink`'s average pooling (windows cut at the
    bottom and right edges average only the pixels they cover, as `ceil_mode` does), summed in uint32.
    No full-size float copy: float temporaries of frame size, freed between frames, fragment the heap
    (glibc keeps them: +7 MB per 1024 x 1024 frame)."""
    h, w, _ = frame.shape
    if max(h, w) <= resolution:
        return frame.astype(np.float32) / 255.0
    factor = math.ceil(max(h, w) / resolution)
    rows, cols = -(-h // factor), -(-w // factor)
    if (rows * factor, cols * factor) != (h, w):
        frame = np.pad(frame, ((0, rows * factor - h), (0, cols * factor - w), (0, 0)))
    sums = frame.reshape(rows, factor, cols, factor, 3).sum(axis=(1, 3), dtype=np.uint32)
    count_y = np.minimum(factor, h - np.arange(rows) * factor)
    count_x = np.minimum(factor, w - np.arange(cols) * factor)
    counts = (count_y[:, None] * count_x[None, :]).astype(np.float32)[..., None]
    return (sums.astype(np.float32) / (counts * 255.0)).astype(np.float32)


def write_video(path: str | Path, video: torch.Tensor, fps: int = 4) -> Path:
    """[T, 3, H, W] in [0, 1] -> mp4, gif, or a folder of PNGs (lossless) if `path` has no suffix."""
    return write_frames(path, to_frames(video), fps)
