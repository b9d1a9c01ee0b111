"""Speed of ``spinekit measure`` on 10,000 images' instances per view, against the stock path.

    .venv/bin/python benchmarks/bench_measure.py [--n 10000] [--workers 2] [--stock-n 300]
        [--aasce ../shared/data/aasce] [--mri ../shared/data/lumbar-mri]
        [--aasce-predictions PRED.json --aasce-dataset DATASET]

Inputs, replicated in turn to ``--n`` images per view (every image is measured from
scratch; nothing is cached between copies):

- ``ap-landmarks``: the 481 AASCE expert landmark sets (17 vertebrae each, corners).
- ``ap-masks``: AASCE vertebra masks as COCO RLE, what a model outputs: the predictions
  of a trained run when ``--aasce-predictions`` / ``--aasce-dataset`` are given, else the
  expert quadrilaterals encoded as RLE (17 per image).
- ``lateral``: the 168 lumbar-MRI slices, each level mask encoded as RLE and measured as an
  unlabelled prediction (ordering, labelling, endplates, lordosis, heights).
- ``ultrasound``: 30 default-size phantom frames, facet-joint and ventral-complex polygons
  encoded as RLE predictions (presence, trust, needle target).

Our path is :func:`spinekit.clinical.measure.measure_image`, the per-image code of
``spinekit measure`` (masks decoded into their bounding box, vectorised border fits), run
in one process and on ``--workers`` processes through the same chunked process pool as
``spinekit measure --workers`` (:func:`spinekit.clinical.measure._measure_parallel`: the
images' annotations are sent to the workers and the full results, rows and geometry, come
back in image order). The stock path decodes every mask to the full
image (``faster_coco_eval`` ``decode``) and runs ``skimage.measure.regionprops`` on it
(centroid, orientation, box), then a simple angle from the orientations (ultrasound: the
top-most mask pixel per column); it does less than ours (no endplate fits, no labels, no
flags), so it is a lower bound of a straightforward implementation's time. For the
landmark view the stock path is a plain Python loop over the vertebra pairs of one image.
It is timed on ``--stock-n`` images and scaled to ``--n``. Prints one table (seconds for ``--n`` images)
and whether each view meets the issue's target of under 60 s on 2 cores, with the 1-minute
load average before each view (other jobs on the machine slow every number down).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from faster_coco_eval.core import mask as mask_api
from PIL import Image
from skimage.measure import regionprops

from spinekit.clinical.cobb import read_aasce_corners
from spinekit.clinical.measure import _Context, _measure_parallel, _Roles, measure_image
from spinekit.evaluation.results import encode_mask
from spinekit.geometry import rasterize

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
Sample = tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]] | None, _Context]
"""(image record, expert annotations, predictions or None, context) of one image."""

SAMPLES: list[Sample] = []


def _ctx(names: list[str], view: str) -> _Context:
    roles = _Roles.of([{"id": k + 1, "name": n} for k, n in enumerate(names)])
    return _Context(roles=roles, view=view, fmt=None, threshold=0.5,  # type: ignore[arg-type]
                    ultrasound=view == "ultrasound")


def ap_landmark_samples(folder: Path) -> list[Sample]:
    data = read_aasce_corners(folder)
    ctx = _ctx(["vertebra"], "ap")
    levels = [f"T{k}" for k in range(1, 13)] + [f"L{k}" for k in range(1, 6)]
    out: list[Sample] = []
    for i, (w, h) in enumerate(data.image_sizes):
        anns = [{"id": k, "category_id": 1, "corners": data.corners[i, k].tolist(),
                 "attributes": {"level": lv}} for k, lv in enumerate(levels)]
        image: dict[str, Any] = {"id": i, "file_name": data.names[i], "width": int(w), "height": int(h)}
        out.append((image, anns, None, ctx))
    return out


def ap_mask_samples(folder: Path, predictions: Path | None, dataset: Path | None, limit: int) -> list[Sample]:
    ctx = _ctx(["vertebra"], "ap")
    if predictions is not None and dataset is not None:
        images = {int(i["id"]): i for i in json.loads((dataset / "annotations.json").read_text())["images"]}
        by: dict[int, list[dict[str, Any]]] = {}
        for d in json.loads(predictions.read_text()):
            by.setdefault(int(d["image_id"]), []).append(d)
        found: list[Sample] = [(images[i], [], dets, ctx) for i, dets in sorted(by.items())]
        return found[:limit]
    data = read_aasce_corners(folder)
    out: list[Sample] = []
    for i, (w, h) in enumerate(data.image_sizes[:limit]):
        dets = [{"image_id": i, "category_id": 1, "score": 0.9,
                 "segmentation": encode_mask(rasterize([c[[0, 1, 3, 2]]], int(h), int(w)))}
                for c in data.corners[i]]
        out.append(({"id": i, "file_name": data.names[i], "width": int(w), "height": int(h)}, [], dets, ctx))
    return out


def lateral_samples(folder: Path) -> list[Sample]:
    labels = json.loads((folder / "labels.json").read_text())
    names = {int(k): v for k, v in labels["mask_values"].items()}
    ctx = _ctx(["vertebra"], "lateral")
    out: list[Sample] = []
    for i, entry in enumerate(json.loads((folder / "slices.json").read_text())):
        mask = np.asarray(Image.open(folder / entry["mask"]))
        dets = [{"image_id": i, "category_id": 1, "score": 0.9, "segmentation": encode_mask(mask == v)}
                for v in np.unique(mask) if int(v) in names]
        image = {"id": i, "file_name": entry["mask"], "width": mask.shape[1], "height": mask.shape[0],
                 "pixel_spacing_mm": [1.0, 1.0]}
        out.append((image, [], dets, ctx))
    return out


def ultrasound_samples(frames: int) -> list[Sample]:
    from spinekit.data.phantom import make_ultrasound_facet_phantom

    ctx = _ctx(["F", "E"], "ultrasound")
    out: list[Sample] = []
    with tempfile.TemporaryDirectory() as tmp:
        summary = make_ultrasound_facet_phantom(Path(tmp) / "ph", n=frames, seed=0)
        for i, name in enumerate(summary.frames):
            doc = json.loads((summary.folder("local") / f"{name}.json").read_text())
            h, w = doc["imageHeight"], doc["imageWidth"]
            dets = [{"image_id": i, "category_id": 1 if s["label"] == "F" else 2, "score": 0.9,
                     "segmentation": encode_mask(rasterize([np.array(s["points"])], h, w))}
                    for s in doc["shapes"] if s["shape_type"] == "polygon"]
            image = {"id": i, "file_name": name, "width": w, "height": h,
                     "pixel_spacing_mm": doc["pixel_spacing_mm"]}
            out.append((image, [], dets, ctx))
    return out


def _ours(index: int) -> int:
    image, anns, dets, ctx = SAMPLES[index % len(SAMPLES)]
    measure_image(image, anns, dets, ctx)
    return 1


def _stock(index: int) -> int:
    """Full-image decoding and regionprops per instance, then simple per-image arithmetic."""
    _, anns, dets, ctx = SAMPLES[index % len(SAMPLES)]
    if dets is None:  # landmarks: a plain per-image loop over vertebra pairs (no masks)
        mids = []
        for a in anns:
            (x0, y0), (x1, y1), (x2, y2), (x3, y3) = a["corners"]
            mids.append(np.arctan2((y1 + y3 - y0 - y2) / 2, (x1 + x3 - x0 - x2) / 2))
        max(abs(np.degrees(p - q)) for p in mids for q in mids)
        return 1
    masks = [np.asarray(mask_api.decode(d["segmentation"])) for d in dets if d["score"] >= 0.5]
    props = [regionprops(m.astype(np.uint8))[0] for m in masks if m.any()]
    if ctx.view == "ultrasound":
        for m in masks:
            cols = np.flatnonzero(m.any(axis=0))
            np.argmax(m[:, cols], axis=0)
    else:
        order = np.argsort([p.centroid[0] for p in props])
        angles = np.degrees([props[k].orientation for k in order])
        if angles.size >= 2:
            float(np.max(angles) - np.min(angles))
    return 1


def _ours_parallel(n: int, workers: int) -> float:
    """Seconds for ``n`` images through the pool of ``spinekit measure --workers``."""
    start = time.perf_counter()
    tasks = [SAMPLES[i % len(SAMPLES)][:3] for i in range(n)]
    done = sum(1 for _ in _measure_parallel(tasks, SAMPLES[0][3], workers))
    assert done == n
    return time.perf_counter() - start


def _run(fn: Callable[[int], int], n: int, workers: int) -> float:
    start = time.perf_counter()
    if workers <= 1:
        for i in range(n):
            fn(i)
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            sum(pool.imap_unordered(fn, range(n), chunksize=64))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stock-n", type=int, default=300)
    parser.add_argument("--aasce", type=Path, default=SHARED / "aasce")
    parser.add_argument("--mri", type=Path, default=SHARED / "lumbar-mri")
    parser.add_argument("--aasce-predictions", type=Path)
    parser.add_argument("--aasce-dataset", type=Path)
    parser.add_argument("--views", default="ap-landmarks,ap-masks,lateral,ultrasound")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    builders = {
        "ap-landmarks": lambda: ap_landmark_samples(args.aasce),
        "ap-masks": lambda: ap_mask_samples(args.aasce, args.aasce_predictions, args.aasce_dataset, 200),
        "lateral": lambda: lateral_samples(args.mri),
        "ultrasound": lambda: ultrasound_samples(30),
    }
    print(f"{args.n} images per view; ours on 1 and {args.workers} processes, stock path on "
          f"{args.stock_n} images scaled to {args.n} (1 process); {os.cpu_count()} CPUs seen")
    print(f"{'view':14s} {'inst/img':>8s} {'ours 1 proc':>12s} {'ours ' + str(args.workers) + ' proc':>12s} "
          f"{'stock 1 proc':>13s} {'speed-up':>9s}  under 60 s on 2 cores?  load")
    for view in args.views.split(","):
        SAMPLES[:] = builders[view]()
        load = os.getloadavg()[0]
        per = np.mean([len(s[2]) if s[2] is not None else len(s[1]) for s in SAMPLES])
        ours1 = _run(_ours, args.n, 1)
        ours2 = _ours_parallel(args.n, args.workers)
        stock = _run(_stock, args.stock_n, 1) * args.n / args.stock_n
        print(f"{view:14s} {per:8.1f} {ours1:11.1f}s {ours2:11.1f}s {stock:12.1f}s {stock / ours1:8.1f}x  "
              f"{'yes' if ours2 * 10_000 / args.n < 60 else 'NO':22s} {load:.1f}", flush=True)


if __name__ == "__main__":
    main()
