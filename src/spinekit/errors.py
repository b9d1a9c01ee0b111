"""Exception types. Libraries raise these; only the CLI turns them into exit codes."""

from __future__ import annotations

from pathlib import Path


class SpinekitError(Exception):
    """Base class of every error spinekit raises on purpose."""


class InputError(SpinekitError):
    """Bad user input: one line naming the file and the reason."""

    def __init__(self, path: str | Path | None, reason: str) -> None:
        self.path = None if path is None else str(path)
        self.reason = reason
        super().__init__(reason if path is None else f"{path}: {reason}")


class UsageError(SpinekitError, ValueError):
    """A bad option, argument or setting value (no file to name): one line, naming the option.

    Also a ``ValueError``, so callers that catch ``ValueError`` keep working.
    """
