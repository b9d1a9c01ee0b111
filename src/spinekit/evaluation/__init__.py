"""Evaluation: COCO results, COCO bbox/segm metrics, image-level results and the joint rule."""

from spinekit.evaluation.coco_eval import (
    CocoEvaluator,
    coco_ground_truth,
    coco_metrics,
    evaluate_results,
    write_metrics,
)
from spinekit.evaluation.image_level import ImageTruth, apply_joint_rule, image_level_metrics
from spinekit.evaluation.results import (
    detections_to_coco,
    encode_mask,
    image_sizes,
    load_results,
    normalise_result,
    write_results,
)

__all__ = [
    "CocoEvaluator",
    "ImageTruth",
    "apply_joint_rule",
    "coco_ground_truth",
    "coco_metrics",
    "detections_to_coco",
    "encode_mask",
    "evaluate_results",
    "image_level_metrics",
    "image_sizes",
    "load_results",
    "normalise_result",
    "write_metrics",
    "write_results",
]
