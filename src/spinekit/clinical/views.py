"""Per-image measurements of ``spinekit measure`` for the three views, with their geometry.

Each ``measure_*`` function fills one CSV row (a dict keyed by
:data:`spinekit.clinical.measure.COLUMNS`, whose ``flags`` entry is a list while it is
being filled) and a :class:`Geometry`: the corners, endplates, levels, curves and needle
targets the numbers came from, which :mod:`spinekit.reports.measure_overlay` draws, so a
picture always shows exactly what was measured. The rules themselves live in
:mod:`~spinekit.clinical.vertebrae`, :mod:`~spinekit.clinical.cobb`,
:mod:`~spinekit.clinical.lateral` and :mod:`~spinekit.clinical.needle`; this module only
wires them and turns problems into flags (never exceptions, never made-up numbers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spinekit.clinical.cobb import cobb_angles
from spinekit.clinical.lateral import LEVEL_ORDER, LateralMeasurements, measure_lateral
from spinekit.clinical.needle import FacetResult, measure_ultrasound, target_error
from spinekit.clinical.vertebrae import AP_LEVELS, corners_from_masks, order_and_label
from spinekit.masks import CropMask

INVERTED_AREA_RATIO = 0.67
"""AP from masks: an image whose bottom third of vertebrae has under this share of the
top third's mean area is taken as upside down (vertebral bodies grow caudally: on all 481
AASCE expert outlines the bottom/top ratio is 0.85 at the least, 2.2 in the median)."""

MIN_VERTEBRAE_FOR_SIZE_CUE = 6
"""Fewest vertebrae for the body-size orientation cue."""


@dataclass
class Instances:
    """The instances of one image: ``masks`` (crops), ``scores`` (1.0 for expert ones) and
    ``levels`` (expert level attributes, None where unknown), all the same length."""

    masks: list[CropMask] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    levels: list[str | None] = field(default_factory=list)


@dataclass
class Geometry:
    """What was measured on one image, in image pixels ``(x, y)``.

    ``masks``: the instance masks used (outlines to draw). ``levels`` and ``corners``
    ``(V, 4, 2)``: the vertebrae measured, in spine order (AP: TL, TR, BL, BR; lateral:
    upper-anterior, upper-posterior, lower-anterior, lower-posterior, so rows 0-1 are the
    upper endplate and 2-3 the lower one either way). ``cobb``: per Cobb column
    ``(angle_deg, upper, lower)`` with indices into ``corners``. ``lateral``: the lateral
    result. ``facets``: facet results with targets (``primary`` is the image's target).
    ``expert_targets``: annotated target points.
    """

    view: str | None = None
    masks: list[CropMask] = field(default_factory=list)
    levels: list[str | None] = field(default_factory=list)
    corners: np.ndarray = field(default_factory=lambda: np.zeros((0, 4, 2)))
    cobb: list[tuple[float, int, int]] = field(default_factory=list)
    lateral: LateralMeasurements | None = None
    facets: list[FacetResult] = field(default_factory=list)
    primary: int | None = None
    expert_targets: list[tuple[float, float]] = field(default_factory=list)


def _level_key(level: str | None) -> int:
    return LEVEL_ORDER.index(level) if level in LEVEL_ORDER else len(LEVEL_ORDER)


def _cobb(row: dict[str, Any], geom: Geometry, corners: np.ndarray, levels: Sequence[str | None],
          height: float) -> None:
    """Cobb columns of ``row`` from corners ``(V, 4, 2)`` in spine order (top first)."""
    flags: list[str] = row["flags"]
    geom.corners, geom.levels = corners, list(levels)
    if len(corners) < 2:
        flags.append(f"{len(corners)} vertebrae: a Cobb angle needs at least 2, not measured")
        return
    steps = np.diff(corners[:, :, 1].mean(axis=1))
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
    geom.cobb = [(float(a), u, lo) for a, (u, lo) in zip(result.angles_deg, result.end_vertebrae,
                                                        strict=True)]

    def name(i: int) -> str:
        return levels[i] or f"#{i}"

    row["cobb_end_vertebrae"] = "; ".join(f"{name(u)}-{name(lo)}" for u, lo in result.end_vertebrae)
    if len(corners) < len(AP_LEVELS):
        flags.append(f"only {len(corners)} of {len(AP_LEVELS)} vertebrae: angles cover those found")


def measure_ap_corners(row: dict[str, Any], geom: Geometry, anns: Sequence[dict[str, Any]],
                       height: float) -> None:
    """AP view from expert AASCE corners (``annotations[].corners``), in level order."""
    items = []
    for a in anns:
        arr = np.asarray(a.get("corners"), dtype=np.float64)
        if arr.shape != (4, 2) or not np.all(np.isfinite(arr)):
            row["flags"].append(f"annotation {a.get('id')}: bad corners ignored")
            continue
        level = (a.get("attributes") or {}).get("level")
        items.append((_level_key(level), None if level is None else str(level), arr))
    items.sort(key=lambda t: t[0])
    levels = [lv for _, lv, _ in items]
    row["levels"] = " ".join(lv for lv in levels if lv)
    row["n_vertebrae"] = len(items)
    corners = np.stack([arr for _, _, arr in items]) if items else np.zeros((0, 4, 2))
    _cobb(row, geom, corners, levels, height)


def _upside_down(masks: Sequence[CropMask]) -> bool:
    """Body-size cue (:data:`INVERTED_AREA_RATIO`) on masks in spine order, top first."""
    if len(masks) < MIN_VERTEBRAE_FOR_SIZE_CUE:
        return False
    areas = np.array([m.area() for m in masks], dtype=np.float64)
    third = len(areas) // 3
    return float(areas[-third:].mean()) < INVERTED_AREA_RATIO * float(areas[:third].mean())


def measure_ap_masks(row: dict[str, Any], geom: Geometry, inst: Instances, min_score: float,
                     height: float) -> None:
    """AP view from masks: order and label, fit corners, Cobb angles."""
    if not inst.masks:
        row["n_vertebrae"] = 0
        row["flags"].append("no vertebrae: not measured")
        return
    spine = order_and_label(inst.masks, inst.scores, view="ap", min_score=min_score)
    row["flags"].extend(spine.flags)
    ordered = [inst.masks[v.index] for v in spine.vertebrae]
    geom.masks = ordered
    levels = [v.level for v in spine.vertebrae]
    if _upside_down(ordered):
        row["n_vertebrae"] = len(ordered)
        row["flags"].append("image looks upside down (vertebral bodies shrink downwards): "
                            "not measured")
        return
    corners = corners_from_masks(ordered, on_error="nan") if ordered else np.zeros((0, 4, 2))
    good = np.all(np.isfinite(corners.reshape(len(corners), -1)), axis=1)
    if not good.all():
        bad = [levels[i] or f"#{i}" for i in np.flatnonzero(~good)]
        row["flags"].append(f"degenerate masks dropped: {', '.join(bad)}")
    kept = [lv for lv, g in zip(levels, good, strict=True) if g]
    row["levels"] = " ".join(lv for lv in kept if lv)
    row["n_vertebrae"] = len(kept)
    _cobb(row, geom, corners[good], kept, height)


def _strip_unit(key: str, unit: str) -> str:
    suffix = f"_{unit}"
    if key.startswith(("body_", "disc_")) and key.endswith(suffix):
        return key[: -len(suffix)]
    return key


def _fill_lateral(row: dict[str, Any], geom: Geometry, by_level: dict[str, CropMask],
                  spacing: tuple[float, float] | None) -> None:
    result = measure_lateral(by_level, pixel_spacing_mm=spacing)
    geom.lateral = result
    geom.levels = list(result.endplates)
    geom.corners = (np.stack([ep.corners for ep in result.endplates.values()])
                    if result.endplates else np.zeros((0, 4, 2)))
    row["flags"].extend(result.flags)
    row["n_vertebrae"] = len(result.levels)
    for key, value in result.to_row().items():
        if key != "flags":
            row[_strip_unit(key, result.unit)] = round(value, 4) if isinstance(value, float) else value
    if not result.levels:
        row["unit"] = None


def measure_lateral_masks(row: dict[str, Any], geom: Geometry, inst: Instances, min_score: float,
                          spacing: tuple[float, float] | None) -> None:
    """Lateral view: masks by level (expert levels when every instance has one, else
    :func:`order_and_label`), then :func:`measure_lateral`."""
    if not inst.masks:
        row["n_vertebrae"] = 0
        row["flags"].append("no vertebrae: not measured")
        return
    by_level: dict[str, CropMask] = {}
    if all(lv is not None for lv in inst.levels):
        for lv, m in zip(inst.levels, inst.masks, strict=True):
            by_level[str(lv)] = _union(by_level[str(lv)], m) if lv in by_level else m
    else:
        spine = order_and_label(inst.masks, inst.scores, view="lateral", min_score=min_score)
        row["flags"].extend(spine.flags)
        unlabelled = sum(1 for v in spine.vertebrae if v.level is None)
        if unlabelled:
            row["flags"].append(f"{unlabelled} vertebrae beyond the lumbar levels ignored")
        by_level = {v.level: inst.masks[v.index] for v in spine.vertebrae if v.level is not None}
    geom.masks = list(by_level.values())
    _fill_lateral(row, geom, by_level, spacing)


def _union(a: CropMask, b: CropMask) -> CropMask:
    """The union of two masks of one image (two parts of one annotated vertebra)."""
    if a.empty or b.empty:
        return b if a.empty else a
    ta, ba, la, ra = a.box()
    tb, bb, lb, rb = b.box()
    r0, c0 = min(ta, tb), min(la, lb)
    out = np.zeros((max(ba, bb) - r0, max(ra, rb) - c0), dtype=bool)
    out[ta - r0 : ba - r0, la - c0 : ra - c0] |= a.crop
    out[tb - r0 : bb - r0, lb - c0 : rb - c0] |= b.crop
    return CropMask(out, r0, c0, a.height, a.width)


def _ventral_above(facets: Sequence[CropMask], ventral: Sequence[CropMask]) -> bool:
    """True when the deepest-lying ventral complex is above every facet joint (the ventral
    complex lies deep to the facets, towards the image bottom, on a probe-up image)."""
    deep = [c for c in (m.centroid() for m in ventral) if c is not None]
    shallow = [c for c in (m.centroid() for m in facets) if c is not None]
    return bool(deep and shallow) and max(c[1] for c in deep) < min(c[1] for c in shallow)


def _mm(value: float, spacing: float | None) -> float | None:
    return None if spacing is None else round(value * spacing, 3)


def measure_ultrasound_image(row: dict[str, Any], geom: Geometry, facets: Instances,
                             ventral: Instances, *, threshold: float,
                             spacing: tuple[float, float] | None,
                             annotated: Sequence[tuple[float, float]]) -> None:
    """Ultrasound view: facet presence, trust, needle target and its error to an annotated
    target point (the nearest one), see :mod:`spinekit.clinical.needle`."""
    geom.expert_targets = list(annotated)
    geom.masks = [m for m, s in zip(facets.masks, facets.scores, strict=True) if s >= threshold]
    result = measure_ultrasound(list(zip(facets.masks, facets.scores, strict=True)),
                                ventral.scores, threshold=threshold)
    row.update(facet_present=result.facet_present, trusted=result.trusted,
               n_facets=len(result.facets))
    row["unit"] = "mm" if spacing is not None else "px"
    row["flags"].extend(result.flags)
    geom.facets, geom.primary = result.facets, result.primary
    if _ventral_above(geom.masks, [m for m, s in zip(ventral.masks, ventral.scores, strict=True)
                                   if s >= threshold]):
        row["flags"].append("image looks upside down (ventral complex above the facet joints): "
                            "no needle target")
        geom.primary = None
        return
    point = result.target
    if point is None:
        return
    row.update(target_x_px=round(point[0], 2), target_y_px=round(point[1], 2),
               target_x_mm=_mm(point[0], None if spacing is None else spacing[1]),
               target_y_mm=_mm(point[1], None if spacing is None else spacing[0]))
    if annotated:
        px, mm, _ = target_error(point, annotated, spacing)
        row["target_error_px"] = round(px, 3)
        row["target_error_mm"] = None if mm is None else round(mm, 3)
