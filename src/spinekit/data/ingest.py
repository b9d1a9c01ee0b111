"""``spinekit ingest``: any supported annotation format -> a spinekit dataset folder.

See :mod:`spinekit.data.records` for the output layout. Images are copied
(``copy_images=True``, default) into ``DATASET/images`` or referenced in place;
embedded images (LabelMe ``imageData``) are written out as they were encoded;
DICOM frames are decoded (rescale, VOI LUT/window, MONOCHROME1) to 8-bit PNG.
Source files are never modified. Bad files are skipped with a reason and the
run goes on; everything is written atomically.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from spinekit.data.classes import ClassMap
from spinekit.data.instances import ItemConverter
from spinekit.data.records import (
    ANNOTATIONS_FILE,
    INGEST_REPORT_FILE,
    DatasetRecords,
)
from spinekit.errors import InputError, UsageError
from spinekit.io.atomic import atomic_path, atomic_write_bytes, atomic_write_json
from spinekit.io.images import MAX_IMAGE_PIXELS, decode_image_bytes, image_size, is_dicom, read_image
from spinekit.io.shapes import ReadResult, SourceItem

log = logging.getLogger(__name__)

FORMATS = ("labelme", "via", "coco", "aasce", "masks", "images")
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class IngestOptions:
    """Options of one ingest run (see ``spinekit ingest --help``)."""

    format: str
    classes: str | None = None
    patient_pattern: str | None = None
    copy_images: bool = True
    max_pixels: int = MAX_IMAGE_PIXELS
    frames: str | int = "all"
    salt: str | None = None
    overwrite: bool = False
    verify_pixels: bool = True
    """Decode every image fully so truncated files are caught at ingest (slower)."""
    label_attribute: str | None = None
    """VIA: the region attribute holding the class label (default: label/class/type/name)."""
    mapping: Path | None = None
    """Masks: the JSON mapping mask values to classes or levels (default SRC/labels.json)."""
    min_component_px: int = 20
    """Masks: components smaller than this are dropped as specks (and noted)."""


@dataclass
class IngestReport:
    """What an ingest run read, wrote, skipped and warned about."""

    source: str
    out: str
    format: str
    images: int = 0
    annotations: int = 0
    negatives: int = 0
    categories: dict[str, int] = field(default_factory=dict)
    dropped_labels: dict[str, int] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the content of ``ingest_report.json``)."""
        return dict(self.__dict__)


def printable(text: str) -> str:
    """``text`` as valid Unicode: bytes of a non-UTF-8 file name (kept by Python as lone
    surrogates) are shown as ``\\xe9`` escapes, so reports and screens can show them."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _split_line(line: str) -> dict[str, str]:
    file, sep, reason = printable(line).partition(": ")
    return {"file": file, "reason": reason} if sep else {"file": "", "reason": line}


def read_source(src: Path, options: IngestOptions) -> ReadResult:
    """Dispatch to the reader of ``options.format`` (the explicit table of formats)."""
    fmt = options.format
    if fmt == "labelme":
        from spinekit.io.formats.labelme import read_labelme

        return read_labelme(src)
    if fmt == "via":
        from spinekit.io.formats.via import read_via

        return read_via(src, max_pixels=options.max_pixels, label_attribute=options.label_attribute)
    if fmt == "coco":
        from spinekit.io.formats.coco import read_coco

        return read_coco(src, max_pixels=options.max_pixels)
    if fmt == "aasce":
        from spinekit.io.formats.aasce import read_aasce

        return read_aasce(src, max_pixels=options.max_pixels)
    if fmt == "masks":
        from spinekit.io.formats.masks import read_masks

        return read_masks(src, max_pixels=options.max_pixels, mapping=options.mapping,
                          min_component_px=options.min_component_px)
    if fmt == "images":
        from spinekit.io.formats.folder import read_image_folder

        return read_image_folder(src, frames=options.frames)
    raise InputError(src, f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _check_paths(src: Path, out: Path, overwrite: bool) -> None:
    if not src.exists():
        raise InputError(src, "source not found")
    s, o = src.resolve(), out.resolve()
    if o == s or s in o.parents or o in s.parents:
        raise InputError(out, f"output must be outside the source {src} (inputs are never modified)")
    if (out / ANNOTATIONS_FILE).exists() and not overwrite:
        raise InputError(out, "already holds a dataset; use --overwrite to replace it")


def _default_pattern(options: IngestOptions) -> str | None:
    if options.patient_pattern is None and options.format == "aasce":
        from spinekit.io.formats.aasce import AASCE_PATIENT_PATTERN

        return AASCE_PATIENT_PATTERN
    return options.patient_pattern


def compile_patient_pattern(text: str | None) -> re.Pattern[str] | None:
    """The compiled ``--patient-pattern``; UsageError when it is not a regular expression or
    has no capture group (its first group is the patient id)."""
    if not text:
        return None
    try:
        rule = re.compile(text)
    except (re.error, RecursionError, OverflowError) as exc:
        raise UsageError(f"--patient-pattern: invalid regular expression {text!r} ({exc})") from exc
    if rule.groups < 1:
        raise UsageError(f"--patient-pattern: {text!r} must contain one capture group (the patient id)")
    return rule


def _patient_from_name(pattern: re.Pattern[str] | None, file_name: str) -> str | None:
    if pattern is None:
        return None
    match = pattern.search(Path(file_name).name)
    return None if match is None else match.group(1)


def _dataset_name(relative: str) -> str:
    """Where a source image lands inside the dataset: under ``images/`` (once)."""
    return relative if relative.startswith("images/") else f"images/{relative}"


@dataclass
class _ImageWriter:
    """Copies, writes or decodes one item's image into the dataset; returns its record."""

    out: Path
    options: IngestOptions

    def place(self, item: SourceItem) -> dict[str, Any]:
        needs_writing = item.image_bytes is not None or (
            item.image_path is not None and is_dicom(item.image_path))
        if needs_writing and not self.options.copy_images:
            raise InputError(item.source, "embedded or DICOM images must be written into the "
                             "dataset: ingest without --reference")
        if item.image_bytes is not None:
            return self._write_bytes(item)
        assert item.image_path is not None
        if is_dicom(item.image_path):
            return self._decode_dicom(item)
        if self.options.verify_pixels:
            pixels = read_image(item.image_path, max_pixels=self.options.max_pixels)
            width, height = int(pixels.shape[1]), int(pixels.shape[0])
        else:
            width, height = image_size(item.image_path, max_pixels=self.options.max_pixels)
        name = item.file_name
        if self.options.copy_images:
            name = _dataset_name(name)
            self._copy(item.image_path, self.out / name)
        return {"file_name": name, "width": width, "height": height}

    def _copy(self, src: Path, dst: Path) -> None:
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)

    def _write_bytes(self, item: SourceItem) -> dict[str, Any]:
        assert item.image_bytes is not None
        pixels = decode_image_bytes(item.image_bytes, source=item.source, max_pixels=self.options.max_pixels)
        name = _dataset_name(item.file_name)
        atomic_write_bytes(self.out / name, item.image_bytes)
        return {"file_name": name, "width": int(pixels.shape[1]),
                "height": int(pixels.shape[0])}

    def _decode_dicom(self, item: SourceItem) -> dict[str, Any]:
        from spinekit.data.deidentify import pseudonymise_id
        from spinekit.io.dicom import dicom_metadata, read_dicom_frame

        assert item.image_path is not None
        meta = dicom_metadata(item.image_path)
        patient = None
        if meta.get("patient_id"):
            if not self.options.salt:
                raise InputError(item.image_path, "DICOM PatientID must be pseudonymised: give --salt "
                                 "(or set SPINEKIT_SALT); the same salt keeps patients grouped")
            patient = pseudonymise_id(str(meta["patient_id"]), self.options.salt)
        frame = item.frame or 0
        pixels = read_dicom_frame(item.image_path, frame=frame, max_pixels=self.options.max_pixels)
        stem = _dataset_name(Path(item.file_name).with_suffix("").as_posix())
        name = f"{stem}.png" if int(meta.get("number_of_frames") or 1) == 1 else (
            f"{stem}_f{frame:04d}.png")
        with atomic_path(self.out / name) as tmp:
            Image.fromarray(pixels).save(tmp, format="PNG")
        record: dict[str, Any] = {"file_name": name, "width": int(pixels.shape[1]),
                                  "height": int(pixels.shape[0]), "frame": frame}
        if patient:
            record["patient_id"] = patient
        if meta.get("pixel_spacing_mm"):
            record["pixel_spacing_mm"] = [float(v) for v in meta["pixel_spacing_mm"]]
        return record


def ingest(src: str | Path, out: str | Path, options: IngestOptions,
           *, progress: Progress | None = None) -> IngestReport:
    """Read ``src`` in ``options.format`` and write the dataset folder ``out``.

    Returns the :class:`IngestReport` (also written to ``out/ingest_report.json``).
    Raises :class:`InputError` when nothing usable was found or paths conflict.
    """
    import time

    start = time.perf_counter()
    src_path, out_path = Path(src), Path(out)
    _check_paths(src_path, out_path, options.overwrite)
    class_map = ClassMap.parse(options.classes)
    pattern = compile_patient_pattern(_default_pattern(options))
    read = read_source(src_path, options)
    report = IngestReport(source=str(src_path), out=str(out_path), format=options.format)
    report.skipped.extend(_split_line(line) for line in read.skipped)
    converter = ItemConverter(class_map)
    writer = _ImageWriter(out_path, options)
    images: list[dict[str, Any]] = []
    items = _unique_items(read.items, report)
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        placed_all = pool.map(_safe_place, [writer] * len(items), items)
        for index, (item, placed) in enumerate(zip(items, placed_all, strict=True)):
            if progress is not None:
                progress(index, len(items))
            if isinstance(placed, InputError):
                report.skipped.append(_split_line(str(placed)))
                continue
            record = _image_record(item, placed, len(images) + 1, src_path, pattern)
            images.append(record)
            converter.add(item, record)
            report.warnings.extend(_split_line(str(w)) for w in _as_list(item.extra.get("warnings")))
    if progress is not None:
        progress(len(items), len(items))
    if not images:
        raise InputError(src_path, "no usable images: " + "; ".join(
            f"{s['file']}: {s['reason']}" for s in report.skipped[:3]))
    return _finish(out_path, options, images, converter, report, start)


def _unique_items(items: list[SourceItem], report: IngestReport) -> list[SourceItem]:
    """Items sorted by name; a second annotation file for the same image, and an image whose
    file name is not valid UTF-8 (a Latin-1 name: it could not be written to JSON), are
    skipped with the reason."""
    seen: dict[str, str] = {}
    unique = []
    for item in sorted(items, key=lambda it: (it.file_name, it.frame or 0)):
        if printable(item.file_name) != item.file_name or printable(str(item.source)) != str(item.source):
            report.skipped.append({"file": printable(str(item.source)), "reason": (
                f"file name '{printable(item.file_name)}' is not valid UTF-8; rename the file")})
            continue
        key = f"{item.file_name}#{item.frame}"
        if key in seen:
            report.skipped.append({"file": str(item.source),
                                   "reason": f"image {item.file_name} already annotated by {seen[key]}"})
            continue
        seen[key] = str(item.source)
        unique.append(item)
    return unique


def _as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else []


def _safe_place(writer: _ImageWriter, item: SourceItem) -> dict[str, Any] | InputError:
    try:
        return writer.place(item)
    except InputError as exc:
        return exc


def _image_record(item: SourceItem, placed: dict[str, Any], image_id: int, src: Path,
                  pattern: re.Pattern[str] | None) -> dict[str, Any]:
    patient = item.patient_id or placed.get("patient_id") or _patient_from_name(pattern, item.file_name)
    spacing = item.pixel_spacing_mm or placed.get("pixel_spacing_mm")
    try:
        source = item.source.resolve().relative_to(src.resolve()).as_posix()
    except ValueError:
        source = item.source.name
    record: dict[str, Any] = {
        "id": image_id,
        "file_name": placed["file_name"],
        "width": placed["width"],
        "height": placed["height"],
        "patient_id": str(patient) if patient else None,
        "pixel_spacing_mm": [float(v) for v in spacing] if spacing else None,
        "source": source,
        "frame": placed.get("frame", item.frame),
    }
    if item.width is not None and item.height is not None and (
        (item.width, item.height) != (placed["width"], placed["height"])
    ):
        record["declared_size"] = [item.width, item.height]
    for key in ("cobb_angles_deg", "flags"):
        if item.extra.get(key):
            record[key] = item.extra[key]
    return record


def _finish(out: Path, options: IngestOptions, images: list[dict[str, Any]],
            converter: ItemConverter, report: IngestReport, start: float) -> IngestReport:
    import time

    unnamed = [img for img in images if not img["patient_id"]]
    for img in unnamed:
        img["patient_id"] = Path(img["file_name"]).stem
    if unnamed:
        report.warnings.append({"file": "", "reason": (
            f"{len(unnamed)} images have no patient id (no --patient-pattern match): "
            "each is treated as its own patient")})
    image_root = "." if options.copy_images else str(Path(report.source).resolve())
    records = DatasetRecords(
        root=out, images=images, annotations=converter.annotations,
        categories=converter.categories(),
        info={"description": f"spinekit dataset ingested from {options.format}",
              "image_root": image_root, "format": options.format, "spinekit_version": 1},
    )
    records.save()
    annotated = {a["image_id"] for a in converter.annotations}
    report.images = len(images)
    report.annotations = len(converter.annotations)
    report.negatives = sum(1 for img in images if img["id"] not in annotated)
    report.categories = converter.category_counts()
    report.dropped_labels = dict(converter.dropped)
    report.seconds = round(time.perf_counter() - start, 3)
    atomic_write_json(out / INGEST_REPORT_FILE, report.to_dict())
    log.info("ingested %d images, %d instances into %s", report.images, report.annotations, out)
    return report
