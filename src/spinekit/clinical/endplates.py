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
4. Each border is fitted with a robust line: a Theil-Sen start (median pairwise slope
   over at most 32 evenly spaced border samples, intercept median(y) - slope median(x))
   refined by 10 Tukey-biweight iteratively reweighted least-squares steps on all samples
   (robust to osteophytes, notches and stray pixels, and unlike Theil-Sen alone not
   pinned to slope 0 by the many tied values of a pixel staircase); the four corners are
   the intersections of the endplate lines with the side lines.
5. Steps 3-4 are repeated twice more in the frame of the mean endplate direction, so the
   result does not depend on how good the PCA start was (a body stops early once the
   direction moves by less than 1e-4 rad).

:func:`fit_endplates` runs these steps for all bodies of an image at once: border
sampling and the line fits are array operations over every body and border together
(:mod:`spinekit.clinical.border_fit`), and masks may be :class:`CropMask` crops, so the
cost does not depend on the image size. :func:`endplates_from_mask` is the one-body case.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from spinekit.clinical import border_fit
from spinekit.masks import CropMask, as_crop

logger = logging.getLogger(__name__)

MIN_PIXELS = 30
"""Masks with fewer pixels (after keeping the largest component) are degenerate."""

REFINE_ITERATIONS = 3
"""Border-fit rounds (step 5): the first in the start frame, then in the fitted one."""

AXIS_SETTLED = 1e-4
"""A body whose fitted endplate direction turned by less than this (radians) from the
frame it was fitted in is done: another round in an almost identical frame changes
nothing measurable."""


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


def _initial_axes(moments: np.ndarray) -> np.ndarray:
    """``(B, 2)`` unit vectors from the central second moments ``(B, 3)`` (xx, yy, xy) of
    each body: the principal axis closest to +x (PCA start); a nearly isotropic body
    (eigenvalue ratio < 1.2) starts from the x axis."""
    sxx, syy, sxy = moments[:, 0], moments[:, 1], moments[:, 2]
    theta = 0.5 * np.arctan2(2 * sxy, sxx - syy)  # major axis angle
    half = np.hypot(0.5 * (sxx - syy), sxy)
    big, small = 0.5 * (sxx + syy) + half, 0.5 * (sxx + syy) - half
    major = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    minor = np.stack([-np.sin(theta), np.cos(theta)], axis=1)
    axis = np.where((np.abs(major[:, 0]) >= np.abs(minor[:, 0]))[:, None], major, minor)
    axis = np.where(axis[:, :1] < 0, -axis, axis)
    isotropic = big < 1.2 * np.maximum(small, 1e-12)
    return np.where(isotropic[:, None], np.array([1.0, 0.0]), axis)


def _hint_axis(column_direction: np.ndarray | tuple[float, float]) -> np.ndarray:
    """Unit vector ``(2,)`` perpendicular to the column direction, pointing to +x."""
    d = np.asarray(column_direction, dtype=np.float64).reshape(2)
    norm = float(np.linalg.norm(d))
    if not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f"column_direction must be a nonzero (dx, dy), got {d.tolist()}")
    axis = np.array([d[1], -d[0]]) / norm
    return axis if axis[0] >= 0 else -axis


_BORDERS = (("upper", 0, 1, True), ("lower", 0, 1, False), ("first side", 1, 0, True),
            ("second side", 1, 0, False))
"""Border name, the coordinate binned (0 = u, 1 = v), the one extremised, and min or max."""


def _fit_frames(uv: np.ndarray, starts: np.ndarray, halves: tuple[np.ndarray, np.ndarray],
                bin_width: float) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """Corners ``(B, 4, 2)`` in each body's (u, v) frame, order top-left(-u), top-right,
    bottom-left, bottom-right, the RMS fit residual ``(B,)`` and an error per body.
    ``halves``: per body the half pixel extent along u and along v (0.5 for square
    pixels); ``bin_width``: border bin width (1 for square pixels)."""
    bodies = starts.size - 1
    errors: list[str | None] = [None] * bodies
    samples = []
    pairs = [border_fit.border_pair(uv[:, binned], uv[:, 1 - binned], starts, halves[1 - binned], bin_width)
             for binned in (0, 1)]
    for name, binned, _, lowest in _BORDERS:
        big_x, big_y, counts = pairs[binned][0 if lowest else 1]
        for short in np.flatnonzero(counts < border_fit.MIN_BORDER_POINTS).tolist():
            errors[short] = errors[short] or (
                f"degenerate mask: only {counts[short]} points on the {name} border")
        samples.append((big_x, big_y, counts))
    width = max(x.shape[1] for x, _, _ in samples)
    big_x = np.concatenate([border_fit.pad_to(x, width) for x, _, _ in samples])
    big_y = np.concatenate([border_fit.pad_to(y, width) for _, y, _ in samples])
    a, b, res = border_fit.robust_lines(big_x, big_y, np.concatenate([c for _, _, c in samples]))
    a, b, res = a.reshape(4, bodies), b.reshape(4, bodies), res.reshape(4, bodies, width)
    corners = np.full((bodies, 4, 2), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        for k, (end, side) in enumerate([(0, 2), (0, 3), (1, 2), (1, 3)]):
            det = 1.0 - b[side] * b[end]  # ends: v = a + b u; sides: u = a + b v
            parallel = np.abs(det) < 1e-6
            for i in np.flatnonzero(parallel):
                errors[i] = errors[i] or "degenerate mask: endplate and side borders are parallel"
            uu = (a[side] + b[side] * a[end]) / np.where(parallel, 1.0, det)
            corners[:, k] = np.stack([uu, a[end] + b[end] * uu], axis=1)
        squares = np.nansum(res**2, axis=(0, 2))
        quality = np.sqrt(squares / np.maximum(np.sum(np.isfinite(res), axis=(0, 2)), 1))
    return corners, quality, errors


@dataclass(frozen=True)
class _Body:
    """A body's rim pixels ``(N, 2)`` (x, y) float64 (the only ones that can be extreme in a
    border bin: every pixel whose 8 neighbours are all inside has a pixel of the same bin
    further out), its centroid ``(2,)`` and central second moments ``(3,)`` of all pixels."""

    rim: np.ndarray
    centre: np.ndarray
    moments: np.ndarray


def _rim(part: np.ndarray) -> np.ndarray:
    """Pixels of ``part`` ``(h, w)`` bool with at least one of the 8 neighbours outside."""
    h, w = part.shape
    padded = np.zeros((h + 2, w + 2), dtype=bool)  # np.pad costs more on small crops
    padded[1:-1, 1:-1] = part
    inner = part.copy()
    for dy in range(3):
        for dx in range(3):
            if dy != 1 or dx != 1:
                inner &= padded[dy : dy + h, dx : dx + w]
    return part & ~inner


def _body(mask: np.ndarray | CropMask, stretch: np.ndarray) -> _Body | str:
    """The largest 8-connected component of a mask as a :class:`_Body` in the frame whose
    ``(x, y)`` are the pixel coordinates times ``stretch`` ``(2,)``, or the reason the mask
    is degenerate."""
    crop = as_crop(mask)
    if crop.empty:
        return "degenerate mask: empty"
    part = crop.crop if crop.connected else _largest_component(crop.crop)
    cols = part.sum(axis=0, dtype=np.int64).astype(np.float64)
    rows = part.sum(axis=1, dtype=np.int64).astype(np.float64)
    n = float(cols.sum())
    if n < MIN_PIXELS:
        return f"degenerate mask: {int(n)} pixels (need at least {MIN_PIXELS})"
    x = np.arange(cols.size, dtype=np.float64)
    y = np.arange(rows.size, dtype=np.float64)
    mx, my = float(cols @ x) / n, float(rows @ y) / n
    sxy = float(y @ (part.astype(np.float64) @ x)) - n * mx * my
    sx, sy = float(stretch[0]), float(stretch[1])
    moments = np.array([(float(cols @ x**2) - n * mx * mx) * sx * sx,
                        (float(rows @ y**2) - n * my * my) * sy * sy, sxy * sx * sy])
    # square pixels: the rim suffices; stretched ones: every pixel (bins are then a coarse
    # pixel wide and an inner pixel can be the extreme of a bin)
    ry, rx = np.nonzero(_rim(part) if np.all(stretch == 1.0) else part)
    points = np.column_stack([rx + crop.left, ry + crop.top]).astype(np.float64) * stretch
    centre = np.array([mx + crop.left, my + crop.top]) * stretch
    return _Body(rim=points, centre=centre, moments=moments)


def _half_extent(direction: np.ndarray, stretch: np.ndarray) -> np.ndarray:
    """``(B,)`` half a pixel along unit ``direction`` ``(B, 2)`` in the stretched frame: 0.5
    for square pixels, ``0.5 * stretch`` along an axis, in between otherwise."""
    weights = np.abs(direction)
    return 0.5 * (weights @ stretch) / np.maximum(weights.sum(axis=1), 1e-12)


def _refine(bodies: list[_Body], axes: np.ndarray, errors: list[str | None],
            stretch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:data:`REFINE_ITERATIONS` rounds of border fits (module docstring, steps 3-5) for
    bodies whose ``errors`` entry is None (set on failure). Returns corners ``(B, 4, 2)``
    image-left upper, image-right upper, image-left lower, image-right lower, and quality."""
    points = [b.rim for b in bodies]
    corners_xy = np.full((len(points), 4, 2), np.nan)
    quality = np.full(len(points), np.nan)
    centres = np.array([b.centre for b in bodies]).reshape(-1, 2)
    settled = np.zeros(len(points), dtype=bool)
    for _ in range(REFINE_ITERATIONS):
        alive = [k for k in range(len(points)) if errors[k] is None and not settled[k]]
        if not alive:
            break
        sizes = np.array([len(points[k]) for k in alive])
        starts = np.concatenate([[0], np.cumsum(sizes)])
        body = np.repeat(np.arange(len(alive)), sizes)
        axis = axes[alive]
        normal = np.stack([-axis[:, 1], axis[:, 0]], axis=1)  # +v roughly down
        rel = np.concatenate([points[k] for k in alive]) - centres[alive][body]
        rx, ry = rel[:, 0], rel[:, 1]  # dot products written out: a sum over axis 1 is slow
        uv = np.stack([rx * axis[body, 0] + ry * axis[body, 1],
                       rx * normal[body, 0] + ry * normal[body, 1]], axis=1)
        halves = (_half_extent(axis, stretch), _half_extent(normal, stretch))
        corners_uv, fit_quality, fit_errors = _fit_frames(uv, starts, halves, float(stretch.max()))
        xy = (centres[alive][:, None, :] + corners_uv[..., :1] * axis[:, None, :]
              + corners_uv[..., 1:] * normal[:, None, :])
        with np.errstate(invalid="ignore", divide="ignore"):
            upper, lower = xy[:, 1] - xy[:, 0], xy[:, 3] - xy[:, 2]
            mean_dir = (upper / np.linalg.norm(upper, axis=1, keepdims=True)
                        + lower / np.linalg.norm(lower, axis=1, keepdims=True))
            norm = np.linalg.norm(mean_dir, axis=1)
        _update(alive, (xy, fit_quality, mean_dir, norm), fit_errors,
                (corners_xy, quality, axes, settled, errors))
    return corners_xy, quality


def _update(alive: list[int], fit: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
            fit_errors: list[str | None],
            state: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str | None]]) -> None:
    """Store one round's fits (corners ``(A, 4, 2)``, quality ``(A,)``, unnormalised mean
    endplate direction ``(A, 2)`` and its norm ``(A,)``) of the ``alive`` bodies into the
    state (corners, quality, axes, settled, errors of all bodies), vectorised over bodies."""
    xy, fit_quality, mean_dir, norm = fit
    corners_xy, quality, axes, settled, errors = state
    with np.errstate(invalid="ignore"):
        steady = np.isfinite(norm) & (norm >= 1e-9)
    for i, k in enumerate(alive):
        if fit_errors[i] is None and not steady[i]:
            fit_errors[i] = "degenerate mask: endplate directions cannot be estimated"
        errors[k] = fit_errors[i] if fit_errors[i] is not None else errors[k]
    ok = np.array([e is None for e in fit_errors], dtype=bool)
    if not ok.any():
        return
    rows = np.asarray(alive, dtype=np.int64)[ok]
    new_axes = mean_dir[ok] / norm[ok][:, None]
    turn = axes[rows, 0] * new_axes[:, 1] - axes[rows, 1] * new_axes[:, 0]
    settled[rows] = np.abs(turn) < AXIS_SETTLED
    corners_xy[rows], quality[rows], axes[rows] = xy[ok], fit_quality[ok], new_axes


def fit_endplates(
    masks: Sequence[np.ndarray | CropMask],
    *,
    anterior: Literal["left", "right"] = "left",
    column_directions: Sequence[np.ndarray | tuple[float, float] | None] | None = None,
    pixel_spacing: tuple[float, float] | None = None,
) -> list[Endplates | str]:
    """Endplates of many bodies of one image at once (vectorised; module docstring).

    ``masks``: ``(H, W)`` arrays (nonzero = body) or :class:`CropMask`. ``column_directions``:
    per mask an optional ``(dx, dy)`` spine direction (see :func:`endplates_from_mask`).
    ``pixel_spacing``: ``(row, col)`` of non-square pixels: the fits then run in a frame
    with square pixels (the finer spacing as unit), so borders keep their true angles;
    corners are returned in image pixels either way. Returns per mask its
    :class:`Endplates` or, for a degenerate mask, the reason (str). Raises ValueError for
    a bad ``anterior`` or spacing, a mask that is not 2-D or a zero direction.
    """
    if anterior not in ("left", "right"):
        raise ValueError(f"anterior must be 'left' or 'right', got {anterior!r}")
    stretch = np.array([1.0, 1.0])
    if pixel_spacing is not None:
        row, col = (float(v) for v in pixel_spacing)
        if not (np.isfinite(row) and np.isfinite(col) and row > 0 and col > 0):
            raise ValueError(f"pixel_spacing must be two positive numbers, got {pixel_spacing}")
        stretch = np.array([col, row]) / min(row, col)
    hints = list(column_directions) if column_directions is not None else [None] * len(masks)
    if len(hints) != len(masks):
        raise ValueError(f"{len(masks)} masks but {len(hints)} column directions")
    prepared = [_body(m, stretch) for m in masks]
    out: list[Endplates | str] = [p if isinstance(p, str) else "" for p in prepared]
    bodies = [p for p in prepared if isinstance(p, _Body)]
    good = [k for k, p in enumerate(prepared) if isinstance(p, _Body)]
    if not good:
        return out
    axes = _initial_axes(np.array([b.moments for b in bodies]))
    for i, k in enumerate(good):
        hint = hints[k]
        if hint is not None:
            axes[i] = _hint_axis(np.asarray(hint, dtype=np.float64).reshape(2) * stretch)
    sub_errors: list[str | None] = [None] * len(good)
    corners, quality = _refine(bodies, axes, sub_errors, stretch)
    corners = corners / stretch
    order = [0, 1, 2, 3] if anterior == "left" else [1, 0, 3, 2]
    for i, k in enumerate(good):
        if sub_errors[i] is None and not np.all(np.isfinite(corners[i])):
            sub_errors[i] = "degenerate mask: corner fit did not converge"
        error = sub_errors[i]
        out[k] = error if error is not None else _from_four(corners[i][order], "mask", float(quality[i]))
    return out


def endplates_from_mask(
    mask: np.ndarray | CropMask,
    *,
    anterior: Literal["left", "right"] = "left",
    column_direction: np.ndarray | tuple[float, float] | None = None,
) -> Endplates:
    """Endplates of one vertebral body from its mask ``(H, W)`` (bool, or nonzero = body)
    or :class:`CropMask`.

    ``anterior``: the image side the front of the body faces. ``column_direction``:
    optional ``(dx, dy)`` pixel direction of the spine's long axis at this body (e.g. from
    the neighbours' centroids); the start orientation is then perpendicular to it instead
    of the PCA axis (much more reliable for near-square or wedged bodies such as L5). See
    the module docstring for the method. Raises ValueError (one clear line) for a mask that
    is not 2-D, empty, smaller than :data:`MIN_PIXELS` pixels, or whose borders cannot be
    fitted.
    """
    if not isinstance(mask, CropMask) and np.asarray(mask).ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {np.asarray(mask).shape}")
    result = fit_endplates([mask], anterior=anterior, column_directions=[column_direction])[0]
    if isinstance(result, str):
        raise ValueError(result)
    return result
