"""The study's summary tables, statistics, plots and report (written by :func:`write_outputs`).

``summary.md`` / ``summary.csv``:

- per-image metrics (mean ± SD over every test image of every fold, the layout of the
  X-ray study's Table 1; recognition rates as percentages of images);
- COCO metrics of the test set (mean ± SD over the K fold models; the ultrasound study's
  ablation tables: detection = bbox, segmentation = segm, AP50 and AP[.5:.95]);
- training cost per image.

NaN values (a metric undefined on an image, e.g. Dice with no foreground in truth and
prediction) are left out of means and counted in the ``n_nan`` column, never read as 0.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from spinekit.evaluation.statistics import (
    compare_groups,
    describe,
    format_p,
    paired_setting_tests,
    statistics_markdown,
)
from spinekit.evaluation.statistics_report import markdown_table
from spinekit.io.atomic import atomic_write_text
from spinekit.reports.study_html import build_study_report
from spinekit.reports.study_plots import box_plots, density_plots, fold_plot
from spinekit.study.spec import StudySpec

GROUP = "model"
PIXEL_METRICS = ("mean_iou", "pixel_accuracy", "mean_accuracy", "fw_iou", "dice", "hd95")
BINARY_METRICS = ("recognised", "composite_recognised")
COCO_METRICS = ("bbox_AP50", "bbox_AP", "segm_AP50", "segm_AP")
FOLD_METRICS = (*COCO_METRICS, "train_seconds_per_image")
TITLES = {
    "mean_iou": "mean IoU", "pixel_accuracy": "pixel accuracy", "mean_accuracy": "mean accuracy",
    "fw_iou": "FW IoU", "dice": "Dice", "hd95": "HD95", "recognised": "recognition rate",
    "composite_recognised": "composite recognition rate", "bbox_AP50": "detection AP50",
    "bbox_AP": "detection AP[.5:.95]", "segm_AP50": "segmentation AP50",
    "segm_AP": "segmentation AP[.5:.95]", "train_seconds_per_image": "training s/image",
}


def present(table: pd.DataFrame, names: tuple[str, ...]) -> list[str]:
    """The metric columns of ``names`` that ``table`` has."""
    return [name for name in names if name in table.columns]


def _cell(mean: float, sd: float, percent: bool) -> str:
    if math.isnan(mean):
        return "n/a"
    scale = 100.0 if percent else 1.0
    digits = 1 if percent else 3
    text = f"{mean * scale:.{digits}f}"
    return text + (f" ± {sd * scale:.{digits}f}" if not math.isnan(sd) else "")


def _wide(described: pd.DataFrame, metrics: list[str], percent: set[str]) -> pd.DataFrame:
    """Rows = arms, columns = metrics, cells "mean ± SD" (percent for ``percent`` metrics)."""
    rows = []
    for group, part in described.groupby("group", sort=False):
        by_metric = part.set_index("metric")
        row = {GROUP: group}
        for metric in metrics:
            if metric in by_metric.index:
                entry = by_metric.loc[metric]
                row[TITLES.get(metric, metric)] = _cell(float(entry["mean"]), float(entry["sd"]),
                                                        metric in percent)
        rows.append(row)
    return pd.DataFrame(rows)


def _markdown(frame: pd.DataFrame) -> str:
    return markdown_table([str(c) for c in frame.columns],
                          [[str(v) for v in row] for row in frame.itertuples(index=False)])


def _p_cell(row: pd.Series, holm: bool) -> str:
    suffix = "_holm" if holm else ""
    return f"{format_p(row[f'p_t{suffix}'])} / {format_p(row[f'p_wilcoxon{suffix}'])}"


def paired_table(folds: pd.DataFrame, paired: pd.DataFrame) -> str:
    """The ultrasound study's ablation layout: arms x (detection, segmentation) AP50 and AP,
    mean ± SD over folds in percent, then one row of p-values per pair of arms
    (paired t-test / Wilcoxon signed-rank across folds; Holm-adjusted with > 2 arms)."""
    metrics = present(folds, COCO_METRICS)
    if not metrics:
        return ""
    wide = _wide(describe(folds, group=GROUP, metrics=metrics), metrics, set(COCO_METRICS))
    rows = [list(r) for r in wide.itertuples(index=False)]
    holm = folds[GROUP].nunique() > 2
    for (a, b), part in paired.groupby(["setting_a", "setting_b"], sort=False):
        by_metric = part.set_index("metric")
        rows.append([f"p, {a} vs {b}" + (" (Holm)" if holm else "")]
                    + [_p_cell(by_metric.loc[m], holm) if m in by_metric.index else "n/a" for m in metrics])
    table = _markdown(pd.DataFrame(rows, columns=list(wide.columns)))
    return (table + "\n\nCells: mean ± SD over the K fold models (percent); p-values: paired t-test / "
            "Wilcoxon signed-rank across the folds (details and notes in statistics.md).")


def summary_tables(per_image: pd.DataFrame, folds: pd.DataFrame, paired: pd.DataFrame
                   ) -> tuple[pd.DataFrame, str]:
    """The long summary (csv) and the markdown page of a study's tables."""
    image_metrics = present(per_image, PIXEL_METRICS + BINARY_METRICS)
    fold_metrics = present(folds, FOLD_METRICS)
    per_image_desc = describe(per_image, group=GROUP, metrics=image_metrics)
    fold_desc = describe(folds, group=GROUP, metrics=fold_metrics)
    long = pd.concat([per_image_desc.assign(level="image"), fold_desc.assign(level="fold")],
                     ignore_index=True).rename(columns={"group": GROUP})
    percent = set(BINARY_METRICS) | set(COCO_METRICS)
    images = _wide(per_image_desc, image_metrics, percent)
    folds_n = folds.groupby(GROUP, sort=False)["fold"].nunique()
    test_n = per_image.groupby(GROUP, sort=False)["image_id"].nunique()
    lines = [
        "# Study summary", "",
        "## Per-image metrics (test set; mean ± SD over every image of every fold model)", "",
        _markdown(images), "",
        "Recognition rates are percentages of images (mean over images and folds). HD95 is in mm "
        "where every image has a pixel spacing, else in pixels (see per_image.csv's unit column).", "",
        "## COCO metrics of the test set, per fold model (detection = bbox, segmentation = segm)", "",
        paired_table(folds, paired), "",
        "## Training cost (CPU or GPU as run; mean ± SD over folds)", "",
        _markdown(_wide(fold_desc, present(folds, ("train_seconds_per_image",)), set())), "",
        "Folds per arm: " + ", ".join(f"{k} {v}" for k, v in folds_n.items())
        + "; test images: " + ", ".join(f"{k} {v}" for k, v in test_n.items()) + ".", "",
    ]
    return long, "\n".join(lines)


def write_outputs(out: Path, per_image: pd.DataFrame, folds: pd.DataFrame, spec: StudySpec,
                  datasets: dict[str, Path]) -> list[Path]:
    """Write summary.csv/.md, statistics.md, plots/ and report.html into ``out``.

    ``datasets`` maps each arm label to its dataset folder (for the report's overlays).
    """
    image_metrics = present(per_image, PIXEL_METRICS + BINARY_METRICS)
    between = compare_groups(per_image, group=GROUP, metrics=image_metrics, unit="image_id")
    paired = paired_setting_tests(folds, group=GROUP, pair_by="fold", metrics=present(folds, COCO_METRICS))
    long, markdown = summary_tables(per_image, folds, paired)
    atomic_write_text(out / "summary.csv", long.to_csv(index=False))
    atomic_write_text(out / "summary.md", markdown)
    atomic_write_text(out / "statistics.md", statistics_markdown(between, paired))
    plots = density_plots(per_image, group=GROUP, metrics=present(per_image, PIXEL_METRICS),
                          out_dir=out / "plots")
    plots += box_plots(per_image, group=GROUP, metrics=present(per_image, PIXEL_METRICS),
                       out_dir=out / "plots")
    plots += [fold_plot(folds, group=GROUP, metric=m, out=out / "plots" / f"folds_{m}.png")
              for m in present(folds, COCO_METRICS)]
    files = [out / "summary.csv", out / "summary.md", out / "statistics.md", *plots]
    arms = {str(label): dataset for label, dataset in datasets.items()}
    title = f"spinekit study: {spec.mode} ({', '.join(arms)}), {spec.folds} folds"
    files.append(build_study_report(out, per_image=per_image, arms=arms, title=title,
                                    score_threshold=spec.score_threshold))
    return files
