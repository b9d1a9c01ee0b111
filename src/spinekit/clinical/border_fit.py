"""Vectorised border sampling and robust line fits for many vertebral bodies at once.

Used by :mod:`spinekit.clinical.endplates` (the method is described there). Every function
works on all bodies (or all lines) of an image together with numpy array operations, so
the cost per body is a few array passes instead of Python loops and per-line solver calls.

Layout conventions:

- Points of all bodies are concatenated, body by body; ``starts`` ``(B + 1,)`` int64 are
  the boundaries (body ``b`` owns ``starts[b]:starts[b + 1]``; every body has points).
- Samples of many lines are padded rows: ``X``, ``Y`` ``(L, n)`` float64 with NaN after
  the first ``counts[l]`` entries of row ``l``.
"""

from __future__ import annotations

import numpy as np

END_MARGIN = 0.15
"""Fraction of the body's extent left out at each end of a border before the line fit."""

MIN_BORDER_POINTS = 4
"""Fewest border samples a line fit accepts."""

IRLS_ITERATIONS = 10
"""Most Tukey-biweight IRLS steps per line fit."""

CONVERGED_PX = 1e-3
"""IRLS stops early once no line moves by more than this (px, at the far end of its samples)."""

TUKEY_C = 4.685
THEIL_SEN_SAMPLES = 32
"""Theil-Sen start on at most this many evenly spaced samples of a border (the IRLS
refinement then uses every sample)."""


def row_median(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``(L,)`` median of the first ``counts[l]`` entries of each row of ``values`` ``(L, n)``.

    The other entries must be NaN (they sort last). Rows with a count of 0 give NaN.
    """
    if values.shape[1] == 0:
        return np.full(values.shape[0], np.nan)
    ordered = np.sort(values, axis=1)
    rows = np.arange(values.shape[0])
    k = np.asarray(counts, dtype=np.int64)
    last = values.shape[1] - 1
    lo = np.minimum(np.maximum((k - 1) // 2, 0), last)  # np.clip costs more on small arrays
    hi = np.minimum(np.maximum(k // 2, 0), last)
    out = 0.5 * (ordered[rows, lo] + ordered[rows, hi])
    return np.where(k > 0, out, np.nan)


def padded(x: np.ndarray, y: np.ndarray, group: np.ndarray, groups: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Samples ``(x, y)`` sorted by ``group`` -> ``X``, ``Y`` ``(groups, n)`` NaN-padded rows
    and ``counts`` ``(groups,)`` int64."""
    counts = np.bincount(group, minlength=groups).astype(np.int64)
    width = max(int(counts.max()) if counts.size else 0, 1)
    first = np.cumsum(counts) - counts
    pos = np.arange(group.size) - first[group]
    big_x = np.full((groups, width), np.nan)
    big_y = np.full((groups, width), np.nan)
    big_x[group, pos] = x
    big_y[group, pos] = y
    return big_x, big_y, counts


def border_samples(along: np.ndarray, across: np.ndarray, starts: np.ndarray, lowest: bool,
                   half: np.ndarray | None = None, width: float = 1.0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One border of every body: per bin of ``along`` (bins ``width`` wide, 1 px for square
    pixels; central part only, see :data:`END_MARGIN`) the min (``lowest``) or max of
    ``across``, moved outwards by half a pixel (``half`` ``(B,)``: per body, default 0.5).
    Returns padded ``X`` (bin centres), ``Y`` (border positions) and ``counts``."""
    low, high = border_pair(along, across, starts, half, width, which=(lowest, not lowest))
    return low if lowest else high


Padded = tuple[np.ndarray, np.ndarray, np.ndarray]
"""``X``, ``Y`` ``(L, n)`` NaN-padded rows and ``counts`` ``(L,)`` (module docstring)."""


def border_pair(along: np.ndarray, across: np.ndarray, starts: np.ndarray,
                half: np.ndarray | None = None, width: float = 1.0,
                which: tuple[bool, bool] = (True, True)) -> tuple[Padded, Padded]:
    """The two opposite borders along ``along`` of every body, sharing the binning: the
    lowest and the highest ``across`` per bin (see :func:`border_samples`). ``which``
    says which of the two to compute (the other is returned empty)."""
    bodies = starts.size - 1
    body = np.repeat(np.arange(bodies), np.diff(starts))
    bins = np.round(along / width).astype(np.int64)
    lo = np.minimum.reduceat(bins, starts[:-1])
    hi = np.maximum.reduceat(bins, starts[:-1])
    span = hi - lo
    keep = (bins >= (lo + END_MARGIN * span)[body]) & (bins <= (hi - END_MARGIN * span)[body])
    offset = np.cumsum(span + 1) - (span + 1)
    slot = (offset[body] + bins - lo[body])[keep]
    total = int((span + 1).sum())
    slot_body = np.repeat(np.arange(bodies), span + 1)
    shift = 0.5 if half is None else half[slot_body]
    xs = (lo[slot_body] + np.arange(total) - offset[slot_body]).astype(np.float64) * width
    kept = across[keep]
    out: list[Padded] = []
    for lowest, wanted in zip((True, False), which, strict=True):
        if not wanted:
            out.append((np.zeros((bodies, 0)), np.zeros((bodies, 0)), np.zeros(bodies, dtype=np.int64)))
            continue
        if lowest:
            ext = np.full(total, np.inf)
            np.minimum.at(ext, slot, kept)
            ext -= shift
        else:
            ext = np.full(total, -np.inf)
            np.maximum.at(ext, slot, kept)
            ext += shift
        good = np.isfinite(ext)
        out.append(padded(xs[good], ext[good], slot_body[good], bodies))
    return out[0], out[1]


def _theil_sen(big_x: np.ndarray, big_y: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Theil-Sen ``(intercept, slope)`` per row on at most :data:`THEIL_SEN_SAMPLES` evenly
    spaced samples (slope: median pairwise slope; intercept: median(y) - slope median(x),
    scipy's ``theilslopes`` convention). Rows' x values must be strictly increasing."""
    k = THEIL_SEN_SAMPLES
    width = big_x.shape[1]
    j = np.arange(min(k, width))
    spread = np.round(j[None, :] * (counts[:, None] - 1) / max(k - 1, 1)).astype(np.int64)
    idx = np.clip(np.where(counts[:, None] > k, spread, j[None, :]), 0, width - 1)
    valid = j[None, :] < np.minimum(counts, k)[:, None]
    xs = np.where(valid, np.take_along_axis(big_x, idx, axis=1), np.nan)
    ys = np.where(valid, np.take_along_axis(big_y, idx, axis=1), np.nan)
    first, second = np.triu_indices(j.size, 1)
    ys_t, xs_t = ys.T.copy(), xs.T.copy()  # gathering whole rows is ~7x faster than columns
    slopes = ((ys_t[second] - ys_t[first]) / (xs_t[second] - xs_t[first])).T
    m = np.minimum(counts, k)
    slope = row_median(slopes, m * (m - 1) // 2)
    intercept = row_median(big_y, counts) - slope * row_median(big_x, counts)
    return intercept, slope


def _irls_step(x0: np.ndarray, y0: np.ndarray, valid: np.ndarray, counts: np.ndarray,
               line: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One Tukey-biweight weighted least-squares step for rows ``(L, n)`` (``x0``, ``y0``
    zero in the padding, ``valid`` the samples) from ``line`` = ``(a, b)``, the residual
    scale re-estimated (1.4826 MAD, at least 0.5 px). Returns the new ``a``, ``b`` and
    ``ok`` (False where fewer than :data:`MIN_BORDER_POINTS` samples keep a weight or the
    system is singular: the row keeps its line and stops)."""
    a, b = line
    res = np.where(valid, y0 - (a[:, None] + b[:, None] * x0), np.nan)
    med = row_median(res, counts)
    scale = np.maximum(1.4826 * row_median(np.abs(res - med[:, None]), counts), 0.5)
    u = res / (TUKEY_C * scale[:, None])
    w = np.where(valid & (np.abs(u) < 1.0), (1.0 - u * u) ** 2, 0.0)
    wx = w * x0
    s, sx, sy = w.sum(axis=1), wx.sum(axis=1), (w * y0).sum(axis=1)
    sxx, sxy = (wx * x0).sum(axis=1), (wx * y0).sum(axis=1)
    den = s * sxx - sx * sx
    ok = (np.count_nonzero(w, axis=1) >= MIN_BORDER_POINTS) & (den > 1e-9 * np.maximum(s * sxx, 1e-300))
    slope = np.where(ok, (s * sxy - sx * sy) / np.where(ok, den, 1.0), b)
    intercept = np.where(ok, (sy - slope * sx) / np.where(ok, s, 1.0), a)
    return intercept, slope, ok


def robust_lines(big_x: np.ndarray, big_y: np.ndarray, counts: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Robust lines ``y = a + b x`` of every row: Theil-Sen start, then Tukey-biweight IRLS
    (scale re-estimated each step); a row stops when fewer than :data:`MIN_BORDER_POINTS`
    samples keep a weight, or once it has converged (:data:`CONVERGED_PX`). Returns ``a``,
    ``b`` ``(L,)`` and the residuals ``(L, n)`` (NaN in the padding). Rows with fewer than
    2 samples give NaN."""
    with np.errstate(invalid="ignore", divide="ignore"):
        a, b = _theil_sen(big_x, big_y, counts)
        valid = np.isfinite(big_x)
        x0, y0 = np.where(valid, big_x, 0.0), np.where(valid, big_y, 0.0)
        span = np.abs(x0).max(axis=1, initial=0.0) + 1.0
        todo = np.flatnonzero(np.isfinite(a) & np.isfinite(b))
        for _ in range(IRLS_ITERATIONS):
            if todo.size == 0:
                break
            new_a, new_b, ok = _irls_step(x0[todo], y0[todo], valid[todo], counts[todo],
                                          (a[todo], b[todo]))
            change = np.abs(new_a - a[todo]) + np.abs(new_b - b[todo]) * span[todo]
            a[todo], b[todo] = new_a, new_b
            todo = todo[ok & (change >= CONVERGED_PX)]
        return a, b, big_y - (a[:, None] + b[:, None] * big_x)


def pad_to(arr: np.ndarray, width: int) -> np.ndarray:
    """``arr`` ``(L, n)`` padded with NaN columns to ``(L, width)``."""
    if arr.shape[1] >= width:
        return arr
    return np.concatenate([arr, np.full((arr.shape[0], width - arr.shape[1]), np.nan)], axis=1)
