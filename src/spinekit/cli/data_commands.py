"""CLI commands for de-identification, the phantom and the demo (registered in main)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spinekit.cli.progress import check_options, console, out_console, progress_bar, step_bars, user_errors
from spinekit.errors import UsageError


def _parse_box(text: str) -> tuple[int, int, int, int]:
    try:
        parts = [int(v) for v in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 4 or min(parts) < 0:
        raise UsageError(f"--box needs four whole numbers >= 0, x0,y0,x1,y1, got {text!r}")
    return parts[0], parts[1], parts[2], parts[3]


def _modalities(text: str) -> tuple[str, ...]:
    """``--text-modalities``: DICOM modality codes (2-16 letters/digits) or ``all``."""
    codes = tuple(m.strip().upper() for m in text.split(",") if m.strip())
    if not codes or not all(m.isalnum() and len(m) <= 16 for m in codes):
        raise UsageError(f"--text-modalities needs modality codes like US,CR,DX or 'all', got {text!r}")
    return codes


def deidentify(
    src: Annotated[Path, typer.Argument(help="DICOM/PNG/JPEG file or folder (walked recursively).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (must be outside SRC).")],
    salt: Annotated[str, typer.Option(envvar="SPINEKIT_SALT",
                                      help="Secret key of pseudonyms and UID remapping.")],
    header_fraction: Annotated[float, typer.Option(
        help="Blank this top share of every frame (burned-in header band), e.g. 0.08.")] = 0.0,
    box: Annotated[list[str] | None, typer.Option(
        help="Blank box x0,y0,x1,y1 in every frame (repeatable).")] = None,
    outside_sector: Annotated[bool, typer.Option(
        help="Blank everything outside the ultrasound imaging sector.")] = False,
    keep_private: Annotated[bool, typer.Option(
        help="Keep all private DICOM tags (not the standard's Retain Safe Private option).")] = False,
    text: Annotated[str, typer.Option(
        help="Burned-in text found in pixels: blank (default) or refuse (file not written).")] = "blank",
    text_modalities: Annotated[str, typer.Option(
        help="DICOM modalities whose pixels are checked for burned-in text, comma-separated, or 'all' "
             "(files marked BurnedInAnnotation YES always are).")] = "US",
    retain_dates: Annotated[str, typer.Option(
        help="Dates: remove (Basic Profile), full (113106) or offset (salted per-patient shift, "
             "113107).")] = "remove",
    retain_uids: Annotated[bool, typer.Option(help="Keep UIDs (Retain UIDs Option, 113110).")] = False,
    retain_device_identity: Annotated[bool, typer.Option(
        help="Keep device identity (serial numbers, station; 113109).")] = False,
    retain_institution_identity: Annotated[bool, typer.Option(
        help="Keep institution name/address/department (113112).")] = False,
    retain_patient_characteristics: Annotated[bool, typer.Option(
        help="Keep sex, age, size, weight, ethnic group, smoking/pregnancy status (113108).")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace existing output files.")] = False,
) -> None:
    """De-identify DICOM (PS3.15 Annex E basic profile) and ultrasound PNG/JPEG frames.

    Exits 1 when any file failed (listed in the report; nothing written for it).
    """
    from spinekit.data.deidentify import DEFAULT_REPORT_NAME, DeidConfig, write_report
    from spinekit.data.deidentify import deidentify as run_deidentify

    with user_errors():
        check_options(header_fraction=(header_fraction, "option.fraction"))
        config = DeidConfig(salt=salt, blank_header_fraction=header_fraction,
                            blank_boxes=tuple(_parse_box(b) for b in box or []),
                            blank_outside_sector=outside_sector, keep_private=keep_private,
                            blank_burned_in_for_modalities=_modalities(text_modalities),
                            text_action=text, retain_dates=retain_dates,  # type: ignore[arg-type]
                            retain_uids=retain_uids, retain_device_identity=retain_device_identity,
                            retain_institution_identity=retain_institution_identity,
                            retain_patient_characteristics=retain_patient_characteristics)
        with progress_bar("de-identify") as progress:
            report = run_deidentify(src, out, config, overwrite=overwrite, progress=progress)
        report_path = out / DEFAULT_REPORT_NAME
        write_report(report, report_path)
    for result in report.files:
        if result.status != "ok":
            console.print(f"{result.status}: {result.source}: {result.reason}", markup=False,
                          highlight=False, soft_wrap=True)
    totals = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report.totals.items())
    out_console.print(f"{totals}. Report: {report_path}")
    if report.totals["files_failed"]:
        raise typer.Exit(code=1)


def phantom(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write.")],
    kind: Annotated[str, typer.Option(help="Phantom kind.")] = "ultrasound-facet",
    n: Annotated[int, typer.Option(help="Number of frames.")] = 60,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Write a synthetic data set (LabelMe folders) with known ground truth."""
    from spinekit.data.phantom import make_ultrasound_facet_phantom

    with user_errors():
        if kind != "ultrasound-facet":
            raise UsageError(f"unknown phantom kind {kind!r}; available: ultrasound-facet")
        if n < 1:
            raise UsageError("--n must be at least 1")
        with progress_bar("phantom") as progress:
            make_ultrasound_facet_phantom(out, n=n, seed=seed, progress=progress)
    out_console.print(f"wrote {n} frames to {out}/local (F, E) and {out}/full (F, E, TP, SP); "
                      f"summary in {out}/phantom.json")


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for every demo output.")] = Path(
        "spinekit-demo"),
    n: Annotated[int, typer.Option(help="Phantom frames.")] = 120,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    train: Annotated[bool, typer.Option(help="Train, evaluate, predict and report (else data only).")] = True,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Training override key=value.")] = None,
) -> None:
    """Run the pipeline end to end on the built-in ultrasound phantom."""
    from rich.table import Table

    from spinekit.cli.model_commands import RichTrainHook
    from spinekit.demo import run_demo

    with user_errors(), step_bars() as new_step:
        result = run_demo(out, n=n, seed=seed, train=train, config_overrides=set_ or [],
                          hooks=[RichTrainHook()], step_progress=new_step)
    table = Table(title=f"spinekit demo -> {out}")
    for column in ("step", "seconds", "result"):
        table.add_column(column)
    for step in result.steps:
        details = ", ".join(f"{k}={v}" for k, v in step.items() if k not in ("step", "seconds"))
        table.add_row(step["step"], str(step["seconds"]), details)
    out_console.print(table)
    if result.metrics:
        segm, bbox = result.metrics["segm"], result.metrics["bbox"]
        out_console.print(f"test split: segm AP50 {100 * segm['AP50']:.1f} %, AP {100 * segm['AP']:.1f} %; "
                          f"bbox AP50 {100 * bbox['AP50']:.1f} %")
    out_console.print(f"report: {result.report}" if result.report else f"dataset: {result.dataset}")
