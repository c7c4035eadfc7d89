"""Reading and writing videos for `ruledsl eval` (imageio; mp4 through imageio-ffmpeg).

Videos in memory are float tensors [T, 3, H, W] in [0, 1] (add the batch dim to score).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".gif", ".webm", ".avi", ".mov", ".mkv"}


class VideoReadError(Exception):
    """The path is not a readable video, gif or folder of frames (exit code 2 in the CLI)."""


def _to_tensor(frames: np.ndarray, where: str) -> torch.Tensor:
    if frames.ndim == 3:  # grey frames
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4):
        raise VideoReadError(f"{where}: expected frames of shape [T, H, W, 3], got {frames.shape}")
    frames = frames[..., :3]
    if frames.dtype == np.uint8:
        data = frames.astype(np.float32) / 255.0
    elif frames.dtype == np.uint16:
        data = frames.astype(np.float32) / 65535.0
    else:
        data = frames.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(data)).permute(0, 3, 1, 2).contiguous()


def read_video(path: str | Path) -> torch.Tensor:
    """A video file (mp4, gif, ...) or a folder of frame images (sorted by name) -> [T, 3, H, W] in [0, 1]."""
    import imageio.v3 as iio

    path = Path(path)
    if not path.exists():
        raise VideoReadError(f"{path}: no such file or folder")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise VideoReadError(f"{path}: folder has no frame images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        try:
            frames = [np.asarray(iio.imread(f)) for f in files]
        except Exception as error:  # imageio raises plugin-specific errors
            raise VideoReadError(f"{path}: cannot read frames ({error})") from error
        shapes = {f.shape for f in frames}
        if len(shapes) != 1:
            raise VideoReadError(f"{path}: frames differ in size: {sorted(shapes)}")
        return _to_tensor(np.stack(frames), str(path))
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise VideoReadError(f"{path}: a single image; pass a video, a gif or a folder of frames")
    if path.suffix.lower() == ".gif":
        return _to_tensor(_read_gif(path), str(path))
    try:
        frames = np.asarray(iio.imread(path, index=None))
    except Exception as error:
        raise VideoReadError(f"{path}: cannot read as a video ({type(error).__name__}: {error})") from error
    return _to_tensor(frames, str(path))


def _read_gif(path: Path) -> np.ndarray:
    """GIF frames with merged duplicates expanded again.

    GIF writers (Pillow among them) store a run of identical frames as one frame with
    a longer duration, which would silently shorten the video. Each frame is repeated
    duration / base times, base being the frame duration that `write_video` records
    in the GIF comment, or else the gcd of all durations.
    """
    import math

    from PIL import Image, ImageSequence

    try:
        with Image.open(path) as image:
            comment = image.info.get("comment", b"")
            frames, durations = [], []
            for frame in ImageSequence.Iterator(image):
                frames.append(np.asarray(frame.convert("RGB")))
                durations.append(int(frame.info.get("duration", 0) or 0))
    except Exception as error:  # Pillow raises several kinds for broken files
        raise VideoReadError(f"{path}: cannot read as a gif ({type(error).__name__}: {error})") from error
    text = comment.decode("utf-8", "replace") if isinstance(comment, bytes) else str(comment)
    base = int(text.split("frame_ms=")[1].split()[0]) if "frame_ms=" in text else math.gcd(*durations)
    repeats = [max(1, round(d / base)) if base > 0 else 1 for d in durations]
    return np.stack([f for f, k in zip(frames, repeats) for _ in range(k)])


def write_video(path: str | Path, video: torch.Tensor, fps: int = 4) -> Path:
    """[T, 3, H, W] in [0, 1] -> mp4 (H.264), gif, or a folder of PNGs (lossless) if `path` has no suffix."""
    import imageio.v3 as iio

    path = Path(path)
    frames = (video.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    suffix = path.suffix.lower()
    if suffix == "":
        path.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames):
            iio.imwrite(path / f"{i:05d}.png", frame)
    elif suffix == ".gif":
        frame_ms = int(1000 / fps)
        iio.imwrite(path, frames, duration=frame_ms, loop=0, comment=f"ruledsl frame_ms={frame_ms}".encode())
    elif suffix == ".mp4":
        import imageio

        # macro_block_size=1: keep the size (no silent resize); yuv420p needs even sides, so pad by one if odd.
        h, w = frames.shape[1:3]
        padded = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        with imageio.get_writer(path, fps=fps, codec="libx264", quality=9, macro_block_size=1) as writer:
            for frame in padded:
                writer.append_data(frame)
    else:
        raise ValueError(f"cannot write {suffix!r}: use .mp4, .gif, or a folder path")
    return path
