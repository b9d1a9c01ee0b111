"""``spinekit report``: one self-contained HTML page per run folder.

``RUN/report.html`` holds the run's header, what is missing, metrics tables
(box and mask AP), per-class AP, image-level numbers, training curves, a grid
of overlays of the evaluated images (worst first), clinical measurements when the
dataset is measurable (:mod:`spinekit.reports.clinical_section`) and the configuration.
Pictures are embedded as base64 ``data:`` URIs, CSS is inline; the page needs
no network and no JavaScript. Every string from data is HTML-escaped.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from spinekit.data.records import load_dataset
from spinekit.errors import InputError
from spinekit.io.atomic import atomic_write_text
from spinekit.reports.curves import curves_png
from spinekit.reports.gallery import Overlay, RankedImage, rank_images, render_overlays
from spinekit.reports.run_files import REPORT_FILE, RunFiles, dataset_from_run, read_run_files
from spinekit.reports.tables import (
    config_table,
    image_level_table,
    landmarks_table,
    metrics_table,
    number,
    pct,
    per_class_table,
)

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

CSS = """
:root{--ink:#1d1f23;--muted:#667085;--line:#e4e7ec;--bg:#f7f8fa;--accent:#0072B2;--bad:#D55E00}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 -apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 color:var(--ink);background:var(--bg)}
main{max-width:1240px;margin:0 auto;padding:24px 28px 48px}
header{border-bottom:3px solid var(--accent);padding-bottom:12px;margin-bottom:8px}
h1{font-size:24px;margin:0 0 4px} h2{font-size:18px;margin:32px 0 10px;
 padding-bottom:4px;border-bottom:1px solid var(--line)}
.meta{color:var(--muted);margin:0} .meta b{color:var(--ink);font-weight:600}
code{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#eef1f5;
 padding:1px 4px;border-radius:3px;word-break:break-all}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:18px 0 4px}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:10px 16px;
 min-width:140px}
.card .v{font-size:22px;font-weight:650} .card .k{color:var(--muted);font-size:12px}
.note{background:#fff8e6;border:1px solid #f3d58a;border-radius:8px;padding:10px 16px 10px 34px}
.note li{margin:2px 0}
.problems{background:#fff;border:1px solid var(--line);border-radius:8px;
 padding:10px 16px 10px 34px;color:var(--muted)}
table{border-collapse:collapse;background:#fff;border:1px solid var(--line);margin:6px 0 10px}
th,td{padding:5px 12px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:#f1f3f6;font-weight:600;font-size:13px} td.num,th.num{text-align:right;
 font-variant-numeric:tabular-nums} tbody tr:nth-child(even){background:#fafbfc}
table.config td:first-child{white-space:nowrap;font-family:ui-monospace,Menlo,Consolas,monospace;
 font-size:12px} table.config td{word-break:break-word;vertical-align:baseline}
.curves img{max-width:100%;background:#fff;border:1px solid var(--line);border-radius:8px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:14px}
figure{margin:0;background:#fff;border:1px solid var(--line);border-radius:8px;overflow:hidden}
figure img{display:block;width:100%;height:auto;background:#000}
figcaption{padding:7px 10px;font-size:12px} figcaption .name{font-weight:600;word-break:break-all}
.tag{display:inline-block;border-radius:10px;padding:0 7px;margin:3px 4px 0 0;background:#eef1f5}
.tag.bad{background:#fde7dc;color:#9a3b00} .rank{color:var(--muted);float:right}
.muted{color:var(--muted)}
footer{margin-top:36px;color:var(--muted);font-size:12px}
"""


def _section(title: str, body: str, *, anchor: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{body}</section>'


def _header(files: RunFiles, dataset: Path | None, generated: str) -> str:
    info = files.dataset_info
    split = f"{files.split} (assumed)" if files.split_assumed else files.split
    meta = [("dataset", str(dataset) if dataset else "unknown"), ("split", split)]
    if info.get("fold") is not None:
        meta.append(("fold", str(info["fold"])))
    meta.append(("generated", generated))
    items = " &middot; ".join(f"{escape(k)} <b>{escape(v)}</b>" for k, v in meta)
    return (f"<header><h1>Run report &mdash; {escape(files.run.resolve().name)}</h1>"
            f'<p class="meta">{items}</p><p class="meta">run folder <code>'
            f"{escape(str(files.run.resolve()))}</code></p></header>")


def _cards(files: RunFiles) -> str:
    metrics = files.metrics or {}
    cards: list[tuple[str, str]] = []
    for key, label in (("bbox", "box AP"), ("segm", "mask AP")):
        block = metrics.get(key)
        if isinstance(block, dict):
            cards.append((pct(block.get("AP")), f"{label} (%)"))
    for key, label in (("images", "images evaluated"), ("negative_images", "negative images")):
        if key in metrics:
            cards.append((number(metrics[key]), label))
    if files.train:
        last = files.train[-1]
        cards.append((number(last.get("epoch")), "last epoch logged"))
        cards.append((number(last.get("step")), "last step"))
        if isinstance(last.get("loss"), int | float):
            cards.append((f"{float(last['loss']):.3g}", "last loss"))
    body = "".join(f'<div class="card"><div class="v">{escape(v)}</div>'
                   f'<div class="k">{escape(k)}</div></div>' for v, k in cards)
    return f'<div class="cards">{body}</div>' if cards else ""


def _missing(files: RunFiles) -> str:
    if not files.missing:
        return ""
    rows = "".join(f"<li><code>{escape(name)}</code> is missing: {escape(why)}</li>"
                   for name, why in files.missing)
    return _section("What is missing", f'<ul class="note">{rows}</ul>', anchor="missing")


def _problems(problems: Sequence[str]) -> str:
    if not problems:
        return ""
    rows = "".join(f"<li>{escape(p)}</li>" for p in problems)
    return _section("Notes", f'<ul class="problems">{rows}</ul>', anchor="notes")


def _metrics(files: RunFiles) -> str:
    if files.metrics is None:
        return ""
    parts = []
    main = metrics_table(files.metrics)
    main = main or '<p class="muted">no box or mask metrics</p>'
    parts.append(_section("Metrics (COCO, %)", main, anchor="metrics"))
    per_class = files.metrics.get("per_class")
    if isinstance(per_class, dict) and per_class:
        parts.append(_section("Per class (%)", per_class_table(per_class), anchor="per-class"))
    image_level = files.metrics.get("image_level")
    if isinstance(image_level, dict) and image_level:
        parts.append(_section("Image level", image_level_table(image_level), anchor="image-level"))
    landmarks = files.metrics.get("landmarks")
    if isinstance(landmarks, dict) and landmarks:
        parts.append(_section("Landmarks (vertebra corners)", landmarks_table(landmarks), anchor="landmarks"))
    return "".join(parts)


def _curves(files: RunFiles) -> str:
    png = curves_png(files.train, files.val)
    if png is None:
        return ""
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    counts = f"{len(files.train)} training and {len(files.val)} validation log lines"
    body = (f'<p class="muted">{escape(counts)}; faint lines are raw values, solid lines running '
            f'means.</p><div class="curves"><img src="{uri}" alt="training curves"></div>')
    return _section("Training curves", body, anchor="curves")


def _caption(rank: int, item: RankedImage) -> str:
    score, image = item.score, item.image
    mean_iou = "n/a" if score["mean_iou"] is None else f"{score['mean_iou']:.2f}"
    tags = [("expert", score["expert"], False), ("predicted", score["predicted"], False),
            ("matched", score["matched"], False), ("FP", score["false_positives"], True),
            ("FN", score["false_negatives"], True)]
    spans = "".join(f'<span class="tag{" bad" if bad and n else ""}">{escape(k)} {n}</span>'
                    for k, n, bad in tags)
    patient = image.get("patient_id") or "unknown"
    return (f'<figcaption><span class="rank">#{rank}</span><span class="name">'
            f'{escape(str(image.get("file_name")))}</span><br>patient {escape(str(patient))}'
            f" &middot; mean IoU {escape(mean_iou)}<br>{spans}</figcaption>")


def _gallery(overlays: Sequence[Overlay], ranked_total: int, threshold: float) -> str:
    if not overlays:
        return ""
    intro = (f"{len(overlays)} of {ranked_total} evaluated images, worst first "
             f"(FN + FP + (1 &minus; mean IoU), matching at mask IoU &ge; 0.5, predictions with "
             f"score &ge; {threshold:g}). Expert: solid outlines; prediction: filled, dashed, "
             "with class and score.")
    figures = "".join(
        f'<figure><img src="{o.data_uri}" alt="{escape(str(o.item.image.get("file_name")))}">'
        f"{_caption(rank, o.item)}</figure>" for rank, o in enumerate(overlays, start=1))
    body = f'<p class="muted">{intro}</p><div class="grid">{figures}</div>'
    return _section("Worst cases first", body, anchor="overlays")


def _overlay_section(files: RunFiles, dataset: Path | None, *, max_overlays: int, threshold: float,
                     problems: list[str], progress: Progress | None) -> str:
    if files.predictions is None or max_overlays <= 0:
        return ""
    if dataset is None:
        files.note_missing("dataset", "dataset folder unknown: no overlays (pass --dataset)")
        return ""
    try:
        records = load_dataset(dataset)
    except InputError as exc:
        files.note_missing(str(dataset), f"dataset not readable ({exc.reason}): no overlays")
        return ""
    ranked = rank_images(records, files.predictions, split=files.split,
                         fold=int(files.dataset_info.get("fold") or 0),
                         score_threshold=threshold, problems=problems)
    overlays = render_overlays(records, ranked, limit=max_overlays, score_threshold=threshold,
                               problems=problems, progress=progress)
    return _gallery(overlays, len(ranked), threshold)


def _clinical(files: RunFiles, dataset: Path | None, *, threshold: float, problems: list[str]) -> str:
    """The "Clinical measurements" section (:mod:`spinekit.reports.clinical_section`), or
    nothing when the run has no predictions or the dataset nothing measurable."""
    from spinekit.reports.clinical_section import clinical_section_body, load_for_section
    from spinekit.reports.run_files import PREDICTIONS_DIR

    path = files.run / PREDICTIONS_DIR / f"{files.split}.json"
    if files.predictions is None or dataset is None or not path.is_file():
        return ""
    records = load_for_section(dataset, problems)
    if records is None:
        return ""
    try:
        body = clinical_section_body(
            records, path, split=files.split, fold=int(files.dataset_info.get("fold") or 0),
            predicted_ids={int(d["image_id"]) for d in files.predictions}, threshold=threshold,
            problems=problems)
    except InputError as exc:
        problems.append(f"clinical measurements skipped: {exc}")
        return ""
    return _section("Clinical measurements", body, anchor="clinical") if body else ""


def render_report(files: RunFiles, *, dataset: Path | None, max_overlays: int = 24,
                  score_threshold: float = 0.5, progress: Progress | None = None) -> str:
    """The complete HTML page for a loaded run (see :func:`build_report`)."""
    problems = list(files.problems)
    overlays = _overlay_section(files, dataset, max_overlays=max_overlays,
                                threshold=score_threshold, problems=problems, progress=progress)
    clinical = _clinical(files, dataset, threshold=score_threshold, problems=problems)
    generated = datetime.now(UTC).astimezone().strftime("%Y-%m-%d %H:%M %Z")
    config = (_section("Configuration", config_table(files.config), anchor="config")
              if files.config else "")
    body = "".join([_header(files, dataset, generated), _cards(files), _missing(files),
                    _metrics(files), _curves(files), overlays, clinical, config,
                    _problems(problems)])
    title = escape(f"spinekit report: {files.run.resolve().name}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{title}</title><style>{CSS}</style></head><body><main>{body}"
            "<footer>Written by spinekit. Metrics: COCO AP (faster-coco-eval); percentages of "
            "fractions; n/a = undefined (no instances of that kind).</footer>"
            "</main></body></html>\n")


def build_report(run: Path, *, dataset: Path | None = None, max_overlays: int = 24,
                 score_threshold: float = 0.5, progress: Progress | None = None) -> Path:
    """Write ``run/report.html`` (atomically) and return its path.

    ``dataset`` overrides the dataset folder named in ``run/dataset.json``.
    Absent run files are listed in the page, never an error; unreadable ones (or
    unreadable lines of ``log.jsonl``) are listed in the page and logged as warnings;
    an absent run folder raises :class:`InputError`. ``progress(done, total)`` is called while
    overlays are rendered. Overlays show predictions with score >=
    ``score_threshold``; at most ``max_overlays``, worst first.
    """
    files = read_run_files(run)
    for problem in files.problems:  # also listed in the page's notes
        log.warning("%s", problem)
    chosen = Path(dataset) if dataset is not None else dataset_from_run(files)
    page = render_report(files, dataset=chosen, max_overlays=max_overlays,
                         score_threshold=score_threshold, progress=progress)
    out = Path(run) / REPORT_FILE
    atomic_write_text(out, page)
    log.info("wrote %s (%.1f MB)", out, len(page.encode("utf-8")) / 1e6)
    return out
