"""Target encoding and decoding of the vertebra landmark model (:mod:`spinekit.models.landmarks`).

Coordinates: input pixels are continuous (pixel ``c`` spans ``[c, c + 1)``), the
output map has stride ``s`` (4) and an input point ``p`` lies at map position
``p / s``. For one vertebra with corners ``(4, 2)`` (top-left, top-right,
bottom-left, bottom-right as seen on the image) the centre is the mean corner
``c``; its map cell is ``q = floor(c / s)`` (clipped to the map). The targets at
cell ``q`` are

- heatmap: a Gaussian ``exp(-|x - q|^2 / (2 sigma^2))`` over map cells, 1 at
  ``q``, element-wise maximum over vertebrae of the same class, with
  ``sigma = (2 r + 1) / 6`` and ``r`` the largest shift (map cells, equal in x
  and y) of the vertebra's box that keeps IoU >= ``min_overlap`` (0.7) with the
  unshifted box (:func:`gaussian_radius`, the rule of CenterNet, Zhou et al. 2019);
- offset ``c / s - q`` (sub-cell position of the centre, in [0, 1) inside the map);
- corners ``(corner - c) / s`` (4 x 2 values, map units).

Decoding inverts it exactly: ``centre = (q + offset) * s``, ``corner = centre +
corners * s``, so encoding then decoding returns the corners (up to float rounding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional

from spinekit.clinical.vertebrae import spine_order

STRIDE = 4


def gaussian_radius(width: float, height: float, min_overlap: float = 0.7) -> float:
    """Largest ``r`` such that a ``width x height`` box shifted by ``r`` in x and in y keeps
    IoU >= ``min_overlap`` with itself.

    IoU of the shifted box is ``a / (2 w h - a)`` with ``a = (w - r)(h - r)``; requiring it
    ``>= t`` gives ``(w - r)(h - r) >= k w h`` with ``k = 2 t / (1 + t)``, the smaller root of
    ``r^2 - (w + h) r + (1 - k) w h = 0``.
    """
    w, h = max(float(width), 0.0), max(float(height), 0.0)
    k = 2.0 * min_overlap / (1.0 + min_overlap)
    disc = max((w + h) ** 2 - 4.0 * (1.0 - k) * w * h, 0.0)
    return max(0.0, ((w + h) - math.sqrt(disc)) / 2.0)


@dataclass
class EncodedTargets:
    """Training targets of one image: ``heatmap`` ``(K, h, w)``, per vertebra ``cells`` ``(N, 2)``
    int64 (x, y map cell), ``classes`` ``(N,)`` int64 (0-based channel), ``offsets`` ``(N, 2)``
    and ``corners`` ``(N, 8)`` float32."""

    heatmap: torch.Tensor
    cells: torch.Tensor
    classes: torch.Tensor
    offsets: torch.Tensor
    corners: torch.Tensor


def encode_targets(corners: torch.Tensor, labels: torch.Tensor, *, num_classes: int,
                   map_size: tuple[int, int], stride: int = STRIDE) -> EncodedTargets:
    """Targets of ``corners`` ``(N, 4, 2)`` input pixels and ``labels`` ``(N,)`` (1..K), see module doc."""
    height, width = map_size
    device = corners.device
    pts = corners.detach().to(torch.float32).reshape(-1, 4, 2)
    centre = pts.mean(dim=1)
    scaled = centre / stride
    cells = scaled.floor().to(torch.int64)
    cells[:, 0].clamp_(0, width - 1)
    cells[:, 1].clamp_(0, height - 1)
    heatmap = torch.zeros((num_classes, height, width), dtype=torch.float32, device=device)
    ys = torch.arange(height, dtype=torch.float32, device=device)[:, None]
    xs = torch.arange(width, dtype=torch.float32, device=device)[None, :]
    extent = (pts.amax(dim=1) - pts.amin(dim=1)) / stride
    classes = (labels.to(device, torch.int64) - 1).clamp(0, num_classes - 1)
    for i in range(len(pts)):
        sigma = (2.0 * math.floor(gaussian_radius(float(extent[i, 0]), float(extent[i, 1]))) + 1.0) / 6.0
        blob = torch.exp(-((xs - cells[i, 0]) ** 2 + (ys - cells[i, 1]) ** 2) / (2.0 * sigma * sigma))
        heatmap[classes[i]] = torch.maximum(heatmap[classes[i]], blob)
    return EncodedTargets(heatmap=heatmap, cells=cells, classes=classes,
                          offsets=scaled - cells.to(torch.float32),
                          corners=((pts - centre[:, None, :]) / stride).reshape(-1, 8))


def decode_points(cells: torch.Tensor, offsets: torch.Tensor, corners: torch.Tensor,
                  stride: int = STRIDE) -> torch.Tensor:
    """Corners ``(N, 4, 2)`` input pixels from ``cells`` ``(N, 2)``, ``offsets`` ``(N, 2)`` and
    ``corners`` ``(N, 8)``."""
    centre = (cells.to(torch.float32) + offsets.float()) * stride
    return centre[:, None, :] + corners.float().reshape(-1, 4, 2) * stride


@dataclass
class Peaks:
    """The ``count`` best heatmap peaks of one image: ``cells`` ``(n, 2)`` (x, y), ``classes``
    ``(n,)`` 0-based, ``scores`` ``(n,)``; ``n = min(count, map cells)``."""

    cells: torch.Tensor
    classes: torch.Tensor
    scores: torch.Tensor


def top_peaks(heat: torch.Tensor, count: int) -> Peaks:
    """Max-pool NMS (3 x 3) of a ``(K, h, w)`` probability map, then the ``count`` best cells.

    Cells that are not local maxima count as score 0, so when fewer than ``count``
    peaks exist, the rest are taken at score 0 (the caller flags them as weak).
    """
    height, width = heat.shape[-2:]
    pooled = functional.max_pool2d(heat[None], 3, stride=1, padding=1)[0]
    peaks = torch.where(pooled == heat, heat, torch.zeros_like(heat))
    best, cls = peaks.max(dim=0)  # one class per cell
    n = min(count, height * width)
    scores, flat = best.flatten().topk(n)
    cells = torch.stack([flat % width, flat // width], dim=1)
    return Peaks(cells=cells, classes=cls.flatten()[flat], scores=scores)


def order_along_spine(points: torch.Tensor) -> torch.Tensor:
    """Indices ``(N,)`` ordering vertebra corners ``(N, 4, 2)`` along the spine, head (top) first."""
    centres = points.detach().float().mean(dim=1).cpu().numpy().astype(np.float64)
    if len(centres) == 0:
        return torch.zeros(0, dtype=torch.int64)
    order = spine_order(centres)
    if len(order) > 1 and centres[order[0], 1] > centres[order[-1], 1]:
        order = order[::-1]
    return torch.from_numpy(np.ascontiguousarray(order)).to(torch.int64)
