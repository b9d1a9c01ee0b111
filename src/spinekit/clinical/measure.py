"""``spinekit measure``: clinical measurements of every image of a dataset into one CSV.

Source of the instances: the dataset's expert annotations, or a COCO results file of
predicted masks (``predictions``). One row per image (columns: :data:`COLUMNS`); the rules
are in ``docs/clinical.md``.

View (``view="auto"``):

- ultrasound for every image when the dataset has a facet-joint category (``F``,
  ``facet``, ``facet_joint``; :data:`~spinekit.clinical.needle.FACET_NAMES`);
- otherwise per image from its expert annotations: AP when an instance carries AASCE
  ``corners``, or when the levels are all in T1..L5 and at least 10 distinct levels are
  present; lateral when the levels are lumbar/sacral (``L*``, ``S*``, at most two of
  T11/T12);
- otherwise the dataset's ingest format decides (``aasce`` -> AP, ``masks`` -> lateral);
- otherwise the image is flagged "view undetermined" and not measured (pass ``view``).

Measurements (:mod:`spinekit.clinical.views`): AP Cobb angles from expert corners, from
predicted corners (landmark results carrying ``keypoints``: used directly, no mask step)
or from masks (ordered, labelled, corners fitted); the ``cobb_source`` column says which;
lateral lordosis, segmental angles and heights;
ultrasound facet presence, trust, needle target and its error to an annotated target point
(``images[].points`` labelled ``needle_target``, ``target`` or ``needle``).

Masks are never decoded to the full image: polygons are rasterised and RLE decoded into
the instance's bounding box (:mod:`spinekit.masks`).

Bad input never raises and never yields a made-up number: every per-image problem is a
flag in that row's ``flags`` and unmeasured values are empty (None). Only a missing
dataset, a bad split or an unreadable predictions file raise (an empty predictions file is
flagged on every row).

Height/disc columns are named without their unit (``body_L1_middle``); the ``unit``
column says whether they (and the ultrasound target errors) are in mm or px.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from spinekit.clinical.lateral import LateralMeasurements
from spinekit.clinical.needle import FACET_NAMES, VENTRAL_NAMES
from spinekit.clinical.vertebrae import AP_LEVELS
from spinekit.clinical.views import (
    Geometry,
    Instances,
    measure_ap_corners,
    measure_ap_masks,
    measure_lateral_masks,
    measure_ultrasound_image,
)
from spinekit.data.records import DatasetRecords, load_dataset
from spinekit.errors import InputError, UsageError
from spinekit.io.atomic import atomic_write_text
from spinekit.masks import CropMask, crop_from_polygons, crop_from_rle

logger = logging.getLogger(__name__)

View = Literal["auto", "ap", "lateral", "ultrasound"]
VIEWS: tuple[str, ...] = ("auto", "ap", "lateral", "ultrasound")
Progress = Callable[[int, int], None]

MIN_AP_LEVELS = 10
"""Distinct T1..L5 levels for ``view="auto"`` to call an image AP without corners."""

TARGET_LABELS = frozenset({"needle_target", "needle target", "target", "needle"})
"""Point labels (lower case) read as annotated needle targets."""


def _lateral_columns() -> list[str]:
    row = LateralMeasurements(unit="px").to_row()
    return [k[:-3] if k.startswith(("body_", "disc_")) else k
            for k in row if k not in ("levels", "unit", "flags")]


BASE_COLUMNS = ("image", "patient_id", "view", "unit", "levels", "n_vertebrae", "flags")
COBB_COLUMNS = ("cobb_1_deg", "cobb_2_deg", "cobb_3_deg", "cobb_end_vertebrae", "cobb_source")
ULTRASOUND_COLUMNS = ("facet_present", "trusted", "n_facets", "target_x_px", "target_y_px",
                      "target_x_mm", "target_y_mm", "target_error_px", "target_error_mm")
COLUMNS: tuple[str, ...] = (*BASE_COLUMNS, *COBB_COLUMNS, *_lateral_columns(), *ULTRASOUND_COLUMNS)
"""CSV columns in order."""


@dataclass
class ImageMeasurement:
    """One image: its COCO ``image`` record, its CSV ``row``, the ``geometry`` measured
    and the image file's ``path`` (None when the record's path is not usable)."""

    image: dict[str, Any]
    row: dict[str, Any]
    geometry: Geometry
    path: Path | None = None


@dataclass
class _Roles:
    """Category ids by role: vertebrae, facet joints, ventral complex."""

    vertebra: set[int] = field(default_factory=set)
    facet: set[int] = field(default_factory=set)
    ventral: set[int] = field(default_factory=set)

    @classmethod
    def of(cls, categories: Sequence[dict[str, Any]]) -> _Roles:
        roles = cls()
        for c in categories:
            name = str(c.get("name", "")).strip().lower()
            target = {"vertebra": roles.vertebra}.get(name)
            if name in FACET_NAMES:
                target = roles.facet
            elif name in VENTRAL_NAMES:
                target = roles.ventral
            if target is not None:
                target.add(int(c["id"]))
        return roles


def _ann_level(ann: dict[str, Any]) -> str | None:
    level = (ann.get("attributes") or {}).get("level")
    return str(level) if level is not None else None


def auto_view(anns: Sequence[dict[str, Any]], dataset_format: str | None) -> str | None:
    """The view of one vertebra image by the rule of the module docstring, or None."""
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


def _spacing(image: dict[str, Any]) -> tuple[float, float] | None:
    raw = image.get("pixel_spacing_mm")
    if isinstance(raw, list | tuple) and len(raw) == 2:
        try:
            row_mm, col_mm = float(raw[0]), float(raw[1])
        except (TypeError, ValueError):
            return None
        if np.isfinite(row_mm) and np.isfinite(col_mm) and row_mm > 0 and col_mm > 0:
            return (row_mm, col_mm)
    return None


def _expert_instances(anns: Sequence[dict[str, Any]], height: int, width: int) -> Instances:
    """Instances of expert annotations (parts of a multi-part instance, same level and
    ``attributes.instance``, are merged), rasterised into their boxes."""
    groups: dict[tuple[Any, ...], list[Any]] = {}
    rles: list[tuple[str | None, CropMask]] = []
    for a in anns:
        seg = a.get("segmentation")
        if isinstance(seg, dict) and "counts" in seg:
            rles.append((_ann_level(a), crop_from_rle(seg)))
            continue
        key = (_ann_level(a), (a.get("attributes") or {}).get("instance", a.get("id")))
        groups.setdefault(key, []).extend(seg if isinstance(seg, list) else [])
    out = Instances()
    for key, polys in groups.items():
        out.masks.append(crop_from_polygons(polys, height, width))
        out.levels.append(key[0])
    for level, crop in rles:
        out.masks.append(crop)
        out.levels.append(level)
    out.scores = [1.0] * len(out.masks)
    return out


def _predicted_instances(dets: Sequence[dict[str, Any]], threshold: float) -> Instances:
    out = Instances()
    for d in dets:
        if float(d["score"]) >= threshold and isinstance(d.get("segmentation"), dict):
            out.masks.append(crop_from_rle(d["segmentation"]))
            out.scores.append(float(d["score"]))
            out.levels.append(None)
    return out


def _keypoint_corners(dets: Sequence[dict[str, Any]], threshold: float) -> list[dict[str, Any]]:
    """Landmark results (``keypoints`` TL, TR, BL, BR) scoring >= ``threshold`` -> items with
    ``corners`` ``(4, 2)`` and their ``level`` for :func:`measure_ap_corners` (no mask step).
    Without levels the corners are ordered by their centre height."""
    kept = [d for d in dets if float(d["score"]) >= threshold]
    if not all(d.get("level") for d in kept):
        kept = sorted(kept, key=lambda d: sum(float(v) for v in d["keypoints"][1::3]))
    out = []
    for d in kept:
        values = [float(v) for v in d["keypoints"]]
        corners = [[values[3 * k], values[3 * k + 1]] for k in range(4)]
        out.append({"id": d.get("id"), "corners": corners,
                    "attributes": {"level": d["level"]} if d.get("level") else {}})
    return out


def _annotated_targets(image: dict[str, Any]) -> list[tuple[float, float]]:
    out = []
    for p in image.get("points") or []:
        if str(p.get("label", "")).strip().lower() in TARGET_LABELS:
            try:
                out.append((float(p["x"]), float(p["y"])))
            except (KeyError, TypeError, ValueError):
                continue
    return out


@dataclass
class _Context:
    """What every image of one run shares."""

    roles: _Roles
    view: View
    fmt: str | None
    threshold: float
    ultrasound: bool


def _ultrasound(row: dict[str, Any], geom: Geometry, image: dict[str, Any],
                items: Sequence[dict[str, Any]], ctx: _Context, predicted: bool) -> None:
    height, width = int(image["height"]), int(image["width"])

    def pick(ids: set[int]) -> Instances:
        chosen = [d for d in items if int(d["category_id"]) in ids]
        if predicted:
            return _predicted_instances(chosen, 0.0)
        return _expert_instances(chosen, height, width)

    measure_ultrasound_image(row, geom, pick(ctx.roles.facet), pick(ctx.roles.ventral),
                             threshold=ctx.threshold if predicted else 0.0,
                             spacing=_spacing(image), annotated=_annotated_targets(image))


def _vertebrae(row: dict[str, Any], geom: Geometry, image: dict[str, Any],
               items: Sequence[dict[str, Any]], view: str, predicted: bool, ctx: _Context) -> None:
    height, width = int(image["height"]), int(image["width"])
    if ctx.roles.vertebra:
        items = [d for d in items if int(d["category_id"]) in ctx.roles.vertebra]
    if not predicted and view == "ap" and items and all("corners" in a for a in items):
        row["cobb_source"] = "expert corners"
        measure_ap_corners(row, geom, items, float(height))
        return
    if predicted and view == "ap" and items and all("keypoints" in d for d in items):
        row["cobb_source"] = "predicted corners"
        weak = sum(bool(d.get("weak")) for d in items if float(d["score"]) >= ctx.threshold)
        if weak:
            row["flags"].append(f"{weak} weak vertebrae (low heatmap peak) in the landmark decode")
        measure_ap_corners(row, geom, _keypoint_corners(items, ctx.threshold), float(height))
        return
    if view == "ap":
        row["cobb_source"] = "predicted masks" if predicted else "expert masks"
    inst = (_predicted_instances(items, ctx.threshold) if predicted
            else _expert_instances(items, height, width))
    threshold = ctx.threshold if predicted else 0.0
    if view == "ap":
        measure_ap_masks(row, geom, inst, threshold, float(height))
    else:
        measure_lateral_masks(row, geom, inst, threshold, _spacing(image))


def _empty_row(image: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(image=str(image.get("file_name")), patient_id=image.get("patient_id"), flags=[])
    return row


def _chosen_view(anns: Sequence[dict[str, Any]], ctx: _Context) -> str | None:
    if ctx.view != "auto":
        return ctx.view
    if ctx.ultrasound:
        return "ultrasound"
    vertebrae = [a for a in anns if not ctx.roles.vertebra or int(a["category_id"]) in ctx.roles.vertebra]
    return auto_view(vertebrae, ctx.fmt)


def measure_image(image: dict[str, Any], anns: Sequence[dict[str, Any]],
                  dets: Sequence[dict[str, Any]] | None, ctx: _Context) -> ImageMeasurement:
    """Measure one image from its expert annotations ``anns`` or, when ``dets`` is given,
    from those predictions (the view is always decided from the expert annotations)."""
    row, geom = _empty_row(image), Geometry()
    chosen = _chosen_view(anns, ctx)
    row["view"] = geom.view = chosen
    try:
        if chosen is None:
            row["flags"].append("view undetermined (pass --view ap, lateral or ultrasound): "
                                "not measured")
        elif chosen == "ultrasound":
            _ultrasound(row, geom, image, dets if dets is not None else anns, ctx, dets is not None)
        else:
            _vertebrae(row, geom, image, dets if dets is not None else anns, chosen,
                       dets is not None, ctx)
    except Exception as exc:  # one bad image must never stop the batch
        logger.debug("image %s: %s", row["image"], exc, exc_info=True)
        row["flags"].append(f"measurement failed: {exc}")
    row["flags"] = "; ".join(dict.fromkeys(row["flags"]))
    return ImageMeasurement(image=image, row=row, geometry=geom)


def _read_predictions(records: DatasetRecords, path: Path
                      ) -> tuple[dict[int, list[dict[str, Any]]], bool]:
    """Detections by image id, and whether the file was empty (0 bytes or blank)."""
    from spinekit.evaluation.results import image_sizes, load_results

    try:
        blank = path.is_file() and not path.read_bytes().strip()
    except OSError:
        blank = False
    if blank:
        return {}, True
    out: dict[int, list[dict[str, Any]]] = {}
    categories = {int(c["id"]) for c in records.categories}
    for d in load_results(path, image_sizes=image_sizes(records.images), category_ids=categories,
                          require_masks="measure"):
        out.setdefault(int(d["image_id"]), []).append(d)
    return out, False


def _select_images(records: DatasetRecords, split: str | None) -> list[dict[str, Any]]:
    if split is None:
        return list(records.images)
    from spinekit.data.splits import load_splits, split_image_ids

    wanted = set(split_image_ids(load_splits(records.root), split))  # type: ignore[arg-type]
    return [img for img in records.images if int(img["id"]) in wanted]


def measurable_view(records: DatasetRecords) -> str | None:
    """``"ultrasound"`` for a dataset with a facet-joint category, ``"vertebrae"`` for one
    with a ``vertebra`` category or levelled instances, else None (nothing to measure)."""
    roles = _Roles.of(records.categories)
    if roles.facet:
        return "ultrasound"
    if roles.vertebra or any(_ann_level(a) for a in records.annotations[:200]):
        return "vertebrae"
    return None


Task = tuple[dict[str, Any], Sequence[dict[str, Any]], Sequence[dict[str, Any]] | None]
"""(image record, its expert annotations, its detections or None) of one image."""

CHUNK_IMAGES = 16
"""Most images per task sent to a worker process (``workers > 1``; fewer on small datasets,
so every worker gets some)."""


def _measure_chunk(tasks: Sequence[Task], ctx: _Context) -> list[ImageMeasurement]:
    """Measure a chunk of images in order (runs in a worker process)."""
    return [measure_image(image, anns, dets, ctx) for image, anns, dets in tasks]


def _measure_parallel(tasks: Sequence[Task], ctx: _Context, workers: int) -> Iterator[ImageMeasurement]:
    """:func:`measure_image` of every task on ``workers`` processes, yielded in task order.

    At most ``4 * workers`` chunks are in flight, so memory stays bounded. A chunk whose
    worker failed (a crashed process breaks the pool) is measured here instead, so a
    broken worker never loses an image nor stops the batch."""
    from concurrent.futures import Future, ProcessPoolExecutor

    size = max(1, min(CHUNK_IMAGES, len(tasks) // (2 * workers)))
    chunks = [tasks[i : i + size] for i in range(0, len(tasks), size)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending: list[tuple[Sequence[Task], Future[list[ImageMeasurement]]]] = []
        for chunk in chunks:
            pending.append((chunk, pool.submit(_measure_chunk, chunk, ctx)))
            if len(pending) >= 4 * workers:
                yield from _chunk_result(*pending.pop(0), ctx)
        for chunk, future in pending:
            yield from _chunk_result(chunk, future, ctx)


def _chunk_result(chunk: Sequence[Task], future: Any, ctx: _Context) -> list[ImageMeasurement]:
    try:
        return list(future.result())
    except Exception as exc:  # a worker died or could not pickle: measure in this process
        logger.warning("worker process failed (%s): measuring %d images in the main process",
                       exc, len(chunk))
        return _measure_chunk(chunk, ctx)


def measure_images(dataset: Path | DatasetRecords, *, predictions: Path | None = None,
                   view: View = "auto", split: str | None = None, score_threshold: float = 0.5,
                   progress: Progress | None = None, image_ids: Sequence[int] | None = None,
                   workers: int = 1) -> Iterator[ImageMeasurement]:
    """Measure the images of ``dataset`` one by one (module docstring), yielding each in
    image order.

    ``predictions``: COCO results JSON (RLE masks) measured instead of the expert
    annotations; detections below ``score_threshold`` are ignored. ``split``: a part of
    ``splits.json`` (train, val, test, trainval, all; fold 0); ``image_ids``: only these
    images. ``workers``: processes measuring images in parallel (chunks of
    :data:`CHUNK_IMAGES` images; 1 = in this process); the results are the same for any
    number. Raises InputError for a missing dataset or an unreadable predictions file,
    ValueError for a bad ``view`` or ``workers`` < 1.
    """
    if view not in VIEWS:
        raise UsageError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    if int(workers) < 1:
        raise UsageError(f"workers must be at least 1, got {workers}")
    records = dataset if isinstance(dataset, DatasetRecords) else load_dataset(dataset)
    roles = _Roles.of(records.categories)
    preds, blank = (None, False) if predictions is None else _read_predictions(records, Path(predictions))
    fmt = records.info.get("format")
    ctx = _Context(roles=roles, view=view, fmt=None if fmt is None else str(fmt),
                   threshold=score_threshold, ultrasound=bool(roles.facet))
    by_image = records.annotations_by_image()
    images = _select_images(records, split)
    if image_ids is not None:
        wanted = {int(i) for i in image_ids}
        images = [img for img in images if int(img["id"]) in wanted]
    tasks: list[Task] = [(image, by_image.get(int(image["id"]), []),
                          None if preds is None else preds.get(int(image["id"]), [])) for image in images]
    results = (_measure_parallel(tasks, ctx, int(workers)) if workers > 1 and len(tasks) > 1
               else (measure_image(image, anns, dets, ctx) for image, anns, dets in tasks))
    for done, result in enumerate(results, start=1):
        try:
            result.path = records.image_path(result.image)
        except InputError:
            result.path = None
        if blank:
            flags = result.row["flags"]
            result.row["flags"] = "predictions file is empty" + (f"; {flags}" if flags else "")
        yield result
        if progress is not None:
            progress(done, len(images))


def measure_dataset(dataset: Path, *, predictions: Path | None = None, view: View = "auto",
                    split: str | None = None, score_threshold: float = 0.5,
                    progress: Progress | None = None, workers: int = 1) -> list[dict[str, Any]]:
    """One row (dict keyed by :data:`COLUMNS`) per image of ``dataset``, in image order; see
    :func:`measure_images` for the arguments."""
    return [m.row for m in measure_images(dataset, predictions=predictions, view=view, split=split,
                                          score_threshold=score_threshold, progress=progress,
                                          workers=workers)]


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
