"""Polygon and mask geometry shared by every stage (pure numpy / Pillow / scikit-image).

Polygons are ``(N, 2)`` float arrays of ``(x, y)`` pixel coordinates or COCO
flat lists ``[x1, y1, x2, y2, ...]``. Masks are ``(H, W)`` uint8 arrays of 0/1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def as_points(flat: Sequence[float]) -> np.ndarray:
    """COCO flat list -> ``(N, 2)`` float64 array."""
    arr = np.asarray(flat, dtype=np.float64)
    return arr.reshape(-1, 2)


def as_flat(points: np.ndarray | Sequence[Sequence[float]]) -> list[float]:
    """``(N, 2)`` points -> COCO flat list of Python floats (rounded to 0.01 px)."""
    arr = np.asarray(points, dtype=np.float64).reshape(-1)
    return [round(float(v), 2) for v in arr]


def polygon_area(points: np.ndarray) -> float:
    """Unsigned shoelace area of a simple or self-intersecting ring (pixels^2)."""
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) < 3:
        return 0.0
    x, y = pts[:, 0], pts[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def bbox_of(points: np.ndarray) -> list[float]:
    """COCO ``[x, y, w, h]`` of a point set."""
    pts = np.asarray(points, dtype=np.float64)
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return [round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2), round(float(y1 - y0), 2)]


def rectangle_polygon(p0: Sequence[float], p1: Sequence[float]) -> np.ndarray:
    """Axis-aligned rectangle from two opposite corners, clockwise from top-left."""
    x0, x1 = sorted((float(p0[0]), float(p1[0])))
    y0, y1 = sorted((float(p0[1]), float(p1[1])))
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def circle_polygon(centre: Sequence[float], rim: Sequence[float], n: int = 32) -> np.ndarray:
    """Regular ``n``-gon approximating the circle through ``rim`` around ``centre``."""
    r = float(np.hypot(rim[0] - centre[0], rim[1] - centre[1]))
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([centre[0] + r * np.cos(t), centre[1] + r * np.sin(t)], axis=1)


def rasterize(polygons: Sequence[np.ndarray | Sequence[float]], height: int, width: int) -> np.ndarray:
    """Fill polygons (point arrays or COCO flat lists) into one ``(H, W)`` uint8 0/1 mask.

    Pixel ``(r, c)`` covers ``[c, c+1) x [r, r+1)`` and is set when its centre
    ``(c + 0.5, r + 0.5)`` lies inside a polygon, so an axis-aligned rectangle
    from ``(2, 2)`` to ``(10, 7)`` fills exactly 8 x 5 pixels.
    """
    from skimage.draw import polygon as fill_polygon

    mask = np.zeros((int(height), int(width)), dtype=np.uint8)
    for poly in polygons:
        pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2) - 0.5
        if len(pts) >= 3:
            rows, cols = fill_polygon(pts[:, 1], pts[:, 0], shape=mask.shape)
            mask[rows, cols] = 1
    return mask


def mask_to_polygons(mask: np.ndarray, *, min_area: float = 1.0, tolerance: float = 0.5) -> list[np.ndarray]:
    """Outer contours of the connected parts of a 0/1 mask, largest first.

    Uses scikit-image's marching squares on a zero-padded mask, so contours run
    along pixel edges (half-pixel offsets) and rasterise back to the same mask up
    to boundary pixels. ``tolerance`` is the Douglas-Peucker simplification in
    pixels (0 keeps every vertex). Parts smaller than ``min_area`` are dropped.
    """
    from skimage import measure

    padded = np.pad(np.asarray(mask, dtype=np.uint8) > 0, 1)
    labelled = measure.label(padded, connectivity=2)
    out: list[tuple[float, np.ndarray]] = []
    for region in measure.regionprops(labelled):
        if region.area < min_area:
            continue
        part = labelled == region.label
        contours = measure.find_contours(part.astype(np.float32), 0.5)
        if not contours:
            continue
        ring = max(contours, key=len)
        if tolerance > 0:
            ring = measure.approximate_polygon(ring, tolerance=tolerance)
        if len(ring) > 3 and np.allclose(ring[0], ring[-1]):
            ring = ring[:-1]
        pts = np.stack([ring[:, 1], ring[:, 0]], axis=1)  # (row, col) -> (x, y); pad offset
        pts = pts - 1.0 + 0.5  # undo padding, move to pixel-edge convention
        if len(pts) >= 3:
            out.append((float(region.area), pts))
    out.sort(key=lambda item: -item[0])
    return [pts for _, pts in out]
