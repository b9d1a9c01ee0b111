"""COCO instances JSON (including spinekit's own ``annotations.json``).

``src`` is a COCO JSON file or a folder holding exactly one ``*.json`` (with
several, ``annotations.json`` or a single ``instances*.json`` is taken).
Image ``file_name`` values are relative to the JSON's folder (or to a relative
``info.image_root`` inside it); ``images/<file_name>`` is tried as well.
Images whose file is missing are skipped with the reason ``image not found``.

Segmentation handling, one :class:`~spinekit.io.shapes.Shape` per part:

- polygon lists: every part of an annotation is its own polygon shape;
- uncompressed RLE (``counts`` list) and compressed RLE (``counts`` string,
  COCO's 6-bit LEB128-like code, decoded here without pycocotools) are decoded
  to a mask and traced with :func:`spinekit.geometry.mask_to_polygons`, one
  polygon per connected part;
- no segmentation: the ``bbox`` becomes a ``rectangle`` shape.

All shapes of one annotation carry the attribute ``instance`` = str(annotation
id), so that ingest can regroup multi-part instances. ``iscrowd=1`` adds the
attribute ``iscrowd="1"``. Keypoints of categories that name them become
``point`` shapes labelled ``"<category>:<keypoint name>"`` (visible ones,
``v > 0``). spinekit's own extensions pass through: ``images[]`` fields
``patient_id``, ``pixel_spacing_mm``, ``frame`` and ``points`` (point shapes),
``annotations[]`` fields ``attributes`` (into ``Shape.attributes``) and
``shape`` (the source shape kind: rectangles, circles and polylines are
restored when the polygon has the form ingest writes; otherwise the kind is
kept as attribute ``shape``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spinekit.errors import InputError
from spinekit.geometry import mask_to_polygons
from spinekit.io.images import MAX_IMAGE_PIXELS
from spinekit.io.jsonfile import parse_spacing, read_json
from spinekit.io.paths import safe_join
from spinekit.io.shapes import ReadResult, Shape, ShapeKind, SourceItem
from spinekit.io.validate import (
    Invalid,
    bbox,
    fail,
    integer,
    mapping,
    number,
    required,
    sequence,
    shown,
    side,
    spacing,
    text,
    unique,
)
from spinekit.masks import check_rle, rle_counts

log = logging.getLogger(__name__)

_PREFERRED_NAMES = ("annotations.json",)


# ----------------------------------------------------------------------------- RLE


def rle_string_to_counts(text: str) -> list[int]:
    """Decode a COCO compressed RLE string into run lengths (pycocotools ``rleFrString``).

    See :func:`spinekit.masks.rle_counts`. Raises ``ValueError`` on a character
    outside the code or a truncated run.
    """
    return [int(v) for v in rle_counts(text)]


def counts_to_rle_string(counts: Sequence[int]) -> str:
    """Encode run lengths as a COCO compressed RLE string (inverse of ``rle_string_to_counts``)."""
    chars: list[str] = []
    for index, count in enumerate(counts):
        value = int(count) - (int(counts[index - 2]) if index > 2 else 0)
        more = True
        while more:
            code = value & 0x1F
            value >>= 5
            more = value != -1 if code & 0x10 else value != 0
            if more:
                code |= 0x20
            chars.append(chr(code + 48))
    return "".join(chars)


def mask_to_rle_counts(mask: np.ndarray) -> list[int]:
    """Column-major (COCO) run lengths of a ``(H, W)`` 0/1 mask, starting with a 0-run."""
    flat = (np.asarray(mask).T.reshape(-1) > 0).astype(np.int8)
    if flat.size == 0:
        return [0]
    edges = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], edges, [flat.size]])
    runs = np.diff(bounds).tolist()
    return [0, *runs] if flat[0] == 1 else runs


def decode_rle(counts: Sequence[int] | str, height: int, width: int) -> np.ndarray:
    """COCO RLE (run-length list or compressed string) -> ``(H, W)`` uint8 0/1 mask.

    Runs alternate 0 and 1, starting with 0, in column-major order; they must sum
    to exactly ``H * W``. Other sums, negative runs or a bad string raise ``ValueError``.
    """
    runs = rle_string_to_counts(counts) if isinstance(counts, str) else [int(c) for c in counts]
    total = height * width
    if any(r < 0 for r in runs):
        raise ValueError("negative run length in RLE")
    if sum(runs) != total:
        raise ValueError(f"RLE runs sum to {sum(runs)}, not {height}x{width} = {total} pixels")
    values = np.repeat(np.arange(len(runs), dtype=np.int64) % 2, runs).astype(np.uint8)
    flat = np.zeros(total, dtype=np.uint8)
    flat[: values.size] = values
    return np.ascontiguousarray(flat.reshape(width, height).T)


# ----------------------------------------------------------------------------- file


def find_coco_json(src: Path) -> Path:
    """The COCO JSON file of ``src`` (a file, or a folder with one usable ``*.json``)."""
    if src.is_file():
        return src
    if not src.is_dir():
        raise InputError(src, "source not found")
    files = sorted(p for p in src.glob("*.json") if not p.name.startswith("."))
    if not files:
        raise InputError(src, "no COCO .json file found in this folder")
    if len(files) == 1:
        return files[0]
    preferred = [p for p in files if p.name in _PREFERRED_NAMES]
    if preferred:
        return preferred[0]
    instances = [p for p in files if p.name.startswith("instances")]
    if len(instances) == 1:
        return instances[0]
    names = ", ".join(p.name for p in files)
    raise InputError(src, f"several JSON files ({names}); pass the COCO file itself")


def _load(path: Path) -> dict[str, Any]:
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise InputError(path, "not a COCO file (no 'images' list)")
    try:
        check_coco_structure(doc)
    except Invalid as exc:
        fail(path, exc)
    return doc


def check_coco_structure(doc: dict[str, Any]) -> None:
    """Ids, names and sizes of a COCO dict: unique integer ids of images, annotations and
    categories, unique image file names and category names, known types; raises
    :class:`Invalid` naming the first bad record."""
    categories = sequence(doc.get("categories"), "categories", optional=True)
    cat_ids, cat_names = [], []
    for index, cat in enumerate(categories):
        where = f"categories[{index}]"
        cat = mapping(cat, where)
        cat_ids.append((f"{where}.id", integer(required(cat, "id", where), f"{where}.id")))
        cat_names.append((f"{where}.name", text(required(cat, "name", where), f"{where}.name")))
        for k, name in enumerate(sequence(cat.get("keypoints"), f"{where}.keypoints", optional=True)):
            text(name, f"{where}.keypoints[{k}]")
    unique(cat_ids, "category id")
    unique(cat_names, "category name")
    image_ids, file_names = [], []
    for index, image in enumerate(doc["images"]):
        where = f"images[{index}]"
        image = mapping(image, where)
        image_ids.append((f"{where}.id", integer(required(image, "id", where), f"{where}.id")))
        name = text(required(image, "file_name", where), f"{where}.file_name")
        file_names.append((f"{where}.file_name", name))
        for key in ("width", "height"):
            if image.get(key) is not None:
                side(image[key], f"{where}.{key}")
        if image.get("frame") is not None:
            integer(image["frame"], f"{where}.frame", hi=1_000_000)
        spacing(image.get("pixel_spacing_mm"), f"{where}.pixel_spacing_mm")
    unique(image_ids, "image id")
    unique(file_names, "image file_name")
    ann_ids = []
    for index, ann in enumerate(sequence(doc.get("annotations"), "annotations", optional=True)):
        where = f"annotations[{index}]"
        ann = mapping(ann, where)
        if ann.get("id") is not None:
            ann_ids.append((f"{where}.id", integer(ann["id"], f"{where}.id")))
        for key in ("image_id", "category_id"):
            integer(required(ann, key, where), f"{where}.{key}")
    unique(ann_ids, "annotation id")


@dataclass
class _Context:
    """What every entry of one COCO file needs."""

    json_path: Path
    base: Path  # folder file names are reported relative to (resolved)
    roots: list[Path]  # folders tried in order for image file names
    max_pixels: int
    categories: dict[int, str] = field(default_factory=dict)
    keypoint_names: dict[int, list[str]] = field(default_factory=dict)


def _image_roots(doc: dict[str, Any], json_dir: Path, json_path: Path) -> list[Path]:
    roots: list[Path] = []
    info = doc.get("info")
    image_root = info.get("image_root") if isinstance(info, dict) else None
    if isinstance(image_root, str) and image_root not in ("", "."):
        try:
            candidate = safe_join(json_dir, image_root, source=json_path)
            if candidate.is_dir():
                roots.append(candidate)
        except InputError as exc:
            log.info("not following info.image_root: %s", exc)
    roots.append(json_dir.resolve())
    if (json_dir / "images").is_dir():
        roots.append((json_dir / "images").resolve())
    return roots


def _categories(doc: dict[str, Any], ctx: _Context) -> None:
    """Category names and keypoint names by id (the structure is checked already)."""
    for cat in doc.get("categories") or []:
        cat_id = int(cat["id"])
        ctx.categories[cat_id] = str(cat["name"]).strip()
        names = cat.get("keypoints")
        if isinstance(names, list) and names:
            ctx.keypoint_names[cat_id] = [str(n) for n in names]


# ----------------------------------------------------------------------------- images


def _find_image(name: str, ctx: _Context) -> Path:
    """Resolve an image file name; raises InputError (escaping path, not found)."""
    for root in ctx.roots:
        path = safe_join(root, name, source=ctx.json_path)
        if path.is_file():
            return path
    raise InputError(ctx.json_path, f"image {name!r}: image not found")


def _point_shapes(raw: Any, where: str, warnings: list[str]) -> list[Shape]:
    """spinekit's ``images[].points`` (``{"label", "x", "y", ...}``) -> point shapes;
    unusable points are noted in ``warnings``."""
    shapes: list[Shape] = []
    for index, point in enumerate(raw if isinstance(raw, list) else []):
        at = f"{where}.points[{index}]"
        try:
            point = mapping(point, at)
            label = text(required(point, "label", at), f"{at}.label")
            xy = ((number(required(point, "x", at), f"{at}.x"), number(required(point, "y", at), f"{at}.y")),)
        except Invalid as exc:
            warnings.append(str(exc))
            continue
        attrs = {str(k): str(v) for k, v in point.items() if k not in ("label", "x", "y")}
        shapes.append(Shape(label=label, kind="point", points=xy, attributes=attrs))
    return shapes


def _patient_id(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return text(value, where) or None


def _image_item(entry: dict[str, Any], index: int, ctx: _Context) -> tuple[int, SourceItem]:
    """One image entry (its structure is checked already); InputError when its file is missing."""
    image_id = int(entry["id"])
    path = _find_image(str(entry["file_name"]).strip(), ctx)
    warnings: list[str] = []
    width, height = entry.get("width"), entry.get("height")
    frame = entry.get("frame")
    known = {
        "id",
        "file_name",
        "width",
        "height",
        "patient_id",
        "pixel_spacing_mm",
        "frame",
        "points",
    }
    shapes = _point_shapes(entry.get("points"), f"images[{index}]", warnings)
    item = SourceItem(
        source=ctx.json_path,
        file_name=path.relative_to(ctx.base).as_posix(),
        shapes=shapes,
        image_path=path,
        width=None if width is None else int(width),
        height=None if height is None else int(height),
        patient_id=_patient_id(entry.get("patient_id"), f"images[{index}].patient_id"),
        pixel_spacing_mm=parse_spacing(entry.get("pixel_spacing_mm")),
        frame=None if frame is None else int(frame),
        extra={"warnings": [f"{ctx.json_path}: {w}" for w in warnings],
               **{k: v for k, v in entry.items() if k not in known}},
    )
    return image_id, item


# ----------------------------------------------------------------------------- annotations


def _restore_kind(shape_field: Any, pts: np.ndarray) -> tuple[ShapeKind, np.ndarray] | None:
    """Undo ingest's polygon form of rectangles, circles and polylines (``shape`` field)."""
    if shape_field == "polyline" and len(pts) >= 2:
        return "polyline", pts
    if shape_field == "rectangle" and len(pts) == 4:
        xs, ys = np.unique(np.round(pts[:, 0], 2)), np.unique(np.round(pts[:, 1], 2))
        if len(xs) == 2 and len(ys) == 2:
            return "rectangle", np.array([[xs[0], ys[0]], [xs[1], ys[1]]])
    if shape_field == "circle" and len(pts) >= 8:
        centre = pts.mean(axis=0)
        radii = np.hypot(*(pts - centre).T)
        if radii.mean() > 0 and np.ptp(radii) <= 0.02 * radii.mean() + 0.02:
            rim = centre + np.array([radii.mean(), 0.0])
            return "circle", np.stack([centre, rim])
    return None


def _polygon_shapes(parts: list[Any], label: str, attrs: dict[str, str], shape_field: Any,
                    where: str) -> list[Shape]:
    shapes: list[Shape] = []
    for index, part in enumerate(parts):
        at = f"{where}[{index}]"
        if not isinstance(part, list) or len(part) % 2 or len(part) < 4:
            raise Invalid(at, "polygon part is not a flat [x1, y1, x2, y2, ...] list")
        pts = np.asarray([number(v, f"{at}[{k}]") for k, v in enumerate(part)], dtype=np.float64)
        pts = pts.reshape(-1, 2)
        restored = _restore_kind(shape_field, pts)
        if restored is not None:
            kind, pts = restored
        elif len(pts) >= 3:
            kind = "polygon"
        else:
            raise Invalid(at, f"polygon part with {len(pts)} points")
        extra_attrs = dict(attrs)
        if shape_field and restored is None and shape_field != "polygon":
            extra_attrs["shape"] = str(shape_field)
        points = tuple((float(x), float(y)) for x, y in pts)
        shapes.append(Shape(label=label, kind=kind, points=points, attributes=extra_attrs))
    return shapes


def _rle_shapes(seg: dict[str, Any], label: str, attrs: dict[str, str], size: tuple[int | None, int | None],
                where: str, ctx: _Context) -> list[Shape]:
    """Polygons of an RLE mask, whose size must be the image's ``(height, width)`` when declared."""
    try:
        height, width = check_rle(seg, *size) if None not in size else check_rle(seg)
    except ValueError as exc:
        raise Invalid(where, str(exc)) from exc
    if height * width > ctx.max_pixels:
        raise Invalid(where, f"RLE size {height}x{width} is over the pixel limit")
    mask = decode_rle(seg["counts"], height, width)
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise Invalid(where, "RLE mask is empty")
    y0, x0 = int(ys.min()), int(xs.min())
    crop = mask[y0 : int(ys.max()) + 1, x0 : int(xs.max()) + 1]
    shapes = []
    for ring in mask_to_polygons(crop, tolerance=0.5):
        points = tuple((float(x) + x0, float(y) + y0) for x, y in ring)
        shapes.append(Shape(label=label, kind="polygon", points=points, attributes=dict(attrs)))
    return shapes


def _bbox_shape(raw: Any, label: str, attrs: dict[str, str], where: str) -> list[Shape]:
    x, y, w, h = bbox(raw, where)
    if not (w > 0 and h > 0):
        raise Invalid(where, f"bbox {raw} has no area")
    return [Shape(label=label, kind="rectangle", points=((x, y), (x + w, y + h)), attributes=attrs)]


def _keypoint_shapes(ann: dict[str, Any], cat_id: int, label: str, instance: str, where: str,
                     ctx: _Context) -> list[Shape]:
    raw, names = ann.get("keypoints"), ctx.keypoint_names.get(cat_id)
    if raw is None or raw == [] or not names:
        return []
    raw = sequence(raw, where)
    if len(raw) != 3 * len(names):
        raise Invalid(where, f"{len(raw)} keypoint values for {len(names)} keypoint names")
    values = np.asarray([number(v, f"{where}[{k}]") for k, v in enumerate(raw)], dtype=np.float64)
    shapes = []
    for name, (x, y, v) in zip(names, values.reshape(-1, 3), strict=True):
        if v > 0:
            point = ((float(x), float(y)),)
            shapes.append(Shape(label=f"{label}:{name}", kind="point", points=point,
                                attributes={"instance": instance}))
    return shapes


def _annotation_shapes(ann: dict[str, Any], index: int, cat_id: int, size: tuple[int | None, int | None],
                       ctx: _Context) -> list[Shape]:
    """All shapes of one annotation; raises :class:`Invalid` naming the field when unusable."""
    where = f"annotations[{index}]"
    label = ctx.categories[cat_id]
    raw_attrs = mapping(ann.get("attributes"), f"{where}.attributes", optional=True)
    attrs = {str(k): text(v, f"{where}.attributes.{k}", empty=True) if isinstance(v, str) else str(v)
             for k, v in raw_attrs.items() if v is not None and not isinstance(v, dict | list)}
    # an annotation without an id is its own instance all the same
    instance = str(ann["id"]) if ann.get("id") is not None else f"#{index}"
    attrs["instance"] = instance
    if ann.get("iscrowd") in (1, True, "1"):
        attrs["iscrowd"] = "1"
    seg = ann.get("segmentation")
    if isinstance(seg, list) and seg:
        shapes = _polygon_shapes(seg, label, attrs, ann.get("shape"), f"{where}.segmentation")
    elif isinstance(seg, dict):
        shapes = _rle_shapes(seg, label, attrs, size, f"{where}.segmentation", ctx)
    elif seg not in (None, []):
        raise Invalid(f"{where}.segmentation", f"must be polygons or an RLE object, got {shown(seg)}")
    elif ann.get("bbox") is not None:
        shapes = _bbox_shape(ann.get("bbox"), label, attrs, f"{where}.bbox")
    else:
        shapes = []
    shapes += _keypoint_shapes(ann, cat_id, label, instance, f"{where}.keypoints", ctx)
    if not shapes:
        raise Invalid(where, "no segmentation, bbox or visible keypoints")
    return shapes


def _add_annotations(
    doc: dict[str, Any],
    items: dict[int, SourceItem],
    dropped: set[int],
    ctx: _Context,
    skipped: list[str],
) -> None:
    """Shapes of every annotation onto its image (the structure is checked already)."""
    for index, ann in enumerate(doc.get("annotations") or []):
        where = f"{ctx.json_path}: annotations[{index}]"
        image_id, cat_id = int(ann["image_id"]), int(ann["category_id"])
        if image_id in dropped:
            continue  # its image was skipped already, with the reason
        if image_id not in items:
            skipped.append(f"{where}.image_id: unknown image id {image_id}")
            continue
        if cat_id not in ctx.categories:
            skipped.append(f"{where}.category_id: unknown category id {cat_id}")
            continue
        item = items[image_id]
        try:
            item.shapes.extend(_annotation_shapes(ann, index, cat_id, (item.height, item.width), ctx))
        except Invalid as exc:
            warnings = item.extra["warnings"]
            assert isinstance(warnings, list)
            warnings.append(f"{ctx.json_path}: {exc}")


def read_coco(src: str | Path, *, max_pixels: int = MAX_IMAGE_PIXELS) -> ReadResult:
    """Read a COCO instances file: one :class:`SourceItem` per image whose file exists.

    Raises :class:`InputError` when no COCO file can be found, it is not valid
    COCO JSON, or a record breaks the structure (see :func:`check_coco_structure`:
    duplicate ids or file names, missing ids, wrong types). Image entries whose
    file is missing or escapes the folder, and annotations pointing at unknown
    images or categories are listed in ``skipped``; unusable annotations of a good
    image (bad segmentation, an RLE of another size than the image) are noted in
    that item's ``extra["warnings"]``.
    """
    json_path = find_coco_json(Path(src))
    doc = _load(json_path)
    ctx = _Context(
        json_path=json_path,
        base=json_path.parent.resolve(),
        roots=_image_roots(doc, json_path.parent, json_path),
        max_pixels=max_pixels,
    )
    result = ReadResult()
    _categories(doc, ctx)
    items: dict[int, SourceItem] = {}
    dropped: set[int] = set()
    for index, entry in enumerate(doc["images"]):
        try:
            image_id, item = _image_item(entry, index, ctx)
        except InputError as exc:
            result.skipped.append(str(exc))
            dropped.add(int(entry["id"]))
            continue
        except Invalid as exc:
            result.skipped.append(f"{json_path}: {exc}")
            dropped.add(int(entry["id"]))
            continue
        items[image_id] = item
    _add_annotations(doc, items, dropped, ctx, result.skipped)
    result.items = list(items.values())
    return result
