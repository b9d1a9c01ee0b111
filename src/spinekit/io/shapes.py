"""Format-neutral annotation items produced by every reader in :mod:`spinekit.io.formats`.

A reader turns one source (a LabelMe folder, a VIA project, a COCO file, the
AASCE CSVs, a mask folder) into :class:`SourceItem` objects: one image (a file
path inside the source folder, or embedded bytes) and its :class:`Shape` list in
pixel coordinates. :mod:`spinekit.data.ingest` turns them into COCO records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ShapeKind = Literal["polygon", "rectangle", "point", "polyline", "circle"]


@dataclass(frozen=True)
class Shape:
    """One annotated shape.

    ``points`` are ``(x, y)`` pixel coordinates, origin at the top-left corner of
    the top-left pixel. A rectangle has two points (opposite corners), a point one,
    a polygon three or more (not repeated at the end), a circle two (centre, a
    point on the rim). ``attributes`` carries extra named values such as the
    vertebra ``level`` ("L4") or a LabelMe ``group_id``.
    """

    label: str
    kind: ShapeKind
    points: tuple[tuple[float, float], ...]
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class SourceItem:
    """One image and its shapes, as read from a source annotation format.

    Exactly one of ``image_path`` (a file inside the source folder) and
    ``image_bytes`` (an embedded, encoded image such as LabelMe ``imageData``)
    is set. ``width``/``height`` are the sizes the annotation declares (``None``
    when it declares none); ingest checks them against the real image.
    """

    source: Path
    file_name: str
    shapes: list[Shape]
    image_path: Path | None = None
    image_bytes: bytes | None = None
    width: int | None = None
    height: int | None = None
    patient_id: str | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    frame: int | None = None
    extra: dict[str, object] = field(default_factory=dict)


@dataclass
class ReadResult:
    """What a reader returns: the items it could read and one line per skipped file."""

    items: list[SourceItem] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
