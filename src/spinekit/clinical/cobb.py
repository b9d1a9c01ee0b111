"""Cobb angles from vertebra corner landmarks, reproducing the AASCE 2019 challenge rule.

Every function takes corners in pixels as ``(V, 4, 2)`` float arrays (``(N, V, 4, 2)`` for
a batch): V vertebrae top-down (T1..L5 for the AASCE set), corners in the order top-left,
top-right, bottom-left, bottom-right (as seen on the image), each as ``(x, y)`` with y
growing downwards.

The rule (the organisers' MATLAB ``cobb_angle_calc``, as found in public AASCE code;
verified against the expert ``angles.csv`` of the 481 training images: 475 reproduced to
0.01 degree and 480 to 0.015 degree, the limit set by the 5 significant digits of the
stored landmark fractions; see ``benchmarks/bench_cobb.py``):

1. Each vertebra gets one direction: from the midpoint of its left side (TL, BL) to the
   midpoint of its right side (TR, BR). (Not the 2V endplate lines: those do not match.)
2. ``A[i, j]`` = angle between directions i and j in degrees, ``arccos`` of the dot
   product of unit vectors clipped to [-1, 1] (so angles above 90 degrees survive;
   computed as the equal but more precise ``arctan2(|cross|, dot)``).
3. Main curve: the largest entry. ``u`` = the first row holding it (the upper end
   vertebra), ``l`` = argmax of row ``u`` (the lower end vertebra); ``u < l``.
4. S test on the 2V endplate midpoints ``m`` (first ``m_0``, last ``m_e``): for
   ``i < 2V - 2``, ``d_i = (y_i - y_e)/(y_0 - y_e) - (x_i - x_e)/(x_0 - x_e)`` (the signed
   offset from the chord ``m_0 m_e``). With P, N the sums of the positive and negative
   ``d_i``, the spine is S-shaped unless ``4 P |N| < 1e-4`` (the reference compares
   ``sum(d d^T)`` with ``sum(|d d^T|)``). A vertical chord (``x_0 == x_e``) makes the
   reference divide by zero and count the spine as S; here it falls back to a plain sign
   change of the offsets.
5. Not S: column 2 = ``A[0, u]`` (T1 against the upper end vertebra), column 3 =
   ``A[V-1, l]`` (the last vertebra against the lower end vertebra).
6. S: column 2 = ``max_{j <= u} A[u, j]`` (the curve above the main one; ``k`` = its
   argmax, its upper end vertebra). Then, with ``y'`` the y of the midpoint of a
   vertebra's lower endplate (BL, BR): if ``y'_u + y'_l < image height`` (the main curve
   lies in the upper half of the image; the reference's MATLAB 1-based index lands on the
   lower endplate) column 3 = ``max_{j >= l} A[l, j]`` (the curve below the main one),
   else column 3 = ``max_{j <= k} A[k, j]`` (the curve above the column-2 curve).

So the columns are *not* anatomical regions: column 1 is always the largest curve,
column 2 the curve above it, column 3 the curve below it or (main curve low in an S
spine) the second curve above it; the challenge merely labels them proximal thoracic,
main thoracic and thoracolumbar/lumbar.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from spinekit.errors import InputError
from spinekit.io.images import image_size

logger = logging.getLogger(__name__)

S_TOLERANCE = 1e-4
"""The reference's tolerance on ``sum(|d d^T|) - sum(d d^T)`` in the S test."""


@dataclass(frozen=True)
class CobbResult:
    """Three Cobb angles of one spine in the AASCE column convention.

    ``angles_deg``: (largest curve, curve above it, third curve) in degrees, see the
    module docstring for the exact rule; the challenge calls them PT, MT and TL/L.
    ``end_vertebrae``: for each column the ``(upper, lower)`` vertebra indices (0 = the
    top vertebra, T1) whose midline directions form that angle, ``upper <= lower``.
    ``s_shaped``: the outcome of the S test (step 4).
    """

    angles_deg: tuple[float, float, float]
    end_vertebrae: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    s_shaped: bool


class AasceSet(NamedTuple):
    """The AASCE landmark set: ``names`` (N file names), ``corners`` ``(N, 17, 4, 2)``
    float64 pixels, ``angles`` ``(N, 3)`` float64 expert degrees, ``image_sizes``
    ``(N, 2)`` int64 ``(width, height)``."""

    names: list[str]
    corners: np.ndarray
    angles: np.ndarray
    image_sizes: np.ndarray


def _check_corners(corners: np.ndarray, *, batch: bool) -> np.ndarray:
    arr = np.asarray(corners, dtype=np.float64)
    ndim = 4 if batch else 3
    want = "(N, V, 4, 2)" if batch else "(V, 4, 2)"
    if arr.ndim != ndim or arr.shape[-2:] != (4, 2):
        raise ValueError(f"corners must have shape {want}, got {arr.shape}")
    if arr.shape[-3] < 2:
        raise ValueError(f"need at least 2 vertebrae for a Cobb angle, got {arr.shape[-3]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("corners contain NaN or infinite values")
    return arr


def endplate_lines(corners: np.ndarray) -> np.ndarray:
    """Endplate segments ``(2V, 2, 2)`` in spine order from corners ``(V, 4, 2)``.

    Row ``2v`` is the upper endplate of vertebra v (TL -> TR), row ``2v + 1`` its lower
    endplate (BL -> BR); each row is ``[[x0, y0], [x1, y1]]``. Also accepts a leading
    batch axis: ``(..., V, 4, 2) -> (..., 2V, 2, 2)``.
    """
    arr = np.asarray(corners, dtype=np.float64)
    if arr.ndim < 3 or arr.shape[-2:] != (4, 2):
        raise ValueError(f"corners must have shape (..., V, 4, 2), got {arr.shape}")
    return arr.reshape(*arr.shape[:-3], 2 * arr.shape[-3], 2, 2)


def vertebra_midlines(corners: np.ndarray) -> np.ndarray:
    """Vertebra midlines ``(..., V, 2, 2)``: left-side midpoint -> right-side midpoint."""
    arr = np.asarray(corners, dtype=np.float64)
    left = (arr[..., 0, :] + arr[..., 2, :]) / 2
    right = (arr[..., 1, :] + arr[..., 3, :]) / 2
    return np.stack([left, right], axis=-2)


def _angle_matrix(corners: np.ndarray) -> np.ndarray:
    """``(N, V, V)`` degrees between vertebra midline directions of ``(N, V, 4, 2)``."""
    lines = vertebra_midlines(corners)
    vec = lines[..., 1, :] - lines[..., 0, :]
    norm = np.linalg.norm(vec, axis=-1)
    if np.any(norm == 0):
        raise ValueError("a vertebra has coincident left and right side midpoints")
    unit = vec / norm[..., None]
    dot = np.einsum("nid,njd->nij", unit, unit)
    cross = unit[:, :, None, 0] * unit[:, None, :, 1] - unit[:, :, None, 1] * unit[:, None, :, 0]
    # arctan2(|cross|, dot) == arccos(clip(dot, -1, 1)) but keeps precision near 0 and 180
    return np.degrees(np.arctan2(np.abs(cross), dot))


def _s_shaped(corners: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: S test of step 4 on the endplate midpoints of ``(N, V, 4, 2)``."""
    mid = endplate_lines(corners).mean(axis=-2)  # (N, 2V, 2)
    first, last = mid[:, :1], mid[:, -1:]
    rel = mid[:, :-2] - last
    d0 = first - last  # (N, 1, 2)
    cross = rel[..., 1] * d0[..., 0] - rel[..., 0] * d0[..., 1]  # (N, 2V-2)
    den = d0[..., 1] * d0[..., 0]  # (N, 1)
    flat = den[:, 0] == 0
    offs = cross / np.where(den == 0, 1.0, den)
    pos = np.clip(offs, 0, None).sum(axis=1)
    neg = np.clip(-offs, 0, None).sum(axis=1)
    tol_s = ~(4 * pos * neg < S_TOLERANCE)
    sign_s = np.any(cross > 0, axis=1) & np.any(cross < 0, axis=1)
    return np.where(flat, sign_s, tol_s)


def _masked_argmax(rows: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Max and first argmax of each row of ``rows`` ``(N, V)`` over ``mask``."""
    masked = np.where(mask, rows, -np.inf)
    idx = np.argmax(masked, axis=1)
    return masked[np.arange(len(rows)), idx], idx


def cobb_angles_batch(
    corners: np.ndarray, *, image_heights: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised Cobb angles of N spines.

    ``corners`` ``(N, V, 4, 2)`` pixels, ``image_heights`` ``(N,)`` pixels (or one number).
    Returns ``angles`` ``(N, 3)`` float64 degrees, ``ends`` ``(N, 3, 2)`` int64 vertebra
    indices ``(upper, lower)`` per column, and ``s_shaped`` ``(N,)`` bool.
    """
    arr = _check_corners(corners, batch=True)
    n, v = arr.shape[:2]
    heights = np.broadcast_to(np.asarray(image_heights, dtype=np.float64), (n,))
    if not np.all(np.isfinite(heights)) or np.any(heights <= 0):
        raise ValueError("image heights must be finite and positive")
    ang = _angle_matrix(arr)
    rows, idx = np.arange(n), np.arange(v)[None, :]
    up = np.argmax(ang.max(axis=2), axis=1)
    low = np.argmax(ang[rows, up], axis=1)
    main = ang[rows, up, low]
    s_flag = _s_shaped(arr)
    above, k = _masked_argmax(ang[rows, up], idx <= up[:, None])
    below, kb = _masked_argmax(ang[rows, low], idx >= low[:, None])
    above2, ka = _masked_argmax(ang[rows, k], idx <= k[:, None])
    y_low = (arr[:, :, 2, 1] + arr[:, :, 3, 1]) / 2
    upper_half = y_low[rows, up] + y_low[rows, low] < heights
    col2 = np.where(s_flag, above, ang[rows, 0, up])
    col3 = np.where(s_flag, np.where(upper_half, below, above2), ang[rows, v - 1, low])
    ends2 = np.stack([np.where(s_flag, k, 0), up], axis=1)
    s_ends3 = np.where(upper_half[:, None], np.stack([low, kb], 1), np.stack([ka, k], 1))
    ends3 = np.where(s_flag[:, None], s_ends3, np.stack([low, np.full(n, v - 1)], 1))
    angles = np.stack([main, col2, col3], axis=1)
    ends = np.stack([np.stack([up, low], 1), ends2, ends3], axis=1).astype(np.int64)
    return angles, ends, s_flag


def cobb_angles(corners: np.ndarray, *, image_height: float) -> CobbResult:
    """Cobb angles of one spine, corners ``(V, 4, 2)`` in pixels, ``V >= 2``.

    ``image_height`` (pixels) is part of the rule: for S spines it decides whether the
    main curve lies in the upper half of the image (module docstring, step 6).
    Raises ValueError for a wrong shape, fewer than 2 vertebrae or non-finite values.
    """
    arr = _check_corners(corners, batch=False)
    angles, ends, s_flag = cobb_angles_batch(arr[None], image_heights=image_height)
    a = [float(x) for x in angles[0]]
    e = [(int(p), int(q)) for p, q in ends[0]]
    return CobbResult(
        angles_deg=(a[0], a[1], a[2]),
        end_vertebrae=(e[0], e[1], e[2]),
        s_shaped=bool(s_flag[0]),
    )


def smape(pred: np.ndarray, true: np.ndarray) -> float:
    """Challenge SMAPE in percent of ``(N, 3)`` non-negative angle arrays.

    ``100 * mean_i(sum_k |pred_ik - true_ik| / sum_k (pred_ik + true_ik))``; a row where
    both are all zero counts as 0 (perfect).
    """
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    if p.shape != t.shape or p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(
            f"pred and true must be equal non-empty (N, K) arrays: {p.shape}, {t.shape}"
        )
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(t))):
        raise ValueError("angles contain NaN or infinite values")
    if np.any(p < 0) or np.any(t < 0):
        raise ValueError("SMAPE is defined for non-negative angles only")
    num = np.abs(p - t).sum(axis=1)
    den = (p + t).sum(axis=1)
    ratio = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return float(100 * ratio.mean())


def _read_csv_matrix(path: Path, columns: int) -> np.ndarray:
    try:
        with path.open(newline="") as fh:
            rows = [[float(x) for x in row] for row in csv.reader(fh) if row]
    except FileNotFoundError as exc:
        raise InputError(path, "file not found") from exc
    except ValueError as exc:
        raise InputError(path, f"not a numeric CSV ({exc})") from exc
    if not rows or any(len(r) != columns for r in rows):
        raise InputError(path, f"every row must hold {columns} numbers")
    return np.asarray(rows, dtype=np.float64)


def read_aasce_corners(folder: Path) -> AasceSet:
    """Read an AASCE folder (filenames.csv, landmarks.csv, angles.csv, images/).

    Landmark fractions are scaled to pixels with each image's header size. Raises
    InputError naming the file for missing files or inconsistent rows.
    """
    folder = Path(folder)
    names_path = folder / "filenames.csv"
    try:
        with names_path.open(newline="") as fh:
            names = [row[0] for row in csv.reader(fh) if row]
    except FileNotFoundError as exc:
        raise InputError(names_path, "file not found") from exc
    marks = _read_csv_matrix(folder / "landmarks.csv", 136)
    angles = _read_csv_matrix(folder / "angles.csv", 3)
    if not len(names) == len(marks) == len(angles):
        raise InputError(folder, f"row counts differ: {len(names)} names, {len(marks)} "
                                 f"landmark rows, {len(angles)} angle rows")
    sizes = np.array([image_size(folder / "images" / name) for name in names], dtype=np.int64)
    xy = np.stack([marks[:, :68], marks[:, 68:]], axis=-1)  # (N, 68, 2) fractions
    corners = (xy * sizes[:, None, :]).reshape(len(names), 17, 4, 2)
    logger.debug("read %d AASCE spines from %s", len(names), folder)
    return AasceSet(names, corners, angles, sizes)
