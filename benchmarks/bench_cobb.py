"""Cobb-angle rule against the AASCE expert angles: agreement and speed.

Usage: ``python benchmarks/bench_cobb.py [AASCE_FOLDER]`` (default ../shared/data/aasce).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from spinekit.clinical.cobb import cobb_angles, cobb_angles_batch, read_aasce_corners, smape

DEFAULT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "aasce"


def best_of(repeats: int, func: Callable[[], object]) -> float:
    """Best wall time in seconds of ``repeats`` calls of ``func``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    start = time.perf_counter()
    data = read_aasce_corners(folder)
    read_s = time.perf_counter() - start
    heights = data.image_sizes[:, 1]
    angles, _, s_flag = cobb_angles_batch(data.corners, image_heights=heights)
    err = np.abs(angles - data.angles).max(axis=1)
    n = len(data.names)
    batch_s = best_of(5, lambda: cobb_angles_batch(data.corners, image_heights=heights))
    loop_s = best_of(3, lambda: [cobb_angles(c, image_height=h)
                                 for c, h in zip(data.corners, heights, strict=True)])
    rows = [
        ("images", f"{n}"),
        ("S-shaped (rule's test)", f"{int(s_flag.sum())}"),
        ("SMAPE vs expert angles", f"{smape(angles, data.angles):.4f} %"),
        ("within 0.01 deg (all 3)", f"{np.mean(err < 0.01):.1%} ({int((err < 0.01).sum())})"),
        ("within 0.1 deg", f"{np.mean(err < 0.1):.1%} ({int((err < 0.1).sum())})"),
        ("within 1 deg", f"{np.mean(err < 1):.1%} ({int((err < 1).sum())})"),
        ("max abs error", f"{err.max():.4f} deg (row {int(err.argmax())})"),
        ("read CSVs + image headers", f"{read_s * 1e3:.1f} ms"),
        ("all spines, batched", f"{batch_s * 1e3:.2f} ms ({n / batch_s:,.0f} spines/s)"),
        ("all spines, one call each", f"{loop_s * 1e3:.1f} ms ({n / loop_s:,.0f} spines/s)"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
