"""AASCE / BoostNet landmark CSVs (the layout of ``../shared/data/aasce``).

``SRC/filenames.csv`` names one image per row (under ``SRC/images/``);
``SRC/landmarks.csv`` holds 136 numbers per row, ``x1..x68`` then ``y1..y68``
as fractions of the image width and height: 17 vertebrae T1..L5 top-down, four
corners each (top-left, top-right, bottom-left, bottom-right as seen on the
image); optional ``SRC/angles.csv`` holds the three Cobb angles per row.

Each vertebra becomes one quadrilateral ``vertebra`` instance, corners in ring
order TL, TR, BR, BL, with attribute ``level`` and its corners kept as
attributes ``corners`` (JSON list) so endplates stay exact.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from spinekit.errors import InputError
from spinekit.io.images import MAX_IMAGE_PIXELS, image_size
from spinekit.io.paths import safe_join
from spinekit.io.shapes import ReadResult, Shape, SourceItem
from spinekit.levels import AASCE_LEVELS

AASCE_PATIENT_PATTERN = r"-(\d+) [A-Z]+ AP"
"""Default patient pattern: ``sunhl-1th-02-Jan-2017-162 A AP.jpg`` -> ``162``."""

_RING = (0, 1, 3, 2)  # TL, TR, BL, BR -> TL, TR, BR, BL


def _read_rows(path: Path, width: int | None) -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if row]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read CSV ({exc})") from exc
    if width is not None:
        for number, row in enumerate(rows, start=1):
            if len(row) != width:
                raise InputError(path, f"row {number} has {len(row)} values, expected {width}")
    return rows


def _landmark_column(column: int) -> str:
    return f"x{column + 1}" if column < 68 else f"y{column - 67}"


def _numbers(row: list[str], path: Path, index: int, name: str, column_name: Callable[[int], str],
             bounds: tuple[float, float]) -> np.ndarray:
    """The row's values as float64, all finite and within ``bounds``; InputError naming the
    file, the row (1-based), its image and the first bad column otherwise."""
    try:
        values = np.asarray(row, dtype=np.float64)  # vectorised parse (the common, valid case)
        bad = ~(np.isfinite(values) & (values >= bounds[0]) & (values <= bounds[1]))
    except ValueError:
        bad = np.array([not _is_float(v) for v in row])
        column = int(np.flatnonzero(bad)[0])
        raise InputError(path, f"row {index + 1} ({name}), column {column_name(column)}: "
                         f"{row[column].strip()[:40]!r} is not a number") from None
    if bad.any():
        column = int(np.flatnonzero(bad)[0])
        raise InputError(path, f"row {index + 1} ({name}), column {column_name(column)}: "
                         f"{row[column].strip()[:40]} is not a finite number in "
                         f"[{bounds[0]:g}, {bounds[1]:g}]")
    return values


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _vertebra_shapes(values: np.ndarray, width: int, height: int) -> list[Shape]:
    xs = values[:68] * width
    ys = values[68:] * height
    shapes = []
    for v, level in enumerate(AASCE_LEVELS):
        corners = [(float(xs[4 * v + k]), float(ys[4 * v + k])) for k in range(4)]
        ring = tuple(corners[k] for k in _RING)
        attributes = {"level": level, "corners": json.dumps([[round(x, 2), round(y, 2)] for x, y in corners])}
        shapes.append(Shape(label="vertebra", kind="polygon", points=ring, attributes=attributes))
    return shapes


def read_aasce(src: str | Path, *, max_pixels: int = MAX_IMAGE_PIXELS) -> ReadResult:
    """Read the AASCE CSV layout; one item per image with 17 vertebra instances.

    Image sizes come from file headers (no pixel decoding). Rows whose values
    are not finite numbers in [0, 1] (up to 0.05 outside), whose Cobb angles are not
    numbers in [-180, 180], or whose image is missing are skipped with a reason naming
    the file, row and column.
    """
    root = Path(src)
    names_csv, marks_csv, angles_csv = (root / n for n in ("filenames.csv", "landmarks.csv", "angles.csv"))
    for required in (names_csv, marks_csv):
        if not required.is_file():
            raise InputError(required, "missing: an AASCE folder needs filenames.csv and landmarks.csv")
    names = _read_rows(names_csv, 1)
    marks = _read_rows(marks_csv, 136)
    angles = _read_rows(angles_csv, 3) if angles_csv.is_file() else None
    if len(marks) != len(names) or (angles is not None and len(angles) != len(names)):
        raise InputError(marks_csv, f"row counts differ: {len(names)} names, {len(marks)} landmark rows")
    result = ReadResult()
    for index, (name_row, mark_row) in enumerate(zip(names, marks, strict=True)):
        name = name_row[0].strip()
        try:
            image_path = safe_join(root / "images", name, source=names_csv)
            width, height = image_size(image_path, max_pixels=max_pixels)
            values = _numbers(mark_row, marks_csv, index, name, _landmark_column, (-0.05, 1.05))
            extra: dict[str, object] = {}
            if angles is not None:
                extra["cobb_angles_deg"] = _numbers(angles[index], angles_csv, index, name,
                                                    lambda c: f"angle {c + 1}", (-180.0, 180.0)).tolist()
        except InputError as exc:
            result.skipped.append(str(exc))
            continue
        result.items.append(
            SourceItem(
                source=marks_csv,
                file_name=image_path.relative_to(root.resolve()).as_posix(),
                shapes=_vertebra_shapes(values, width, height),
                image_path=image_path,
                width=width,
                height=height,
                extra=extra,
            )
        )
    return result
