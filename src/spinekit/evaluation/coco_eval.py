"""COCO bbox/segm evaluation of detections against a spinekit dataset (faster-coco-eval).

Ground truth is the dataset's annotations (polygons in original image
coordinates) of the chosen images, minus excluded annotations; images without
annotations take part as negatives. Crowd annotations (``iscrowd=1``) are
handled as COCO does: ignored, and detections matching them are neither true
nor false positives. The numbers equal pycocotools' ``COCOeval`` (checked by the
tests).

Metrics layout returned by :meth:`CocoEvaluator.evaluate` (AP/AR and ratios are
fractions in [0, 1]; -1 where undefined, e.g. AP of a class with no ground
truth, as COCO reports; ``None`` where not evaluated, e.g. ``segm`` for results
without masks)::

    {"images": n, "negative_images": n, "detections": n,
     "bbox": {"AP", "AP50", "AP75", "APs", "APm", "APl",
              "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"},
     "segm": {... same ...},
     "per_class": {name: {"instances", "bbox_AP", "bbox_AP50", "segm_AP", "segm_AP50"}},
     "image_level": {"score_threshold": t,
                     "negatives": {"images", "specificity", "false_positives_per_image"},
                     "positives": {"images", "sensitivity"},
                     "per_class": {name: {"images", "sensitivity", "specificity"}},
                     "joint_rule": None or {"primary", "required", "before", "after",
                                            "dropped_detections"}},
     "joint_rule_coco": {"bbox", "segm", "per_class"}}     # only with a joint rule

Small/medium/large (APs/APm/APl, ARs/ARm/ARl) use COCO's area thresholds 32^2 and
96^2 in *original* image pixels: ground-truth areas are the dataset's polygon
areas; detection areas are box areas for bbox and mask areas for segm (for segm
the results are evaluated without their boxes, as in COCO's segm result format
and detectron2).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster

from spinekit.data.records import DatasetRecords
from spinekit.errors import UsageError
from spinekit.evaluation.image_level import (
    ImageTruth,
    apply_joint_rule,
    image_level_metrics,
)
from spinekit.evaluation.results import normalise_result
from spinekit.geometry import as_points, bbox_of, polygon_area
from spinekit.io.atomic import atomic_write_json

log = logging.getLogger(__name__)

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
              "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
IOU_TYPES = ("bbox", "segm")


def _gt_segmentation(ann: Mapping[str, Any]) -> list[list[float]]:
    """Polygon rings with >= 3 points (COCO would read a 2-point ring as a box); bbox if none."""
    rings = [list(map(float, r)) for r in ann.get("segmentation") or [] if len(r) >= 6]
    if rings:
        return rings
    if not ann.get("bbox"):
        raise UsageError(f"annotation {ann.get('id')} has neither a polygon nor a bbox")
    x, y, w, h = (float(v) for v in ann["bbox"])
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def coco_ground_truth(records: DatasetRecords, image_ids: Sequence[int],
                      excluded_annotations: Collection[int] = ()) -> dict[str, Any]:
    """COCO ground-truth dict for ``image_ids`` (new dicts; ``records`` is not modified).

    Annotation ids are renumbered from 1 (COCO matching treats id 0 as unmatched);
    ``area`` is the dataset's polygon area (computed when absent).
    """
    wanted = {int(i) for i in image_ids}
    excluded = {int(i) for i in excluded_annotations}
    images = [{"id": int(img["id"]), "width": int(img["width"]), "height": int(img["height"]),
               "file_name": str(img.get("file_name", ""))}
              for img in records.images if int(img["id"]) in wanted]
    annotations: list[dict[str, Any]] = []
    for ann in records.annotations:
        if int(ann["image_id"]) not in wanted or int(ann["id"]) in excluded:
            continue
        segmentation = _gt_segmentation(ann)
        box = ann.get("bbox") or bbox_of(np.concatenate([as_points(r) for r in segmentation]))
        area = ann.get("area")
        if area is None:
            area = sum(polygon_area(as_points(r)) for r in segmentation)
        annotations.append({
            "id": len(annotations) + 1, "image_id": int(ann["image_id"]),
            "category_id": int(ann["category_id"]), "segmentation": segmentation,
            "bbox": [float(v) for v in box], "area": float(area),
            "iscrowd": 1 if ann.get("iscrowd") else 0,
        })
    categories = [{"id": int(c["id"]), "name": str(c["name"])} for c in records.categories]
    return {"images": images, "annotations": annotations, "categories": categories}


def _copy_coco(gt: Mapping[str, Any]) -> COCO:
    """A faster-coco-eval COCO over copies of the dicts (evaluation adds keys to them)."""
    return COCO({key: [dict(item) for item in gt[key]]
                 for key in ("images", "annotations", "categories")})


def run_cocoeval(coco_gt: COCO, results: Sequence[Mapping[str, Any]], iou_type: str
                 ) -> COCOeval_faster:
    """Evaluate, accumulate and summarise ``results`` on ``coco_gt`` for one IoU type.

    For ``segm`` the results' boxes are left out so detection areas are mask areas.
    """
    if iou_type == "segm":
        dets = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    else:
        dets = [dict(r) for r in results]
    coco_dt = coco_gt.loadRes(dets)
    evaluator = COCOeval_faster(coco_gt, coco_dt, iou_type, print_function=log.debug)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator


def _per_class_ap(evaluator: COCOeval_faster) -> dict[int, tuple[float, float]]:
    """Category id -> (AP, AP50) from the accumulated precision (area all, maxDets 100)."""
    precision = np.asarray(evaluator.eval["precision"])  # (T, R, K, A, M)
    iou50 = int(np.argmin(np.abs(np.asarray(evaluator.params.iouThrs) - 0.5)))
    out: dict[int, tuple[float, float]] = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        values = []
        for p in (precision[:, :, k, 0, -1], precision[iou50, :, k, 0, -1]):
            valid = p[p > -1]
            values.append(float(np.mean(valid)) if valid.size else -1.0)
        out[int(cat_id)] = (values[0], values[1])
    return out


def coco_metrics(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                 iou_types: Sequence[str] = IOU_TYPES) -> dict[str, Any]:
    """COCO stats per IoU type plus per-class AP: ``{"bbox", "segm", "per_class"}``.

    ``gt`` is a :func:`coco_ground_truth` dict, ``results`` normalised result dicts.
    ``segm`` is None when some results have no mask.
    """
    coco_gt = _copy_coco(gt)
    names = {int(c["id"]): str(c["name"]) for c in gt["categories"]}
    instances = {cid: 0 for cid in names}
    for ann in gt["annotations"]:
        if not ann["iscrowd"]:
            instances[int(ann["category_id"])] = instances.get(int(ann["category_id"]), 0) + 1
    out: dict[str, Any] = {t: None for t in IOU_TYPES}
    per_class: dict[str, dict[str, Any]] = {
        names[cid]: {"instances": instances[cid], "bbox_AP": None, "bbox_AP50": None,
                     "segm_AP": None, "segm_AP50": None} for cid in sorted(names)}
    for iou_type in iou_types:
        if iou_type == "segm" and any("segmentation" not in r for r in results):
            log.warning("segm metrics skipped: some results have no segmentation")
            continue
        evaluator = run_cocoeval(coco_gt, results, iou_type)
        out[iou_type] = {name: float(v) for name, v in zip(STAT_NAMES, evaluator.stats[:12],
                                                            strict=True)}
        for cid, (ap, ap50) in _per_class_ap(evaluator).items():
            per_class[names[cid]][f"{iou_type}_AP"] = ap
            per_class[names[cid]][f"{iou_type}_AP50"] = ap50
    out["per_class"] = per_class
    return out


class CocoEvaluator:
    """detectron2-style evaluator: ``reset``, ``process`` result batches, ``evaluate``.

    ``records``: the dataset; ``image_ids``: the images evaluated (e.g. a split
    part); ``excluded_annotations``: annotation ids left out of the ground truth
    (see :func:`spinekit.data.records.load_exclusions`); ``iou_types``: subset of
    ("bbox", "segm"); ``score_threshold``: for the image-level results and the joint
    rule; ``joint_rule``: ``(primary, required)`` class names, e.g. ``("F", "E")``.
    See the module docstring for the metrics layout.
    """

    def __init__(self, records: DatasetRecords, image_ids: Sequence[int], *,
                 excluded_annotations: Collection[int] = (),
                 iou_types: Sequence[str] = IOU_TYPES, score_threshold: float = 0.5,
                 joint_rule: tuple[str, str] | None = None) -> None:
        bad_types = [t for t in iou_types if t not in IOU_TYPES]
        if bad_types or not iou_types:
            raise UsageError(f"iou_types must be a non-empty subset of {IOU_TYPES}, got {iou_types}")
        sizes = {int(img["id"]): (int(img["height"]), int(img["width"])) for img in records.images}
        missing = sorted({int(i) for i in image_ids} - set(sizes))
        if missing:
            raise UsageError(f"image ids not in the dataset: {missing[:10]}")
        self.image_ids = sorted({int(i) for i in image_ids})
        self.iou_types = tuple(iou_types)
        self.score_threshold = float(score_threshold)
        self.names = records.category_names()
        self._sizes = {i: sizes[i] for i in self.image_ids}
        self.ground_truth = coco_ground_truth(records, self.image_ids, excluded_annotations)
        self.truth = ImageTruth.from_annotations(self.image_ids, self.ground_truth["annotations"])
        self.joint_rule = joint_rule
        self._joint_ids = None if joint_rule is None else self._class_ids(joint_rule)
        self.results: list[dict[str, Any]] = []

    def _class_ids(self, pair: tuple[str, str]) -> tuple[int, int]:
        by_name = {name: cid for cid, name in self.names.items()}
        unknown = [n for n in pair if n not in by_name]
        if unknown:
            raise UsageError(f"joint rule names unknown class {unknown[0]!r}; "
                             f"classes: {sorted(by_name)}")
        return by_name[pair[0]], by_name[pair[1]]

    def reset(self) -> None:
        """Forget the processed results."""
        self.results = []

    def process(self, results: Sequence[Mapping[str, Any]]) -> None:
        """Add COCO result dicts (original coordinates) of images in ``image_ids``.

        Entries are validated and normalised (:func:`normalise_result`); ValueError
        names the first bad one, an image outside ``image_ids`` or an unknown category.
        """
        batch = []
        for index, entry in enumerate(results):
            image_id = entry.get("image_id") if isinstance(entry, Mapping) else None
            if image_id not in self._sizes:
                raise UsageError(f"result {index}: image_id {image_id!r} is not one of the "
                                 f"{len(self.image_ids)} images evaluated")
            try:
                item = normalise_result(dict(entry), self._sizes[int(image_id)])
            except ValueError as exc:
                raise UsageError(f"result {index}: {exc}") from exc
            if item["category_id"] not in self.names:
                raise UsageError(f"result {index}: unknown category_id {item['category_id']}; "
                                 f"categories: {sorted(self.names)}")
            batch.append(item)
        self.results.extend(batch)

    def evaluate(self) -> dict[str, Any]:
        """Metrics of everything processed since the last :meth:`reset`."""
        coco = coco_metrics(self.ground_truth, self.results, self.iou_types)
        before = image_level_metrics(self.truth, self.results, self.names, self.score_threshold)
        metrics: dict[str, Any] = {
            "images": len(self.image_ids), "negative_images": len(self.truth.negatives),
            "detections": len(self.results),
            "bbox": coco["bbox"], "segm": coco["segm"], "per_class": coco["per_class"],
            "image_level": {"score_threshold": self.score_threshold, **before, "joint_rule": None},
        }
        if self._joint_ids is not None and self.joint_rule is not None:
            kept, dropped = apply_joint_rule(self.results, *self._joint_ids, self.score_threshold)
            after = image_level_metrics(self.truth, kept, self.names, self.score_threshold)
            metrics["image_level"]["joint_rule"] = {
                "primary": self.joint_rule[0], "required": self.joint_rule[1],
                "before": before, "after": after, "dropped_detections": dropped,
            }
            metrics["joint_rule_coco"] = coco_metrics(self.ground_truth, kept, self.iou_types)
        return metrics


def evaluate_results(records: DatasetRecords, image_ids: Sequence[int],
                     results: Sequence[Mapping[str, Any]], **kwargs: Any) -> dict[str, Any]:
    """One-call evaluation: :class:`CocoEvaluator` (``kwargs``) over ``results``."""
    evaluator = CocoEvaluator(records, image_ids, **kwargs)
    evaluator.process(results)
    return evaluator.evaluate()


def write_metrics(path: str | Path, metrics: Mapping[str, Any]) -> None:
    """Write ``metrics`` as indented JSON, atomically."""
    atomic_write_json(path, dict(metrics), indent=2)
