"""Image-level results: is anything found in an image at a score threshold?

An image is *negative* when it has no ground-truth annotation at all (crowd
regions included) and *positive* when it has at least one non-crowd one; images
with crowd regions only are neither. A detection counts when its score is at
least the threshold. Ratios are fractions in [0, 1], -1 where undefined (no
images of the kind), as COCO reports undefined metrics.

The joint rule of the facet-joint ultrasound study: detections of a *primary*
class (facet joint "F") are trusted only in images where a detection of a
*required* class (ventral complex "E") reaches the threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ImageTruth:
    """Ground truth per image id: category ids of non-crowd and of crowd annotations."""

    classes: Mapping[int, frozenset[int]]
    crowd: Mapping[int, frozenset[int]]

    @classmethod
    def from_annotations(cls, image_ids: Iterable[int],
                         annotations: Iterable[Mapping[str, Any]]) -> ImageTruth:
        """Build from COCO annotation dicts (``image_id``, ``category_id``, ``iscrowd``)."""
        classes: dict[int, set[int]] = {int(i): set() for i in image_ids}
        crowd: dict[int, set[int]] = {i: set() for i in classes}
        for ann in annotations:
            image_id = int(ann["image_id"])
            if image_id in classes:
                target = crowd if ann.get("iscrowd") else classes
                target[image_id].add(int(ann["category_id"]))
        return cls({i: frozenset(v) for i, v in classes.items()},
                   {i: frozenset(v) for i, v in crowd.items()})

    @property
    def negatives(self) -> list[int]:
        """Ids of images without any annotation."""
        return [i for i, c in self.classes.items() if not c and not self.crowd[i]]

    @property
    def positives(self) -> list[int]:
        """Ids of images with at least one non-crowd annotation."""
        return [i for i, c in self.classes.items() if c]


def _ratio(num: int, den: int) -> float:
    return num / den if den else -1.0


def _hits(results: Iterable[Mapping[str, Any]], threshold: float) -> dict[int, list[int]]:
    """Image id -> category ids of its detections scoring at least ``threshold``."""
    out: dict[int, list[int]] = {}
    for r in results:
        if float(r["score"]) >= threshold:
            out.setdefault(int(r["image_id"]), []).append(int(r["category_id"]))
    return out


def _per_class(truth: ImageTruth, hits: Mapping[int, list[int]],
               names: Mapping[int, str]) -> dict[str, dict[str, float]]:
    """Per class: sensitivity over images holding it, specificity over images without it."""
    out: dict[str, dict[str, float]] = {}
    for cat_id, name in sorted(names.items()):
        pos = [i for i, c in truth.classes.items() if cat_id in c]
        neg = [i for i, c in truth.classes.items() if cat_id not in c and cat_id not in truth.crowd[i]]
        found_pos = sum(1 for i in pos if cat_id in hits.get(i, ()))
        clean_neg = sum(1 for i in neg if cat_id not in hits.get(i, ()))
        out[name] = {"images": len(pos), "sensitivity": _ratio(found_pos, len(pos)),
                     "specificity": _ratio(clean_neg, len(neg))}
    return out


def image_level_metrics(truth: ImageTruth, results: Sequence[Mapping[str, Any]],
                        names: Mapping[int, str], threshold: float) -> dict[str, Any]:
    """Specificity and false positives per image on negatives, sensitivity on positives.

    ``results`` are COCO result dicts; ``names`` maps category id -> name.
    Returns ``{"negatives": {"images", "specificity", "false_positives_per_image"},
    "positives": {"images", "sensitivity"}, "per_class": {name: {"images",
    "sensitivity", "specificity"}}}``.
    """
    hits = _hits(results, threshold)
    negatives, positives = truth.negatives, truth.positives
    flagged = sum(1 for i in negatives if hits.get(i))
    false_positives = sum(len(hits.get(i, ())) for i in negatives)
    found = sum(1 for i in positives if hits.get(i))
    return {
        "negatives": {"images": len(negatives),
                      "specificity": _ratio(len(negatives) - flagged, len(negatives)),
                      "false_positives_per_image": _ratio(false_positives, len(negatives))},
        "positives": {"images": len(positives), "sensitivity": _ratio(found, len(positives))},
        "per_class": _per_class(truth, hits, names),
    }


def apply_joint_rule(results: Sequence[Mapping[str, Any]], primary: int, required: int,
                     threshold: float) -> tuple[list[Mapping[str, Any]], int]:
    """Drop ``primary``-class detections in images with no ``required``-class one >= threshold.

    Returns the kept results (same dicts, same order) and the number dropped.
    """
    trusted = {int(r["image_id"]) for r in results
               if int(r["category_id"]) == required and float(r["score"]) >= threshold}
    kept = [r for r in results
            if int(r["category_id"]) != primary or int(r["image_id"]) in trusted]
    return kept, len(results) - len(kept)
