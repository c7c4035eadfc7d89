"""Video files as numpy arrays: frames [T, H, W, 3] uint8. No torch (the task scorers use this).

mp4 through imageio-ffmpeg (H.264, lossy), gif through Pillow (lossless palette; runs of
identical frames, which GIF writers merge, are expanded again on reading), folders of PNGs
(lossless).

Videos come from elsewhere (other benchmarks, generated files), so reading is budgeted: at
most `max_frames` frames, `max_frame_pixels` pixels per frame and `max_video_pixels` pixels
in all (frames x height x width), checked from headers before decoding where the format
gives sizes (images, GIF screens) and frame by frame otherwise, so a small file can never
ask for gigabytes. Only regular files are read: a FIFO or a device would block or never end.
The defaults (environment variables override them) admit the design's largest case, 160
frames at 1024 x 1024.
"""

from __future__ import annotations

import math
import os
import re
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ruledsl.source import file_kind, stat_mode

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


class VideoReadError(Exception):
    """The path is not a readable video, gif or folder of frames."""


@dataclass(frozen=True)
class FrameBudget:
    """How much video one read may produce (see the module docstring)."""

    max_frames: int = 4096
    max_frame_pixels: int = 4096 * 4096
    max_video_pixels: int = 160 * 1024 * 1024

    @classmethod
    def from_env(cls) -> FrameBudget:
        """The defaults, or RULEDSL_MAX_FRAMES / RULEDSL_MAX_FRAME_PIXELS / RULEDSL_MAX_VIDEO_PIXELS."""
        values = {}
        for field_name in ("max_frames", "max_frame_pixels", "max_video_pixels"):
            variable = "RULEDSL_" + field_name.upper()
            text = os.environ.get(variable)
            if text is None:
                continue
            try:
                values[field_name] = int(text)
            except ValueError:
                raise VideoReadError(f"{variable}={text!r} is not a whole number") from None
            if values[field_name] < 1:
                raise VideoReadError(f"{variable}={text!r} must be at least 1")
        return cls(**values)

    def check_frame(self, where: str, width: int, height: int) -> None:
        if width * height > self.max_frame_pixels:
            raise VideoReadError(
                f"{where}: a {width}x{height} frame is over the budget of {self.max_frame_pixels:,} pixels "
                "per frame (set RULEDSL_MAX_FRAME_PIXELS to allow more, or downscale it)"
            )

    def check_video(self, where: str, frames: int, width: int, height: int) -> None:
        if frames > self.max_frames:
            raise VideoReadError(
                f"{where}: {frames:,} frames is over the budget of {self.max_frames:,} frames "
                "(set RULEDSL_MAX_FRAMES to allow more)"
            )
        if frames * width * height > self.max_video_pixels:
            raise VideoReadError(
                f"{where}: {frames:,} frames of {width}x{height} ({frames * width * height:,} pixels) is over the "
                f"budget of {self.max_video_pixels:,} pixels per video (set RULEDSL_MAX_VIDEO_PIXELS to allow "
                "more, or downscale or shorten the video)"
            )


def _require_regular_file(path: Path) -> None:
    mode = stat_mode(path, VideoReadError, "no such file or folder")
    if not stat.S_ISREG(mode):
        raise VideoReadError(f"{path}: is {file_kind(mode)}, not a regular file")


def _image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the image header without decoding it, if Pillow knows the format."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: the budget decides instead
            with Image.open(path) as image:
                return image.size
    except Image.DecompressionBombError:
        return None  # over Pillow's own limit; decoding will fail with its message
    except Exception:  # not an image Pillow reads: leave the verdict to the decoder
        return None


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


def read_image(path: str | Path, budget: FrameBudget | None = None) -> np.ndarray:
    """One image -> uint8 [H, W, 3]; its size is checked against the budget before decoding."""
    import imageio.v3 as iio

    path = Path(path)
    budget = budget or FrameBudget.from_env()
    _require_regular_file(path)
    size = _image_size(path)
    if size is not None:
        budget.check_frame(str(path), *size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = np.asarray(iio.imread(path))
    except VideoReadError:
        raise
    except Exception as error:  # imageio raises plugin-specific errors
        raise VideoReadError(f"{path}: cannot read image ({error})") from error
    return _rgb_uint8(image[None], str(path))[0]


def read_frames(path: str | Path, budget: FrameBudget | None = None) -> np.ndarray:
    """A video file (mp4, gif, ...) or a folder of frame images (sorted by name) -> uint8 [T, H, W, 3],
    within `budget` (default: FrameBudget.from_env())."""
    return np.stack(list(iter_frames(path, budget)))


def iter_frames(path: str | Path, budget: FrameBudget | None = None) -> Iterator[np.ndarray]:
    """The frames of `read_frames`, one uint8 [H, W, 3] array at a time, so a caller can shrink each
    frame before the next is decoded (the whole video is never in memory at full size). The budget
    is checked as in `read_frames`; every frame has the first one's shape."""
    path = Path(path)
    budget = budget or FrameBudget.from_env()
    if path.is_dir():
        return _iter_folder(path, budget)
    _require_regular_file(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise VideoReadError(f"{path}: a single image; pass a video, a gif or a folder of frames")
    if path.suffix.lower() == ".gif":
        return _iter_gif(path, budget)
    return _iter_video_file(path, budget)


def _iter_folder(path: Path, budget: FrameBudget) -> Iterator[np.ndarray]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VideoReadError(f"{path}: folder has no frame images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    for file in files:
        _require_regular_file(file)
    sizes = {size for size in map(_image_size, files) if size is not None}
    if len(sizes) > 1:
        raise VideoReadError(f"{path}: frames differ in size: {', '.join(f'{w}x{h}' for w, h in sorted(sizes))}")
    if sizes:
        width, height = sizes.pop()
        budget.check_frame(str(path), width, height)
        budget.check_video(str(path), len(files), width, height)
    return _same_shape(path, (read_image(f, budget) for f in files))


def _same_shape(path: Path, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    first = None
    for frame in frames:
        if first is None:
            first = frame.shape
        elif frame.shape != first:
            raise VideoReadError(f"{path}: frames differ in size: {sorted({first, frame.shape})}")
        yield frame


def _iter_video_file(path: Path, budget: FrameBudget) -> Iterator[np.ndarray]:
    """Any format imageio decodes (mp4 through ffmpeg, ...): frame by frame, so the budget stops
    an over-long video before it is all in memory."""
    import imageio.v3 as iio

    first = None
    count = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for frame in iio.imiter(path):
                frame = np.asarray(frame)
                if frame.ndim < 2 or (first is not None and frame.shape != first):
                    raise VideoReadError(f"{path}: frames of shape {frame.shape} after {first}")
                height, width = frame.shape[:2]
                if first is None:
                    budget.check_frame(str(path), width, height)
                    first = frame.shape
                count += 1
                budget.check_video(str(path), count, width, height)
                yield _rgb_uint8(frame[None], str(path))[0]
    except VideoReadError:
        raise
    except Exception as error:
        raise VideoReadError(f"{path}: cannot read as a video ({type(error).__name__}: {error})") from error
    if count == 0:
        raise VideoReadError(f"{path}: the video has no frames")


_FRAME_MS = re.compile(r"(?<![A-Za-z0-9_])frame_ms=([0-9]{1,6})(?![0-9])")


def _gif_base_ms(comment: object, durations: list[int]) -> int:
    """The duration of one video frame: `frame_ms=N` in the comment (written by `write_frames`),
    else the gcd of all durations. A comment that is not ours (no number, `frame_ms=abc`) is
    ignored; 0 means "no timing": every stored frame counts once."""
    text = comment.decode("utf-8", "replace") if isinstance(comment, bytes) else str(comment)
    match = _FRAME_MS.search(text)
    if match and int(match.group(1)) > 0:
        return int(match.group(1))
    return math.gcd(*durations)


def _iter_gif(path: Path, budget: FrameBudget) -> Iterator[np.ndarray]:
    """GIF frames, each repeated duration / base times (see `_gif_base_ms`), within the budget:
    the screen size is checked before decoding, the stored frames while counting them (a first pass
    that keeps only durations) and the expanded count before anything is yielded."""
    from PIL import Image, ImageSequence

    where = str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                width, height = image.size
                budget.check_frame(where, width, height)
                comment = image.info.get("comment", b"")
                durations = []
                for frame in ImageSequence.Iterator(image):
                    durations.append(max(0, int(frame.info.get("duration", 0) or 0)))
                    budget.check_video(where, len(durations), width, height)
    except VideoReadError:
        raise
    except Exception as error:  # Pillow raises several kinds for broken files
        raise VideoReadError(f"{path}: cannot read as a gif ({type(error).__name__}: {error})") from error
    base = _gif_base_ms(comment, durations)
    repeats = [max(1, round(d / base)) if base > 0 else 1 for d in durations]
    budget.check_video(f"{where} (frame durations expanded)", sum(repeats), width, height)
    return _same_shape(path, _expand_gif(path, repeats))


def _expand_gif(path: Path, repeats: list[int]) -> Iterator[np.ndarray]:
    from PIL import Image, ImageSequence

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                for frame, repeat in zip(ImageSequence.Iterator(image), repeats):
                    array = np.asarray(frame.convert("RGB"))
                    for _ in range(repeat):
                        yield array
    except VideoReadError:
        raise
    except Exception as error:
        raise VideoReadError(f"{path}: cannot read as a gif ({type(error).__name__}: {error})") from error


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
                writer.append_data(frame)  # type: ignore[attr-defined]  # imageio v2 writer
    else:
        raise ValueError(f"cannot write {suffix!r}: use .mp4, .gif, .png, or a folder path")
    return path
