"""`ruledsl tasks ...`: list families, generate instances, score videos, make corrupted videos."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import typer

app = typer.Typer(
    help="The task suite: generate instances (VBVR-Bench layout), score videos, corrupt ground truth.",
    no_args_is_help=True,
    add_completion=False,
)


def _fail(message: str, code: int = 2) -> NoReturn:
    sys.stderr.write(f"error: {message}\n")
    raise typer.Exit(code)


@app.command("list")
def list_() -> None:
    """Families, their difficulty parameters per split, and the corruption kinds."""
    from rich.console import Console
    from rich.table import Table

    from ruledsl.tasks.corrupt import KINDS
    from ruledsl.tasks.families import FAMILIES, MAX_FRAMES_IN_DISTRIBUTION
    from ruledsl.tasks.shape_families import SHAPE_FAMILIES, SHAPE_KINDS

    table = Table(title="task families")
    for column in ("family", "what", "train", "test", "ood"):
        table.add_column(column)
    rows = [(f.name, f.description, f.splits) for f in FAMILIES.values()]
    rows += [(f.name, f.description, f.splits) for f in SHAPE_FAMILIES.values()]
    for name, description, splits in rows:
        table.add_row(
            name,
            description,
            *[
                "; ".join(", ".join(f"{k}={v}" for k, v in s.items()) for s in splits[split])
                for split in ("train", "test", "ood")
            ],
        )
    console = Console()
    console.print(table)
    console.print(
        f"grid families: train and test solutions fit {MAX_FRAMES_IN_DISTRIBUTION} frames; ood ones may need more."
    )
    console.print(f"corruptions ({', '.join(FAMILIES)}): " + ", ".join(KINDS))
    for name, kinds in SHAPE_KINDS.items():
        console.print(f"corruptions ({name}): " + ", ".join(kinds))


@app.command()
def generate(
    family: str = typer.Argument(
        ..., help="maze, grid_path, avoid, two_targets, key_door, sliding, sort_size or cards (`ruledsl tasks list`)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to create; instances go to OUT/00000, OUT/00001, ..."),
    n: int = typer.Option(20, "--n", min=1, help="Number of instances."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split's instance stream."),
    split: str = typer.Option("train", "--split", help="train, test or ood."),
    size: int = typer.Option(
        None, "--size", min=8, help="Frame height and width in pixels (default: 64; 96 for the shape families)."
    ),
    frames: int = typer.Option(
        16, "--frames", min=2, help="Frames of the ground truth (more if the solution needs them)."
    ),
    force: bool = typer.Option(False, "--force", help="Write into an existing non-empty folder."),
) -> None:
    """Write instances in the VBVR-Bench layout (first_frame.png, final_frame.png, ground_truth.mp4, prompt.txt, metadata.json)."""
    from ruledsl.tasks.layout import write_task
    from ruledsl.tasks.suite import generate as make

    if out.exists() and any(out.iterdir()) and not force:
        _fail(f"{out} exists and is not empty; pass --force to write into it")
    try:
        for index in range(n):
            write_task(make(family, index, seed, split), out / f"{index:05d}", (size, size) if size else None, frames)
    except ValueError as error:
        _fail(str(error))
    print(f"wrote {n} {family} instances ({split}, seed {seed}) to {out}")


@app.command()
def score(
    task: Path = typer.Argument(..., help="A task folder written by `ruledsl tasks generate`."),
    video: Path = typer.Argument(..., help="The video to judge (mp4, gif, folder of frames)."),
    json_output: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """The family's independent scorer: score in [0, 1], pass/fail, reasons. Exit 0 pass, 1 fail, 2 bad input."""
    import json

    from ruledsl.tasks.layout import TaskFolderError, read_task
    from ruledsl.tasks.suite import score as score_video
    from ruledsl.video import VideoReadError, read_frames

    try:
        folder = read_task(task)
        if folder.metadata is None:
            _fail(f"{task}: no metadata.json, so no scorer knows its rules (only generated tasks can be scored)")
        folder.instance  # noqa: B018  (checks the metadata is one of our generated instances)
        frames = read_frames(video)
    except (TaskFolderError, VideoReadError) as error:
        _fail(str(error))
    result = score_video(frames, folder.metadata)
    if json_output:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(
            f"{'PASS' if result.passed else 'FAIL'}  score {result.score:.3f}  ({folder.family}, {frames.shape[0]} frames)"
        )
        for reason in result.reasons:
            print(f"  - {reason}")
    raise typer.Exit(0 if result.passed else 1)


@app.command()
def corrupt(
    task: Path = typer.Argument(..., help="A task folder written by `ruledsl tasks generate`."),
    kind: str = typer.Option(
        ...,
        "--kind",
        help="frozen, vanish, duplicate, color-change, teleport, wall-crossing, wrong-end, stops-early; the shape "
        "families have their own (`ruledsl tasks list`).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Video to write (.mp4, .gif, or a folder for PNGs)."),
    force: bool = typer.Option(False, "--force", help="Overwrite OUT."),
) -> None:
    """Render the task's ground truth with one corruption, for testing judges."""
    from ruledsl.tasks.layout import TaskFolderError, read_task
    from ruledsl.tasks.suite import corrupt as make_plan
    from ruledsl.tasks.suite import render
    from ruledsl.video import write_frames

    try:
        folder = read_task(task)
        instance = folder.instance  # checks the metadata is one of our generated instances
        if instance is None or folder.metadata is None:
            _fail(f"{task}: no metadata.json; corruptions need the generated layout")
    except TaskFolderError as error:
        _fail(str(error))
    if out.exists() and not force:
        _fail(f"{out} exists; pass --force to overwrite it")
    meta = folder.metadata
    missing = [f"render.{name}" for name in ("frames", "height", "width") if name not in meta.get("render", {})]
    if missing:
        _fail(f"{task / 'metadata.json'}: no field {', '.join(missing)} (corruptions re-render the task at its size)")
    try:
        plan = make_plan(instance, kind, meta["render"]["frames"])
        write_frames(
            out,
            render(instance, plan, (meta["render"]["height"], meta["render"]["width"])),
            fps=meta["render"].get("fps", 4),
        )
    except ValueError as error:
        _fail(str(error))
    print(f"wrote {out} ({kind})")
