"""Reading JSON files and small JSON values with one-line errors naming the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spinekit.errors import InputError


def read_json(path: str | Path) -> Any:
    """Parse a UTF-8 JSON file; :class:`InputError` ("file: broken JSON (...)") on failure."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(p, f"broken JSON ({exc.__class__.__name__}: {exc})") from exc
    except FileNotFoundError as exc:
        raise InputError(p, "file not found") from exc
    except OSError as exc:
        raise InputError(p, f"cannot read ({exc})") from exc


def read_json_object(path: str | Path, what: str = "JSON object") -> dict[str, Any]:
    """Like :func:`read_json` but the top level must be an object."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError(path, f"not a {what} (top level is not an object)")
    return data


def parse_spacing(value: Any) -> tuple[float, float] | None:
    """A ``[row, column]`` pixel spacing in mm, or None when absent or not two positive numbers."""
    if isinstance(value, list | tuple) and len(value) == 2:
        try:
            row, col = float(value[0]), float(value[1])
        except (TypeError, ValueError):
            return None
        if row > 0 and col > 0:
            return (row, col)
    return None
