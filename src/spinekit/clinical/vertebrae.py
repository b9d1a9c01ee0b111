"""Vertebra ordering and level labelling from instances (expert or predicted).

Input: one bool mask ``(H, W)`` per instance (all the same size) or one centroid
``(x, y)`` pixel pair per instance, plus a score per instance. Steps of
:func:`order_and_label`:

1. Drop instances scoring below ``min_score`` (and empty masks).
2. With masks: greedy non-maximum suppression by mask IoU, highest score first; an
   instance overlapping a kept one by more than ``nms_iou`` is a duplicate and dropped.
   (Centroids alone carry no extent, so no suppression is done for them.)
3. Order along the spine's own axis, not by image y: the centroids are expressed in
   their principal-axis frame ``(u, v)``, a polynomial ``v = f(u)`` of degree <= 3 is
   fitted (an S or C scoliotic curve is a graph over the long axis), the curve is
   sampled densely and every centroid gets the arc length of its nearest curve point;
   instances are sorted by that arc length. This works for a spine lying in any
   direction, where sorting by y fails.
4. Orientation (which end is the head): when the end-to-end chord is more vertical than
   horizontal, the end with the smaller y is the top. Otherwise (a lying spine) with
   masks the end with the smaller bodies is the top (vertebral bodies grow caudally),
   with centroids only the image-left end; both cases are flagged.
5. Levels. AP (``view="ap"``, default T1..L5): labelled from the top (AASCE images start
   at T1). Lateral (default L1..L5 + S1): labelled bottom-up; the lowest instance is S1
   when it is the ``sacrum`` index, else the lowest non-sacral level (L5). Instances
   beyond the level list get ``level=None``. A count other than the expected one is
   flagged.

Label confidence: with ``n`` instances kept, ``m`` expected and ``d = |n - m|``, the
label of the instance ``k`` positions away from the anchor (the top for AP, the bottom
for lateral; ``k = 0`` at the anchor) has confidence ``score * ((n - k) / (n + 1)) ** d``:
``score`` when the count matches, otherwise the score times the chance that none of the
``d`` missing or extra vertebrae lies between the anchor and this one, each placed
uniformly in one of the ``n + 1`` gaps.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from spinekit.clinical.endplates import fit_endplates
from spinekit.levels import AASCE_LEVELS
from spinekit.masks import CropMask, as_crop, crop_iou

logger = logging.getLogger(__name__)

AP_LEVELS: tuple[str, ...] = AASCE_LEVELS
"""Default AP levels (the 17 of the AASCE set), top-down."""

LATERAL_LEVELS: tuple[str, ...] = ("L1", "L2", "L3", "L4", "L5", "S1")
"""Default lateral lumbar levels, top-down; S1 is used only with a ``sacrum`` index."""

CURVE_SAMPLES = 2000
"""Points sampled on the fitted spine curve for the nearest-point projection."""


@dataclass(frozen=True)
class Vertebra:
    """One kept instance: ``index`` into the input list, ``level`` (None when beyond the
    level list), ``centroid`` ``(x, y)`` pixels, detection ``score`` and label
    ``confidence`` (module docstring)."""

    index: int
    level: str | None
    centroid: tuple[float, float]
    score: float
    confidence: float


@dataclass
class LabelledSpine:
    """Vertebrae in spine order (top to bottom) and human-readable ``flags``."""

    vertebrae: list[Vertebra]
    flags: list[str] = field(default_factory=list)

    def levels(self) -> list[str | None]:
        """Levels in spine order."""
        return [v.level for v in self.vertebrae]


def _as_instances(
    instances: Sequence[np.ndarray | CropMask] | np.ndarray,
) -> tuple[np.ndarray, list[CropMask] | None]:
    """Centroids ``(N, 2)`` float64 (NaN for empty masks) and the masks as crops (None for
    centroid input)."""
    if len(instances) == 0:
        return np.zeros((0, 2)), []
    first = instances[0]
    if not isinstance(first, CropMask) and np.asarray(first).ndim == 1:
        pts = np.asarray(instances, dtype=np.float64).reshape(-1, 2)
        if not np.all(np.isfinite(pts)):
            raise ValueError("centroids contain NaN or infinite values")
        return pts, None
    masks = [as_crop(m) for m in instances]
    if any(m.shape != masks[0].shape for m in masks):
        raise ValueError("masks must all be 2-D (H, W) arrays of the same shape")
    cents = np.full((len(masks), 2), np.nan)
    for i, m in enumerate(masks):
        c = m.centroid()
        if c is not None:
            cents[i] = c
    return cents, masks


def mask_iou(a: np.ndarray | CropMask, b: np.ndarray | CropMask) -> float:
    """IoU of two non-empty masks (``(H, W)`` bool or :class:`CropMask`), computed on their
    joint bounding box."""
    return crop_iou(as_crop(a), as_crop(b))


def nms_masks(masks: Sequence[np.ndarray | CropMask], scores: Sequence[float],
              candidates: Sequence[int], iou: float, keep_first: int | None = None) -> list[int]:
    """Greedy NMS: indices of ``candidates`` kept, by descending score (``keep_first``,
    e.g. a known sacrum, is taken first and never suppressed)."""
    crops = [as_crop(m) for m in masks]
    order = sorted(candidates, key=lambda i: (i != keep_first, -scores[i], i))
    kept: list[int] = []
    for i in order:
        if all(crop_iou(crops[i], crops[j]) <= iou for j in kept):
            kept.append(i)
    return sorted(kept)


def spine_order(points: np.ndarray) -> np.ndarray:
    """Order ``(N,)`` int64 of centroids ``(N, 2)`` along a smooth curve through them.

    The direction (which end comes first) is arbitrary here; see :func:`order_and_label`.
    """
    pts = np.asarray(points, dtype=np.float64)
    n = len(pts)
    if n <= 2:
        return np.argsort(pts[:, 1], kind="stable") if n else np.zeros(0, dtype=np.int64)
    rel = pts - pts.mean(axis=0)
    axis = np.linalg.svd(rel, full_matrices=False)[2][0]
    normal = np.array([-axis[1], axis[0]])
    u, v = rel @ axis, rel @ normal
    span = float(u.max() - u.min())
    if span <= 0:
        return np.argsort(v, kind="stable")
    curve = np.polynomial.Polynomial.fit(u, v, deg=min(3, n - 1))
    us = np.linspace(u.min() - 0.05 * span, u.max() + 0.05 * span, CURVE_SAMPLES)
    vs = curve(us)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(us), np.diff(vs)))])
    dist = (u[:, None] - us[None, :]) ** 2 + (v[:, None] - vs[None, :]) ** 2
    param = arc[np.argmin(dist, axis=1)]
    return np.lexsort((u, param)).astype(np.int64)


def _orient(order: np.ndarray, points: np.ndarray, areas: np.ndarray | None,
            flags: list[str]) -> np.ndarray:
    """``order`` or its reverse so that the head end comes first (module docstring, 4)."""
    if len(order) < 2:
        return order
    chord = points[order[-1]] - points[order[0]]
    if abs(chord[1]) >= abs(chord[0]):
        return order if chord[1] > 0 else order[::-1]
    if areas is not None and len(order) >= 3:
        third = max(1, len(order) // 3)
        head_first = areas[order[:third]].mean() <= areas[order[-third:]].mean()
        flags.append("spine more horizontal than vertical: head taken at the smaller bodies")
        return order if head_first else order[::-1]
    flags.append("spine more horizontal than vertical: head taken at the image-left end")
    return order if chord[0] > 0 else order[::-1]


def _confidences(scores: np.ndarray, expected: int, from_bottom: bool) -> np.ndarray:
    n = len(scores)
    d = abs(n - expected)
    k = np.arange(n)[::-1] if from_bottom else np.arange(n)
    return scores * ((n - k) / (n + 1)) ** d if d else scores.copy()


def _count_flag(levels: Sequence[str], n: int, anchor: str) -> str | None:
    m = len(levels)
    if n == m:
        return None
    span = f"{levels[0]}-{levels[-1]}"
    if n < m:
        far = "lowest" if anchor == "top" else "highest"
        return f"expected {m} vertebrae ({span}), found {n}: levels of the {far} assumed"
    return f"expected {m} vertebrae ({span}), found {n}: {n - m} beyond the {anchor} unlabelled"


def _assign(n: int, levels: Sequence[str], from_bottom: bool) -> list[str | None]:
    """Levels of ``n`` ordered instances, anchored at the top or the bottom."""
    m = len(levels)
    if not from_bottom:
        return [levels[k] if k < m else None for k in range(n)]
    return [levels[m - n + k] if n - k <= m else None for k in range(n)]


def _lateral_levels(levels: Sequence[str], ordered: list[int], sacrum: int | None,
                    flags: list[str]) -> tuple[list[str], list[int]]:
    """Levels used and the instances they apply to for a lateral view (bottom-up)."""
    has_sacral = bool(levels) and levels[-1].upper().startswith("S")
    if sacrum is None or sacrum not in ordered:
        if sacrum is not None:
            flags.append(f"sacrum index {sacrum} not among the kept instances")
        return (list(levels[:-1]) if has_sacral else list(levels)), ordered
    if not has_sacral:
        raise ValueError(f"sacrum given but the last level {levels[-1]!r} is not sacral")
    pos = ordered.index(sacrum)
    if pos != len(ordered) - 1:
        flags.append(f"{len(ordered) - 1 - pos} instances below the sacrum unlabelled")
    return list(levels), ordered[: pos + 1]


def _label(ordered: list[int], cents: np.ndarray, sc: np.ndarray, *, view: str,
           levels: list[str], sacrum: int | None, flags: list[str]) -> list[Vertebra]:
    """Vertebrae for the ordered instance indices, levels and confidences assigned."""
    if view == "ap":
        used_levels, labelled = levels, ordered
        names = _assign(len(labelled), used_levels, from_bottom=False)
    else:
        used_levels, labelled = _lateral_levels(levels, ordered, sacrum, flags)
        names = _assign(len(labelled), used_levels, from_bottom=True)
        names += [None] * (len(ordered) - len(labelled))
    anchor = "top" if view == "ap" else "bottom"
    count_flag = _count_flag(used_levels, len(labelled), anchor)
    if count_flag:
        flags.append(count_flag)
    conf = np.zeros(len(ordered))
    conf[: len(labelled)] = _confidences(sc[labelled], len(used_levels), view == "lateral")
    out = [
        Vertebra(index=i, level=names[k], centroid=(float(cents[i, 0]), float(cents[i, 1])),
                 score=float(sc[i]), confidence=float(conf[k]) if names[k] else 0.0)
        for k, i in enumerate(ordered)
    ]
    return out


def order_and_label(
    instances: Sequence[np.ndarray | CropMask] | np.ndarray,
    scores: Sequence[float],
    *,
    view: Literal["ap", "lateral"],
    levels: Sequence[str] | None = None,
    nms_iou: float = 0.5,
    min_score: float = 0.5,
    sacrum: int | None = None,
) -> LabelledSpine:
    """Order instances along the spine and assign levels (module docstring).

    ``instances``: N bool masks ``(H, W)`` or :class:`CropMask` crops (all of one image),
    or N centroids ``(x, y)`` (an ``(N, 2)`` array). ``scores``: N detection scores (1.0
    for expert instances). ``levels``: the expected levels top-down (default
    :data:`AP_LEVELS` or :data:`LATERAL_LEVELS`).
    ``sacrum``: input index of an instance known to be S1 (lateral only; kept whatever
    its score). Raises ValueError for inconsistent inputs.
    """
    if view not in ("ap", "lateral"):
        raise ValueError(f"view must be 'ap' or 'lateral', got {view!r}")
    if sacrum is not None and view != "lateral":
        raise ValueError("sacrum is only meaningful for a lateral view")
    lv = list(levels) if levels is not None else list(AP_LEVELS if view == "ap" else LATERAL_LEVELS)
    if not lv:
        raise ValueError("levels must not be empty")
    cents, masks = _as_instances(instances)
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(sc) != len(cents):
        raise ValueError(f"{len(cents)} instances but {len(sc)} scores")
    if sacrum is not None and not 0 <= sacrum < len(cents):
        raise ValueError(f"sacrum index {sacrum} out of range for {len(cents)} instances")
    flags: list[str] = []
    valid = np.all(np.isfinite(cents), axis=1)
    if not valid.all():
        flags.append(f"{int((~valid).sum())} empty masks ignored")
    cand = [i for i in range(len(cents)) if valid[i] and (sc[i] >= min_score or i == sacrum)]
    if masks is not None:
        kept = nms_masks(masks, list(sc), cand, nms_iou, keep_first=sacrum)
        if len(kept) < len(cand):
            flags.append(f"{len(cand) - len(kept)} duplicates suppressed")
        cand = kept
    areas = None if masks is None else np.array([float(m.area()) for m in masks])
    local = spine_order(cents[cand])
    local = _orient(local, cents[cand], None if areas is None else areas[cand], flags)
    ordered = [cand[int(k)] for k in local]
    out = _label(ordered, cents, sc, view=view, levels=lv, sacrum=sacrum, flags=flags)
    return LabelledSpine(vertebrae=out, flags=flags)


def corners_from_masks(
    masks_in_order: Sequence[np.ndarray | CropMask],
    *,
    anterior: Literal["left", "right"] = "left",
    on_error: Literal["raise", "nan"] = "raise",
) -> np.ndarray:
    """Corners ``(V, 4, 2)`` float64 ``(x, y)`` pixels of V masks in spine order.

    Corner order TL, TR, BL, BR (the AASCE order, as :mod:`spinekit.clinical.cobb`
    wants) for ``anterior="left"`` on AP views: :func:`endplates_from_mask` returns
    upper-anterior, upper-posterior, lower-anterior, lower-posterior, i.e. image-left
    upper, image-right upper, image-left lower, image-right lower. Each body's fit starts
    perpendicular to the column direction from its neighbours' centroids; all bodies are
    fitted together (:func:`~spinekit.clinical.endplates.fit_endplates`). A mask whose
    borders cannot be fitted raises ValueError naming its position, or with
    ``on_error="nan"`` gives a NaN row (drop those before :func:`cobb_angles`).
    """
    masks = [as_crop(m) for m in masks_in_order]
    cents = [m.centroid() for m in masks]
    pts = np.array([c if c is not None else (np.nan, np.nan) for c in cents], dtype=np.float64)
    pts = pts.reshape(-1, 2)
    hints: list[np.ndarray | None] = []
    for k in range(len(masks)):
        lo, hi = max(k - 1, 0), min(k + 1, len(masks) - 1)
        direction = pts[hi] - pts[lo]
        ok = hi > lo and np.all(np.isfinite(direction)) and direction.any()
        hints.append(direction if ok else None)
    out = np.full((len(masks), 4, 2), np.nan)
    for k, fitted in enumerate(fit_endplates(masks, anterior=anterior, column_directions=hints)):
        if isinstance(fitted, str):
            if on_error == "raise":
                raise ValueError(f"vertebra at position {k}: {fitted}")
            logger.debug("vertebra at position %d: %s", k, fitted)
        else:
            out[k] = fitted.corners
    return out
