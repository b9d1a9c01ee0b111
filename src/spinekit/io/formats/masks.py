"""Label masks: ``images/`` and ``masks/`` folders plus a value -> name mapping.

Layout of ``src``::

    images/NAME.(png|jpg|tif|dcm|...)   the images (any raster format or DICOM)
    masks/NAME.png                      same base name, same size, one value per pixel
    labels.json                         {"mask_values": {"1": "L5", ...}, "background": 0,
                                         "pixel_spacing_mm": [r, c], "mask_type": "label"}
    slices.json                         optional: [{image, mask, patient_id, pixel_spacing_mm}, ...]

Interpretation of the mask values:

- every mapped name is a vertebra level (``L4``, ``T12``, ``S1``, ...): each
  value is one instance of category ``vertebra`` with attribute ``level``;
- otherwise ``mask_type: "label"`` (default): the names are classes and every
  4-connected component of a value is one instance;
- ``mask_type: "instance"``: each value is one instance of the named class.

For one-instance-per-value masks, the instance is the value's largest
4-connected component; other components of at least ``min_component_px``
pixels become extra polygon parts of it, smaller ones are dropped. All parts
of an instance share the attribute ``instance`` (as in the COCO reader).
Dropped specks and values missing from the mapping are noted in the item's
``extra["warnings"]``. Polygons come from :func:`spinekit.geometry.mask_to_polygons`
with a 0.5 px tolerance (outer contours; holes are not kept).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import ndimage

from spinekit.errors import InputError
from spinekit.geometry import mask_to_polygons
from spinekit.io.images import MAX_IMAGE_PIXELS, image_size, is_image_file
from spinekit.io.jsonfile import parse_spacing, read_json
from spinekit.io.paths import safe_join
from spinekit.io.shapes import ReadResult, Shape, SourceItem
from spinekit.io.validate import Invalid, fail, integer, mapping, required, shown, spacing, text
from spinekit.levels import is_level

log = logging.getLogger(__name__)

MAPPING_FILE = "labels.json"
SLICES_FILE = "slices.json"
MASK_SUFFIXES = frozenset({".png", ".tif", ".tiff", ".bmp"})
VERTEBRA = "vertebra"
_TOLERANCE = 0.5
MAX_MASK_VALUE = 65535
"""Largest label value a mask image can hold (16-bit PNG)."""


@dataclass(frozen=True)
class MaskMapping:
    """Parsed ``labels.json``: mask value -> name, and how to read the values."""

    values: dict[int, str]
    background: int = 0
    pixel_spacing_mm: tuple[float, float] | None = None
    mask_type: Literal["label", "instance"] = "label"

    @property
    def vertebra_levels(self) -> bool:
        """True when every name is a vertebra level: values are ``vertebra`` instances."""
        return bool(self.values) and all(is_level(n) for n in self.values.values())

    @property
    def one_instance_per_value(self) -> bool:
        """True when each value is one instance (levels, or ``mask_type: instance``)."""
        return self.vertebra_levels or self.mask_type == "instance"


def load_mask_mapping(path: str | Path) -> MaskMapping:
    """Read and check a ``labels.json`` mapping; raises :class:`InputError`."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "mask mapping not found (labels.json with 'mask_values')")
    doc = read_json(p)
    raw = doc.get("mask_values") if isinstance(doc, dict) else None
    if not isinstance(raw, dict) or not raw:
        raise InputError(p, 'no \'mask_values\' object ({"1": "L5", ...})')
    values: dict[int, str] = {}
    try:
        for key, name in raw.items():
            where = f"mask_values.{key}"
            if not (key.strip().isascii() and key.strip().isdigit()) or int(key) > MAX_MASK_VALUE:
                raise Invalid(where, f"key {key!r} is not a mask value (an integer 0..{MAX_MASK_VALUE})")
            if int(key) in values:
                raise Invalid(where, f"mask value {int(key)} is given twice")
            values[int(key)] = text(name, where)
        background = integer(doc.get("background", 0), "background", hi=MAX_MASK_VALUE)
        pixel_spacing = spacing(doc.get("pixel_spacing_mm"), "pixel_spacing_mm")
    except Invalid as exc:
        fail(p, exc)
    if background in values:
        raise InputError(p, f"background {background!r} must be an integer not in mask_values")
    mask_type = doc.get("mask_type", "label")
    if mask_type not in ("label", "instance"):
        raise InputError(p, f"mask_type {shown(mask_type)} must be 'label' or 'instance'")
    return MaskMapping(values, background, pixel_spacing, mask_type)


# ----------------------------------------------------------------------------- mask -> shapes


def _component_ring(labelled: np.ndarray, index: int, box: tuple[slice, slice]) -> np.ndarray | None:
    """Outer polygon ``(N, 2)`` float64 of component ``index`` (1-based) in full-image x, y."""
    crop = (labelled[box] == index).astype(np.uint8)
    rings = mask_to_polygons(crop, tolerance=_TOLERANCE)
    if not rings:
        return None
    return rings[0] + np.array([box[1].start, box[0].start], dtype=np.float64)


def _speck_note(name: str, value: int, label: str, sizes: list[int]) -> str:
    noun = "speck" if len(sizes) == 1 else "specks"
    px = ", ".join(str(s) for s in sizes)
    return f"{name}: value {value} ({label}): dropped {len(sizes)} {noun} of {px} px"


def _value_shapes(
    binary: np.ndarray, value: int, mapping: MaskMapping, min_px: int, name: str
) -> tuple[list[Shape], list[str]]:
    """Shapes of one mask value (``binary`` is its ``(H, W)`` bool mask) and warning notes."""
    label = mapping.values[value]
    labelled, count = ndimage.label(binary)
    sizes = np.bincount(labelled.ravel(), minlength=count + 1)[1:]
    boxes = ndimage.find_objects(labelled)
    order = [int(i) for i in np.argsort(-sizes, kind="stable")]
    per_value = mapping.one_instance_per_value
    keep = [i for i in order if sizes[i] >= min_px]
    specks = [int(sizes[i]) for i in order if sizes[i] < min_px]
    notes: list[str] = []
    if per_value and not keep:
        notes.append(
            f"{name}: value {value} ({label}): largest part has {int(sizes[order[0]])} px, "
            f"under min_component_px={min_px}; no instance"
        )
        return [], notes
    if specks:
        notes.append(_speck_note(name, value, label, specks))
    shapes: list[Shape] = []
    for rank, index in enumerate(keep):
        ring = _component_ring(labelled, index + 1, boxes[index])
        if ring is None:
            continue
        instance = str(value) if per_value else f"{value}.{rank + 1}"
        attrs = {"level": label, "instance": instance} if mapping.vertebra_levels else {"instance": instance}
        shape_label = VERTEBRA if mapping.vertebra_levels else label
        points = tuple((float(x), float(y)) for x, y in ring)
        shapes.append(Shape(label=shape_label, kind="polygon", points=points, attributes=attrs))
    return shapes, notes


def mask_to_shapes(
    mask: np.ndarray, mapping: MaskMapping, *, min_component_px: int = 20, name: str = "mask"
) -> tuple[list[Shape], list[str]]:
    """Turn an ``(H, W)`` integer label mask into polygon shapes (see the module docstring).

    Returns ``(shapes, warnings)``; ``warnings`` are ``"<name>: ..."`` lines for
    dropped specks and for values absent from the mapping (ignored).
    """
    present = np.unique(mask)
    shapes: list[Shape] = []
    notes: list[str] = []
    for value in (int(v) for v in present):
        if value == mapping.background:
            continue
        if value not in mapping.values:
            count = int(np.count_nonzero(mask == value))
            notes.append(f"{name}: value {value} not in the mapping: {count} px ignored")
            continue
        value_shapes, value_notes = _value_shapes(mask == value, value, mapping, min_component_px, name)
        shapes.extend(value_shapes)
        notes.extend(value_notes)
    return shapes, notes


def read_mask_file(path: Path, *, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read a label mask as an ``(H, W)`` integer array (palette indices kept as values).

    Gray, 16-bit and palette PNGs are read as stored; an RGB file is accepted
    only when its three channels are equal. Raises :class:`InputError`.
    """
    image_size(path, max_pixels=max_pixels)  # size limit from the header
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1", "LA", "PA"):
                arr = np.asarray(img)
            else:
                arr = np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(path, f"not a readable mask image ({exc})") from exc
    if arr.ndim == 3:
        gray = arr.shape[2] == 2 or (
            np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])
        )
        if gray:
            arr = arr[..., 0]
        else:
            raise InputError(path, "colour (RGB) mask: expected one label value per pixel")
    return arr.astype(np.int64) if arr.dtype == bool else arr


# ----------------------------------------------------------------------------- pairing


@dataclass
class _Pair:
    """One image/mask pair and the metadata of its ``slices.json`` entry (if any)."""

    image: Path
    mask: Path
    meta: dict[str, Any]


def _by_stem(folder: Path, accept: Any, skipped: list[str]) -> dict[str, Path]:
    """Map ``relative/stem`` -> file for the files of ``folder`` that ``accept`` takes."""
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if accept(path, skipped):
            found.setdefault(rel.with_suffix("").as_posix(), []).append(path)
    out: dict[str, Path] = {}
    for stem, paths in found.items():
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            skipped.append(f"{folder / stem}: several files share this name ({names}); skipped")
        else:
            out[stem] = paths[0]
    return out


def _accept_image(path: Path, skipped: list[str]) -> bool:
    return is_image_file(path)


def _accept_mask(path: Path, skipped: list[str]) -> bool:
    if path.suffix.lower() in MASK_SUFFIXES:
        return True
    if path.suffix.lower() in (".jpg", ".jpeg"):
        skipped.append(f"{path}: JPEG is lossy and cannot hold exact label values; use PNG")
    return False


def _slice_pairs(src: Path, skipped: list[str]) -> list[_Pair]:
    """Pairs listed in ``slices.json`` (absent file: none)."""
    path = src / SLICES_FILE
    if not path.is_file():
        return []
    doc = read_json(path)
    if not isinstance(doc, list):
        raise InputError(path, "must be a list of {image, mask, ...} entries")
    pairs: list[_Pair] = []
    for index, entry in enumerate(doc):
        where = f"[{index}]"
        try:
            entry = mapping(entry, where)
            image_name = text(required(entry, "image", where), f"{where}.image")
            mask_name = text(required(entry, "mask", where), f"{where}.mask")
            spacing(entry.get("pixel_spacing_mm"), f"{where}.pixel_spacing_mm")
            if entry.get("patient_id") is not None and not isinstance(entry["patient_id"], int):
                text(entry["patient_id"], f"{where}.patient_id")
        except Invalid as exc:
            skipped.append(f"{path}: {exc}")
            continue
        try:
            image = safe_join(src, image_name, source=path)
            mask = safe_join(src, mask_name, source=path)
        except InputError as exc:
            skipped.append(f"{exc} (entry {index})")
            continue
        missing = [str(p) for p in (image, mask) if not p.is_file()]
        if missing:
            skipped.append(f"{path}: entry {index}: not found: {', '.join(missing)}")
            continue
        meta = {k: v for k, v in entry.items() if k not in ("image", "mask")}
        pairs.append(_Pair(image, mask, meta))
    return pairs


def _pairs(src: Path, skipped: list[str]) -> list[_Pair]:
    """slices.json pairs, then images/ and masks/ matched by base name."""
    for sub in ("images", "masks"):
        if not (src / sub).is_dir():
            raise InputError(src, f"no {sub}/ folder (a mask source needs images/ and masks/)")
    pairs = _slice_pairs(src, skipped)
    used_images = {p.image for p in pairs}
    used_masks = {p.mask for p in pairs}
    images = _by_stem(src / "images", _accept_image, skipped)
    masks = _by_stem(src / "masks", _accept_mask, skipped)
    for stem, image in images.items():
        if image.resolve() in used_images:
            continue
        mask = masks.get(stem)
        if mask is None or mask.resolve() in used_masks:
            skipped.append(f"{image}: no mask (expected masks/{stem}.png)")
            continue
        pairs.append(_Pair(image.resolve(), mask.resolve(), {}))
        used_masks.add(mask.resolve())
    for stem, mask in masks.items():
        if mask.resolve() not in used_masks:
            skipped.append(f"{mask}: no image (expected images/{stem}.<ext>)")
    return sorted(pairs, key=lambda p: p.image)


# ----------------------------------------------------------------------------- reader


def _read_pair(
    pair: _Pair, base: Path, mapping: MaskMapping, min_component_px: int, max_pixels: int
) -> SourceItem:
    width, height = image_size(pair.image, max_pixels=max_pixels)
    mask = read_mask_file(pair.mask, max_pixels=max_pixels)
    if mask.shape != (height, width):
        raise InputError(
            pair.mask,
            f"mask is {mask.shape[1]}x{mask.shape[0]} but its image {pair.image.name} is {width}x{height}",
        )
    mask_name = pair.mask.relative_to(base).as_posix()
    shapes, warnings = mask_to_shapes(mask, mapping, min_component_px=min_component_px, name=mask_name)
    meta = dict(pair.meta)
    patient = meta.pop("patient_id", None)
    spacing = parse_spacing(meta.pop("pixel_spacing_mm", None)) or mapping.pixel_spacing_mm
    return SourceItem(
        source=pair.mask,
        file_name=pair.image.relative_to(base).as_posix(),
        shapes=shapes,
        image_path=pair.image,
        width=width,
        height=height,
        patient_id=None if patient is None else str(patient),
        pixel_spacing_mm=spacing,
        extra={"warnings": warnings, "mask": mask_name, **meta},
    )


def read_masks(
    src: str | Path,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    mapping: Path | None = None,
    min_component_px: int = 20,
) -> ReadResult:
    """Read a mask folder (see the module docstring): one item per image/mask pair.

    ``mapping`` defaults to ``src/labels.json``. Raises :class:`InputError` when
    ``src``, its ``images/``/``masks/`` folders or the mapping are missing or
    invalid. Images without a mask, masks without an image, unreadable files and
    masks whose size differs from their image are listed in ``skipped``.
    """
    root = Path(src)
    if not root.is_dir():
        raise InputError(root, "mask source folder not found")
    parsed = load_mask_mapping(mapping if mapping is not None else root / MAPPING_FILE)
    base = root.resolve()
    result = ReadResult()
    for pair in _pairs(root, result.skipped):
        try:
            result.items.append(_read_pair(pair, base, parsed, min_component_px, max_pixels))
        except InputError as exc:
            result.skipped.append(str(exc))
    return result
