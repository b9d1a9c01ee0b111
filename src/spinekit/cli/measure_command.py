"""``spinekit measure``: Cobb angles or lateral lumbar measurements of a dataset into a CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from spinekit.cli.progress import out_console, progress_bar, user_errors


def _mean(rows: list[dict[str, Any]], column: str) -> float | None:
    values = [float(r[column]) for r in rows if r.get(column) is not None]
    return sum(values) / len(values) if values else None


def measure(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV file to write.")],
    predictions: Annotated[Path | None, typer.Option(
        help="COCO results JSON (RLE masks) to measure instead of the expert annotations.")] = None,
    view: Annotated[str, typer.Option(help="auto, ap (Cobb angles) or lateral (lumbar).")] = "auto",
    split: Annotated[str | None, typer.Option(
        help="Only this part of splits.json: train, val, test, trainval or all.")] = None,
    score_threshold: Annotated[float, typer.Option(help="Minimum score of predicted masks.")] = 0.5,
) -> None:
    """One CSV row per image: view, levels found, flags and every measurement."""
    from spinekit.clinical.measure import measure_dataset, write_csv

    with user_errors():
        if view not in ("auto", "ap", "lateral"):
            raise ValueError(f"unknown view {view!r}; choose auto, ap or lateral")
        with progress_bar("measure") as progress:
            rows = measure_dataset(dataset, predictions=predictions, view=view,  # type: ignore[arg-type]
                                   split=split, score_threshold=score_threshold, progress=progress)
        path = write_csv(rows, out)
    flagged = sum(1 for r in rows if r.get("flags"))
    parts = [f"{len(rows)} rows written", f"{flagged} images with flags"]
    cobb = _mean(rows, "cobb_1_deg")
    if cobb is not None:
        parts.append(f"mean main Cobb angle {cobb:.2f} deg")
    lordosis = _mean(rows, "lordosis_L1_L5_deg")
    if lordosis is not None:
        parts.append(f"mean L1-L5 lordosis {lordosis:.2f} deg")
    out_console.print(", ".join(parts) + f" -> {path}", highlight=False, soft_wrap=True)
