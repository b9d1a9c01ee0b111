"""Checks of external records at the boundary: the schema helpers every reader uses.

Each helper takes the value and ``where``, its JSON path inside the file
(``shapes[2].points[0]``), and returns the value converted (an ``int``, a ``float``,
a point tuple) or raises :class:`Invalid` (a ``ValueError``) whose text is
``"<where>: <reason>"``. A reader turns that into an
:class:`~spinekit.errors.InputError` naming the file (the file is skipped) or a
warning line naming the file (only that record is dropped); see :func:`fail`.

Limits (the same for every format):

- numbers: finite (JSON NaN/Infinity are already refused by
  :func:`spinekit.io.jsonfile.read_json`), coordinates within
  ``+-MAX_COORDINATE`` pixels;
- ids: integers (booleans refused; ``3.0`` taken as 3) in ``[0, MAX_ID]``;
- image sides: integers in ``[1, MAX_SIDE]``;
- text: strings (``null`` refused) that are valid Unicode (no lone surrogates).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from spinekit.errors import InputError

MAX_COORDINATE = 1e7
"""Largest absolute pixel coordinate accepted (images are at most a few 10^4 pixels wide)."""
MAX_ID = 2**53
"""Largest id accepted (exact in a float64, as JSON readers in other languages need)."""
MAX_SIDE = 1_000_000
"""Largest image width or height accepted (the pixel-count limit applies as well)."""


class Invalid(ValueError):
    """A record that breaks the schema: ``where`` (JSON path) and ``reason``."""

    def __init__(self, where: str, reason: str) -> None:
        self.where, self.reason = where, reason
        super().__init__(f"{where}: {reason}" if where else reason)


def fail(source: str | Path | None, exc: Invalid) -> NoReturn:
    """Raise the :class:`InputError` ``"<source>: <where>: <reason>"`` for ``exc``."""
    raise InputError(source, str(exc)) from exc


def shown(value: Any) -> str:
    """A short, printable rendering of ``value`` for a message."""
    text = "null" if value is None else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def required(doc: Mapping[str, Any], key: str, where: str) -> Any:
    """``doc[key]``; :class:`Invalid` ``"<where>.<key>: missing"`` when absent."""
    if key not in doc:
        raise Invalid(join(where, key), "missing")
    return doc[key]


def join(where: str, key: str | int) -> str:
    """JSON path ``where`` extended by an object key or a list index."""
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


def mapping(value: Any, where: str, *, optional: bool = False) -> dict[str, Any]:
    """An object (``None`` gives ``{}`` when ``optional``)."""
    if value is None and optional:
        return {}
    if not isinstance(value, dict):
        raise Invalid(where, f"must be an object, got {shown(value)}")
    return value


def sequence(value: Any, where: str, *, optional: bool = False) -> list[Any]:
    """A list (``None`` gives ``[]`` when ``optional``)."""
    if value is None and optional:
        return []
    if not isinstance(value, list):
        raise Invalid(where, f"must be a list, got {shown(value)}")
    return value


def text(value: Any, where: str, *, empty: bool = False) -> str:
    """A string (stripped) that is valid Unicode; empty only when ``empty``."""
    if not isinstance(value, str):
        raise Invalid(where, f"must be a string, got {shown(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Invalid(where, "is not valid Unicode (a lone surrogate escape)") from exc
    value = value.strip()
    if not value and not empty:
        raise Invalid(where, "must not be empty")
    return value


def integer(value: Any, where: str, *, lo: int = 0, hi: int = MAX_ID) -> int:
    """An integer in ``[lo, hi]`` (an integral float such as ``3.0`` is accepted)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(where, f"must be an integer, got {shown(value)}")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise Invalid(where, f"must be an integer, got {shown(value)}")
    if not lo <= value <= hi:
        raise Invalid(where, f"{shown(value)} is outside [{lo}, {hi}]")
    return int(value)


def number(value: Any, where: str, *, lo: float = -MAX_COORDINATE, hi: float = MAX_COORDINATE,
           strings: bool = False) -> float:
    """A finite number in ``[lo, hi]``; numeric strings (``"12.5"``) only when ``strings``."""
    raw = value
    if strings and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise Invalid(where, f"is not a number: {shown(raw)}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(where, f"must be a number, got {shown(raw)}")
    result = float(value)  # a huge int overflows to inf, refused below
    if not math.isfinite(result):
        raise Invalid(where, f"{shown(raw)} is not a finite number")
    if not lo <= result <= hi:
        raise Invalid(where, f"{shown(raw)} is outside [{lo:g}, {hi:g}]")
    return result


def point(value: Any, where: str) -> tuple[float, float]:
    """An ``[x, y]`` pair of coordinates."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise Invalid(where, f"must be an [x, y] pair, got {shown(value)}")
    return number(value[0], join(where, 0)), number(value[1], join(where, 1))


def points(value: Any, where: str) -> tuple[tuple[float, float], ...]:
    """A list of ``[x, y]`` pairs."""
    return tuple(point(p, join(where, i)) for i, p in enumerate(sequence(value, where)))


def flat_points(value: Any, where: str) -> list[float]:
    """A flat COCO polygon ``[x1, y1, x2, y2, ...]`` of at least 3 points."""
    coords = sequence(value, where)
    if len(coords) < 6 or len(coords) % 2:
        raise Invalid(where, f"a polygon needs an even number (>= 6) of coordinates, got {len(coords)}")
    return [number(v, join(where, i)) for i, v in enumerate(coords)]


def bbox(value: Any, where: str) -> tuple[float, float, float, float]:
    """A COCO ``[x, y, width, height]`` box with width and height >= 0."""
    if not isinstance(value, list) or len(value) != 4:
        raise Invalid(where, f"must be [x, y, width, height], got {shown(value)}")
    x, y, w, h = (number(v, join(where, i)) for i, v in enumerate(value))
    if w < 0 or h < 0:
        raise Invalid(where, f"width and height must be >= 0, got {shown(value)}")
    return x, y, w, h


def side(value: Any, where: str) -> int:
    """An image width or height: an integer in ``[1, MAX_SIDE]``."""
    return integer(value, where, lo=1, hi=MAX_SIDE)


def spacing(value: Any, where: str) -> tuple[float, float] | None:
    """A ``[row, column]`` pixel spacing in mm (positive), or None when null."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2:
        raise Invalid(where, f"must be [row, column] in mm, got {shown(value)}")
    row, col = (number(v, join(where, i), lo=1e-9, hi=1e6) for i, v in enumerate(value))
    return row, col


def unique(values: Iterable[tuple[str, Any]], what: str) -> None:
    """Refuse a value seen twice: ``values`` are ``(where, value)``; :class:`Invalid` names both."""
    seen: dict[Any, str] = {}
    for where, value in values:
        if value in seen:
            raise Invalid(where, f"duplicate {what} {shown(value)} (also {seen[value]})")
        seen[value] = where
