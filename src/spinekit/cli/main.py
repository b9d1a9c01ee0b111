"""``spinekit`` console script: one subcommand per pipeline step."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from typer.core import TyperGroup

from spinekit.cli import data_commands, measure_command, model_commands, study_command
from spinekit.cli.progress import (
    check_options,
    check_regex,
    console,
    out_console,
    progress_bar,
    setup_logging,
    user_errors,
)
from spinekit.errors import UsageError


class _Group(TyperGroup):
    """Runs every command inside :func:`~spinekit.cli.progress.user_errors` (one error mechanism)."""

    def invoke(self, ctx: Any) -> Any:
        with user_errors():
            return super().invoke(ctx)


app = typer.Typer(
    cls=_Group,
    name="spinekit",
    help="Deep-learning spine image analysis: ingest, clean, split, de-identify, train, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    debug: Annotated[bool, typer.Option(
        "--debug", help="Full tracebacks (else one line per error; exit 2 bad input, 1 bug).")] = False,
) -> None:
    """spinekit command-line interface."""
    setup_logging(verbose, debug)


def _table(title: str, rows: list[tuple[str, object]]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for key, value in rows:
        table.add_row(key, str(value))
    return table


@app.command()
def ingest(
    src: Annotated[Path, typer.Argument(help="Source file or folder.")],
    fmt: Annotated[str, typer.Option("--format", "-f",
                                     help="labelme, via, coco, aasce, masks or images.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to write.")],
    classes: Annotated[str | None, typer.Option(
        help="Class remapping: 'F=facet,E=ventral' renames, 'X' keeps, 'X=' drops; "
             "labels not listed are dropped.")] = None,
    patient_pattern: Annotated[str | None, typer.Option(
        help="Regex on file names; its first group is the patient id.")] = None,
    reference: Annotated[bool, typer.Option(
        help="Reference images in place instead of copying them.")] = False,
    frames: Annotated[str, typer.Option(help="DICOM cine frames: 'all' or one index.")] = "all",
    salt: Annotated[str | None, typer.Option(
        envvar="SPINEKIT_SALT", help="Salt of the DICOM PatientID pseudonyms.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset.")] = False,
    label_attribute: Annotated[str | None, typer.Option(
        help="VIA: region attribute that holds the class label.")] = None,
    mapping: Annotated[Path | None, typer.Option(
        help="Masks: JSON mapping mask values to classes/levels (default SRC/labels.json).")] = None,
    min_component_px: Annotated[int, typer.Option(
        help="Masks: drop mask components smaller than this (noted in the report).")] = 20,
    max_megapixels: Annotated[float, typer.Option(help="Refuse images larger than this.")] = 64.0,
    quick: Annotated[bool, typer.Option(
        help="Check image headers only (skip the full decode that catches truncated files).")] = False,
) -> None:
    """Read annotations in any supported format into a spinekit dataset (COCO)."""
    from spinekit.data.ingest import IngestOptions, compile_patient_pattern
    from spinekit.data.ingest import ingest as run_ingest

    with user_errors():
        compile_patient_pattern(patient_pattern)
        check_options(max_megapixels=(max_megapixels, "option.positive"),
                      min_component_px=(min_component_px, "option.size"))
        options = IngestOptions(
            format=fmt, classes=classes, patient_pattern=patient_pattern,
            copy_images=not reference, frames=_frames(frames),
            salt=salt, overwrite=overwrite, label_attribute=label_attribute, mapping=mapping,
            min_component_px=min_component_px, max_pixels=int(max_megapixels * 1_000_000),
            verify_pixels=not quick,
        )
        with progress_bar("ingest") as progress:
            report = run_ingest(src, out, options, progress=progress)
    rows: list[tuple[str, object]] = [
        ("images", report.images), ("instances", report.annotations),
        ("negative images", report.negatives), ("skipped files", len(report.skipped)),
        ("warnings", len(report.warnings)), ("seconds", report.seconds),
    ]
    rows += [(f"class {name}", n) for name, n in report.categories.items()]
    rows += [(f"dropped label {name}", n) for name, n in report.dropped_labels.items()]
    out_console.print(_table(f"ingest {src} -> {out}", rows))
    for what, entries in (("skipped", report.skipped), ("warning", report.warnings)):
        for entry in entries[:20]:
            where = f"{entry['file']}: " if entry["file"] else ""
            console.print(f"{what} {where}{entry['reason']}", highlight=False, markup=False, soft_wrap=True)
        if len(entries) > 20:
            console.print(f"... and {len(entries) - 20} more in {out}/ingest_report.json")


def _frames(text: str) -> str | int:
    if text == "all":
        return "all"
    if not text.strip().isdigit():
        raise UsageError(f"--frames must be 'all' or a frame index (0, 1, ...), got {text!r}")
    return int(text)


@app.command()
def export(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="labelme or coco.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write.")],
) -> None:
    """Write a dataset back as a LabelMe folder or a plain COCO folder."""
    from spinekit.data.export import export_dataset

    with user_errors():
        if fmt not in ("labelme", "coco"):
            raise UsageError(f"unknown export format {fmt!r}; choose labelme or coco")
        with progress_bar("export") as progress:
            count = export_dataset(dataset, out, fmt, progress=progress)  # type: ignore[arg-type]
    out_console.print(f"exported {count} images to {out}")


@app.command()
def split(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder.")],
    test_fraction: Annotated[float, typer.Option(help="Share of images held out for test.")] = 0.2,
    folds: Annotated[int, typer.Option(help="Folds over the rest (>= 2).")] = 5,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    ignore_duplicates: Annotated[bool, typer.Option(
        help="Do not keep duplicate images (same or near-same pixels) in one part.")] = False,
) -> None:
    """Patient-level test set plus K folds -> DATASET/splits.json."""
    from spinekit.data.splits import SplitConfig, make_splits

    with user_errors():
        check_options(test_fraction=(test_fraction, "option.fraction"), seed=(seed, "train.seed"))
        splits = make_splits(dataset, SplitConfig(test_fraction=test_fraction, folds=folds, seed=seed,
                                                  group_duplicates=not ignore_duplicates))
    table = Table(title=f"splits of {dataset} (seed {seed})")
    for column in ("part", "images", "patients", "negatives"):
        table.add_column(column)
    for row in splits["summary"]:
        table.add_row(*(str(row[c]) for c in ("part", "images", "patients", "negatives")))
    out_console.print(table)
    dup = splits["duplicates"]
    if dup["source"] != "off":
        units = dup["merged_units"]
        out_console.print(f"duplicate images ({dup['source'].replace('_', ' ')}): {dup['groups']} groups "
                          f"kept in one part each; {dup['groups_across_patients']} span patients, "
                          f"merging {sum(map(len, units))} patients into {len(units)} split units")


@app.command()
def clean(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder.")],
    exclude: Annotated[str | None, typer.Option(
        help="Comma-separated checks (or groups 'geometry', 'outliers') whose findings are "
             "excluded from training; default: every error-level check.")] = None,
    name_pattern: Annotated[str | None, typer.Option(help="Regex file base names must match.")] = None,
    outlier_z: Annotated[float, typer.Option(help="Robust z-score for outlier findings.")] = 4.0,
    quick: Annotated[bool, typer.Option(help="Read image headers only (no full decode).")] = False,
    show: Annotated[int, typer.Option(help="Findings listed on screen (all are in the report).")] = 15,
) -> None:
    """Check a dataset and write DATASET/cleaning_report.json (nothing is deleted)."""
    from collections import Counter
    from dataclasses import replace

    from spinekit.data.cleaning import CleaningConfig, clean_dataset, write_cleaning_report
    from spinekit.data.cleaning_checks import CHECKS

    with user_errors():
        check_regex("--name-pattern", name_pattern)
        check_options(outlier_z=(outlier_z, "option.positive"), show=(show, "option.size"))
        config = CleaningConfig(outlier_z=outlier_z, verify_pixels=not quick,
                                exclude=tuple(exclude.split(",")) if exclude else None)
        if name_pattern:
            config = replace(config, name_pattern=name_pattern)
        config.exclude_checks()
        with progress_bar("clean") as progress:
            report = clean_dataset(dataset, config, progress=progress)
        path = write_cleaning_report(report, dataset)
    data = report.to_dict()
    table = Table(title=f"cleaning {dataset}")
    for column in ("check", "severity", "findings", "excluded", "meaning"):
        table.add_column(column)
    excluded = set(data["exclude_checks"])
    for check, info in CHECKS.items():
        table.add_row(check, info.severity, str(data["counts"].get(check, 0)),
                      "yes" if check in excluded else "no", info.meaning)
    out_console.print(table)
    shown = sorted((f for f in data["findings"] if f["severity"] != "info"),
                   key=lambda f: f["severity"] != "error")
    for finding in shown[:show]:
        where = finding["file"] + (f" #{finding['annotation_id']}" if finding["annotation_id"] else "")
        console.print(f"{finding['severity']}: {where}: {finding['check']}: {finding['reason']}",
                      markup=False, highlight=False, soft_wrap=True)
    groups = data["duplicate_groups"]
    if groups:
        kinds = Counter(g["kind"] for g in groups)
        out_console.print(f"duplicate images: {len(groups)} groups ({kinds['exact']} exact, "
                          f"{kinds['near']} near), {sum(len(g['patients']) > 1 for g in groups)} "
                          "across patients; `spinekit split` keeps each group in one part")
    summary = data["summary"]
    out_console.print(f"{summary['images']} images, {summary['annotations']} instances, "
                      f"{summary['negatives']} negatives; excluded {summary['excluded_images']} "
                      f"images and {summary['excluded_annotations']} instances. Report: {path}")


app.command()(data_commands.deidentify)
app.command()(data_commands.phantom)
app.command()(data_commands.demo)
app.command()(model_commands.train)
app.command()(model_commands.models)
app.command()(model_commands.evaluate)
app.command()(model_commands.predict)
app.command()(model_commands.report)
app.command(name="measure")(measure_command.measure)
app.command(name="compare")(study_command.compare)
