"""Video files as numpy arrays: frames [T, H, W, 3] uint8. No torch (the task scorers use this).

mp4 through imageio-ffmpeg (H.264, lossy), gif through Pillow (lossless palette; runs of
identical frames, which GIF writers merge, are expanded again on reading), folders of PNGs
(lossless).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


class VideoReadError(Exception):
    """The path is not a readable video, gif or folder of frames."""


def _rgb_uint8(frames: np.ndarray, where: str) -> np.ndarray:
    if frames.ndim == 3:  # grey frames
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4) or frames.shape[0] == 0:
        raise VideoReadError(f"{where}: expected frames of shape [T, H, W, 3], got {frames.shape}")
    frames = frames[..., :3]
    if frames.dtype == np.uint16:
        frames = (frames // 257).astype(np.uint8)
    elif frames.dtype != np.uint8:
        frames = (np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(frames)


def read_image(path: str | Path) -> np.ndarray:
    import imageio.v3 as iio

    try:
        image = np.asarray(iio.imread(path))
    except Exception as error:  # imageio raises plugin-specific errors
        raise VideoReadError(f"{path}: cannot read image ({error})") from error
    return _rgb_uint8(image[None], str(path))[0]


def read_frames(path: str | Path) -> np.ndarray:
    """A video file (mp4, gif, ...) or a folder of frame images (sorted by name) -> uint8 [T, H, W, 3]."""
    import imageio.v3 as iio

    path = Path(path)
    if not path.exists():
        raise VideoReadError(f"{path}: no such file or folder")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise VideoReadError(f"{path}: folder has no frame images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        frames = [read_image(f) for f in files]
        if len({f.shape for f in frames}) != 1:
            raise VideoReadError(f"{path}: frames differ in size: {sorted({f.shape for f in frames})}")
        return np.stack(frames)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise VideoReadError(f"{path}: a single image; pass a video, a gif or a folder of frames")
    if path.suffix.lower() == ".gif":
        return _read_gif(path)
    try:
        frames = np.asarray(iio.imread(path, index=None))
    except Exception as error:
        raise VideoReadError(f"{path}: cannot read as a video ({type(error).__name__}: {error})") from error
    return _rgb_uint8(frames, str(path))


def _read_gif(path: Path) -> np.ndarray:
    """GIF frames, each repeated duration / base times (base: the frame duration written by
    `write_frames` in the GIF comment, else the gcd of all durations)."""
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


def write_frames(path: str | Path, frames: np.ndarray, fps: int = 4) -> Path:
    """uint8 [T, H, W, 3] -> mp4 (H.264), gif, png (one frame), or a folder of PNGs if `path` has no suffix."""
    import imageio.v3 as iio

    path = Path(path)
    frames = _rgb_uint8(np.asarray(frames), str(path))
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == "":
        path.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames):
            iio.imwrite(path / f"{i:05d}.png", frame)
    elif suffix == ".png":
        iio.imwrite(path, frames[0])
    elif suffix == ".gif":
        frame_ms = int(1000 / fps)
        iio.imwrite(path, frames, duration=frame_ms, loop=0, comment=f"ruledsl frame_ms={frame_ms}".encode())
    elif suffix == ".mp4":
        import imageio

        # macro_block_size=1: no silent resize; yuv420p needs even sides, so pad odd ones by one pixel.
        h, w = frames.shape[1:3]
        padded = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        with imageio.get_writer(path, fps=fps, codec="libx264", quality=9, macro_block_size=1) as writer:
            for frame in padded:
                writer.append_data(frame)
    else:
        raise ValueError(f"cannot write {suffix!r}: use .mp4, .gif, .png, or a folder path")
    return path
