"""End-to-end Cobb angles: predicted vertebra masks -> ordered vertebrae -> corners -> angles.

    .venv/bin/python benchmarks/bench_cobb_end_to_end.py --dataset DATASET \\
        --predictions PRED.json [--split test] [--min-score 0.5]

For each image of the split (the images with predictions when the dataset has no
``splits.json``): the predicted masks (COCO results, RLE, decoded into their boxes) scoring
at least ``--min-score`` are ordered and labelled (:func:`order_and_label`, AP view), their
corners fitted (:func:`corners_from_masks`) and the AASCE Cobb rule applied. Compared
with the expert angles (``images[].cobb_angles_deg``, the challenge's angles.csv) and,
as a reference that should be ~0, with the angles from the expert landmark corners
(``annotations[].corners`` in level order). An image with fewer than 2 usable
vertebrae gets predicted angles (0, 0, 0) and is counted.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from spinekit.clinical.cobb import cobb_angles, smape
from spinekit.clinical.vertebrae import AP_LEVELS, corners_from_masks, order_and_label
from spinekit.data.records import load_dataset
from spinekit.data.splits import load_splits, split_image_ids
from spinekit.masks import crop_from_rle


def predicted_angles(preds: list[dict[str, Any]], height: int, min_score: float,
                     flags: Counter[str]) -> tuple[np.ndarray, int]:
    """Angles ``(3,)`` of one image from its predictions, and the vertebrae count used."""
    preds = [p for p in preds if float(p["score"]) >= min_score]
    masks = [crop_from_rle(p["segmentation"]) for p in preds]  # decoded into each mask's box
    spine = order_and_label(masks, [float(p["score"]) for p in preds], view="ap",
                            min_score=min_score)
    for flag in spine.flags:
        if "unlabelled" in flag and "found" in flag:
            flag = "more vertebrae than expected"
        elif "assumed" in flag:
            flag = "fewer vertebrae than expected"
        flags[flag] += 1
    corners = corners_from_masks([masks[v.index] for v in spine.vertebrae], on_error="nan")
    good = np.all(np.isfinite(corners), axis=(1, 2))
    if (~good).any():
        flags["corner fit failed"] += int((~good).sum())
    if good.sum() < 2:
        flags["fewer than 2 vertebrae: angles 0"] += 1
        return np.zeros(3), len(spine.vertebrae)
    return np.array(cobb_angles(corners[good], image_height=height).angles_deg), len(spine.vertebrae)


def expert_corner_angles(anns: list[dict[str, Any]], height: int) -> np.ndarray:
    rank = {name: k for k, name in enumerate(AP_LEVELS)}
    with_corners = [a for a in anns if a.get("corners")]
    with_corners.sort(key=lambda a: rank.get(str((a.get("attributes") or {}).get("level")), 99))
    corners = np.array([a["corners"] for a in with_corners], dtype=np.float64)
    return np.array(cobb_angles(corners, image_height=height).angles_deg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--min-score", type=float, default=0.5)
    args = parser.parse_args()
    records = load_dataset(args.dataset)
    by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for p in json.loads(args.predictions.read_text(encoding="utf-8")):
        by_image[int(p["image_id"])].append(p)
    if (args.dataset / "splits.json").is_file():
        ids = set(split_image_ids(load_splits(args.dataset), args.split))
    else:  # the run's split file is elsewhere: the images that have predictions
        ids = set(by_image)
    anns = records.annotations_by_image()
    flags: Counter[str] = Counter()
    pred, ref, truth, counts = [], [], [], []
    start = time.perf_counter()
    for image in records.images:
        if int(image["id"]) not in ids or image.get("cobb_angles_deg") is None:
            continue
        h = int(image["height"])
        angles, n = predicted_angles(by_image.get(int(image["id"]), []), h, args.min_score, flags)
        pred.append(angles)
        counts.append(n)
        ref.append(expert_corner_angles(anns[int(image["id"])], h))
        truth.append(image["cobb_angles_deg"])
    seconds = time.perf_counter() - start
    report(np.array(pred), np.array(ref), np.array(truth, dtype=np.float64), counts, flags, seconds)


def report(pred: np.ndarray, ref: np.ndarray, truth: np.ndarray, counts: list[int],
           flags: Counter[str], seconds: float) -> None:
    n = len(truth)
    print(f"images: {n}   with 17 vertebrae found: {sum(c == 17 for c in counts)}   "
          f"vertebra count distribution: {dict(sorted(Counter(counts).items()))}")
    print(f"SMAPE predicted vs expert angles:       {smape(pred, truth):6.2f} %")
    print(f"SMAPE expert-landmark vs expert angles: {smape(ref, truth):6.2f} %  (reference)")
    mae = np.abs(pred - truth).mean(axis=0)
    mae_ref = np.abs(ref - truth).mean(axis=0)
    print("MAE per column (deg)  predicted: " + "  ".join(f"{v:.2f}" for v in mae)
          + "   expert-landmark: " + "  ".join(f"{v:.3f}" for v in mae_ref))
    within = np.abs(pred[:, 0] - truth[:, 0])
    print(f"main curve |error|: median {np.median(within):.2f} deg, "
          f"<=5 deg in {100 * np.mean(within <= 5):.0f} % of images")
    print("flags: " + (", ".join(f"{k} x{v}" for k, v in flags.most_common()) or "none"))
    print(f"time: {seconds:.1f} s total, {1000 * seconds / max(n, 1):.0f} ms per image "
          "(decode + order + corners + angles)")


if __name__ == "__main__":
    main()
