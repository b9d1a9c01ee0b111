"""CPU inference at 256x256: spinekit's inference path vs the stock torchvision settings.

    .venv/bin/spinekit demo --out spinekit-demo          # once: a trained phantom run
    .venv/bin/python benchmarks/bench_inference.py --run spinekit-demo/run

Rows (same test images of the run's dataset, images/s and COCO AP on them):

- stock ``torchvision.models.detection.maskrcnn_resnet50_fpn(min_size=256,
  max_size=256)`` (random weights: speed only, its AP is not meaningful);
- the run's weights with torchvision's stock inference settings (1000 RPN
  proposals, 100 detections, score 0.05, ``torch.no_grad``, one image at a time);
- one row per change on the way to spinekit's path (fewer proposals and
  detections, ``inference_mode``, batching, ``channels_last``), so each choice
  is measured rather than guessed; the last row is spinekit's default.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
import torchvision

from spinekit.data.torch_dataset import SpineDataset
from spinekit.engine.config import EvalSection
from spinekit.engine.inference import score_results
from spinekit.engine.runs import load_run
from spinekit.engine.train import eval_dataset_config
from spinekit.evaluation.results import detections_to_coco
from spinekit.transforms.geometric import ResizePlan


def _set_limits(model: Any, *, proposals: int, pre: int, detections: int) -> None:
    model.rpn._pre_nms_top_n["testing"] = pre
    model.rpn._post_nms_top_n["testing"] = proposals
    model.roi_heads.detections_per_img = detections


def _timed(model: torch.nn.Module, images: list[torch.Tensor], batch: int,
           grad: Callable[[], AbstractContextManager[Any]], repeats: int) -> tuple[float, list[Any]]:
    model.eval()
    outputs: list[Any] = []
    with grad():
        model(images[:batch])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        outputs = []
        start = time.perf_counter()
        with grad():
            for i in range(0, len(images), batch):
                outputs.extend(model(images[i:i + batch]))
        best = min(best, time.perf_counter() - start)
    return len(images) / best, outputs


def _ap(outputs: list[Any], data: SpineDataset, model: torch.nn.Module) -> float:
    results = []
    for index, output in enumerate(outputs):
        info = data.image_info(index)
        plan = ResizePlan.make(int(info["width"]), int(info["height"]), data.config.size,
                               data.config.keep_aspect)
        results.extend(detections_to_coco({k: v.float() for k, v in output.items()}, image_id=int(info["id"]),
                                          plan=plan, orig_width=int(info["width"]),
                                          orig_height=int(info["height"])))
    metrics = score_results(data, results, EvalSection())
    return float(metrics["segm"]["AP"])


def main() -> None:
    parser = argparse.ArgumentParser(description="spinekit CPU inference benchmark")
    parser.add_argument("--run", type=Path, default=Path("spinekit-demo/run"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_run(args.run)
    assert loaded.dataset is not None, "the run does not name its dataset"
    data = SpineDataset(loaded.dataset, part="test", fold=loaded.config.data.fold,
                        config=eval_dataset_config(loaded.config))
    images = [data[i][0] for i in range(len(data))]
    rows: list[tuple[str, float, float | None]] = []
    stock = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=len(loaded.classes) + 1, min_size=256, max_size=256)
    rate, _ = _timed(stock, [img.expand(3, -1, -1) for img in images], 1, torch.no_grad, args.repeats)
    rows.append(("stock maskrcnn_resnet50_fpn(min_size=256, max_size=256), no_grad, batch 1", rate, None))
    model = copy.deepcopy(loaded.model)
    _set_limits(model, pre=1000, proposals=1000, detections=100)
    model.roi_heads.score_thresh = 0.05
    steps: list[tuple[str, Callable[[torch.nn.Module], None], int, Callable[[], Any]]] = [
        (f"{loaded.config.model.name} weights, stock settings (1000 proposals, 100 dets), no_grad, batch 1",
         lambda m: None, 1, torch.no_grad),
        ("+ 300/100 RPN proposals, 30 detections (spinekit light defaults)",
         lambda m: _set_limits(m, pre=300, proposals=100, detections=30), 1, torch.no_grad),
        ("+ inference_mode", lambda m: None, 1, torch.inference_mode),
        ("+ batch 8", lambda m: None, 8, torch.inference_mode),
        ("+ channels_last", lambda m: m.to(memory_format=torch.channels_last), 8, torch.inference_mode),
    ]
    for label, change, batch, grad in steps:
        change(model)
        rate, outputs = _timed(model, images, batch, grad, args.repeats)
        rows.append((label, rate, _ap(outputs, data, model)))
    stock_rate, same_rate = rows[0][1], rows[1][1]
    print(f"CPU inference, {len(images)} test images at 256x256, {args.threads} threads")
    print(f"{'configuration':<92} | {'img/s':>7} | {'vs R50':>7} | {'vs same':>7} | segm AP")
    print("-" * 134)
    for label, rate, ap in rows:
        ap_text = "n/a" if ap is None else f"{100 * ap:.1f}"
        print(f"{label:<92} | {rate:7.2f} | {rate / stock_rate:6.1f}x | {rate / same_rate:6.1f}x | {ap_text}")


if __name__ == "__main__":
    main()
