"""Built-in phantom: synthetic transverse lumbar ultrasound frames with LabelMe polygons.

``spinekit phantom --kind ultrasound-facet`` calls
:func:`make_ultrasound_facet_phantom`, which writes::

    OUT/
      phantom.json   summary: config, seed, counts per label, patients, frames
      local/         LabelMe folder, labels "F" and "E" only
      full/          LabelMe folder, labels "F", "E", "TP" and "SP"

Each LabelMe folder holds ``P{patient:03d}_F{frame:03d}.png`` (8-bit grayscale,
``width x height``, the same bytes in both folders) and ``.json`` (LabelMe 5.x,
polygons). The two folders are the two annotation variants of the study's
labelling comparison (local: the targets only; full: also the surrounding bone).
Both also hold, for every facet joint whose cleft is visible, the ground-truth
needle target as a LabelMe ``point`` shape labelled ``needle_target``: the point of
the facet polygon's probe-side (dorsal) edge on the beam through the joint cleft
(the gap between the inferior and superior articular processes, where the needle
enters the joint); see :func:`spinekit.data.phantom_anatomy.facet_curve`. Each
document also carries ``pixel_spacing_mm`` ``[row, col]`` (isotropic) at its top
level, which ``spinekit ingest --format labelme`` reads.

Frames are transverse views from a curved-array probe (see
:mod:`spinekit.data.phantom_views` for the anatomy and
:mod:`spinekit.data.phantom_echo` for the echo model). A ``negative_fraction``
share shows neither facet joints nor the ventral complex. Frames of one patient
share depth setting, fan, body habitus and gain; patients differ. A fake
patient name, ID and exam date are burned into the header band above the fan,
and a depth scale and scanner settings at the sides, for de-identification to
remove. Everything is drawn from ``seed``: the same seed gives byte-identical
files.
"""

from __future__ import annotations

import io
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from spinekit.data.phantom_anatomy import Patient, patient_geometry, sample_patient
from spinekit.data.phantom_echo import TARGET_LABEL, render_scene
from spinekit.data.phantom_render import SectorGeometry, burn_overlays
from spinekit.data.phantom_views import NEGATIVE_VIEW_WEIGHTS, NEGATIVE_VIEWS, build_scene
from spinekit.errors import InputError
from spinekit.io.atomic import atomic_write_bytes, atomic_write_json
from spinekit.io.formats.labelme import labelme_document, labelme_shape, write_labelme

log = logging.getLogger(__name__)

LABELS: dict[str, str] = {
    "F": "facet joint: the articular processes' bright outline and the joint cleft between them",
    "E": "ventral (anterior) complex: bright band deep in the interlaminar window",
    "TP": "transverse process: lateral bright bone line with an acoustic shadow",
    "SP": "posterior midline bone: spinous process tip and laminae, with a strong shadow",
}
"""Annotation labels of the phantom and what each outlines."""

LOCAL_LABELS: tuple[str, ...] = ("F", "E")
"""Labels of the ``local`` variant (the study's targets)."""

FULL_LABELS: tuple[str, ...] = ("F", "E", "TP", "SP")
"""Labels of the ``full`` variant (targets plus surrounding bone)."""

VARIANTS: dict[str, tuple[str, ...]] = {"local": LOCAL_LABELS, "full": FULL_LABELS}
SUMMARY_FILE = "phantom.json"
PATIENT_PATTERN = r"^(P\d+)_"
"""Regular expression whose first group is the patient ID in a phantom file name."""
_FRAME_FILE = re.compile(r"^P\d{3}_F\d{3}\.(png|json)$")
# fmt: off
_LAST = ("DOE", "ROE", "SMITH", "MILLER", "GARCIA", "NOVAK", "SILVA", "BERG", "KOWALSKI", "MARTIN",
         "ROSSI", "MEYER", "LEROY", "JANSEN", "TANAKA", "OKAFOR", "MOREAU", "HALL")
_FIRST = ("JANE", "JOHN", "ALEX", "MARIA", "SAM", "LEE", "ANNA", "OMAR", "EVA", "LIAM", "NORA",
          "IVAN", "ZOE", "MILA", "TOM", "RITA", "KAI", "LENA")
# fmt: on
"""Fake patient names: ``LAST^FIRST 12345`` (DICOM person-name style plus an ID)."""


@dataclass(frozen=True)
class PhantomConfig:
    """Phantom settings.

    ``patients``: number of patients (None: one per ``frames_per_patient``
    frames). ``speckle``: share of fully developed speckle (0..1).
    ``distractors``: multiplier of unlabelled bright blobs and fascia fragments.
    ``background_variation``: strength of the slow gain variation across the fan.
    """

    width: int = 960
    height: int = 720
    negative_fraction: float = 0.15
    patients: int | None = None
    frames_per_patient: int = 4
    speckle: float = 0.85
    distractors: float = 1.0
    background_variation: float = 0.35

    def validate(self, n: int) -> None:
        """Raise :class:`InputError` for settings the phantom cannot honour with ``n`` frames."""
        if n < 1:
            raise InputError(None, f"phantom frame count must be at least 1 (got {n})")
        if self.width < 128 or self.height < 96:
            raise InputError(None, f"phantom size {self.width}x{self.height} is below 128x96")
        if self.width * self.height > 16_000_000:
            raise InputError(None, f"phantom size {self.width}x{self.height} is too large")
        if not 0.0 <= self.negative_fraction <= 1.0:
            raise InputError(None, f"negative_fraction must be in [0, 1] (got {self.negative_fraction})")
        if self.patients is not None and not 1 <= self.patients <= n:
            raise InputError(None, f"patients must be between 1 and n={n} (got {self.patients})")
        if self.frames_per_patient < 1:
            raise InputError(None, "frames_per_patient must be at least 1")
        for name in ("speckle", "distractors", "background_variation"):
            value = getattr(self, name)
            if not 0.0 <= value <= (1.0 if name == "speckle" else 5.0):
                raise InputError(None, f"{name} out of range (got {value})")


@dataclass(frozen=True)
class PhantomSummary:
    """What :func:`make_ultrasound_facet_phantom` wrote.

    ``counts`` maps variant (``local``/``full``) to label to number of polygons;
    ``patients`` maps patient ID (``P001``) to the burned-in name;
    ``seconds_per_frame`` is the mean rendering + writing time.
    """

    out: Path
    n: int
    seed: int
    frames: tuple[str, ...]
    negatives: int
    counts: dict[str, dict[str, int]]
    patients: dict[str, str]
    seconds: float

    @property
    def seconds_per_frame(self) -> float:
        return self.seconds / max(1, self.n)

    def folder(self, variant: str) -> Path:
        """The LabelMe folder of ``variant`` (``local`` or ``full``)."""
        return self.out / variant


@dataclass(frozen=True)
class _PatientInfo:
    patient_id: str
    name: str
    exam: str
    anatomy: Patient
    geom: SectorGeometry


@dataclass(frozen=True)
class _FramePlan:
    name: str
    patient: int
    index_in_patient: int
    view: str


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def _patient_sizes(n: int, config: PhantomConfig) -> list[int]:
    """Frames per patient: contiguous blocks whose sizes differ by at most one."""
    count = config.patients if config.patients is not None else math.ceil(n / config.frames_per_patient)
    count = max(1, min(count, n))
    base, extra = divmod(n, count)
    return [base + (1 if i < extra else 0) for i in range(count)]


def _plan(n: int, seed: int, config: PhantomConfig) -> list[_FramePlan]:
    """Frame names, patients and views; exactly ``round(n * negative_fraction)`` negatives."""
    rng = _rng(seed, 0)
    n_neg = math.floor(n * config.negative_fraction + 0.5)
    negative = np.zeros(n, dtype=bool)
    negative[rng.permutation(n)[:n_neg]] = True
    weights = np.asarray(NEGATIVE_VIEW_WEIGHTS) / sum(NEGATIVE_VIEW_WEIGHTS)
    plans: list[_FramePlan] = []
    index = 0
    for patient, size in enumerate(_patient_sizes(n, config)):
        for k in range(size):
            view = str(rng.choice(NEGATIVE_VIEWS, p=weights)) if negative[index] else "interlaminar"
            plans.append(_FramePlan(f"P{patient + 1:03d}_F{k + 1:03d}", patient, k, view))
            index += 1
    return plans


def _patient_info(seed: int, patient: int, config: PhantomConfig, used: set[str]) -> _PatientInfo:
    rng = _rng(seed, 1, patient)
    anatomy = sample_patient(rng)
    while True:
        name = f"{rng.choice(_LAST)}^{rng.choice(_FIRST)} {int(rng.integers(10000, 100000))}"
        if name not in used:
            used.add(name)
            break
    day = np.datetime64("2019-01-01") + int(rng.integers(0, 5 * 365))
    exam = f"{day} {int(rng.integers(7, 19)):02d}:{int(rng.integers(0, 60)):02d}"
    geom = patient_geometry(anatomy, config.width, config.height)
    return _PatientInfo(f"P{patient + 1:03d}", name, exam, anatomy, geom)


def _png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _render_frame(
    plan: _FramePlan, info: _PatientInfo, seed: int, config: PhantomConfig
) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """Render one frame; a positive view is re-drawn until it shows a facet joint and E."""
    for attempt in range(8):
        rng = _rng(seed, 2, plan.patient, plan.index_in_patient, attempt)
        scene = build_scene(
            info.anatomy,
            info.geom,
            plan.view,
            rng,
            speckle=config.speckle,
            distractors=config.distractors,
            background_variation=config.background_variation,
        )
        image, shapes = render_scene(scene, rng)
        labels = {label for label, _ in shapes}
        if plan.view != "interlaminar" or {"F", "E"} <= labels:
            break
    else:
        raise RuntimeError(f"phantom frame {plan.name}: no visible facet joint after 8 attempts")
    burn_overlays(image, info.geom, f"{info.name}  {info.exam}", plan.index_in_patient)
    return image, shapes


def _prepare_out(out: Path) -> bool:
    """Check ``out`` is new, empty or an earlier phantom; return True when it is an earlier one."""
    if out.exists() and not out.is_dir():
        raise InputError(out, "phantom output exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        return False
    if not (out / SUMMARY_FILE).is_file():
        raise InputError(out, f"folder is not empty and holds no {SUMMARY_FILE}; choose an empty folder")
    return True


def _remove_stale(out: Path, keep: set[str]) -> None:
    """Delete frame files of an earlier, larger phantom that this run did not rewrite."""
    for variant in VARIANTS:
        folder = out / variant
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if _FRAME_FILE.match(path.name) and path.stem not in keep:
                path.unlink()


def _frame_entry(
    plan: _FramePlan, info: _PatientInfo, shapes: list[tuple[str, np.ndarray]]
) -> dict[str, Any]:
    labels = [label for label, _ in shapes]
    return {
        "name": plan.name,
        "patient_id": info.patient_id,
        "view": plan.view,
        "negative": not ({"F", "E"} & set(labels)),
        "pixel_spacing_mm": round(1.0 / info.geom.px_per_mm, 5),
        "labels": {label: labels.count(label) for label in FULL_LABELS if label in labels},
        "needle_targets": [[round(float(v), 2) for v in pts[0]] for label, pts in shapes
                           if label == TARGET_LABEL],
    }


def make_ultrasound_facet_phantom(
    out: Path,
    *,
    n: int,
    seed: int,
    config: PhantomConfig = PhantomConfig(),
    progress: Callable[[int, int], None] | None = None,
) -> PhantomSummary:
    """Write ``n`` synthetic transverse lumbar ultrasound frames as two LabelMe folders.

    See the module docstring for the layout. ``progress(done, n)`` is called
    after each frame. Raises :class:`InputError` for bad settings or when
    ``out`` is a non-empty folder that is not an earlier phantom (an earlier
    phantom's frame files are replaced; surplus ones are removed).
    """
    out = Path(out)
    config.validate(n)
    earlier = _prepare_out(out)
    started = time.perf_counter()
    plans = _plan(n, seed, config)
    used: set[str] = set()
    infos: dict[int, _PatientInfo] = {}
    counts: dict[str, dict[str, int]] = {v: dict.fromkeys(labels, 0) for v, labels in VARIANTS.items()}
    entries: list[dict[str, Any]] = []
    for done, plan in enumerate(plans, start=1):
        if plan.patient not in infos:
            infos[plan.patient] = _patient_info(seed, plan.patient, config, used)
        info = infos[plan.patient]
        image, shapes = _render_frame(plan, info, seed, config)
        spacing = round(1.0 / info.geom.px_per_mm, 5)
        _write_frame(out, plan.name, image, shapes, (config, spacing), counts)
        entries.append(_frame_entry(plan, info, shapes))
        if progress is not None:
            progress(done, n)
    if earlier:
        _remove_stale(out, {plan.name for plan in plans})
    seconds = time.perf_counter() - started
    summary = PhantomSummary(
        out=out,
        n=n,
        seed=seed,
        frames=tuple(plan.name for plan in plans),
        negatives=sum(1 for entry in entries if entry["negative"]),
        counts=counts,
        patients={info.patient_id: info.name for info in infos.values()},
        seconds=seconds,
    )
    _write_summary(summary, config, infos, entries)
    log.info("phantom: %d frames in %.1f s (%.0f ms per frame)", n, seconds, 1000 * summary.seconds_per_frame)
    return summary


def _write_frame(
    out: Path,
    name: str,
    image: np.ndarray,
    shapes: list[tuple[str, np.ndarray]],
    setting: tuple[PhantomConfig, float],
    counts: dict[str, dict[str, int]],
) -> None:
    """Write the PNG and the LabelMe JSON of one frame into each variant folder; count labels.

    ``setting``: the config and the frame's pixel spacing (mm). Target points go to both
    variants, after the polygons."""
    config, spacing = setting
    png = _png_bytes(image)
    points = [labelme_shape(label, pts.tolist(), shape_type="point")
              for label, pts in shapes if label == TARGET_LABEL]
    for variant, labels in VARIANTS.items():
        kept = [(label, pts) for label, pts in shapes if label in labels]
        for label, _ in kept:
            counts[variant][label] += 1
        atomic_write_bytes(out / variant / f"{name}.png", png)
        shapes_doc = [labelme_shape(label, pts.tolist()) for label, pts in kept] + points
        doc = labelme_document(f"{name}.png", config.width, config.height, shapes_doc)
        doc["pixel_spacing_mm"] = [spacing, spacing]
        write_labelme(out / variant / f"{name}.json", doc)


def _write_summary(
    summary: PhantomSummary,
    config: PhantomConfig,
    infos: dict[int, _PatientInfo],
    entries: list[dict[str, Any]],
) -> None:
    doc = {
        "kind": "ultrasound-facet",
        "seed": summary.seed,
        "n": summary.n,
        "config": asdict(config),
        "labels": LABELS,
        "points": {TARGET_LABEL: "needle target: the facet polygon's dorsal edge on the beam "
                                 "through the joint cleft (LabelMe point, both variants)"},
        "variants": {variant: list(labels) for variant, labels in VARIANTS.items()},
        "patient_pattern": PATIENT_PATTERN,
        "negatives": summary.negatives,
        "counts": summary.counts,
        "patients": [
            {
                "patient_id": info.patient_id,
                "name": info.name,
                "exam": info.exam,
                "pixel_spacing_mm": round(1.0 / info.geom.px_per_mm, 5),
                "frames": [e["name"] for e in entries if e["patient_id"] == info.patient_id],
            }
            for info in infos.values()
        ],
        "frames": entries,
    }
    atomic_write_json(summary.out / SUMMARY_FILE, doc)
