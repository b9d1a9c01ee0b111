"""Endplates and corners of one vertebral body, from corner landmarks or from a mask.

Coordinates are ``(x, y)`` pixels, x to the right, y downwards (image convention).

:class:`Endplates` holds, for one vertebra:

- ``upper`` ``(2, 2)`` float64: the upper (cranial) endplate as two points, row 0 the
  anterior end, row 1 the posterior end;
- ``lower`` ``(2, 2)`` float64: the lower (caudal) endplate, same order;
- ``corners`` ``(4, 2)`` float64: upper-anterior, upper-posterior, lower-anterior,
  lower-posterior (so ``corners[:2] == upper`` and ``corners[2:] == lower``);
- ``method``: ``"landmarks"`` or ``"mask"``; ``quality``: for masks the root mean square
  residual (px) of the four robust border fits, for landmarks 0.

On an AP / coronal view (AASCE landmarks) there is no anterior or posterior end:
:func:`endplates_from_corners` then calls the image-left end "anterior" and the
image-right end "posterior".

Mask method (:func:`endplates_from_mask`):

1. Keep the largest 8-connected component (drops single-pixel annotation specks).
2. Initial orientation: perpendicular to ``column_direction`` when given (the spine's
   long axis, e.g. from the neighbouring bodies: recommended, used by
   :mod:`spinekit.clinical.lateral`), otherwise from the second moments (PCA) of the pixel
   coordinates: of the two principal axes, the one closer to the image x axis is taken as
   the body's anterior-posterior axis (so the image must be roughly head up). A nearly
   isotropic body (eigenvalue ratio < 1.2) starts from the x axis. PCA alone is
   unreliable for near-square wedged bodies (a tilted L5 trapezoid can give an axis
   60 degrees off), hence the hint.
3. In the frame rotated to that axis, for every integer column ``u`` across the central
   70 % of the body, the top-most and bottom-most pixel give the upper and lower border
   points; for every integer row ``v`` across the central 70 % of the height, the
   left-most and right-most pixel give the two side borders. The 15 % margins at both
   ends are left out because the corners round off there. Border points are moved half
   a pixel outwards (a pixel centre lies on average half a pixel inside the true edge).
4. Each border is fitted with a robust line: a Theil-Sen start
   (``scipy.stats.theilslopes``) refined by Tukey-biweight iteratively reweighted least
   squares (robust to osteophytes, notches and stray pixels, and unlike Theil-Sen alone
   not pinned to slope 0 by the many tied values of a pixel staircase); the four corners are the intersections
   of the endplate lines with the side lines.
5. Steps 3-4 are repeated twice more in the frame of the mean endplate direction, so the
   result does not depend on how good the PCA start was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage, stats

logger = logging.getLogger(__name__)

MIN_PIXELS = 30
"""Masks with fewer pixels (after keeping the largest component) are degenerate."""

END_MARGIN = 0.15
"""Fraction of the body's extent left out at each end of a border before the line fit."""

MIN_BORDER_POINTS = 4
"""Fewest border samples a line fit accepts."""

REFINE_ITERATIONS = 3
IRLS_ITERATIONS = 10
TUKEY_C = 4.685


@dataclass(frozen=True)
class Endplates:
    """Endplates and corners of one vertebra in ``(x, y)`` pixels (see module docstring).

    ``upper``, ``lower``: ``(2, 2)`` float64, rows (anterior end, posterior end).
    ``corners``: ``(4, 2)`` float64, upper-anterior, upper-posterior, lower-anterior,
    lower-posterior. ``method``: ``"landmarks"`` or ``"mask"``. ``quality``: RMS border fit
    residual in px (0 for landmarks).
    """

    upper: np.ndarray
    lower: np.ndarray
    corners: np.ndarray
    method: str
    quality: float


def _from_four(corners: np.ndarray, method: str, quality: float) -> Endplates:
    arr = np.asarray(corners, dtype=np.float64).reshape(4, 2)
    arr.setflags(write=False)
    upper = arr[:2].copy()
    lower = arr[2:].copy()
    upper.setflags(write=False)
    lower.setflags(write=False)
    return Endplates(upper=upper, lower=lower, corners=arr, method=method, quality=quality)


def endplates_from_corners(corners: np.ndarray) -> Endplates:
    """Endplates from four landmarks ``(4, 2)`` ``(x, y)`` in AASCE order TL, TR, BL, BR.

    TL/BL (image left) become the "anterior" ends, TR/BR the "posterior" ends; on a
    lateral view with anterior to the right, pass the corners mirrored (TR, TL, BR, BL).
    Raises ValueError for a wrong shape or non-finite values.
    """
    arr = np.asarray(corners, dtype=np.float64)
    if arr.shape != (4, 2):
        raise ValueError(f"corners must have shape (4, 2), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("corners contain NaN or infinite values")
    return _from_four(arr, "landmarks", 0.0)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _initial_axis(points: np.ndarray) -> np.ndarray:
    """Unit vector ``(2,)`` of the principal axis closest to +x (PCA start)."""
    cov = np.cov(points.T)
    evals, evecs = np.linalg.eigh(cov)
    if evals[1] < 1.2 * max(evals[0], 1e-12):
        return np.array([1.0, 0.0])
    axis = evecs[:, int(np.argmax(np.abs(evecs[0])))]
    return axis if axis[0] >= 0 else -axis


def _hint_axis(column_direction: np.ndarray | tuple[float, float]) -> np.ndarray:
    """Unit vector ``(2,)`` perpendicular to the column direction, pointing to +x."""
    d = np.asarray(column_direction, dtype=np.float64).reshape(2)
    norm = float(np.linalg.norm(d))
    if not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f"column_direction must be a nonzero (dx, dy), got {d.tolist()}")
    axis = np.array([d[1], -d[0]]) / norm
    return axis if axis[0] >= 0 else -axis


def _border(along: np.ndarray, across: np.ndarray, lowest: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per integer bin of ``along`` (central part only) the min (or max) of ``across``."""
    bins = np.round(along).astype(np.int64)
    lo, hi = int(bins.min()), int(bins.max())
    span = hi - lo
    keep = (bins >= lo + END_MARGIN * span) & (bins <= hi - END_MARGIN * span)
    idx = bins[keep] - lo
    if lowest:
        out = np.full(span + 1, np.inf)
        np.minimum.at(out, idx, across[keep])
        out -= 0.5
    else:
        out = np.full(span + 1, -np.inf)
        np.maximum.at(out, idx, across[keep])
        out += 0.5
    good = np.isfinite(out)
    return (np.arange(span + 1, dtype=np.float64) + lo)[good], out[good]


def _fit(x: np.ndarray, y: np.ndarray, what: str) -> tuple[float, float, np.ndarray]:
    """Robust line ``y = a + b x``: Theil-Sen start, then Tukey-biweight IRLS (pixel
    borders have many tied values, which can pin the Theil-Sen median slope at exactly 0).
    Returns (a, b, residuals)."""
    if x.size < MIN_BORDER_POINTS:
        raise ValueError(f"degenerate mask: only {x.size} points on the {what} border")
    start = stats.theilslopes(y, x)
    slope, intercept = float(start[0]), float(start[1])
    design = np.column_stack([np.ones_like(x), x])
    for _ in range(IRLS_ITERATIONS):
        res = y - (intercept + slope * x)
        scale = max(1.4826 * float(np.median(np.abs(res - np.median(res)))), 0.5)
        weights = np.clip(1.0 - (res / (TUKEY_C * scale)) ** 2, 0.0, None) ** 2
        if np.count_nonzero(weights) < MIN_BORDER_POINTS:
            break
        sw = np.sqrt(weights)
        coef = np.linalg.lstsq(design * sw[:, None], y * sw, rcond=None)[0]
        intercept, slope = float(coef[0]), float(coef[1])
    return intercept, slope, y - (intercept + slope * x)


def _fit_frame(uv: np.ndarray) -> tuple[np.ndarray, float]:
    """Corners ``(4, 2)`` in the (u, v) frame, order top-left(-u), top-right, bottom-left,
    bottom-right, and the RMS fit residual."""
    u, v = uv[:, 0], uv[:, 1]
    lines = [
        _fit(*_border(u, v, True), "upper"),
        _fit(*_border(u, v, False), "lower"),
        _fit(*_border(v, u, True), "first side"),
        _fit(*_border(v, u, False), "second side"),
    ]
    corners = np.empty((4, 2))
    for k, (end, side) in enumerate([(0, 2), (0, 3), (1, 2), (1, 3)]):
        a_e, b_e, _ = lines[end]  # v = a_e + b_e u
        a_s, b_s, _ = lines[side]  # u = a_s + b_s v
        det = 1.0 - b_s * b_e
        if abs(det) < 1e-6:
            raise ValueError("degenerate mask: endplate and side borders are parallel")
        uu = (a_s + b_s * a_e) / det
        corners[k] = (uu, a_e + b_e * uu)
    residuals = np.concatenate([line[2] for line in lines])
    return corners, float(np.sqrt(np.mean(residuals**2)))


def endplates_from_mask(
    mask: np.ndarray,
    *,
    anterior: Literal["left", "right"] = "left",
    column_direction: np.ndarray | tuple[float, float] | None = None,
) -> Endplates:
    """Endplates of one vertebral body from its mask ``(H, W)`` (bool, or nonzero = body).

    ``anterior``: the image side the front of the body faces. ``column_direction``:
    optional ``(dx, dy)`` pixel direction of the spine's long axis at this body (e.g. from
    the neighbours' centroids); the start orientation is then perpendicular to it instead
    of the PCA axis (much more reliable for near-square or wedged bodies such as L5). See
    the module docstring for the method. Raises ValueError (one clear line) for a mask that is not 2-D, empty,
    smaller than :data:`MIN_PIXELS` pixels, or whose borders cannot be fitted.
    """
    if anterior not in ("left", "right"):
        raise ValueError(f"anterior must be 'left' or 'right', got {anterior!r}")
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {arr.shape}")
    rows, cols = np.nonzero(arr)
    if rows.size == 0:
        raise ValueError("degenerate mask: empty")
    r0, c0 = int(rows.min()), int(cols.min())
    crop = arr[r0 : int(rows.max()) + 1, c0 : int(cols.max()) + 1] != 0
    ys, xs = np.nonzero(_largest_component(crop))
    ys, xs = ys + r0, xs + c0
    if xs.size < MIN_PIXELS:
        raise ValueError(f"degenerate mask: {xs.size} pixels (need at least {MIN_PIXELS})")
    points = np.column_stack([xs, ys]).astype(np.float64)
    centre = points.mean(axis=0)
    axis = _initial_axis(points - centre) if column_direction is None else _hint_axis(column_direction)
    quality = 0.0
    corners_xy = np.empty((4, 2))
    for _ in range(REFINE_ITERATIONS):
        normal = np.array([-axis[1], axis[0]])  # +v points roughly down (y grows down)
        rot = np.stack([axis, normal], axis=1)  # (2, 2): columns e_u, e_v
        corners_uv, quality = _fit_frame((points - centre) @ rot)
        corners_xy = centre + corners_uv @ rot.T
        upper_dir = corners_xy[1] - corners_xy[0]
        lower_dir = corners_xy[3] - corners_xy[2]
        mean_dir = upper_dir / np.linalg.norm(upper_dir) + lower_dir / np.linalg.norm(lower_dir)
        norm = float(np.linalg.norm(mean_dir))
        if not np.isfinite(norm) or norm < 1e-9:
            raise ValueError("degenerate mask: endplate directions cannot be estimated")
        axis = mean_dir / norm
    if not np.all(np.isfinite(corners_xy)):
        raise ValueError("degenerate mask: corner fit did not converge")
    # corners_xy: image-left upper, image-right upper, image-left lower, image-right lower
    order = [0, 1, 2, 3] if anterior == "left" else [1, 0, 3, 2]
    return _from_four(corners_xy[order], "mask", quality)
