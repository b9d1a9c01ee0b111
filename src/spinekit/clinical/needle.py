"""Facet-joint needle target on transverse lumbar ultrasound, and the image-level decision.

The ultrasound study takes "the target point for the needle insertion from the inflection
point of the facet joint's dorsal contour". In a transverse view the facet joint's bright
outline is the inferior articular process of the vertebra above next to the superior
articular process of the one below; the joint cleft between them is where the outline
turns, and where the needle enters the joint. The rule, on one facet-joint mask
(:func:`needle_target`):

1. Keep the mask's largest 8-connected component.
2. Dorsal contour (towards the probe, the image top): for every image column ``c`` of the
   component, the top edge ``y = r`` of its top-most pixel ``r``, at ``x = c + 0.5``
   (pixel ``(r, c)`` covers ``[c, c+1) x [r, r+1)``, so the mask's true edge lies within
   half a pixel of ``r``). The pixel staircase is removed first: each run of columns with
   the same ``r`` is represented by its midpoint and the contour is the straight line
   through consecutive run midpoints (a digitised straight edge has its run midpoints on
   the edge, so a straight outline becomes straight again).
3. Leave out :data:`END_TRIM` of the columns at each end, where the outline rounds off
   into the joint's lateral and medial ends. Fewer than :data:`MIN_COLUMNS` columns left:
   no target (flag "facet mask too narrow").
4. Smooth the contour with a Savitzky-Golay filter (cubic, window :data:`SMOOTH_FRACTION`
   of the trimmed columns, odd, at least :data:`MIN_WINDOW`) and take its second
   derivative ``y''`` (px^-1) from the same filter.
5. Inflection points are the sign changes of ``y''``. Pixel noise makes spurious ones, so
   the contour is cut into lobes (maximal runs of one sign) and a sign change counts only
   between two lobes whose peak bending ``max |y''| * L`` (``L`` = trimmed length in px,
   so the measure does not depend on image scale) both reach :data:`MIN_BEND` (weaker
   lobes are merged into their neighbours first) and over which the smoothed contour
   departs from a straight line by at least :data:`MIN_RELIEF` px (perpendicular).
6. The target is the counted inflection point nearest the middle of the trimmed contour,
   its ``x`` interpolated linearly between the two samples where ``y''`` changes sign and
   its ``y`` the smoothed contour there. With no counted inflection (a straight or
   evenly curved outline) there is no target: the result says so (flag "no inflection on
   the dorsal contour") and never makes one up.

Image level (:func:`measure_ultrasound`): a facet joint is present when a facet-joint
instance scores at least the threshold; the finding is trusted only when a ventral
complex also does (the joint rule of :func:`spinekit.evaluation.image_level.apply_joint_rule`).
Every facet gets its own target; the image's target is the one of the highest-scoring
facet (ties: the larger mask) that has one. Targets are in pixels ``(x, y)`` and, with the
image's pixel spacing ``(row, col)`` mm, in mm from the image's top-left corner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
from scipy import ndimage, signal

from spinekit.evaluation.image_level import apply_joint_rule
from spinekit.masks import CropMask, as_crop

END_TRIM = 0.10
"""Fraction of the contour's columns left out at each end (step 3)."""

MIN_COLUMNS = 12
"""Fewest contour columns after trimming for a target."""

SMOOTH_FRACTION = 0.2
"""Savitzky-Golay window as a fraction of the trimmed contour length (step 4)."""

MIN_WINDOW = 7
"""Smallest Savitzky-Golay window (px)."""

MIN_BEND = 0.5
"""Smallest peak bending ``max |y''| * L`` of a lobe next to a counted inflection (step 5)."""

MIN_RELIEF = 1.0
"""Smallest relief (px) of the smoothed contour over the two lobes of a counted inflection:
its largest perpendicular distance from their least-squares line (step 5; the pixel
staircase of a straight edge stays below)."""

FACET_NAMES = frozenset({"f", "facet", "facet_joint", "facet joint", "facet-joint", "fj"})
"""Category names (lower case) taken as facet joints."""

VENTRAL_NAMES = frozenset({"e", "ventral", "ventral_complex", "ventral complex",
                           "ventral-complex", "vc", "anterior complex", "anterior_complex"})
"""Category names (lower case) taken as the ventral (anterior) complex."""


@dataclass(frozen=True)
class DorsalContour:
    """The trimmed dorsal contour of one facet mask: ``x`` ``(n,)`` column centres,
    ``y`` ``(n,)`` top edges, ``smooth`` ``(n,)`` the smoothed ``y`` and ``second``
    ``(n,)`` its second derivative (px^-1), all float64 image pixels."""

    x: np.ndarray
    y: np.ndarray
    smooth: np.ndarray
    second: np.ndarray

    def points(self) -> np.ndarray:
        """The smoothed contour as ``(n, 2)`` float64 ``(x, y)`` points."""
        return np.stack([self.x, self.smooth], axis=1)


@dataclass(frozen=True)
class NeedleTarget:
    """The target of one facet mask: ``point`` ``(x, y)`` px or None, the ``contour`` it
    came from (None for a degenerate mask), ``inflections`` counted (step 5) and ``flag``
    (why there is no target; None when there is one)."""

    point: tuple[float, float] | None
    contour: DorsalContour | None
    inflections: int
    flag: str | None = None


def dorsal_contour(mask: np.ndarray | CropMask) -> DorsalContour | str:
    """Steps 1-4 of the module docstring for one mask (``(H, W)`` array or
    :class:`CropMask`); the reason as a string when the mask is too small."""
    crop = as_crop(mask)
    if crop.empty:
        return "facet mask empty"
    labels, count = ndimage.label(crop.crop, structure=np.ones((3, 3), dtype=bool))
    part = crop.crop
    if count > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        part = labels == int(np.argmax(sizes))
    cols = np.flatnonzero(part.any(axis=0))
    top = _destair(np.argmax(part[:, cols], axis=0).astype(np.float64))
    n = cols.size
    cut = int(np.floor(END_TRIM * n))
    cols, top = cols[cut : n - cut], top[cut : n - cut]
    if cols.size < MIN_COLUMNS:
        return f"facet mask too narrow ({cols.size} columns after trimming, need {MIN_COLUMNS})"
    window = round(SMOOTH_FRACTION * cols.size) | 1
    window = min(max(window, MIN_WINDOW), cols.size if cols.size % 2 else cols.size - 1)
    smooth = signal.savgol_filter(top, window, 3, mode="interp")
    second = signal.savgol_filter(top, window, 3, deriv=2, mode="interp")
    x = cols.astype(np.float64) + crop.left + 0.5
    return DorsalContour(x=x, y=top + crop.top, smooth=smooth + crop.top, second=second)


def _destair(top: np.ndarray) -> np.ndarray:
    """Top rows ``(n,)`` with the pixel staircase removed: every run of equal rows is
    replaced by the line through the runs' midpoints (a straight edge's digitisation has
    its run midpoints on the edge), interpolated at each column."""
    if top.size < 3:
        return top
    change = np.flatnonzero(np.diff(top) != 0) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [top.size]]) - 1
    mids = 0.5 * (starts + ends)
    if mids.size < 2:
        return top
    x = np.arange(top.size, dtype=np.float64)
    out = np.interp(x, mids, top[starts])
    for side, (i, j) in ((x < mids[0], (0, 1)), (x > mids[-1], (-2, -1))):  # extend the end lines
        slope = (top[starts][j] - top[starts][i]) / (mids[j] - mids[i])
        out[side] = top[starts][i] + slope * (x[side] - mids[i])
    return out


def _relief(y: np.ndarray) -> float:
    """Largest distance (px, perpendicular) of the curve ``y(x)`` from its least-squares line."""
    if y.size < 3:
        return 0.0
    x = np.arange(y.size, dtype=np.float64)
    coef = np.polyfit(x, y, 1)
    return float(np.max(np.abs(y - np.polyval(coef, x)))) / float(np.hypot(1.0, coef[0]))


def _lobes(second: np.ndarray, length: float) -> list[tuple[int, int, float]]:
    """Runs ``(start, stop, signed peak bending)`` of one sign of ``second``, weak runs
    (peak bending below :data:`MIN_BEND`) merged into their neighbours."""
    sign = np.sign(second)
    edges = np.flatnonzero(np.diff(sign) != 0) + 1
    bounds = np.concatenate([[0], edges, [second.size]])
    lobes = []
    for a, b in pairwise(bounds):
        seg = second[a:b]
        k = int(np.argmax(np.abs(seg)))
        lobes.append((int(a), int(b), float(seg[k]) * length))
    strong = [lobe for lobe in lobes if abs(lobe[2]) >= MIN_BEND]
    merged: list[tuple[int, int, float]] = []
    for lobe in strong:
        if merged and np.sign(merged[-1][2]) == np.sign(lobe[2]):
            last = merged[-1]
            merged[-1] = (last[0], lobe[1], max(last[2], lobe[2], key=abs))
        else:
            merged.append(lobe)
    return merged


def needle_target(mask: np.ndarray | CropMask) -> NeedleTarget:
    """The needle target of one facet-joint mask by the rule of the module docstring."""
    contour = dorsal_contour(mask)
    if isinstance(contour, str):
        return NeedleTarget(point=None, contour=None, inflections=0, flag=contour)
    lobes = _lobes(contour.second, float(contour.x[-1] - contour.x[0] + 1.0))
    crossings: list[float] = []
    for left, right in pairwise(lobes):
        if _relief(contour.smooth[left[0] : right[1]]) < MIN_RELIEF:
            continue
        # the sign change lies between the end of the left lobe and the start of the right
        zone = np.arange(max(left[1] - 1, 0), min(right[0] + 1, contour.second.size))
        seg = contour.second[zone]
        change = np.flatnonzero(np.sign(seg[:-1]) != np.sign(seg[1:]))
        i = int(zone[change[len(change) // 2]]) if change.size else int(zone[0])
        y0, y1 = contour.second[i], contour.second[min(i + 1, contour.second.size - 1)]
        frac = float(y0 / (y0 - y1)) if y0 != y1 else 0.0
        crossings.append(i + min(max(frac, 0.0), 1.0))
    if not crossings:
        return NeedleTarget(point=None, contour=contour, inflections=0,
                            flag="no inflection on the dorsal contour")
    middle = 0.5 * (contour.second.size - 1)
    best = min(crossings, key=lambda c: abs(c - middle))
    idx = np.arange(contour.x.size, dtype=np.float64)
    point = (float(np.interp(best, idx, contour.x)), float(np.interp(best, idx, contour.smooth)))
    return NeedleTarget(point=point, contour=contour, inflections=len(crossings))


@dataclass
class FacetResult:
    """One facet instance: its input ``index``, ``score``, mask ``area`` and target."""

    index: int
    score: float
    area: int
    target: NeedleTarget


@dataclass
class UltrasoundMeasurement:
    """Image-level result (module docstring): ``facet_present``, ``trusted``, every facet
    at or above the threshold with its target, ``primary`` (index into ``facets`` of the
    image's target, None without one) and ``flags``."""

    facet_present: bool
    trusted: bool
    facets: list[FacetResult] = field(default_factory=list)
    primary: int | None = None
    flags: list[str] = field(default_factory=list)

    @property
    def target(self) -> tuple[float, float] | None:
        """The image's target ``(x, y)`` px, or None."""
        return None if self.primary is None else self.facets[self.primary].target.point


def measure_ultrasound(facets: Sequence[tuple[np.ndarray | CropMask, float]],
                       ventral_scores: Sequence[float], *, threshold: float = 0.5
                       ) -> UltrasoundMeasurement:
    """Facet presence, trust and needle targets of one image (module docstring).

    ``facets``: ``(mask, score)`` per facet-joint instance (score 1.0 for expert ones);
    ``ventral_scores``: the scores of the ventral-complex instances. Never raises for bad
    masks: a facet without a target carries the reason in its target's ``flag``.
    """
    results = [{"image_id": 0, "category_id": 1, "score": float(s)} for _, s in facets]
    results += [{"image_id": 0, "category_id": 2, "score": float(s)} for s in ventral_scores]
    kept, _ = apply_joint_rule(results, primary=1, required=2, threshold=threshold)
    present = any(float(s) >= threshold for _, s in facets)
    trusted = any(int(r["category_id"]) == 1 and float(r["score"]) >= threshold for r in kept)
    out = UltrasoundMeasurement(facet_present=present, trusted=trusted)
    if not present:
        out.flags.append("no facet joint found: no needle target")
        return out
    if not trusted:
        out.flags.append("facet joint not trusted: no ventral complex at or above the threshold")
    for index, (mask, score) in enumerate(facets):
        if float(score) < threshold:
            continue
        crop = as_crop(mask)
        out.facets.append(FacetResult(index, float(score), crop.area(), needle_target(crop)))
    with_target = [k for k, f in enumerate(out.facets) if f.target.point is not None]
    if with_target:
        out.primary = max(with_target, key=lambda k: (out.facets[k].score, out.facets[k].area))
    else:
        reasons = sorted({f.target.flag or "" for f in out.facets} - {""})
        out.flags.append("no needle target: " + "; ".join(reasons))
    return out


def target_error(point: tuple[float, float], annotated: Sequence[tuple[float, float]],
                 spacing_mm: tuple[float, float] | None) -> tuple[float, float | None, int]:
    """Distance from ``point`` to the nearest ``annotated`` point: ``(px, mm or None, index)``.

    ``spacing_mm``: ``(row, col)``; the nearest point is chosen in mm when known. Raises
    ValueError when ``annotated`` is empty.
    """
    if not annotated:
        raise ValueError("no annotated points")
    ref = np.asarray(annotated, dtype=np.float64).reshape(-1, 2)
    delta = ref - np.asarray(point, dtype=np.float64)
    scale = np.array([1.0, 1.0]) if spacing_mm is None else np.array([spacing_mm[1], spacing_mm[0]])
    dist_mm = np.hypot(*(delta * scale).T)
    k = int(np.argmin(dist_mm))
    px = float(np.hypot(*delta[k]))
    return px, (None if spacing_mm is None else float(dist_mm[k])), k
