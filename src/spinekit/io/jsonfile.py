"""Reading JSON files and small JSON values with one-line errors naming the file.

Every reader of an external JSON file goes through :func:`read_json`, which is
stricter than :func:`json.loads`:

- ``NaN``, ``Infinity`` and ``-Infinity`` (Python extensions, not JSON) are refused,
  and so are numbers too large for a float (``1e999``) or an int of over 4300 digits;
- an object with the same key twice is refused (JSON leaves it undefined), and so is
  a ``\\u`` escape of a lone surrogate (not Unicode: it could never be written back);
- files over :data:`MAX_JSON_BYTES` and values nested deeper than
  :data:`MAX_JSON_DEPTH` are refused before parsing (the depth is counted without
  recursion, so a hostile file cannot exhaust the stack).

Each failure is an :class:`~spinekit.errors.InputError` ``"<file>: <reason>"``, with the
line and column where the parser knows them.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from spinekit.errors import InputError

MAX_JSON_BYTES = 512 * 1024 * 1024
"""Default size limit of a JSON file (512 MiB)."""
MAX_JSON_DEPTH = 64
"""Default nesting limit (objects and arrays); spinekit's own files nest 6 deep."""

_STRING = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
_STRINGS = re.compile(_STRING, re.DOTALL)


class _Refused(ValueError):
    """A value the strict parser refuses (raised from the parser hooks)."""

    def __init__(self, reason: str, literal: str) -> None:
        super().__init__(reason)
        self.literal = literal


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not valid JSON (numbers must be finite)", name)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"number {text[:40]} is out of range", text)
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"duplicate key {key[:80]!r} in one object", "")
            seen.add(key)
    return out


_DEPTH_STEP = np.zeros(256, dtype=np.int8)
_DEPTH_STEP[[ord("["), ord("{")]] = 1
_DEPTH_STEP[[ord("]"), ord("}")]] = -1
_CHUNK = 1 << 24
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in b'"[]{}')
_QUOTED = re.compile(rb'"[^"]*"')
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def json_depth(data: bytes) -> int:
    """Deepest nesting of objects/arrays in JSON text ``data`` (strings skipped; no recursion)."""
    # drop escaped backslashes, then escaped quotes; keep only quotes and brackets
    kept = data.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    codes = np.frombuffer(_QUOTED.sub(b"", kept), dtype=np.uint8)
    deepest = level = 0
    for start in range(0, codes.size, _CHUNK):  # chunks bound the memory of the running sum
        running = np.cumsum(_DEPTH_STEP[codes[start:start + _CHUNK]], dtype=np.int64) + level
        deepest, level = max(deepest, int(running.max())), int(running[-1])
    return deepest


def _where(text: str, literal: str) -> str:
    """`` (line L, column C)`` of the first ``literal`` outside a string, or ``""``."""
    if not literal:
        return ""
    pattern = re.compile(_STRING.decode() + "|" + re.escape(literal))
    for match in pattern.finditer(text):
        if not match.group(0).startswith('"'):
            line = text.count("\n", 0, match.start()) + 1
            column = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
            return f" (line {line}, column {column})"
    return ""


def _lone_surrogate(data: Any) -> str | None:
    """JSON path of the first string (key or value) holding a lone surrogate, or None."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        where, value = stack.pop()
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(
            value, list) else ()
        for key, child in items:
            at = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}" if where else str(key)
            if isinstance(key, str) and not _encodable(key):
                return where or "top level"
            if isinstance(child, str) and not _encodable(child):
                return at
            stack.append((at, child))
    return "top level" if isinstance(data, str) and not _encodable(data) else None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_json(text: str, source: str | Path | None, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Strictly parse JSON ``text`` (see the module docstring); InputError names ``source``."""
    depth = json_depth(text.encode("utf-8", errors="surrogatepass"))
    if depth > max_depth:
        raise InputError(source, f"JSON nested {depth} levels deep, deeper than the limit of {max_depth}")
    data = _loads(text, source)
    if _SURROGATE_ESCAPE.search(text):  # rare: only then look for a lone one (not valid Unicode)
        where = _lone_surrogate(data)
        if where is not None:
            raise InputError(source, f"{where}: a \\u escape that is not valid Unicode (lone surrogate)")
    return data


def _loads(text: str, source: str | Path | None) -> Any:
    try:
        return json.loads(text, parse_constant=_constant, parse_float=_float, object_pairs_hook=_object)
    except _Refused as exc:
        raise InputError(source, f"{exc}{_where(text, exc.literal)}") from exc
    except json.JSONDecodeError as exc:
        raise InputError(source, f"broken JSON ({exc})") from exc
    except RecursionError as exc:
        raise InputError(source, "JSON nested too deeply") from exc
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise InputError(source, f"invalid JSON value ({exc})") from exc


def read_json(path: str | Path, *, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Strictly parse a UTF-8 JSON file; :class:`InputError` ("file: reason") on any problem."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > max_bytes:
            raise InputError(p, f"JSON file of {size} bytes is over the limit of {max_bytes} bytes")
        raw = p.read_bytes()
    except FileNotFoundError as exc:
        raise InputError(p, "file not found") from exc
    except IsADirectoryError as exc:
        raise InputError(p, "is a folder, not a JSON file") from exc
    except OSError as exc:
        raise InputError(p, f"cannot read ({exc})") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(p, f"not UTF-8 text (byte {exc.start}: {exc.reason})") from exc
    return parse_json(text, p, max_depth=max_depth)


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
        except (TypeError, ValueError, OverflowError):
            return None
        if 0 < row < 1e6 and 0 < col < 1e6:
            return (row, col)
    return None
