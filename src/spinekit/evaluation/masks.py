"""Instance masks in a common frame: the union box of an image's :class:`~spinekit.masks.CropMask` s.

Per-image evaluation decodes every instance into its bounding-box crop
(:func:`spinekit.masks.crop_from_rle`, :func:`~spinekit.masks.crop_from_polygons`),
which costs O(box + runs) instead of O(H * W), then works in the smallest frame
holding them all: class maps (:func:`paint`) and a sparse instance-by-pixel matrix
(:func:`frame_matrix`) for IoUs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

from spinekit.masks import CropMask


def frame_of(windows: Sequence[CropMask]) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` of the union of the non-empty windows; (0, 0, 0, 0) if none."""
    boxes = [(w.top, w.left, w.bottom, w.right) for w in windows if w.crop.size]
    if not boxes:
        return 0, 0, 0, 0
    arr = np.array(boxes)
    return int(arr[:, 0].min()), int(arr[:, 1].min()), int(arr[:, 2].max()), int(arr[:, 3].max())


def paste(windows: Sequence[CropMask], frame: tuple[int, int, int, int]) -> np.ndarray:
    """``(N, fh, fw)`` bool masks of ``windows`` inside ``frame`` (``frame_of`` a superset of them)."""
    top, left, bottom, right = frame
    out = np.zeros((len(windows), bottom - top, right - left), dtype=bool)
    for k, w in enumerate(windows):
        if w.crop.size:
            out[k, w.top - top:w.bottom - top, w.left - left:w.right - left] = w.crop
    return out


def paint(windows: Sequence[CropMask], labels: Sequence[int], frame: tuple[int, int, int, int]) -> np.ndarray:
    """``(fh, fw)`` int64 class map: ``labels[k]`` where window ``k`` is set, in order (later wins)."""
    top, left, bottom, right = frame
    out = np.zeros((bottom - top, right - left), dtype=np.int64)
    for w, label in zip(windows, labels, strict=True):
        if w.crop.size:
            out[w.top - top:w.bottom - top, w.left - left:w.right - left][w.crop] = label
    return out


def frame_matrix(windows: Sequence[CropMask], frame: tuple[int, int, int, int]) -> sparse.csr_matrix:
    """``(N, fh*fw)`` CSR matrix of int32 ones: the windows' masks flattened row-major in ``frame``."""
    top, left, bottom, right = frame
    width = right - left
    columns, lengths = [], []
    for w in windows:
        rows, cols = np.nonzero(w.crop)
        columns.append((rows + (w.top - top)) * width + cols + (w.left - left))
        lengths.append(rows.size)
    indices = np.concatenate(columns).astype(np.int64) if columns else np.zeros(0, dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    return sparse.csr_matrix((np.ones(indices.size, dtype=np.int32), indices, indptr),
                             shape=(len(windows), (bottom - top) * width))
