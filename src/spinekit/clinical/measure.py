"""``spinekit measure``: clinical measurements of every image of a dataset into one CSV.

Source of the vertebrae: the dataset's expert annotations, or a COCO results file of
predicted masks (``predictions``). One row per image (columns: :data:`COLUMNS`).

View (``view="auto"``, decided per image from its expert annotations):

- AP when an instance carries AASCE ``corners``, or when the levels are all in T1..L5 and
  at least 10 distinct levels are present;
- lateral when the levels are lumbar/sacral (``L*``, ``S*``, at most two of T11/T12);
- otherwise the dataset's ingest format decides (``aasce`` -> AP, ``masks`` -> lateral);
- otherwise the image is flagged "view undetermined" and not measured (pass ``view``).

Measurements:

- AP with corners: :func:`~spinekit.clinical.cobb.cobb_angles` on the expert corners in
  level order (exact AASCE rule).
- AP from masks (polygons rasterised, or predicted masks): :func:`order_and_label` with
  ``view="ap"``, corners fitted by :func:`corners_from_masks` (bodies that cannot be
  fitted are dropped and flagged), then the Cobb angles.
- Lateral: masks by level (expert ``attributes.level``, or :func:`order_and_label` with
  ``view="lateral"`` for predictions / unlabelled instances), then
  :func:`~spinekit.clinical.lateral.measure_lateral` with the image's pixel spacing
  (heights in mm) or px when the spacing is unknown.

Bad input never raises and never yields a made-up number: every per-image problem is a
flag in that row's ``flags`` and unmeasured values are empty (None). Only a missing
dataset, a bad split or an unreadable predictions file raise.

Height/disc columns are named without their unit (``body_L1_middle``); the ``unit``
column says whether they are in mm or px.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from faster_coco_eval.core import mask as mask_api

from spinekit.clinical.cobb import cobb_angles
from spinekit.clinical.lateral import LEVEL_ORDER, LateralMeasurements, measure_lateral
from spinekit.clinical.vertebrae import AP_LEVELS, corners_from_masks, order_and_label
from spinekit.data.records import DatasetRecords, load_dataset
from spinekit.evaluation.results import image_sizes, load_results
from spinekit.geometry import rasterize
from spinekit.io.atomic import atomic_write_text

logger = logging.getLogger(__name__)

View = Literal["auto", "ap", "lateral"]
Progress = Callable[[int, int], None]

MIN_AP_LEVELS = 10
"""Distinct T1..L5 levels for ``view="auto"`` to call an image AP without corners."""


def _lateral_columns() -> list[str]:
    row = LateralMeasurements(unit="px").to_row()
    return [_strip_unit(k, "px") for k in row if k not in ("levels", "unit", "flags")]


def _strip_unit(key: str, unit: str) -> str:
    suffix = f"_{unit}"
    if key.startswith(("body_", "disc_")) and key.endswith(suffix):
        return key[: -len(suffix)]
    return key


BASE_COLUMNS = ("image", "patient_id", "view", "unit", "levels", "n_vertebrae", "flags")
COBB_COLUMNS = ("cobb_1_deg", "cobb_2_deg", "cobb_3_deg", "cobb_end_vertebrae")
COLUMNS: tuple[str, ...] = (*BASE_COLUMNS, *COBB_COLUMNS, *_lateral_columns())
"""CSV columns in order."""


def _level_key(level: str | None) -> int:
    return LEVEL_ORDER.index(level) if level in LEVEL_ORDER else len(LEVEL_ORDER)


def _ann_level(ann: dict[str, Any]) -> str | None:
    level = (ann.get("attributes") or {}).get("level")
    return str(level) if level is not None else None


def auto_view(anns: Sequence[dict[str, Any]], dataset_format: str | None) -> str | None:
    """The view of one image by the rule of the module docstring, or None if undecided."""
    if any("corners" in a for a in anns):
        return "ap"
    levels = {lv for lv in (_ann_level(a) for a in anns) if lv}
    if levels and levels <= set(AP_LEVELS) and len(levels) >= MIN_AP_LEVELS:
        return "ap"
    thoracic = {lv for lv in levels if lv.startswith("T")}
    if levels and thoracic <= {"T11", "T12"} and len(levels - thoracic) > 0 and all(
        lv[0] in "LST" for lv in levels
    ):
        return "lateral"
    return {"aasce": "ap", "masks": "lateral"}.get(dataset_format or "")


def _format_angles(row: dict[str, Any], corners: np.ndarray, levels: Sequence[str | None],
                   height: float) -> None:
    """Fill the Cobb columns of ``row`` from corners ``(V, 4, 2)`` in spine order."""
    flags: list[str] = row["flags"]
    if len(corners) < 2:
        flags.append(f"{len(corners)} vertebrae: a Cobb angle needs at least 2, not measured")
        return
    ys = corners[:, :, 1].mean(axis=1)
    steps = np.diff(ys)
    if np.all(steps < 0):
        flags.append("image looks inverted (top vertebra below the bottom one): not measured")
        return
    if np.any(steps <= 0):
        bad = np.flatnonzero(steps <= 0).tolist()
        names = [f"{levels[i + 1] or i + 1} above {levels[i] or i}" for i in bad]
        flags.append(f"vertebrae out of spine order ({', '.join(names)}): check the annotation")
    result = cobb_angles(corners, image_height=height)
    for k, angle in enumerate(result.angles_deg):
        row[f"cobb_{k + 1}_deg"] = round(float(angle), 4)

    def name(i: int) -> str:
        return levels[i] or f"#{i}"

    row["cobb_end_vertebrae"] = "; ".join(f"{name(u)}-{name(lo)}" for u, lo in result.end_vertebrae)
    if len(corners) < len(AP_LEVELS):
        flags.append(f"only {len(corners)} of {len(AP_LEVELS)} vertebrae: angles cover those found")


def _ap_from_corners(row: dict[str, Any], anns: list[dict[str, Any]], height: float) -> None:
    items = []
    for a in anns:
        arr = np.asarray(a.get("corners"), dtype=np.float64)
        if arr.shape != (4, 2) or not np.all(np.isfinite(arr)):
            row["flags"].append(f"annotation {a.get('id')}: bad corners ignored")
            continue
        items.append((_level_key(_ann_level(a)), _ann_level(a), arr))
    items.sort(key=lambda t: t[0])
    levels = [lv for _, lv, _ in items]
    row["levels"] = " ".join(lv for lv in levels if lv)
    row["n_vertebrae"] = len(items)
    corners = np.stack([arr for _, _, arr in items]) if items else np.zeros((0, 4, 2))
    _format_angles(row, corners, levels, height)


def _ap_from_masks(row: dict[str, Any], masks: list[np.ndarray], scores: list[float],
                   min_score: float, height: float) -> None:
    if not masks:
        row["n_vertebrae"] = 0
        row["flags"].append("no vertebrae: not measured")
        return
    spine = order_and_label(masks, scores, view="ap", min_score=min_score)
    row["flags"].extend(spine.flags)
    ordered = [masks[v.index] for v in spine.vertebrae]
    levels = [v.level for v in spine.vertebrae]
    corners = corners_from_masks(ordered, on_error="nan") if ordered else np.zeros((0, 4, 2))
    good = np.all(np.isfinite(corners.reshape(len(corners), -1)), axis=1)
    if not good.all():
        bad = [levels[i] or f"#{i}" for i in np.flatnonzero(~good)]
        row["flags"].append(f"degenerate masks dropped: {', '.join(bad)}")
    kept = [lv for lv, g in zip(levels, good, strict=True) if g]
    row["levels"] = " ".join(lv for lv in kept if lv)
    row["n_vertebrae"] = len(kept)
    _format_angles(row, corners[good], kept, height)


def _fill_lateral(row: dict[str, Any], by_level: dict[str, np.ndarray],
                  spacing: tuple[float, float] | None) -> None:
    result = measure_lateral(by_level, pixel_spacing_mm=spacing)
    values = result.to_row()
    row["flags"].extend(result.flags)
    row["n_vertebrae"] = len(result.levels)
    for key, value in values.items():
        if key == "flags":
            continue
        column = _strip_unit(key, result.unit)
        row[column] = round(value, 4) if isinstance(value, float) else value
    if not result.levels:
        row["unit"] = None


def _lateral_from_masks(row: dict[str, Any], masks: list[np.ndarray], scores: list[float],
                        min_score: float, spacing: tuple[float, float] | None) -> None:
    if not masks:
        row["n_vertebrae"] = 0
        row["flags"].append("no vertebrae: not measured")
        return
    spine = order_and_label(masks, scores, view="lateral", min_score=min_score)
    row["flags"].extend(spine.flags)
    unlabelled = sum(1 for v in spine.vertebrae if v.level is None)
    if unlabelled:
        row["flags"].append(f"{unlabelled} vertebrae beyond the lumbar levels ignored")
    by_level = {v.level: masks[v.index] for v in spine.vertebrae if v.level is not None}
    _fill_lateral(row, by_level, spacing)


def _expert_masks(anns: list[dict[str, Any]], height: int, width: int
                  ) -> tuple[list[np.ndarray], list[str | None]]:
    """Rasterised ``(H, W)`` uint8 masks of the annotations, one per instance (parts of a
    multi-part instance, same level and ``attributes.instance``, are merged)."""
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for a in anns:
        attrs = a.get("attributes") or {}
        key = (_ann_level(a), attrs.get("instance", a.get("id")))
        seg = a.get("segmentation")
        groups.setdefault(key, []).extend(seg if isinstance(seg, list) else [])
    masks = [rasterize(polys, height, width) for polys in groups.values()]
    return masks, [key[0] for key in groups]


def _spacing(image: dict[str, Any]) -> tuple[float, float] | None:
    raw = image.get("pixel_spacing_mm")
    if isinstance(raw, list) and len(raw) == 2:
        try:
            row_mm, col_mm = float(raw[0]), float(raw[1])
        except (TypeError, ValueError):
            return None
        if np.isfinite(row_mm) and np.isfinite(col_mm) and row_mm > 0 and col_mm > 0:
            return (row_mm, col_mm)
    return None


def _measure_expert(row: dict[str, Any], image: dict[str, Any], anns: list[dict[str, Any]],
                    view: str) -> None:
    height, width = int(image["height"]), int(image["width"])
    if view == "ap" and anns and all("corners" in a for a in anns):
        _ap_from_corners(row, anns, float(height))
        return
    masks, levels = _expert_masks(anns, height, width)
    if view == "ap":
        _ap_from_masks(row, masks, [1.0] * len(masks), 0.0, float(height))
    elif masks and all(lv is not None for lv in levels):
        by_level: dict[str, np.ndarray] = {}
        for lv, m in zip(levels, masks, strict=True):
            by_level[str(lv)] = np.maximum(by_level[str(lv)], m) if lv in by_level else m
        _fill_lateral(row, by_level, _spacing(image))
    else:
        _lateral_from_masks(row, masks, [1.0] * len(masks), 0.0, _spacing(image))


def _measure_predicted(row: dict[str, Any], image: dict[str, Any], dets: list[dict[str, Any]],
                       view: str, threshold: float) -> None:
    dets = [d for d in dets if float(d["score"]) >= threshold and "segmentation" in d]
    masks = [np.asarray(mask_api.decode(d["segmentation"]), dtype=np.uint8) for d in dets]
    scores = [float(d["score"]) for d in dets]
    if view == "ap":
        _ap_from_masks(row, masks, scores, threshold, float(image["height"]))
    else:
        _lateral_from_masks(row, masks, scores, threshold, _spacing(image))


def _empty_row(image: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(image=str(image.get("file_name")), patient_id=image.get("patient_id"), flags=[])
    return row


def _vertebra_annotations(records: DatasetRecords) -> dict[int, list[dict[str, Any]]]:
    """Annotations by image id, restricted to category ``vertebra`` when there is one."""
    ids = {int(c["id"]) for c in records.categories if str(c.get("name")) == "vertebra"}
    by_image = records.annotations_by_image()
    if not ids:
        return by_image
    return {k: [a for a in v if int(a["category_id"]) in ids] for k, v in by_image.items()}


def _predictions_by_image(records: DatasetRecords, path: Path) -> dict[int, list[dict[str, Any]]]:
    dets = load_results(path, image_sizes=image_sizes(records.images))
    ids = {int(c["id"]) for c in records.categories if str(c.get("name")) == "vertebra"}
    out: dict[int, list[dict[str, Any]]] = {}
    for d in dets:
        if not ids or int(d["category_id"]) in ids:
            out.setdefault(int(d["image_id"]), []).append(d)
    return out


def _select_images(records: DatasetRecords, split: str | None) -> list[dict[str, Any]]:
    if split is None:
        return list(records.images)
    from spinekit.data.splits import load_splits, split_image_ids

    wanted = set(split_image_ids(load_splits(records.root), split))  # type: ignore[arg-type]
    return [img for img in records.images if int(img["id"]) in wanted]


def _measure_one(image: dict[str, Any], anns: list[dict[str, Any]],
                 dets: list[dict[str, Any]] | None, view: View, fmt: str | None,
                 threshold: float) -> dict[str, Any]:
    row = _empty_row(image)
    chosen = auto_view(anns, fmt) if view == "auto" else view
    row["view"] = chosen
    try:
        if chosen is None:
            row["flags"].append("view undetermined (pass --view ap or lateral): not measured")
        elif dets is not None:
            _measure_predicted(row, image, dets, chosen, threshold)
        else:
            _measure_expert(row, image, anns, chosen)
    except Exception as exc:  # one bad image must never stop the batch
        logger.debug("image %s: %s", row["image"], exc, exc_info=True)
        row["flags"].append(f"measurement failed: {exc}")
    row["flags"] = "; ".join(dict.fromkeys(row["flags"]))
    return row


def measure_dataset(dataset: Path, *, predictions: Path | None = None, view: View = "auto",
                    split: str | None = None, score_threshold: float = 0.5,
                    progress: Progress | None = None) -> list[dict[str, Any]]:
    """One row (dict keyed by :data:`COLUMNS`) per image of ``dataset`` (module docstring).

    ``predictions``: COCO results JSON (RLE masks) measured instead of the expert
    annotations; detections below ``score_threshold`` are ignored. ``split``: a part of
    ``splits.json`` (train, val, test, trainval, all; fold 0). Raises InputError for a
    missing dataset or an unreadable predictions file, ValueError for a bad ``view``.
    """
    if view not in ("auto", "ap", "lateral"):
        raise ValueError(f"view must be auto, ap or lateral, got {view!r}")
    records = load_dataset(dataset)
    by_image = _vertebra_annotations(records)
    preds = None if predictions is None else _predictions_by_image(records, Path(predictions))
    fmt = records.info.get("format")
    images = _select_images(records, split)
    rows = []
    for done, image in enumerate(images, start=1):
        image_id = int(image["id"])
        dets = None if preds is None else preds.get(image_id, [])
        rows.append(_measure_one(image, by_image.get(image_id, []), dets, view,
                                 None if fmt is None else str(fmt), score_threshold))
        if progress is not None:
            progress(done, len(images))
    return rows


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write ``rows`` as CSV with the columns :data:`COLUMNS` (None -> empty cell), atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in COLUMNS})
    atomic_write_text(path, buffer.getvalue())
    return Path(path)
