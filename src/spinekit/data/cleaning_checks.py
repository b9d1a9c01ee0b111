"""Building blocks of ``spinekit clean``: findings, the check table, polygon geometry tests.

The orchestration (which check runs on what, exclusions, the report) lives in
:mod:`spinekit.data.cleaning`; its module docstring documents every check id.
Polygons here are ``(N, 2)`` float64 arrays of ``(x, y)`` pixel coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from spinekit import levels
from spinekit.geometry import (
    box_iou_matrix,
    convex_hull,
    mask_iou,
    min_rect_aspect,
    polygon_area,
    ring_centroid,
)

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class CheckInfo:
    """One check: its severity, whether it excludes by default, and what it hits."""

    severity: Severity
    default_exclude: bool
    meaning: str


CHECKS: dict[str, CheckInfo] = {
    "damaged_file": CheckInfo("error", True, "image missing, undecodable or truncated; "
                              "annotation file skipped at ingest"),
    "naming": CheckInfo("warning", False, "file name breaks the naming rule, differs from "
                        "another only by case, or is repeated"),
    "duplicate_image": CheckInfo("warning", False, "same pixels, or a near copy (re-encoded, "
                                 "resized, brightened), as another image: split keeps them together"),
    "incorrect_mark": CheckInfo("error", True, "unknown category, no usable polygon (< 3 distinct "
                                "points), invalid, repeated or out-of-order vertebra level"),
    "wrong_shape_kind": CheckInfo("warning", False, "instance drawn with another shape kind "
                                  "than its class (polyline, circle, ...)"),
    "foreign_annotation": CheckInfo("error", True, "annotation does not belong to its image: "
                                    "size mismatch, mostly outside, unknown image id"),
    "negative": CheckInfo("info", False, "image without instances: goes to the negative set"),
    "emptied_image": CheckInfo("error", True, "every instance of the image is excluded: the "
                               "image is excluded (always), not used as a negative"),
    "self_intersection": CheckInfo("error", True, "polygon edges cross or touch"),
    "zero_area": CheckInfo("error", True, "polygon area below min_area_px"),
    "outside_image": CheckInfo("warning", False, "vertex more than 1 px outside the image "
                               "(instance mostly inside)"),
    "duplicate": CheckInfo("error", True, "same class, IoU >= duplicate_iou with an earlier "
                           "instance of the image"),
    "outlier_size": CheckInfo("warning", False, "relative area far from its class, or from its "
                              "nearest neighbours in the image"),
    "outlier_shape": CheckInfo("warning", False, "aspect ratio or solidity far from its class"),
    "outlier_position": CheckInfo("warning", False, "position far from its class, from its "
                                  "level's place, or from every neighbour"),
}
"""Every check id, in report order."""

OPEN_SHAPE_KINDS = frozenset({"polyline", "line", "linestrip", "point", "points"})


@dataclass(frozen=True)
class Finding:
    """One problem: which check, where (file, image, instance) and why (one line)."""

    check: str
    file: str
    reason: str
    image_id: int | None = None
    annotation_id: int | None = None
    category: str | None = None
    excluded: bool = False

    @property
    def severity(self) -> Severity:
        """Severity of the check (see :data:`CHECKS`)."""
        return CHECKS[self.check].severity

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the report's finding keys (plus ``excluded``)."""
        keys = ("file", "image_id", "annotation_id", "category", "reason", "excluded")
        return {"check": self.check, "severity": self.severity,
                **{key: getattr(self, key) for key in keys}}


def level_name(value: object) -> str | None:
    """Canonical level (``L4``, disc ``L4-L5``) of an attribute value, None if invalid."""
    text = str(value).strip()
    if levels.is_level(text):
        return text
    for sep in ("-", "/"):
        parts = [p.strip() for p in text.split(sep)]
        if len(parts) == 2 and all(levels.is_level(p) for p in parts):
            return f"{parts[0]}-{parts[1]}"
    return None


def parse_rings(segmentation: Any) -> tuple[list[np.ndarray], str | None]:
    """COCO polygon segmentation -> rings ``(N, 2)`` float64, or a reason it is unusable.

    Consecutive repeated vertices and a closing repeat are dropped. A ring with
    fewer than 3 distinct points makes the whole segmentation unusable.
    """
    if not isinstance(segmentation, list) or not segmentation:
        return [], "no polygon segmentation"
    rings: list[np.ndarray] = []
    for k, flat in enumerate(segmentation):
        if not isinstance(flat, list) or len(flat) % 2:
            return [], f"polygon {k} is not an even-length list of coordinates"
        try:
            pts = np.asarray(flat, dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError):
            return [], f"polygon {k} has non-numeric coordinates"
        if not np.all(np.isfinite(pts)):
            return [], f"polygon {k} has non-finite coordinates"
        ring = distinct_ring(pts)
        distinct = len(np.unique(ring, axis=0))
        if distinct < 3:
            return [], f"polygon {k} has {distinct} distinct points (< 3)"
        rings.append(ring)
    return rings, None


def distinct_ring(points: np.ndarray) -> np.ndarray:
    """Drop consecutive repeated vertices and a closing repeat: ``(N, 2)`` -> ``(M, 2)``."""
    if len(points) < 2:
        return points
    keep = np.ones(len(points), dtype=bool)
    keep[1:] = np.any(np.abs(np.diff(points, axis=0)) > 1e-9, axis=1)
    ring = points[keep]
    while len(ring) > 1 and np.all(np.abs(ring[0] - ring[-1]) <= 1e-9):
        ring = ring[:-1]
    return ring


@dataclass
class Instance:
    """One annotation with a parsable polygon and its shape features.

    ``box`` is ``(x0, y0, x1, y1)``; ``size`` the image ``(width, height)`` or
    None; ``usable`` is False when an error finding already hit the instance
    (it then only takes part in the level check).
    """

    ann_id: int
    image_id: int
    category_id: int
    category: str
    level: str | None
    file: str
    rings: list[np.ndarray]
    size: tuple[int, int] | None
    usable: bool
    area: float = 0.0
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    centroid: tuple[float, float] = (0.0, 0.0)
    aspect: float = float("nan")
    solidity: float = float("nan")

    def finding(self, check: str, reason: str) -> Finding:
        """A finding of ``check`` on this instance."""
        return Finding(check, self.file, reason, image_id=self.image_id,
                       annotation_id=self.ann_id, category=self.category)


def measure(inst: Instance) -> Instance:
    """Fill ``area``, ``box``, ``centroid``, ``aspect`` and ``solidity`` of ``inst`` in place."""
    pts = np.concatenate(inst.rings, axis=0)
    inst.area = float(sum(polygon_area(r) for r in inst.rings))
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    inst.box = (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
    inst.centroid = ring_centroid(inst.rings)
    hull = convex_hull(pts)
    hull_area = polygon_area(hull)
    inst.aspect = min_rect_aspect(hull)
    inst.solidity = inst.area / hull_area if hull_area > 0 else float("nan")
    return inst


def level_findings(instances: list[Instance]) -> list[Finding]:
    """``incorrect_mark`` for every instance whose (class, level) repeats in its image."""
    groups: dict[tuple[int, int, str], list[Instance]] = {}
    for inst in instances:
        if inst.level is not None:
            groups.setdefault((inst.image_id, inst.category_id, inst.level), []).append(inst)
    out: list[Finding] = []
    for (_, _, level), members in groups.items():
        if len(members) > 1:
            ids = ", ".join(str(m.ann_id) for m in members)
            out.extend(m.finding("incorrect_mark", f"level {level} appears {len(members)} "
                                 f"times in this image (annotations {ids})") for m in members)
    return out


def duplicate_findings(instances: list[Instance], threshold: float) -> list[Finding]:
    """``duplicate`` for each usable instance overlapping an earlier one of its image and class.

    Candidates need bounding-box IoU >= ``threshold / 2``; mask IoU decides.
    """
    groups: dict[tuple[int, int], list[Instance]] = {}
    for inst in instances:
        if inst.usable:
            groups.setdefault((inst.image_id, inst.category_id), []).append(inst)
    out = []
    for members in groups.values():
        if len(members) < 2:
            continue
        ious = box_iou_matrix(np.array([m.box for m in members], dtype=np.float64))
        for j in range(1, len(members)):
            for i in np.flatnonzero(ious[j, :j] >= threshold / 2):
                iou = mask_iou(members[int(i)].rings, members[j].rings)
                if iou >= threshold:
                    out.append(members[j].finding("duplicate", f"mask IoU {iou:.2f} with "
                                                  f"annotation {members[int(i)].ann_id}"))
                    break
    return out


MIN_CLASS_INSTANCES = 8
"""Class-wide outlier statistics need at least this many instances."""
LEVEL_ORDER_LIMIT = 3.0
"""An instance further than this many levels from its level's place is an incorrect mark."""


@dataclass(frozen=True)
class _Feature:
    check: str
    name: str
    floor: float  # lower bound of the MAD, in the feature's units
    side: int  # 0: both tails, -1: low tail only, 1: high tail only
    label: str
    log: bool  # shown as exp(value)
    per_class: bool  # pooled over the class, not per (class, level)


_FEATURES = (
    _Feature("outlier_size", "area_image", 0.05, 0, "area / image area", True, False),
    _Feature("outlier_size", "area_spine", 0.1, 0, "area / its image's median", True, False),
    _Feature("outlier_size", "area_next", 0.1, 0, "area / the closer-sized of its 2 nearest "
             "neighbours'", True, True),
    _Feature("outlier_shape", "aspect", 0.05, 0, "aspect ratio", True, False),
    _Feature("outlier_shape", "aspect_spine", 0.1, 0, "aspect ratio / its image's median",
             True, False),
    _Feature("outlier_shape", "solidity", 0.02, -1, "solidity", False, False),
    _Feature("outlier_position", "x_image", 0.01, 0, "centroid x / width", False, False),
    _Feature("outlier_position", "y_image", 0.01, 0, "centroid y / height", False, False),
    _Feature("outlier_position", "level_spine", 0.15, 0, "offset from its level's place along "
             "the spine (levels)", False, False),
    _Feature("outlier_position", "isolation", 0.05, 1, "distance to nearest neighbour / size",
             True, True),
)


def _neighbour_features(table: dict[str, np.ndarray], idx: np.ndarray, cen: np.ndarray,
                        levelled: np.ndarray) -> None:
    """Fill the in-image features of one image's same-class instances ``idx`` (>= 3).

    ``area_next`` compares with the closer-sized of the 2 nearest instances (so
    the neighbours of an odd one are not flagged too), ``isolation`` measures
    the distance to the nearest one. For
    instances with a level, ``area_spine``/``aspect_spine`` compare with the
    image's median and ``level_spine`` is the residual, in levels, of a
    Theil-Sen line of position (along x or y, whichever spreads more) on level
    index, so one misplaced instance does not shift the others' references.
    """
    log_area = table["log_area"][idx]
    dist = np.linalg.norm(cen[idx, None, :] - cen[None, idx, :], axis=2)
    np.fill_diagonal(dist, np.inf)
    nearest = np.argsort(dist, axis=1)[:, :2]
    diffs = log_area[:, None] - log_area[nearest]  # (m, 2): vs each of the 2 nearest
    closest = np.argmin(np.abs(diffs), axis=1)
    table["area_next"][idx] = diffs[np.arange(len(idx)), closest]
    typical = float(np.exp(np.median(log_area) / 2))  # sqrt of the median area
    table["isolation"][idx] = np.log(np.maximum(dist.min(axis=1), 1e-6) / typical)
    lev = idx[levelled[idx]]
    if len(lev) < 3:
        return
    for name in ("area", "aspect"):
        source = table["log_area" if name == "area" else "aspect"]
        table[f"{name}_spine"][lev] = source[lev] - float(np.median(source[lev]))
    axis = int(np.argmax(np.ptp(cen[lev], axis=0)))
    order = table["level_index"][lev]
    pairs = np.triu_indices(len(lev), 1)
    step = order[pairs[1]] - order[pairs[0]]
    if np.any(step != 0):  # Theil-Sen line: position along the axis ~ level index
        rise = cen[lev[pairs[1]], axis] - cen[lev[pairs[0]], axis]
        slope = float(np.median(rise[step != 0] / step[step != 0]))
        if slope != 0:
            resid = cen[lev, axis] - slope * order
            table["level_spine"][lev] = (resid - float(np.median(resid))) / abs(slope)


def level_index(level: str) -> float:
    """Position of a level name (``T12``, disc ``L4-L5``) from the skull down."""
    return float(np.mean([levels.level_index(part) for part in level.split("-")]))


def _feature_table(instances: list[Instance]) -> dict[str, np.ndarray]:
    """Feature name -> ``(N,)`` float64 (NaN where undefined) of the instances.

    Instances with a level and at least 2 same-class, levelled companions in
    their image are measured against those (``*_spine``), which is independent
    of the field of view; the others against the image frame and their class.
    """
    n = len(instances)
    area = np.array([i.area for i in instances], dtype=np.float64)
    cen = np.array([i.centroid for i in instances], dtype=np.float64).reshape(-1, 2)
    size = np.array([i.size or (np.nan, np.nan) for i in instances],
                    dtype=np.float64).reshape(-1, 2)
    table = {name: np.full(n, np.nan) for name in (f.name for f in _FEATURES)}
    table["log_area"] = np.log(area)
    table["aspect"] = np.log(np.array([i.aspect for i in instances], dtype=np.float64))
    table["solidity"] = np.array([i.solidity for i in instances], dtype=np.float64)
    table["level_index"] = np.array([np.nan if i.level is None else level_index(i.level)
                                     for i in instances], dtype=np.float64)
    groups: dict[tuple[int, int], list[int]] = {}
    for k, inst in enumerate(instances):
        groups.setdefault((inst.image_id, inst.category_id), []).append(k)
    levelled = np.array([i.level is not None for i in instances], dtype=bool)
    for members in groups.values():
        if len(members) >= 3:
            _neighbour_features(table, np.array(members), cen, levelled)
    frame = np.isnan(table["area_spine"])
    table["area_image"][frame] = table["log_area"][frame] - np.log(size[frame].prod(axis=1))
    table["x_image"][frame] = cen[frame, 0] / size[frame, 0]
    table["y_image"][frame] = cen[frame, 1] / size[frame, 1]
    table["aspect"][~frame] = np.nan
    return table


def _group_z(values: np.ndarray, groups: dict[Any, list[int]], assign: list[Any],
             floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Robust z of each value within its assigned group: ``(z, median, group count)``."""
    stats: dict[Any, tuple[float, float, int]] = {}
    for key, members in groups.items():
        vals = values[members]
        vals = vals[np.isfinite(vals)]
        if len(vals) >= MIN_CLASS_INSTANCES:
            med = float(np.median(vals))
            stats[key] = (med, max(float(np.median(np.abs(vals - med))), floor), len(vals))
    z, centre, count = (np.full(len(values), np.nan) for _ in range(3))
    for k, key in enumerate(assign):
        if key in stats and np.isfinite(values[k]):
            centre[k], scale, count[k] = stats[key]
            z[k] = 0.6745 * (values[k] - centre[k]) / scale
    return z, centre, count


def outlier_findings(instances: list[Instance], z_max: float) -> list[Finding]:
    """``outlier_*`` warnings over the usable instances (the most extreme feature per check).

    Also ``incorrect_mark`` for a level more than :data:`LEVEL_ORDER_LIMIT`
    levels away from its place along the spine (e.g. L5 drawn at the top).
    """
    insts = [i for i in instances if i.usable]
    with np.errstate(divide="ignore", invalid="ignore"):
        table = _feature_table(insts)
    misplaced = np.abs(np.nan_to_num(table["level_spine"])) > LEVEL_ORDER_LIMIT
    marks = [insts[k].finding("incorrect_mark", f"level {insts[k].level} lies "
                              f"{abs(table['level_spine'][k]):.1f} levels away from its place "
                              "in the image's level order") for k in np.flatnonzero(misplaced)]
    if marks:  # measure the others without the misplaced ones
        insts = [inst for k, inst in enumerate(insts) if not misplaced[k]]
        with np.errstate(divide="ignore", invalid="ignore"):
            table = _feature_table(insts)
    groups: dict[Any, list[int]] = {}
    for k, inst in enumerate(insts):
        groups.setdefault((inst.category_id, inst.level), []).append(k)
        if inst.level is not None:
            groups.setdefault((inst.category_id, None), []).append(k)
    by_class = [(i.category_id, None) for i in insts]
    by_level = [(i.category_id, i.level) if len(groups[(i.category_id, i.level)])
                >= MIN_CLASS_INSTANCES else (i.category_id, None) for i in insts]
    worst: dict[tuple[int, str], tuple[float, str]] = {}
    for feat in _FEATURES:
        assign = by_class if feat.per_class else by_level
        z, med, count = _group_z(table[feat.name], groups, assign, feat.floor)
        signed = z if feat.side == 0 else np.clip(feat.side * z, 0, None)
        for k in (int(j) for j in np.flatnonzero(np.abs(np.nan_to_num(signed)) > z_max)):
            score = float(abs(z[k]))
            if score <= worst.get((k, feat.check), (0.0, ""))[0]:
                continue
            show = np.exp if feat.log else float
            level = assign[k][1]
            group = f"{int(count[k])} {insts[k].category!r}{f' {level}' if level else ''}"
            worst[(k, feat.check)] = (score, (
                f"{feat.label} {show(table[feat.name][k]):.3g} vs median "
                f"{show(med[k]):.3g} of {group} instances (robust z {z[k]:+.1f}, "
                f"limit {z_max:g})"))
    return marks + [insts[k].finding(check, reason) for (k, check), (_, reason)
                    in sorted(worst.items(), key=lambda item: (insts[item[0][0]].ann_id, item[0][1]))]
