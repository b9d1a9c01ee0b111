"""``spinekit demo``: the built-in phantom end to end.

phantom -> ingest (local labelling: F, E) -> clean -> split -> train (Mask R-CNN,
light variant, from scratch) -> evaluate on the held-out test patients ->
predict (LabelMe pre-annotations + overlays for the test images) -> report.
Sized to run on 2 CPU cores in about 5 minutes; the training step has a time
limit so slower machines still finish (with a lower AP).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spinekit.data.cleaning import CleaningConfig, clean_dataset, write_cleaning_report
from spinekit.data.ingest import IngestOptions, ingest
from spinekit.data.phantom import PATIENT_PATTERN, make_ultrasound_facet_phantom
from spinekit.data.splits import SplitConfig, make_splits
from spinekit.engine.config import Config, load_config
from spinekit.engine.hooks import Hook
from spinekit.errors import InputError
from spinekit.io.atomic import atomic_write_json

log = logging.getLogger(__name__)
StepHook = Callable[[str], Callable[[int, int], None] | None]

DEMO_OVERRIDES = (
    "model.name=maskrcnn_light",
    "data.train_part=trainval",
    "data.val_part=none",
    "data.workers=1",
    "optim.lr=0.001",
    "optim.warmup_steps=30",
    "train.batch_size=4",
    "train.epochs=1000",
    "train.max_steps=200",
    "train.time_limit_s=210",
    "eval.joint_rule=[F,E]",
)
"""Demo training: all non-test patients, AdamW 1e-3 with warm-up and cosine decay,
200 steps or 210 s, whichever comes first (see docs/results.md for the measurements
behind these choices)."""


@dataclass
class DemoResult:
    """Paths and numbers of one demo run."""

    out: Path
    dataset: Path
    run: Path
    steps: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    report: Path | None = None

    def add(self, step: str, seconds: float, **values: Any) -> None:
        """Record one finished step."""
        self.steps.append({"step": step, "seconds": round(seconds, 2), **values})


def demo_config(extra: Sequence[str] = ()) -> Config:
    """The demo's training config (``extra`` are further ``--set`` overrides)."""
    return load_config(None, [*DEMO_OVERRIDES, *extra])


def _check_out(out: Path) -> None:
    if out.exists() and any(out.iterdir()) and not (out / "demo.json").exists():
        raise InputError(out, "exists and is not a spinekit demo folder; choose another --out")


def _data_steps(result: DemoResult, n: int, seed: int, hook: StepHook) -> None:
    start = time.perf_counter()
    make_ultrasound_facet_phantom(result.out / "phantom", n=n, seed=seed, progress=hook("phantom"))
    result.add("phantom", time.perf_counter() - start, frames=n)
    start = time.perf_counter()
    report = ingest(result.out / "phantom" / "local", result.dataset,
                    IngestOptions(format="labelme", patient_pattern=PATIENT_PATTERN, overwrite=True),
                    progress=hook("ingest"))
    result.add("ingest", time.perf_counter() - start, images=report.images,
               instances=report.annotations, negatives=report.negatives)
    start = time.perf_counter()
    cleaning = clean_dataset(result.dataset, CleaningConfig(), progress=hook("clean"))
    write_cleaning_report(cleaning, result.dataset)
    summary = cleaning.to_dict()["summary"]
    result.add("clean", time.perf_counter() - start, excluded=summary["excluded_annotations"])
    start = time.perf_counter()
    splits = make_splits(result.dataset, SplitConfig(test_fraction=0.2, folds=5, seed=seed))
    result.add("split", time.perf_counter() - start, test_images=len(splits["test"]))


def _model_steps(result: DemoResult, config: Config, hooks: Sequence[Hook], hook: StepHook) -> None:
    from spinekit.engine.evaluate import evaluate_run
    from spinekit.engine.predict import predict
    from spinekit.engine.train import fit
    from spinekit.reports.html import build_report

    start = time.perf_counter()
    fitted = fit(result.dataset, result.run, config, resume=False, hooks=hooks)
    result.add("train", time.perf_counter() - start, steps=fitted.state.step,
               stopped=fitted.state.stop_reason or "done")
    start = time.perf_counter()
    result.metrics = evaluate_run(result.run, split="test", device=config.train.device)
    result.add("evaluate", time.perf_counter() - start, segm_AP50=round(result.metrics["segm"]["AP50"], 3),
               bbox_AP50=round(result.metrics["bbox"]["AP50"], 3))
    start = time.perf_counter()
    test_images = _test_image_paths(result.dataset)[:8]
    predicted = predict(result.run, test_images, result.out / "predictions",
                        formats=("coco", "labelme", "overlay"), device=config.train.device)
    result.add("predict", time.perf_counter() - start, images=predicted.images,
               detections=predicted.detections)
    start = time.perf_counter()
    result.report = build_report(result.run, dataset=result.dataset, progress=hook("report"))
    result.add("report", time.perf_counter() - start, file=str(result.report))


def _test_image_paths(dataset: Path) -> list[Path]:
    from spinekit.data.records import load_dataset
    from spinekit.data.splits import load_splits

    records = load_dataset(dataset)
    test = set(load_splits(dataset)["test"])
    return [records.image_path(img) for img in records.images if int(img["id"]) in test]


def run_demo(out: str | Path = "spinekit-demo", *, n: int = 120, seed: int = 0, train: bool = True,
             config_overrides: Sequence[str] = (), hooks: Sequence[Hook] = (),
             step_progress: StepHook | None = None) -> DemoResult:
    """Run the demo into ``out`` (an earlier demo there is replaced)."""
    out_path = Path(out)
    _check_out(out_path)
    result = DemoResult(out=out_path, dataset=out_path / "dataset", run=out_path / "run")
    hook = step_progress or (lambda _name: None)
    _data_steps(result, n, seed, hook)
    if train:
        if (result.run / "checkpoints").exists():
            import shutil

            shutil.rmtree(result.run)
        _model_steps(result, demo_config(config_overrides), hooks, hook)
    atomic_write_json(out_path / "demo.json", {"steps": result.steps, "metrics": result.metrics})
    return result
