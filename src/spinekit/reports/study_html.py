"""``STUDY/report.html``: one self-contained page for a comparison study.

The page holds the study's summary tables (``summary.md``), its statistics
(``statistics.md``), the density, box and fold plots (``plots/*.png``) and, per arm, the
test images with the lowest per-image mean IoU as overlays (expert outlines and that
fold model's predictions). Pictures are embedded as ``data:`` URIs; the page needs no
network and no JavaScript; every string from data is HTML-escaped.
"""

from __future__ import annotations

import base64
import logging
import math
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from spinekit.data.records import DatasetRecords, load_dataset
from spinekit.errors import InputError
from spinekit.evaluation.results import load_results
from spinekit.io.atomic import atomic_write_text
from spinekit.io.images import read_image
from spinekit.reports.html import CSS
from spinekit.reports.overlay import draw_overlay, encode_picture

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"


def _inline(text: str) -> str:
    """Escape, then render ``**bold**`` and ```code``` spans of a markdown line."""
    out = escape(text)
    for mark, tag in (("**", "b"), ("`", "code")):
        parts = out.split(mark)
        if len(parts) % 2 == 1 and len(parts) > 1:
            out = "".join(p if i % 2 == 0 else f"<{tag}>{p}</{tag}>" for i, p in enumerate(parts))
    return out


def _table(lines: list[str]) -> str:
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]
    rows = [r for r in rows if not all(set(c) <= set("-: ") for c in r)]
    if not rows:
        return ""
    head = "".join(f"<th>{_inline(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def markdown_to_html(text: str) -> str:
    """The subset of markdown spinekit writes: headings, pipe tables, paragraphs, lists."""
    html: list[str] = []
    table: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.lstrip().startswith("|"):
            table.append(line)
            continue
        if table:
            html.append(_table(table))
            table = []
        stripped = line.strip()
        if stripped.startswith("#"):
            level = min(4, len(stripped) - len(stripped.lstrip("#")) + 1)
            html.append(f"<h{level}>{_inline(stripped.lstrip('#').strip())}</h{level}>")
        elif stripped.startswith(("- ", "* ")):
            html.append(f"<ul><li>{_inline(stripped[2:])}</li></ul>")
        elif stripped:
            html.append(f"<p>{_inline(stripped)}</p>")
    return "\n".join(html)


def _png(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(path.stem)}" style="max-width:100%">'


def _worst(per_image: pd.DataFrame, arm: str, limit: int) -> list[tuple[int, int, float]]:
    """(fold, image_id, mean IoU) of ``arm``'s worst test images, one row per image."""
    part = per_image[per_image["model"] == arm]
    if "mean_iou" not in part.columns or part.empty:
        return []
    part = part.sort_values(["mean_iou", "image_id", "fold"], na_position="first")
    part = part.drop_duplicates("image_id").head(limit)
    return [(int(r.fold), int(r.image_id), float(r.mean_iou)) for r in part.itertuples()]


def _overlay(records: DatasetRecords, image: dict[str, Any], anns: list[dict[str, Any]],
             results: list[dict[str, Any]], threshold: float) -> str:
    pixels = read_image(records.image_path(image), frame=int(image.get("frame") or 0))
    picture = draw_overlay(pixels, detections=[r for r in results if int(r["image_id"]) == int(image["id"])],
                           expert=anns, names=records.category_names(), score_threshold=threshold,
                           max_side=320)
    data = base64.b64encode(encode_picture(picture, fmt="JPEG", quality=85)).decode("ascii")
    return f'<img src="data:image/jpeg;base64,{data}" alt="{escape(str(image.get("file_name")))}">'


def _arm_gallery(out: Path, arm: str, dataset: Path, per_image: pd.DataFrame, *, limit: int,
                 threshold: float, problems: list[str]) -> str:
    worst = _worst(per_image, arm, limit)
    if not worst:
        return ""
    records = load_dataset(dataset)
    by_id = {int(img["id"]): img for img in records.images}
    anns = records.annotations_by_image()
    figures, cache = [], {}
    for fold, image_id, value in worst:
        if fold not in cache:
            cache[fold] = load_results(out / "runs" / arm / f"fold{fold}" / "test_predictions.json")
        try:
            picture = _overlay(records, by_id[image_id], anns.get(image_id, []), cache[fold], threshold)
        except (InputError, KeyError) as exc:
            problems.append(f"{arm}: overlay of image {image_id} skipped ({exc})")
            continue
        iou = "n/a" if math.isnan(value) else f"{value:.2f}"
        name = escape(str(by_id[image_id].get("file_name")))
        figures.append(f"<figure>{picture}<figcaption><span class='name'>{name}</span><br>"
                       f"fold {fold} model &middot; mean IoU {iou}</figcaption></figure>")
    return f"<h3>{escape(arm)}</h3><div class='grid'>{''.join(figures)}</div>"


def build_study_report(out: Path, *, per_image: pd.DataFrame, arms: dict[str, Path], title: str,
                       overlays_per_arm: int = 6, score_threshold: float = 0.5) -> Path:
    """Write ``out/report.html`` from the study's files (see module doc); returns its path.

    ``arms`` maps each arm label to its dataset folder (for the overlays).
    """
    problems: list[str] = []
    sections = []
    for name, heading in (("summary.md", None), ("statistics.md", None)):
        path = out / name
        if path.exists():
            sections.append(markdown_to_html(path.read_text(encoding="utf-8")))
        else:
            problems.append(f"{name} missing")
        del heading
    plots = sorted((out / "plots").glob("*.png")) if (out / "plots").is_dir() else []
    if plots:
        sections.append("<h2>Plots</h2><div class='grid'>"
                        + "".join(f"<figure>{_png(p)}</figure>" for p in plots) + "</div>")
    galleries = [_arm_gallery(out, arm, dataset, per_image, limit=overlays_per_arm,
                              threshold=score_threshold, problems=problems) for arm, dataset in arms.items()]
    if any(galleries):
        sections.append("<h2>Worst test images per arm (lowest mean IoU)</h2>"
                        "<p class='muted'>Expert: solid outlines; prediction: filled, dashed.</p>"
                        + "".join(galleries))
    if problems:
        sections.append("<h2>Problems</h2><ul class='problems'>"
                        + "".join(f"<li>{escape(p)}</li>" for p in problems) + "</ul>")
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>"
            f"<header><h1>{escape(title)}</h1></header>{''.join(sections)}"
            "<footer>Written by spinekit compare.</footer></main></body></html>\n")
    path = out / REPORT_FILE
    atomic_write_text(path, page)
    log.info("wrote %s", path)
    return path
