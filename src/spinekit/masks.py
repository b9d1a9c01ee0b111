"""Instance masks kept as their bounding-box crop, decoded from COCO RLE or polygons.

Shared by the clinical read-outs, the per-image evaluation and COCO ingest (one RLE
string decoder). They only need the pixels of each instance, never the full image: a
vertebra of an AASCE radiograph covers about 0.3 % of its 2 megapixels. A
:class:`CropMask` holds the ``(h, w)`` bool crop of one instance and its place in the
``(H, W)`` image; :func:`crop_from_rle` decodes a compressed COCO RLE straight into that
crop (the run-length string is parsed with numpy and only the runs are expanded, never
the full image), :func:`crop_from_polygons` rasterises polygons into their own box.

Coordinates follow :mod:`spinekit.geometry`: pixel ``(r, c)`` covers ``[c, c+1) x [r, r+1)``;
centroids are the means of the pixel indices (as :mod:`spinekit.clinical.vertebrae` has
always used them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from spinekit.geometry import rasterize


@dataclass(frozen=True)
class CropMask:
    """One instance mask: ``crop`` ``(h, w)`` bool, its top-left pixel ``(top, left)`` in the
    image and the image size ``(height, width)``. An empty mask has a ``(0, 0)`` crop.
    ``connected``: True when the mask is known to be one 8-connected component (set by
    :func:`crop_from_rle` when every column holds one run touching the next column's; it
    lets :mod:`~spinekit.clinical.endplates` skip component labelling), None when unknown."""

    crop: np.ndarray
    top: int
    left: int
    height: int
    width: int
    connected: bool | None = None

    @classmethod
    def from_full(cls, mask: np.ndarray) -> CropMask:
        """Crop of a full ``(H, W)`` mask (nonzero = inside). Raises ValueError when not 2-D."""
        arr = np.asarray(mask)
        if arr.ndim != 2:
            raise ValueError(f"mask must be 2-D (H, W), got shape {arr.shape}")
        rows = np.flatnonzero(arr.any(axis=1))
        if rows.size == 0:
            return cls(np.zeros((0, 0), dtype=bool), 0, 0, arr.shape[0], arr.shape[1])
        cols = np.flatnonzero(arr.any(axis=0))
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        return cls(arr[r0:r1, c0:c1] != 0, r0, c0, arr.shape[0], arr.shape[1])

    @property
    def empty(self) -> bool:
        """True when the mask has no pixel."""
        return not self.crop.any()

    @property
    def bottom(self) -> int:
        """One past the crop's last image row."""
        return self.top + int(self.crop.shape[0])

    @property
    def right(self) -> int:
        """One past the crop's last image column."""
        return self.left + int(self.crop.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        """Image size ``(height, width)``."""
        return (self.height, self.width)

    @cached_property
    def _sums(self) -> tuple[int, float, float]:
        """Pixel count and the sums of the pixels' column and row indices (image frame)."""
        cols = self.crop.sum(axis=0, dtype=np.int64)
        rows = self.crop.sum(axis=1, dtype=np.int64)
        n = int(cols.sum())
        sx = float(cols @ np.arange(self.left, self.left + cols.size, dtype=np.float64))
        sy = float(rows @ np.arange(self.top, self.top + rows.size, dtype=np.float64))
        return n, sx, sy

    def area(self) -> int:
        """Number of pixels."""
        return self._sums[0]

    def pixels(self) -> tuple[np.ndarray, np.ndarray]:
        """Image ``(xs, ys)`` int64 column and row indices of the mask's pixels."""
        ys, xs = np.nonzero(self.crop)
        return xs + self.left, ys + self.top

    def centroid(self) -> tuple[float, float] | None:
        """Mean pixel index ``(x, y)``, None when empty."""
        n, sx, sy = self._sums
        return (sx / n, sy / n) if n else None

    def box(self) -> tuple[int, int, int, int]:
        """``(top, bottom, left, right)`` half-open pixel bounds."""
        return self.top, self.top + self.crop.shape[0], self.left, self.left + self.crop.shape[1]

    def full(self) -> np.ndarray:
        """The full ``(H, W)`` bool mask (allocates the whole image; for drawing and tests)."""
        out = np.zeros((self.height, self.width), dtype=bool)
        out[self.top : self.top + self.crop.shape[0], self.left : self.left + self.crop.shape[1]] = self.crop
        return out


def as_crop(mask: np.ndarray | CropMask) -> CropMask:
    """A :class:`CropMask` for a full mask or a CropMask (returned as is)."""
    return mask if isinstance(mask, CropMask) else CropMask.from_full(mask)


def crop_iou(a: CropMask, b: CropMask) -> float:
    """IoU of two masks of the same image, computed on their joint bounding box."""
    ta, ba, la, ra = a.box()
    tb, bb, lb, rb = b.box()
    if ba <= tb or bb <= ta or ra <= lb or rb <= la:
        return 0.0
    r0, r1, c0, c1 = min(ta, tb), max(ba, bb), min(la, lb), max(ra, rb)
    ca = np.zeros((r1 - r0, c1 - c0), dtype=bool)
    cb = np.zeros_like(ca)
    ca[ta - r0 : ba - r0, la - c0 : ra - c0] = a.crop
    cb[tb - r0 : bb - r0, lb - c0 : rb - c0] = b.crop
    union = int(np.count_nonzero(ca | cb))
    return float(np.count_nonzero(ca & cb)) / union if union else 0.0


def rle_counts(counts: str | bytes) -> np.ndarray:
    """Run lengths ``(K,)`` int64 of a COCO compressed RLE string (the pycocotools code:
    5 bits per character plus a continuation bit, sign-extended, runs after the third
    stored as the difference to the run two before). Raises ValueError on a bad string."""
    raw = np.frombuffer(counts.encode("ascii") if isinstance(counts, str) else bytes(counts),
                        dtype=np.uint8).astype(np.int64) - 48
    if raw.size == 0:
        return np.zeros(0, dtype=np.int64)
    if raw.min() < 0 or raw.max() > 63:
        raise ValueError("invalid RLE character: outside the COCO alphabet")
    more = (raw & 0x20) != 0
    if more[-1]:
        raise ValueError("truncated RLE string: it ends inside a number")
    ends = np.flatnonzero(~more)
    group = np.repeat(np.arange(ends.size), np.diff(np.concatenate([[-1], ends])))
    starts = np.concatenate([[0], ends[:-1] + 1])
    if int((ends - starts).max()) >= 12:
        raise ValueError("invalid RLE string: a run length of over 60 bits")
    shift = 5 * (np.arange(raw.size) - starts[group])
    values = np.add.reduceat((raw & 0x1F) << shift, starts)  # disjoint bits: sum == or
    negative = (raw[ends] & 0x10) != 0
    values[negative] -= np.int64(1) << (5 * (ends[negative] - starts[negative] + 1))
    out = values.copy()
    if out.size > 3:
        for first in (3, 4):  # x[m] += x[m - 2] for m > 2: running sums per parity
            idx = np.arange(first, out.size, 2)
            out[idx] = out[first - 2] + np.cumsum(values[idx])
    return out


def check_rle(rle: Any, height: int | None = None, width: int | None = None) -> tuple[int, int]:
    """Validate a COCO RLE before any decoder sees it; returns its ``(H, W)``.

    ``size`` must be two positive integers (equal to ``height``/``width`` when given),
    ``counts`` a list of non-negative integers or a string in the COCO alphabet, and the
    runs must sum to exactly ``H * W``. Raises ValueError naming the problem.
    """
    if not isinstance(rle, Mapping):
        raise ValueError("RLE must be an object with 'size' and 'counts'")
    size = rle.get("size")
    if not (isinstance(size, list) and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 1_000_000 for v in size)):
        raise ValueError(f"RLE 'size' must be [height, width] positive integers, got {str(size)[:40]}")
    h, w = int(size[0]), int(size[1])
    if (height, width) != (None, None) and (h, w) != (height, width):
        raise ValueError(f"RLE size [{h}, {w}] differs from the image size [{height}, {width}]")
    raw = rle.get("counts")
    if isinstance(raw, str):
        try:
            raw.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError("invalid RLE character: outside the COCO alphabet") from None
        counts = rle_counts(raw)
    elif isinstance(raw, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
        counts = np.asarray(raw, dtype=object if any(abs(v) > 2**62 for v in raw) else np.int64)
    else:
        raise ValueError("RLE 'counts' must be a string or a list of integers")
    if counts.size and counts.min() < 0:
        raise ValueError("RLE has a negative run length")
    total = int(counts.sum()) if counts.size else 0
    if total != h * w:
        raise ValueError(f"RLE runs sum to {total}, not {h}x{w} = {h * w} pixels")
    return h, w


def crop_from_rle(rle: Mapping[str, Any]) -> CropMask:
    """Decode a COCO RLE (``{"size": [H, W], "counts": str | list}``) into its crop.

    Only the foreground runs are expanded (column-major, as COCO stores masks), into an
    array the size of the instance's box. Raises ValueError for a malformed RLE.
    """
    height, width = (int(v) for v in rle["size"])
    raw = rle["counts"]
    counts = np.asarray(raw, dtype=np.int64) if isinstance(raw, list) else rle_counts(raw)
    if np.any(counts < 0) or int(counts.sum()) != height * width:
        raise ValueError(f"RLE runs sum to {int(counts.sum())}, not {height}x{width}")
    ends = np.cumsum(counts)
    fg = counts[1::2] > 0  # odd runs are foreground
    e = ends[1::2][fg]
    s = e - counts[1::2][fg]
    if s.size == 0:
        return CropMask(np.zeros((0, 0), dtype=bool), 0, 0, height, width)
    seg_col, seg_r0, seg_r1 = _segments(s, e, height)
    top, bottom = int(seg_r0.min()), int(seg_r1.max())
    left, right = int(seg_col[0]), int(seg_col[-1]) + 1  # segments are in column order
    cols = right - left
    size = (bottom - top + 1) * cols
    diff = (np.bincount((seg_r0 - top) * cols + seg_col - left, minlength=size)
            - np.bincount((seg_r1 - top) * cols + seg_col - left, minlength=size))
    crop = np.cumsum(diff.reshape(bottom - top + 1, cols), axis=0)[:-1] > 0
    # one run per column, each 8-adjacent to the next column's: a single component
    connected = seg_col.size == cols and bool(np.all(seg_r0[1:] <= seg_r1[:-1])
                                              and np.all(seg_r0[:-1] <= seg_r1[1:]))
    return CropMask(crop, top, left, height, width, connected=connected or None)


def _segments(s: np.ndarray, e: np.ndarray, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Foreground runs ``[s, e)`` ``(K,)`` int64 of a column-major mask with ``height`` rows
    split at column ends: per segment its column and half-open row range, in mask order."""
    col0, col1 = s // height, (e - 1) // height
    if np.array_equal(col0, col1):  # no run wraps into the next column (the usual case)
        return col0, s - col0 * height, e - col0 * height
    n_cols = col1 - col0 + 1
    seg_run = np.repeat(np.arange(s.size), n_cols)
    seg_col = col0[seg_run] + (np.arange(seg_run.size) - np.repeat(np.cumsum(n_cols) - n_cols, n_cols))
    seg_r0 = np.where(seg_col == col0[seg_run], s[seg_run] - seg_col * height, 0)
    seg_r1 = np.where(seg_col == col1[seg_run], e[seg_run] - seg_col * height, height)
    return seg_col, seg_r0, seg_r1


def crop_from_polygons(polygons: Sequence[np.ndarray | Sequence[float]], height: int,
                       width: int) -> CropMask:
    """Rasterise polygons (``(N, 2)`` arrays or flat COCO lists, image pixels) into their
    box clipped to the ``(height, width)`` image, same pixel rule as :func:`rasterize`."""
    rings = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons]
    rings = [r for r in rings if len(r) >= 3 and np.all(np.isfinite(r))]
    if not rings:
        return CropMask(np.zeros((0, 0), dtype=bool), 0, 0, height, width)
    pts = np.concatenate(rings)
    c0 = int(np.clip(np.floor(pts[:, 0].min()), 0, width))
    c1 = int(np.clip(np.ceil(pts[:, 0].max()) + 1, 0, width))
    r0 = int(np.clip(np.floor(pts[:, 1].min()), 0, height))
    r1 = int(np.clip(np.ceil(pts[:, 1].max()) + 1, 0, height))
    if r1 <= r0 or c1 <= c0:
        return CropMask(np.zeros((0, 0), dtype=bool), 0, 0, height, width)
    shift = np.array([c0, r0], dtype=np.float64)
    crop = rasterize([r - shift for r in rings], r1 - r0, c1 - c0) != 0
    trimmed, top, left = _trim(crop, r0, c0)
    return CropMask(trimmed, top, left, height, width)


def _trim(crop: np.ndarray, top: int, left: int) -> tuple[np.ndarray, int, int]:
    """``crop`` cut to its nonzero box, and the new top-left (empty -> a (0, 0) crop)."""
    rows = np.flatnonzero(crop.any(axis=1))
    if rows.size == 0:
        return np.zeros((0, 0), dtype=bool), 0, 0
    cols = np.flatnonzero(crop.any(axis=0))
    r0, c0 = int(rows[0]), int(cols[0])
    return crop[r0 : int(rows[-1]) + 1, c0 : int(cols[-1]) + 1], top + r0, left + c0
