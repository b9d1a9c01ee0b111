"""CLI commands for training, evaluation, prediction and the report (registered in main)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from spinekit.cli.progress import console, out_console, user_errors
from spinekit.engine.hooks import Hook, LoopState


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
        info = (f"loss {values['loss']:.3f} mask {values.get('loss_mask', 0.0):.3f} "
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


