"""``spinekit evaluate``: COCO metrics of a run (or of a predictions file) on a dataset split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spinekit.data.records import load_dataset, load_exclusions
from spinekit.data.splits import Part, load_splits, split_image_ids
from spinekit.data.torch_dataset import SpineDataset
from spinekit.engine.config import EvalSection
from spinekit.engine.inference import predict_dataset, score_results
from spinekit.engine.loop import autocast_dtype, select_device
from spinekit.engine.runs import load_run
from spinekit.engine.train import eval_dataset_config
from spinekit.errors import InputError
from spinekit.evaluation.coco_eval import evaluate_results, write_metrics
from spinekit.evaluation.landmarks import has_keypoints, landmark_metrics
from spinekit.evaluation.results import load_results, write_results
from spinekit.models.landmark_tta import set_tta


def _eval_section(base: EvalSection, score_threshold: float | None,
                  joint_rule: tuple[str, str] | None) -> EvalSection:
    return EvalSection(score_threshold=base.score_threshold if score_threshold is None else score_threshold,
                       joint_rule=joint_rule if joint_rule is not None else base.joint_rule, tta=base.tta)


def evaluate_run(run: str | Path, *, dataset: str | Path | None = None, split: Part = "test",
                 device: str = "auto", which: str = "best", score_threshold: float | None = None,
                 joint_rule: tuple[str, str] | None = None, batch_size: int = 4,
                 tta: str | None = None) -> dict[str, Any]:
    """Predict ``split`` with the run's model, write RUN/predictions/<split>.json and RUN/metrics.json.

    ``tta`` (``none``/``flip``, default the run's ``eval.tta``) is the test-time augmentation."""
    torch_device = select_device(device)
    loaded = load_run(run, which=which, device=torch_device)
    mode = loaded.config.eval.tta if tta is None else tta
    set_tta(loaded.model, mode, "--tta" if tta is not None else "eval.tta")
    root = Path(dataset) if dataset is not None else loaded.dataset
    if root is None:
        raise InputError(run, "the run does not name its dataset; pass --data DATASET")
    splits_file = loaded.config.data.splits if dataset is None else None
    data = SpineDataset(root, part=split, fold=loaded.config.data.fold,
                        config=eval_dataset_config(loaded.config), splits_file=splits_file)
    if len(data) == 0:
        raise InputError(root, f"the {split} split has no images to evaluate")
    names = [c["name"] for c in sorted(data.records.categories, key=lambda c: int(c["id"]))]
    if names != loaded.classes:
        raise InputError(root, f"dataset classes {names} differ from the run's {loaded.classes}")
    amp = autocast_dtype(loaded.config.train.amp, torch_device)
    results = predict_dataset(loaded.model, data, device=torch_device, amp_dtype=amp, batch_size=batch_size)
    write_results(Path(run) / "predictions" / f"{split}.json", results)
    section = _eval_section(loaded.config.eval, score_threshold, joint_rule)
    metrics = score_results(data, results, section)
    if has_keypoints(results):
        metrics["landmarks"] = landmark_metrics(data.images, data.records.annotations, results)
    metrics = {"split": split, "fold": loaded.config.data.fold, "checkpoint": str(loaded.checkpoint),
               "tta": mode, "dataset": str(Path(root).resolve()), **metrics}
    write_metrics(Path(run) / "metrics.json", metrics)
    return metrics


def evaluate_predictions(predictions: str | Path, dataset: str | Path, *, split: Part = "test", fold: int = 0,
                         out: str | Path | None = None, score_threshold: float = 0.5,
                         joint_rule: tuple[str, str] | None = None) -> dict[str, Any]:
    """COCO metrics of a COCO results file against ``split`` of ``dataset``; writes metrics.json."""
    records = load_dataset(dataset)
    image_ids = [int(i["id"]) for i in records.images] if split == "all" and not (
        Path(dataset) / "splits.json").exists() else split_image_ids(load_splits(dataset), split, fold)
    excluded_images, excluded = load_exclusions(dataset)
    image_ids = [i for i in image_ids if i not in excluded_images]
    if not image_ids:
        raise InputError(dataset, f"the {split} split has no images to evaluate")
    sizes = {int(i["id"]): (int(i["height"]), int(i["width"])) for i in records.images}
    wanted = set(image_ids)
    categories = {int(c["id"]) for c in records.categories}
    results = [r for r in load_results(predictions, image_sizes=sizes, category_ids=categories)
               if int(r["image_id"]) in wanted]
    metrics = evaluate_results(records, image_ids, results, excluded_annotations=excluded,
                               score_threshold=score_threshold, joint_rule=joint_rule)
    if has_keypoints(results):
        metrics["landmarks"] = landmark_metrics([i for i in records.images if int(i["id"]) in wanted],
                                                records.annotations, results)
    metrics = {"split": split, "fold": fold, "predictions": str(predictions),
               "dataset": str(Path(dataset).resolve()), **metrics}
    write_metrics(Path(out) if out else Path(predictions).with_name("metrics.json"), metrics)
    return metrics
