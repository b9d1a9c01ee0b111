"""Per-image CPU time of the landmark decode and the corner-based Cobb measurement.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_landmark_decode.py [--size 512 256] [--repeats 50]

Times, per image, on one thread (the network forward is not included):

- ``decode``: peak picking, corner decoding and spine ordering of
  :meth:`LandmarkNet._decode` on random head maps of a ``size`` input (stride 4), the
  quadrilateral masks included (``masks``: their share; ``decode_no_masks`` without);
- ``to_coco``: :func:`detections_to_coco` (corners back to original pixels, RLE masks);
- ``measure``: the ``measure --predictions`` corner path (results -> corners in level
  order -> AASCE Cobb rule) of :mod:`spinekit.clinical.measure`.

The issue's target: decode + measurement under 20 ms per image.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import torch

from spinekit.clinical.measure import COLUMNS, _keypoint_corners
from spinekit.clinical.views import Geometry, measure_ap_corners
from spinekit.evaluation.results import detections_to_coco
from spinekit.models.landmarks import build_landmarks, quad_masks
from spinekit.transforms.geometric import ResizePlan


def _ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return 1000 * (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, nargs=2, default=(512, 256), metavar=("H", "W"))
    parser.add_argument("--original", type=int, nargs=2, default=(2000, 900), metavar=("H", "W"))
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    height, width = args.size
    model = build_landmarks(depth=18, num_classes=1).eval()
    h, w = height // 4, width // 4
    prob = torch.rand(1, h, w) * 0.05
    for k in range(17):  # 17 clear peaks down the middle
        prob[0, 5 + k * (h - 10) // 17, w // 2] = 0.9
    offset, corners = torch.rand(2, h, w), torch.randn(8, h, w) * 3
    corners[[0, 4]] -= 6  # left corners left, right corners right
    corners[[2, 6]] += 6
    corners[[1, 3]] -= 3  # top corners above, bottom below
    corners[[5, 7]] += 3
    output = model._decode(prob, offset, corners, (height, width))
    plan = ResizePlan.make(args.original[1], args.original[0], (height, width), True)
    results = detections_to_coco(output, image_id=1, plan=plan, orig_width=args.original[1],
                                 orig_height=args.original[0])

    def measure() -> None:
        row: dict[str, Any] = dict.fromkeys(COLUMNS)
        row["flags"] = []
        measure_ap_corners(row, Geometry(), _keypoint_corners(results, 0.0), float(args.original[0]))

    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row["flags"] = []
    measure_ap_corners(row, Geometry(), _keypoint_corners(results, 0.0), float(args.original[0]))
    print("measured:", {k: row[k] for k in ("cobb_1_deg", "cobb_2_deg", "cobb_3_deg", "flags")})
    points = output["keypoints"][..., :2]

    with torch.no_grad():
        times = {"decode": _ms(lambda: model._decode(prob, offset, corners, (height, width)), args.repeats),
                 "masks": _ms(lambda: quad_masks(points, height, width), args.repeats),
                 "to_coco": _ms(lambda: detections_to_coco(output, image_id=1, plan=plan,
                                                           orig_width=args.original[1],
                                                           orig_height=args.original[0]), args.repeats),
                 "measure": _ms(measure, args.repeats)}
    times["decode_no_masks"] = times["decode"] - times["masks"]
    times["decode_no_masks_plus_measure"] = times["decode_no_masks"] + times["measure"]
    times["decode_plus_measure"] = times["decode"] + times["measure"]
    print(json.dumps({k: round(v, 2) for k, v in times.items()} | {"size": [height, width]}))


if __name__ == "__main__":
    main()
