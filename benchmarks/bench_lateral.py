"""Lateral lumbar measurements on the lumbar-MRI expert masks: values, flags, speed, checks.

Usage: ``python benchmarks/bench_lateral.py [LUMBAR_MRI_FOLDER]`` (default
../shared/data/lumbar-mri).

Prints the distribution of L1-L5 lordosis, body and disc heights over all slices, the
flag counts and the time per slice, then two consistency checks:

- endplate angle of :func:`endplates_from_mask` against an independent reference, the
  orientation of the body's moment ellipse (``skimage.measure.regionprops``). This shows
  that the border fits agree with a global shape measure; it cannot show that either is
  the radiologist's endplate (no expert endplate lines exist for this set), and the two
  legitimately differ on wedged bodies (the ellipse axis averages upper and lower
  endplates, so the comparison uses the mean of the two endplate directions).
- within-patient spread: the three slices of one exam (mid-sagittal and +-2 mm) should
  give close lordosis values; the mean per-patient SD is reported.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter, defaultdict
from itertools import pairwise
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.measure import regionprops

from spinekit.clinical.endplates import endplates_from_mask
from spinekit.clinical.lateral import LUMBAR, LateralMeasurements, column_endplates, measure_lateral

DEFAULT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "lumbar-mri"


def load_slice(folder: Path, entry: dict, names: dict[int, str]) -> dict[str, np.ndarray]:
    """Level name -> bool mask ``(H, W)`` of one slice."""
    mask = np.asarray(Image.open(folder / entry["mask"]))
    return {names[int(v)]: mask == v for v in np.unique(mask) if int(v) in names}


def stats(values: list[float]) -> str:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return "n=0"
    return (
        f"n={arr.size} mean={arr.mean():.1f} SD={arr.std(ddof=1) if arr.size > 1 else 0:.1f} "
        f"min={arr.min():.1f} max={arr.max():.1f}"
    )


def ellipse_angle_diffs(vertebrae: dict[str, np.ndarray], hinted: bool) -> list[float]:
    """|mean endplate angle - moment-ellipse AP-axis angle| (deg) per measurable body;
    ``hinted``: endplates as measure_lateral computes them (column-direction start),
    else :func:`endplates_from_mask` alone (PCA start)."""
    diffs = []
    found = column_endplates(vertebrae, [])[0] if hinted else {}
    for level, mask in vertebrae.items():
        try:
            ep = found[level] if hinted else endplates_from_mask(mask)
        except (ValueError, KeyError):
            continue
        props = max(regionprops(mask.astype(np.uint8)), key=lambda p: p.area)
        theta = props.orientation  # major axis vs the row axis: (row, col) = (cos, sin)
        major = np.array([np.sin(theta), np.cos(theta)])  # (x, y)
        axis = major if abs(major[0]) >= abs(major[1]) else np.array([-major[1], major[0]])
        ref = np.degrees(np.arctan2(axis[1], axis[0]))
        dirs = [ep.upper[1] - ep.upper[0], ep.lower[1] - ep.lower[0]]
        mean_dir = sum(d / np.linalg.norm(d) for d in dirs)
        ours = np.degrees(np.arctan2(mean_dir[1], mean_dir[0]))
        diffs.append(abs((ours - ref + 90.0) % 180.0 - 90.0))
    return diffs


def report(results: list[tuple[dict, LateralMeasurements]], seconds: float) -> None:
    n = len(results)
    print(f"slices measured: {n}, time per slice {1000 * seconds / max(n, 1):.1f} ms")
    lordosis = [r.lordosis_L1_L5_deg for _, r in results if r.lordosis_L1_L5_deg is not None]
    print(f"lordosis L1-L5 (deg): {stats(lordosis)}")
    units = {r.unit for _, r in results}
    print(f"body middle height per level ({'/'.join(sorted(units))}):")
    for lv in LUMBAR:
        vals = [r.body_heights[lv]["middle"] for _, r in results if lv in r.body_heights]
        print(f"  {lv}: {stats(vals)}")
    print("disc heights (anterior / middle / posterior means; middle stats):")
    for a, b in pairwise(LUMBAR):
        pair = f"{a}-{b}"
        got = [r.disc_heights[pair] for _, r in results if pair in r.disc_heights]
        means = " / ".join(
            f"{np.mean([g[p] for g in got]):.1f}" if got else "-"
            for p in ("anterior", "middle", "posterior")
        )
        print(f"  {pair}: {means}; middle {stats([g['middle'] for g in got])}")
    flags = Counter(f.split(":")[0] for _, r in results for f in r.flags)
    print(f"flags ({sum(flags.values())} in {sum(1 for _, r in results if r.flags)} slices):")
    for text, count in flags.most_common():
        print(f"  {count:4d}  {text}")
    by_patient: dict[str, list[float]] = defaultdict(list)
    for entry, r in results:
        if r.lordosis_L1_L5_deg is not None:
            by_patient[entry["patient_id"]].append(r.lordosis_L1_L5_deg)
    sds = [float(np.std(v, ddof=1)) for v in by_patient.values() if len(v) > 1]
    print(
        f"within-patient SD of L1-L5 lordosis over the 3 slices: mean {np.mean(sds):.2f} deg, "
        f"max {np.max(sds):.2f} deg ({len(sds)} patients)"
    )


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    labels = json.loads((folder / "labels.json").read_text())
    names = {int(k): v for k, v in labels["mask_values"].items()}
    spacing = tuple(float(s) for s in labels["pixel_spacing_mm"])
    entries = json.loads((folder / "slices.json").read_text())
    slices = [(e, load_slice(folder, e, names)) for e in entries]
    start = time.perf_counter()
    results = [
        (e, measure_lateral(v, pixel_spacing_mm=(spacing[0], spacing[1]), anterior="auto"))
        for e, v in slices
    ]
    seconds = time.perf_counter() - start
    report(results, seconds)
    for hinted in (True, False):
        arr = np.asarray([d for _, v in slices for d in ellipse_angle_diffs(v, hinted)])
        how = "column-direction start" if hinted else "PCA start"
        print(
            f"endplate angle ({how}) vs moment-ellipse axis over {arr.size} bodies: mean |diff| "
            f"{arr.mean():.2f} deg, median {np.median(arr):.2f}, "
            f"95th pct {np.percentile(arr, 95):.2f}"
        )


if __name__ == "__main__":
    main()
