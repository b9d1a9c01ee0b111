"""Model-comparison evaluation benchmark: COCO metrics and per-image pixel metrics on 1,000 images.

Run from the repository root:

    .venv/bin/python benchmarks/bench_study_eval.py [--images 1000] [--size 512] [--repeat 3]

Synthesises a lateral-spine-like dataset (``--images`` images of ``--size`` x
``--size`` px, 20 vertebra-like tilted quadrilaterals stacked in a column,
class "vertebra", plus a "sacrum" at the bottom) and predictions perturbed from
it (95 % of instances kept with jittered vertices and offset, 1 % of adjacent
pairs fused into one mask, 0-2 false positives per image; compressed RLE masks
in original coordinates), written as a real dataset folder
(``annotations.json``) and a COCO results file in a temporary directory and
read back with ``load_dataset`` / ``load_results``. Then times, on the same
data:

(a) spinekit's COCO evaluation (``CocoEvaluator``, bbox + segm, with the image-level results),
(b) pycocotools' ``COCOeval`` bbox + segm (the stock alternative), APs checked equal to 1e-9,
(c) ``per_image_metrics`` + ``aggregate`` (FCN pixel metrics, Dice, HD95, recognition),
(d) the study statistics (``spinekit.evaluation.statistics``) on a study-sized table:
    the per-image rows copied for ``--models`` x ``--folds`` with model-dependent shifts.

COCO timings are the best of ``--repeat`` runs, including building the COCO
objects; the per-image pass runs ``--repeat-pixel`` times (default 1).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import bench_eval
from bench_eval import best_of, text_table
from spinekit.data.records import DatasetRecords, load_dataset
from spinekit.evaluation import CocoEvaluator, image_sizes, load_results, write_results
from spinekit.evaluation.per_image import aggregate, per_image_metrics
from spinekit.evaluation.results import window_rle
from spinekit.evaluation.statistics import compare_groups, paired_setting_tests, statistics_markdown
from spinekit.geometry import rasterize

LEVELS = 20
PIXEL = ("mean_iou", "pixel_accuracy", "mean_accuracy", "fw_iou", "dice", "hd95")


def _vertebra(rng: np.random.Generator, cx: float, cy: float, width: float, height: float) -> np.ndarray:
    """Tilted, slightly wedged quadrilateral ``(4, 2)`` (x, y) around (cx, cy)."""
    tilt = np.deg2rad(rng.normal(0, 6))
    wedge = rng.normal(0, 0.08) * height
    corners = np.array([[-width / 2, -height / 2 - wedge], [width / 2, -height / 2 + wedge],
                        [width / 2, height / 2 - wedge], [-width / 2, height / 2 + wedge]])
    rot = np.array([[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]])
    return corners @ rot.T + [cx, cy]


def synthesise_dataset(root: Path, images: int, size: int, rng: np.random.Generator) -> None:
    """Write ``root/annotations.json``: ``images`` images, 20 instances each (19 vertebrae + sacrum)."""
    imgs: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    pitch = size / (LEVELS + 1)
    for image_id in range(1, images + 1):
        imgs.append({"id": image_id, "file_name": f"{image_id:05d}.png", "width": size, "height": size,
                     "patient_id": f"P{(image_id - 1) // 2:04d}",
                     "pixel_spacing_mm": [0.3, 0.3] if image_id % 2 else None})
        x = size * rng.uniform(0.35, 0.65)
        for level in range(LEVELS):
            x += rng.normal(0, pitch * 0.08)
            pts = _vertebra(rng, x, pitch * (level + 1), pitch * 3.2, pitch * 0.72)
            pts = np.clip(pts, 0, size)
            x0, y0 = pts.min(axis=0)
            x1, y1 = pts.max(axis=0)
            anns.append({"id": len(anns) + 1, "image_id": image_id,
                         "category_id": 2 if level == LEVELS - 1 else 1,
                         "segmentation": [pts.round(2).reshape(-1).tolist()],
                         "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                         "area": float(0.5 * abs(np.dot(pts[:, 0], np.roll(pts[:, 1], -1))
                                                 - np.dot(pts[:, 1], np.roll(pts[:, 0], -1)))),
                         "iscrowd": 0})
    coco = {"info": {"image_root": "."}, "images": imgs, "annotations": anns,
            "categories": [{"id": 1, "name": "vertebra"}, {"id": 2, "name": "sacrum"}]}
    root.mkdir(parents=True, exist_ok=True)
    (root / "annotations.json").write_text(json.dumps(coco))


def _result(size: int, image_id: int, pts: np.ndarray, category_id: int, score: float) -> dict[str, Any]:
    """COCO result: box and an RLE mask rasterised in the polygon's bounding window."""
    pts = np.clip(pts, 0, size)
    x0, y0 = np.floor(pts.min(axis=0)).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
    window = rasterize([pts - [x0, y0]], max(y1 - y0, 1), max(x1 - x0, 1))
    return {"image_id": image_id, "category_id": category_id, "score": round(score, 4),
            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
            "segmentation": window_rle(window, int(y0), int(x0), size, size)}


def synthesise_results(records: DatasetRecords, size: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Perturbed ground truth: 95 % kept and jittered, 1 % of neighbours fused, 0-2 false positives."""
    out: list[dict[str, Any]] = []
    by_image = records.annotations_by_image()
    for image_id, anns in by_image.items():
        skip_next = False
        for k, ann in enumerate(anns):
            if skip_next:
                skip_next = False
                continue
            pts = np.asarray(ann["segmentation"][0], dtype=np.float64).reshape(-1, 2)
            if k + 1 < len(anns) and rng.uniform() < 0.01:  # one mask over two vertebrae
                nxt = np.asarray(anns[k + 1]["segmentation"][0], dtype=np.float64).reshape(-1, 2)
                pts = np.array([pts[0], pts[1], nxt[2], nxt[3]])
                skip_next = True
            elif rng.uniform() >= 0.95:
                continue
            pts = pts + rng.normal(0, 1.2, pts.shape) + rng.normal(0, 1.0, 2)
            out.append(_result(size, image_id, pts, int(ann["category_id"]), float(rng.uniform(0.5, 1.0))))
        for _ in range(int(rng.integers(0, 3))):
            cx, cy = rng.uniform(0.1, 0.9, 2) * size
            pts = _vertebra(rng, cx, cy, size / 7, size / 30)
            out.append(_result(size, image_id, pts, 1, float(rng.uniform(0.05, 0.7))))
    return out


def run_pycocotools(gt: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, float]:
    """pycocotools' COCOeval AP for bbox and segm (``bench_eval.run_pycocotools`` per type)."""
    return {iou_type: bench_eval.run_pycocotools(gt, results, iou_type) for iou_type in ("bbox", "segm")}


def run_spinekit_coco(records: DatasetRecords, results: list[dict[str, Any]]) -> dict[str, float]:
    evaluator = CocoEvaluator(records, [int(i["id"]) for i in records.images])
    evaluator.process(results)
    metrics = evaluator.evaluate()
    return {t: float(metrics[t]["AP"]) for t in ("bbox", "segm")}


def run_per_image(records: DatasetRecords, results: list[dict[str, Any]]
                  ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows = per_image_metrics(records, [int(i["id"]) for i in records.images], results)
    return rows, aggregate(rows)


def study_table(rows: Sequence[dict[str, Any]], models: int, folds: int,
                rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A study-sized per-image table (``models`` x ``folds`` x images) and its fold table.

    The measured per-image rows are copied per model and fold with small model-dependent
    shifts, so the statistics run on realistic value distributions and sizes.
    """
    base = pd.DataFrame(rows).drop(columns=["confusion"], errors="ignore")
    parts, fold_rows = [], []
    for m in range(models):
        for k in range(folds):
            part = base.copy()
            for col in ("mean_iou", "pixel_accuracy", "mean_accuracy", "fw_iou", "dice"):
                part[col] = np.clip(part[col] - 0.02 * m + rng.normal(0, 0.01, len(part)), 0, 1)
            part["hd95"] = part["hd95"] + m + rng.normal(0, 0.5, len(part))
            part.insert(0, "fold", k)
            part.insert(0, "model", f"model{m}")
            parts.append(part)
            fold_rows.append({"model": f"model{m}", "fold": k,
                              **{c: 0.8 - 0.02 * m + rng.normal(0, 0.01) for c in
                                 ("bbox_AP50", "bbox_AP", "segm_AP50", "segm_AP")}})
    return pd.concat(parts, ignore_index=True), pd.DataFrame(fold_rows)


def run_statistics(table: pd.DataFrame, folds: pd.DataFrame) -> str:
    metrics = [*PIXEL, "recognised", "composite_recognised"]
    between = compare_groups(table, group="model", metrics=metrics, unit="image_id")
    paired = paired_setting_tests(folds, group="model", pair_by="fold",
                                  metrics=["bbox_AP50", "bbox_AP", "segm_AP50", "segm_AP"])
    return statistics_markdown(between, paired)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--repeat-pixel", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", type=int, default=4, help="models in the simulated study table")
    parser.add_argument("--folds", type=int, default=5, help="folds in the simulated study table")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "dataset"
        synthesise_dataset(root, args.images, args.size, rng)
        records = load_dataset(root)
        write_results(Path(tmp) / "pred.json", synthesise_results(records, args.size, rng))
        t_load, results = best_of(1, lambda: load_results(Path(tmp) / "pred.json",
                                                          image_sizes=image_sizes(records.images)))
    gt = CocoEvaluator(records, [int(i["id"]) for i in records.images], iou_types=("bbox",)).ground_truth
    print(f"{len(records.images)} images of {args.size}x{args.size} px, {len(gt['annotations'])} instances, "
          f"{len(results)} predictions (results file read in {t_load:.2f} s); "
          f"COCO best of {args.repeat}, per-image best of {args.repeat_pixel}\n")
    t_py, ap_py = best_of(args.repeat, lambda: run_pycocotools(gt, results))
    t_spk, ap_spk = best_of(args.repeat, lambda: run_spinekit_coco(records, results))
    t_pix, (rows_pix, summary) = best_of(args.repeat_pixel, lambda: run_per_image(records, results))
    agree = all(abs(ap_py[t] - ap_spk[t]) < 1e-9 for t in ("bbox", "segm"))
    rows = [("(b) pycocotools COCOeval bbox + segm", f"{t_py:.2f}", "1.0x",
             f"{ap_py['bbox']:.4f} / {ap_py['segm']:.4f}"),
            ("(a) spinekit CocoEvaluator bbox + segm", f"{t_spk:.2f}", f"{t_py / t_spk:.1f}x",
             f"{ap_spk['bbox']:.4f} / {ap_spk['segm']:.4f}"),
            ("(c) spinekit per_image_metrics + aggregate", f"{t_pix:.2f}", "- (other metrics)", "-")]
    print(text_table(("evaluation", "seconds", "speed-up vs (b)", "AP bbox / segm"), rows))
    per_image_ms = 1000 * t_pix / len(records.images)
    print(f"\nAPs agree to 1e-9: {'yes' if agree else 'NO'}; per-image metrics {per_image_ms:.1f} ms/image")
    level, per = summary["set_level"], summary["per_image"]
    print(f"set-level mIoU {level['mean_iou']:.4f}, pixel accuracy {level['pixel_accuracy']:.4f}, "
          f"mean accuracy {level['mean_accuracy']:.4f}, FW IoU {level['fw_iou']:.4f}; "
          f"mean Dice {per['dice']['mean']:.4f}; HD95 {per['hd95_mm']['mean']:.2f} mm "
          f"({per['hd95_mm']['images']} images), {per['hd95_px']['mean']:.2f} px "
          f"({per['hd95_px']['images']} images)")
    print(f"recognition rate {summary['recognition_rate']:.3f}, composite "
          f"{summary['composite_recognition_rate']:.3f}; counts {summary['counts']}")
    table, folds = study_table(rows_pix, args.models, args.folds, rng)
    t_stat, _ = best_of(1, lambda: run_statistics(table, folds))
    print(f"\nstatistics (describe, Shapiro-Wilk, Kruskal-Wallis, Friedman, Dunn/Wilcoxon/McNemar + Holm, "
          f"paired fold tests, markdown) on {len(table)} rows ({args.models} models x {args.folds} folds x "
          f"{len(records.images)} images): {t_stat:.2f} s")
    if not agree:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
