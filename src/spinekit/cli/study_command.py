"""``spinekit compare``: the model comparison / ablation study (registered in main)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import typer

from spinekit.cli.progress import check_options, console, out_console, user_errors
from spinekit.engine.hooks import Hook
from spinekit.errors import UsageError


def _hooks() -> Callable[[str, int], Sequence[Hook]]:
    from spinekit.cli.model_commands import RichTrainHook

    def make(arm: str, fold: int) -> Sequence[Hook]:
        console.print(f"[bold]{arm}[/bold] fold {fold}: training", highlight=False)
        return [RichTrainHook()]

    return make


def _progress(done: int, total: int, label: str) -> None:
    console.print(f"[{done}/{total} folds done] {label}", highlight=False)


def compare(
    dataset: Annotated[Path | None, typer.Argument(
        help="Dataset folder (ingested; split or not). Not needed with --datasets.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o",
                                      help="Study folder to write (or resume).")] = Path("study"),
    models: Annotated[str | None, typer.Option(
        help="Models to compare, comma-separated (see `spinekit models`).")] = None,
    ablation: Annotated[str | None, typer.Option(
        help="Compare settings instead: key=v1,v2 (e.g. flip=on,off or optim.lr=1e-3,1e-4).")] = None,
    datasets: Annotated[str | None, typer.Option(
        help="Compare datasets instead: label=DIR,label=DIR (same images, different labels).")] = None,
    folds: Annotated[int, typer.Option(help="Number of patient-level folds (K).")] = 5,
    test_fraction: Annotated[float, typer.Option(
        help="Patients held out as the fixed test set when the dataset has no K-fold splits.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the splits; fold k trains with seed + k.")] = 0,
    config: Annotated[Path | None, typer.Option(help="YAML run config shared by every arm.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override: section.key=value.")] = None,
    score_threshold: Annotated[float, typer.Option(
        help="Score above which predictions count for the per-image metrics.")] = 0.5,
    iou_threshold: Annotated[float, typer.Option(
        help="IoU needed to match an expert instance (recognition rates).")] = 0.5,
) -> None:
    """Train every arm on K folds, test each fold model on the fixed test set, compare with statistics."""
    from spinekit.study.compare import run_study
    from spinekit.study.spec import StudySpec, ablation_arms, dataset_arms, model_arms

    with user_errors():
        check_options(score_threshold=(score_threshold, "eval.score_threshold"),
                      iou_threshold=(iou_threshold, "option.fraction"),
                      test_fraction=(test_fraction, "option.fraction"), seed=(seed, "train.seed"))
        chosen = [name for name, value in (("--models", models), ("--ablation", ablation),
                                           ("--datasets", datasets)) if value]
        if len(chosen) != 1:
            raise UsageError("give exactly one of --models, --ablation or --datasets")
        if datasets:
            arms, mode = dataset_arms(datasets), "datasets"
        else:
            if dataset is None:
                raise UsageError("give the DATASET folder")
            arms, mode = (model_arms(dataset, models), "models") if models else (
                ablation_arms(dataset, str(ablation)), "ablation")
        spec = StudySpec(arms=arms, mode=mode, folds=folds, test_fraction=test_fraction, seed=seed,
                         config=config, overrides=tuple(set_ or ()), score_threshold=score_threshold,
                         iou_threshold=iou_threshold)
        result = run_study(spec, out, hooks=_hooks(), progress=_progress)
    out_console.print((out / "summary.md").read_text(encoding="utf-8"), markup=False, highlight=False)
    out_console.print(f"study folder: {result.out} (report.html, statistics.md, per_image.csv)")
