"""Per-image pixel metrics and recognition of COCO results against a spinekit dataset.

One row per image (:func:`per_image_metrics`) and the set-level summary
(:func:`aggregate`), as a model-comparison study reports them (mean IoU, pixel
accuracy, mean accuracy, frequency-weighted IoU, Dice, HD95, recognition and
composite recognition rate; the per-image values feed the statistical tests).

Class maps (see :mod:`spinekit.evaluation.pixel`): class ``k`` (1..K) is the
k-th dataset category in ascending category id, 0 is background.

Ground truth of an image: its non-crowd annotations minus the excluded ones,
in annotation order; each is rasterised in original image coordinates with
:func:`spinekit.geometry.rasterize` (polygon rings with >= 3 points, else its
bbox; an RLE segmentation is decoded) into an instance mask and painted into the
class map, a later annotation painting over an earlier one where they overlap.
Crowd annotations (``iscrowd`` 1) are ignored regions, as in COCO: their pixels
are left out of the confusion matrix and set to background in both maps for
Dice and HD95, and a prediction with at least half of its pixels inside crowd
regions of its class is ignored (neither matched nor extra).

Predictions: the image's results with ``score >= score_threshold`` and a
non-empty mask, decoded from their RLE (or polygons, via
:func:`spinekit.evaluation.results.normalise_result`); painted into the class
map in ascending score order so the highest score wins a pixel (equal scores:
the later result wins); recognition uses the individual masks. Results of
dataset images outside ``image_ids`` are skipped (e.g. other folds).

Images are processed one at a time, and each instance only inside its bounding
window (:mod:`spinekit.evaluation.masks`; identical to full-image masks): the
class maps cover the bounding box of all instances of the image (pixels outside
it are background in both maps and are added to the confusion matrix as such),
the instance masks go to the recognition as sparse matrices. Memory is that of
one image's maps plus its instance windows.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from spinekit.data.records import DatasetRecords
from spinekit.errors import UsageError
from spinekit.evaluation.masks import frame_matrix, frame_of, paint
from spinekit.evaluation.pixel import (
    PIXEL_METRICS,
    class_scores,
    confusion_matrix,
    dice_from_confusion,
    hausdorff95,
    pixel_metrics,
)
from spinekit.evaluation.recognition import COUNT_KEYS, recognition_from_matrices
from spinekit.evaluation.results import normalise_result
from spinekit.masks import CropMask, crop_from_polygons, crop_from_rle

log = logging.getLogger(__name__)

ROW_METRICS = (*PIXEL_METRICS, "dice", "hd95")


@dataclass
class _Instances:
    """One side of an image: mask windows, ``(N,)`` class indices, ``(N, fh*fw)`` sparse frame masks."""

    windows: list[CropMask]
    labels: np.ndarray
    matrix: sparse.csr_matrix


def _annotation_window(ann: Mapping[str, Any], height: int, width: int) -> CropMask:
    """CropMask of a dataset annotation's mask (polygons, RLE, or its bbox)."""
    seg = ann.get("segmentation")
    if isinstance(seg, dict):
        if [int(v) for v in seg.get("size") or []] != [height, width]:
            raise UsageError(f"annotation {ann.get('id')}: RLE size {seg.get('size')} differs from the "
                             f"image size [{height}, {width}]")
        return crop_from_rle(seg)
    rings = [r for r in seg or [] if len(r) >= 6]
    if not rings:
        box = ann.get("bbox")
        if not box:
            raise UsageError(f"annotation {ann.get('id')} has neither a polygon nor a bbox")
        x, y, w, h = (float(v) for v in box)
        rings = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    return crop_from_polygons(rings, height, width)


def _split_truth(anns: Sequence[Mapping[str, Any]], classes: Mapping[int, int], shape: tuple[int, int]
                 ) -> tuple[list[CropMask], list[int], list[CropMask], list[int]]:
    """CropMasks and class indices of the non-crowd annotations and of the crowd regions."""
    truth: tuple[list[CropMask], list[int]] = ([], [])
    crowd: tuple[list[CropMask], list[int]] = ([], [])
    for ann in anns:
        target = crowd if ann.get("iscrowd") else truth
        target[0].append(_annotation_window(ann, *shape))
        target[1].append(classes[int(ann["category_id"])])
    return truth[0], truth[1], crowd[0], crowd[1]


def _on_crowd(windows: Sequence[CropMask], labels: np.ndarray, crowd: Sequence[CropMask],
              crowd_labels: Sequence[int], frame: tuple[int, int, int, int]) -> np.ndarray:
    """``(P,)`` bool: predicted windows with >= half their pixels in crowd regions of their class."""
    out = np.zeros(len(windows), dtype=bool)
    top, left = frame[0], frame[1]
    for label in sorted(set(crowd_labels)):
        of_class = [w for w, c in zip(crowd, crowd_labels, strict=True) if c == label]
        region = paint(of_class, [1] * len(of_class), frame) > 0
        for k in np.flatnonzero(labels == label):
            w = windows[int(k)]
            inside = region[w.top - top:w.bottom - top, w.left - left:w.right - left] & w.crop
            out[k] = 2 * np.count_nonzero(inside) >= np.count_nonzero(w.crop)
    return out


@dataclass
class _Image:
    """An image's instances in a common frame (the bounding box of every instance and crowd region)."""

    truth: _Instances
    pred: _Instances          # in ascending score order
    frame: tuple[int, int, int, int]
    ignored: np.ndarray       # (fh, fw) bool: crowd pixels
    outside: int              # image pixels outside the frame (background in both maps)
    dropped: int              # predictions left out: empty masks or on crowd regions


def _load_image(image: Mapping[str, Any], anns: Sequence[Mapping[str, Any]],
                results: Sequence[Mapping[str, Any]], classes: Mapping[int, int]) -> _Image:
    """Ground truth and the (score-filtered) ``results`` of one image as windows in their frame."""
    shape = (int(image["height"]), int(image["width"]))
    t_windows, t_labels, c_windows, c_labels = _split_truth(anns, classes, shape)
    p_all = [crop_from_rle(r["segmentation"]) for r in results]
    order = sorted((k for k, w in enumerate(p_all) if not w.empty),
                   key=lambda k: float(results[k]["score"]))  # stable: ties keep file order
    p_windows = [p_all[k] for k in order]
    p_labels = np.array([classes[int(results[k]["category_id"])] for k in order], dtype=np.int64)
    frame = frame_of([*t_windows, *c_windows, *p_windows])
    on_crowd = _on_crowd(p_windows, p_labels, c_windows, c_labels, frame)
    p_windows = [w for w, crowd in zip(p_windows, on_crowd, strict=True) if not crowd]
    p_labels = p_labels[~on_crowd]
    area = (frame[2] - frame[0]) * (frame[3] - frame[1])
    return _Image(
        truth=_Instances(t_windows, np.asarray(t_labels, dtype=np.int64), frame_matrix(t_windows, frame)),
        pred=_Instances(p_windows, p_labels, frame_matrix(p_windows, frame)),
        frame=frame, ignored=paint(c_windows, [1] * len(c_windows), frame) > 0,
        outside=shape[0] * shape[1] - area, dropped=len(results) - len(p_windows))


def _spacing(image: Mapping[str, Any]) -> tuple[list[float] | None, str]:
    """``pixel_spacing_mm`` (row, col) and the unit "mm", or (None, "px") when absent or invalid."""
    value = image.get("pixel_spacing_mm")
    if isinstance(value, list | tuple) and len(value) == 2:
        try:
            spacing = [float(v) for v in value]
        except (TypeError, ValueError):
            spacing = []
        if spacing and all(math.isfinite(v) and v > 0 for v in spacing):
            return spacing, "mm"
    return None, "px"


@dataclass(frozen=True)
class _Options:
    score_threshold: float
    iou_threshold: float
    fuse_fraction: float
    overlap_tolerance: float


def _image_row(image: Mapping[str, Any], anns: Sequence[Mapping[str, Any]],
               results: Sequence[Mapping[str, Any]], classes: Mapping[int, int],
               options: _Options) -> dict[str, Any]:
    """The per-image row (see :func:`per_image_metrics`)."""
    kept = [r for r in results if float(r["score"]) >= options.score_threshold]
    data = _load_image(image, anns, kept, classes)
    t_map = paint(data.truth.windows, data.truth.labels.tolist(), data.frame)
    p_map = paint(data.pred.windows, data.pred.labels.tolist(), data.frame)  # ascending score: top wins
    evaluated = ~data.ignored
    confusion = confusion_matrix(t_map[evaluated], p_map[evaluated], len(classes))
    confusion[0, 0] += data.outside
    t_map[data.ignored] = 0
    p_map[data.ignored] = 0
    spacing, unit = _spacing(image)
    result = recognition_from_matrices(
        data.truth.matrix, data.truth.labels, data.pred.matrix, data.pred.labels,
        iou_threshold=options.iou_threshold, fuse_fraction=options.fuse_fraction,
        overlap_tolerance=options.overlap_tolerance)
    counts = result.counts
    row: dict[str, Any] = {
        "image_id": int(image["id"]), "file_name": str(image.get("file_name", "")),
        "patient_id": image.get("patient_id"), "height": int(image["height"]),
        "width": int(image["width"]), "n_truth": counts["truth"], "n_pred": counts["predicted"],
        "truth_pixels": int(confusion[1:].sum()), "pred_pixels": int(confusion[:, 1:].sum()),
        **pixel_metrics(confusion), "dice": dice_from_confusion(confusion),
        "hd95": hausdorff95(t_map > 0, p_map > 0, spacing), "hd95_unit": unit,
        "recognised": result.recognised, "composite_recognised": result.composite_recognised,
    }
    row.update({key: counts[key] for key in COUNT_KEYS[2:]})
    row["ignored_pred"] = data.dropped
    row["confusion"] = confusion.tolist()
    return row


def _results_by_image(results: Iterable[Mapping[str, Any]], images: Mapping[int, Mapping[str, Any]],
                      wanted: Collection[int], classes: Mapping[int, int]) -> dict[int, list[dict[str, Any]]]:
    """Normalised results of the wanted images; ValueError names the first bad result."""
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in wanted}
    skipped = 0
    for index, entry in enumerate(results):
        image_id = entry.get("image_id") if isinstance(entry, Mapping) else None
        if not isinstance(image_id, int) or image_id not in images:
            raise UsageError(f"result {index}: image_id {image_id!r} is not an image of the dataset")
        if image_id not in out:
            skipped += 1
            continue
        image = images[image_id]
        try:
            item = normalise_result(dict(entry), (int(image["height"]), int(image["width"])))
        except ValueError as exc:
            raise UsageError(f"result {index}: {exc}") from exc
        if "segmentation" not in item:
            raise UsageError(f"result {index}: no segmentation; pixel metrics need masks")
        if item["category_id"] not in classes:
            raise UsageError(f"result {index}: unknown category_id {item['category_id']}; "
                             f"categories: {sorted(classes)}")
        out[image_id].append(item)
    if skipped:
        log.info("%d results of images outside the evaluated set skipped", skipped)
    return out


def per_image_metrics(records: DatasetRecords, image_ids: Sequence[int],
                      results: Iterable[Mapping[str, Any]], *,
                      excluded_annotations: Collection[int] = (), score_threshold: float = 0.5,
                      iou_threshold: float = 0.5, fuse_fraction: float = 0.5,
                      overlap_tolerance: float = 0.01) -> list[dict[str, Any]]:
    """One row per image of ``image_ids`` (in that order, duplicates dropped); see the module docstring.

    ``results``: COCO result dicts with segmentations in original coordinates.
    Row keys: ``image_id``, ``file_name``, ``patient_id``, ``height``, ``width``,
    ``n_truth``, ``n_pred`` (instances evaluated), ``truth_pixels``,
    ``pred_pixels`` (foreground pixels evaluated), ``pixel_accuracy``,
    ``mean_accuracy``, ``mean_iou``, ``fw_iou``, ``dice``, ``hd95`` (of the
    foreground masks, classes merged), ``hd95_unit`` ("mm" when the image has
    ``pixel_spacing_mm``, else "px"), ``recognised``, ``composite_recognised``,
    ``matched``, ``missed``, ``extra``, ``fused``, ``overlapping`` (see
    :mod:`spinekit.evaluation.recognition`), ``ignored_pred`` (predictions above
    the threshold left out: empty mask or on a crowd region) and ``confusion``
    (``(K+1) x (K+1)`` list of lists, for :func:`aggregate`). Undefined metrics
    are NaN (see :mod:`spinekit.evaluation.pixel`). ValueError on image ids not in
    the dataset and on bad results (named by index).
    """
    images = {int(img["id"]): img for img in records.images}
    wanted = list(dict.fromkeys(int(i) for i in image_ids))
    missing = [i for i in wanted if i not in images]
    if missing:
        raise UsageError(f"image ids not in the dataset: {missing[:10]}")
    classes = {cid: k + 1 for k, cid in enumerate(sorted(int(c["id"]) for c in records.categories))}
    excluded = {int(i) for i in excluded_annotations}
    anns: dict[int, list[dict[str, Any]]] = {i: [] for i in wanted}
    for ann in records.annotations:
        image_id = int(ann["image_id"])
        if image_id in anns and int(ann["id"]) not in excluded:
            if int(ann["category_id"]) not in classes:
                raise UsageError(f"annotation {ann['id']}: unknown category_id {ann['category_id']}")
            anns[image_id].append(ann)
    by_image = _results_by_image(results, images, set(wanted), classes)
    options = _Options(float(score_threshold), float(iou_threshold), float(fuse_fraction),
                       float(overlap_tolerance))
    return [_image_row(images[i], anns[i], by_image[i], classes, options) for i in wanted]


# ----------------------------------------------------------------------------- aggregate


def _nan_reason(row: Mapping[str, Any], metric: str) -> str:
    """Why ``metric`` of ``row`` is NaN."""
    if metric in PIXEL_METRICS:
        return "no evaluated pixel"
    truth, pred = row["truth_pixels"] > 0, row["pred_pixels"] > 0
    if not truth and not pred:
        return "no foreground in truth and prediction"
    return "no foreground in truth" if not truth else "no foreground in prediction"


def _summary(values: list[float]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return {"images": 0, "mean": float("nan"), "median": float("nan"), "std": float("nan")}
    return {"images": int(arr.size), "mean": float(arr.mean()), "median": float(np.median(arr)),
            "std": float(arr.std(ddof=1)) if arr.size > 1 else float("nan")}


def _share(count: int, total: int) -> float:
    return count / total if total else float("nan")


def aggregate(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Set-level values of :func:`per_image_metrics` rows.

    Returns ``images``; ``set_level``: :func:`~spinekit.evaluation.pixel.pixel_metrics`
    of the confusion matrices summed over all images plus ``class_iou`` and
    ``class_accuracy`` lists (index = class map label, NaN where undefined);
    ``per_image``: for every row metric the ``images`` with a defined value and
    their ``mean``, ``median``, ``std`` (HD95 per unit: ``hd95_mm`` and ``hd95_px``);
    ``recognition_rate`` and ``composite_recognition_rate`` (share of images, NaN
    without images) with the ``recognised_images`` and ``composite_recognised_images``
    counts; ``counts``: the instance counts summed; ``nan``: per metric the number
    of images where it was NaN and the reasons with their counts. NaN values are
    never averaged in (nor counted as 0).
    """
    total = len(rows)
    sizes = {len(r["confusion"]) for r in rows}
    if len(sizes) > 1:
        raise UsageError(f"rows have confusion matrices of different sizes: {sorted(sizes)}")
    confusion = (np.sum([np.asarray(r["confusion"], dtype=np.int64) for r in rows], axis=0)
                 if rows else np.zeros((1, 1), dtype=np.int64))
    accuracy, iou = class_scores(confusion)
    per_image: dict[str, Any] = {}
    nan: dict[str, Any] = {}
    for metric in ROW_METRICS:
        defined = [r for r in rows if not math.isnan(float(r[metric]))]
        reasons = Counter(_nan_reason(r, metric) for r in rows if math.isnan(float(r[metric])))
        nan[metric] = {"images": total - len(defined), "reasons": dict(sorted(reasons.items()))}
        if metric == "hd95":
            for unit in ("mm", "px"):
                per_image[f"hd95_{unit}"] = _summary([float(r[metric]) for r in defined
                                                      if r["hd95_unit"] == unit])
        else:
            per_image[metric] = _summary([float(r[metric]) for r in defined])
    recognised = sum(bool(r["recognised"]) for r in rows)
    composite = sum(bool(r["composite_recognised"]) for r in rows)
    count_keys = ("n_truth", "n_pred", *COUNT_KEYS[2:], "ignored_pred")
    return {
        "images": total,
        "set_level": {**pixel_metrics(confusion), "class_iou": iou.tolist(),
                      "class_accuracy": accuracy.tolist()},
        "per_image": per_image,
        "recognition_rate": _share(recognised, total), "recognised_images": recognised,
        "composite_recognition_rate": _share(composite, total),
        "composite_recognised_images": composite,
        "counts": {key: int(sum(int(r[key]) for r in rows)) for key in count_keys},
        "nan": nan,
    }
