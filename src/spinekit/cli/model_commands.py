"""CLI commands for training, evaluation, prediction and the report (registered in main)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from spinekit.cli.progress import check_options, console, out_console, user_errors
from spinekit.data.splits import Part
from spinekit.engine.hooks import Hook, LoopState
from spinekit.errors import UsageError


class RichTrainHook(Hook):
    """A rich progress bar over optimiser steps with losses, speed and ETA."""

    def __init__(self) -> None:
        self.bar = Progress(TextColumn("[bold]train[/bold] epoch {task.fields[epoch]}"), BarColumn(),
                            MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TextColumn("eta"),
                            TimeRemainingColumn(), console=console, disable=not console.is_terminal)
        self.task = self.bar.add_task("train", total=None, epoch=0, info="")

    def before_train(self, state: LoopState) -> None:
        self.bar.start()
        self.bar.update(self.task, total=state.total_steps, completed=state.step, epoch=state.epoch)

    def after_step(self, state: LoopState, values: dict[str, float]) -> None:
        part = ("mask", "loss_mask") if "loss_mask" in values else ("dice", "loss_dice")
        info = (f"loss {values['loss']:.3f} {part[0]} {values.get(part[1], float('nan')):.3f} "
                f"lr {values['lr']:.1e} {values['images_per_s']:.1f} img/s")
        self.bar.update(self.task, completed=state.step, epoch=state.epoch, info=info)

    def after_epoch(self, state: LoopState, values: dict[str, float]) -> None:
        if "val_segm_AP" in values:
            console.print(f"epoch {state.epoch}: val segm AP {values['val_segm_AP']:.3f} "
                          f"AP50 {values.get('val_segm_AP50', -1):.3f}, bbox AP50 "
                          f"{values.get('val_bbox_AP50', -1):.3f}", highlight=False)

    def after_train(self, state: LoopState) -> None:
        self.bar.stop()


def train(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (ingested, split).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to write.")],
    model: Annotated[str | None, typer.Option(help="Model name (see `spinekit models`).")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config file.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override: section.key=value.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from RUN/checkpoints/last.pt.")] = False,
) -> None:
    """Train a model on a dataset split; checkpoints, log and config go into the run folder."""
    from spinekit.engine.config import load_config
    from spinekit.engine.train import fit

    with user_errors():
        overrides = list(set_ or [])
        overrides += [f"model.name={model}"] if model else []
        overrides += [f"train.device={device}"] if device else []
        if resume and config is None and (out / "config.yaml").exists():
            config = out / "config.yaml"
        cfg = load_config(config, overrides)
        result = fit(dataset, out, cfg, resume=resume, hooks=[RichTrainHook()])
    best = result.best_metrics
    summary = f"trained {result.state.step} steps in {result.seconds:.0f} s"
    if best:
        summary += (f"; best validation segm AP {best['segm']['AP']:.3f} / AP50 {best['segm']['AP50']:.3f}"
                    f" (epoch {result.state.best_epoch})")
    out_console.print(f"{summary}. Run: {out}")


def models() -> None:
    """List the models of the model table."""
    from spinekit.models.registry import MODELS

    for name, spec in MODELS.items():
        out_console.print(f"{name:20s} {spec.kind:9s} {spec.summary}", highlight=False)




def _joint(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise UsageError(f"--joint-rule expects PRIMARY,REQUIRED (e.g. F,E), got {text!r}")
    return parts[0], parts[1]


def evaluate(
    run: Annotated[Path | None, typer.Argument(help="Run folder (omit with --predictions).")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Dataset folder (default: the run's).")] = None,
    split: Annotated[str, typer.Option(help="test, val, train, trainval or all.")] = "test",
    predictions: Annotated[Path | None, typer.Option(help="Evaluate a COCO results file instead.")] = None,
    fold: Annotated[int, typer.Option(help="Fold for val/train with --predictions.")] = 0,
    score_threshold: Annotated[float | None, typer.Option(help="Image-level decision threshold.")] = None,
    joint_rule: Annotated[str | None, typer.Option(
        help="PRIMARY,REQUIRED: trust PRIMARY detections only where REQUIRED is found (e.g. F,E).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    checkpoint: Annotated[str, typer.Option(help="best or last.")] = "best",
    tta: Annotated[str | None, typer.Option(
        help="Test-time augmentation: none or flip (landmark models; default the run's eval.tta).")] = None,
) -> None:
    """COCO AP (bbox, segm), per class and image-level results -> metrics.json."""
    from spinekit.engine.evaluate import evaluate_predictions, evaluate_run

    with user_errors():
        check_options(score_threshold=(score_threshold, "eval.score_threshold"), fold=(fold, "data.fold"))
        if split not in ("test", "val", "train", "trainval", "all"):
            raise UsageError(f"unknown split {split!r}")
        rule = _joint(joint_rule)
        part = cast(Part, split)
        if predictions is not None:
            if data is None:
                raise UsageError("--predictions needs --data DATASET")
            threshold = 0.5 if score_threshold is None else score_threshold
            metrics = evaluate_predictions(predictions, data, split=part, fold=fold,
                                           score_threshold=threshold, joint_rule=rule)
            where = predictions.with_name("metrics.json")
        elif run is not None:
            metrics = evaluate_run(run, dataset=data, split=part, device=device, which=checkpoint,
                                   score_threshold=score_threshold, joint_rule=rule, tta=tta)
            where = run / "metrics.json"
        else:
            raise UsageError("give a RUN folder or --predictions PRED.json")
    _print_metrics(metrics)
    out_console.print(f"metrics: {where}")


def _print_metrics(metrics: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"{metrics.get('split', '')}: {metrics.get('images', '?')} images "
                        f"({metrics.get('negative_images', 0)} negative)")
    columns = ("AP", "AP50", "AP75", "APs", "APm", "APl")
    table.add_column("")
    for column in columns:
        table.add_column(column, justify="right")
    for kind in ("bbox", "segm"):
        if isinstance(metrics.get(kind), dict):
            table.add_row(kind, *(_pct(metrics[kind].get(c, -1)) for c in columns))
        elif kind in metrics:
            table.add_row(f"{kind}: no masks", *("n/a" for _ in columns))
    for name, values in metrics.get("per_class", {}).items():
        table.add_row(f"  {name} (segm)", _pct(values.get("segm_AP", -1)), _pct(values.get("segm_AP50", -1)),
                      "", "", "", "")
    out_console.print(table)
    if isinstance(metrics.get("landmarks"), dict):
        _print_landmarks(metrics["landmarks"])


def _num(value: Any, fmt: str = ".1f") -> str:
    return "n/a" if value is None else format(value, fmt)


def _print_landmarks(lm: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"landmarks: {lm.get('vertebrae', 0)} vertebrae, {lm.get('matched', 0)} matched")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("corner error (px)", _num(lm.get("corner_error_px")))
    table.add_row("corner error (% height)", _num(lm.get("corner_error_pct_height"), ".2f"))
    for px, share in (lm.get("within_px") or {}).items():
        table.add_row(f"corners within {px} px (%)", _num(None if share is None else 100 * share))
    rate = lm.get("detection_rate")
    table.add_row("detection rate (%)", _num(None if rate is None else 100 * rate))
    cobb = lm.get("cobb")
    if isinstance(cobb, dict):
        table.add_row(f"Cobb SMAPE (%, {cobb.get('images')} images)", _num(cobb.get("smape_pct"), ".2f"))
        for column, mae in (cobb.get("mae_deg") or {}).items():
            table.add_row(f"{column} MAE (deg)", _num(mae, ".2f"))
    out_console.print(table)


def _pct(value: float) -> str:
    return "n/a" if value is None or value < 0 else f"{100 * value:.1f}"


def predict(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    inputs: Annotated[list[Path], typer.Argument(help="Image files, folders or DICOM files.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    fmt: Annotated[str, typer.Option("--format",
                                     help="Comma list of coco, labelme, overlay.")] = "coco,labelme",
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 8,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    score_threshold: Annotated[float, typer.Option(help="Minimum score for LabelMe/overlay shapes.")] = 0.5,
    checkpoint: Annotated[str, typer.Option(help="best or last.")] = "best",
    tta: Annotated[str | None, typer.Option(
        help="Test-time augmentation: none or flip (landmark models; default the run's eval.tta).")] = None,
) -> None:
    """Predict images with a trained run: COCO results, LabelMe pre-annotations, overlays."""
    from spinekit.cli.progress import progress_bar
    from spinekit.engine.predict import predict as run_predict

    with user_errors():
        check_options(score_threshold=(score_threshold, "eval.score_threshold"),
                      batch_size=(batch_size, "train.batch_size"))
        formats = [f.strip() for f in fmt.split(",") if f.strip()]
        with progress_bar("predict") as progress:
            report = run_predict(run, inputs, out, formats=formats, batch_size=batch_size, device=device,
                                 score_threshold=score_threshold, which=checkpoint, tta=tta,
                                 progress=lambda done, _total: progress(done, done))
    for line in report.skipped[:20]:
        console.print(f"skipped {line}", markup=False, highlight=False, soft_wrap=True)
    out_console.print(f"{report.images} images, {report.detections} detections -> {out}")


def report(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    data: Annotated[Path | None, typer.Option("--data", help="Dataset folder (default: the run's).")] = None,
    max_overlays: Annotated[int, typer.Option(help="Overlay pictures in the grid.")] = 24,
) -> None:
    """Write RUN/report.html: config, curves, metrics, per-class AP, worst cases first."""
    from spinekit.reports.html import build_report

    with user_errors():
        check_options(max_overlays=(max_overlays, "option.size"))
        path = build_report(run, dataset=data, max_overlays=max_overlays)
    out_console.print(f"report: {path}")
