"""``spinekit demo``: the built-in phantom through the whole data path.

phantom -> ingest (local labelling: F, E) -> clean -> split -> training batches.
Training, evaluation, prediction and the report join with the Mask R-CNN issue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from spinekit.data.cleaning import CleaningConfig, clean_dataset, write_cleaning_report
from spinekit.data.ingest import IngestOptions, ingest
from spinekit.data.phantom import make_ultrasound_facet_phantom
from spinekit.data.splits import SplitConfig, make_splits
from spinekit.data.torch_dataset import DatasetConfig, SpineDataset, collate
from spinekit.errors import InputError

log = logging.getLogger(__name__)
PHANTOM_PATIENT_PATTERN = r"^(P\d+)_"
StepHook = Callable[[str], Callable[[int, int], None] | None]


@dataclass
class DemoResult:
    """Paths and numbers of one demo run."""

    out: Path
    dataset: Path
    steps: list[dict[str, Any]] = field(default_factory=list)

    def add(self, step: str, seconds: float, **values: Any) -> None:
        """Record one finished step."""
        self.steps.append({"step": step, "seconds": round(seconds, 2), **values})


def run_demo(out: str | Path = "spinekit-demo", *, n: int = 60, seed: int = 0,
             step_progress: StepHook | None = None) -> DemoResult:
    """Run the demo into ``out`` (created; an earlier demo there is replaced)."""
    out_path = Path(out)
    if out_path.exists() and any(out_path.iterdir()) and not (out_path / "demo.json").exists():
        raise InputError(out_path, "exists and is not a spinekit demo folder; choose another --out")
    hook = step_progress or (lambda _name: None)
    result = DemoResult(out=out_path, dataset=out_path / "dataset")
    start = time.perf_counter()
    summary = make_ultrasound_facet_phantom(out_path / "phantom", n=n, seed=seed, progress=hook("phantom"))
    result.add("phantom", time.perf_counter() - start, frames=n, folder=str(out_path / "phantom"))
    _ = summary
    start = time.perf_counter()
    report = ingest(out_path / "phantom" / "local", result.dataset,
                    IngestOptions(format="labelme", patient_pattern=PHANTOM_PATIENT_PATTERN, overwrite=True),
                    progress=hook("ingest"))
    result.add("ingest", time.perf_counter() - start, images=report.images, instances=report.annotations,
               negatives=report.negatives)
    start = time.perf_counter()
    cleaning = clean_dataset(result.dataset, CleaningConfig(), progress=hook("clean"))
    write_cleaning_report(cleaning, result.dataset)
    summary_counts = cleaning.to_dict()["summary"]
    result.add("clean", time.perf_counter() - start, **summary_counts)
    start = time.perf_counter()
    splits = make_splits(result.dataset, SplitConfig(test_fraction=0.2, folds=5, seed=seed))
    result.add("split", time.perf_counter() - start,
               test_images=len(splits["test"]), folds=len(splits["folds"]))
    start = time.perf_counter()
    batches = _load_batches(result.dataset)
    result.add("load", time.perf_counter() - start, **batches)
    from spinekit.io.atomic import atomic_write_json

    atomic_write_json(out_path / "demo.json", {"steps": result.steps})
    return result


def _load_batches(dataset: Path) -> dict[str, Any]:
    """One pass over the training part of fold 0 with flips, as training will do."""
    train = SpineDataset(dataset, part="train", fold=0, config=DatasetConfig(flip_prob=0.5))
    loader = torch.utils.data.DataLoader(train, batch_size=8, shuffle=True, collate_fn=collate)
    images = instances = 0
    for batch_images, targets in loader:
        images += len(batch_images)
        instances += sum(int(t["labels"].numel()) for t in targets)
    return {"train_images": images, "train_instances": instances,
            "input": f"{train.config.size[0]}x{train.config.size[1]}"}
