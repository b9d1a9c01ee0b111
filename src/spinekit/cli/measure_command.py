"""``spinekit measure``: Cobb angles, lateral lumbar measurements or ultrasound needle targets
of a dataset into a CSV, optionally with one picture per image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from spinekit.cli.progress import check_options, out_console, progress_bar, user_errors
from spinekit.errors import UsageError


def _summary_text(summary: dict[str, Any], path: Path) -> str:
    parts = [f"{summary['images']} rows written", f"{summary['flagged']} images with flags"]
    columns = summary["columns"]
    if "cobb_1_deg" in columns:
        parts.append(f"mean main Cobb angle {columns['cobb_1_deg']['mean']:.2f} deg")
    if "lordosis_L1_L5_deg" in columns:
        parts.append(f"mean L1-L5 lordosis {columns['lordosis_L1_L5_deg']['mean']:.2f} deg")
    needle = summary.get("needle")
    if needle:
        parts.append(f"needle targets on {needle['targets']} of {needle['images']} images")
        if needle.get("with_error"):
            unit = needle["unit"]
            text = (f"target error mean {needle['mean_error']:.2f} {unit}, median "
                    f"{needle['median_error']:.2f} {unit} ({needle['with_error']} annotated)")
            if needle.get("within_5mm") is not None:
                text += f", within 5 mm {100 * needle['within_5mm']:.0f} %"
            parts.append(text)
    return ", ".join(parts) + f" -> {path}"


def measure(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV file to write.")],
    predictions: Annotated[Path | None, typer.Option(
        help="COCO results JSON (RLE masks) to measure instead of the expert annotations.")] = None,
    view: Annotated[str, typer.Option(
        help="auto, ap (Cobb angles), lateral (lumbar) or ultrasound (facet-joint needle target).")
    ] = "auto",
    split: Annotated[str | None, typer.Option(
        help="Only this part of splits.json: train, val, test, trainval or all.")] = None,
    score_threshold: Annotated[float, typer.Option(help="Minimum score of predicted masks.")] = 0.5,
    overlay: Annotated[Path | None, typer.Option(
        help="Folder for one PNG per image showing what was measured.")] = None,
    workers: Annotated[int, typer.Option(
        min=1, help="Processes measuring images in parallel (same rows for any number).")] = 1,
) -> None:
    """One CSV row per image: view, levels found, flags and every measurement."""
    from spinekit.clinical.measure import VIEWS, measure_images, write_csv
    from spinekit.clinical.summary import summarize

    with user_errors():
        check_options(score_threshold=(score_threshold, "eval.score_threshold"))
        if view not in VIEWS:
            raise UsageError(f"unknown view {view!r}; choose {', '.join(VIEWS)}")
        drawer = None if overlay is None else _Drawer(overlay)
        rows = []
        with progress_bar("measure") as progress:
            for item in measure_images(dataset, predictions=predictions, view=view,  # type: ignore[arg-type]
                                       split=split, score_threshold=score_threshold,
                                       progress=progress, workers=workers):
                rows.append(item.row)
                if drawer is not None:
                    drawer.draw(item)
        path = write_csv(rows, out)
    out_console.print(_summary_text(summarize(rows), path), highlight=False, soft_wrap=True)
    if drawer is not None:
        out_console.print(f"{drawer.written} overlays -> {overlay}"
                          + (f" ({len(drawer.failed)} images unreadable)" if drawer.failed else ""),
                          highlight=False, soft_wrap=True)


class _Drawer:
    """Writes one measurement picture per image into a folder, skipping unreadable images."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.taken: set[str] = set()
        self.written = 0
        self.failed: list[str] = []

    def draw(self, item: Any) -> None:
        """Draw one :class:`~spinekit.clinical.measure.ImageMeasurement`."""
        from spinekit.errors import InputError
        from spinekit.io.images import read_image
        from spinekit.reports.measure_overlay import draw_measurement, overlay_name, save_measurement

        if item.path is None:
            self.failed.append(str(item.image.get("file_name")))
            return
        try:
            pixels = read_image(item.path, frame=int(item.image.get("frame") or 0))
        except InputError as exc:
            self.failed.append(str(exc))
            return
        picture = draw_measurement(pixels, item.geometry, item.row)
        save_measurement(self.folder, overlay_name(str(item.image.get("file_name")), self.taken), picture)
        self.written += 1
