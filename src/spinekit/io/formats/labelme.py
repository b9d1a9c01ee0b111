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
from spinekit.io.atomic import atomic_write_json
from spinekit.io.jsonfile import parse_spacing, read_json
from spinekit.io.paths import safe_join
from spinekit.io.shapes import ReadResult, Shape, ShapeKind, SourceItem

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
    if not isinstance(raw, dict):
        return None, f"shape {index} is not an object"
    label = str(raw.get("label", "")).strip()
    shape_type = str(raw.get("shape_type") or "polygon")
    kind = _KINDS.get(shape_type)
    if not label:
        return None, f"shape {index} has no label"
    if kind is None:
        return None, f"shape {index} ({label}): unsupported shape_type {shape_type!r}"
    try:
        points = tuple((float(p[0]), float(p[1])) for p in raw.get("points", []))
    except (TypeError, ValueError, IndexError):
        return None, f"shape {index} ({label}): points are not [x, y] pairs"
    if len(points) < _MIN_POINTS[kind]:
        return None, f"shape {index} ({label}): {shape_type} with {len(points)} points"
    attributes: dict[str, str] = {}
    if raw.get("group_id") is not None:
        attributes["group_id"] = str(raw["group_id"])
        attributes["instance"] = f"{label}#{raw['group_id']}"
    if raw.get("description"):
        attributes["description"] = str(raw["description"])
    for key, value in (raw.get("flags") or {}).items():
        if value:
            attributes[f"flag:{key}"] = "true"
    return Shape(label=label, kind=kind, points=points, attributes=attributes), None


def _resolve_image(
    doc: dict[str, Any], json_path: Path, root: Path
) -> tuple[Path | None, bytes | None, str]:
    """Return (image path, embedded bytes, dataset file name) for one document."""
    rel_dir = json_path.parent.relative_to(root).as_posix()
    image_ref = str(doc.get("imagePath") or "").replace("\\", "/")
    image_path: Path | None = None
    if image_ref:
        joined = image_ref if rel_dir == "." else f"{rel_dir}/{image_ref}"
        image_path = safe_join(root, joined, source=json_path)
        if image_path.is_file():
            return image_path, None, image_path.relative_to(root.resolve()).as_posix()
    data = doc.get("imageData")
    if data:
        try:
            raw = base64.b64decode(str(data), validate=False)
        except (binascii.Error, ValueError) as exc:
            raise InputError(json_path, f"imageData is not valid base64 ({exc})") from exc
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
    image_path, image_bytes, file_name = _resolve_image(doc, json_path, root)
    shapes: list[Shape] = []
    warnings: list[str] = []
    for index, raw in enumerate(doc.get("shapes", [])):
        shape, problem = _parse_shape(raw, index)
        if shape is not None:
            shapes.append(shape)
        elif problem:
            warnings.append(f"{json_path}: {problem}")
    width, height = doc.get("imageWidth"), doc.get("imageHeight")
    return SourceItem(
        source=json_path,
        file_name=file_name,
        shapes=shapes,
        image_path=image_path,
        image_bytes=image_bytes,
        width=int(width) if isinstance(width, int | float) else None,
        height=int(height) if isinstance(height, int | float) else None,
        pixel_spacing_mm=parse_spacing(doc.get("pixel_spacing_mm")),
        extra={"warnings": warnings, "flags": doc.get("flags") or {}},
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
    *, flags: dict[str, bool] | None = None,
) -> dict[str, Any]:
    """A LabelMe 5.x document referencing ``image_path`` (relative to the JSON)."""
    return {
        "version": LABELME_VERSION,
        "flags": flags or {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": None,
        "imageHeight": int(height),
        "imageWidth": int(width),
    }


def write_labelme(path: str | Path, document: dict[str, Any]) -> None:
    """Write a LabelMe document atomically."""
    atomic_write_json(path, document, indent=2)
