"""Synthetic lateral lumbar image with known lordosis, segmental angles and heights.

:func:`make_lateral_phantom` builds L1..L5 and S1 in millimetres, in a body frame with X
pointing anterior and Y pointing up (cranial), from the bottom up:

1. The S1 upper endplate: a segment of the body depth, its tilt the negative sacral slope
   (the anterior end lower), posterior end at the origin. The sacrum is drawn as a
   quadrilateral below it.
2. Going up, each disc and each vertebral body is a wedge between two straight endplates
   of the body depth: the next endplate's tilt is the previous one's plus the wedge angle,
   and its midpoint lies the wedge's middle height above the previous midpoint along the
   normal of their mean direction (so the middle height is exact and the anterior and
   posterior heights are ``middle +- depth * sin(wedge / 2)``).
3. The millimetre corners are mapped to pixels: ``x = +-X / col_spacing`` (minus: the
   column faces image-left, anterior to the left; plus: it faces right) and
   ``y = -Y / row_spacing``, shifted into the image with a margin. The image is a dark
   background with bright bodies, Gaussian noise and a light blur; vertebra masks are the
   rasterised pixel polygons.

The returned truth (:class:`LateralPhantom`) is computed from the exact corners with the
definitions of :mod:`spinekit.clinical.lateral` (written out again here, independently):
tilt of an endplate = angle of posterior -> anterior end with X anterior and Y up;
lordosis L1-L5 = tilt(L1 upper) - tilt(L5 lower), L1-S1 = tilt(L1 upper) - tilt(S1
upper); segmental = tilt(lower endplate of the upper body) - tilt(upper endplate of the
lower body); heights anterior / middle / posterior between the corner pairs and endplate
midpoints; in mm (physical) whatever the pixel spacing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

import numpy as np
from scipy import ndimage

from spinekit.geometry import rasterize

LEVELS: tuple[str, ...] = ("L1", "L2", "L3", "L4", "L5", "S1")
"""Levels drawn, top-down."""

DEFAULT_DISC_ANGLES: tuple[float, ...] = (4.0, 6.0, 8.0, 10.0, 12.0)
"""Disc wedge angles (degrees) L1-L2 ... L5-S1: anterior taller than posterior."""

DEFAULT_BODY_WEDGES: tuple[float, ...] = (-2.0, -1.0, 0.0, 2.0, 4.0)
"""Body wedge angles (degrees, upper minus lower endplate tilt) L1 ... L5."""

DEFAULT_DISC_HEIGHTS: tuple[float, ...] = (8.0, 9.0, 10.0, 11.0, 11.0)
"""Disc middle heights (mm) L1-L2 ... L5-S1."""

DEFAULT_BODY_HEIGHTS: tuple[float, ...] = (25.0, 26.0, 27.0, 27.0, 26.0)
"""Body middle heights (mm) L1 ... L5."""


@dataclass(frozen=True)
class LateralPhantom:
    """One synthetic lateral image and its truth.

    ``image``: ``(H, W)`` uint8. ``polygons``: level -> ``(4, 2)`` float64 pixel ring
    upper-anterior, upper-posterior, lower-posterior, lower-anterior. ``masks``: level ->
    ``(H, W)`` bool. ``label``: ``(H, W)`` uint8, value ``k + 1`` for ``LEVELS[k]``.
    Angles in degrees; heights in mm (``pixel_spacing_mm`` ``(row, col)``).
    ``facing``: the image side the anterior column faces.
    """

    image: np.ndarray
    polygons: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    label: np.ndarray
    pixel_spacing_mm: tuple[float, float]
    facing: Literal["left", "right"]
    lordosis_L1_L5_deg: float
    lordosis_L1_S1_deg: float
    segmental_deg: dict[str, float] = field(default_factory=dict)
    body_heights: dict[str, dict[str, float]] = field(default_factory=dict)
    disc_heights: dict[str, dict[str, float]] = field(default_factory=dict)


def _unit(theta_deg: float) -> np.ndarray:
    t = np.radians(theta_deg)
    return np.array([np.cos(t), np.sin(t)])


def _endplate(mid: np.ndarray, tilt: float, depth: float) -> np.ndarray:
    """``(2, 2)`` rows (anterior end, posterior end) of a segment of ``depth`` mm."""
    half = 0.5 * depth * _unit(tilt)
    return np.stack([mid + half, mid - half])


def _column_mm(sacral_slope: float, depth: float, discs: Sequence[float], wedges: Sequence[float],
               disc_heights: Sequence[float], body_heights: Sequence[float]
               ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Level -> (upper endplate, lower endplate) ``(2, 2)`` mm, anterior end first; S1's
    lower "endplate" is the sacrum's lower edge."""
    tilt = -sacral_slope
    mid = 0.5 * depth * _unit(tilt)  # posterior end of S1 at the origin
    upper_s1 = _endplate(mid, tilt, depth)
    sacrum_low = _endplate(mid - np.array([0.0, 30.0]) + np.array([-6.0, 0.0]), tilt + 15.0, 0.7 * depth)
    out = {"S1": (upper_s1, sacrum_low)}

    def step(mid: np.ndarray, tilt: float, wedge: float, height: float) -> tuple[np.ndarray, float]:
        new_tilt = tilt + wedge
        return mid + height * _unit(0.5 * (tilt + new_tilt) + 90.0), new_tilt

    for k in range(4, -1, -1):  # L5 up to L1: the disc below, then the body
        mid, tilt = step(mid, tilt, discs[k], disc_heights[k])
        lower = _endplate(mid, tilt, depth)
        mid, tilt = step(mid, tilt, wedges[k], body_heights[k])
        out[LEVELS[k]] = (_endplate(mid, tilt, depth), lower)
    return out


def _tilt(segment: np.ndarray) -> float:
    d = segment[0] - segment[1]
    return float(np.degrees(np.arctan2(d[1], d[0])))


def _heights(top: np.ndarray, bottom: np.ndarray) -> dict[str, float]:
    return {"anterior": float(np.linalg.norm(top[0] - bottom[0])),
            "middle": float(np.linalg.norm(top.mean(axis=0) - bottom.mean(axis=0))),
            "posterior": float(np.linalg.norm(top[1] - bottom[1]))}


def _to_pixels(column: dict[str, tuple[np.ndarray, np.ndarray]], spacing: tuple[float, float],
               facing: str, margin: float) -> tuple[dict[str, np.ndarray], tuple[int, int]]:
    """Pixel rings (UA, UP, LP, LA) and the image size ``(H, W)`` fitting them."""
    sign = -1.0 if facing == "left" else 1.0
    scale = np.array([sign / spacing[1], -1.0 / spacing[0]])
    px = {lv: np.stack([up[0], up[1], low[1], low[0]]) * scale for lv, (up, low) in column.items()}
    every = np.concatenate(list(px.values()))
    shift = margin - every.min(axis=0)
    size = np.ceil(every.max(axis=0) + shift + margin).astype(int)
    return {lv: r + shift for lv, r in px.items()}, (int(size[1]), int(size[0]))


def make_lateral_phantom(
    *,
    sacral_slope_deg: float = 40.0,
    disc_angles_deg: Sequence[float] = DEFAULT_DISC_ANGLES,
    body_wedges_deg: Sequence[float] = DEFAULT_BODY_WEDGES,
    disc_heights_mm: Sequence[float] = DEFAULT_DISC_HEIGHTS,
    body_heights_mm: Sequence[float] = DEFAULT_BODY_HEIGHTS,
    depth_mm: float = 35.0,
    pixel_spacing_mm: tuple[float, float] = (0.5, 0.5),
    facing: Literal["left", "right"] = "left",
    noise: float = 12.0,
    seed: int = 0,
) -> LateralPhantom:
    """A synthetic lateral lumbar image (module docstring). Raises ValueError for wrong
    list lengths, non-positive sizes or spacing, or a bad ``facing``."""
    if facing not in ("left", "right"):
        raise ValueError(f"facing must be 'left' or 'right', got {facing!r}")
    for name, values in (("disc_angles_deg", disc_angles_deg), ("body_wedges_deg", body_wedges_deg),
                         ("disc_heights_mm", disc_heights_mm), ("body_heights_mm", body_heights_mm)):
        if len(values) != 5:
            raise ValueError(f"{name} needs 5 values, got {len(values)}")
    if min(*disc_heights_mm, *body_heights_mm, depth_mm, *pixel_spacing_mm) <= 0:
        raise ValueError("heights, depth and pixel spacing must be positive")
    column = _column_mm(sacral_slope_deg, depth_mm, disc_angles_deg, body_wedges_deg,
                        disc_heights_mm, body_heights_mm)
    rings, (height, width) = _to_pixels(column, pixel_spacing_mm, facing, margin=20.0 / min(pixel_spacing_mm))
    label = np.zeros((height, width), dtype=np.uint8)
    masks = {}
    for k, level in enumerate(LEVELS):
        masks[level] = rasterize([rings[level]], height, width).astype(bool)
        label[masks[level]] = k + 1
    rng = np.random.default_rng(seed)
    image = np.where(label > 0, 170.0, 45.0) + rng.normal(0.0, noise, label.shape)
    image = ndimage.gaussian_filter(image, 1.0)
    return LateralPhantom(
        image=np.clip(np.rint(image), 0, 255).astype(np.uint8), polygons=rings, masks=masks,
        label=label, pixel_spacing_mm=(float(pixel_spacing_mm[0]), float(pixel_spacing_mm[1])),
        facing=facing,
        lordosis_L1_L5_deg=_tilt(column["L1"][0]) - _tilt(column["L5"][1]),
        lordosis_L1_S1_deg=_tilt(column["L1"][0]) - _tilt(column["S1"][0]),
        segmental_deg={f"{a}-{b}": _tilt(column[a][1]) - _tilt(column[b][0]) for a, b in pairwise(LEVELS)},
        body_heights={lv: _heights(*column[lv]) for lv in LEVELS[:5]},
        disc_heights={f"{a}-{b}": _heights(column[a][1], column[b][0]) for a, b in pairwise(LEVELS)},
    )
