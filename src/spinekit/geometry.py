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


def _orient(ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray,
            cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    """Cross product ``(b - a) x (c - a)`` (broadcast); > 0 when c is left of a->b."""
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)


def _on_segment(ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray,
                cx: np.ndarray, cy: np.ndarray, tol: float) -> np.ndarray:
    """For collinear c: True when c lies within the bounding box of segment a-b."""
    return ((np.minimum(ax, bx) - tol <= cx) & (cx <= np.maximum(ax, bx) + tol)
            & (np.minimum(ay, by) - tol <= cy) & (cy <= np.maximum(ay, by) + tol))


def count_self_intersections(ring: np.ndarray, block: int = 128) -> int:
    """Number of pairs of non-adjacent edges of a closed ring that cross or touch.

    O(N^2) pair test, vectorised in blocks of ``block`` rows so memory stays
    bounded (about ``block * N * 8`` bytes per temporary). ``ring`` is ``(N, 2)``
    without a closing repeat (see :func:`distinct_ring`).
    """
    n = len(ring)
    if n < 4:
        return 0
    ax, ay = ring[:, 0], ring[:, 1]
    bx, by = np.roll(ax, -1), np.roll(ay, -1)
    span = float(max(np.ptp(ax), np.ptp(ay), 1.0))
    eps, tol = 1e-9 * span * span, 1e-9 * span
    jdx = np.arange(n)[None, :]
    total = 0
    for start in range(0, n, block):
        idx = np.arange(start, min(start + block, n))[:, None]
        pair = (jdx > idx + 1) & ~((idx == 0) & (jdx == n - 1))
        if not pair.any():
            continue
        a_x, a_y, b_x, b_y = ax[idx], ay[idx], bx[idx], by[idx]
        c_x, c_y, d_x, d_y = ax[jdx], ay[jdx], bx[jdx], by[jdx]
        d1 = _orient(a_x, a_y, b_x, b_y, c_x, c_y)
        d2 = _orient(a_x, a_y, b_x, b_y, d_x, d_y)
        d3 = _orient(c_x, c_y, d_x, d_y, a_x, a_y)
        d4 = _orient(c_x, c_y, d_x, d_y, b_x, b_y)
        s1, s2, s3, s4 = (np.where(np.abs(d) <= eps, 0, np.sign(d)) for d in (d1, d2, d3, d4))
        hit = (s1 * s2 < 0) & (s3 * s4 < 0)
        hit |= (s1 == 0) & _on_segment(a_x, a_y, b_x, b_y, c_x, c_y, tol)
        hit |= (s2 == 0) & _on_segment(a_x, a_y, b_x, b_y, d_x, d_y, tol)
        hit |= (s3 == 0) & _on_segment(c_x, c_y, d_x, d_y, a_x, a_y, tol)
        hit |= (s4 == 0) & _on_segment(c_x, c_y, d_x, d_y, b_x, b_y, tol)
        total += int(np.count_nonzero(hit & pair))
    return total


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Convex hull ``(M, 2)`` counter-clockwise (Andrew's monotone chain); M < 3 if degenerate."""
    pts = [(float(x), float(y)) for x, y in np.unique(np.asarray(points, dtype=np.float64), axis=0)]
    if len(pts) < 3:
        return np.array(pts, dtype=np.float64).reshape(-1, 2)

    def half(seq: list[tuple[float, float]]) -> list[tuple[float, float]]:
        chain: list[tuple[float, float]] = []
        for p in seq:
            while len(chain) >= 2 and ((chain[-1][0] - chain[-2][0]) * (p[1] - chain[-2][1])
                                       - (chain[-1][1] - chain[-2][1]) * (p[0] - chain[-2][0])
                                       ) <= 0:
                chain.pop()
            chain.append(p)
        return chain

    lower, upper = half(pts), half(pts[::-1])
    return np.array(lower[:-1] + upper[:-1], dtype=np.float64).reshape(-1, 2)


def min_rect_aspect(hull: np.ndarray) -> float:
    """Long / short side of the minimum-area bounding rectangle of a convex hull (>= 1)."""
    if len(hull) < 3:
        return float("inf")
    edges = np.roll(hull, -1, axis=0) - hull
    angles = np.arctan2(edges[:, 1], edges[:, 0])[:, None]
    cos, sin = np.cos(angles), np.sin(angles)
    u = hull[None, :, 0] * cos + hull[None, :, 1] * sin
    v = -hull[None, :, 0] * sin + hull[None, :, 1] * cos
    width, height = np.ptp(u, axis=1), np.ptp(v, axis=1)
    best = int(np.argmin(width * height))
    short = min(width[best], height[best])
    return float("inf") if short <= 0 else float(max(width[best], height[best]) / short)


def clip_to_rect(ring: np.ndarray, width: float, height: float) -> np.ndarray:
    """Sutherland-Hodgman clip of a ring to ``[0, width] x [0, height]``; ``(M, 2)``."""
    out = [tuple(p) for p in np.asarray(ring, dtype=np.float64)]
    bounds = ((0, 0.0, 1.0), (0, float(width), -1.0), (1, 0.0, 1.0), (1, float(height), -1.0))
    for axis, limit, sign in bounds:
        if not out:
            break
        src, out = out, []
        for k, cur in enumerate(src):
            prev = src[k - 1]
            cur_in = sign * (cur[axis] - limit) >= 0
            prev_in = sign * (prev[axis] - limit) >= 0
            if cur_in != prev_in:
                t = (limit - prev[axis]) / (cur[axis] - prev[axis])
                out.append((prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])))
            if cur_in:
                out.append(cur)
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def inside_fraction(rings: list[np.ndarray], width: float, height: float) -> float:
    """Share of the rings' area (or of their vertices when area is 0) inside the image."""
    total = sum(polygon_area(r) for r in rings)
    if total > 0:
        inside = sum(polygon_area(clip_to_rect(r, width, height)) for r in rings)
        return float(min(inside / total, 1.0))
    pts = np.concatenate(rings, axis=0)
    ok = (pts[:, 0] >= 0) & (pts[:, 0] <= width) & (pts[:, 1] >= 0) & (pts[:, 1] <= height)
    return float(np.mean(ok))


def ring_centroid(rings: list[np.ndarray]) -> tuple[float, float]:
    """Area-weighted centroid of the rings (vertex mean when the area is 0)."""
    sx = sy = total = 0.0
    for ring in rings:
        x, y = ring[:, 0], ring[:, 1]
        xn, yn = np.roll(x, -1), np.roll(y, -1)
        cross = x * yn - xn * y
        signed = float(cross.sum()) / 2.0
        if abs(signed) > 1e-12:
            sx += float(((x + xn) * cross).sum()) / 6.0
            sy += float(((y + yn) * cross).sum()) / 6.0
            total += signed
    if abs(total) > 1e-12:
        return sx / total, sy / total
    pts = np.concatenate(rings, axis=0)
    return float(pts[:, 0].mean()), float(pts[:, 1].mean())


def box_iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``(K, 4)`` float boxes ``(x0, y0, x1, y1)`` -> ``(K, K)`` float64."""
    x0 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    y0 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x1 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    y1 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area[:, None] + area[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def mask_iou(rings_a: list[np.ndarray], rings_b: list[np.ndarray]) -> float:
    """IoU of the filled rings of two instances, rasterised in their joint bounding window."""
    pts = np.concatenate(rings_a + rings_b, axis=0)
    origin = np.floor(pts.min(axis=0)) - 1.0
    size = np.ceil(pts.max(axis=0) - origin).astype(int) + 2
    width, height = int(size[0]), int(size[1])
    mask_a = rasterize([r - origin for r in rings_a], height, width).astype(bool)
    mask_b = rasterize([r - origin for r in rings_b], height, width).astype(bool)
    union = int(np.count_nonzero(mask_a | mask_b))
    return 0.0 if union == 0 else int(np.count_nonzero(mask_a & mask_b)) / union
