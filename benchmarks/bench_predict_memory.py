"""Memory of ``spinekit predict`` over many images: resident memory must stay flat.

    .venv/bin/python benchmarks/bench_predict_memory.py --run spinekit-demo/run [--images 2000]

Feeds one phantom test frame N times (as N inputs) through the streaming
prediction path with COCO output and prints resident memory (VmRSS) every
10 % of the way, plus images/s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from spinekit.data.records import load_dataset
from spinekit.engine.predict import predict
from spinekit.engine.runs import load_run


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description="spinekit predict memory benchmark")
    parser.add_argument("--run", type=Path, default=Path("spinekit-demo/run"))
    parser.add_argument("--images", type=int, default=2000)
    args = parser.parse_args()
    dataset = load_run(args.run).dataset
    assert dataset is not None
    records = load_dataset(dataset)
    image = records.image_path(records.images[0])
    samples: list[tuple[int, float]] = []
    step = max(1, args.images // 10)

    def progress(done: int, _total: int) -> None:
        if done % step == 0:
            samples.append((done, rss_mb()))

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        report = predict(args.run, [image] * args.images, Path(tmp) / "out", formats=("coco",),
                         progress=progress)
        seconds = time.perf_counter() - start
    print(f"spinekit predict, {report.images} images, {report.detections} detections, "
          f"{report.images / seconds:.1f} img/s")
    print(f"{'images done':>11} | {'RSS MB':>7}")
    for done, rss in samples:
        print(f"{done:>11} | {rss:7.0f}")


if __name__ == "__main__":
    main()
