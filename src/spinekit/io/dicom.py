"""DICOM image reading (pydicom): modality values, display conversion, header metadata.

Pipeline, in DICOM's own order (PS3.4 grayscale standard display pipeline):

1. decode the stored values of only the requested frames (:func:`read_dicom`);
2. modality transform: Modality LUT Sequence or RescaleSlope/RescaleIntercept
   (``pydicom.pixels.apply_modality_lut``), giving *modality values* (e.g. HU),
   kept as float32 in :attr:`DicomImage.frames`;
3. VOI transform to 8 bits (:func:`dicom_to_uint8`): an explicit ``window``
   argument, else the VOI LUT Sequence (``apply_voi``), else WindowCenter /
   WindowWidth (``apply_windowing``, first value when multi-valued), else the
   frame's min-max range (8-bit unscaled data passes through unchanged);
4. MONOCHROME1 is inverted so that bone is bright, as in MONOCHROME2.

Colour data (RGB, YBR_* converted to RGB by pydicom, PALETTE COLOR expanded by
its LUT) is returned as uint8 ``(H, W, 3)`` and is not windowed. Enhanced
multi-frame files: rescale, window and pixel spacing are taken from the shared
and per-frame functional groups. Every problem raises :class:`InputError`
naming the file.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder, iter_pixels
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from spinekit.errors import InputError
from spinekit.io.dicom_display import PARSE_ERRORS, dicom_to_uint8, frame_header
from spinekit.io.images import MAX_IMAGE_PIXELS

logger = logging.getLogger(__name__)

_COLOUR_PREFIXES = ("RGB", "YBR", "PALETTE")
_CM_UNITS = 3  # PhysicalUnitsX/YDirection code for centimetres (PS3.3 C.8.5.5.1.15)
_PARSE_ERRORS = PARSE_ERRORS


@dataclass
class DicomImage:
    """Decoded frames of one DICOM file plus the header fields spinekit uses.

    ``frames``: float32 ``(F, H, W)`` modality values (after Modality LUT or
    rescale slope/intercept) for grayscale, uint8 ``(F, H, W, 3)`` RGB for
    colour. ``frames[k]`` is frame ``frame_indices[k]`` of the file.
    ``photometric`` is the interpretation as stored (colour is always RGB here).
    ``pixel_spacing_mm`` is ``(row spacing, column spacing)`` = ``(dy, dx)`` in mm.
    ``header`` is the dataset without its pixel data (used for VOI/windowing).
    """

    frames: np.ndarray
    photometric: str
    patient_id: str | None
    pixel_spacing_mm: tuple[float, float] | None
    bits_stored: int
    number_of_frames: int
    modality: str | None
    study_uid: str | None
    series_uid: str | None
    sop_uid: str | None
    frame_indices: tuple[int, ...] = ()
    source: str | None = None
    header: Dataset | None = field(default=None, repr=False, compare=False)

    @property
    def is_colour(self) -> bool:
        """True when frames are RGB ``(F, H, W, 3)`` uint8."""
        return self.frames.ndim == 4


def _read_header(path: Path) -> Dataset:
    """Dataset without pixel data. Legacy files without the DICM preamble and
    file meta are accepted only when they hold image attributes."""
    if not path.is_file():
        raise InputError(path, "DICOM file not found")
    forced = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except InvalidDicomError:
                forced = True
                ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except OSError as exc:
        raise InputError(path, f"cannot read file ({exc.strerror or exc})") from exc
    except RecursionError as exc:
        raise InputError(path, "DICOM sequences nested too deeply to read; refused") from exc
    except (InvalidDicomError, *_PARSE_ERRORS) as exc:
        raise InputError(path, f"not a DICOM file or damaged DICOM header ({exc})") from exc
    if forced and not all(k in ds for k in ("Rows", "Columns", "BitsAllocated")):
        raise InputError(path, "not a DICOM image file (no DICM preamble or file meta header)")
    _set_legacy_transfer_syntax(ds)
    return ds


def _set_legacy_transfer_syntax(ds: Dataset) -> None:
    """Give a file read without file meta the transfer syntax it was parsed with."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = ds.original_encoding
    if implicit:
        uid = pydicom.uid.ImplicitVRLittleEndian
    else:
        uid = pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian
    if meta is None:
        meta = FileMetaDataset()
        ds.file_meta = meta
    meta.TransferSyntaxUID = uid


def _str_or_none(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None or str(value).strip() == "":
        return None
    return str(value).strip()


def _int_attr(ds: Dataset, keyword: str, default: int, path: Path) -> int:
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise InputError(path, f"invalid {keyword} value {value!r}") from exc


def _image_shape(ds: Dataset, path: Path) -> tuple[int, int]:
    """``(rows, columns)``; raises InputError for non-image datasets."""
    rows = _int_attr(ds, "Rows", 0, path)
    cols = _int_attr(ds, "Columns", 0, path)
    if rows <= 0 or cols <= 0:
        raise InputError(path, f"non-image DICOM ({_kind(ds)}): no Rows/Columns or pixel data")
    return rows, cols


def _kind(ds: Dataset) -> str:
    """Modality and SOP class name, for messages (e.g. ``SR, Basic Text SR Storage``)."""
    uid = ds.get("SOPClassUID") or getattr(ds.get("file_meta"), "MediaStorageSOPClassUID", None)
    parts = [_str_or_none(ds, "Modality"), UID(str(uid)).name if uid else None]
    return ", ".join(part for part in parts if part) or "unknown type"


def _frame_count(ds: Dataset, path: Path) -> int:
    """NumberOfFrames (1 when absent), checked against the file's size before anything is allocated."""
    count = max(_int_attr(ds, "NumberOfFrames", 1, path), 1)
    _check_frame_bytes(ds, path, count)
    return count


def check_pixel_data_length(ds: Dataset, path: Path) -> None:
    """For a dataset read with its pixel data: InputError when NumberOfFrames x Rows x Columns x
    SamplesPerPixel x BitsAllocated needs more bytes than its Pixel Data holds (a header that
    lies about its pixel data, e.g. 10^9 frames), by the rule of :func:`_check_frame_bytes`."""
    if "PixelData" not in ds:
        return
    count = max(_int_attr(ds, "NumberOfFrames", 1, path), 1)
    value = ds.PixelData
    _check_frame_bytes(ds, path, count, available=len(value) if value else 0)


def _check_frame_bytes(ds: Dataset, path: Path, count: int, *, available: int | None = None) -> None:
    """A header claiming more pixel data than the file holds (e.g. 10^9 frames) is refused.

    Native (uncompressed) pixel data needs ``frames x rows x columns x samples x
    bits allocated / 8`` bytes; encapsulated (compressed) data at least one
    8-byte item header per frame; deflated files are bounded by deflate's
    largest ratio (~1032:1). The file size is an upper bound of the Pixel Data
    length, so no valid file is refused; a file that passes but is still short
    is reported by the decoder as truncated. ``available``: the length of the
    Pixel Data value itself (already inflated) instead of the file size.
    """
    rows, cols = _int_attr(ds, "Rows", 0, path), _int_attr(ds, "Columns", 0, path)
    samples = max(_int_attr(ds, "SamplesPerPixel", 1, path), 1)
    if samples == 3 and _photometric(ds) == "YBR_FULL_422":
        samples = 2  # chroma subsampled 2:1 horizontally: 2 values per pixel on average
    bits = _int_attr(ds, "BitsAllocated", 8, path)
    if bits not in (1, 8, 16, 32, 64):
        raise InputError(path, f"unsupported BitsAllocated {bits} (1, 8, 16, 32 or 64)")
    size = path.stat().st_size if available is None else available
    syntax = UID(str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "")))
    if syntax == DeflatedExplicitVRLittleEndian and available is None:
        need, budget = math.ceil(count * rows * cols * samples * bits / 8), size * 1032
    elif syntax.is_transfer_syntax and syntax.is_compressed:
        need, budget = count * 8, size
    else:
        need, budget = math.ceil(count * rows * cols * samples * bits / 8), size
    if need > budget:
        holder = "the file has" if available is None else "its Pixel Data has"
        raise InputError(path, f"header claims {count} frame(s) of {cols}x{rows}x{samples} at {bits} bits "
                         f"({need} bytes of pixel data) but {holder} {size} bytes; damaged or hostile "
                         "header, refused")


def _check_pixels(rows: int, cols: int, max_pixels: int, path: Path) -> None:
    if rows * cols > max_pixels:
        raise InputError(
            path,
            f"DICOM image is {cols}x{rows} = {rows * cols} pixels, over the limit of "
            f"{max_pixels} (raise max_pixels if this is intended)",
        )


def _pixel_spacing(ds: Dataset) -> tuple[float, float] | None:
    """``(dy, dx)`` in mm: PixelSpacing, ImagerPixelSpacing, then ultrasound regions."""
    header = frame_header(ds, 0)
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = header.get(keyword)
        try:
            dy, dx = float(value[0]), float(value[1])
        except (TypeError, ValueError, IndexError):
            continue
        if _positive(dy) and _positive(dx):
            return dy, dx
    return _ultrasound_spacing(ds)


def _positive(value: float) -> bool:
    """A usable spacing: finite and > 0 (an Infinity or NaN spacing is ignored)."""
    return math.isfinite(value) and value > 0


def _ultrasound_spacing(ds: Dataset) -> tuple[float, float] | None:
    """Spacing of the largest ultrasound region calibrated in cm, converted to mm."""
    best: tuple[int, tuple[float, float]] | None = None
    for region in ds.get("SequenceOfUltrasoundRegions") or []:
        try:
            if int(region.PhysicalUnitsXDirection) != _CM_UNITS:
                continue
            if int(region.PhysicalUnitsYDirection) != _CM_UNITS:
                continue
            dx = abs(float(region.PhysicalDeltaX)) * 10.0
            dy = abs(float(region.PhysicalDeltaY)) * 10.0
            area = abs(int(region.RegionLocationMaxX1) - int(region.RegionLocationMinX0)) * abs(
                int(region.RegionLocationMaxY1) - int(region.RegionLocationMinY0)
            )
        except (AttributeError, TypeError, ValueError):
            continue
        if _positive(dx) and _positive(dy) and (best is None or area > best[0]):
            best = (area, (dy, dx))
    return None if best is None else best[1]


def _photometric(ds: Dataset) -> str:
    return str(ds.get("PhotometricInterpretation") or "MONOCHROME2").strip().upper()


def _decode_error(path: Path, ds: Dataset, exc: Exception) -> InputError:
    """A clear InputError for pixel data pydicom could not decode."""
    text = str(exc)
    if "no pixel data" in text or "no 'Pixel Data'" in text:
        return InputError(path, f"non-image DICOM ({_kind(ds)}): the file has no pixel data")
    uid = UID(str(ds.file_meta.TransferSyntaxUID))
    name = f"{uid.name} ({uid})" if uid.name != uid else str(uid)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return InputError(path, f"pixel data in transfer syntax {name} has no decoder in pydicom")
    missing = "; ".join(decoder.missing_dependencies)
    if not decoder.is_available:
        reason = f"no decoder installed (options: {missing})"
        return InputError(path, f"cannot decode {name} pixel data: {reason}")
    hint = f"; other decoders: {missing}" if missing else ""
    first = " ".join(text.split())[:300]
    if uid.is_compressed:
        return InputError(path, f"cannot decode {name} pixel data ({first}){hint}")
    return InputError(path, f"damaged or truncated pixel data ({first})")


def _iter_stored(path: Path, ds: Dataset, indices: Sequence[int]) -> Iterator[np.ndarray]:
    """Stored values of the requested frames, decoding only those frames.

    Decoded from the path, so only the needed frames' bytes are read; deflated
    files (the whole dataset is compressed) are loaded into memory first.
    """
    syntax = ds.file_meta.TransferSyntaxUID
    src: Path | Dataset = path
    if syntax == DeflatedExplicitVRLittleEndian:
        src = pydicom.dcmread(path, force=True)
    yield from iter_pixels(src, indices=list(indices), transfer_syntax_uid=syntax)


def _colour_to_uint8(arr: np.ndarray, header: Dataset, bits_stored: int) -> np.ndarray:
    """Colour frame ``(H, W, 3)`` (or palette indices ``(H, W)``) as uint8 RGB."""
    if _photometric(header) == "PALETTE COLOR":
        arr = apply_color_lut(arr, header)
        top = float(np.iinfo(arr.dtype).max) if arr.dtype.kind in "ui" else 255.0
    else:
        top = float(2 ** min(bits_stored, int(arr.dtype.itemsize) * 8) - 1)
    arr = arr[..., :3]
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    return np.clip(np.rint(arr.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)


def _check_rescale(path: Path, header: Dataset, index: int) -> None:
    """RescaleSlope/Intercept must be finite numbers and the slope non-zero (else a black image)."""
    for keyword, default in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0)):
        value = header.get(keyword)
        try:
            number = default if value is None or value == "" else float(value)
        except (TypeError, ValueError) as exc:
            raise InputError(path, f"frame {index}: invalid {keyword} {value!r}") from exc
        if not math.isfinite(number) or (keyword == "RescaleSlope" and number == 0.0):
            raise InputError(path, f"frame {index}: {keyword} is {number}; the modality values would be "
                             "meaningless (a finite, non-zero slope is needed)")


def _modality_values(path: Path, stored: np.ndarray, header: Dataset, index: int) -> np.ndarray:
    """Stored values through the Modality LUT or rescale, as float32; InputError if not finite."""
    if not header.get("ModalityLUTSequence"):
        _check_rescale(path, header, index)
    values = np.asarray(apply_modality_lut(stored, header), dtype=np.float32)
    if not np.isfinite(values).all():
        raise InputError(path, f"frame {index}: the modality transform gives non-finite values")
    return values


def _decode_frames(path: Path, ds: Dataset, indices: Sequence[int]) -> np.ndarray:
    """Decode the requested frames: float32 ``(F, H, W)`` or uint8 ``(F, H, W, 3)``."""
    photometric = _photometric(ds)
    colour = photometric.startswith(_COLOUR_PREFIXES)
    bits_stored = _int_attr(ds, "BitsStored", 8, path)
    out: list[np.ndarray] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for index, stored in zip(indices, _iter_stored(path, ds, indices), strict=True):
                if colour:
                    out.append(_colour_to_uint8(stored, ds, bits_stored))
                else:
                    out.append(_modality_values(path, stored, frame_header(ds, index), index))
    except InputError:
        raise
    except MemoryError as exc:
        raise InputError(path, "not enough memory to decode the pixel data") from exc
    except RecursionError as exc:
        raise InputError(path, "DICOM sequences nested too deeply to read; refused") from exc
    except OSError as exc:
        raise InputError(path, f"cannot read pixel data ({exc})") from exc
    except (RuntimeError, *_PARSE_ERRORS) as exc:
        raise _decode_error(path, ds, exc) from exc
    return np.stack(out)


def read_dicom(
    path: str | Path,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    frames: Sequence[int] | None = None,
) -> DicomImage:
    """Read a DICOM file's pixel data as modality values (see :class:`DicomImage`).

    ``frames``: indices of the frames to decode (default: all). Rows * Columns
    is checked against ``max_pixels`` before any pixel data is read. Raises
    :class:`InputError` for non-DICOM or non-image files, oversized images,
    undecodable (e.g. compressed without a decoder) pixel data and frame
    indices out of range.
    """
    p = Path(path)
    ds = _read_header(p)
    rows, cols = _image_shape(ds, p)
    _check_pixels(rows, cols, max_pixels, p)
    count = _frame_count(ds, p)
    indices = tuple(range(count)) if frames is None else tuple(int(i) for i in frames)
    outside = [i for i in indices if not 0 <= i < count]
    if outside or not indices:
        first = outside[0] if outside else "(none)"
        reason = f"frame {first} out of range: the file has {count} frame(s), 0..{count - 1}"
        raise InputError(p, reason)
    data = _decode_frames(p, ds, indices)
    return DicomImage(
        frames=data,
        photometric=_photometric(ds),
        patient_id=_str_or_none(ds, "PatientID"),
        pixel_spacing_mm=_pixel_spacing(ds),
        bits_stored=_int_attr(ds, "BitsStored", 8, p),
        number_of_frames=count,
        modality=_str_or_none(ds, "Modality"),
        study_uid=_str_or_none(ds, "StudyInstanceUID"),
        series_uid=_str_or_none(ds, "SeriesInstanceUID"),
        sop_uid=_str_or_none(ds, "SOPInstanceUID"),
        frame_indices=indices,
        source=str(p),
        header=ds,
    )


def read_dicom_frame(
    path: str | Path,
    *,
    frame: int = 0,
    max_pixels: int = MAX_IMAGE_PIXELS,
    window: tuple[float, float] | None = None,
) -> np.ndarray:
    """Decode one frame for display: uint8 ``(H, W)`` or ``(H, W, 3)``.

    Used by :func:`spinekit.io.images.read_image`; see :func:`dicom_to_uint8`.
    """
    image = read_dicom(path, max_pixels=max_pixels, frames=[frame])
    return dicom_to_uint8(image, frame, window=window)


def dicom_size(path: str | Path, *, max_pixels: int | None = None) -> tuple[int, int]:
    """``(width, height)`` from the header only; checked against ``max_pixels`` if given."""
    p = Path(path)
    rows, cols = _image_shape(_read_header(p), p)
    if max_pixels is not None:
        _check_pixels(rows, cols, max_pixels, p)
    return cols, rows


def dicom_frame_count(path: str | Path) -> int:
    """Number of frames (NumberOfFrames, 1 when absent), from the header only."""
    p = Path(path)
    ds = _read_header(p)
    _image_shape(ds, p)
    return _frame_count(ds, p)


def dicom_metadata(path: str | Path) -> dict[str, Any]:
    """Header fields (no pixel decoding): patient_id, pixel_spacing_mm ``(dy, dx)``,
    number_of_frames, modality, photometric, rows, columns, bits_stored and UIDs."""
    p = Path(path)
    ds = _read_header(p)
    rows, cols = _image_shape(ds, p)
    return {
        "patient_id": _str_or_none(ds, "PatientID"),
        "pixel_spacing_mm": _pixel_spacing(ds),
        "number_of_frames": _frame_count(ds, p),
        "modality": _str_or_none(ds, "Modality"),
        "photometric": _photometric(ds),
        "rows": rows,
        "columns": cols,
        "bits_stored": _int_attr(ds, "BitsStored", 8, p),
        "study_uid": _str_or_none(ds, "StudyInstanceUID"),
        "series_uid": _str_or_none(ds, "SeriesInstanceUID"),
        "sop_uid": _str_or_none(ds, "SOPInstanceUID"),
    }
