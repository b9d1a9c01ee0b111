"""De-identification of DICOM files and PNG/JPEG ultrasound frames.

Headers: DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile
from the standard's Table E.1-1 (:mod:`spinekit.data.deid_profile`), with the
retain options of :class:`DeidConfig`; PatientIdentityRemoved, the method text,
DeidentificationMethodCodeSequence (113100 plus one code per option, and 113101
Clean Pixel Data only when the pixels were checked) and
LongitudinalTemporalInformationModified are set; the file meta group is rebuilt.

Pixels: burned-in text is detected (:mod:`spinekit.data.deid_text`) and blanked,
or the file is refused; see :class:`DeidConfig`. Outputs are written
atomically; a file that fails leaves nothing at its destination and is listed
in the report with a one-line reason. File and folder names are kept as they
are, so rename them if they hold identifying text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from spinekit.data.deid_pixels import burned_in_mask, clean_dicom_pixels, estimate_sector, text_refused
from spinekit.data.deid_profile import (
    DateMode,
    DeidChanges,
    ProfileOptions,
    apply_basic_profile,
    pseudonymise_id,
    remap_uid,
)
from spinekit.errors import InputError
from spinekit.io.atomic import atomic_path, atomic_write_json
from spinekit.io.dicom import check_pixel_data_length
from spinekit.io.images import MAX_IMAGE_PIXELS, RASTER_SUFFIXES, is_dicom

TextAction = Literal["blank", "refuse"]

__all__ = [
    "DEFAULT_REPORT_NAME", "DeidChanges", "DeidConfig", "DeidReport", "FileResult",
    "apply_basic_profile", "burned_in_mask", "deidentify", "deidentify_dataset",
    "deidentify_dicom_file", "deidentify_image_file", "estimate_sector", "pseudonymise_id",
    "remap_uid", "write_report",
]
logger = logging.getLogger(__name__)

DEFAULT_REPORT_NAME = "deidentify_report.json"
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
_META_KEEP = ("FileMetaInformationVersion", "MediaStorageSOPClassUID", "TransferSyntaxUID")
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class DeidConfig:
    """Settings of a de-identification run.

    ``salt`` keys the pseudonyms, UID hashes and date shifts. The same salt
    always gives the same pseudonym and the same new UIDs, so data sets
    de-identified in separate runs with one salt still group by patient and
    study; keep it secret (with it, a guessed PatientID can be checked). It is
    never written into outputs or the report.

    Header options (PS3.15 retain options, see
    :class:`~spinekit.data.deid_profile.ProfileOptions`): ``retain_dates``
    (``remove``, ``full`` or ``offset``), ``retain_uids``, ``retain_device_identity``,
    ``retain_institution_identity``, ``retain_patient_characteristics``,
    ``keep_private`` (all private attributes; not the Retain Safe Private option).

    Pixels: DICOM files whose *Modality* is in ``blank_burned_in_for_modalities`` ("ALL": every one)
    or whose BurnedInAnnotation is YES, and every raster image, are checked for
    burned-in text (:func:`~spinekit.data.deid_text.detect_text_frames`). Found
    text is blanked (``text_action="blank"``) or the file is refused and not
    written (``"refuse"``). Extra regions, blanked in every frame:

    - ``blank_header_fraction``: the top ``ceil(H * fraction)`` rows;
    - ``blank_boxes``: ``(x0, y0, x1, y1)`` pixel boxes (x1, y1 exclusive), clipped;
    - ``blank_outside_sector``: everything outside the imaging sector estimated by
      :func:`estimate_sector` (``sector_threshold`` is its darkness threshold).

    ``jpeg_quality`` is used when JPEG files are re-encoded.
    """

    salt: str
    blank_header_fraction: float = 0.0
    blank_boxes: tuple[tuple[int, int, int, int], ...] = ()
    blank_outside_sector: bool = False
    sector_threshold: float = 0.01
    keep_private: bool = False
    blank_burned_in_for_modalities: tuple[str, ...] = ("US",)
    jpeg_quality: int = 95
    text_action: TextAction = "blank"
    retain_dates: DateMode = "remove"
    retain_uids: bool = False
    retain_device_identity: bool = False
    retain_institution_identity: bool = False
    retain_patient_characteristics: bool = False

    def __post_init__(self) -> None:
        if not self.salt:
            raise InputError(None, "a non-empty salt is required for pseudonyms and UIDs")
        if not 0.0 <= self.blank_header_fraction < 1.0:
            raise InputError(None, "blank_header_fraction must be in [0, 1)")
        if not 0.0 < self.sector_threshold < 1.0:
            raise InputError(None, "sector_threshold must be in (0, 1)")
        if not 1 <= self.jpeg_quality <= 100:
            raise InputError(None, "jpeg_quality must be in 1..100")
        if self.text_action not in ("blank", "refuse"):
            raise InputError(None, f"text_action must be blank or refuse, not {self.text_action!r}")
        if self.retain_dates not in ("remove", "full", "offset"):
            raise InputError(None, f"retain_dates must be remove, full or offset, not "
                                   f"{self.retain_dates!r}")
        for box in self.blank_boxes:
            if len(box) != 4 or min(box) < 0 or box[2] <= box[0] or box[3] <= box[1]:
                raise InputError(None, f"blank box {box} must be (x0, y0, x1, y1), x1 > x0 >= 0, "
                                       "y1 > y0 >= 0")

    @property
    def profile_options(self) -> ProfileOptions:
        """The header options as :class:`ProfileOptions`."""
        return ProfileOptions(self.retain_dates, self.retain_uids, self.retain_device_identity,
                              self.retain_institution_identity, self.retain_patient_characteristics,
                              self.keep_private)

    def describe(self) -> dict[str, Any]:
        """The settings for the report, without the salt."""
        data = asdict(self)
        del data["salt"]
        data["blank_boxes"] = [list(box) for box in self.blank_boxes]
        data["blank_burned_in_for_modalities"] = list(self.blank_burned_in_for_modalities)
        return data


@dataclass
class FileResult:
    """One input file: ``status`` is ``ok``, ``failed`` or ``skipped``; paths are relative."""

    source: str
    kind: str
    status: str
    output: str | None = None
    reason: str | None = None
    changes: DeidChanges | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"source": self.source, "kind": self.kind, "status": self.status,
                                "output": self.output, "reason": self.reason}
        if self.changes is not None:
            data.update(self.changes.to_dict())
        return data


@dataclass
class DeidReport:
    """The run report: per-file results, skipped files and totals."""

    source: str
    output: str
    settings: dict[str, Any]
    files: list[FileResult] = field(default_factory=list)

    @property
    def totals(self) -> dict[str, int]:
        done = [f.changes for f in self.files if f.status == "ok" and f.changes is not None]
        return {
            "files_written": sum(f.status == "ok" for f in self.files),
            "files_failed": sum(f.status == "failed" for f in self.files),
            "files_skipped": sum(f.status == "skipped" for f in self.files),
            "uids_remapped": sum(c.uids_remapped for c in done),
            "private_tags_removed": sum(c.private_tags_removed for c in done),
            "files_with_text_found": sum(bool(c.pixels.get("text_lines")) for c in done),
            "files_with_pixels_blanked": sum(bool(c.regions_blanked) for c in done),
            "files_pixels_not_checked": sum(c.pixels.get("checked") is False for c in done),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "output": self.output, "settings": self.settings,
            "totals": self.totals,
            "files": [f.to_dict() for f in self.files if f.status != "skipped"],
            "skipped": [{"source": f.source, "reason": f.reason}
                        for f in self.files if f.status == "skipped"],
        }


def _method_lines(config: DeidConfig, changes: DeidChanges) -> list[str]:
    lines = ["PS3.15 Table E.1-1 Basic Profile (2024b + 2026c rows)",
             "PatientID/Name: salted HMAC-SHA256 pseudonym",
             "UIDs kept" if config.retain_uids else "UIDs remapped: salted hash under 2.25",
             "attributes outside Table E.1-1 removed unless on the safe list"]
    if config.retain_dates == "offset":
        lines.append("dates shifted by a salted per-patient offset")
    lines.append("private attributes retained" if config.keep_private
                 else "private attributes removed")
    if changes.pixels.get("checked"):
        lines.append(f"pixels checked for burned-in text: {changes.pixels['text_lines']} line(s) blanked")
    for region in changes.regions_blanked:
        if region["kind"] != "detected_text":
            lines.append(f"pixels blanked: {region['kind']}")
    return lines


def _finalise_meta(ds: Dataset, config: DeidConfig, changes: DeidChanges) -> None:
    """A fresh file meta group: class, instance (consistent with the dataset) and syntax."""
    old = ds.file_meta if hasattr(ds, "file_meta") else FileMetaDataset()
    meta = FileMetaDataset()
    for keyword in _META_KEEP:
        if keyword in old:
            setattr(meta, keyword, old[keyword].value)
    dropped = {e.keyword for e in old if e.keyword not in _META_KEEP} - {
        "MediaStorageSOPInstanceUID", "ImplementationClassUID", "ImplementationVersionName",
        "FileMetaInformationGroupLength"}
    changes.removed.update(dropped)
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    elif "MediaStorageSOPInstanceUID" in old:
        value = str(old.MediaStorageSOPInstanceUID)
        meta.MediaStorageSOPInstanceUID = UID(value if config.retain_uids else remap_uid(value, config.salt))
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "SPINEKIT_DEID"
    ds.file_meta = meta


def _finalise_dataset(ds: Dataset, config: DeidConfig, changes: DeidChanges) -> None:
    """File meta, preamble and the de-identification attributes."""
    _finalise_meta(ds, config, changes)
    ds.preamble = b"\x00" * 128
    if 0xFFFCFFFC in ds:  # trailing padding may hold leftover bytes of the original
        del ds[0xFFFCFFFC]
        changes.removed.add("DataSetTrailingPadding")
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = _method_lines(config, changes)
    method_codes = config.profile_options.method_codes()
    if changes.pixels.get("checked"):
        method_codes.insert(1, ("113101", "Clean Pixel Data Option"))
    items = []
    for value, meaning in method_codes:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    ds.LongitudinalTemporalInformationModified = {
        "remove": "REMOVED", "full": "UNMODIFIED", "offset": "MODIFIED"}[config.retain_dates]


def _pixels_to_check(ds: Dataset, config: DeidConfig) -> bool:
    wanted = {m.upper() for m in config.blank_burned_in_for_modalities}
    modality = str(ds.get("Modality", "")).strip().upper()
    selected = "ALL" in wanted or modality in wanted
    return selected or str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES"


def deidentify_dataset(ds: Dataset, config: DeidConfig) -> DeidChanges:
    """De-identify ``ds`` in place: pixels (burned-in text) when they are checked, then the header.

    Raises :class:`InputError` (path ``None``) when pixel data has to be checked
    but cannot be decoded or re-encoded, or text was found and the config
    refuses such files.
    """
    changes = DeidChanges()
    if "PixelData" in ds and _pixels_to_check(ds, config):
        clean_dicom_pixels(ds, config, changes)
    elif "PixelData" in ds:
        changes.pixels = {"checked": False}
        changes.notes.append(f"pixel data not checked for burned-in text: modality "
                             f"{str(ds.get('Modality', '')) or 'unknown'} not in "
                             "--text-modalities; BurnedInAnnotation left as it was")
    apply_basic_profile(ds, config.salt, config.profile_options, changes=changes)
    _finalise_dataset(ds, config, changes)
    return changes


# --------------------------------------------------------------------- files


def _check_not_truncated(ds: Dataset, src: Path) -> None:
    """pydicom silently shortens a value cut off by the end of the file: refuse those."""
    tags = list(ds.keys())
    if not tags:
        raise InputError(src, "DICOM file holds no data elements")
    last = ds.get_item(tags[-1])
    if isinstance(last, RawDataElement) and last.length != 0xFFFFFFFF and (
            last.value_tell + last.length > src.stat().st_size):
        raise InputError(src, f"file is truncated (element {last.tag} is cut off)")


def _read_dicom(src: Path) -> Dataset:
    """The whole dataset; InputError when it is not DICOM, truncated, or its header claims more
    pixel data than it holds (frames x rows x columns x samples x bits: a file whose header
    lies about its pixels is not a valid output)."""
    try:
        ds = pydicom.dcmread(src)
        _check_not_truncated(ds, src)
        check_pixel_data_length(ds, src)
        return ds
    except InvalidDicomError:
        pass
    except InputError:
        raise
    except Exception as exc:
        raise InputError(src, f"cannot read DICOM ({type(exc).__name__}: {exc})") from exc
    try:
        ds = pydicom.dcmread(src, force=True)
    except Exception as exc:
        raise InputError(src, f"not a readable DICOM file ({type(exc).__name__})") from exc
    if "SOPClassUID" not in ds:
        raise InputError(src, "not a DICOM file (no preamble and no SOP Class UID)")
    _check_not_truncated(ds, src)
    check_pixel_data_length(ds, src)
    implicit, little = ds.original_encoding
    if not hasattr(ds, "file_meta"):
        ds.file_meta = FileMetaDataset()
    if "TransferSyntaxUID" not in ds.file_meta and little:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    return ds


class _Skip(InputError):
    """A file that is deliberately not de-identified (a DICOMDIR)."""


def deidentify_dicom_file(src: Path, dst: Path, config: DeidConfig) -> DeidChanges:
    """De-identify one DICOM file into ``dst`` (written atomically; ``src`` is only read)."""
    ds = _read_dicom(src)
    sop_class = ds.file_meta.get("MediaStorageSOPClassUID", ds.get("SOPClassUID", ""))
    if str(sop_class) == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
        raise _Skip(src, "DICOMDIR not copied (its records hold patient data and file offsets); "
                    "build a new one from the de-identified files")
    try:
        changes = deidentify_dataset(ds, config)
    except InputError as exc:
        raise InputError(src, exc.reason) from exc
    with atomic_path(dst) as tmp:
        pydicom.dcmwrite(tmp, ds, enforce_file_format=True)
    return changes


def _raster_array(img: Image.Image) -> tuple[np.ndarray, str | None]:
    """Pixels as ``(H, W)`` uint8/uint16 or ``(H, W, 3)`` uint8, plus a note if converted."""
    if img.mode in ("L", "RGB", "I;16"):
        return np.array(img), None
    if img.mode in ("I", "I;16B", "I;16L"):
        return np.clip(np.array(img), 0, 65535).astype(np.uint16), None
    target = "L" if img.mode in ("LA", "1") else "RGB"
    return np.array(img.convert(target)), f"converted from mode {img.mode} to {target}"


def deidentify_image_file(src: Path, dst: Path, config: DeidConfig) -> DeidChanges:
    """Blank burned-in text regions of a raster frame and write it without metadata.

    The image is decoded and written afresh (no EXIF, text chunks, comments or
    ICC profile) in the format its suffix names; JPEG is re-encoded at
    ``config.jpeg_quality`` with 4:4:4 chroma (lossy; noted in the report).
    """
    changes = DeidChanges()
    try:
        with Image.open(src) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise InputError(src, f"image is {img.width}x{img.height}, over the pixel limit")
            img.load()
            arr, note = _raster_array(img)
            orientation = img.getexif().get(0x0112, 1)
    except InputError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(src, f"not a readable image ({type(exc).__name__}: {exc})") from exc
    if note:
        changes.notes.append(note)
    if orientation != 1:
        changes.notes.append(f"EXIF orientation {orientation} dropped: pixels kept as stored, "
                             "so viewers that rotate by EXIF will show them differently")
    try:
        mask, changes.regions_blanked, boxes = burned_in_mask(arr[None], config)
        text_refused(boxes, config)
    except InputError as exc:
        raise InputError(src, exc.reason) from exc
    except ValueError as exc:
        raise InputError(src, str(exc)) from exc
    changes.pixels = {"checked": True, "frames": 1, "text_lines": len(boxes)}
    arr[mask] = 0
    changes.notes.append("metadata stripped (image re-written from its pixels)")
    suffix = dst.suffix.lower()
    options: dict[str, Any] = {}
    if suffix in (".jpg", ".jpeg"):
        if arr.dtype != np.uint8:
            arr = (arr >> 8).astype(np.uint8)
            changes.notes.append("16-bit pixels reduced to 8 bits for JPEG")
        options = {"quality": config.jpeg_quality, "subsampling": 0}
        changes.notes.append(f"re-encoded as JPEG quality {config.jpeg_quality} (lossy)")
    with atomic_path(dst) as tmp:
        Image.fromarray(arr).save(tmp, **options)
    return changes


# --------------------------------------------------------------------- runs


def _check_paths(src: Path, out: Path) -> tuple[Path, Path]:
    """Resolve both paths; refuse any overlap so the input is never overwritten."""
    if not src.exists():
        raise InputError(src, "input not found")
    src_r, out_r = src.resolve(), out.resolve()
    if out_r.exists() and not out_r.is_dir():
        raise InputError(out, "output must be a folder, and this is an existing file")
    if out_r == src_r or src_r in out_r.parents:
        raise InputError(out, f"output is inside the input {src}; the input is never overwritten")
    if out_r in src_r.parents:
        raise InputError(out, f"input {src} is inside the output folder; choose a separate folder")
    return src_r, out_r


def _plan(src: Path) -> tuple[list[tuple[Path, str, str]], list[FileResult]]:
    """Files to process as ``(path, relative posix path, kind)`` and the skipped ones."""
    if src.is_file():
        candidates, base = [src], src.parent
    else:
        candidates, base = sorted(p for p in src.rglob("*") if p.is_file()), src
    todo: list[tuple[Path, str, str]] = []
    skipped: list[FileResult] = []
    for path in candidates:
        rel = path.relative_to(base).as_posix()
        if path.suffix.lower() in RASTER_SUFFIXES:
            todo.append((path, rel, "image"))
        elif is_dicom(path):
            todo.append((path, rel, "dicom"))
        else:
            skipped.append(FileResult(rel, "other", "skipped", reason="not DICOM or a raster image"))
    return todo, skipped


def _failure_reason(exc: Exception) -> str:
    if isinstance(exc, InputError):
        return exc.reason
    return f"{type(exc).__name__}: {exc}"[:300]


def deidentify(
    src: Path,
    out: Path,
    config: DeidConfig,
    *,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> DeidReport:
    """De-identify a DICOM/raster file or a folder tree ``src`` into the folder ``out``.

    Outputs mirror the relative paths under ``out`` (for a single file:
    ``out / src.name``). DICOM is found with :func:`spinekit.io.images.is_dicom`,
    rasters by suffix; other files are listed as skipped and not copied. A file
    that fails is recorded with its reason and the run goes on. Raises
    :class:`InputError` when ``out`` and ``src`` overlap, or when output files
    already exist and ``overwrite`` is false (checked before anything is written).
    ``progress(done, total)`` is called after each file.
    """
    src_r, out_r = _check_paths(Path(src), Path(out))
    todo, skipped = _plan(src_r)
    if not overwrite:
        existing = [rel for _, rel, _ in todo if (out_r / rel).exists()]
        if existing:
            raise InputError(out, f"{len(existing)} output file(s) already exist (first: "
                                  f"{existing[0]}); pass overwrite=True to replace them")
    report = DeidReport(str(src_r), str(out_r), config.describe(), files=list(skipped))
    for done, (path, rel, kind) in enumerate(todo, start=1):
        report.files.append(_process_one(path, out_r / rel, rel, kind, config))
        if progress is not None:
            progress(done, len(todo))
    logger.info("de-identified %d file(s), %d failed, %d skipped", report.totals["files_written"],
                report.totals["files_failed"], report.totals["files_skipped"])
    return report


def _process_one(path: Path, dst: Path, rel: str, kind: str, config: DeidConfig) -> FileResult:
    try:
        if kind == "dicom":
            changes = deidentify_dicom_file(path, dst, config)
        else:
            changes = deidentify_image_file(path, dst, config)
    except _Skip as exc:
        return FileResult(rel, kind, "skipped", reason=exc.reason)
    except Exception as exc:  # one bad file must not stop the run
        reason = _failure_reason(exc)
        logger.warning("%s: not de-identified: %s", rel, reason)
        dst.unlink(missing_ok=True)  # no stale output (from an overwritten run) for a failed file
        return FileResult(rel, kind, "failed", reason=reason)
    if changes.pixels.get("text_lines"):
        logger.warning("%s: burned-in text found: %d text line(s) blanked", rel,
                       changes.pixels["text_lines"])
    elif changes.pixels.get("checked") is False:
        logger.info("%s: pixel data not checked for burned-in text (modality not selected)", rel)
    return FileResult(rel, kind, "ok", output=rel, changes=changes)


def write_report(report: DeidReport, path: Path) -> None:
    """Write ``report.to_dict()`` as JSON to ``path`` atomically."""
    atomic_write_json(path, report.to_dict())
