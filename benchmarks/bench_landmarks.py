"""AASCE Cobb angles: landmark model vs the Mask R-CNN mask path, same split, same training budget.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_landmarks.py \\
        [--data ../shared/data/aasce] [--work /tmp/bench_landmarks] [--budget-min 60] \\
        [--size 512 256] [--threads 2] [--device auto] [--models landmarks_r18,maskrcnn_light]

1. ``spinekit ingest --format aasce --reference`` into ``WORK/ds`` and a patient-level
   ``spinekit split`` (20 % test, seed 0); both kept when ``WORK/ds`` exists.
2. Each model is trained on the ``train`` part of fold 0 with ``train.time_limit_s`` =
   the budget and no validation (``data.val_part=none``): nothing is chosen on the test
   part, or on anything else; the last checkpoint is evaluated. The cosine schedule's
   length is set from a 3-step probe of the model's step time.
3. On the test part: Cobb angles from the predicted masks exactly as
   ``benchmarks/bench_cobb_end_to_end.py`` measures them (order and label the masks,
   fit corners, AASCE rule) for every model; for landmark models also straight from
   the predicted corners (no mask refit) with the mean corner error against the expert
   corners (source pixels, vertebra k against level k).

Prints one markdown table: SMAPE, MAE per angle column, share of images with exactly
17 vertebrae, corner error, training seconds and steps.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cobb_end_to_end import predicted_angles
from spinekit.clinical.cobb import cobb_angles, smape
from spinekit.clinical.vertebrae import AP_LEVELS
from spinekit.data.torch_dataset import SpineDataset
from spinekit.engine.inference import _batches
from spinekit.engine.loop import predict_batches, select_device
from spinekit.engine.runs import load_run
from spinekit.engine.train import eval_dataset_config
from spinekit.evaluation.results import detections_to_coco
from spinekit.transforms.geometric import ResizePlan

LANDMARK_AUGMENT = ["data.aug_rotate_deg=10", "data.aug_scale=0.1", "data.aug_translate=0.05",
                    "data.aug_brightness=0.1", "data.aug_contrast=0.2", "data.aug_gamma=0.2"]


@dataclass
class Scores:
    """Per-image angles of one measurement path on the test part."""

    pred: list[np.ndarray] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    corner_err: list[float] = field(default_factory=list)


def spinekit(*args: str) -> float:
    """Run ``python -m spinekit ARGS``; returns the wall seconds; exits on failure."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "spinekit", *args], env=env, check=False)
    if done.returncode != 0:
        sys.exit(f"bench_landmarks: spinekit {' '.join(args[:2])} failed (exit {done.returncode})")
    return time.perf_counter() - start


def prepare(data: Path, work: Path) -> Path:
    """Ingest (referenced images) and split by patient once; returns the dataset folder."""
    ds = work / "ds"
    if not (ds / "splits.json").is_file():
        spinekit("ingest", str(data), "--format", "aasce", "--reference", "--out", str(ds), "--overwrite")
        spinekit("split", str(ds), "--test-fraction", "0.2", "--folds", "5", "--seed", "0")
    return ds


def common_sets(args: argparse.Namespace, model: str) -> list[str]:
    sets = [f"data.size=[{args.size[0]},{args.size[1]}]", "data.keep_aspect=true", "data.val_part=none",
            f"data.workers={args.workers}", f"train.threads={args.threads}", f"train.device={args.device}",
            "train.epochs=100000", f"train.batch_size={args.batch_size}", f"optim.lr={args.lr}",
            "train.log_every=1"]
    if model.startswith("landmarks") and args.augment:
        sets += LANDMARK_AUGMENT
    return [item for s in sets for item in ("--set", s)]


def seconds_per_step(ds: Path, run: Path, model: str, sets: list[str]) -> float:
    """Median step time of a 3-step probe run (the first step, with start-up costs, left out)."""
    spinekit("train", str(ds), "--out", str(run), "--model", model, *sets, "--set", "train.max_steps=3")
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    rates = [r["images_per_s"] for r in rows if r.get("kind") == "train" and r.get("images_per_s")]
    batch = int(sets[sets.index(next(s for s in sets if s.startswith("train.batch_size")))].split("=")[1])
    return batch / max(1e-6, float(np.median(rates[1:] or rates)))


def train(args: argparse.Namespace, ds: Path, model: str) -> tuple[Path, float, int]:
    """Probe, then train ``model`` for the budget; returns the run, wall seconds and steps done."""
    sets = common_sets(args, model)
    budget = 60.0 * args.budget_min
    if args.max_steps:
        steps = args.max_steps
    else:
        steps = max(10, int(budget / seconds_per_step(ds, args.work / f"probe-{model}", model, sets)))
    run = args.work / f"run-{model}"
    seconds = spinekit("train", str(ds), "--out", str(run), "--model", model, *sets,
                       "--set", f"train.time_limit_s={budget}", "--set", f"train.max_steps={steps}",
                       "--set", f"optim.warmup_steps={min(50, steps // 10)}")
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    done = max((int(r.get("step", 0)) for r in rows), default=0)
    return run, seconds, done


def expert_corners(anns: list[dict[str, Any]]) -> np.ndarray:
    """``(V, 4, 2)`` expert corners in level order (T1 first)."""
    rank = {name: k for k, name in enumerate(AP_LEVELS)}
    with_corners = sorted((a for a in anns if a.get("corners")),
                          key=lambda a: rank.get(str((a.get("attributes") or {}).get("level")), 99))
    return np.array([a["corners"] for a in with_corners], dtype=np.float64)


def score_run(run: Path, ds: Path, device: str, min_score: float) -> dict[str, Any]:
    """Test-part angles from masks (every model) and from corners (landmark models)."""
    torch_device = select_device(device)
    loaded = load_run(run, which="last", device=torch_device)
    data = SpineDataset(ds, part="test", config=eval_dataset_config(loaded.config))
    anns = data.records.annotations_by_image()
    masks, corners, truth = Scores(), Scores(), []
    flags: Counter[str] = Counter()
    start = time.perf_counter()
    for indices, outputs in predict_batches(loaded.model, _batches(data, 4), device=torch_device,
                                            amp_dtype=None):
        for index, output in zip(indices, outputs, strict=True):
            info = data.image_info(index)
            w, h = int(info["width"]), int(info["height"])
            plan = ResizePlan.make(w, h, data.config.size, data.config.keep_aspect)
            coco = detections_to_coco(output, image_id=int(info["id"]), plan=plan,
                                      orig_width=w, orig_height=h)
            angles, n = predicted_angles(coco, h, min_score, flags)
            masks.pred.append(angles)
            masks.counts.append(n)
            truth.append(info["cobb_angles_deg"])
            if "keypoints" in output:
                _score_corners(output["keypoints"].numpy(), plan, expert_corners(anns[int(info["id"])]),
                               h, corners)
    seconds = time.perf_counter() - start
    table = {"masks": _summary(masks, truth)}
    if corners.pred:
        table["corners"] = _summary(corners, truth)
    return {"paths": table, "infer_s_per_image": seconds / max(1, len(truth)), "flags": dict(flags)}


def _score_corners(keypoints: np.ndarray, plan: ResizePlan, expert: np.ndarray, height: int,
                   out: Scores) -> None:
    found = plan.invert_points(keypoints[:, :, :2].reshape(-1, 2)).reshape(-1, 4, 2)
    out.pred.append(np.array(cobb_angles(found, image_height=height).angles_deg))
    out.counts.append(len(found))
    if len(found) == len(expert):
        out.corner_err.append(float(np.linalg.norm(found - expert, axis=-1).mean()))


def _summary(scores: Scores, truth: list[Any]) -> dict[str, Any]:
    pred, true = np.array(scores.pred), np.array(truth, dtype=np.float64)
    return {"smape": smape(pred, true), "mae": np.abs(pred - true).mean(axis=0).tolist(),
            "n": len(true), "with_17": sum(c == 17 for c in scores.counts),
            "corner_err_px": float(np.mean(scores.corner_err)) if scores.corner_err else None}


def print_table(rows: list[dict[str, Any]], budget_min: float) -> None:
    print(f"\nAASCE test part, training budget {budget_min:g} min per model"
          + (" (SHORT RUN: not the 60-minute result)" if budget_min < 60 else ""))
    print("\n| model | path | SMAPE % | MAE deg (3 columns) | exactly 17 | corner error px "
          "| train s | steps | infer s/img |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        for path, s in row["paths"].items():
            err = "-" if s["corner_err_px"] is None else f"{s['corner_err_px']:.1f}"
            mae = " / ".join(f"{v:.1f}" for v in s["mae"])
            print(f"| {row['model']} | {path} | {s['smape']:.2f} | {mae} "
                  f"| {s['with_17']}/{s['n']} | {err} | {row['train_s']:.0f} | {row['steps']} "
                  f"| {row['infer_s_per_image']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/aasce"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_landmarks"))
    parser.add_argument("--budget-min", type=float, default=60.0, help="training minutes per model")
    parser.add_argument("--models", default="landmarks_r18,maskrcnn_light")
    parser.add_argument("--size", type=int, nargs=2, default=[512, 256], metavar=("H", "W"))
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--augment", action="store_true", help="landmark augmentation (data.aug_*)")
    parser.add_argument("--max-steps", type=int, default=0, help="fixed step count (no probe)")
    parser.add_argument("--mask-min-score", type=float, default=0.5, help="mask path, Mask R-CNN")
    args = parser.parse_args()
    if args.budget_min <= 0:
        parser.error("--budget-min must be > 0")
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    ds = prepare(args.data, args.work)
    rows = []
    for model in args.models.split(","):
        for old in (args.work / f"run-{model}", args.work / f"probe-{model}"):
            if old.exists():
                shutil.rmtree(old)
        run, seconds, steps = train(args, ds, model)
        # landmark models decode exactly the expected count: every vertebra is used
        min_score = 0.0 if model.startswith("landmarks") else args.mask_min_score
        result = score_run(run, ds, args.device, min_score)
        rows.append({"model": model, "train_s": seconds, "steps": steps, **result})
        (args.work / "results.json").write_text(json.dumps(rows, indent=1))
    print_table(rows, args.budget_min)


if __name__ == "__main__":
    main()
