"""Path safety: references taken from annotation files must stay inside their folder."""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from spinekit.errors import InputError


def safe_join(root: str | Path, relative: str, *, source: str | Path | None = None) -> Path:
    """Resolve ``relative`` (as written in an annotation file) under ``root``.

    Accepts POSIX and Windows separators (LabelMe files written on Windows use
    backslashes). Raises :class:`InputError` naming ``source`` when the result
    is absolute or escapes ``root`` (``..`` components, symlinks pointing out).
    """
    if not relative or "\x00" in relative:
        raise InputError(source, f"empty or invalid path {relative!r}")
    parts = PureWindowsPath(relative).parts if "\\" in relative else PurePosixPath(relative).parts
    if PureWindowsPath(relative).is_absolute() or PurePosixPath(relative).is_absolute() or (
        parts and (parts[0].endswith(":") or parts[0].endswith(":\\"))
    ):
        raise InputError(source, f"path {relative!r} is absolute; it must be inside {root}")
    base = Path(root).resolve()
    candidate = base.joinpath(*parts).resolve()
    if candidate != base and base not in candidate.parents:
        raise InputError(source, f"path {relative!r} points outside the dataset folder {base}")
    return candidate
