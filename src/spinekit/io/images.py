"""Image reading with size limits: PNG, JPEG, BMP, TIFF (Pillow) and DICOM (pydicom).

Arrays follow one convention: ``(H, W)`` for grayscale, ``(H, W, 3)`` for RGB,
dtype ``uint8`` or ``uint16`` as stored (DICOM is converted by
:mod:`spinekit.io.dicom`, see :func:`read_image`).
"""

from __future__ import annotations

import io as stdio
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from spinekit.errors import InputError, UsageError

RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic"})
MAX_IMAGE_PIXELS = 64_000_000
"""Default limit on width * height (per frame); larger images are refused."""

Contrast = Literal["none", "minmax", "equalize", "clahe"]


def is_dicom(path: str | Path) -> bool:
    """True when ``path`` has a DICOM suffix or the ``DICM`` preamble marker."""
    p = Path(path)
    if p.suffix.lower() in DICOM_SUFFIXES:
        return True
    if p.suffix.lower() in RASTER_SUFFIXES:
        return False
    try:
        with open(p, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def is_image_file(path: str | Path) -> bool:
    """True for files spinekit can read as images (by suffix, or DICOM marker)."""
    p = Path(path)
    return p.is_file() and (p.suffix.lower() in RASTER_SUFFIXES or is_dicom(p))


def _check_size(width: int, height: int, max_pixels: int, source: str | Path) -> None:
    if width <= 0 or height <= 0:
        raise InputError(source, f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise InputError(
            source,
            f"image is {width}x{height} = {width * height} pixels, over the limit of "
            f"{max_pixels} (raise max_pixels if this is intended)",
        )


def _open_raster(data: str | Path | bytes, max_pixels: int, source: str | Path) -> np.ndarray:
    handle = stdio.BytesIO(data) if isinstance(data, bytes) else data
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(handle) as img:
                _check_size(img.width, img.height, max_pixels, source)
                img.load()
                return _pil_to_array(img)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(source, f"image too large ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise InputError(source, "not a readable image (unknown or damaged format)") from exc
    except FileNotFoundError as exc:
        raise InputError(source, "image file not found") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(source, f"damaged or truncated image ({exc})") from exc


def _pil_to_array(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img)
        if arr.dtype != np.uint16:
            arr = np.clip(arr, 0, 65535).astype(np.uint16)
        return arr
    if img.mode == "L":
        return np.asarray(img, dtype=np.uint8)
    if img.mode in ("LA", "1"):
        return np.asarray(img.convert("L"), dtype=np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def read_image(
    path: str | Path,
    *,
    frame: int = 0,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> np.ndarray:
    """Read one image (one ``frame`` of a multi-frame DICOM) as a numpy array.

    Raster files come back as stored (uint8 or uint16, gray or RGB). DICOM
    pixel data goes through modality rescale, VOI LUT/window and MONOCHROME1
    inversion (see :func:`spinekit.io.dicom.read_dicom`) and comes back as
    uint8 gray or RGB. Raises :class:`InputError` naming the file on any problem.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "image file not found")
    if is_dicom(p):
        from spinekit.io.dicom import read_dicom_frame

        return read_dicom_frame(p, frame=frame, max_pixels=max_pixels)
    return _open_raster(p, max_pixels, p)


def decode_image_bytes(
    data: bytes, *, source: str | Path, max_pixels: int = MAX_IMAGE_PIXELS
) -> np.ndarray:
    """Decode an encoded raster image held in memory (e.g. LabelMe ``imageData``)."""
    return _open_raster(data, max_pixels, source)


def image_size(path: str | Path, *, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """``(width, height)`` from the file header without decoding the pixels."""
    p = Path(path)
    if is_dicom(p):
        from spinekit.io.dicom import dicom_size

        return dicom_size(p, max_pixels=max_pixels)
    try:
        with Image.open(p) as img:
            _check_size(img.width, img.height, max_pixels, p)
            return int(img.width), int(img.height)
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputError(p, f"image too large ({exc})") from exc
    except FileNotFoundError as exc:
        raise InputError(p, "image file not found") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(p, "not a readable image (unknown or damaged format)") from exc


def to_gray(arr: np.ndarray) -> np.ndarray:
    """RGB ``(H, W, 3)`` to gray ``(H, W)`` (ITU-R 601 luma); gray passes through."""
    if arr.ndim == 2:
        return arr
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    gray = arr[..., :3].astype(np.float32) @ weights
    return np.clip(np.rint(gray), 0, np.iinfo(arr.dtype).max).astype(arr.dtype)


def to_uint8(arr: np.ndarray, contrast: Contrast = "none", *, clip_limit: float = 0.01) -> np.ndarray:
    """Map an image to uint8, optionally with contrast enhancement.

    ``none``: uint8 passes through; other types are scaled so the image's own
    maximum maps to 255 (16-bit files often hold 10- or 12-bit data, which a
    fixed ``>> 8`` would leave nearly black); ``minmax``: stretch the image's
    own range; ``equalize``: global histogram equalisation over all values;
    ``clahe``: contrast-limited adaptive equalisation (scikit-image; RGB is
    equalised on its brightness channel), as used in the lumbar X-ray study.
    """
    if contrast == "none":
        if arr.dtype == np.uint8:
            return arr
        top = float(arr.max()) if arr.size else 1.0
        scale = 255.0 / max(top, 1.0)
        return np.clip(np.rint(arr.astype(np.float32) * scale), 0, 255).astype(np.uint8)
    work = arr.astype(np.float32)
    lo, hi = float(work.min()), float(work.max())
    unit = (work - lo) / (hi - lo) if hi > lo else np.zeros_like(work)
    if contrast == "equalize":
        from skimage import exposure

        unit = exposure.equalize_hist(unit, nbins=256)
    elif contrast == "clahe":
        from skimage import exposure

        unit = exposure.equalize_adapthist(unit, clip_limit=clip_limit)
    elif contrast != "minmax":
        raise UsageError(f"unknown contrast method {contrast!r}")
    return np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8)
