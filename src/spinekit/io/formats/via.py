"""VGG Image Annotator (VIA 1.x / 2.x) JSON.

``src`` is a VIA JSON file or a folder whose ``*.json`` files (top level) are
read in name order. Both the project file (``_via_settings``,
``_via_img_metadata``, ...) and the plain region export (``{key: {filename,
size, regions, file_attributes}}``) are accepted, with ``regions`` as a list
(VIA 2) or a dict keyed ``"0"``, ``"1"``, ... (VIA 1.x). VIA's ``size`` is the
file size in bytes, so items carry no width/height.

Shapes (``shape_attributes.name``): ``polygon`` and ``polyline``
(``all_points_x``/``all_points_y``), ``rect`` -> ``rectangle`` (two corners),
``circle`` -> ``circle`` (centre and a rim point), ``ellipse`` -> a 32-point
``polygon`` (``theta`` rotation honoured), ``point`` -> ``point``.

The label is the region attribute named by ``label_attribute`` (default: the
first of ``label``, ``class``, ``type``, ``name`` present, or the only
attribute); other attributes go into ``Shape.attributes`` as strings
(checkbox dicts become the comma-joined keys set to true). File attributes
``patient_id``/``patient`` set ``SourceItem.patient_id``. Images are looked up
relative to ``_via_settings.core.default_filepath`` (when it is a relative
folder inside the source) and then relative to the JSON's folder; URLs are
skipped. Unusable regions are noted in the item's ``extra["warnings"]``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from spinekit.errors import InputError
from spinekit.io.images import MAX_IMAGE_PIXELS
from spinekit.io.jsonfile import read_json
from spinekit.io.paths import safe_join
from spinekit.io.shapes import ReadResult, Shape, ShapeKind, SourceItem
from spinekit.io.validate import (
    MAX_COORDINATE,
    Invalid,
    fail,
    join,
    mapping,
    number,
    required,
    sequence,
    shown,
    text,
)

log = logging.getLogger(__name__)

LABEL_ATTRIBUTES = ("label", "class", "type", "name")
ELLIPSE_POINTS = 32
_PATIENT_KEYS = ("patient_id", "patient")


def _json_files(src: Path) -> tuple[Path, list[Path]]:
    if src.is_file():
        return src.parent, [src]
    if not src.is_dir():
        raise InputError(src, "source not found")
    files = sorted(p for p in src.glob("*.json") if not p.name.startswith("."))
    if not files:
        raise InputError(src, "no VIA .json file found in this folder")
    return src, files


def _load_metadata(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (image metadata dict, settings dict) of one VIA file; raises InputError."""
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise InputError(path, "not a VIA file (top level is not an object)")
    if "_via_img_metadata" in doc:
        metadata, settings = doc["_via_img_metadata"], doc.get("_via_settings")
        if not isinstance(metadata, dict):
            raise InputError(path, "_via_img_metadata is not an object")
        return metadata, settings if isinstance(settings, dict) else {}
    entries = [v for v in doc.values() if isinstance(v, dict) and "filename" in v]
    if not entries:
        raise InputError(path, "not a VIA file (no _via_img_metadata and no entries with 'filename')")
    return doc, {}


def _image_roots(settings: dict[str, Any], json_dir: Path, json_path: Path) -> list[Path]:
    roots: list[Path] = []
    core = settings.get("core")
    default = core.get("default_filepath") if isinstance(core, dict) else None
    if isinstance(default, str) and default.strip() and "://" not in default:
        try:
            folder = safe_join(json_dir, default.strip().rstrip("/\\"), source=json_path)
            if folder.is_dir():
                roots.append(folder)
        except InputError as exc:
            log.info("ignoring default_filepath: %s", exc)
    roots.append(json_dir.resolve())
    return roots


def _find_image(name: str, roots: list[Path], json_path: Path) -> Path:
    if "://" in name or name.startswith("data:"):
        raise InputError(json_path, f"image {name[:80]!r}: URL image references are not supported")
    for root in roots:
        path = safe_join(root, name, source=json_path)
        if path.is_file():
            return path
    raise InputError(json_path, f"image {name!r}: image not found")


# ----------------------------------------------------------------------------- attributes


def _attr_text(value: Any, where: str) -> str | None:
    """VIA attribute value -> string (checkbox dict -> keys set to true, comma-joined);
    :class:`Invalid` when the result is not valid Unicode."""
    if value is None:
        return None
    if isinstance(value, dict):
        out = ",".join(str(k) for k, v in value.items() if v is True or v == "true")
    elif isinstance(value, bool):
        out = "true" if value else "false"
    elif isinstance(value, list):
        out = ",".join(str(v) for v in value)
    else:
        out = str(value)
    return text(out, where, empty=True)


def _label_and_attributes(raw: Any, label_attribute: str | None) -> tuple[str, dict[str, str]]:
    """Split region attributes into (label, other attributes); raises ValueError."""
    attrs = {text(k, "region_attributes", empty=True): _attr_text(v, f"region_attributes.{k}")
             for k, v in (raw.items() if isinstance(raw, dict) else [])}
    if label_attribute is not None:
        key = label_attribute if label_attribute in attrs else None
    elif len(attrs) == 1:
        key = next(iter(attrs))
    else:
        key = next((k for k in LABEL_ATTRIBUTES if k in attrs), None)
    if key is None:
        wanted = label_attribute or " / ".join(LABEL_ATTRIBUTES)
        raise ValueError(f"no label attribute ({wanted}) in region attributes {sorted(attrs)}")
    label = attrs.pop(key)
    if not label:
        raise ValueError(f"empty label attribute {key!r}")
    return label, {k: v for k, v in attrs.items() if v is not None}


# ----------------------------------------------------------------------------- shapes


def _num(attrs: dict[str, Any], key: str, where: str, *, lo: float = -MAX_COORDINATE) -> float:
    return number(required(attrs, key, where), join(where, key), lo=lo, strings=True)


def _ellipse(attrs: dict[str, Any], where: str) -> tuple[tuple[float, float], ...]:
    cx, cy, rx, ry = (_num(attrs, k, where) for k in ("cx", "cy", "rx", "ry"))
    theta = number(attrs.get("theta") or 0.0, join(where, "theta"), strings=True)
    if rx <= 0 or ry <= 0:
        raise Invalid(where, "ellipse with a zero radius")
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    points = []
    for i in range(ELLIPSE_POINTS):
        t = 2.0 * math.pi * i / ELLIPSE_POINTS
        ex, ey = rx * math.cos(t), ry * math.sin(t)
        points.append((cx + ex * cos_t - ey * sin_t, cy + ex * sin_t + ey * cos_t))
    return tuple(points)


def _polyline(attrs: dict[str, Any], name: str, where: str
              ) -> tuple[ShapeKind, tuple[tuple[float, float], ...]]:
    xs = sequence(required(attrs, "all_points_x", where), join(where, "all_points_x"))
    ys = sequence(required(attrs, "all_points_y", where), join(where, "all_points_y"))
    if len(xs) != len(ys):
        raise Invalid(where, f"all_points_x ({len(xs)}) and all_points_y ({len(ys)}) differ in length")
    points = tuple((number(x, f"{where}.all_points_x[{i}]", strings=True),
                    number(y, f"{where}.all_points_y[{i}]", strings=True))
                   for i, (x, y) in enumerate(zip(xs, ys, strict=True)))
    if name == "polygon" and len(points) > 3 and points[0] == points[-1]:
        points = points[:-1]
    needed = 3 if name == "polygon" else 2
    if len(points) < needed:
        raise Invalid(where, f"{name} with {len(points)} points")
    return ("polygon" if name == "polygon" else "polyline"), points


def _geometry(attrs: dict[str, Any], where: str) -> tuple[ShapeKind, tuple[tuple[float, float], ...]]:
    """VIA ``shape_attributes`` -> (kind, points); raises :class:`Invalid` naming the field."""
    name = attrs.get("name")
    if name in ("polygon", "polyline"):
        return _polyline(attrs, str(name), where)
    if name == "rect":
        x, y = _num(attrs, "x", where), _num(attrs, "y", where)
        w, h = _num(attrs, "width", where, lo=0.0), _num(attrs, "height", where, lo=0.0)
        if w <= 0 or h <= 0:
            raise Invalid(where, "rect without area")
        return "rectangle", ((x, y), (x + w, y + h))
    if name == "circle":
        cx, cy, r = (_num(attrs, k, where) for k in ("cx", "cy", "r"))
        if r <= 0:
            raise Invalid(where, "circle with zero radius")
        return "circle", ((cx, cy), (cx + r, cy))
    if name == "ellipse":
        return "polygon", _ellipse(attrs, where)
    if name == "point":
        return "point", ((_num(attrs, "cx", where), _num(attrs, "cy", where)),)
    raise Invalid(join(where, "name"), f"unsupported shape {shown(name)}")


def _regions(raw: Any, where: str) -> list[Any]:
    if raw is None:
        return []
    if isinstance(raw, list):
        return raw
    if isinstance(raw, dict):  # VIA 1.x: {"0": region, "1": region, ...}
        keys = list(raw)
        if all(k.isascii() and k.isdigit() for k in keys):
            keys.sort(key=lambda k: int(k))
        return [raw[k] for k in keys]
    raise Invalid(where, f"must be a list or an object of regions, got {shown(raw)}")


def _region_shape(region: Any, label_attribute: str | None, where: str) -> Shape:
    region = mapping(region, where)
    kind, points = _geometry(mapping(region.get("shape_attributes"), join(where, "shape_attributes")),
                             join(where, "shape_attributes"))
    attrs = mapping(region.get("region_attributes"), join(where, "region_attributes"), optional=True)
    try:
        label, attributes = _label_and_attributes(attrs, label_attribute)
    except Invalid as exc:
        raise Invalid(join(where, exc.where), exc.reason) from exc
    except ValueError as exc:
        raise Invalid(join(where, "region_attributes"), str(exc)) from exc
    return Shape(label=label, kind=kind, points=points, attributes=attributes)


# ----------------------------------------------------------------------------- entries


def _patient_id(file_attrs: dict[str, Any], where: str) -> str | None:
    for key in _PATIENT_KEYS:
        value = _attr_text(file_attrs.get(key), f"{where}.{key}")
        if value:
            return value
    return None


def _entry_item(
    key: str,
    entry: Any,
    json_path: Path,
    roots: list[Path],
    base: Path,
    label_attribute: str | None,
) -> SourceItem:
    try:
        name = text(required(mapping(entry, key), "filename", key), f"{key}.filename")
        regions = _regions(entry.get("regions"), f"{key}.regions")
    except Invalid as exc:
        fail(json_path, exc)
    image_path = _find_image(name, roots, json_path)
    shapes: list[Shape] = []
    warnings: list[str] = []
    where = f"{key}.regions"
    for index, region in enumerate(regions):
        try:
            shapes.append(_region_shape(region, label_attribute, join(where, index)))
        except Invalid as exc:
            warnings.append(f"{json_path}: {name}: {exc}")
    where = f"{key}.file_attributes"
    try:
        file_attrs = mapping(entry.get("file_attributes"), where, optional=True)
        other = {text(k, where, empty=True): _attr_text(v, f"{where}.{k}")
                 for k, v in file_attrs.items() if k not in _PATIENT_KEYS}
        patient = _patient_id(file_attrs, where)
    except Invalid as exc:
        fail(json_path, exc)
    return SourceItem(
        source=json_path,
        file_name=image_path.relative_to(base).as_posix(),
        shapes=shapes,
        image_path=image_path,
        patient_id=patient,
        extra={"warnings": warnings, "file_attributes": other},
    )


def read_via(
    src: str | Path, *, max_pixels: int = MAX_IMAGE_PIXELS, label_attribute: str | None = None
) -> ReadResult:
    """Read VIA JSON (a file or a folder of them): one :class:`SourceItem` per image entry.

    Entries whose image is missing, a URL or outside the folder, and JSON
    files that are broken or not VIA (when others in the folder are usable)
    are listed in ``skipped``. Raises :class:`InputError` when ``src`` does
    not exist, holds no JSON, or none of its JSON files is a VIA file.
    ``max_pixels`` is accepted for a uniform reader signature (no pixels are read).
    """
    root, files = _json_files(Path(src))
    base = root.resolve()
    result = ReadResult()
    failures: list[InputError] = []
    for json_path in files:
        try:
            metadata, settings = _load_metadata(json_path)
        except InputError as exc:
            failures.append(exc)
            continue
        roots = _image_roots(settings, json_path.parent, json_path)
        for key, entry in metadata.items():
            try:
                result.items.append(_entry_item(str(key), entry, json_path, roots, base, label_attribute))
            except InputError as exc:
                result.skipped.append(str(exc))
    if len(failures) == len(files):
        if len(files) == 1:
            raise failures[0]
        raise InputError(src, "no VIA file among: " + "; ".join(str(f) for f in failures))
    result.skipped.extend(str(f) for f in failures)
    return result
