"""Instance masks as bounding windows: RLE and polygon -> window, windows -> a common frame.

A :class:`Window` is the part of an ``(H, W)`` image mask inside the mask's
bounding box: ``mask`` ``(h, w)`` bool with its top-left pixel at (``top``,
``left``). Decoding an RLE or rasterising a polygon into its window costs
O(window + runs) instead of O(H * W), which is what makes per-image evaluation of
many small instances (vertebrae) in large images cheap.

COCO compressed RLE (``counts`` a string) is decoded here with numpy, the
format of pycocotools' ``rleFrString``: each run length is a little-endian
sequence of 5-bit groups stored as ``chr(48 + bits)`` with 0x20 marking that
more groups follow and 0x10 of the last group the sign; from the fourth run on
a value is stored as the difference to the run two places before. Runs
alternate 0s and 1s, starting with 0s, in column-major (Fortran) pixel order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from spinekit.geometry import rasterize


@dataclass(frozen=True)
class Window:
    """``mask`` ``(h, w)`` bool placed with its top-left pixel at (``top``, ``left``) of the image."""

    top: int
    left: int
    mask: np.ndarray

    @property
    def bottom(self) -> int:
        return self.top + int(self.mask.shape[0])

    @property
    def right(self) -> int:
        return self.left + int(self.mask.shape[1])

    @property
    def empty(self) -> bool:
        return not bool(self.mask.any())


EMPTY = Window(0, 0, np.zeros((0, 0), dtype=bool))


def rle_counts(rle: Mapping[str, Any]) -> np.ndarray:
    """Run lengths ``(R,)`` int64 of a COCO RLE (compressed string/bytes or uncompressed list)."""
    counts = rle["counts"]
    if isinstance(counts, list):
        return np.asarray(counts, dtype=np.int64)
    raw = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    data = np.frombuffer(raw, dtype=np.uint8).astype(np.int64) - 48
    if data.size == 0:
        return np.zeros(0, dtype=np.int64)
    last = np.flatnonzero((data & 0x20) == 0)  # the last 5-bit group of every value
    if last.size == 0 or last[-1] != data.size - 1:
        raise ValueError("truncated RLE counts string")
    first = np.concatenate([[0], last[:-1] + 1])
    lengths = last - first + 1
    value_of = np.repeat(np.arange(last.size), lengths)
    shift = 5 * (np.arange(data.size) - first[value_of])
    values = np.zeros(last.size, dtype=np.int64)
    np.add.at(values, value_of, (data & 0x1F) << shift)
    negative = (data[last] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * lengths[negative])
    values[1::2] = np.cumsum(values[1::2])  # runs 3, 5, ... are stored relative to 1, 3, ...
    values[2::2] = np.cumsum(values[2::2])  # runs 4, 6, ... relative to 2, 4, ...
    return values


def rle_window(rle: Mapping[str, Any]) -> Window:
    """The bounding window of a COCO RLE mask (``size`` = [H, W]); :data:`EMPTY` when no pixel is set."""
    height = int(rle["size"][0])
    counts = rle_counts(rle)
    ends = np.cumsum(counts)
    starts = ends - counts
    on_start, on_end = starts[1::2], ends[1::2]
    keep = on_end > on_start
    on_start, on_end = on_start[keep], on_end[keep]
    if on_start.size == 0:
        return EMPTY
    col_s, row_s = np.divmod(on_start, height)
    col_e, row_e = np.divmod(on_end - 1, height)
    left, right = int(col_s.min()), int(col_e.max()) + 1
    if np.any(col_s != col_e):  # a run wraps into the next column: the window spans all rows
        top, bottom = 0, height
    else:
        top, bottom = int(row_s.min()), int(row_e.max()) + 1
    rows, cols = bottom - top, right - left
    # column-major index in the window; a run stays contiguous there (wrapping ones only when rows == H)
    begin = (col_s - left) * rows + row_s - top
    size = rows * cols
    delta = (np.bincount(begin, minlength=size + 1)
             - np.bincount(begin + (on_end - on_start), minlength=size + 1))
    flat = np.cumsum(delta[:size]) > 0
    return Window(top, left, flat.reshape(cols, rows).T)


def polygon_window(rings: Sequence[Sequence[float]], height: int, width: int) -> Window:
    """Rings (COCO flat lists or ``(N, 2)`` x, y arrays) filled as :func:`spinekit.geometry.rasterize`.

    Rasterised in their bounding box clipped to the ``height x width`` image, so
    the window equals that part of the full-image rasterisation.
    """
    polys = [np.asarray(r, dtype=np.float64).reshape(-1, 2) for r in rings]
    polys = [p for p in polys if len(p) >= 3]
    if not polys:
        return EMPTY
    pts = np.concatenate(polys)
    left, top = (max(int(v), 0) for v in np.floor(pts.min(axis=0)))
    right = min(int(np.ceil(pts[:, 0].max())) + 1, int(width))
    bottom = min(int(np.ceil(pts[:, 1].max())) + 1, int(height))
    if right <= left or bottom <= top:
        return EMPTY
    origin = np.array([left, top], dtype=np.float64)
    mask = rasterize([p - origin for p in polys], bottom - top, right - left).astype(bool)
    return Window(top, left, mask)


def frame_of(windows: Sequence[Window]) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` of the union of the non-empty windows; (0, 0, 0, 0) if none."""
    boxes = [(w.top, w.left, w.bottom, w.right) for w in windows if w.mask.size]
    if not boxes:
        return 0, 0, 0, 0
    arr = np.array(boxes)
    return int(arr[:, 0].min()), int(arr[:, 1].min()), int(arr[:, 2].max()), int(arr[:, 3].max())


def paste(windows: Sequence[Window], frame: tuple[int, int, int, int]) -> np.ndarray:
    """``(N, fh, fw)`` bool masks of ``windows`` inside ``frame`` (``frame_of`` a superset of them)."""
    top, left, bottom, right = frame
    out = np.zeros((len(windows), bottom - top, right - left), dtype=bool)
    for k, w in enumerate(windows):
        if w.mask.size:
            out[k, w.top - top:w.bottom - top, w.left - left:w.right - left] = w.mask
    return out


def paint(windows: Sequence[Window], labels: Sequence[int], frame: tuple[int, int, int, int]) -> np.ndarray:
    """``(fh, fw)`` int64 class map: ``labels[k]`` where window ``k`` is set, in order (later wins)."""
    top, left, bottom, right = frame
    out = np.zeros((bottom - top, right - left), dtype=np.int64)
    for w, label in zip(windows, labels, strict=True):
        if w.mask.size:
            out[w.top - top:w.bottom - top, w.left - left:w.right - left][w.mask] = label
    return out


def frame_matrix(windows: Sequence[Window], frame: tuple[int, int, int, int]) -> sparse.csr_matrix:
    """``(N, fh*fw)`` CSR matrix of int32 ones: the windows' masks flattened row-major in ``frame``."""
    top, left, bottom, right = frame
    width = right - left
    columns, lengths = [], []
    for w in windows:
        rows, cols = np.nonzero(w.mask)
        columns.append((rows + (w.top - top)) * width + cols + (w.left - left))
        lengths.append(rows.size)
    indices = np.concatenate(columns).astype(np.int64) if columns else np.zeros(0, dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    return sparse.csr_matrix((np.ones(indices.size, dtype=np.int32), indices, indptr),
                             shape=(len(windows), (bottom - top) * width))
