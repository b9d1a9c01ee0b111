"""Rich progress bars and error reporting shared by the CLI commands."""

from __future__ import annotations

import logging
import re
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
from typer.exceptions import TyperException

from spinekit.errors import SpinekitError, UsageError

console = Console(stderr=True)
out_console = Console()


_state = {"debug": False}


def set_debug(debug: bool) -> None:
    """``--debug``: full tracebacks for errors and for exceptions other libraries log."""
    _state["debug"] = debug


def debug_enabled() -> bool:
    """Whether ``--debug`` was given."""
    return _state["debug"]


class _NoTracebacks(logging.Filter):
    """Without --debug, a logged exception shows as one line, never as a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not debug_enabled():
            exc = record.exc_info[1]
            if exc is not None:
                record.msg = f"{record.getMessage()} ({_one_line(exc)})"
                record.args = ()
            record.exc_info = None
            record.exc_text = None
        if not debug_enabled():
            record.stack_info = None
        return True


def setup_logging(verbose: bool, debug: bool = False) -> None:
    """Log to stderr through rich; INFO by default, DEBUG with --verbose or --debug.

    Tracebacks of logged exceptions (spinekit's or another library's) are shown
    only with ``--debug``; otherwise the exception is appended as one line.
    """
    set_debug(debug)
    handler = RichHandler(console=console, show_path=False, show_time=False, rich_tracebacks=False)
    handler.addFilter(_NoTracebacks())
    logging.basicConfig(
        level=logging.DEBUG if verbose or debug else logging.INFO,
        format="%(message)s",
        handlers=[handler],
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


def check_regex(option: str, pattern: str | None) -> None:
    """UsageError naming ``option`` when ``pattern`` is not a valid regular expression."""
    if pattern is None:
        return
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise UsageError(f"{option}: invalid regular expression {pattern!r} ({exc})") from exc


def check_options(**values: tuple[float | None, str]) -> None:
    """Check CLI option values against the config rules: ``name=(value, rule key)``.

    ``score_threshold=(0.5, "eval.score_threshold")`` is checked like that config
    key and reported as ``--score-threshold``; None values are skipped.
    """
    from spinekit.engine.config import check_value

    for name, (value, rule) in values.items():
        check_value("--" + name.replace("_", "-"), value, rule)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _red(prefix: str, text: str) -> None:
    console.print(Text.assemble((prefix, "bold red"), text), highlight=False, soft_wrap=True)


def _is_user_error(exc: BaseException) -> bool:
    """spinekit's own errors, and operating-system errors on a named file (missing, denied, full)."""
    if isinstance(exc, SpinekitError):
        return True
    return isinstance(exc, OSError) and exc.filename is not None


def _user_message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, SpinekitError):
        return f"{exc.filename}: {exc.strerror or _one_line(exc)}"
    return " ".join(str(exc).split())


@contextmanager
def user_errors() -> Iterator[None]:
    """The CLI's one error mechanism.

    User errors (:class:`~spinekit.errors.SpinekitError`, e.g. ``InputError``,
    ``UsageError``; an OS error on a named file; a bad command-line value) ->
    one red line on stderr and exit code 2. Anything else is a bug -> one line
    ``internal error: <type>: <message> (rerun with --debug for the traceback)``
    and exit code 1. With ``--debug`` the full traceback is printed too.
    """
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except TyperException as exc:
        if exc.exit_code != 2:
            raise
        if debug_enabled():
            console.print_exception()
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "spinekit"
        _red("error: ", f"{exc.format_message()} (see {command} --help)")
        raise typer.Exit(code=2) from None
    except KeyboardInterrupt:
        _red("interrupted", "")
        raise typer.Exit(code=130) from None
    except Exception as exc:
        if debug_enabled():
            console.print_exception()
        if _is_user_error(exc):
            _red("error: ", _user_message(exc))
            raise typer.Exit(code=2) from None
        _red("internal error: ", f"{_one_line(exc)} (rerun with --debug for the traceback)")
        raise typer.Exit(code=1) from None
