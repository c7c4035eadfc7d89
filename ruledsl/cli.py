"""The `ruledsl` command line (typer).

Exit codes everywhere: 0 success, 1 the program or video fails (errors, unmet
rules), 2 usage or I/O problems (missing file, not UTF-8, too large, bad video),
3 an internal error (a bug in ruledsl): one line on stderr naming what failed and
the log file that holds the traceback (`--debug` prints it instead), so a script
never mistakes a crash for a verdict. An OSError no command handled (a full disk,
a permission) is exit 2 the same way. 130 after Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from enum import Enum
from pathlib import Path
from typing import Literal

import typer

from ruledsl.checker import check as check_source
from ruledsl.diagnostics import render_json, render_plain, sort_key
from ruledsl.runtime.settings import Budget, Settings  # no torch: the optimizer's defaults, read by the options
from ruledsl.source import Source, SourceError, read_source

app = typer.Typer(
    name="ruledsl",
    help="Typed rules for video generation: check, format, compile and evaluate .rule programs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # the shell's code for a process stopped by Ctrl-C
# Text output shows this many diagnostics per file (the count of the rest follows); a generated
# program can have tens of thousands. `--format json` always lists every one.
MAX_SHOWN_DIAGNOSTICS = 200
_options = {"debug": bool(os.environ.get("RULEDSL_DEBUG"))}

from ruledsl.tasks.cli import app as tasks_app  # noqa: E402  (typer only; its commands import lazily)

app.add_typer(tasks_app, name="tasks")


MODEL_HELP = (
    "A reasoner folder, or a diffusers image-to-video pipeline folder (Wan, CogVideoX, LTX; save_pretrained "
    "layout, detected from model_index.json); default: the built-in reasoner."
)
DEVICE_HELP = "torch device for the model (cpu, cuda, cuda:1, ...); default: cuda when available, else cpu."
DTYPE_HELP = "dtype of the frozen model: float32 (default), bfloat16 or float16 (on a GPU); LoRA weights stay float32."
VLM_HELP = (
    "A transformers image-text-to-text model folder (AutoModelForImageTextToText + AutoProcessor): "
    "scores the program's `ask` atoms; needed only by programs that use `ask`."
)
VLM_DTYPE_HELP = "dtype of the frozen VLM: float32 (default), bfloat16 or float16 (on a GPU)."
ASK_FRAMES_HELP = "Frames a video-level `ask` shows the VLM, spread over its window (default 4)."


class OutputFormat(str, Enum):
    text = "text"
    json = "json"
    sarif = "sarif"


def _read_or_exit(path: Path) -> Source:
    try:
        return read_source(path)
    except SourceError as error:
        _stderr(f"error: {error}")
        raise typer.Exit(EXIT_USAGE) from None


def _stderr(text: str) -> None:
    sys.stderr.write(text + "\n")


def print_diagnostics(diagnostics, source: Source, stream=None, limit: int = MAX_SHOWN_DIAGNOSTICS) -> None:
    """Render diagnostics with colour on a terminal (rich), plain text otherwise; at most `limit`."""
    from rich.console import Console
    from rich.text import Text

    stream = stream or sys.stderr
    console = Console(file=stream, highlight=False, soft_wrap=True)
    ordered = sorted(diagnostics, key=sort_key)
    for diagnostic in ordered[:limit]:
        if not console.is_terminal:  # no styles to add: skip rich's layout (thousands of diagnostics)
            stream.write(render_plain(diagnostic, source) + "\n\n")
            continue
        text = Text(render_plain(diagnostic, source))
        style = "bold red" if diagnostic.is_error else "bold yellow"
        text.stylize(style, 0, text.plain.index(":"))
        lines = text.plain.split("\n")
        caret_line_start = sum(len(line) + 1 for line in lines[:4])
        text.stylize(style, caret_line_start, caret_line_start + len(lines[4]))
        console.print(text)
        console.print()
    if len(ordered) > limit:
        stream.write(f"... and {len(ordered) - limit} more (all of them: `ruledsl check --format json`)\n\n")


@app.command()
def check(
    files: list[Path] = typer.Argument(..., help="One or more .rule files."),
    format: OutputFormat = typer.Option(
        OutputFormat.text,
        "--format",
        "-f",
        help="text (for people), json (one object per diagnostic) or sarif (SARIF 2.1.0, for code scanning).",
    ),
) -> None:
    """Parse and type-check rule programs; report every error with file:line:col, code and hint."""
    worst = EXIT_OK
    all_json = []
    all_checked = []  # (source, diagnostics) per file, for SARIF
    for path in files:
        source = _read_or_exit(path)
        checked = check_source(source)
        if format is OutputFormat.json:
            import json

            all_json.extend(json.loads(render_json(checked.diagnostics, source)))
        elif format is OutputFormat.sarif:
            all_checked.append((source, checked.diagnostics))
        elif checked.diagnostics:
            print_diagnostics(checked.diagnostics, source)
        errors, warnings = len(checked.errors), len(checked.warnings)
        if format is OutputFormat.text:
            if errors:
                _stderr(f"{path}: {errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}")
            else:
                rules = len(checked.rules)
                suffix = f", {warnings} warning{'s' * (warnings != 1)}" if warnings else ""
                print(f"{path}: ok ({rules} rule{'s' * (rules != 1)}{suffix})")
        if errors:
            worst = EXIT_FAIL
    if format is OutputFormat.json:
        import json

        print(json.dumps(all_json, indent=2))
    elif format is OutputFormat.sarif:
        from ruledsl.sarif import render_sarif

        print(render_sarif(all_checked))
    raise typer.Exit(worst)


@app.command()
def fmt(
    files: list[Path] = typer.Argument(..., help="One or more .rule files."),
    write: bool = typer.Option(False, "--write", "-w", help="Rewrite the files in place."),
    check_only: bool = typer.Option(False, "--check", help="Print nothing; exit 1 if any file would change."),
) -> None:
    """Print rule programs in canonical layout (comments kept)."""
    from ruledsl.formatter import format_source
    from ruledsl.parser import ParseError

    changed = []
    for path in files:
        source = _read_or_exit(path)
        try:
            formatted = format_source(source)
        except ParseError as error:
            print_diagnostics([error.diagnostic], source)
            raise typer.Exit(EXIT_FAIL) from None
        if formatted != source.text:
            changed.append(path)
        if write:
            if formatted != source.text:
                _rewrite(path, formatted)
        elif not check_only:
            sys.stdout.write(formatted)
    if check_only:
        for path in changed:
            _stderr(f"{path}: would be reformatted")
        raise typer.Exit(EXIT_FAIL if changed else EXIT_OK)


def _rewrite(path: Path, text: str) -> None:
    """Replace a file's contents atomically (write a sibling, then rename over it), through a
    symbolic link to its target, keeping the file's permission bits."""
    import tempfile

    target = Path(os.path.realpath(path))
    tmp = None
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
        handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".fmt-tmp")
        tmp = Path(name)
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, target)  # atomic: never leaves a half-written program
    except OSError as error:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        _stderr(f"error: cannot rewrite {path}: {error.strerror or error}; the file is unchanged")
        raise typer.Exit(EXIT_USAGE) from None


@app.command()
def lsp(
    stdio: bool = typer.Option(
        False, "--stdio", help="Speak LSP over stdin/stdout: the only transport, and the default (editors pass it)."
    ),
    debounce: float = typer.Option(
        0.2, "--debounce", min=0.0, help="Seconds after the last edit before the document is checked again."
    ),
    log_file: Path = typer.Option(None, "--log-file", help="Write the server's debug log here."),
) -> None:
    """Language server for .rule files (LSP over stdio): diagnostics as you type, hover, completion, navigation, rename, formatting."""
    if log_file is not None:
        import logging

        logging.basicConfig(filename=log_file, level=logging.DEBUG, format="%(asctime)s %(name)s %(message)s")
    from ruledsl.lsp.server import main as serve

    serve(debounce)


def _load_or_exit(path: Path, exit_code: int):
    """A checked program, or its diagnostics on stderr and `exit_code`."""
    from ruledsl import RuleProgram

    source = _read_or_exit(path)
    checked = check_source(source)
    if not checked.ok:
        print_diagnostics(checked.diagnostics, source)
        _stderr(f"{path}: {len(checked.errors)} error(s); fix them first (`ruledsl check {path}`)")
        raise typer.Exit(exit_code)
    return RuleProgram(checked)


def _compile_or_exit(program, **options):
    from ruledsl.compiler.ir import CompileError

    try:
        return program.compile(**options)
    except CompileError as error:
        _stderr(f"error: {error}")
        raise typer.Exit(EXIT_USAGE) from None


def _vlm_or_exit(path: Path | None, device, dtype: str | None):
    """The VQA scorer of `--vlm` (None without it: compiling then names the rules that need one)."""
    if path is None:
        return None
    from ruledsl.runtime.vqa import VLMLoadError, VLMScorer

    try:
        return VLMScorer.load(path, device=device, dtype=dtype)
    except VLMLoadError as error:
        _stderr(f"error: {error}")
        raise typer.Exit(EXIT_USAGE) from None


@app.command("compile")
def compile_(rule_file: Path = typer.Argument(..., help="A .rule file.")) -> None:
    """Print the lowered IR (negation normal form, folded constants): a debugging aid."""
    from ruledsl.compiler import ir

    program = _load_or_exit(rule_file, EXIT_FAIL)
    try:
        sys.stdout.write(ir.to_text(ir.lower(program.checked)))
    except ir.CompileError as error:
        _stderr(f"error: {error}")
        raise typer.Exit(EXIT_USAGE) from None


@app.command("eval")
def eval_(
    rule_file: Path = typer.Argument(..., help="A .rule file."),
    video: Path = typer.Argument(..., help="A video (mp4, gif, ...) or a folder of frame images."),
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON instead of a table."),
    out: Path = typer.Option(
        None, "--out", "-o", help="Also write the JSON report to this file (not overwritten without --force)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
    temperature: float = typer.Option(
        0.05, "--temperature", min=1e-6, help="Smooth-semantics temperature (affects the loss column only)."
    ),
    param: list[str] = typer.Option([], "--param", "-p", help="Override a numeric param: NAME=VALUE (repeatable)."),
    task: Path = typer.Option(
        None, "--task", help="A task folder: its metadata sets the program's params (e.g. `cell`), as in optimize."
    ),
    vlm: Path = typer.Option(None, "--vlm", help=VLM_HELP),
    vlm_dtype: str = typer.Option(None, "--vlm-dtype", help=VLM_DTYPE_HELP),
    ask_frames: int = typer.Option(None, "--ask-frames", min=1, help=ASK_FRAMES_HELP),
    device: str = typer.Option(None, "--device", help="torch device for the VLM (cuda when available, else cpu)."),
    resolution: str = typer.Option(
        "256",
        "--resolution",
        help="Working resolution: frames are shrunk (by an integer factor, as they are read) until the long side "
        "is at most N pixels (N >= 8), or `full` to score them at full size.",
    ),
) -> None:
    """Score a video against a rule program: exit 0 if every rule holds, 1 if any fails, 2 on bad input."""
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    working = _resolution_or_exit(resolution)
    program = _load_or_exit(rule_file, EXIT_USAGE)
    if out is not None and out.exists() and not force:
        _stderr(f"error: {out} exists; pass --force to overwrite it")
        raise typer.Exit(EXIT_USAGE)
    params = _parse_params(param)
    params = {**_task_params_or_exit(program, task, video, set(params)), **params}
    vqa = _vlm_or_exit(vlm, device, vlm_dtype)
    compiled = _compile_or_exit(
        program, temperature=temperature, params=params, vqa=vqa, ask_frames=ask_frames, resolution=working
    )
    from ruledsl.compiler.asks import VQAError
    from ruledsl.compiler.program import VideoError, WindowError
    from ruledsl.compiler.video_io import VideoReadError, read_video

    try:
        # Shrunk frame by frame as it is read (peak memory: the small video), unless `ask` needs the
        # full-size frames (the VLM's processor resizes them its own way).
        frames = read_video(video, resolution=None if compiled.has_asks else working)
        report = compiled(frames[None])
    except (VideoReadError, VideoError, WindowError, VQAError) as error:
        _stderr(f"error: {error}")
        raise typer.Exit(EXIT_USAGE) from None
    text = report.model_dump_json(indent=2)
    if out is not None:
        out.write_text(text + "\n", encoding="utf-8")
    if json_output:
        print(text)
    else:
        _print_report_table(report, rule_file, video)
    raise typer.Exit(EXIT_OK if bool(report.satisfied.all()) else EXIT_FAIL)


def _task_params_or_exit(program, task: Path | None, video: Path, given: set[str]) -> dict[str, float]:
    """Params from `--task`'s metadata; without `--task`, warn when the video sits in a task folder whose
    metadata would set a param that is left at its declared default (a silent wrong verdict otherwise)."""
    from ruledsl.tasks.layout import TaskFolderError, read_task, task_params

    declared = set(program.params)
    if task is not None:
        try:
            return task_params(read_task(task), declared)
        except TaskFolderError as error:
            _stderr(f"error: {error}")
            raise typer.Exit(EXIT_USAGE) from None
    folder = video if video.is_dir() else video.parent
    if (folder / "metadata.json").is_file() and (folder / "first_frame.png").is_file():
        try:
            found = task_params(read_task(folder), declared - given)
        except TaskFolderError:
            return {}
        for name, value in sorted(found.items()):
            declared_value = program.checked.constants[name]
            _stderr(
                f"warning: param `{name}` keeps its declared default {declared_value:g}, but the task in {folder} "
                f"sets it to {value:.6g}; pass --task {folder} (or --param {name}=...)"
            )
    return {}


def _resolution_or_exit(text: str) -> int | None:
    """`--resolution`: a whole number of pixels >= 8, or `full` (None: no shrinking)."""
    if text.strip().lower() == "full":
        return None
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 8:
        _stderr(
            f"error: --resolution expects a whole number of pixels of at least 8 (the long side of the working "
            f"frames) or `full`, got {text!r}"
        )
        raise typer.Exit(EXIT_USAGE)
    return value


def _parse_params(items: list[str]) -> dict[str, float]:
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            params[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            _stderr(f"error: --param expects NAME=NUMBER, got {item!r}")
            raise typer.Exit(EXIT_USAGE)
    return params


@app.command()
def optimize(
    rule_file: Path = typer.Argument(..., help="A .rule file."),
    task: Path = typer.Option(
        ..., "--task", "-t", help="A task folder (first_frame.png + prompt.txt; metadata.json if generated)."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Run folder: base.mp4, best.mp4, best.gif, report.json, curves.png, lora.safetensors."
    ),
    model: Path = typer.Option(None, "--model", help=MODEL_HELP),
    device: str = typer.Option(None, "--device", help=DEVICE_HELP),
    dtype: str = typer.Option(None, "--dtype", help=DTYPE_HELP),
    sample_steps: int = typer.Option(
        None,
        "--sample-steps",
        min=1,
        help="Denoising steps per rollout (per frame for an autoregressive reasoner); default: the model's.",
    ),
    size: int = typer.Option(
        None, "--size", min=8, help="Frame size N (N x N) a v2 reasoner samples at; default: its trained size."
    ),
    method: str = typer.Option(Settings.method, "--method", help="lora, best-of-n or noise."),
    steps: int = typer.Option(
        Budget.steps,
        "--steps",
        min=0,
        help="Optimization steps (lora, noise); best-of-n and noise default to the NFE of this many LoRA steps.",
    ),
    seconds: float = typer.Option(Budget.seconds, "--time", help="Wall-time budget in seconds."),
    nfe: float = typer.Option(
        Budget.nfe, "--nfe", help="Budget in denoiser forward-equivalents (a backward counts 2)."
    ),
    seed: int = typer.Option(Settings.seed, "--seed"),
    lr: float = typer.Option(Settings.lr, "--lr"),
    rank: int = typer.Option(Settings.rank, "--rank", min=1),
    grad_steps: int = typer.Option(
        Settings.grad_steps, "--grad-steps", min=1, help="Sampling steps with gradients (the last K)."
    ),
    frame_retries: int = typer.Option(
        Settings.frame_retries,
        "--frame-retries",
        min=0,
        help="tto and best-of-n: redraw a frame that breaks a safety rule (always / until) up to this many times"
        " while sampling (autoregressive reasoners only; 0: off).",
    ),
    frame_backtracks: int = typer.Option(
        Settings.frame_backtracks,
        "--frame-backtracks",
        min=0,
        help="With --frame-retries: times per video that a frame no redraw keeps sends the sampling one frame back.",
    ),
    frame_goal_draws: int = typer.Option(
        Settings.frame_goal_draws,
        "--frame-goal-draws",
        min=1,
        help="tto and best-of-n: draw each frame this many times and keep the legal draw nearest the goals"
        " (`at end` / `at K` rules judged on that frame; autoregressive reasoners only; 1: off).",
    ),
    param: list[str] = typer.Option([], "--param", "-p", help="Override a numeric param: NAME=VALUE."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing run in --out."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
    vlm: Path = typer.Option(None, "--vlm", help=VLM_HELP),
    vlm_dtype: str = typer.Option(None, "--vlm-dtype", help=VLM_DTYPE_HELP),
    ask_frames: int = typer.Option(None, "--ask-frames", min=1, help=ASK_FRAMES_HELP),
) -> None:
    """Optimize a LoRA (or the noise, or pick the best of N) on one task until the rules hold; write the run folder.

    The run's state is saved after every step: after Ctrl-C, a kill or a crash, `--resume` continues it."""
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    program = _load_or_exit(rule_file, EXIT_USAGE)
    from ruledsl.runtime.generators import condition_from_task
    from ruledsl.runtime.load import GeneratorLoadError, load_generator
    from ruledsl.runtime.loop import METHODS, ResumeMismatchError, nfe_budget_for
    from ruledsl.runtime.loop import optimize as run_optimize
    from ruledsl.runtime.run import (
        CheckpointWriter,
        RunFolderError,
        check_out_folder,
        load_resume,
        manifest_fields,
        resume_conflicts,
        run_manifest,
        start_run,
        task_params,
        write_run,
    )
    from ruledsl.tasks.layout import TaskFolderError, read_task

    if method not in METHODS:
        _stderr(f"error: unknown --method {method!r}; choose from {', '.join(METHODS)}")
        raise typer.Exit(EXIT_USAGE)
    try:
        check_out_folder(out, force, resume, task)  # before any work: a bad --out is found now, not at the end
        folder = read_task(task)
        generator = load_generator(model, device=device, dtype=dtype, steps=sample_steps, size=size)
        state = load_resume(out) if resume else None
        manifest = run_manifest(out) if resume else None
    except (RunFolderError, TaskFolderError, GeneratorLoadError, FileNotFoundError) as error:
        _stderr(f"error: {error}")
        raise typer.Exit(EXIT_USAGE) from None
    params = task_params(program, folder, _parse_params(param))
    vqa = _vlm_or_exit(vlm, generator.device, vlm_dtype)  # on the generator's device
    compiled = _compile_or_exit(program, params=params, vqa=vqa, ask_frames=ask_frames)
    settings = Settings(
        method=method,
        seed=seed,
        lr=lr,
        rank=rank,
        grad_steps=grad_steps,
        frame_retries=frame_retries,
        frame_backtracks=frame_backtracks,
        frame_goal_draws=frame_goal_draws,
    )
    # The baselines are compared at equal cost: the NFE of `steps` LoRA steps. tto and lora count their own steps.
    baseline = method in ("best-of-n", "noise")
    if baseline and nfe is None:
        nfe = nfe_budget_for(generator, settings, steps)
    budget = Budget(steps=10**9 if baseline and nfe is not None else steps, seconds=seconds, nfe=nfe)
    model_name = str(model or "built-in reasoner")
    conflicts = resume_conflicts(manifest, settings, size) if manifest is not None else []
    if conflicts:
        _stderr(
            f"error: {out} was run with other settings: {'; '.join(conflicts)}; resume it with the run's "
            "settings (budgets may differ), or pass --force instead of --resume to start it over"
        )
        raise typer.Exit(EXIT_USAGE)
    try:
        if not resume:
            start_run(out, force, manifest_fields(settings, str(rule_file), str(task), model_name, size))
        elif state is None:
            _stderr(f"note: {out} has no saved step yet; starting the run from its base sample")
        with _termination_as_interrupt():
            result = _run_with_display(
                lambda on_step: run_optimize(
                    compiled,
                    condition_from_task(folder),
                    generator,
                    budget,
                    settings,
                    on_step=on_step,
                    resume=state,
                    checkpoint=CheckpointWriter(out),
                ),
                compiled,
            )
        report = write_run(out, result, str(rule_file), str(task), model_name, settings, budget, params)
    except ResumeMismatchError as error:
        _stderr(f"error: cannot resume {out}: {error}; pass --force instead of --resume to start it over")
        raise typer.Exit(EXIT_USAGE) from None
    except KeyboardInterrupt:  # before the base sample was judged (later ones are kept by the loop)
        _stderr(f"interrupted before the first sample; nothing saved yet (--resume {out} starts the run)")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except (RunFolderError, OSError) as error:
        _stderr(f"error: writing the run to {out}: {error}")
        raise typer.Exit(EXIT_USAGE) from None
    verdict = "every rule holds" if report.solved_after else "some rules still fail"
    taken = f"{report.steps} step{'' if report.steps == 1 else 's'}"
    origin = "" if report.best_seed is None else f"; best video from seed {report.best_seed}"
    origin += " with lora.safetensors" if origin and result.lora else ""
    origin += f" and frame draws {_draws_text(report.best_draws)}" if origin and report.best_draws else ""
    print(f"{verdict} after {taken} ({report.stop_reason}){origin}; {report.nfe:g} NFE, {report.seconds:.1f} s")
    print(
        f"wrote {out}/: best.mp4, best.gif, base.mp4, report.json, curves.png"
        + (", lora.safetensors" if result.lora else "")
        + ("; continue it with --resume" if report.interrupted else "")
    )
    raise typer.Exit(EXIT_OK if report.solved_after else EXIT_FAIL)


@contextlib.contextmanager
def _termination_as_interrupt():
    """SIGTERM (preemption) and SIGHUP (a closed terminal) stop the run like Ctrl-C: the best so far is
    written. (SIGKILL cannot be caught; the per-step checkpoint covers it.)"""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_with_display(run, compiled):
    """Run with a live table of rules (✓/✗, margin), the step and the loss; Ctrl-C keeps the best so far."""
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    console = Console(stderr=True)

    def render(step, report):
        table = Table(title=f"step {step.index}  loss {step.loss:.4f}  NFE {step.nfe:g}  {step.seconds:.1f} s")
        for column in ("rule", "role", "", "margin"):
            table.add_column(column)
        for rule in report.rules.values():
            ok = bool(rule.verdict[0])
            table.add_row(
                rule.name, rule.role, "[green]✓[/]" if ok else "[red]✗[/]", f"{float(rule.robustness[0]):+.3f}"
            )
        return table

    with Live(console=console, refresh_per_second=4, transient=False) as live:
        return run(lambda step, report: live.update(render(step, report)))


@app.command()
def bench(
    out: Path = typer.Option(
        ..., "--out", "-o", help="Folder for results.jsonl, summary.json, table.md, plots, index.html."
    ),
    split: str = typer.Option("test", "--split", help="Task split: train, test or ood."),
    n: int = typer.Option(10, "--n", min=1, help="Instances per family."),
    seed: int = typer.Option(0, "--seed", help="The split's instance stream, as in `tasks generate`."),
    budget: list[float] = typer.Option([400.0], "--budget", help="An NFE budget (repeatable; one run covers all)."),
    methods: str = typer.Option("base,best-of-n,lora-v1", "--methods", help="Comma-separated methods."),
    families: str = typer.Option("", "--families", help="Comma-separated families (default: all)."),
    size: int = typer.Option(
        64, "--size", help="Frame size: instances rendered and judged at size x size; a v2 reasoner samples at it."
    ),
    workers: int = typer.Option(0, "--workers", help="Parallel workers, one instance each (default: CPU count)."),
    engine: str = typer.Option("local", "--engine", help="local (process pool) or ray."),
    address: str = typer.Option(None, "--address", help="Ray cluster address (default: a local Ray instance)."),
    model: Path = typer.Option(None, "--model", help=MODEL_HELP),
    device: str = typer.Option(None, "--device", help=DEVICE_HELP),
    dtype: str = typer.Option(None, "--dtype", help=DTYPE_HELP),
    steps: int = typer.Option(
        None,
        "--sample-steps",
        min=1,
        help="Denoising steps per rollout (per frame if autoregressive); default: the model's.",
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue a bench in --out, skipping finished instances."),
    force: bool = typer.Option(False, "--force", help="Start over in an --out that holds an earlier bench."),
) -> None:
    """Compare methods at equal NFE on held-out instances, judged by the independent task scorers."""
    import os

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ruledsl.runtime.bench import BenchConfig, BenchError, parse_methods, run_bench, table_markdown

    try:
        config = BenchConfig(
            out=str(out), split=split, n=n, seed=seed, budgets=tuple(budget), methods=parse_methods(methods),
            families=tuple(f.strip() for f in families.split(",") if f.strip()), workers=workers or os.cpu_count() or 1,
            engine=engine, address=address, model=str(model) if model else None, steps=steps, device=device,
            dtype=dtype, size=size,
        )  # fmt: skip
        columns = (
            TextColumn("instances"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task("bench", total=None)

            def progress(finished: int, total: int, skipped: int) -> None:
                bar.update(task, completed=finished, total=total)
                if finished == 0 and skipped:
                    bar.console.print(f"resuming: {skipped} finished instance(s) skipped")

            summary = run_bench(config, resume=resume, force=force, progress=progress)
    except BenchError as error:
        _stderr(f"error: {error}")
        raise typer.Exit(EXIT_USAGE) from None
    print(table_markdown(summary))
    print(f"wrote {out}/: results.jsonl, summary.json, table.md, success_vs_nfe.png, per_family.png, index.html")


@app.command()
def palette(
    image: Path = typer.Argument(..., help="An image (e.g. a task's first_frame.png)."),
    json_output: bool = typer.Option(False, "--json"),
) -> None:
    """Distinct colours of an image: hex, area %, bounding box (hints for naming entities)."""
    import json

    from ruledsl.teacher.palette import palette as find
    from ruledsl.teacher.palette import palette_text
    from ruledsl.video import VideoReadError, read_image

    try:
        swatches = find(read_image(image))
    except VideoReadError as error:
        _stderr(f"error: {error}")
        raise typer.Exit(EXIT_USAGE) from None
    print(json.dumps([s.to_dict() for s in swatches], indent=1) if json_output else palette_text(swatches))


@app.command()
def extract(
    raw: Path = typer.Argument(..., help="A file with a model's raw answer."),
    output: Path = typer.Option(None, "--output", "-o", help="Write the program here (only if it checks clean)."),
    force: bool = typer.Option(False, "--force", help="Overwrite --output."),
) -> None:
    """Pull the rule program out of free text and check it; exit 1 with diagnostics if there is no valid program."""
    from ruledsl.teacher.extract import ExtractionError
    from ruledsl.teacher.extract import extract as pull
    from ruledsl.teacher.teach import diagnostics_text

    if output is not None and output.exists() and not force:
        _stderr(f"error: {output} exists; pass --force to overwrite it")
        raise typer.Exit(EXIT_USAGE)
    from ruledsl.source import read_bounded
    from ruledsl.teacher.extract import MAX_INPUT_CHARS

    try:
        data = read_bounded(raw, 4 * MAX_INPUT_CHARS, "a model's answer (text)")  # UTF-8: 4 bytes a character at most
    except SourceError as error:
        _stderr(f"error: {error}")
        raise typer.Exit(EXIT_USAGE) from None
    try:
        result = pull(data.decode("utf-8", errors="replace"), name=str(output or raw))
    except ExtractionError as error:
        _stderr(f"error: {raw}: {error}")
        raise typer.Exit(EXIT_FAIL) from None
    if not result.ok:
        if result.checked is not None:
            print_diagnostics(result.checked.diagnostics, result.checked.source)
        _stderr(
            f"{raw}: no valid program ({diagnostics_text(result).splitlines()[0] if result.checked is None else f'{len(result.checked.errors)} error(s)'})"
        )
        raise typer.Exit(EXIT_FAIL)
    if output is None:
        sys.stdout.write(result.program)
    else:
        assert result.program is not None and result.checked is not None  # ok: a clean program was chosen
        output.write_text(result.program, encoding="utf-8")
        _stderr(f"wrote {output} ({len(result.checked.rules)} rules, from {result.candidates} candidate(s))")


@app.command()
def teach(
    task: Path = typer.Argument(..., help="A task folder (first_frame.png + prompt.txt)."),
    output: Path = typer.Option(None, "--output", "-o", help="Where to write the checked program."),
    backend: str = typer.Option("openai", "--backend", help="openai or transformers."),
    base_url: str = typer.Option(
        "http://127.0.0.1:8000/v1", "--base-url", help="OpenAI-compatible endpoint (openai backend)."
    ),
    model: str = typer.Option("default", "--model", help="Model name (openai) or local path (transformers)."),
    api_key_env: str = typer.Option(
        "OPENAI_API_KEY", "--api-key-env", help="Environment variable holding the API key, if any."
    ),
    max_repairs: int = typer.Option(2, "--max-repairs", min=0),
    timeout: float = typer.Option(120.0, "--timeout"),
    show_prompt: bool = typer.Option(False, "--show-prompt", help="Print the prompt and exit."),
    force: bool = typer.Option(False, "--force", help="Overwrite --output."),
) -> None:
    """Ask a VLM for the task's rule program; repair it with the checker's diagnostics; write it only if it checks clean."""
    import os

    from ruledsl.tasks.layout import TaskFolderError, read_task
    from ruledsl.teacher.backends import BackendError, OpenAIBackend, TransformersBackend
    from ruledsl.teacher.teach import Teacher, save_transcript

    try:
        folder = read_task(task)
    except TaskFolderError as error:
        _stderr(f"error: {error}")
        raise typer.Exit(EXIT_USAGE) from None
    if show_prompt:
        print(Teacher.prompt_for(folder))
        raise typer.Exit(EXIT_OK)
    if output is None:
        _stderr("error: --output is required (or use --show-prompt)")
        raise typer.Exit(EXIT_USAGE)
    if output.exists() and not force:
        _stderr(f"error: {output} exists; pass --force to overwrite it")
        raise typer.Exit(EXIT_USAGE)
    if backend not in ("openai", "transformers"):
        _stderr(f"error: unknown --backend {backend!r}; choose openai or transformers")
        raise typer.Exit(EXIT_USAGE)
    try:
        client = (
            OpenAIBackend(base_url, model, os.environ.get(api_key_env), timeout=timeout)
            if backend == "openai"
            else TransformersBackend(model)
        )
        teaching = Teacher(client, max_repairs).write_rules(folder)
    except (BackendError, OSError) as error:
        _stderr(f"error: {error}")
        raise typer.Exit(EXIT_USAGE) from None
    transcript = save_transcript(teaching, output)
    if not teaching.ok:
        _stderr(teaching.diagnostics)
        _stderr(f"no valid program after {len(teaching.rounds)} round(s); the raw answers are in {transcript}")
        raise typer.Exit(EXIT_FAIL)
    assert teaching.program is not None  # ok: the last program checked clean
    output.write_text(teaching.program, encoding="utf-8")
    print(f"wrote {output} after {len(teaching.rounds)} round(s); transcript {transcript}")


reasoner_app = typer.Typer(help="The built-in video reasoner: model card, sampling.", no_args_is_help=True)
app.add_typer(reasoner_app, name="reasoner")


@reasoner_app.command("info")
def reasoner_info(
    model: Path = typer.Option(None, "--model", help="A reasoner folder; default: the built-in one."),
) -> None:
    """Architecture, size, training and measured base scores of the reasoner (its model card)."""
    from ruledsl.runtime.load import model_folder

    folder = model_folder(model)
    card = folder / "README.md"
    if not (folder / "config.json").exists():
        _stderr(f"error: no reasoner at {folder}")
        raise typer.Exit(EXIT_USAGE)
    print(card.read_text() if card.exists() else f"{folder}: no model card (run python scripts/model_card.py {folder})")


@reasoner_app.command("sample")
def reasoner_sample(
    task: Path = typer.Argument(..., help="A task folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Video to write (.mp4, .gif or a folder)."),
    seed: int = typer.Option(Settings.seed, "--seed"),
    steps: int = typer.Option(
        None, "--steps", min=1, help="Sampling steps (per frame for an autoregressive reasoner); default: the model's."
    ),
    model: Path = typer.Option(None, "--model", help=MODEL_HELP),
    device: str = typer.Option(None, "--device", help=DEVICE_HELP),
    dtype: str = typer.Option(None, "--dtype", help=DTYPE_HELP),
    lora: Path = typer.Option(
        None,
        "--lora",
        help="A run's lora.safetensors to sample through (with --seed its report's best_seed: the best video again).",
    ),
    size: int = typer.Option(
        None, "--size", min=8, help="Frame size N (N x N) a v2 reasoner samples at; default: its trained size."
    ),
    draws: str = typer.Option(
        None,
        "--draws",
        help="A guided run's frame draws (report.json's best_draws, comma-separated): with --seed its best_seed,"
        " the best video again.",
    ),
    force: bool = typer.Option(False, "--force"),
) -> None:
    """Image-to-video from the task's first frame with the reasoner (or another --model)."""
    import torch

    from ruledsl.compiler.video_io import write_video
    from ruledsl.runtime.generators import condition_from_task
    from ruledsl.runtime.load import GeneratorLoadError, load_generator
    from ruledsl.runtime.lora import attach_saved_lora, load_lora
    from ruledsl.tasks.layout import TaskFolderError, read_task

    if out.exists() and not force:
        _stderr(f"error: {out} exists; pass --force to overwrite it")
        raise typer.Exit(EXIT_USAGE)
    try:
        folder = read_task(task)
        generator = load_generator(model, device=device, dtype=dtype, steps=steps, size=size)
    except (TaskFolderError, GeneratorLoadError, FileNotFoundError) as error:
        _stderr(f"error: {error}")
        raise typer.Exit(EXIT_USAGE) from None
    if lora is not None:
        try:
            attach_saved_lora(generator.denoiser, load_lora(lora))
        except Exception as error:  # an untrusted file: missing, not safetensors, or not a LoRA of this model
            _stderr(f"error: {lora}: {error}")
            raise typer.Exit(EXIT_USAGE) from None
    torch.set_num_threads(1)
    condition = condition_from_task(folder)
    noise = generator.initial_noise(condition, seed)
    if draws is not None:
        from ruledsl.runtime.frame_guide import guided_noise

        try:
            noise = guided_noise(generator, condition, seed, [int(d) for d in draws.split(",")])
        except ValueError as error:  # not integers, or not one per frame after the first
            _stderr(f"error: --draws {draws!r}: {error}")
            raise typer.Exit(EXIT_USAGE) from None
    with torch.no_grad():
        video = generator.rollout(condition, noise)[0]
    write_video(out, video)
    print(f"wrote {out} ({video.shape[0]} frames, {video.shape[-1]}x{video.shape[-2]})")


def _draws_text(draws: list[int]) -> str:
    return ",".join(str(d) for d in draws)


def _intervals_text(intervals) -> str:
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in intervals) or "-"


def _print_report_table(report, rule_file: Path, video: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{rule_file} on {video} ({report.frames} frames)")
    columns: tuple[tuple[str, Literal["left", "center", "right"]], ...] = (
        ("rule", "left"),
        ("role", "left"),
        ("verdict", "center"),
        ("margin", "right"),
        ("loss", "right"),
        ("violating frames", "left"),
    )
    for column, justify in columns:
        table.add_column(column, justify=justify)
    for rule in report.rules.values():
        ok = bool(rule.verdict[0])
        table.add_row(
            rule.name,
            rule.role,
            "[green]✓[/]" if ok else "[red]✗[/]",
            f"{float(rule.robustness[0]):+.3f}",
            f"{float(rule.loss[0]):.4f}",
            _intervals_text(rule.violations[0]),
        )
    console = Console()
    console.print(table)
    held = sum(bool(r.verdict[0]) for r in report.rules.values())
    verdict = (
        "[green]all rules hold[/]"
        if bool(report.satisfied[0])
        else f"[red]{len(report.rules) - held} of {len(report.rules)} rules fail[/]"
    )
    console.print(f"{verdict}; total loss {float(report.loss):.4f}")


@app.callback()
def _global_options(
    debug: bool = typer.Option(
        False, "--debug", help="On an internal error, print the traceback here instead of to a log file."
    ),
) -> None:
    """Options for every command."""
    if debug:
        _options["debug"] = True


def _report_crash(error: BaseException, argv: list[str], code: int, kind: str) -> int:
    """One line on stderr for an exception no command handled; the traceback with --debug,
    else in a log file the line names. Returns the exit code."""
    import tempfile
    import traceback

    what = f"{type(error).__name__}: {error}".splitlines()[0][:300]
    details = "".join(traceback.format_exception(error))
    if _options["debug"]:
        sys.stderr.write(details)
        _stderr(f"{kind} (exit {code}): {what}")
        return code
    try:
        handle, log = tempfile.mkstemp(prefix="ruledsl-crash-", suffix=".log")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(f"ruledsl {' '.join(argv)}\npython {sys.version}\n\n{details}")
        where = f"traceback in {log}"
    except OSError:
        where = "no log file could be written"
    _stderr(f"{kind} (exit {code}): {what}; {where}; rerun with --debug to see it")
    return code


def main(argv: list[str] | None = None) -> None:
    """The console entry point: typer's app, with an unhandled OSError turned into exit 2 and any
    other unexpected exception into exit 3 (one line each; see `_report_crash`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _options["debug"] = bool(os.environ.get("RULEDSL_DEBUG"))  # `--debug` sets it again while parsing
    try:
        app(args=argv, prog_name="ruledsl")
    except KeyboardInterrupt:
        _stderr("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except OSError as error:  # a full disk, a permission, a missing folder: an I/O problem, not a bug
        sys.exit(_report_crash(error, argv, EXIT_USAGE, "I/O error"))
    except Exception as error:  # the last resort: anything a command did not turn into a clear error
        sys.exit(_report_crash(error, argv, EXIT_INTERNAL, "internal error, a bug in ruledsl"))
