"""CPU training throughput at 256x256: spinekit models vs stock torchvision Mask R-CNN.

    .venv/bin/python benchmarks/bench_training.py [--steps 6] [--threads 2]

Uses phantom frames (generated into a temporary folder), batch 4, AdamW, the
same data loader for every row; prints images/s (median step time after one
warm-up step) and parameter counts.
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
from spinekit.models.registry import build_model


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
    args = parser.parse_args()
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
        for name in ("maskrcnn_light", "maskrcnn_r50_fpn"):
            model = build_model(name, num_classes=2)
            rows.append((f"spinekit {name} (GroupNorm, gray)", _rate(model, batches, args.steps), model))
        stock = torchvision.models.detection.maskrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=3, min_size=256, max_size=256)
        rows.append(("stock maskrcnn_resnet50_fpn (FrozenBN, RGB)", _rate(stock, rgb, args.steps), stock))
    print(f"CPU training, batch 4 at 256x256, {args.threads} threads, median of {args.steps} steps")
    print(f"{'model':<48} | {'img/s':>6} | params (M)")
    print("-" * 72)
    for label, rate, model in rows:
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{label:<48} | {rate:6.2f} | {params:.1f}")


if __name__ == "__main__":
    main()
