"""``spinekit compare``: the whole comparison study, from folds to report.

``run_study(spec, out)`` trains every arm on every fold (:mod:`spinekit.study.folds`),
then writes into ``out``:

- ``per_image.csv``: one row per arm (column ``model``), fold and test image, every
  per-image metric (:mod:`spinekit.evaluation.per_image`);
- ``folds.csv``: one row per arm and fold: COCO bbox/segm AP, AP50, AP75 on the test
  set, set-level pixel metrics and recognition rates, training time;
- ``summary.csv`` / ``summary.md``: mean and SD per arm (:mod:`spinekit.study.tables`);
- ``statistics.md``: normality, between-arm and post hoc tests on the per-image values,
  and paired tests across folds on the fold-level values
  (:mod:`spinekit.evaluation.statistics`);
- ``plots/``: density plots per metric and fold plots;
- ``report.html``: tables, plots and worst-case overlays per arm.

Every file is written atomically; ``study.json`` makes the folder resumable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from spinekit.engine.hooks import Hook
from spinekit.errors import UsageError
from spinekit.io.atomic import atomic_write_text
from spinekit.study.folds import fold_config, prepare_splits, read_per_image, run_fold, shared_classes
from spinekit.study.spec import Arm, StudySpec, open_study, write_study
from spinekit.study.tables import write_outputs

log = logging.getLogger(__name__)

HookFactory = Callable[[str, int], Sequence[Hook]]
FoldProgress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class StudyResult:
    """What :func:`run_study` produced: the study folder, its tables and output files."""

    out: Path
    per_image: pd.DataFrame
    folds: pd.DataFrame
    files: list[Path]


def _arms_of(entries: list[dict[str, Any]]) -> list[Arm]:
    return [Arm(str(e["label"]), Path(e["dataset"]), tuple(e.get("overrides") or ())) for e in entries]


def _included(arm: Arm, spec: StudySpec, folder: Path) -> bool:
    """Arms asked for now, and arms of earlier runs of this study with every fold finished."""
    if arm.label in {a.label for a in spec.arms}:
        return True
    finished = all((folder / "runs" / arm.label / f"fold{k}" / "fold_result.json").exists()
                   for k in range(spec.folds))
    if not finished:
        log.info("arm %s of an earlier run is unfinished and not asked for now: left out", arm.label)
    return finished


def _check_spec(spec: StudySpec) -> None:
    if not spec.arms:
        raise UsageError("nothing to compare: give --models, --ablation or --datasets")
    if spec.folds < 2:
        raise UsageError(f"--folds must be >= 2, got {spec.folds}")
    labels = [arm.label for arm in spec.arms]
    if len(set(labels)) != len(labels):
        raise UsageError(f"arm labels must differ, got {labels}")


def run_study(spec: StudySpec, out: str | Path, *, hooks: HookFactory | None = None,
              progress: FoldProgress | None = None) -> StudyResult:
    """Run (or resume) the study ``spec`` into ``out`` and write all outputs.

    ``hooks(arm, fold)`` gives training hooks per fold (e.g. a progress bar);
    ``progress(done, total, label)`` is called as folds finish.
    """
    _check_spec(spec)
    folder = Path(out)
    entries = open_study(folder, spec, write=False)
    arms = _arms_of(entries)
    splits = prepare_splits(spec, arms, folder)  # raises for too few patients before anything is kept
    for arm in arms:  # bad settings fail here, before anything is trained
        fold_config(spec, arm, 0, splits[arm.label])
    write_study(folder, spec, entries)
    classes = shared_classes(arms) if spec.mode == "datasets" else None
    arms = [arm for arm in arms if _included(arm, spec, folder)]
    total, done = len(arms) * spec.folds, 0
    fold_rows, tables = [], []
    for arm in arms:
        for fold in range(spec.folds):
            if progress:
                progress(done, total, f"{arm.label} fold {fold}")
            result = run_fold(spec, arm, fold, out=folder, splits_file=splits[arm.label], classes=classes,
                              hooks=hooks(arm.label, fold) if hooks else ())
            fold_rows.append({k: v for k, v in result.items() if not isinstance(v, dict)})
            tables.append(read_per_image(folder, arm.label, fold))
            done += 1
    if progress:
        progress(done, total, "statistics and report")
    per_image = pd.concat(tables, ignore_index=True)
    folds = pd.DataFrame(fold_rows)
    atomic_write_text(folder / "per_image.csv", per_image.to_csv(index=False))
    atomic_write_text(folder / "folds.csv", folds.to_csv(index=False))
    datasets = {arm.label: arm.dataset for arm in arms if arm.label in set(folds["model"])}
    files = write_outputs(folder, per_image, folds, spec, datasets)
    return StudyResult(folder, per_image, folds, [folder / "per_image.csv", folder / "folds.csv", *files])
