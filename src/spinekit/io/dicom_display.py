"""DICOM display conversion: functional-group headers, VOI LUT, windowing, min-max to uint8.

Steps 3-4 of the pipeline described in :mod:`spinekit.io.dicom`. Header values
that cannot be used for display (a non-finite or non-positive window, a VOI LUT
that does not parse) are logged as a warning naming the file, and the frame's
min-max range is used instead, so a frame is never silently shown black.

A VOI LUT is looked up with integer indices wide enough for any stored value
(pydicom 3.0's ``apply_voi`` indexes 8-bit-output LUTs with uint8, which wraps
12-bit pixels onto the LUT's first 256 entries: an all-black image), and its
output range ``0 .. 2^(LUT bits) - 1`` is mapped to ``0 .. 255``.
"""

from __future__ import annotations

import logging
import math
import struct
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_voi, apply_windowing
from pydicom.uid import ExplicitVRLittleEndian

from spinekit.errors import InputError

if TYPE_CHECKING:
    from spinekit.io.dicom import DicomImage

logger = logging.getLogger("spinekit.io.dicom")

PARSE_ERRORS = (
    ValueError, TypeError, KeyError, IndexError, AttributeError, EOFError,
    struct.error, NotImplementedError, OverflowError, UnicodeDecodeError,
)  # fmt: skip
"""What pydicom raises on malformed values and data."""
_FUNCTIONAL_GROUPS = (
    ("PixelValueTransformationSequence", ("RescaleSlope", "RescaleIntercept", "RescaleType")),
    ("FrameVOILUTSequence", ("WindowCenter", "WindowWidth", "VOILUTFunction")),
    ("PixelMeasuresSequence", ("PixelSpacing",)),
)


def frame_header(ds: Dataset, index: int) -> Dataset:
    """Header for frame ``index`` with enhanced multi-frame functional-group
    attributes (rescale, window, pixel spacing) hoisted to the top level."""
    groups = []
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and index < len(per_frame):
        groups.append(per_frame[index])
    if not groups:
        return ds
    out = Dataset()
    for element in ds:
        out.add(element)
    if hasattr(ds, "file_meta"):
        out.file_meta = ds.file_meta
    for group in groups:
        for seq_name, keywords in _FUNCTIONAL_GROUPS:
            seq = group.get(seq_name)
            if not seq:
                continue
            for keyword in keywords:
                if keyword in seq[0]:
                    setattr(out, keyword, seq[0][keyword].value)
    return out


def _first_value(value: Any) -> float:
    """First value of a possibly multi-valued DS element."""
    if isinstance(value, str | bytes) or not hasattr(value, "__len__"):
        return float(value)
    return float(value[0])


def _window_to_uint8(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """pydicom's ``apply_windowing`` with an 8-bit unsigned output range (0..255)."""
    spec = Dataset()
    spec.PhotometricInterpretation = "MONOCHROME2"
    spec.BitsStored = 8
    spec.PixelRepresentation = 0
    spec.WindowCenter = center
    spec.WindowWidth = width
    spec.VOILUTFunction = function
    out = apply_windowing(values.astype(np.float64), spec)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _minmax_to_uint8(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    unit = (values.astype(np.float64) - lo) / (hi - lo)
    return np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8)


def _voi_lut_to_uint8(values: np.ndarray, header: Dataset) -> np.ndarray:
    """VOI LUT Sequence (first LUT); its output range 0 .. 2^bits - 1 mapped to 0..255."""
    item = header.VOILUTSequence[0]
    count, first, depth = (int(v) for v in item.LUTDescriptor)
    if not 1 <= depth <= 16:
        raise ValueError(f"LUT Descriptor bits {depth} not in 1..16")
    entries = count or 65536
    wide = Dataset()
    wide.LUTDescriptor = [count, first, 16]  # uint16 lookup: indices never wrap (see module docstring)
    wide.add(item["LUTData"])
    spec = Dataset()
    spec.VOILUTSequence = [wide]
    spec.file_meta = getattr(header, "file_meta", None) or FileMetaDataset()
    if "TransferSyntaxUID" not in spec.file_meta:
        spec.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    index = np.clip(np.rint(values), first, first + entries - 1).astype(np.int64)
    out = apply_voi(index, spec).astype(np.float64)
    top = float(2**depth - 1)
    if out.size and float(out.max()) > top:  # data wider than its descriptor says: use the data's range
        top = float(2 ** math.ceil(math.log2(float(out.max()) + 1.0)) - 1)
    return np.clip(np.rint(out * (255.0 / top)), 0, 255).astype(np.uint8)


def _window(header: Dataset) -> tuple[float, float, str]:
    """Center, width and VOI LUT function; ValueError when they cannot window anything."""
    function = str(header.get("VOILUTFunction") or "LINEAR").strip().upper()
    center = _first_value(header.WindowCenter)
    width = _first_value(header.WindowWidth)
    smallest = 0.0 if function == "LINEAR_EXACT" else 1.0
    if not (math.isfinite(center) and math.isfinite(width)) or width <= 0 or width < smallest:
        raise ValueError(f"window center {center}, width {width} ({function})")
    return center, width, function


def _header_voi(values: np.ndarray, header: Dataset, source: str | None) -> np.ndarray | None:
    """VOI from the header (LUT sequence, then window), or None when it has none or it is unusable."""
    try:
        if header.get("VOILUTSequence"):
            item = header.VOILUTSequence[0]
            if "LUTDescriptor" in item and "LUTData" in item:
                return _voi_lut_to_uint8(values, header)
        if header.get("WindowCenter") is not None and header.get("WindowWidth") is not None:
            center, width, function = _window(header)
            return _window_to_uint8(values, center, width, function)
    except (*PARSE_ERRORS, AttributeError) as exc:
        logger.warning("%s: unusable VOI LUT/window (%s); using the min-max range", source, exc)
    return None


def _is_plain_8bit(values: np.ndarray, header: Dataset) -> bool:
    """8-bit stored data without a modality transform: shown as stored."""
    try:
        if int(header.get("BitsStored") or 0) != 8 or header.get("ModalityLUTSequence"):
            return False
        slope = float(header.get("RescaleSlope") or 1.0)
        intercept = float(header.get("RescaleIntercept") or 0.0)
    except PARSE_ERRORS:
        return False
    return slope == 1.0 and intercept == 0.0 and float(values.min()) >= 0.0


def dicom_to_uint8(
    image: DicomImage,
    frame: int,
    *,
    window: tuple[float, float] | None = None,
    ds: Dataset | None = None,
) -> np.ndarray:
    """One frame for display: uint8 ``(H, W)`` gray or ``(H, W, 3)`` RGB.

    ``frame`` is the frame index in the file (one of ``image.frame_indices``).
    Gray VOI: explicit ``window=(center, width)`` (LINEAR_EXACT), else the VOI
    LUT Sequence, else WindowCenter/WindowWidth (first value, header's VOI LUT
    function), else 8-bit data as stored, else the frame's min-max range.
    MONOCHROME1 is inverted. ``ds`` overrides the header stored in ``image``.
    """
    try:
        position = image.frame_indices.index(frame) if image.frame_indices else frame
        values = image.frames[position]
    except (ValueError, IndexError) as exc:
        raise InputError(image.source, f"frame {frame} was not decoded") from exc
    if image.is_colour:
        return values
    if ds is None:
        ds = image.header if image.header is not None else Dataset()
    header = frame_header(ds, frame)
    if window is not None:
        center, width = float(window[0]), float(window[1])
        if not (math.isfinite(center) and math.isfinite(width) and width > 0):
            raise InputError(image.source, f"window width must be > 0 and center and width finite, got "
                             f"center {center}, width {width}")
        out = _window_to_uint8(values, center, width, "LINEAR_EXACT")
    else:
        voi = _header_voi(values, header, image.source)
        if voi is not None:
            out = voi
        elif _is_plain_8bit(values, header) and float(values.max()) <= 255.0:
            out = np.rint(values).astype(np.uint8)
        else:
            out = _minmax_to_uint8(values)
    if image.photometric == "MONOCHROME1":
        out = 255 - out
    return out
