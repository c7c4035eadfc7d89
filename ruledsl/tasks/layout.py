"""The VBVR-Bench folder layout: writing our instances, reading ours or a real benchmark's.

TASK/00000/first_frame.png   the input frame (required when reading)
           prompt.txt        the task in words (required when reading)
           final_frame.png   the expected final frame (optional)
           ground_truth.mp4  a solution video (optional)
           metadata.json     ours: family, seed, grid, entities, solution path, render size (optional)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ruledsl.tasks.families import Instance
from ruledsl.tasks.render import DEFAULT_SIZE, render, solution_plan
from ruledsl.video import VideoReadError, read_frames, read_image, write_frames

FORMAT_VERSION = 1


class TaskFolderError(Exception):
    """A folder that is not a task: says which file is missing or unreadable."""


@dataclass
class Task:
    """One task folder. `metadata` is None for folders from other benchmarks."""

    path: Path
    first_frame: np.ndarray  # uint8 [H, W, 3]
    prompt: str
    final_frame: np.ndarray | None
    metadata: dict | None

    @property
    def family(self) -> str | None:
        return self.metadata.get("family") if self.metadata else None

    @property
    def instance(self) -> Instance | None:
        return Instance.from_dict(self.metadata) if self.metadata else None

    def ground_truth(self) -> np.ndarray | None:
        path = self.path / "ground_truth.mp4"
        return read_frames(path) if path.exists() else None


def program_params(metadata: dict | None, size: tuple[int, int]) -> dict[str, float]:
    """The rule-program params a task's metadata sets, for frames of `size` (height, width).

    `cell`: one grid cell in fractions of the frame's longer side (the unit the example programs
    use). The one place this is computed: `eval --task`, `optimize --task`, benchmarks.
    """
    grid = (metadata or {}).get("grid")
    if not grid:
        return {}
    height, width = size
    return {"cell": max(height / grid["rows"], width / grid["cols"]) / max(height, width)}


def task_params(task: Task, declared) -> dict[str, float]:
    """The params among `declared` (a program's param names) that this task's metadata sets."""
    found = program_params(task.metadata, task.first_frame.shape[:2])
    return {name: value for name, value in found.items() if name in declared}


def write_task(
    instance: Instance,
    folder: str | Path,
    size: tuple[int, int] = DEFAULT_SIZE,
    frames: int | None = None,
    fps: int = 4,
) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    video = render(instance, solution_plan(instance, frames), size)
    write_frames(folder / "first_frame.png", video[:1])
    write_frames(folder / "final_frame.png", video[-1:])
    write_frames(folder / "ground_truth.mp4", video, fps=fps)
    (folder / "prompt.txt").write_text(instance.prompt + "\n", encoding="utf-8")
    meta = {
        "format": FORMAT_VERSION,
        **instance.to_dict(),
        "render": {"height": size[0], "width": size[1], "frames": int(video.shape[0]), "fps": fps},
    }
    (folder / "metadata.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return folder


def read_task(folder: str | Path) -> Task:
    folder = Path(folder)
    if not folder.is_dir():
        raise TaskFolderError(f"{folder}: not a folder (a task is a folder with first_frame.png and prompt.txt)")
    for required in ("first_frame.png", "prompt.txt"):
        if not (folder / required).exists():
            raise TaskFolderError(f"{folder}: missing {required}")
    try:
        first = read_image(folder / "first_frame.png")
        final = read_image(folder / "final_frame.png") if (folder / "final_frame.png").exists() else None
    except VideoReadError as error:
        raise TaskFolderError(str(error)) from error
    prompt = (folder / "prompt.txt").read_text(encoding="utf-8", errors="replace").strip()
    metadata = None
    if (folder / "metadata.json").exists():
        try:
            metadata = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise TaskFolderError(f"{folder / 'metadata.json'}: not valid JSON ({error})") from error
    return Task(folder, first, prompt, final, metadata)
