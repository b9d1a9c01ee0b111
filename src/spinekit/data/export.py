"""``spinekit export``: a dataset back to LabelMe (one JSON per image) or plain COCO.

Exported folders are self-contained (images copied beside the annotations),
so a user can open them in LabelMe, correct them and ingest them again.
Vertebra instances with a level are written with the level as LabelMe label
(``L4``), which ingest maps back to class ``vertebra`` with that level; LabelMe
documents carry the image's ``pixel_spacing_mm``. Images whose export names would
collide (the same path, or for LabelMe the same ``<stem>.json``, as ``x.png`` and
``x.jpg``) get their image id appended (``x_3.png``), so nothing is overwritten.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from spinekit.data.records import ANNOTATIONS_FILE, load_dataset
from spinekit.errors import InputError
from spinekit.geometry import as_points
from spinekit.io.atomic import atomic_path, atomic_write_json
from spinekit.io.formats.labelme import labelme_document, labelme_shape, write_labelme

ExportFormat = Literal["labelme", "coco"]


def _labelme_shapes(anns: list[dict[str, Any]], names: dict[int, str],
                    points: list[dict[str, Any]], source: Path) -> list[dict[str, Any]]:
    shapes: list[dict[str, Any]] = []
    for ann in anns:
        if int(ann["category_id"]) not in names:
            raise InputError(source, f"annotation {ann['id']}: no category has id {ann['category_id']} "
                             "(see `spinekit clean`)")
        level = (ann.get("attributes") or {}).get("level")
        label = level if level and names[int(ann["category_id"])] == "vertebra" else names[
            int(ann["category_id"])]
        parts = ann.get("segmentation") or []
        if not parts:  # a box-only annotation (checked by load_dataset: it has a bbox)
            x, y, w, h = (float(v) for v in ann["bbox"])
            shapes.append(labelme_shape(label, [[x, y], [x + w, y + h]], shape_type="rectangle"))
            continue
        group = int(ann["id"]) if len(parts) > 1 else None
        shapes.extend(labelme_shape(label, as_points(part).tolist(), group_id=group) for part in parts)
    shapes.extend(labelme_shape(str(p["label"]), [[p["x"], p["y"]]], shape_type="point") for p in points)
    return shapes


def _export_name(image: dict[str, Any]) -> Path:
    """Image path inside the export folder (the dataset's ``images/`` prefix removed)."""
    rel = Path(str(image["file_name"]))
    return rel.relative_to("images") if rel.parts[0] == "images" and len(rel.parts) > 1 else rel


def _export_names(images: list[dict[str, Any]], fmt: ExportFormat) -> dict[int, Path]:
    """Image id -> path inside the export folder; names that would collide (the same image
    path, or with LabelMe the same ``<stem>.json`` as ``x.png`` and ``x.jpg``) get the image
    id appended (``x_3.png``) so no image or document overwrites another."""
    names = {int(img["id"]): _export_name(img) for img in images}
    keys: dict[str, list[int]] = {}
    for image_id, rel in names.items():
        for key in {rel.as_posix().lower(), rel.with_suffix(".json").as_posix().lower()}:
            if fmt == "labelme" or not key.endswith(".json"):
                keys.setdefault(key, []).append(image_id)
    clashing = {i for ids in keys.values() if len(ids) > 1 for i in ids}
    for image_id in clashing:
        rel = names[image_id]
        names[image_id] = rel.with_name(f"{rel.stem}_{image_id}{rel.suffix}")
    return names


def _copy(src: Path, dst: Path) -> None:
    if not src.is_file():
        raise InputError(src, "image file not found (see `spinekit clean`)")
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def export_dataset(root: str | Path, out: str | Path, fmt: ExportFormat,
                   *, progress: Callable[[int, int], None] | None = None) -> int:
    """Export the dataset at ``root`` into ``out``; returns the number of images written."""
    records = load_dataset(root)
    out_path = Path(out)
    if fmt not in ("labelme", "coco"):
        raise InputError(None, f"unknown export format {fmt!r}; choose labelme or coco")
    if out_path.resolve() == Path(root).resolve():
        raise InputError(out_path, "export folder must differ from the dataset folder")
    by_image = records.annotations_by_image()
    names = records.category_names()
    total = len(records.images)
    export_names = _export_names(records.images, fmt)
    for index, img in enumerate(records.images):
        src = records.image_path(img)
        rel = export_names[int(img["id"])]
        if fmt == "labelme":
            _copy(src, out_path / rel)
            doc = labelme_document(rel.name, int(img["width"]), int(img["height"]),
                                   _labelme_shapes(by_image[int(img["id"])], names, img.get("points") or [],
                                                   records.root / ANNOTATIONS_FILE),
                                   pixel_spacing_mm=img.get("pixel_spacing_mm"))
            write_labelme((out_path / rel).with_suffix(".json"), doc)
        elif fmt == "coco":
            _copy(src, out_path / "images" / rel)
        else:
            raise InputError(None, f"unknown export format {fmt!r}; choose labelme or coco")
        if progress is not None:
            progress(index + 1, total)
    if fmt == "coco":
        images = [{**img, "file_name": f"images/{export_names[int(img['id'])].as_posix()}"}
                  for img in records.images]
        coco = {**records.to_coco(), "images": images}
        coco["info"] = {k: v for k, v in records.info.items() if k != "image_root"}
        atomic_write_json(out_path / "annotations.json", coco, strict=True)
    return total
