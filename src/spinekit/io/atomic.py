"""Atomic output: write to a temporary file beside the target, then rename over it.

A crash or an error mid-write leaves the previous file (if any) untouched.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from spinekit.errors import InputError


def _default_file_mode() -> int:
    """Permissions a plain ``open(..., "w")`` would give (0o666 minus the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _default_file_mode()


_TEMP_PREFIX = ".sk-"
_MAX_TEMP_SUFFIX = 16


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


@contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it to ``path`` on success.

    ``suffix`` defaults to the target's suffix so writers that pick a format from
    the extension (PIL, matplotlib) still work. The temporary name is short
    (``.sk-XXXXXXXX<suffix>``), so a target whose name is near the filesystem's
    limit still works; a target name over the limit is an :class:`InputError`.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    limit = _name_max(target.parent)
    if len(os.fsencode(target.name)) > limit:
        raise InputError(target, f"file name of {len(os.fsencode(target.name))} bytes is longer "
                         f"than the filesystem allows ({limit})")
    tail = suffix if suffix is not None else target.suffix
    if len(os.fsencode(tail)) > _MAX_TEMP_SUFFIX:
        tail = ""
    fd, tmp_name = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=tail, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, _FILE_MODE)  # mkstemp creates 0600; outputs should be readable like any file
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _finite_or_null(value: Any) -> Any:
    """``value`` with every NaN/Infinity float (not JSON) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_null(v) for v in value]
    return value


def json_text(obj: Any, indent: int | None = 1, *, strict: bool = False) -> str:
    """Standard JSON of ``obj`` (``allow_nan=False``): NaN/Infinity become null, or with
    ``strict`` raise ValueError (for data files such as ``annotations.json``, where a
    non-finite number is a bug: input is validated finite on the way in)."""
    try:
        return json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False)
    except ValueError:
        if strict:
            raise ValueError("refusing to write NaN or Infinity (not valid JSON)") from None
        return json.dumps(_finite_or_null(obj), indent=indent, ensure_ascii=False, allow_nan=False)


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 1, *, strict: bool = False) -> None:
    """Serialise ``obj`` as standard JSON (see :func:`json_text`) and write it atomically."""
    try:
        text = json_text(obj, indent, strict=strict)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    atomic_write_text(path, text + "\n")
