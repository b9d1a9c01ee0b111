"""``spinekit clean``: screen a dataset folder and write ``DATASET/cleaning_report.json``.

Nothing is deleted or modified: the report lists findings and which images and
annotations the later steps (split, training) leave out. Checks, by id:

==================  ========  =========  ==============================================
id                  severity  excluded   meaning
==================  ========  =========  ==============================================
damaged_file        error     yes        image missing, undecodable or truncated (full
                                         decode with ``verify_pixels``, header otherwise);
                                         annotation file skipped at ingest (already out)
naming              warning   no         base name breaks ``name_pattern``; two file
                                         names differ only by case; file name repeated
duplicate_image     warning   no         same decoded pixels as another image, or a near
                                         copy (re-encoded, resized, brightened): see
                                         :mod:`spinekit.data.duplicates`; every image of
                                         a group after its first (needs the full decode,
                                         not run with ``verify_pixels`` off)
incorrect_mark      error     yes        unknown category; polygon with < 3 distinct
                                         points or no polygon; ``level`` attribute not a
                                         vertebra level (C1-C7, T1-T12, L1-L6, S, S1-S5,
                                         Co, or a disc pair such as L4-L5); level repeated
                                         in one image (every repeat is flagged); level
                                         more than 3 levels off its place in the image's
                                         level order (robust line of position on level)
wrong_shape_kind    warning   no         drawn as an open shape (polyline, line, point)
                                         or with another kind than most of its class
foreign_annotation  error     yes        image's recorded size differs from the file's;
                                         more than half of an instance outside the image;
                                         annotation's image id not in ``images``
negative            info      never      image without instances: ``negative_images``
emptied_image       error     always     every instance of the image was excluded: the
                                         image is excluded instead of becoming a negative
                                         (its targets exist but are unusable)
self_intersection   error     yes        polygon edges cross or touch (bow-tie)
zero_area           error     yes        polygon area < ``min_area_px``
outside_image       warning   no         a vertex > 1 px outside the image, the instance
                                         mostly inside
duplicate           error     yes        same class as an earlier instance of the image
                                         and mask IoU >= ``duplicate_iou`` (later flagged)
outlier_size        warning   no         area (relative to the image, or to the median of
                                         its levelled companions) far from its class; or
                                         far from both of its 2 nearest same-class
                                         neighbours in the image
outlier_shape       warning   no         aspect ratio of the min-area rectangle (relative
                                         to its levelled companions when it has them) or
                                         low solidity (area / convex hull) vs its class
outlier_position    warning   no         centroid (fraction of width/height) far from its
                                         class; offset from its level's place along the
                                         spine; far from every same-class instance
==================  ========  =========  ==============================================

Outliers are robust z-scores (median and MAD, MAD with a small floor) beyond
``outlier_z``, computed within the instances of the same class and ``level``
attribute when there are at least 8 of those, otherwise within the class when
it has at least 8; the in-image features (nearest neighbours) are pooled per
class. An instance with a level and at least 2 levelled same-class companions
in its image is measured against them (independent of field of view and
resolution); others against the image frame. Only instances without error
findings enter the statistics and the duplicate test.

An image is excluded when an excluded check hits the image itself; an
annotation when an excluded check hits it. ``--exclude`` also accepts
``geometry`` (self_intersection, zero_area, outside_image, duplicate) and
``outliers`` (the three outlier checks).
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from spinekit.data.cleaning_checks import (
    CHECKS,
    OPEN_SHAPE_KINDS,
    Finding,
    Instance,
    duplicate_findings,
    level_findings,
    level_name,
    measure,
    outlier_findings,
    parse_rings,
)
from spinekit.data.duplicates import (
    Fingerprint,
    describe_groups,
    duplicate_groups,
    duplicate_image_findings,
    fingerprint,
)
from spinekit.data.records import (
    ANNOTATIONS_FILE,
    CLEANING_REPORT_FILE,
    INGEST_REPORT_FILE,
    DatasetRecords,
    load_dataset,
    read_json_report,
)
from spinekit.errors import InputError
from spinekit.geometry import count_self_intersections, inside_fraction, polygon_area
from spinekit.io.atomic import atomic_write_json
from spinekit.io.images import image_size, read_image

log = logging.getLogger(__name__)

REPORT_VERSION = 1
CHECK_GROUPS = {
    "geometry": ("self_intersection", "zero_area", "outside_image", "duplicate"),
    "outliers": ("outlier_size", "outlier_shape", "outlier_position"),
}
Progress = Callable[[int, int], None]
Size = tuple[int, int]


@dataclass(frozen=True)
class CleaningConfig:
    """Settings of one cleaning run (see the module docstring for the checks)."""

    name_pattern: str = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
    exclude: tuple[str, ...] | None = None
    outlier_z: float = 4.0
    duplicate_iou: float = 0.9
    min_area_px: float = 4.0
    verify_pixels: bool = True

    def exclude_checks(self) -> tuple[str, ...]:
        """Check ids that lead to exclusion, in report order; raises InputError on a bad name."""
        if self.exclude is None:
            chosen = {c for c, info in CHECKS.items() if info.default_exclude}
        else:
            chosen = set()
            for name in self.exclude:
                if name == "negative":
                    raise InputError(None, "check 'negative' cannot be excluded: negative "
                                     "images are listed in negative_images")
                if name not in CHECKS and name not in CHECK_GROUPS:
                    raise InputError(None, f"unknown check {name!r} in exclude; choose from "
                                     f"{', '.join([*CHECKS, *CHECK_GROUPS])}")
                chosen.update(CHECK_GROUPS.get(name, (name,)))
        chosen.add("emptied_image")
        return tuple(c for c in CHECKS if c in chosen)

    def validate(self) -> None:
        """Raise InputError on an unusable setting."""
        try:
            re.compile(self.name_pattern)
        except re.error as exc:
            raise InputError(None, f"invalid name_pattern {self.name_pattern!r} ({exc})") from exc
        if not self.outlier_z > 0:
            raise InputError(None, f"outlier_z must be > 0, got {self.outlier_z}")
        if not 0 < self.duplicate_iou <= 1:
            raise InputError(None, f"duplicate_iou must be in (0, 1], got {self.duplicate_iou}")
        if not self.min_area_px >= 0:
            raise InputError(None, f"min_area_px must be >= 0, got {self.min_area_px}")
        self.exclude_checks()


@dataclass
class CleaningReport:
    """Outcome of :func:`clean_dataset`; :meth:`to_dict` is the JSON layout on disk."""

    config: CleaningConfig
    exclude_checks: tuple[str, ...]
    findings: list[Finding]
    excluded_images: list[int]
    excluded_annotations: list[int]
    negative_images: list[int]
    n_images: int
    n_annotations: int
    duplicate_groups: list[dict[str, Any]] | None = None  # None: not checked (no full decode)

    def counts(self) -> dict[str, int]:
        """Findings per check id (every check listed, 0 included)."""
        tally = Counter(f.check for f in self.findings)
        return {check: tally.get(check, 0) for check in CHECKS}

    def summary(self) -> dict[str, int]:
        """Totals: images, annotations, negatives, excluded images/annotations."""
        return {
            "images": self.n_images,
            "annotations": self.n_annotations,
            "negatives": len(self.negative_images),
            "excluded_images": len(self.excluded_images),
            "excluded_annotations": len(self.excluded_annotations),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the content of ``cleaning_report.json``)."""
        config = asdict(self.config)
        config["exclude"] = None if self.config.exclude is None else list(self.config.exclude)
        return {
            "version": REPORT_VERSION,
            "config": config,
            "exclude_checks": list(self.exclude_checks),
            "counts": self.counts(),
            "findings": [f.to_dict() for f in self.findings],
            "excluded_images": list(self.excluded_images),
            "excluded_annotations": list(self.excluded_annotations),
            "negative_images": list(self.negative_images),
            "duplicate_groups": self.duplicate_groups,
            "summary": self.summary(),
        }


@dataclass
class _Context:
    """What the per-annotation checks need to know about the dataset."""

    config: CleaningConfig
    categories: dict[int, str]
    images: dict[int, dict[str, Any]]
    sizes: dict[int, Size | None]
    majority_kind: dict[int, str] = field(default_factory=dict)


def _int_id(item: dict[str, Any], key: str, what: str, root: Path) -> int:
    try:
        return int(item[key])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(root / ANNOTATIONS_FILE, f"{what} without a valid {key!r}") from exc


def ingest_findings(root: Path) -> list[Finding]:
    """``damaged_file`` findings for the files ``ingest_report.json`` lists as skipped."""
    report = read_json_report(root, INGEST_REPORT_FILE)
    skipped = report.get("skipped") if report else None
    out = []
    for entry in skipped if isinstance(skipped, list) else []:
        if isinstance(entry, dict):
            reason = str(entry.get("reason", "skipped")).replace("\n", " ")
            out.append(Finding("damaged_file", str(entry.get("file", "")),
                               f"not ingested (already excluded): {reason}", excluded=True))
    return out


def _read_size(records: DatasetRecords, image: dict[str, Any],
               verify: bool) -> tuple[Size, Fingerprint | None]:
    path = records.image_path(image)
    if verify:
        pixels = read_image(path, frame=int(image.get("frame") or 0))
        return (int(pixels.shape[1]), int(pixels.shape[0])), fingerprint(pixels)
    return image_size(path), None


ImageResult = tuple[list[Finding], Size | None, Fingerprint | None]


def _image_check(records: DatasetRecords, image: dict[str, Any], verify: bool) -> ImageResult:
    """Decode (or read the header of) one image; damaged file or size mismatch findings."""
    image_id, file = int(image["id"]), str(image.get("file_name", ""))
    try:
        (width, height), printed = _read_size(records, image, verify)
    except InputError as exc:
        return [Finding("damaged_file", file, exc.reason, image_id=image_id)], None, None
    declared = image.get("declared_size")
    recorded = tuple(declared) if isinstance(declared, list) and len(declared) == 2 else (
        image.get("width"), image.get("height"))
    if all(isinstance(v, int | float) for v in recorded) and recorded != (width, height):
        reason = (f"annotations record {recorded[0]}x{recorded[1]} px but the image file is "
                  f"{width}x{height} px: the annotations may belong to another image")
        return [Finding("foreign_annotation", file, reason, image_id=image_id)], (width, height), printed
    return [], (width, height), printed


def _image_checks(records: DatasetRecords, verify: bool, progress: Progress | None,
                  ) -> tuple[list[Finding], dict[int, Size | None], dict[int, Fingerprint]]:
    """Run :func:`_image_check` on every image (threads: decoding releases the GIL)."""
    findings: list[Finding] = []
    sizes: dict[int, Size | None] = {}
    prints: dict[int, Fingerprint] = {}
    total = len(records.images)
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda img: _image_check(records, img, verify), records.images)
        for done, (image, (found, size, printed)) in enumerate(zip(records.images, results,
                                                                    strict=True), 1):
            findings.extend(found)
            sizes[int(image["id"])] = size
            if printed is not None:
                prints[int(image["id"])] = printed
            if progress is not None:
                progress(done, total)
    return findings, sizes, prints


def naming_findings(images: list[dict[str, Any]], pattern: str) -> list[Finding]:
    """Base names breaking ``pattern``, names equal up to case, repeated (name, frame)."""
    rule = re.compile(pattern)
    out: list[Finding] = []
    seen: dict[tuple[str, Any], int] = {}
    folded: dict[str, tuple[str, int]] = {}
    for image in images:
        image_id, file = int(image["id"]), str(image.get("file_name", ""))
        base = PurePath(file.replace("\\", "/")).name
        if not rule.match(base):
            out.append(Finding("naming", file, f"base name {base!r} breaks the naming rule "
                               f"{pattern}", image_id=image_id))
        key = (file, image.get("frame"))
        if key in seen:
            out.append(Finding("naming", file, f"file name repeated (also image {seen[key]})",
                               image_id=image_id))
            continue
        seen[key] = image_id
        other = folded.setdefault(file.casefold(), (file, image_id))
        if other[0] != file:
            out.append(Finding("naming", file, f"differs from {other[0]!r} (image {other[1]}) "
                               "only by letter case", image_id=image_id))
    return out


def _shape_kind(ann: dict[str, Any]) -> str | None:
    kind = ann.get("shape") or (ann.get("attributes") or {}).get("shape")
    return None if kind is None else str(kind)


def _majority_kinds(annotations: list[dict[str, Any]]) -> dict[int, str]:
    tally: dict[int, Counter[str]] = {}
    for ann in annotations:
        kind = _shape_kind(ann)
        if kind is not None and "category_id" in ann:
            tally.setdefault(int(ann["category_id"]), Counter())[kind] += 1
    return {cat: counts.most_common(1)[0][0] for cat, counts in tally.items()}


def _mark_findings(ann: dict[str, Any], ctx: _Context, base: Finding) -> list[Finding]:
    """Shape kind and level attribute of one annotation (category already known)."""
    out = []
    kind, cat = _shape_kind(ann), int(ann["category_id"])
    expected = ctx.majority_kind.get(cat)
    if kind in OPEN_SHAPE_KINDS:
        out.append(replace(base, check="wrong_shape_kind",
                           reason=f"drawn as an open {kind}, not an area"))
    elif kind is not None and expected is not None and kind != expected:
        out.append(replace(base, check="wrong_shape_kind", reason=f"drawn as {kind} while "
                           f"{base.category!r} instances are mostly {expected}"))
    attributes = ann.get("attributes") or {}
    if "level" in attributes and level_name(attributes["level"]) is None:
        out.append(replace(base, check="incorrect_mark",
                           reason=f"level {attributes['level']!r} is not a vertebra level"))
    return out


def _geometry_findings(rings: list[np.ndarray], size: Size | None, ctx: _Context,
                       base: Finding) -> list[Finding]:
    """Self-intersection, zero area and outside-image findings of one instance."""
    out = []
    crossings = sum(count_self_intersections(r) for r in rings)
    if crossings:
        out.append(replace(base, check="self_intersection",
                           reason=f"{crossings} pair(s) of polygon edges cross or touch"))
    area = sum(polygon_area(r) for r in rings)  # meaningless when crossing: not tested then
    if area < ctx.config.min_area_px and not crossings:
        out.append(replace(base, check="zero_area", reason=f"area {area:.2f} px² is below "
                           f"min_area_px {ctx.config.min_area_px:g}"))
    if size is not None:
        pts = np.concatenate(rings, axis=0)
        width, height = size
        if (pts.min() < -1.0 or pts[:, 0].max() > width + 1.0
                or pts[:, 1].max() > height + 1.0):
            share = inside_fraction(rings, width, height)
            check = "outside_image" if share >= 0.5 else "foreign_annotation"
            out.append(replace(base, check=check, reason=f"vertices outside the {width}x{height}"
                               f" image; {100 * share:.0f}% of the instance inside"))
    return out


def annotation_findings(ann: dict[str, Any], ctx: _Context,
                        root: Path) -> tuple[list[Finding], Instance | None]:
    """Checks on one annotation alone; the instance for the dataset-wide checks, if usable."""
    ann_id = _int_id(ann, "id", "annotation", root)
    image_id = _int_id(ann, "image_id", f"annotation {ann_id}", root)
    image = ctx.images.get(image_id)
    cat = ann.get("category_id")
    cat_id = int(cat) if isinstance(cat, int | float) else -1
    name = ctx.categories.get(cat_id)
    file = ANNOTATIONS_FILE if image is None else str(image.get("file_name", ""))
    base = Finding("incorrect_mark", file, "", image_id=image_id, annotation_id=ann_id,
                   category=name)
    if image is None:
        return [replace(base, check="foreign_annotation",
                        reason=f"image id {image_id} is not in the dataset's images")], None
    if name is None:
        return [replace(base, reason=f"category id {cat!r} is not a known category")], None
    rings, problem = parse_rings(ann.get("segmentation"))
    if problem is not None:
        return [replace(base, reason=problem)], None
    size = ctx.sizes.get(image_id)
    if size is None and all(isinstance(image.get(k), int) for k in ("width", "height")):
        size = (int(image["width"]), int(image["height"]))
    findings = _mark_findings(ann, ctx, base) + _geometry_findings(rings, size, ctx, base)
    level = level_name((ann.get("attributes") or {}).get("level", ""))
    usable = not any(CHECKS[f.check].severity == "error" for f in findings)
    return findings, measure(Instance(ann_id, image_id, cat_id, name, level, file,
                                      rings, size, usable))


def _resolve(findings: list[Finding], exclude: Iterable[str], records: DatasetRecords,
             ) -> tuple[list[Finding], set[int], set[int], list[int]]:
    """Mark excluded findings; add emptied_image and negative findings.

    Returns ``(findings, excluded image ids, excluded annotation ids, negative image ids)``.
    """
    chosen = set(exclude)
    out = [replace(f, excluded=True) if f.check in chosen else f for f in findings]
    bad_images = {f.image_id for f in out if f.excluded and f.annotation_id is None
                  and f.image_id is not None}
    bad_anns = {f.annotation_id for f in out if f.excluded and f.annotation_id is not None}
    by_image = records.annotations_by_image()
    negatives = []
    for image in records.images:
        image_id, file = int(image["id"]), str(image.get("file_name", ""))
        anns = by_image.get(image_id, [])
        if image_id in bad_images:
            continue
        if not anns:
            negatives.append(image_id)
            out.append(Finding("negative", file, "no instances: goes to the negative set",
                               image_id=image_id))
        elif all(int(a["id"]) in bad_anns for a in anns):
            bad_images.add(image_id)
            out.append(Finding("emptied_image", file, f"all {len(anns)} instance(s) are "
                               "excluded; the image is excluded, not used as a negative",
                               image_id=image_id, excluded=True))
    return out, {i for i in bad_images if i is not None}, \
        {a for a in bad_anns if a is not None}, sorted(negatives)


def _annotation_pass(records: DatasetRecords, ctx: _Context) -> list[Finding]:
    """Per-annotation checks, then level, duplicate and outlier checks over the instances."""
    findings: list[Finding] = []
    instances: list[Instance] = []
    for ann in records.annotations:
        found, inst = annotation_findings(ann, ctx, records.root)
        findings.extend(found)
        if inst is not None:
            instances.append(inst)
    findings.extend(level_findings(instances))
    findings.extend(duplicate_findings(instances, ctx.config.duplicate_iou))
    findings.extend(outlier_findings(instances, ctx.config.outlier_z))
    return findings


def clean_dataset(root: Path, config: CleaningConfig = CleaningConfig(), *,
                  progress: Progress | None = None) -> CleaningReport:
    """Run every check on the dataset folder ``root``; nothing on disk is changed.

    ``progress(done, total)`` is called after each image is read. Raises
    :class:`InputError` on a missing or malformed ``annotations.json`` or a bad
    setting. Write the result with :func:`write_cleaning_report`.
    """
    config.validate()
    root = Path(root)
    records = load_dataset(root)
    images = {}
    for image in records.images:
        images[_int_id(image, "id", "image", root)] = image
    categories = {_int_id(c, "id", "category", root): str(c.get("name", ""))
                  for c in records.categories}
    findings = ingest_findings(root)
    image_found, sizes, prints = _image_checks(records, config.verify_pixels, progress)
    findings += image_found + naming_findings(records.images, config.name_pattern)
    groups = describe_groups(duplicate_groups(prints), images, prints) \
        if config.verify_pixels else None
    findings += duplicate_image_findings(groups or [])
    ctx = _Context(config, categories, images, sizes, _majority_kinds(records.annotations))
    findings += _annotation_pass(records, ctx)
    exclude = config.exclude_checks()
    findings, bad_images, bad_anns, negatives = _resolve(findings, exclude, records)
    order = {check: k for k, check in enumerate(CHECKS)}
    findings.sort(key=lambda f: (order[f.check], f.image_id if f.image_id is not None else -1,
                                 f.annotation_id if f.annotation_id is not None else -1))
    report = CleaningReport(config, exclude, findings, sorted(bad_images), sorted(bad_anns),
                            negatives, len(records.images), len(records.annotations), groups)
    log.info("cleaned %s: %s", root, report.summary())
    return report


def write_cleaning_report(report: CleaningReport, root: Path) -> Path:
    """Write ``root/cleaning_report.json`` atomically; returns its path."""
    path = Path(root) / CLEANING_REPORT_FILE
    atomic_write_json(path, report.to_dict())
    return path

