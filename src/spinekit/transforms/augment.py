"""Training augmentations: intensity jitter and a small random affine.

The affine is drawn in *output* pixel coordinates (after the resize plan) and
applied to the image tensor with ``grid_sample`` and to the instance polygons and
corners *before* they are rasterised, so image, masks, boxes (taken from the
masks) and corners move together exactly. Coordinates are continuous: pixel
``(r, c)`` covers ``[c, c+1) x [r, r+1)``, as in :func:`spinekit.geometry.rasterize`
and ``grid_sample(align_corners=False)``.

Everything is off by default (all ranges 0); the config keys are
``data.aug_brightness``, ``data.aug_contrast``, ``data.aug_gamma``,
``data.aug_rotate_deg``, ``data.aug_scale`` and ``data.aug_translate``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    """Ranges of the random transforms (0 = off).

    ``brightness``: additive shift uniform in ``[-b, b]`` (image in [0, 1]).
    ``contrast``: factor uniform in ``[1 - c, 1 + c]`` around the image mean.
    ``gamma``: exponent uniform in ``[1 - g, 1 + g]``.
    ``rotate_deg``: rotation about the image centre, uniform in ``[-r, r]`` degrees.
    ``scale``: zoom factor uniform in ``[1 - s, 1 + s]``.
    ``translate``: shift uniform in ``[-t, t]`` times the width (x) and height (y).
    """

    brightness: float = 0.0
    contrast: float = 0.0
    gamma: float = 0.0
    rotate_deg: float = 0.0
    scale: float = 0.0
    translate: float = 0.0

    @property
    def affine(self) -> bool:
        """Whether a geometric transform is drawn."""
        return bool(self.rotate_deg or self.scale or self.translate)

    @property
    def intensity(self) -> bool:
        """Whether an intensity transform is drawn."""
        return bool(self.brightness or self.contrast or self.gamma)


def _uniform(half_range: float) -> float:
    return (2.0 * float(torch.rand(())) - 1.0) * half_range


def random_affine(aug: Augment, height: int, width: int) -> np.ndarray:
    """A ``(2, 3)`` forward matrix in pixel coordinates: ``[x', y'] = A @ [x, y, 1]``.

    Rotation and scale are about the image centre, then the translation.
    """
    angle = math.radians(_uniform(aug.rotate_deg))
    zoom = 1.0 + _uniform(aug.scale)
    tx, ty = _uniform(aug.translate) * width, _uniform(aug.translate) * height
    cx, cy = width / 2.0, height / 2.0
    cos, sin = zoom * math.cos(angle), zoom * math.sin(angle)
    linear = np.array([[cos, -sin], [sin, cos]])
    offset = np.array([cx + tx, cy + ty]) - linear @ np.array([cx, cy])
    return np.hstack([linear, offset[:, None]])


def apply_affine(points: np.ndarray, matrix: np.ndarray | None) -> np.ndarray:
    """``(N, 2)`` points through the forward matrix (unchanged when ``matrix`` is None)."""
    pts = np.asarray(points, dtype=np.float64)
    if matrix is None:
        return pts
    return pts @ matrix[:, :2].T + matrix[:, 2]


def warp_image(image: torch.Tensor, matrix: np.ndarray) -> torch.Tensor:
    """Warp ``image`` (C, H, W) by the forward pixel matrix (bilinear, zeros outside)."""
    _, height, width = image.shape
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(full)  # output pixel -> source pixel
    to_norm = np.array([[2.0 / width, 0.0, -1.0], [0.0, 2.0 / height, -1.0], [0.0, 0.0, 1.0]])
    theta = to_norm @ inverse @ np.linalg.inv(to_norm)
    theta_t = torch.tensor(theta[:2], dtype=image.dtype)[None]
    grid = F.affine_grid(theta_t, [1, *image.shape], align_corners=False)
    return F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)[0]


def jitter_intensity(image: torch.Tensor, aug: Augment) -> torch.Tensor:
    """Contrast, brightness and gamma jitter of an image in [0, 1]; result clamped to [0, 1]."""
    out = image
    if aug.contrast:
        mean = out.mean()
        out = (out - mean) * (1.0 + _uniform(aug.contrast)) + mean
    if aug.brightness:
        out = out + _uniform(aug.brightness)
    out = out.clamp(0.0, 1.0)
    if aug.gamma:
        out = out.pow(1.0 + _uniform(aug.gamma))
    return out
