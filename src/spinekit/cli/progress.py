"""Rich progress bars and error reporting shared by the CLI commands."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from spinekit.errors import SpinekitError

console = Console(stderr=True)
out_console = Console()


def setup_logging(verbose: bool) -> None:
    """Log to stderr through rich; INFO by default, DEBUG with --verbose."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, show_time=False)],
        force=True,
    )


def _bars() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=console, transient=False, disable=not console.is_terminal,
    )


def _callback(bar: Progress, description: str) -> Callable[[int, int], None]:
    task = bar.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return update


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """Yield a ``progress(done, total)`` callback drawing a rich bar with ETA."""
    with _bars() as bar:
        yield _callback(bar, description)


@contextmanager
def step_bars() -> Iterator[Callable[[str], Callable[[int, int], None]]]:
    """Yield ``new_step(name) -> progress(done, total)``: one bar per pipeline step."""
    with _bars() as bar:
        yield lambda name: _callback(bar, name)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn spinekit's errors into one red line on stderr and exit code 2."""
    try:
        yield
    except (SpinekitError, ValueError, FileNotFoundError) as exc:
        console.print(Text.assemble(("error: ", "bold red"), str(exc)), highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
