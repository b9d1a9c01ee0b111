"""Pixel side of de-identification: the ultrasound imaging sector and burned-in text regions.

Frames are ``(F, H, W)`` or ``(F, H, W, 3)`` arrays; masks are ``(H, W)`` bool,
True where pixels are blanked.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage
from skimage.morphology import convex_hull_image, disk

if TYPE_CHECKING:
    from spinekit.data.deidentify import DeidConfig


def _wedge_labels(labels: np.ndarray, sizes: np.ndarray, main: int) -> np.ndarray:
    """Labels to keep: ``main`` and components at least 95% inside its extended wedge.

    The wedge is bounded by straight lines fitted to the left and right edges of
    the main component (rows 20-80% of its height, where the edges of a sector or
    rectangle are straight), widened by 1% of the width, starts at its top row
    and stays within its column range. It recovers echoes below an acoustic
    shadow; text printed inside that region would be kept too (blank it with a
    box). Returns a bool array indexed by label.
    """
    keep = np.zeros(sizes.shape, dtype=bool)
    keep[main] = True
    mask = labels == main
    rows = np.nonzero(mask.any(axis=1))[0]
    top, bottom = int(rows[0]), int(rows[-1])
    fit = rows[(rows >= top + 0.2 * (bottom - top)) & (rows <= top + 0.8 * (bottom - top))]
    if fit.size < 2:
        return keep
    width = mask.shape[1]
    left = np.argmax(mask[fit], axis=1)
    right = width - 1 - np.argmax(mask[fit, ::-1], axis=1)
    left_a, left_b = np.polyfit(fit, left, 1)
    right_a, right_b = np.polyfit(fit, right, 1)
    yy, xx = np.mgrid[0:mask.shape[0], 0:width]
    tol = 0.01 * width
    columns = np.nonzero(mask.any(axis=0))[0]
    inside = (yy >= top) & (xx >= columns[0]) & (xx <= columns[-1])
    inside &= (xx >= left_a * yy + left_b - tol) & (xx <= right_a * yy + right_b + tol)
    counts = np.bincount(labels.ravel(), weights=inside.ravel(), minlength=sizes.size)
    keep |= (sizes > 0) & (counts >= 0.95 * sizes)
    keep[0] = False
    return keep


def estimate_sector(frames: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    """Estimate the ultrasound imaging sector of ``frames``; returns a bool ``(H, W)`` mask.

    ``frames`` is ``(F, H, W)`` or ``(F, H, W, C)`` of any integer dtype. Steps:
    1. per pixel, the maximum over frames and channels (temporal max), so tissue
       that is dark in one frame but bright in another counts;
    2. mean filter over ``2r + 1`` pixels, ``r = max(1, 0.5% of min(H, W))``, so
       dark but speckled tissue becomes solid, then threshold at ``threshold``
       times the brightest value (non-dark pixels);
    3. binary opening with a disk of radius ``r`` to cut thin strokes (text,
       calibration lines) off the sector;
    4. connected components (8-connectivity); keep the largest, plus the
       components lying inside the wedge that extends its straight side edges
       downward (deep echoes cut off by an acoustic shadow, see
       :func:`_wedge_labels`);
    5. take the convex hull of what is kept, which fills dark holes and shadows
       (sectors, linear and curvilinear fields of view are convex or nearly so;
       the small gap above a curvilinear probe's arc is kept).
    Raises ``ValueError`` when no sector is found or it covers under 2% of the frame.
    """
    peak = frames.max(axis=-1) if frames.ndim == 4 else frames
    peak = peak.max(axis=0)
    top = float(peak.max()) if peak.size else 0.0
    if top <= 0:
        raise ValueError("no non-dark pixels: cannot estimate the imaging sector")
    radius = max(1, round(0.005 * min(peak.shape)))
    smooth = ndimage.uniform_filter(peak.astype(np.float32), size=2 * radius + 1)
    binary = smooth > threshold * top
    binary = ndimage.binary_opening(binary, structure=disk(radius).astype(bool))
    labels, count = ndimage.label(binary, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        raise ValueError("no bright region: cannot estimate the imaging sector")
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = _wedge_labels(labels, sizes, int(np.argmax(sizes)))
    hull = convex_hull_image(keep[labels])
    if hull.mean() < 0.02:
        raise ValueError(f"imaging sector estimate covers only {hull.mean():.1%} of the "
                         "frame; use blank boxes instead")
    return np.asarray(hull, dtype=bool)


def burned_in_mask(frames: np.ndarray, config: DeidConfig) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Pixels to blank in every frame: bool ``(H, W)`` mask and a description per region.

    ``frames`` is ``(F, H, W)`` or ``(F, H, W, C)``.
    """
    height, width = frames.shape[1:3]
    mask = np.zeros((height, width), dtype=bool)
    regions: list[dict[str, Any]] = []
    if config.blank_header_fraction > 0:
        rows = min(height, math.ceil(height * config.blank_header_fraction))
        mask[:rows] = True
        regions.append({"kind": "header_band", "rows": rows, "pixels": rows * width})
    for x0, y0, x1, y1 in config.blank_boxes:
        cx0, cy0, cx1, cy1 = min(x0, width), min(y0, height), min(x1, width), min(y1, height)
        mask[cy0:cy1, cx0:cx1] = True
        regions.append({"kind": "box", "box": [cx0, cy0, cx1, cy1],
                        "pixels": (cx1 - cx0) * (cy1 - cy0)})
    if config.blank_outside_sector:
        sector = estimate_sector(frames, config.sector_threshold)
        mask |= ~sector
        regions.append({"kind": "outside_sector", "pixels": int((~sector).sum()),
                        "sector_fraction": round(float(sector.mean()), 4)})
    return mask, regions
