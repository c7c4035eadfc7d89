"""The `ruledsl` command line (typer).

Exit codes everywhere: 0 success, 1 the program or video fails (errors, unmet
rules), 2 usage or I/O problems (missing file, not UTF-8, too large, bad video).
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path

import typer

from ruledsl.checker import check as check_source
from ruledsl.diagnostics import render_json, render_plain, sort_key
from ruledsl.source import Source, SourceError, read_source

app = typer.Typer(
    name="ruledsl",
    help="Typed rules for video generation: check, format, compile and evaluate .rule programs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class OutputFormat(str, Enum):
    text = "text"
    json = "json"


def _read_or_exit(path: Path) -> Source:
    try:
        return read_source(path)
    except SourceError as error:
        _stderr(f"error: {error}")
        raise typer.Exit(EXIT_USAGE) from None


def _stderr(text: str) -> None:
    sys.stderr.write(text + "\n")


def print_diagnostics(diagnostics, source: Source, stream=None) -> None:
    """Render diagnostics with colour on a terminal (rich), plain text otherwise."""
    from rich.console import Console
    from rich.text import Text

    console = Console(file=stream or sys.stderr, highlight=False, soft_wrap=True)
    for diagnostic in sorted(diagnostics, key=sort_key):
        text = Text(render_plain(diagnostic, source))
        style = "bold red" if diagnostic.is_error else "bold yellow"
        text.stylize(style, 0, text.plain.index(":"))
        lines = text.plain.split("\n")
        caret_line_start = sum(len(line) + 1 for line in lines[:4])
        text.stylize(style, caret_line_start, caret_line_start + len(lines[4]))
        console.print(text)
        console.print()


@app.command()
def check(
    files: list[Path] = typer.Argument(..., help="One or more .rule files."),
    format: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="text (for people) or json (one object per diagnostic)."),
) -> None:
    """Parse and type-check rule programs; report every error with file:line:col, code and hint."""
    worst = EXIT_OK
    all_json = []
    for path in files:
        source = _read_or_exit(path)
        checked = check_source(source)
        if format is OutputFormat.json:
            import json

            all_json.extend(json.loads(render_json(checked.diagnostics, source)))
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
                tmp = path.with_name(path.name + ".fmt-tmp")
                tmp.write_text(formatted, encoding="utf-8")
                tmp.replace(path)  # atomic: never leaves a half-written program
        elif not check_only:
            sys.stdout.write(formatted)
    if check_only:
        for path in changed:
            _stderr(f"{path}: would be reformatted")
        raise typer.Exit(EXIT_FAIL if changed else EXIT_OK)


def main() -> None:
    app()
