"""The folds of a study and one arm's fold: train, predict the test set, score it.

Folds: when the reference dataset's ``splits.json`` already has K folds it is used
as is (the user's fixed test set stays fixed); otherwise new patient-level splits
(K folds, ``test_fraction`` of patients held out, the study's seed) are made with
:func:`spinekit.data.splits.make_splits`. Either way they are written to
``STUDY/splits/<arm>.json`` and the dataset folder is not touched. For a datasets
study the reference folds are carried to each other dataset by image file name.

One fold of one arm (``STUDY/runs/<arm>/fold<k>/``): ``run/`` is a normal spinekit run
(trained on the other folds, validated on fold k for the best checkpoint, seed
``seed + k`` for every arm), ``test_predictions.json`` the best checkpoint's COCO
results on the test set, ``per_image.csv`` the per-image metrics and
``fold_result.json`` (written last) the COCO metrics, set-level metrics and timings.
A fold with ``fold_result.json`` is done and never trained again; a fold with a
``run/checkpoints/last.pt`` but no result resumes training from it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from spinekit.data.records import SPLITS_FILE, DatasetRecords, load_dataset, load_exclusions
from spinekit.data.splits import SplitConfig, load_splits, make_splits
from spinekit.data.torch_dataset import SpineDataset
from spinekit.engine.checkpoint import LAST, checkpoint_path
from spinekit.engine.config import Config, load_config
from spinekit.engine.hooks import Hook
from spinekit.engine.inference import predict_dataset
from spinekit.engine.loop import autocast_dtype, select_device
from spinekit.engine.runs import load_run
from spinekit.engine.train import eval_dataset_config, fit
from spinekit.errors import InputError, UsageError
from spinekit.evaluation.coco_eval import evaluate_results
from spinekit.evaluation.per_image import aggregate, per_image_metrics
from spinekit.evaluation.results import write_results
from spinekit.io.atomic import atomic_write_json, atomic_write_text
from spinekit.io.jsonfile import read_json_object
from spinekit.study.spec import Arm, StudySpec

log = logging.getLogger(__name__)

RESULT_FILE = "fold_result.json"
COCO_KEYS = ("AP", "AP50", "AP75")


def _reference_splits(spec: StudySpec, out: Path) -> dict[str, Any]:
    """The reference dataset's splits with K folds (its own, or new ones in the study)."""
    path = out / "splits" / "reference.json"
    if path.exists():
        return load_splits(spec.reference, path)
    own = spec.reference / SPLITS_FILE
    if own.exists():
        splits = load_splits(spec.reference)
        if len(splits["folds"]) == spec.folds and splits.get("test"):
            log.info("using the dataset's own splits.json (%d folds, fixed test set)", spec.folds)
            atomic_write_json(path, splits)
            return splits
        log.info("the dataset's splits.json has %d folds / %d test images; making %d new folds",
                 len(splits["folds"]), len(splits.get("test") or []), spec.folds)
    config = SplitConfig(test_fraction=spec.test_fraction, folds=spec.folds, seed=spec.seed)
    return make_splits(spec.reference, config, out=path)  # creates STUDY/splits/ only on success


def _translate(splits: dict[str, Any], source: DatasetRecords, target: DatasetRecords) -> dict[str, Any]:
    """Carry ``splits`` from ``source`` image ids to ``target`` ids by file name."""
    names = {int(img["id"]): str(img["file_name"]) for img in source.images}
    ids = {str(img["file_name"]): int(img["id"]) for img in target.images}
    missing = sorted(set(names.values()) - set(ids))
    if missing:
        raise InputError(target.root, f"{len(missing)} images of the first dataset are not in this one "
                         f"(e.g. {missing[0]}); a datasets study needs the same images in every dataset")

    def carry(part: Sequence[int]) -> list[int]:
        return [ids[names[int(i)]] for i in part]

    return {**splits, "test": carry(splits["test"]), "folds": [carry(f) for f in splits["folds"]],
            "excluded_images": [], "translated_from": str(source.root.resolve())}


def prepare_splits(spec: StudySpec, arms: Sequence[Arm], out: Path) -> dict[str, Path]:
    """Write ``STUDY/splits/<arm>.json`` for every arm; returns arm label -> splits file."""
    reference = _reference_splits(spec, out)
    ref_records = load_dataset(spec.reference)
    files: dict[str, Path] = {}
    for arm in arms:
        path = out / "splits" / f"{arm.label}.json"
        if not path.exists():
            same = arm.dataset.resolve() == spec.reference.resolve()
            splits = reference if same else _translate(reference, ref_records, load_dataset(arm.dataset))
            atomic_write_json(path, splits)
        files[arm.label] = path
    return files


def shared_classes(arms: Sequence[Arm]) -> list[str]:
    """Class names every arm's dataset has, in the first dataset's order."""
    names = [[str(c["name"]) for c in sorted(load_dataset(a.dataset).categories, key=lambda c: int(c["id"]))]
             for a in arms]
    common = [n for n in names[0] if all(n in other for other in names[1:])]
    if not common:
        raise InputError(arms[0].dataset, "the compared datasets share no class")
    return common


def restrict_classes(records: DatasetRecords, classes: Sequence[str]) -> DatasetRecords:
    """A copy of ``records`` holding only the categories named in ``classes``."""
    keep = [c for c in records.categories if str(c["name"]) in set(classes)]
    ids = {int(c["id"]) for c in keep}
    return dataclasses.replace(records, categories=keep,
                               annotations=[a for a in records.annotations if int(a["category_id"]) in ids])


def fold_config(spec: StudySpec, arm: Arm, fold: int, splits_file: Path) -> Config:
    """The run config of ``arm``'s fold ``fold`` (shared settings, arm settings, fold fixed)."""
    overrides = [*spec.overrides, *arm.overrides, f"data.fold={fold}",
                 f"data.splits={splits_file.resolve()}", "data.train_part=train",
                 f"train.seed={spec.seed + fold}"]
    config = load_config(spec.config, overrides)
    if config.data.val_part == "test":
        raise UsageError("data.val_part=test would select checkpoints on the study's test set; "
                         "use val (the fold) or none")
    return config


def _train_speed(run: Path) -> float:
    """Mean training images/s over the run's epochs (log.jsonl), NaN when not logged."""
    speeds = []
    log_file = run / "log.jsonl"
    if log_file.exists():
        for line in log_file.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line) if line.strip() else {}
            if entry.get("kind") == "epoch" and entry.get("images_per_s"):
                speeds.append(float(entry["images_per_s"]))
    return sum(speeds) / len(speeds) if speeds else math.nan


def _train(arm: Arm, folder: Path, config: Config, hooks: Sequence[Hook]) -> dict[str, float]:
    """Train (or resume) the fold's run; wall time includes validation and checkpoints."""
    resume = checkpoint_path(folder / "run", LAST).exists()
    if resume:
        log.info("%s: resuming %s", arm.label, folder / "run")
    result = fit(arm.dataset, folder / "run", config, resume=resume, hooks=hooks)
    speed = _train_speed(folder / "run")
    return {"train_seconds": result.seconds, "train_steps": float(result.state.step),
            "train_images_per_s": speed, "train_seconds_per_image": 1.0 / speed if speed else math.nan}


def _test_results(arm: Arm, folder: Path, splits_file: Path, device: str
                  ) -> tuple[SpineDataset, list[dict[str, Any]]]:
    torch_device = select_device(device)
    loaded = load_run(folder / "run", which="best", device=torch_device)
    data = SpineDataset(arm.dataset, part="test", config=eval_dataset_config(loaded.config),
                        splits_file=splits_file)
    if len(data) == 0:
        raise InputError(splits_file, "the study's test set has no images")
    amp = autocast_dtype(loaded.config.train.amp, torch_device)
    with torch.inference_mode():
        results = predict_dataset(loaded.model, data, device=torch_device, amp_dtype=amp,
                                  batch_size=loaded.config.train.batch_size)
    return data, results


def _coco_flat(metrics: dict[str, Any]) -> dict[str, float]:
    return {f"{kind}_{key}": float(metrics[kind][key]) for kind in ("bbox", "segm")
            if metrics.get(kind) for key in COCO_KEYS}


def run_fold(spec: StudySpec, arm: Arm, fold: int, *, out: Path, splits_file: Path,
             classes: Sequence[str] | None = None, hooks: Sequence[Hook] = ()) -> dict[str, Any]:
    """Train, predict and score ``arm`` on fold ``fold`` (see module doc); returns fold_result."""
    folder = out / "runs" / arm.label / f"fold{fold}"
    if (folder / RESULT_FILE).exists():
        return read_json_object(folder / RESULT_FILE, "study fold result")
    config = fold_config(spec, arm, fold, splits_file)
    timings = _train(arm, folder, config, hooks)
    data, results = _test_results(arm, folder, splits_file, config.train.device)
    records = data.records if classes is None else restrict_classes(data.records, classes)
    kept = {int(c["id"]) for c in records.categories}
    results = [r for r in results if int(r["category_id"]) in kept]
    write_results(folder / "test_predictions.json", results)
    image_ids = [int(img["id"]) for img in data.images]
    _, excluded = load_exclusions(arm.dataset)
    coco = evaluate_results(records, image_ids, results, excluded_annotations=excluded,
                            score_threshold=config.eval.score_threshold, joint_rule=config.eval.joint_rule)
    rows = per_image_metrics(records, image_ids, results, excluded_annotations=excluded,
                             score_threshold=spec.score_threshold, iou_threshold=spec.iou_threshold)
    summary = aggregate(rows)
    table = pd.DataFrame(rows).drop(columns=["confusion"], errors="ignore")
    table.insert(0, "fold", fold)
    table.insert(0, "model", arm.label)
    atomic_write_text(folder / "per_image.csv", table.to_csv(index=False))
    result = {"model": arm.label, "fold": fold, "images": len(image_ids), **_coco_flat(coco),
              **_set_values(summary), **timings, "per_class": coco.get("per_class", {}),
              "image_level": coco.get("image_level", {}), "nan": summary["nan"]}
    atomic_write_json(folder / RESULT_FILE, _json_safe(result), indent=2)
    return result


def _set_values(summary: dict[str, Any]) -> dict[str, float]:
    """Set-level pixel metrics (confusion summed over the test set) and recognition rates."""
    values = {f"set_{k}": float(v) for k, v in summary["set_level"].items() if not isinstance(v, list)}
    values["recognition_rate"] = float(summary["recognition_rate"])
    values["composite_recognition_rate"] = float(summary["composite_recognition_rate"])
    return values


def _json_safe(value: Any) -> Any:
    """NaN/inf -> None (JSON has no NaN), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def read_per_image(out: Path, arm: str, fold: int) -> pd.DataFrame:
    """The per-image table of a finished fold."""
    return pd.read_csv(out / "runs" / arm / f"fold{fold}" / "per_image.csv")
