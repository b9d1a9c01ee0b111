"""Pixel side of de-identification: burned-in text, the ultrasound imaging sector, DICOM pixels.

Frames are ``(F, H, W)`` or ``(F, H, W, 3)`` arrays; masks are ``(H, W)`` bool,
True where pixels are blanked.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, get_decoder
from pydicom.uid import ExplicitVRLittleEndian
from scipy import ndimage
from skimage.morphology import convex_hull_image, disk

from spinekit.data.deid_profile import DeidChanges
from spinekit.data.deid_text import Box, boxes_mask, detect_text_frames
from spinekit.errors import InputError
from spinekit.io.images import MAX_IMAGE_PIXELS

if TYPE_CHECKING:
    from spinekit.data.deidentify import DeidConfig

_PALETTE_KEYWORDS = tuple(f"{c}PaletteColorLookupTable{p}" for c in ("Red", "Green", "Blue")
                          for p in ("Descriptor", "Data")) + tuple(
    f"Segmented{c}PaletteColorLookupTableData" for c in ("Red", "Green", "Blue")) + (
    "PaletteColorLookupTableUID",)


FLAT_STD = 0.01
"""Local standard deviation (fraction of the brightest value) below which a region is flat, not tissue."""


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


def estimate_sector(frames: np.ndarray, threshold: float = 0.01,
                    exclude: np.ndarray | None = None) -> np.ndarray:
    """Estimate the ultrasound imaging sector of ``frames``; returns a bool ``(H, W)`` mask.

    ``frames`` is ``(F, H, W)`` or ``(F, H, W, C)`` of any integer dtype. Steps:
    1. per pixel, the maximum over frames and channels (temporal max), so tissue
       that is dark in one frame but bright in another counts;
    2. mean filter over ``2r + 1`` pixels, ``r = max(1, 0.5% of min(H, W))``, so
       dark but speckled tissue becomes solid, then threshold at ``threshold``
       times the brightest value (non-dark pixels); pixels whose local standard
       deviation (same window) is under :data:`FLAT_STD` of the brightest value
       are flat (a grey or coloured header bar, a uniform background) and never
       count as the sector, however bright;
    3. binary opening with a disk of radius ``r`` to cut thin strokes (text,
       calibration lines) off the sector;
    4. connected components (8-connectivity); keep the largest, plus the
       components lying inside the wedge that extends its straight side edges
       downward (deep echoes cut off by an acoustic shadow, see
       :func:`_wedge_labels`);
    5. take the convex hull of what is kept, which fills dark holes and shadows
       (sectors, linear and curvilinear fields of view are convex or nearly so;
       the small gap above a curvilinear probe's arc is kept).
    ``exclude`` (bool ``(H, W)``), e.g. the detected text boxes, never counts as
    the sector (text next to the image would otherwise join it).
    Raises ``ValueError`` when no sector is found or it covers under 2% of the frame.
    """
    peak = frames.max(axis=-1) if frames.ndim == 4 else frames
    peak = peak.max(axis=0)
    top = float(peak.max()) if peak.size else 0.0
    if top <= 0:
        raise ValueError("no non-dark pixels: cannot estimate the imaging sector")
    radius = max(1, round(0.005 * min(peak.shape)))
    values = peak.astype(np.float32)
    smooth = ndimage.uniform_filter(values, size=2 * radius + 1)
    texture = ndimage.uniform_filter(values * values, size=2 * radius + 1) - smooth * smooth
    # flat regions (grey/coloured header bars, uniform backgrounds) are not echoes
    binary = (smooth > threshold * top) & (texture > (FLAT_STD * top) ** 2)
    if exclude is not None:
        binary &= ~exclude
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


def user_regions(frames: np.ndarray, config: DeidConfig) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The user-configured regions (header band, boxes): bool ``(H, W)`` mask and descriptions."""
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
    return mask, regions


def burned_in_mask(frames: np.ndarray, config: DeidConfig
                   ) -> tuple[np.ndarray, list[dict[str, Any]], list[Box]]:
    """Pixels to blank in every frame of ``(F, H, W[, C])`` frames.

    Returns the bool ``(H, W)`` mask, a description per region, and the text
    boxes found by :func:`~spinekit.data.deid_text.detect_text_frames` (always
    run; the boxes are part of the mask).
    """
    mask, regions = user_regions(frames, config)
    boxes = detect_text_frames(frames)
    text = boxes_mask(boxes, mask.shape)
    if boxes:
        mask |= text
        regions.append({"kind": "detected_text", "boxes": [list(b) for b in boxes],
                        "pixels": int(text.sum())})
    if config.blank_outside_sector:
        sector = estimate_sector(frames, config.sector_threshold, exclude=text)
        mask |= ~sector
        regions.append({"kind": "outside_sector", "pixels": int((~sector).sum()),
                        "sector_fraction": round(float(sector.mean()), 4)})
    return mask, regions, boxes


def text_refused(boxes: list[Box], config: DeidConfig) -> None:
    """Raise when text was found and the run refuses such files (``text_action="refuse"``)."""
    if boxes and config.text_action == "refuse":
        raise InputError(None, f"burned-in text detected ({len(boxes)} text line(s), first at "
                               f"x0,y0,x1,y1={','.join(map(str, boxes[0]))}); not written "
                               "(text action 'refuse')")


def _decode(ds: Dataset) -> tuple[np.ndarray, str, int, bool]:
    """All frames as ``(F, H, W[, 3])`` (palette colour expanded to RGB), photometric, bits."""
    if not hasattr(ds, "file_meta") or "TransferSyntaxUID" not in ds.file_meta:
        raise InputError(None, "no transfer syntax: cannot decode pixel data to check for text")
    syntax = ds.file_meta.TransferSyntaxUID
    if int(ds.get("Rows", 0)) * int(ds.get("Columns", 0)) > MAX_IMAGE_PIXELS:
        raise InputError(None, f"frame larger than the limit of {MAX_IMAGE_PIXELS} pixels")
    try:
        options: dict[str, Any] = {"as_rgb": True}
        arr, meta = get_decoder(syntax).as_array(ds, **options)
        photometric = str(meta["photometric_interpretation"])
        bits = int(meta["bits_stored"])
        if photometric == "PALETTE COLOR":
            arr = apply_color_lut(arr, ds)
            arr = (arr >> 8).astype(np.uint8) if arr.dtype != np.uint8 else arr
            photometric, bits = "RGB", 8
    except Exception as exc:
        raise InputError(None, f"cannot decode pixel data ({syntax.name}) to check for burned-in "
                               f"text: {exc}") from exc
    multi = int(meta.get("number_of_frames", 1) or 1) > 1
    return np.array(arr if multi else arr[None], copy=True), photometric, bits, multi


def clean_dicom_pixels(ds: Dataset, config: DeidConfig, changes: DeidChanges) -> None:
    """Check every frame for burned-in text and blank it (and the configured regions).

    Pixel data is re-encoded (uncompressed, little endian) only when something
    is blanked or palette colour had to be expanded; otherwise it is kept as
    stored. Sets BurnedInAnnotation NO: the pixels were checked.
    """
    frames, photometric, bits, multi = _decode(ds)
    mask, regions, boxes = burned_in_mask(frames, config)
    text_refused(boxes, config)
    changes.pixels = {"checked": True, "frames": int(frames.shape[0]), "text_lines": len(boxes)}
    expanded = str(ds.get("PhotometricInterpretation", "")) == "PALETTE COLOR"
    if mask.any() or expanded:
        blank = (1 << bits) - 1 if photometric == "MONOCHROME1" and frames.dtype.kind == "u" else 0
        frames[:, mask] = blank
        _store(ds, frames if multi else frames[0], photometric, bits, changes)
        if expanded:
            changes.notes.append("palette colour expanded to RGB")
    ds.BurnedInAnnotation = "NO"
    changes.regions_blanked = regions


def _store(ds: Dataset, pixels: np.ndarray, photometric: str, bits: int, changes: DeidChanges) -> None:
    syntax = ds.file_meta.TransferSyntaxUID
    for keyword in _PALETTE_KEYWORDS:
        if keyword in ds:
            del ds[keyword]
    if not syntax.is_little_endian:  # decoded pixels are native; store little endian
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    try:
        ds.set_pixel_data(pixels, photometric, bits, generate_instance_uid=False)
    except (ValueError, NotImplementedError, AttributeError) as exc:
        raise InputError(None, f"cannot store cleaned pixel data: {exc}") from exc
    for tag in (0x7FE00001, 0x7FE00002):
        if tag in ds:
            del ds[tag]
    if ds.file_meta.TransferSyntaxUID != syntax:
        changes.notes.append(f"pixel data decoded from {syntax.name}; stored as "
                             f"{ds.file_meta.TransferSyntaxUID.name}")
