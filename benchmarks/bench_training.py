"""CPU training throughput at 256x256: every spinekit model vs stock torchvision Mask R-CNN.

    .venv/bin/python benchmarks/bench_training.py [--steps 6] [--threads 2] [--models a,b]

Uses phantom frames (generated into a temporary folder), batch 4, AdamW, the
same data loader for every row; prints images/s and seconds per training image
(median step time after one warm-up step) and parameter counts. Instance
(Mask R-CNN) and semantic (U-Net, PSPNet, DeepLabv3) models take the same
``model(images, targets)`` call, so one table compares them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torchvision

from spinekit.data.ingest import IngestOptions, ingest
from spinekit.data.phantom import PATIENT_PATTERN, make_ultrasound_facet_phantom
from spinekit.data.torch_dataset import DatasetConfig, SpineDataset, collate
from spinekit.models.registry import MODELS, build_model


def _rate(model: torch.nn.Module, batches: list[tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]],
          steps: int) -> float:
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times = []
    for step in range(steps + 1):
        images, targets = batches[step % len(batches)]
        start = time.perf_counter()
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()  # type: ignore[union-attr]
        optimizer.step()
        if step:
            times.append(time.perf_counter() - start)
    return len(batches[0][0]) / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description="spinekit CPU training benchmark")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default=",".join(MODELS),
                        help="comma-separated model table names (default: all)")
    parser.add_argument("--no-stock", action="store_true", help="skip the stock torchvision row")
    args = parser.parse_args()
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_ultrasound_facet_phantom(work / "ph", n=16, seed=0)
        ingest(work / "ph" / "local", work / "ds",
               IngestOptions(format="labelme", patient_pattern=PATIENT_PATTERN))
        data = SpineDataset(work / "ds", part="all", config=DatasetConfig(flip_prob=0.5))
        batches = [collate([data[i] for i in range(k, k + 4)]) for k in range(0, 16, 4)]
        rgb = [([img.expand(3, -1, -1) for img in images], targets) for images, targets in batches]
        rows = []
        for name in names:
            model = build_model(name, num_classes=2)
            label = f"spinekit {name} ({MODELS[name].kind}, GroupNorm, gray)"
            rows.append((label, _rate(model, batches, args.steps), model))
        if not args.no_stock:
            stock = torchvision.models.detection.maskrcnn_resnet50_fpn(
                weights=None, weights_backbone=None, num_classes=3, min_size=256, max_size=256)
            rows.append(("stock maskrcnn_resnet50_fpn (FrozenBN, RGB)", _rate(stock, rgb, args.steps), stock))
    print(f"CPU training, batch 4 at 256x256, {args.threads} threads, median of {args.steps} steps")
    print(f"{'model':<56} | {'img/s':>6} | {'s/img':>6} | params (M)")
    print("-" * 89)
    for label, rate, model in rows:
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{label:<56} | {rate:6.2f} | {1 / rate:6.3f} | {params:.1f}")


if __name__ == "__main__":
    main()
