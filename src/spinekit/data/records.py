"""The on-disk dataset: ``DATASET/annotations.json`` in COCO form, plus images.

Layout of a dataset folder written by ``spinekit ingest``::

    DATASET/
      annotations.json      COCO: info, images, annotations, categories
      images/               copied or decoded images (absent when referenced)
      ingest_report.json    what was read, skipped and why
      cleaning_report.json  written by ``spinekit clean``
      splits.json           written by ``spinekit split``

COCO fields used beyond the standard ones:

- ``info.image_root``: folder that ``images[].file_name`` is relative to,
  relative to the dataset folder (``"."`` when images were copied in) or an
  absolute path (images referenced in place).
- ``images[]``: ``patient_id`` (str), ``pixel_spacing_mm`` (``[row, col]`` or
  null), ``source`` (annotation file it came from), ``frame`` (DICOM frame or
  null), ``points`` (list of ``{"label", "x", "y"}`` annotated points, which are
  not instances).
- ``annotations[]``: ``attributes`` (e.g. ``{"level": "L4"}``), ``shape``
  (source shape kind: polygon, rectangle, polyline, circle).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spinekit.errors import InputError
from spinekit.io.atomic import atomic_write_json
from spinekit.io.jsonfile import read_json_object
from spinekit.io.paths import safe_join
from spinekit.io.validate import (
    MAX_COORDINATE,
    Invalid,
    bbox,
    fail,
    integer,
    mapping,
    number,
    required,
    sequence,
    side,
    spacing,
    text,
    unique,
)
from spinekit.masks import check_rle

ANNOTATIONS_FILE = "annotations.json"
INGEST_REPORT_FILE = "ingest_report.json"
CLEANING_REPORT_FILE = "cleaning_report.json"
SPLITS_FILE = "splits.json"


@dataclass
class DatasetRecords:
    """A COCO-style dataset in memory, tied to its folder.

    ``images``, ``annotations`` and ``categories`` are the COCO lists of dicts;
    ``info`` the COCO info dict (with ``image_root``).
    """

    root: Path
    images: list[dict[str, Any]]
    annotations: list[dict[str, Any]]
    categories: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def image_root(self) -> Path:
        """Folder the images' ``file_name`` values are relative to."""
        raw = str(self.info.get("image_root", "."))
        path = Path(raw)
        return path if path.is_absolute() else (self.root / path)

    def image_path(self, image: dict[str, Any]) -> Path:
        """Absolute path of ``image`` (a COCO image dict), never outside the image root."""
        return safe_join(self.image_root, str(image["file_name"]), source=self.root / ANNOTATIONS_FILE)

    def annotations_by_image(self) -> dict[int, list[dict[str, Any]]]:
        """Map image id -> its annotations (every image id present, maybe empty)."""
        out: dict[int, list[dict[str, Any]]] = {int(img["id"]): [] for img in self.images}
        for ann in self.annotations:
            out.setdefault(int(ann["image_id"]), []).append(ann)
        return out

    def category_names(self) -> dict[int, str]:
        """Map category id -> name."""
        return {int(c["id"]): str(c["name"]) for c in self.categories}

    def to_coco(self) -> dict[str, Any]:
        """The COCO dict written to ``annotations.json``."""
        return {
            "info": self.info,
            "images": self.images,
            "annotations": self.annotations,
            "categories": self.categories,
        }

    def save(self) -> Path:
        """Write ``annotations.json`` atomically; returns its path."""
        path = self.root / ANNOTATIONS_FILE
        atomic_write_json(path, self.to_coco(), strict=True)
        return path


def load_dataset(root: str | Path) -> DatasetRecords:
    """Load ``root/annotations.json``; raise :class:`InputError` on a missing or bad file."""
    folder = Path(root)
    path = folder / ANNOTATIONS_FILE
    if not folder.is_dir():
        raise InputError(folder, "dataset folder not found")
    if not path.is_file():
        raise InputError(path, "no annotations.json: run `spinekit ingest` first")
    coco = read_json_object(path, "COCO annotations file")
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise InputError(path, f"missing or invalid {key!r} list")
    try:
        check_dataset(coco)
    except Invalid as exc:
        fail(path, exc)
    return DatasetRecords(
        root=folder,
        images=coco["images"],
        annotations=coco["annotations"],
        categories=coco["categories"],
        info=dict(coco.get("info") or {}),
    )


def _check_rings(value: Any, where: str) -> None:
    """A list of flat polygons ``[[x1, y1, ...], ...]`` of plain, bounded numbers."""
    for index, ring in enumerate(sequence(value, where)):
        if not (isinstance(ring, list) and len(ring) >= 4 and len(ring) % 2 == 0
                and all(type(v) in (int, float) for v in ring)):
            raise Invalid(f"{where}[{index}]", "must be a flat [x1, y1, x2, y2, ...] list of numbers")
        if not -MAX_COORDINATE <= min(ring) <= max(ring) <= MAX_COORDINATE:
            raise Invalid(f"{where}[{index}]", f"coordinates outside +-{MAX_COORDINATE:g}")


def _check_images(images: list[Any]) -> None:
    ids = []
    for index, image in enumerate(images):
        where = f"images[{index}]"
        image = mapping(image, where)
        ids.append((f"{where}.id", integer(required(image, "id", where), f"{where}.id")))
        text(required(image, "file_name", where), f"{where}.file_name")
        for key in ("width", "height"):
            side(required(image, key, where), f"{where}.{key}")
        patient = image.get("patient_id")
        if patient is not None and not isinstance(patient, int):
            text(patient, f"{where}.patient_id")
        spacing(image.get("pixel_spacing_mm"), f"{where}.pixel_spacing_mm")
        for k, pt in enumerate(sequence(image.get("points"), f"{where}.points", optional=True)):
            at = f"{where}.points[{k}]"
            pt = mapping(pt, at)
            text(required(pt, "label", at), f"{at}.label")
            number(required(pt, "x", at), f"{at}.x")
            number(required(pt, "y", at), f"{at}.y")
    unique(ids, "image id")


def _check_annotations(annotations: list[Any], sizes: dict[int, tuple[int, int]]) -> None:
    ids = []
    for index, ann in enumerate(annotations):
        where = f"annotations[{index}]"
        ann = mapping(ann, where)
        ids.append((f"{where}.id", integer(required(ann, "id", where), f"{where}.id")))
        integer(required(ann, "image_id", where), f"{where}.image_id")
        integer(required(ann, "category_id", where), f"{where}.category_id")
        seg = ann.get("segmentation")
        if isinstance(seg, dict):
            try:
                check_rle(seg, *sizes.get(int(ann["image_id"]), (None, None)))
            except ValueError as exc:
                raise Invalid(f"{where}.segmentation", str(exc)) from exc
        elif seg is not None:
            _check_rings(seg, f"{where}.segmentation")
        if ann.get("bbox") is not None:
            bbox(ann["bbox"], f"{where}.bbox")
        if not ann.get("segmentation") and ann.get("bbox") is None:
            raise Invalid(where, "has neither a segmentation nor a bbox")
        mapping(ann.get("attributes"), f"{where}.attributes", optional=True)
    unique(ids, "annotation id")


def check_dataset(coco: dict[str, Any]) -> None:
    """Check the structure of a dataset's COCO dict (``images``, ``annotations``,
    ``categories``): the fields every command relies on are present with the right types
    and ids are unique integers (category names too). Raises
    :class:`~spinekit.io.validate.Invalid` naming the record (``annotations[3].category_id``).

    What is well-formed but wrong (an annotation of an unknown image or category, a
    repeated file name, a degenerate polygon) is left to ``spinekit clean`` to report."""
    category_ids, names = [], []
    for index, cat in enumerate(coco["categories"]):
        where = f"categories[{index}]"
        cat = mapping(cat, where)
        category_ids.append((f"{where}.id", integer(required(cat, "id", where), f"{where}.id")))
        names.append((f"{where}.name", text(required(cat, "name", where), f"{where}.name")))
    unique(category_ids, "category id")
    unique(names, "category name")
    _check_images(coco["images"])
    sizes = {int(img["id"]): (int(img["height"]), int(img["width"])) for img in coco["images"]}
    _check_annotations(coco["annotations"], sizes)
    if coco.get("info") is not None:
        info = mapping(coco["info"], "info")
        if info.get("image_root") is not None:
            text(info["image_root"], "info.image_root")


def read_json_report(root: str | Path, name: str) -> dict[str, Any] | None:
    """Load a report JSON (e.g. ``cleaning_report.json``) from a dataset, or None if absent."""
    path = Path(root) / name
    if not path.is_file():
        return None
    return read_json_object(path, "spinekit report")


def load_exclusions(root: str | Path) -> tuple[set[int], set[int]]:
    """Excluded image ids and annotation ids from ``root/cleaning_report.json``.

    Empty sets when the dataset has not been cleaned; :class:`InputError` when
    the report is malformed.
    """
    report = read_json_report(root, CLEANING_REPORT_FILE)
    if report is None:
        return set(), set()
    out = []
    for key in ("excluded_images", "excluded_annotations"):
        ids = report.get(key)
        if not isinstance(ids, list) or not all(isinstance(v, int) for v in ids):
            raise InputError(Path(root) / CLEANING_REPORT_FILE, f"{key!r} must be a list of ids")
        out.append(set(ids))
    return out[0], out[1]
