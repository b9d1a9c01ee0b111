"""GPU readiness check (run through ``benchmarks/gpu_check.sh``); one markdown table.

Rows: bf16-autocast training and inference images/s of ``maskrcnn_r50_fpn`` at
256x256 and ``landmarks_r18`` at 1024x512 (synthetic 17-vertebra spines, batch 8,
median of timed steps after warm-up), a one-process collective (NCCL on GPU, gloo
on CPU), a ``torchrun --nproc-per-node 1 -m spinekit train`` run on a tiny
generated AASCE-layout set, and the landmark GPU recipe's test SMAPE through
``benchmarks/bench_landmarks.py`` under ``--recipe-min`` minutes of training.
``--dry-run``: CPU, tiny sizes, 1-2 steps, gloo, a few seconds per row.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from spinekit.engine.loop import autocast, autocast_dtype
from spinekit.geometry import rasterize
from spinekit.models.registry import build_model

HERE = Path(__file__).resolve().parent
Row = tuple[str, str, str]


def spine(height: int, width: int, seed: int) -> np.ndarray:
    """``(17, 4, 2)`` corners (TL, TR, BL, BR) down a gentle curve."""
    rng = np.random.default_rng(seed)
    step, out = 0.8 * height / 17, []
    for k in range(17):
        cy = 0.1 * height + (k + 0.5) * step
        cx = width / 2 + 0.12 * width * np.sin(k / 17 * np.pi + rng.uniform(-0.3, 0.3))
        half_w, half_h = 0.18 * width, 0.35 * step
        local = np.array([[-half_w, -half_h], [half_w, -half_h], [-half_w, half_h], [half_w, half_h]])
        out.append(local + np.array([cx, cy]))
    return np.array(out)


def synthetic_batch(size: tuple[int, int], batch: int, device: torch.device) -> tuple[
        list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Images with bright vertebrae and full targets (boxes, labels, masks, corners)."""
    h, w = size
    images, targets = [], []
    for seed in range(batch):
        corners = spine(h, w, seed)
        masks = np.stack([rasterize([q[[0, 1, 3, 2]]], h, w) for q in corners])
        image = torch.full((1, h, w), 0.1) + 0.7 * torch.from_numpy(masks.max(axis=0)).float()[None]
        boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
        images.append(image.to(device))
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32, device=device),
                        "labels": torch.ones(17, dtype=torch.int64, device=device),
                        "masks": torch.from_numpy(masks).to(device),
                        "corners": torch.tensor(corners, dtype=torch.float32, device=device)})
    return images, targets


def _timed(fn: Callable[[], None], steps: int, device: torch.device, warmup: bool = True) -> float:
    """Median seconds of ``steps`` calls after one warm-up call (none when ``warmup`` is false)."""
    if warmup:
        fn()
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def throughput(name: str, size: tuple[int, int], batch: int, steps: int, device: torch.device) -> list[Row]:
    """Training and inference images/s of ``name`` under bf16 autocast (full precision on CPU)."""
    model = build_model(name, num_classes=1, image_size=max(size)).to(device)
    amp = autocast_dtype("auto", device)
    images, targets = synthetic_batch(size, batch, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step() -> None:
        model.train()
        with autocast(device, amp):
            loss = sum(model(images, targets).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def infer_step() -> None:
        model.eval()
        with torch.no_grad(), autocast(device, amp):
            model(images)

    precision = "bf16 autocast" if amp is not None else "fp32"
    setting = f"{size[0]}x{size[1]}, batch {batch}, {precision}, {device.type}"
    warm = device.type == "cuda"  # the CPU dry run only shows that a step runs
    return [(f"train {name}", setting, f"{batch / _timed(train_step, steps, device, warm):.1f} img/s"),
            (f"inference {name}", setting, f"{batch / _timed(infer_step, steps, device, warm):.1f} img/s")]


def collective(device: torch.device) -> Row:
    """One-process all_reduce through ``init_process_group`` (NCCL on GPU, gloo on CPU)."""
    import torch.distributed as dist

    backend = "nccl" if device.type == "cuda" else "gloo"
    start = time.perf_counter()
    dist.init_process_group(backend, init_method="tcp://127.0.0.1:29531", rank=0, world_size=1)
    try:
        tensor = torch.ones(1024, device=device)
        dist.all_reduce(tensor)
        ok = float(tensor.sum()) == 1024.0
    finally:
        dist.destroy_process_group()
    seconds = time.perf_counter() - start
    return (f"{backend} all_reduce", "1 process", f"{'ok' if ok else 'WRONG'} ({seconds:.1f} s)")


def tiny_aasce(folder: Path, count: int = 10, size: tuple[int, int] = (256, 96)) -> Path:
    """An AASCE-layout folder (images, filenames.csv, landmarks.csv, angles.csv)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    names, rows = [], []
    h, w = size
    for k in range(count):
        corners = spine(h, w, k)
        masks = np.stack([rasterize([q[[0, 1, 3, 2]]], h, w) for q in corners]).max(axis=0)
        name = f"gen-{k:02d} A AP.jpg"
        noise = np.random.default_rng(k).integers(0, 50, size=(h, w))  # distinct images, no duplicates
        Image.fromarray((30 + 170 * masks + noise).astype(np.uint8)).save(folder / "images" / name)
        names.append(name)
        flat = corners.reshape(68, 2) / [w, h]
        rows.append(np.concatenate([flat[:, 0], flat[:, 1]]))
    (folder / "filenames.csv").write_text("".join(f"{n}\n" for n in names))
    np.savetxt(folder / "landmarks.csv", np.array(rows), delimiter=",")
    np.savetxt(folder / "angles.csv", np.full((count, 3), 10.0), delimiter=",")
    return folder


def _run(command: list[str], timeout: float) -> tuple[bool, float, str]:
    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "src"), OMP_NUM_THREADS="1")
    start = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return False, time.perf_counter() - start, f"timed out after {timeout:.0f} s"
    tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or [""]
    return done.returncode == 0, time.perf_counter() - start, tail[0][-200:]


def prepare_tiny(work: Path) -> tuple[Path, Path]:
    """The generated AASCE-layout folder and its ingested, split dataset (where the dry-run
    recipe's bench_landmarks.py finds it, so it does not ingest again)."""
    src, ds = tiny_aasce(work / "tiny-src"), work / "recipe-dry" / "ds"
    if not (ds / "splits.json").is_file():
        from spinekit.data.ingest import IngestOptions, ingest
        from spinekit.data.splits import SplitConfig, make_splits

        ingest(src, ds, IngestOptions(format="aasce"))
        make_splits(ds, SplitConfig(test_fraction=0.2, folds=5, seed=0))
    return src, ds


def torchrun_smoke(ds: Path, work: Path, device: torch.device, size: tuple[int, int]) -> Row:
    """``torchrun --nproc-per-node 1 -m spinekit train`` for 2 steps; the engine's own launch path."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1",
               "--master-port", "29533", "-m", "spinekit", "train", str(ds), "--out", str(work / "ddp-run"),
               "--model", "landmarks_r18", "--device", device.type,
               "--set", f"data.size=[{size[0]},{size[1]}]",
               "--set", "data.keep_aspect=true", "--set", "train.max_steps=2", "--set", "train.batch_size=2",
               "--set", "data.workers=0", "--set", "data.val_part=none", "--set", "train.threads=1"]
    ok, seconds, tail = _run(command, timeout=180)
    last = work / "ddp-run" / "checkpoints" / "last.pt"
    result = "ok" if ok and last.is_file() else f"FAILED: {tail}"
    return ("torchrun 1 process, spinekit train", f"landmarks_r18 2 steps, {device.type}",
            f"{result} ({seconds:.0f} s; WORLD_SIZE=1: no process group, see the all_reduce row)")


def recipe(args: argparse.Namespace, tiny_src: Path) -> Row:
    """The landmark recipe through bench_landmarks.py; its test SMAPE (corner and mask paths)."""
    work = args.work / ("recipe-dry" if args.dry_run else "recipe")
    if args.dry_run:
        extra = ["--data", str(tiny_src), "--budget-min", "0.5", "--max-steps", "2", "--size", "64", "32",
                 "--device", "cpu", "--threads", "1", "--workers", "0", "--batch-size", "2"]
        setting = "dry run: tiny generated set, 2 steps, 64x32"
    else:
        extra = ["--data", str(args.data), "--budget-min", str(args.recipe_min), "--size", "1024", "512",
                 "--device", "cuda", "--threads", "8", "--workers", "8", "--batch-size", "8", "--augment"]
        setting = f"1024x512, batch 8, lr 1e-3, augmentation, {args.recipe_min:g} min training"
    command = [sys.executable, str(HERE / "bench_landmarks.py"), "--work", str(work),
               "--models", "landmarks_r18", *extra]
    ok, seconds, tail = _run(command, timeout=60 * args.recipe_min + 240)
    results = work / "results.json"
    if not ok or not results.is_file():
        return ("landmark recipe SMAPE", setting, f"FAILED: {tail}")
    paths = json.loads(results.read_text())[0]["paths"]
    text = ", ".join(f"{k} {v['smape']:.2f} %" for k, v in paths.items())
    return ("landmark recipe SMAPE (test part)", setting, f"{text} ({seconds:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, 1-2 steps, gloo")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/aasce"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu_check"))
    parser.add_argument("--recipe-min", type=float, default=3.0, help="landmark recipe training minutes")
    args = parser.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA GPU visible; use --dry-run on a CPU machine")
    if not args.dry_run and not (args.data / "landmarks.csv").is_file():
        sys.exit(f"gpu_check: {args.data}: not an AASCE folder (no landmarks.csv); pass --data")
    args.work.mkdir(parents=True, exist_ok=True)
    device = torch.device("cpu" if args.dry_run else "cuda")
    torch.manual_seed(0)
    big = not args.dry_run
    rows: list[Row] = []
    batch, steps = (8, 10) if big else (1, 1)
    rows += throughput("maskrcnn_r50_fpn", (256, 256) if big else (64, 64), batch, steps, device)
    rows += throughput("landmarks_r18", (1024, 512) if big else (64, 32), batch, steps, device)
    rows.append(collective(device))
    tiny_src, tiny_ds = prepare_tiny(args.work)
    rows.append(torchrun_smoke(tiny_ds, args.work, device, (256, 128) if big else (64, 32)))
    rows.append(recipe(args, tiny_src))
    print("\n| check | setting | result |\n| --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
