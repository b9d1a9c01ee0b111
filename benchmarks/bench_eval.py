"""Evaluation benchmark: faster-coco-eval (spinekit's path) vs pycocotools on the same predictions.

Run from the repository root:

    .venv/bin/python benchmarks/bench_eval.py [--images 481] [--repeat 3]

Ground truth: the AASCE radiographs (../shared/data/aasce, 17 vertebra polygons
per image, originals about 1000 x 2500 px), ingested into a temporary folder
without copying images; a synthetic set of the same shape when the data is
absent. Predictions: every ground-truth polygon with jittered vertices (90 %
of them), plus 0-3 false positives per image, with scores and compressed RLE
masks in original coordinates. Each tool is timed on the same ground truth and
predictions for bbox and segm (best of ``--repeat`` runs, including building
the COCO objects), and the APs must agree. Target: faster-coco-eval >= 2x.

A second table times mask conversion of model outputs (30 detections, 512x512
model input, 1000 x 2500 original): spinekit's windowed resize vs resizing each
full probability map with ``F.interpolate``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from faster_coco_eval import COCO, COCOeval_faster

from spinekit.data.ingest import IngestOptions, ingest
from spinekit.data.records import DatasetRecords, load_dataset
from spinekit.evaluation import CocoEvaluator, detections_to_coco, encode_mask
from spinekit.evaluation.results import window_rle
from spinekit.geometry import as_points, rasterize
from spinekit.transforms.geometric import ResizePlan

AASCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "aasce"
STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _synthetic_records(root: Path, images: int, rng: np.random.Generator) -> DatasetRecords:
    """AASCE-shaped stand-in: 17 stacked quadrilaterals per 1000 x 2500 image."""
    imgs: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for image_id in range(1, images + 1):
        imgs.append({"id": image_id, "file_name": f"{image_id}.png", "width": 1000, "height": 2500})
        for level in range(17):
            x, y = 400 + rng.normal(0, 30), 150 + level * 130
            pts = np.array([[x, y], [x + 160, y + 5], [x + 155, y + 70], [x - 5, y + 65]])
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": 1,
                         "segmentation": [pts.reshape(-1).tolist()], "area": 160.0 * 65.0,
                         "bbox": [x - 5, y, 165.0, 70.0], "iscrowd": 0})
    return DatasetRecords(root=root, images=imgs, annotations=anns,
                          categories=[{"id": 1, "name": "vertebra"}])


def load_ground_truth(work: Path, images: int, rng: np.random.Generator) -> tuple[DatasetRecords, str]:
    """AASCE ingested into ``work`` (first ``images`` images), or the synthetic stand-in."""
    if not (AASCE / "landmarks.csv").is_file():
        return _synthetic_records(work, images, rng), "synthetic (AASCE not found)"
    ingest(AASCE, work / "aasce", IngestOptions(format="aasce", copy_images=False, verify_pixels=False))
    records = load_dataset(work / "aasce")
    keep = {int(img["id"]) for img in records.images[:images]}
    records.images = [img for img in records.images if int(img["id"]) in keep]
    records.annotations = [a for a in records.annotations if int(a["image_id"]) in keep]
    return records, "AASCE"


def _result(image: dict[str, Any], pts: np.ndarray, category_id: int, score: float) -> dict[str, Any]:
    """COCO result for polygon ``pts``: its box and an RLE mask drawn in its bounding window."""
    height, width = int(image["height"]), int(image["width"])
    pts = np.clip(pts, 0, [width, height])
    x0, y0 = np.floor(pts.min(axis=0)).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
    window = rasterize([pts - [x0, y0]], max(y1 - y0, 1), max(x1 - x0, 1))
    return {"image_id": int(image["id"]), "category_id": category_id, "score": score,
            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
            "segmentation": window_rle(window, int(y0), int(x0), height, width)}


def make_predictions(records: DatasetRecords, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Jittered ground truth (90 %) plus 0-3 false positives per image."""
    images = {int(img["id"]): img for img in records.images}
    out = []
    for ann in records.annotations:
        if rng.uniform() < 0.9:
            pts = as_points(ann["segmentation"][0])
            pts = pts + rng.normal(0, 4, pts.shape) + rng.normal(0, 3, 2)
            out.append(_result(images[int(ann["image_id"])], pts, int(ann["category_id"]),
                               float(rng.uniform(0.3, 1.0))))
    for image in images.values():
        for _ in range(int(rng.integers(0, 4))):
            cx, cy = rng.uniform(100, image["width"] - 100), rng.uniform(100, image["height"] - 100)
            pts = np.array([[cx - 60, cy - 25], [cx + 60, cy - 25], [cx + 60, cy + 25], [cx - 60, cy + 25]])
            out.append(_result(image, pts, 1, float(rng.uniform(0.0, 0.6))))
    return out


def _for_type(results: list[dict[str, Any]], iou_type: str) -> list[dict[str, Any]]:
    """Results as handed to a COCO evaluator: segm without boxes (mask areas), as spinekit does."""
    if iou_type == "segm":
        return [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    return [dict(r) for r in results]


def run_spinekit(records: DatasetRecords, results: list[dict[str, Any]], iou_type: str) -> float:
    evaluator = CocoEvaluator(records, [int(i["id"]) for i in records.images], iou_types=(iou_type,))
    evaluator.process(results)
    return float(evaluator.evaluate()[iou_type]["AP"])


def run_faster(gt: dict[str, Any], results: list[dict[str, Any]], iou_type: str) -> float:
    coco_gt = COCO(copy.deepcopy(gt))
    evaluator = COCOeval_faster(coco_gt, coco_gt.loadRes(_for_type(results, iou_type)), iou_type)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return float(evaluator.stats[0])


def run_pycocotools(gt: dict[str, Any], results: list[dict[str, Any]], iou_type: str) -> float:
    from pycocotools.coco import COCO as PyCOCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = PyCOCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(_for_type(results, iou_type)), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[0])


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """(best wall time in seconds, last value) over ``repeat`` runs."""
    times, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return min(times), value


def text_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _mask_conversion_rows(repeat: int) -> list[tuple[str, ...]]:
    """Time detections_to_coco vs full-size F.interpolate + threshold + encode per mask."""
    width, height, n = 1000, 2500, 30
    plan = ResizePlan.make(width, height, (512, 512), keep_aspect=True)
    masks = torch.zeros(n, 1, 512, 512)
    boxes = []
    for k in range(n):
        y = 20 + 16 * k
        masks[k, 0, y:y + 12, 220:300] = torch.linspace(0.3, 0.95, 80)
        boxes.append([220.0, float(y), 300.0, float(y + 12)])
    output = {"boxes": torch.tensor(boxes), "labels": torch.ones(n, dtype=torch.int64),
              "scores": torch.linspace(0.99, 0.5, n), "masks": masks}

    def windowed() -> float:
        return float(len(detections_to_coco(output, image_id=1, plan=plan, orig_width=width,
                                            orig_height=height)))

    def full() -> float:
        inner = masks[..., plan.pad_y:plan.pad_y + plan.inner_height,
                      plan.pad_x:plan.pad_x + plan.inner_width]
        for k in range(n):
            big = torch.nn.functional.interpolate(inner[k:k + 1], (height, width), mode="bilinear",
                                                  align_corners=False)[0, 0]
            encode_mask((big >= 0.5).numpy())
        return float(n)

    t_win, _ = best_of(repeat, windowed)
    t_full, _ = best_of(repeat, full)
    return [("full-size F.interpolate per mask", f"{t_full * 1000:.1f}", "1.0x"),
            ("spinekit detections_to_coco (windowed)", f"{t_win * 1000:.1f}", f"{t_full / t_win:.1f}x")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=481)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        records, source = load_ground_truth(Path(tmp), args.images, rng)
        results = make_predictions(records, rng)
        gt = CocoEvaluator(records, [int(i["id"]) for i in records.images],
                           iou_types=("bbox",)).ground_truth
        print(f"ground truth: {source}, {len(records.images)} images, {len(gt['annotations'])} "
              f"instances; {len(results)} predictions; best of {args.repeat} runs\n")
        rows, agree = [], True
        for iou_type in ("bbox", "segm"):
            t_py, ap_py = best_of(args.repeat, partial(run_pycocotools, gt, results, iou_type))
            t_fast, ap_fast = best_of(args.repeat, partial(run_faster, gt, results, iou_type))
            t_spk, ap_spk = best_of(args.repeat, partial(run_spinekit, records, results, iou_type))
            agree &= abs(ap_fast - ap_py) < 1e-9 and abs(ap_spk - ap_py) < 1e-9
            rows += [("pycocotools COCOeval", iou_type, f"{t_py:.2f}", "1.0x", f"{ap_py:.6f}"),
                     ("faster-coco-eval COCOeval_faster", iou_type, f"{t_fast:.2f}",
                      f"{t_py / t_fast:.1f}x", f"{ap_fast:.6f}"),
                     ("spinekit CocoEvaluator (+ image level)", iou_type, f"{t_spk:.2f}",
                      f"{t_py / t_spk:.1f}x", f"{ap_spk:.6f}")]
    print(text_table(("tool", "iou", "seconds", "speed-up", "AP"), rows))
    print(f"\nAPs agree to 1e-9: {'yes' if agree else 'NO'}\n")
    print(text_table(("mask conversion, 30 detections, 1000x2500 original", "ms", "speed-up"),
                 _mask_conversion_rows(args.repeat)))
    if not agree:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
