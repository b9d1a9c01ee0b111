"""The "Clinical measurements" section of ``spinekit report``.

When a run has predictions for its split and the dataset is measurable (vertebrae with
levels or a ``vertebra`` class, or facet joints; :func:`spinekit.clinical.measure.measurable_view`),
the split's images are measured twice, from the expert annotations and from the
predictions, and the section shows the two summaries side by side (per measured column
count, mean and SD; for ultrasound the needle-target numbers and errors) and up to
:data:`MAX_PICTURES` measurement pictures of images where the predictions gave a value
(:mod:`spinekit.reports.measure_overlay`). Nothing measurable: no section, never an error.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from spinekit.data.records import DatasetRecords, load_dataset
from spinekit.errors import InputError

log = logging.getLogger(__name__)

MAX_PICTURES = 3
"""Measurement pictures shown at most."""

PICTURE_SIDE = 384
"""Longest side of a picture (px)."""

_LABELS = {
    "cobb_1_deg": "Cobb 1 (main curve), deg", "cobb_2_deg": "Cobb 2, deg", "cobb_3_deg": "Cobb 3, deg",
    "lordosis_L1_L5_deg": "lordosis L1-L5, deg", "lordosis_L1_S1_deg": "lordosis L1-S1, deg",
    "body_L1_middle": "L1 body middle height", "body_L3_middle": "L3 body middle height",
    "body_L5_middle": "L5 body middle height", "disc_L1-L2_middle": "L1-L2 disc middle height",
    "disc_L4-L5_middle": "L4-L5 disc middle height",
}


def _split_ids(records: DatasetRecords, split: str, fold: int, predictions_ids: set[int]) -> list[int]:
    from spinekit.data.splits import load_splits, split_image_ids

    try:
        return [int(i) for i in split_image_ids(load_splits(records.root), split, fold)]  # type: ignore[arg-type]
    except (InputError, ValueError, KeyError, TypeError):
        return sorted(predictions_ids)


def _cell(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "<td class=num>&ndash;</td>"
    sd = "" if stats.get("sd") is None else f" &plusmn; {stats['sd']:.1f}"
    return f"<td class=num>{stats['mean']:.1f}{sd} (n={stats['n']})</td>"


def _vertebra_table(expert: dict[str, Any], predicted: dict[str, Any]) -> str:
    unit = predicted.get("lateral_unit") or expert.get("lateral_unit") or "px"
    rows = []
    for column, label in _LABELS.items():
        a, b = expert["columns"].get(column), predicted["columns"].get(column)
        if a or b:
            name = label if column.endswith("_deg") else f"{label}, {unit}"
            rows.append(f"<tr><td>{escape(name)}</td>{_cell(a)}{_cell(b)}</tr>")
    return "".join(rows)


def _needle_cells(needle: dict[str, Any] | None, key: str) -> str:
    if not needle:
        return "<td class=num>&ndash;</td>"
    value = needle.get(key)
    if value is None:
        return "<td class=num>&ndash;</td>"
    if key == "within_5mm":
        return f"<td class=num>{100 * value:.0f} %</td>"
    if key in ("mean_error", "median_error", "max_error"):
        return f"<td class=num>{value:.2f} {escape(str(needle['unit']))}</td>"
    return f"<td class=num>{value}</td>"


def _needle_table(expert: dict[str, Any], predicted: dict[str, Any]) -> str:
    rows = [("images with a facet joint", "facet_present"), ("trusted (ventral complex too)", "trusted"),
            ("needle targets", "targets"), ("targets with an annotated point", "with_error"),
            ("target error, mean", "mean_error"), ("target error, median", "median_error"),
            ("target error, largest", "max_error"), ("within 5 mm", "within_5mm")]
    return "".join(f"<tr><td>{escape(label)}</td>{_needle_cells(expert['needle'], key)}"
                   f"{_needle_cells(predicted['needle'], key)}</tr>" for label, key in rows)


def _measured(row: dict[str, Any]) -> bool:
    keys = ("cobb_1_deg", "lordosis_L1_L5_deg", "target_x_px")
    return any(row.get(k) is not None for k in keys)


def _pictures(items: Sequence[Any], problems: list[str]) -> str:
    from spinekit.io.images import read_image
    from spinekit.reports.measure_overlay import draw_measurement
    from spinekit.reports.overlay import encode_picture

    figures: list[str] = []
    for item in items:
        if len(figures) >= MAX_PICTURES:
            break
        if not _measured(item.row) or item.path is None:
            continue
        try:
            pixels = read_image(item.path, frame=int(item.image.get("frame") or 0))
        except InputError as exc:
            problems.append(f"measurement picture skipped: {exc}")
            continue
        picture = draw_measurement(pixels, item.geometry, item.row, max_side=PICTURE_SIDE)
        uri = "data:image/jpeg;base64," + base64.b64encode(encode_picture(picture)).decode("ascii")
        name = escape(str(item.image.get("file_name")))
        figures.append(f'<figure><img src="{uri}" alt="{name}"><figcaption><span class="name">'
                       f"{name}</span></figcaption></figure>")
    return f'<div class="grid">{"".join(figures)}</div>' if figures else ""


def clinical_section_body(records: DatasetRecords, predictions: Path, *, split: str, fold: int,
                          predicted_ids: set[int], threshold: float, problems: list[str]) -> str:
    """The section's HTML body (empty when the dataset is not measurable)."""
    from spinekit.clinical.measure import measurable_view, measure_images
    from spinekit.clinical.summary import summarize

    kind = measurable_view(records)
    if kind is None:
        return ""
    ids = _split_ids(records, split, fold, predicted_ids)
    expert_rows = [m.row for m in measure_images(records, image_ids=ids)]
    predicted = list(measure_images(records, predictions=predictions, image_ids=ids,
                                    score_threshold=threshold))
    expert, found = summarize(expert_rows), summarize([m.row for m in predicted])
    table = _needle_table(expert, found) if kind == "ultrasound" else _vertebra_table(expert, found)
    if not table:
        return ""
    intro = (f"<code>spinekit measure</code> on the {len(ids)} images of split {escape(split)}: from "
             f"the expert annotations and from the predictions (score &ge; {threshold:g}); "
             f"{found['flagged']} of {found['images']} images flagged from predictions (see the CSV "
             "for the flags). Rules: docs/clinical.md.")
    head = "<tr><th></th><th class=num>expert</th><th class=num>predicted</th></tr>"
    return (f'<p class="muted">{intro}</p><table><thead>{head}</thead><tbody>{table}</tbody></table>'
            f"{_pictures(predicted, problems)}")


def load_for_section(dataset: Path, problems: list[str]) -> DatasetRecords | None:
    """The dataset records, or None (noted in ``problems``) when unreadable."""
    try:
        return load_dataset(dataset)
    except InputError as exc:
        problems.append(f"clinical measurements skipped: {exc}")
        return None
