"""Data-layer benchmark: AASCE ingest time and 256x256 loading throughput.

Run from the repository root (needs ../shared/data/aasce):

    .venv/bin/python benchmarks/bench_data.py [--workers 2] [--images 200]

Prints one table. Targets (2 cores): ingest of the 481-image AASCE set <= 30 s;
loading >= 100 images/s at 256x256. The "stock" loader is the straightforward
path a torchvision tutorial takes: decode the full-resolution image, draw
full-resolution masks, then resize image and masks with
``torch.nn.functional.interpolate``. It is run in the same process on the
same images for comparison.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from spinekit.data.ingest import IngestOptions, ingest
from spinekit.data.splits import SplitConfig, make_splits
from spinekit.data.torch_dataset import DatasetConfig, SpineDataset, collate
from spinekit.geometry import as_points, rasterize

AASCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "aasce"


class StockDataset(torch.utils.data.Dataset):
    """Full-resolution decode and masks, then interpolate to 256x256."""

    def __init__(self, spine: SpineDataset) -> None:
        self.spine = spine

    def __len__(self) -> int:
        return len(self.spine)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        info = self.spine.images[index]
        path = self.spine.records.image_path(info)
        image = torch.from_numpy(np.array(Image.open(path).convert("L"))).float()[None] / 255.0
        height, width = image.shape[-2:]
        anns = self.spine.annotations[int(info["id"])]
        masks = torch.from_numpy(np.stack([rasterize([as_points(p) for p in a["segmentation"]], height, width)
                                           for a in anns]))
        image = torch.nn.functional.interpolate(image[None], size=(256, 256), mode="bilinear")[0]
        masks = torch.nn.functional.interpolate(masks[None].float(), size=(256, 256), mode="nearest")[0]
        return image, {"masks": masks.to(torch.uint8)}


def _throughput(dataset: torch.utils.data.Dataset, workers: int, limit: int) -> float:
    subset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))  # type: ignore[arg-type]
    loader = torch.utils.data.DataLoader(subset, batch_size=8, num_workers=workers, collate_fn=collate)
    start = time.perf_counter()
    count = sum(len(images) for images, _ in loader)
    return count / (time.perf_counter() - start)


def _phantom_row(work: Path, workers: int, limit: int) -> tuple[str, str, str, str]:
    from spinekit.data.phantom import make_ultrasound_facet_phantom

    make_ultrasound_facet_phantom(work / "phantom", n=min(limit, 120), seed=0)
    ingest(work / "phantom" / "local", work / "phantom-ds",
           IngestOptions(format="labelme", patient_pattern=r"^(P\d+)_"))
    spine = SpineDataset(work / "phantom-ds", part="all", config=DatasetConfig(size=(256, 256)))
    rate = _throughput(spine, workers, limit)
    return (f"load phantom 960x720 -> 256x256, {workers} workers: spinekit", f"{rate:.1f} img/s",
            f"{len(spine)} images", ">= 100 img/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="spinekit-bench-"))
    rows = []
    try:
        for label, options in (
            ("ingest AASCE (copy, full decode check)", IngestOptions(format="aasce")),
            ("ingest AASCE (reference, header check)",
             IngestOptions(format="aasce", copy_images=False, verify_pixels=False)),
        ):
            out = work / label.split("(")[1].split(",")[0]
            start = time.perf_counter()
            report = ingest(AASCE, out, options)
            rows.append((label, f"{time.perf_counter() - start:.2f} s", f"{report.images} images, "
                         f"{report.annotations} vertebrae", "<= 30 s"))
        dataset_dir = work / "copy"
        make_splits(dataset_dir, SplitConfig(test_fraction=0.2, folds=5, seed=0))
        spine = SpineDataset(dataset_dir, part="all", config=DatasetConfig(size=(256, 256)))
        candidates = (("spinekit SpineDataset", spine), ("stock full-res + interpolate", StockDataset(spine)))
        for name, ds in candidates:
            rate = _throughput(ds, args.workers, args.images)
            rows.append((f"load AASCE 256x256, {args.workers} workers: {name}", f"{rate:.1f} img/s",
                         f"{min(args.images, len(spine))} images", ">= 100 img/s"))
        rows.append(_phantom_row(work, args.workers, args.images))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}} | {'result':>12} | {'size':<28} | target")
    print("-" * (width + 60))
    for name, result, size, target in rows:
        print(f"{name:<{width}} | {result:>12} | {size:<28} | {target}")


if __name__ == "__main__":
    main()
