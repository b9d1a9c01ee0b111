"""Lateral (sagittal) lumbar measurements from per-vertebra masks or endplates.

Input: level name (``"T12"``, ``"L1"`` ... ``"L5"``, ``"S1"``) -> mask ``(H, W)`` (bool or
nonzero = body) or :class:`~spinekit.clinical.endplates.Endplates`, all in the pixel
frame of one image ``(x, y)``, y downwards, head up.

Definitions (all angles in degrees, all distances in mm when ``pixel_spacing_mm`` =
``(row, col)`` is given, else in px; ``unit`` says which):

- Geometry is taken in physical space: x is scaled by the column spacing and y by the
  row spacing before any angle or length is computed.
- Endplate tilt ``theta``: the angle of the vector posterior end -> anterior end, measured
  in a frame with X pointing anterior and Y pointing up (cranial); ``theta > 0`` when the
  anterior end is higher than the posterior end.
- ``lordosis_L1_L5_deg`` = ``theta(L1 upper endplate) - theta(L5 lower endplate)``;
  ``lordosis_L1_S1_deg`` = ``theta(L1 upper endplate) - theta(S1 upper endplate)``.
  Positive = lordosis (the column is convex anteriorly), negative = kyphosis.
- ``segmental_deg["L1-L2"]`` = ``theta(L1 lower endplate) - theta(L2 upper endplate)``:
  the disc (intervertebral) angle across the L1-L2 disc, positive when the disc is
  taller anteriorly. Measured for adjacent levels that are both present only.
- ``body_heights[level]``: ``anterior`` = |upper-anterior - lower-anterior corner|,
  ``posterior`` = |upper-posterior - lower-posterior corner|, ``middle`` = distance
  between the midpoints of the upper and lower endplates.
- ``disc_heights["L4-L5"]``: the same three distances between the lower endplate of the
  upper vertebra (L4) and the upper endplate of the lower one (L5).

Anterior side: ``"left"``/``"right"`` as given, or ``"auto"``: the side towards which the
centroids of the lumbar bodies bow away from the L1-L5 (or first-last lumbar) chord, i.e.
the side that makes the lumbar column lordotic (the usual anatomy; lumbar kyphosis is
rare). When the bow is under 1.5 % of the chord length (or fewer than 3 lumbar bodies)
``"left"`` is assumed (the common convention, e.g. the lumbar-MRI set) and flagged.
When ``"auto"`` picks ``"right"``, or an explicit side disagrees with the bow, a flag
says the image may be mirrored (or the lumbar spine kyphotic).

Bad input never raises and never yields a made-up number: a level whose mask is
degenerate is dropped with a flag, a measurement that needs a missing level is ``None``
(absent from the dicts) with a flag, and an image that looks upside down (L1 below L5)
is flagged and not measured. A missing S1 only leaves ``lordosis_L1_S1_deg`` None (not
flagged: most lumbar masks, e.g. the lumbar-MRI set, do not label the sacrum).

Masks are turned into endplates by :func:`column_endplates`, which starts each body's fit
perpendicular to the column direction given by the neighbouring centroids.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

import numpy as np

from spinekit.clinical.endplates import Endplates, fit_endplates
from spinekit.levels import LEVELS
from spinekit.masks import CropMask

logger = logging.getLogger(__name__)

LEVEL_ORDER: tuple[str, ...] = LEVELS
"""Level names in cranio-caudal order (:data:`spinekit.levels.LEVELS`)."""

LUMBAR: tuple[str, ...] = ("L1", "L2", "L3", "L4", "L5")
BOW_THRESHOLD = 0.015
"""Minimum centroid bow, as a fraction of the chord length, for the anterior-side cue."""

HEIGHT_PARTS = ("anterior", "middle", "posterior")


@dataclass
class LateralMeasurements:
    """Lateral lumbar measurements of one image (definitions in the module docstring).

    ``levels``: levels measured, cranio-caudal. ``segmental_deg``: ``"L1-L2"`` -> disc
    angle. ``body_heights``: level -> {anterior, middle, posterior}. ``disc_heights``:
    ``"L4-L5"`` -> {anterior, middle, posterior}. ``unit``: of all heights. ``anterior``:
    the side used. ``flags``: human-readable problems, empty when all went well.
    ``endplates``: level -> the pixel-space :class:`Endplates` measured (anterior end
    first), for drawing; not part of :meth:`to_row`.
    """

    levels: list[str] = field(default_factory=list)
    lordosis_L1_L5_deg: float | None = None
    lordosis_L1_S1_deg: float | None = None
    segmental_deg: dict[str, float] = field(default_factory=dict)
    body_heights: dict[str, dict[str, float]] = field(default_factory=dict)
    disc_heights: dict[str, dict[str, float]] = field(default_factory=dict)
    unit: Literal["mm", "px"] = "px"
    anterior: Literal["left", "right"] = "left"
    flags: list[str] = field(default_factory=list)
    endplates: dict[str, Endplates] = field(default_factory=dict)

    def to_row(self) -> dict[str, float | str | None]:
        """One flat CSV row: fixed columns for L1-S1, ``None`` where not measured."""
        row: dict[str, float | str | None] = {
            "levels": " ".join(self.levels),
            "unit": self.unit,
            "anterior": self.anterior,
            "lordosis_L1_L5_deg": self.lordosis_L1_L5_deg,
            "lordosis_L1_S1_deg": self.lordosis_L1_S1_deg,
        }
        chain = (*LUMBAR, "S1")
        pairs = [f"{a}-{b}" for a, b in pairwise(chain)]
        for pair in pairs:
            row[f"segmental_{pair}_deg"] = self.segmental_deg.get(pair)
        for level in LUMBAR:
            for part in HEIGHT_PARTS:
                row[f"body_{level}_{part}_{self.unit}"] = self.body_heights.get(level, {}).get(part)
        for pair in pairs:
            for part in HEIGHT_PARTS:
                row[f"disc_{pair}_{part}_{self.unit}"] = self.disc_heights.get(pair, {}).get(part)
        row["flags"] = "; ".join(self.flags)
        return row


def _tilt(segment: np.ndarray, anterior: str) -> float:
    """Tilt (deg) of a physical-space endplate ``(2, 2)`` rows (anterior, posterior)."""
    d = segment[0] - segment[1]
    forward = -d[0] if anterior == "left" else d[0]
    return float(np.degrees(np.arctan2(-d[1], forward)))


def _angle_diff(a: float, b: float) -> float:
    return float((a - b + 180.0) % 360.0 - 180.0)


def _heights(top: np.ndarray, bottom: np.ndarray) -> dict[str, float]:
    """Distances between two physical-space segments ``(2, 2)`` (anterior, posterior)."""
    mid = float(np.linalg.norm(top.mean(axis=0) - bottom.mean(axis=0)))
    return {
        "anterior": float(np.linalg.norm(top[0] - bottom[0])),
        "middle": mid,
        "posterior": float(np.linalg.norm(top[1] - bottom[1])),
    }


def _centroid(item: np.ndarray | CropMask | Endplates) -> np.ndarray | None:
    """``(2,)`` (x, y) centroid of a mask or endplates, None when empty / not 2-D."""
    if isinstance(item, Endplates):
        return item.corners.mean(axis=0)
    if not isinstance(item, CropMask):
        arr = np.asarray(item)
        if arr.ndim != 2:
            return None
        item = CropMask.from_full(arr)
    c = item.centroid()
    return None if c is None else np.array(c)


def _column_directions(cents: Mapping[str, np.ndarray]) -> dict[str, np.ndarray | None]:
    """Per level the ``(dx, dy)`` spine direction from the neighbouring centroids."""
    levels = sorted(cents, key=LEVEL_ORDER.index)
    out: dict[str, np.ndarray | None] = {}
    for k, lv in enumerate(levels):
        prev = cents[levels[k - 1]] if k > 0 else cents[lv]
        nxt = cents[levels[k + 1]] if k + 1 < len(levels) else cents[lv]
        d = nxt - prev
        out[lv] = d if float(np.linalg.norm(d)) > 1e-9 else None
    return out


def column_endplates(
    vertebrae: Mapping[str, np.ndarray | CropMask | Endplates], flags: list[str],
    pixel_spacing_mm: tuple[float, float] | None = None,
) -> tuple[dict[str, Endplates], set[str]]:
    """Endplates by level as :func:`measure_lateral` sees them, masks oriented with
    image-left = anterior and started perpendicular to the column direction from the
    neighbouring centroids (all masks fitted together, in square physical pixels when
    ``pixel_spacing_mm`` is given); also the set of levels that came from masks. Problems
    are appended to ``flags`` (never raises for bad masks)."""
    cents: dict[str, np.ndarray] = {}
    crops: dict[str, CropMask | Endplates] = {}
    for name, item in vertebrae.items():
        if name not in LEVEL_ORDER:
            flags.append(f"unknown level name {name!r} ignored")
            continue
        if not isinstance(item, Endplates | CropMask):
            arr = np.asarray(item)
            if arr.ndim != 2:
                flags.append(f"mask of {name} degenerate (empty or not 2-D): {name} not measured")
                continue
            item = CropMask.from_full(arr)
        c = _centroid(item)
        if c is None or not np.all(np.isfinite(c)):
            flags.append(f"mask of {name} degenerate (empty or not 2-D): {name} not measured")
            continue
        cents[name] = c
        crops[name] = item
    directions = _column_directions(cents)
    found: dict[str, Endplates] = {}
    for name, item in crops.items():
        if isinstance(item, Endplates) and not np.all(np.isfinite(item.corners)):
            flags.append(f"endplates of {name} not finite: {name} not measured")
        elif isinstance(item, Endplates):
            found[name] = item
    names = [n for n, item in crops.items() if isinstance(item, CropMask)]
    masks = [item for item in crops.values() if isinstance(item, CropMask)]
    fitted = fit_endplates(masks, anterior="left", column_directions=[directions[n] for n in names],
                           pixel_spacing=pixel_spacing_mm)
    for name, result in zip(names, fitted, strict=True):
        if isinstance(result, str):
            flags.append(f"mask of {name} degenerate ({result}): {name} not measured")
        else:
            found[name] = result
    return found, set(names) & set(found)


def _mirror(ep: Endplates) -> Endplates:
    """Swap anterior and posterior ends (mask endplates were computed anterior = left)."""
    c = ep.corners[[1, 0, 3, 2]].copy()
    return Endplates(upper=c[:2], lower=c[2:], corners=c, method=ep.method, quality=ep.quality)


def _bow_side(found: Mapping[str, Endplates]) -> tuple[str | None, float]:
    """Image side ('left'/'right') to which the lumbar centroids bow from the chord, and
    the bow as a fraction of the chord length (None when under 3 lumbar bodies)."""
    lumbar = [lv for lv in LUMBAR if lv in found]
    if len(lumbar) < 3:
        return None, 0.0
    cents = np.array([found[lv].corners.mean(axis=0) for lv in lumbar])
    chord = cents[-1] - cents[0]
    length = float(np.linalg.norm(chord))
    if length < 1e-9:
        return None, 0.0
    rel = cents[1:-1] - cents[0]
    # signed x-offset of the middle centroids from the chord at the same height
    cross = (chord[0] * rel[:, 1] - chord[1] * rel[:, 0]) / length
    bow = float(cross[np.argmax(np.abs(cross))])
    # with the chord pointing down (L1 -> L5), cross > 0 means left of the chord
    side = "left" if bow > 0 else "right"
    if chord[1] < 0:
        side = "right" if side == "left" else "left"
    return side, abs(bow) / length


def _choose_anterior(
    found: Mapping[str, Endplates], anterior: str, flags: list[str]
) -> Literal["left", "right"]:
    side, bow = _bow_side(found)
    strong = side is not None and bow >= BOW_THRESHOLD
    if anterior == "auto":
        if not strong:
            flags.append("anterior side not determinable from the column shape: assumed left")
            return "left"
        if side == "right":
            flags.append("image looks mirrored: anterior side of the column is on the right "
                         "(measured so; if the image is upside down instead, levels are reversed)")
            return "right"
        return "left"
    if strong and side != anterior:
        flags.append(
            f"lumbar column bows posteriorly with anterior={anterior}: "
            "image mirrored or lumbar spine kyphotic"
        )
    return "left" if anterior == "left" else "right"


def _physical(ep: Endplates, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return ep.upper * scale, ep.lower * scale


def _measure_levels(
    result: LateralMeasurements, found: Mapping[str, Endplates], scale: np.ndarray
) -> None:
    levels = result.levels
    phys = {lv: _physical(found[lv], scale) for lv in levels}
    for lv in levels:
        result.body_heights[lv] = _heights(*phys[lv])
    chain = [lv for lv in LEVEL_ORDER if lv != "L6" or lv in levels]  # L5-S1 adjacent without L6
    idx = {lv: chain.index(lv) for lv in levels}
    for upper, lower in pairwise(levels):
        if idx[lower] != idx[upper] + 1:
            continue
        pair = f"{upper}-{lower}"
        result.segmental_deg[pair] = _angle_diff(
            _tilt(phys[upper][1], result.anterior), _tilt(phys[lower][0], result.anterior)
        )
        result.disc_heights[pair] = _heights(phys[upper][1], phys[lower][0])
    if "L1" in phys and "L5" in phys:
        result.lordosis_L1_L5_deg = _angle_diff(
            _tilt(phys["L1"][0], result.anterior), _tilt(phys["L5"][1], result.anterior)
        )
    if "L1" in phys and "S1" in phys:
        result.lordosis_L1_S1_deg = _angle_diff(
            _tilt(phys["L1"][0], result.anterior), _tilt(phys["S1"][0], result.anterior)
        )


def _flag_missing(result: LateralMeasurements, requested: set[str]) -> None:
    present = set(result.levels)
    lumbar = [lv for lv in LUMBAR if lv in present]
    if len(lumbar) < 2:
        result.flags.append(f"fewer than 2 lumbar vertebrae ({len(lumbar)}): lumbar angles not measured")
    chain = (*LUMBAR, "S1")
    for k, lv in enumerate(LUMBAR):
        if lv in present:
            continue
        pairs = ([f"{chain[k - 1]}-{lv}"] if k > 0 else []) + [f"{lv}-{chain[k + 1]}"]
        why = "degenerate" if lv in requested else "missing"
        result.flags.append(f"{why} {lv}: segmental {', '.join(pairs)} not measured")
    for name in ("L1", "L5"):
        if name not in present:
            result.flags.append(f"L1-L5 lordosis not measured: no {name}")


def measure_lateral(
    vertebrae: Mapping[str, np.ndarray | CropMask | Endplates],
    *,
    pixel_spacing_mm: tuple[float, float] | None,
    anterior: Literal["left", "right", "auto"] = "auto",
) -> LateralMeasurements:
    """Lateral lumbar measurements of one image; never raises on bad geometry (flags).

    ``vertebrae``: level name -> mask ``(H, W)``, :class:`CropMask` or :class:`Endplates`
    (Endplates must
    already have their anterior/posterior ends right; masks are oriented by
    ``anterior``). ``pixel_spacing_mm``: ``(row, col)`` spacing, or None for px.
    Raises ValueError only for an invalid ``anterior`` or non-positive spacing.
    """
    if anterior not in ("left", "right", "auto"):
        raise ValueError(f"anterior must be 'left', 'right' or 'auto', got {anterior!r}")
    if pixel_spacing_mm is not None and not (
        len(pixel_spacing_mm) == 2 and all(np.isfinite(s) and s > 0 for s in pixel_spacing_mm)
    ):
        raise ValueError(f"pixel_spacing_mm must be two positive numbers, got {pixel_spacing_mm}")
    result = LateralMeasurements(unit="px" if pixel_spacing_mm is None else "mm")
    found, masks = column_endplates(vertebrae, result.flags, pixel_spacing_mm)
    result.anterior = _choose_anterior(found, anterior, result.flags)
    if result.anterior == "right":
        found = {lv: _mirror(ep) if lv in masks else ep for lv, ep in found.items()}
    levels = sorted(found, key=LEVEL_ORDER.index)
    cents_y = {lv: float(found[lv].corners[:, 1].mean()) for lv in levels}
    ys = [cents_y[lv] for lv in levels]
    if len(ys) >= 2 and ys[0] > ys[-1]:
        result.flags.append(
            f"image looks inverted: {levels[0]} is below {levels[-1]} (head down): not measured"
        )
        return result
    result.levels = levels
    result.endplates = {lv: found[lv] for lv in levels}
    scale = np.array([1.0, 1.0]) if pixel_spacing_mm is None else np.array(
        [pixel_spacing_mm[1], pixel_spacing_mm[0]], dtype=np.float64
    )
    _measure_levels(result, found, scale)
    _flag_missing(result, {lv for lv in vertebrae if lv in LUMBAR})
    return result
