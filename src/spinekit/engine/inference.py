"""Inference over a dataset part -> COCO results in original coordinates -> COCO metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from spinekit.data.records import load_exclusions
from spinekit.data.torch_dataset import SpineDataset
from spinekit.engine.config import EvalSection
from spinekit.engine.loop import predict_batches
from spinekit.evaluation.coco_eval import CocoEvaluator
from spinekit.evaluation.results import detections_to_coco
from spinekit.transforms.geometric import ResizePlan


def _batches(dataset: SpineDataset, batch_size: int) -> Iterator[tuple[list[torch.Tensor], list[int]]]:
    for start in range(0, len(dataset), batch_size):
        indices = list(range(start, min(len(dataset), start + batch_size)))
        yield [dataset[i][0] for i in indices], indices


def predict_dataset(model: torch.nn.Module, dataset: SpineDataset, *, device: torch.device,
                    amp_dtype: torch.dtype | None, batch_size: int = 4,
                    score_threshold: float = 0.0) -> list[dict[str, Any]]:
    """COCO result dicts (original image coordinates) for every image of ``dataset``."""
    results: list[dict[str, Any]] = []
    size, keep = dataset.config.size, dataset.config.keep_aspect
    for indices, outputs in predict_batches(model, _batches(dataset, batch_size), device=device,
                                            amp_dtype=amp_dtype):
        for index, output in zip(indices, outputs, strict=True):
            info = dataset.image_info(index)
            width, height = int(info["width"]), int(info["height"])
            plan = ResizePlan.make(width, height, size, keep)
            results.extend(detections_to_coco(output, image_id=int(info["id"]), plan=plan,
                                              orig_width=width, orig_height=height,
                                              score_threshold=score_threshold))
    return results


def score_results(dataset: SpineDataset, results: list[dict[str, Any]],
                  eval_config: EvalSection) -> dict[str, Any]:
    """COCO bbox/segm and image-level metrics of ``results`` on ``dataset``.

    See :mod:`spinekit.evaluation` for the metrics layout.
    """
    _, excluded = load_exclusions(dataset.records.root)
    evaluator = CocoEvaluator(dataset.records, [int(img["id"]) for img in dataset.images],
                              excluded_annotations=excluded, score_threshold=eval_config.score_threshold,
                              joint_rule=eval_config.joint_rule)
    evaluator.process(results)
    return evaluator.evaluate()


def evaluate_model(model: torch.nn.Module, dataset: SpineDataset, *, device: torch.device,
                   amp_dtype: torch.dtype | None, batch_size: int,
                   eval_config: EvalSection) -> dict[str, Any]:
    """Predict ``dataset`` with ``model`` and score the results (:func:`score_results`)."""
    results = predict_dataset(model, dataset, device=device, amp_dtype=amp_dtype, batch_size=batch_size)
    return score_results(dataset, results, eval_config)
