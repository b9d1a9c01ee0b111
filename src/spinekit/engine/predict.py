"""``spinekit predict``: stream images (files, folders, DICOM frames) through a trained run.

Outputs in ``OUT``:

- ``predictions.json``: COCO results (original image coordinates), written
  incrementally (memory stays flat over any number of images);
- ``images.json``: the COCO ``images`` list (id, file_name = source path, width, height, frame);
- ``labelme/``: one LabelMe pre-annotation per image beside a copy of the image,
  to open, correct and ingest again (the labelling loop);
- ``overlays/``: PNG pictures of the predictions (only with ``overlay`` in ``formats``;
  the CLI default is ``coco,labelme``).

Output file names come from the input names, cut to :data:`MAX_STEM_BYTES` with
a hash when longer (names near the file-system limit stay writable).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from PIL import Image

from spinekit.engine.loop import autocast_dtype, predict_batches, select_device
from spinekit.engine.runs import LoadedRun, load_run
from spinekit.errors import InputError, UsageError
from spinekit.evaluation.results import detections_to_coco
from spinekit.io.atomic import atomic_path, atomic_write_json
from spinekit.io.images import is_dicom, is_image_file, read_image, to_uint8
from spinekit.models.landmark_tta import set_tta
from spinekit.transforms.geometric import ResizePlan, model_input

log = logging.getLogger(__name__)
FORMATS = ("coco", "labelme", "overlay")


@dataclass
class SourceImage:
    """One image to predict: its path, DICOM frame, pixels (uint8) and id."""

    image_id: int
    path: Path
    frame: int | None
    pixels: np.ndarray


def iter_inputs(inputs: Sequence[str | Path]) -> Iterator[tuple[Path, int | None]]:
    """Files and folders (recursively, sorted) -> (image path, DICOM frame or None)."""
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files: Iterable[Path] = sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p))
        elif path.is_file():
            files = [path]
        else:
            raise InputError(path, "input not found")
        for file in files:
            if is_dicom(file):
                from spinekit.io.dicom import dicom_frame_count

                try:
                    count = dicom_frame_count(file)
                except InputError:
                    count = 1  # reading frame 0 reports the problem and the file is skipped
                for frame in range(count):
                    yield file, frame
            else:
                yield file, None


def _prepared(run: LoadedRun, source: SourceImage) -> tuple[torch.Tensor, ResizePlan]:
    config = run.config.data
    height, width = source.pixels.shape[:2]
    plan = ResizePlan.make(width, height, config.size, config.keep_aspect)
    image = model_input(Image.fromarray(source.pixels), plan, channels=config.channels,
                        contrast=config.contrast)
    return image, plan


def _batches(run: LoadedRun, inputs: Sequence[str | Path], batch_size: int, skipped: list[str],
             ) -> Iterator[tuple[list[torch.Tensor], list[tuple[SourceImage, ResizePlan]]]]:
    images: list[torch.Tensor] = []
    infos: list[tuple[SourceImage, ResizePlan]] = []
    for index, (path, frame) in enumerate(iter_inputs(inputs), start=1):
        try:
            source = SourceImage(index, path, frame, read_image(path, frame=frame or 0))
        except InputError as exc:
            skipped.append(str(exc))
            log.warning("%s", exc)
            continue
        tensor, plan = _prepared(run, source)
        images.append(tensor)
        infos.append((source, plan))
        if len(images) == batch_size:
            yield images, infos
            images, infos = [], []
    if images:
        yield images, infos


class JsonArrayWriter:
    """Writes a JSON array element by element to a temp file; renamed into place on success.

    Use as a context manager: the file appears only when the block ends without error.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self.count = 0
        self._handle: TextIO | None = None

    def __enter__(self) -> JsonArrayWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.tmp, "w", encoding="utf-8")
        self._handle.write("[")
        return self

    def write(self, items: Iterable[dict[str, Any]]) -> None:
        """Append items."""
        assert self._handle is not None, "use JsonArrayWriter as a context manager"
        for item in items:
            self._handle.write(("\n" if self.count == 0 else ",\n") + json.dumps(item))
            self.count += 1

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        assert self._handle is not None
        self._handle.write("\n]\n")
        self._handle.close()
        if kind is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


@dataclass
class PredictReport:
    """Counts of one prediction run."""

    out: Path
    images: int
    detections: int
    skipped: list[str]


MAX_STEM_BYTES = 100
"""Output names derive from input names; longer stems are cut and given a hash, so that
``name.png``, ``name.json`` and their temporary names stay far below the 255-byte limit."""


def short_stem(stem: str, limit: int = MAX_STEM_BYTES) -> str:
    """``stem`` itself when it fits in ``limit`` UTF-8 bytes, else its start plus a hash of the whole.

    Bytes of a non-UTF-8 file name (e.g. Latin-1) become U+FFFD, so every output name is valid text.
    """
    stem = stem.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if len(stem.encode("utf-8")) <= limit:
        return stem
    digest = hashlib.sha1(stem.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    head = stem.encode("utf-8", "surrogateescape")[: limit - 13].decode("utf-8", "ignore")
    return f"{head}-{digest}"


def _unique_name(source: SourceImage, used: set[str]) -> str:
    name = short_stem(source.path.stem) + (f"_f{source.frame:04d}" if source.frame is not None else "")
    candidate, k = name, 1
    while candidate in used:
        k += 1
        candidate = f"{name}_{k}"
    used.add(candidate)
    return candidate


def _write_labelme(out: Path, name: str, source: SourceImage, results: list[dict[str, Any]],
                   names: dict[int, str], threshold: float) -> None:
    from spinekit.io.formats.predictions import write_labelme_predictions

    folder = out / "labelme"
    if is_dicom(source.path) or source.path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        image_name = f"{name}.png"
        with atomic_path(folder / image_name) as tmp:
            Image.fromarray(to_uint8(source.pixels)).save(tmp, format="PNG")
    else:
        image_name = f"{name}{source.path.suffix.lower()}"
        with atomic_path(folder / image_name) as tmp:
            shutil.copyfile(source.path, tmp)
    height, width = source.pixels.shape[:2]
    write_labelme_predictions(folder / f"{name}.json", image_ref=image_name, width=width, height=height,
                              detections=results, names=names, score_threshold=threshold)


def _write_overlay(out: Path, name: str, source: SourceImage, results: list[dict[str, Any]],
                   names: dict[int, str], threshold: float) -> None:
    from spinekit.reports.overlay import draw_overlay, save_overlay

    picture = draw_overlay(source.pixels, detections=results, names=names, score_threshold=threshold)
    save_overlay(out / "overlays" / f"{name}.png", picture)


def predict(run: str | Path, inputs: Sequence[str | Path], out: str | Path, *,
            formats: Sequence[str] = ("coco", "labelme"), batch_size: int = 8, device: str = "auto",
            score_threshold: float = 0.5, which: str = "best",
            progress: Callable[[int, int], None] | None = None, tta: str | None = None) -> PredictReport:
    """Predict every input image with the run's model and write the chosen ``formats``;
    ``tta`` (``none``/``flip``, default the run's ``eval.tta``) is the test-time augmentation."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise UsageError(f"unknown output format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
    out_path = Path(out)
    torch_device = select_device(device)
    loaded = load_run(run, which=which, device=torch_device)
    set_tta(loaded.model, loaded.config.eval.tta if tta is None else tta,
            "--tta" if tta is not None else "eval.tta")
    names = {i + 1: name for i, name in enumerate(loaded.classes)}
    skipped: list[str] = []
    used: set[str] = set()
    with JsonArrayWriter(out_path / "predictions.json") as results_out, \
            JsonArrayWriter(out_path / "images.json") as images_out:
        batches = predict_batches(loaded.model, _batches(loaded, inputs, batch_size, skipped),
                                  device=torch_device, amp_dtype=autocast_dtype(loaded.config.train.amp,
                                                                                torch_device))
        for infos, outputs in batches:
            for (source, plan), output in zip(infos, outputs, strict=True):
                _emit(out_path, source, plan, output, formats, names, score_threshold, used,
                      results_out, images_out)
                if progress is not None:
                    progress(images_out.count, 0)
    if images_out.count == 0:
        raise InputError(None, "no readable image among the inputs: " + "; ".join(skipped[:3]))
    atomic_write_json(out_path / "predict_report.json", {
        "run": str(run), "checkpoint": str(loaded.checkpoint), "images": images_out.count,
        "detections": results_out.count, "skipped": skipped})
    return PredictReport(out_path, images_out.count, results_out.count, skipped)


def _emit(out: Path, source: SourceImage, plan: ResizePlan, output: dict[str, torch.Tensor],
          formats: Sequence[str], names: dict[int, str], threshold: float, used: set[str],
          results_out: JsonArrayWriter, images_out: JsonArrayWriter) -> None:
    height, width = source.pixels.shape[:2]
    results = detections_to_coco(output, image_id=source.image_id, plan=plan, orig_width=width,
                                 orig_height=height)
    name = _unique_name(source, used)
    results_out.write(results)
    images_out.write([{"id": source.image_id, "file_name": str(source.path), "width": width,
                       "height": height, "frame": source.frame}])
    if "labelme" in formats:
        _write_labelme(out, name, source, results, names, threshold)
    if "overlay" in formats:
        _write_overlay(out, name, source, results, names, threshold)
