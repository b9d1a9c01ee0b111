"""LabelMe JSON: one ``<name>.json`` per image, usually beside ``<name>.png``.

Reading supports ``shape_type`` polygon, rectangle, point, circle, line and
linestrip (polylines), ``imagePath`` (relative to the JSON's folder, POSIX or
Windows separators, never outside the source folder) and embedded
``imageData`` (base64). Shapes with the same label and ``group_id`` form one
instance (attribute ``instance``), as LabelMe intends. An optional top-level
``pixel_spacing_mm`` ``[row, col]`` (not a LabelMe key; LabelMe keeps unknown keys
when it saves) gives the image's pixel spacing. Writing produces
LabelMe 5.x documents that LabelMe opens for correction (pre-annotation).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spinekit.errors import InputError
from spinekit.io import validate
from spinekit.io.atomic import atomic_write_json
from spinekit.io.jsonfile import read_json
from spinekit.io.paths import safe_join
from spinekit.io.shapes import ReadResult, Shape, ShapeKind, SourceItem
from spinekit.io.validate import (
    MAX_ID,
    Invalid,
    fail,
    integer,
    mapping,
    required,
    sequence,
    shown,
    side,
    spacing,
    text,
)

log = logging.getLogger(__name__)

LABELME_VERSION = "5.5.0"
_KINDS: dict[str, ShapeKind] = {
    "polygon": "polygon",
    "rectangle": "rectangle",
    "point": "point",
    "circle": "circle",
    "line": "polyline",
    "linestrip": "polyline",
}
_MIN_POINTS = {"polygon": 3, "rectangle": 2, "point": 1, "circle": 2, "polyline": 2}


def _json_files(src: Path) -> tuple[Path, list[Path]]:
    if src.is_file():
        return src.parent, [src]
    if not src.is_dir():
        raise InputError(src, "source not found")
    files = sorted(p for p in src.rglob("*.json") if not p.name.startswith("."))
    if not files:
        raise InputError(src, "no LabelMe .json files found in this folder")
    return src, files


def _parse_shape(raw: Any, index: int) -> tuple[Shape | None, str | None]:
    """One LabelMe shape, or (None, "shapes[i].field: reason") when unusable."""
    where = f"shapes[{index}]"
    try:
        shape = mapping(raw, where)
        label = text(required(shape, "label", where), f"{where}.label")
        shape_type = text(shape.get("shape_type") or "polygon", f"{where}.shape_type")
        kind = _KINDS.get(shape_type)
        if kind is None:
            raise Invalid(f"{where}.shape_type", f"unsupported shape_type {shape_type!r} ({label})")
        points = _points(shape.get("points"), kind, f"{where}.points")
        attributes = _shape_attributes(shape, label, where)
    except Invalid as exc:
        return None, str(exc)
    return Shape(label=label, kind=kind, points=points, attributes=attributes), None


def _points(raw: Any, kind: ShapeKind, where: str) -> tuple[tuple[float, float], ...]:
    points = validate.points(raw, where)
    if len(points) < _MIN_POINTS[kind]:
        raise Invalid(where, f"{kind} with {len(points)} points (needs {_MIN_POINTS[kind]})")
    return points


def _shape_attributes(shape: dict[str, Any], label: str, where: str) -> dict[str, str]:
    attributes: dict[str, str] = {}
    group = shape.get("group_id")
    if group is not None:
        group_id = str(integer(group, f"{where}.group_id", lo=-MAX_ID))  # LabelMe: an int or null
        attributes["group_id"] = group_id
        attributes["instance"] = f"{label}#{group_id}"
    description = shape.get("description")
    if description:
        attributes["description"] = text(description, f"{where}.description", empty=True)
    for key, value in mapping(shape.get("flags"), f"{where}.flags", optional=True).items():
        if value:
            attributes[f"flag:{key}"] = "true"
    return attributes


def _document_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """The checked top-level fields of a LabelMe document; raises :class:`Invalid`."""
    width, height = doc.get("imageWidth"), doc.get("imageHeight")
    flags = mapping(doc.get("flags"), "flags", optional=True)
    for key, value in flags.items():
        if not isinstance(value, bool | int):
            raise Invalid(f"flags.{key}", f"must be true or false, got {shown(value)}")
    if doc.get("imagePath") is not None:
        text(doc["imagePath"], "imagePath", empty=True)
    return {
        "image_data": _image_data(doc.get("imageData")),
        "width": None if width is None else side(width, "imageWidth"),
        "height": None if height is None else side(height, "imageHeight"),
        "pixel_spacing_mm": spacing(doc.get("pixel_spacing_mm"), "pixel_spacing_mm"),
        "flags": {str(k): bool(v) for k, v in flags.items()},
        "shapes": sequence(doc.get("shapes"), "shapes", optional=True),
    }


def _image_data(value: Any) -> bytes | None:
    """The decoded ``imageData`` (None when null or empty): strict base64, whitespace (line
    breaks) allowed; raises :class:`Invalid`. Checked whenever present, even when the
    ``imagePath`` file exists (spinekit then copies that file, the original encoding), since
    LabelMe decodes imageData whenever present and cannot open the document when it is broken."""
    if value is None:
        return None
    encoded = "".join(text(value, "imageData", empty=True).split())
    if not encoded:
        return None
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Invalid("imageData", f"is not valid base64 ({exc})") from exc


def _resolve_image(
    doc: dict[str, Any], json_path: Path, root: Path, raw: bytes | None
) -> tuple[Path | None, bytes | None, str]:
    """Return (image path, embedded bytes, dataset file name) for one document; ``raw`` is
    the decoded ``imageData`` (used when the ``imagePath`` file is absent)."""
    rel_dir = json_path.parent.relative_to(root).as_posix()
    image_ref = str(doc.get("imagePath") or "").replace("\\", "/")
    image_path: Path | None = None
    if image_ref:
        joined = image_ref if rel_dir == "." else f"{rel_dir}/{image_ref}"
        image_path = safe_join(root, joined, source=json_path)
        if image_path.is_file():
            return image_path, None, image_path.relative_to(root.resolve()).as_posix()
    if raw is not None:
        suffix = Path(image_ref).suffix.lower() if image_ref else ""
        if suffix not in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"):
            suffix = ".jpg" if raw[:3] == b"\xff\xd8\xff" else ".png"
        stem = json_path.relative_to(root).with_suffix("").as_posix()
        return None, raw, f"{stem}{suffix}"
    if image_ref:
        raise InputError(json_path, f"image {image_ref!r} not found and no imageData embedded")
    raise InputError(json_path, "neither imagePath nor imageData given")


def _read_document(json_path: Path, root: Path) -> SourceItem:
    doc = read_json(json_path)
    if not isinstance(doc, dict) or not isinstance(doc.get("shapes", []), list):
        raise InputError(json_path, "not a LabelMe file (no 'shapes' list)")
    try:
        fields = _document_fields(doc)
    except Invalid as exc:
        fail(json_path, exc)
    image_path, image_bytes, file_name = _resolve_image(doc, json_path, root, fields["image_data"])
    shapes: list[Shape] = []
    warnings: list[str] = []
    for index, raw in enumerate(fields["shapes"]):
        shape, problem = _parse_shape(raw, index)
        if shape is not None:
            shapes.append(shape)
        elif problem:
            warnings.append(f"{json_path}: {problem}")
    return SourceItem(
        source=json_path,
        file_name=file_name,
        shapes=shapes,
        image_path=image_path,
        image_bytes=image_bytes,
        width=fields["width"],
        height=fields["height"],
        pixel_spacing_mm=fields["pixel_spacing_mm"],
        extra={"warnings": warnings, "flags": fields["flags"]},
    )


def read_labelme(src: str | Path) -> ReadResult:
    """Read a LabelMe folder (recursively) or a single LabelMe JSON file.

    Files that cannot be used (broken JSON, missing image, a path outside the
    folder) are listed in ``ReadResult.skipped`` as ``"<file>: <reason>"``.
    """
    root, files = _json_files(Path(src))
    result = ReadResult()
    for json_path in files:
        try:
            result.items.append(_read_document(json_path, root))
        except InputError as exc:
            result.skipped.append(str(exc))
    return result


def labelme_shape(
    label: str,
    points: Sequence[Sequence[float]],
    *,
    shape_type: str = "polygon",
    group_id: int | None = None,
    description: str = "",
) -> dict[str, Any]:
    """One LabelMe shape dict."""
    return {
        "label": label,
        "points": [[round(float(x), 2), round(float(y), 2)] for x, y in points],
        "group_id": group_id,
        "description": description,
        "shape_type": shape_type,
        "flags": {},
        "mask": None,
    }


def labelme_document(
    image_path: str, width: int, height: int, shapes: list[dict[str, Any]],
    *, flags: dict[str, bool] | None = None, pixel_spacing_mm: Sequence[float] | None = None,
) -> dict[str, Any]:
    """A LabelMe 5.x document referencing ``image_path`` (relative to the JSON); with
    ``pixel_spacing_mm`` it carries the image's ``[row, col]`` spacing (read back by ingest)."""
    doc: dict[str, Any] = {
        "version": LABELME_VERSION,
        "flags": flags or {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": None,
        "imageHeight": int(height),
        "imageWidth": int(width),
    }
    if pixel_spacing_mm is not None:
        doc["pixel_spacing_mm"] = [float(v) for v in pixel_spacing_mm]
    return doc


def write_labelme(path: str | Path, document: dict[str, Any]) -> None:
    """Write a LabelMe document atomically."""
    atomic_write_json(path, document, indent=2, strict=True)
