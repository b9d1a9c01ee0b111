"""What each training choice gives on the phantom: one demo-sized run per setting.

    .venv/bin/python benchmarks/ablate_phantom.py [--n 120] [--steps 200] [--only NAME ...]

Runs the demo's data path once (phantom seed 0, ingest, clean, split), then trains
``maskrcnn_light`` from scratch with the demo's settings and one change per row,
evaluating each on the same held-out test patients. Prints segm/bbox AP50 and
AP[.5:.95], image-level specificity on negative frames (with the F,E joint
rule), training time and images/s. Takes ~3.5 minutes per row on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from spinekit.demo import demo_config, run_demo
from spinekit.engine.evaluate import evaluate_run
from spinekit.engine.train import fit

SETTINGS: dict[str, list[str]] = {
    "demo default (GroupNorm, AdamW 1e-3)": [],
    "BatchNorm instead of GroupNorm": ["model.norm=batch"],
    "no normalisation (FrozenBN from scratch)": ["model.norm=frozen_bn"],
    "study learning rate 1e-4": ["optim.lr=0.0001"],
    "no flip augmentation": ["data.flip_prob=0.0"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description="phantom ablation")
    parser.add_argument("--n", type=int, default=120)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--only", nargs="*", default=None, help="substrings of setting names")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        dataset = run_demo(work / "demo", n=args.n, seed=0, train=False).dataset
        for index, (name, overrides) in enumerate(SETTINGS.items()):
            if args.only and not any(part in name for part in args.only):
                continue
            config = demo_config([*overrides, f"train.max_steps={args.steps}", "train.time_limit_s=null"])
            start = time.perf_counter()
            result = fit(dataset, work / f"run{index}", config)
            seconds = time.perf_counter() - start
            metrics = evaluate_run(work / f"run{index}", split="test", device="cpu")
            after = metrics["image_level"]["joint_rule"]["after"]["negatives"]["specificity"]
            rows.append((name, metrics["segm"]["AP50"], metrics["segm"]["AP"], metrics["bbox"]["AP50"],
                         after, seconds, result.state.step * config.train.batch_size / seconds))
            print(f"done: {name}", flush=True)
    print(f"maskrcnn_light on the phantom ({args.n} frames, seed 0), {args.steps} steps, test split")
    print(f"{'setting':<44} | {'segm AP50':>9} | {'segm AP':>7} | {'bbox AP50':>9} | "
          f"{'neg. spec.':>10} | {'train s':>7} | img/s")
    print("-" * 110)
    for name, ap50, ap, bbox50, spec, seconds, rate in rows:
        print(f"{name:<44} | {100 * ap50:9.1f} | {100 * ap:7.1f} | {100 * bbox50:9.1f} | "
              f"{spec:10.2f} | {seconds:7.0f} | {rate:.1f}")


if __name__ == "__main__":
    main()
