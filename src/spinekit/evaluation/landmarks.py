"""Landmark (vertebra corner) metrics of COCO keypoint results against expert corners.

Results carry ``keypoints`` ``[x, y, v] * 4`` (TL, TR, BL, BR, original pixels) and
optionally ``level``; expert annotations carry ``corners`` ``(4, 2)`` and
``attributes.level`` (the AASCE ingest). Per image, each expert vertebra is matched to
the prediction of the same level when both have levels, else to the unmatched
prediction with the nearest centre (greedy, closest pairs first). A matched vertebra is
*detected* when the predicted centre lies within half the expert vertebra's height of
the expert centre; corner errors are measured on every matched pair.

``metrics.json["landmarks"]``::

    {"images", "vertebrae", "matched",
     "corner_error_px", "corner_error_pct_height",       # mean over matched corners
     "within_px": {"10": share, "20": share, "40": share},
     "detection_rate", "detection_by_level": {"T1": rate, ...},
     "cobb": {"images", "smape_pct", "mae_deg": {"cobb_1", "cobb_2", "cobb_3"}}}  # when the
                                                          # images carry cobb_angles_deg
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spinekit.clinical.cobb import cobb_angles, smape
from spinekit.levels import LEVELS

THRESHOLDS_PX = (10, 20, 40)
"""Corner distance thresholds (pixels) of ``within_px``."""


def result_corners(result: Mapping[str, Any]) -> np.ndarray:
    """``(4, 2)`` float64 corners of a keypoint result (``[x, y, v] * 4``)."""
    return np.asarray(result["keypoints"], dtype=np.float64).reshape(4, 3)[:, :2]


def _level(item: Mapping[str, Any]) -> str | None:
    level = item.get("level", (item.get("attributes") or {}).get("level"))
    return None if level is None else str(level)


def spine_order(items: Sequence[tuple[str | None, np.ndarray]]) -> np.ndarray:
    """``(V, 4, 2)`` corners of ``(level, corners)`` items top-down: by level when all have
    a known one, else by centre height."""
    if items and all(lv in LEVELS for lv, _ in items):
        ordered = sorted(items, key=lambda t: LEVELS.index(str(t[0])))
    else:
        ordered = sorted(items, key=lambda t: float(t[1][:, 1].mean()))
    return np.stack([c for _, c in ordered]) if ordered else np.zeros((0, 4, 2))


def _match(truth: Sequence[tuple[str | None, np.ndarray]],
           preds: Sequence[tuple[str | None, np.ndarray]]) -> list[tuple[int, int]]:
    """(truth index, prediction index) pairs: same level first, then nearest centres."""
    pairs: list[tuple[int, int]] = []
    used_t: set[int] = set()
    used_p: set[int] = set()
    by_level = {lv: j for j, (lv, _) in enumerate(preds) if lv is not None}
    for i, (lv, _) in enumerate(truth):
        if lv is not None and lv in by_level:
            pairs.append((i, by_level[lv]))
            used_t.add(i)
            used_p.add(by_level[lv])
    t_centres = [c.mean(axis=0) for _, c in truth]
    p_centres = [c.mean(axis=0) for _, c in preds]
    candidates = sorted((float(np.linalg.norm(t_centres[i] - p_centres[j])), i, j)
                        for i in range(len(truth)) if i not in used_t
                        for j in range(len(preds)) if j not in used_p)
    for _, i, j in candidates:
        if i not in used_t and j not in used_p:
            pairs.append((i, j))
            used_t.add(i)
            used_p.add(j)
    return pairs


def _height(corners: np.ndarray) -> float:
    """Vertebra height: mean length of the left (TL-BL) and right (TR-BR) sides."""
    left = np.linalg.norm(corners[2] - corners[0])
    right = np.linalg.norm(corners[3] - corners[1])
    return float((left + right) / 2)


@dataclass
class _Tally:
    errors: list[float] = field(default_factory=list)
    relative: list[float] = field(default_factory=list)
    vertebrae: int = 0
    matched: int = 0
    detected: int = 0
    by_level: dict[str, list[int]] = field(default_factory=dict)
    cobb_pred: list[np.ndarray] = field(default_factory=list)
    cobb_true: list[np.ndarray] = field(default_factory=list)

    def add_image(self, truth: Sequence[tuple[str | None, np.ndarray]],
                  preds: Sequence[tuple[str | None, np.ndarray]], height: float) -> None:
        self.vertebrae += len(truth)
        hits = dict(_match(truth, preds))
        for i, (lv, corners) in enumerate(truth):
            tally = self.by_level.setdefault(lv or "?", [0, 0])
            tally[1] += 1
            if i not in hits:
                continue
            pred = preds[hits[i]][1]
            self.matched += 1
            dist = np.linalg.norm(pred - corners, axis=1)
            self.errors.extend(dist.tolist())
            self.relative.extend((100 * dist / height).tolist())
            centre = float(np.linalg.norm(pred.mean(axis=0) - corners.mean(axis=0)))
            if centre <= 0.5 * _height(corners):
                self.detected += 1
                tally[0] += 1

    def add_cobb(self, preds: Sequence[tuple[str | None, np.ndarray]], expert: Any,
                 height: float) -> None:
        if not (isinstance(expert, list) and len(expert) == 3) or len(preds) < 2:
            return
        angles = cobb_angles(spine_order(preds), image_height=height).angles_deg
        self.cobb_pred.append(np.asarray(angles, dtype=np.float64))
        self.cobb_true.append(np.asarray(expert, dtype=np.float64))

    def summary(self, images: int) -> dict[str, Any]:
        err = np.asarray(self.errors, dtype=np.float64)
        out: dict[str, Any] = {
            "images": images, "vertebrae": self.vertebrae, "matched": self.matched,
            "corner_error_px": _mean(err), "corner_error_pct_height": _mean(np.asarray(self.relative)),
            "within_px": {str(t): _mean((err <= t).astype(np.float64)) for t in THRESHOLDS_PX},
            "detection_rate": self.detected / self.vertebrae if self.vertebrae else None,
            "detection_by_level": {lv: hit / total for lv, (hit, total) in _level_sorted(self.by_level)},
        }
        if self.cobb_true:
            pred, true = np.stack(self.cobb_pred), np.stack(self.cobb_true)
            out["cobb"] = {"images": len(true), "smape_pct": smape(pred, true),
                           "mae_deg": {f"cobb_{k + 1}": float(np.abs(pred[:, k] - true[:, k]).mean())
                                       for k in range(3)}}
        return out


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def _level_sorted(by_level: dict[str, list[int]]) -> list[tuple[str, list[int]]]:
    return sorted(by_level.items(), key=lambda kv: LEVELS.index(kv[0]) if kv[0] in LEVELS else len(LEVELS))


def has_keypoints(results: Iterable[Mapping[str, Any]]) -> bool:
    """Whether any result carries landmark ``keypoints``."""
    return any("keypoints" in r for r in results)


def landmark_metrics(images: Sequence[Mapping[str, Any]], annotations: Iterable[Mapping[str, Any]],
                     results: Iterable[Mapping[str, Any]], *, score_threshold: float = 0.0
                     ) -> dict[str, Any]:
    """The ``landmarks`` block (module docstring) of keypoint ``results`` on ``images``.

    ``annotations`` with ``corners`` are the expert vertebrae; results without
    ``keypoints`` or scoring below ``score_threshold`` are ignored.
    """
    wanted = {int(img["id"]): img for img in images}
    truth: dict[int, list[tuple[str | None, np.ndarray]]] = {i: [] for i in wanted}
    for ann in annotations:
        image_id = int(ann["image_id"])
        corners = np.asarray(ann.get("corners", []), dtype=np.float64)
        if image_id in truth and corners.shape == (4, 2):
            truth[image_id].append((_level(ann), corners))
    preds: dict[int, list[tuple[str | None, np.ndarray]]] = {i: [] for i in wanted}
    for res in results:
        image_id = int(res["image_id"])
        if image_id in preds and "keypoints" in res and float(res["score"]) >= score_threshold:
            preds[image_id].append((_level(res), result_corners(res)))
    tally = _Tally()
    for image_id, image in wanted.items():
        height = float(image["height"])
        tally.add_image(truth[image_id], preds[image_id], height)
        tally.add_cobb(preds[image_id], image.get("cobb_angles_deg"), height)
    return tally.summary(len(wanted))
