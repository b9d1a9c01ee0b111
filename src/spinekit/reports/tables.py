"""HTML tables of the run report: metrics, per-class AP, image-level numbers, config.

Every string taken from data goes through :func:`html.escape`. Metric values
are fractions 0..1 shown as percentages with one decimal; -1 (undefined in
COCO) and missing values are shown as "n/a".
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

METRIC_ORDER = ("AP", "AP50", "AP75", "APs", "APm", "APl")
IOU_TYPES = (("bbox", "Box"), ("segm", "Mask"))
CLASS_ORDER = ("instances", "bbox_AP", "bbox_AP50", "segm_AP", "segm_AP50")
NA = "n/a"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def pct(value: Any) -> str:
    """Fraction -> percentage with one decimal ("45.7"); "n/a" for -1, missing or not a number."""
    if not _is_number(value) or value < 0:
        return NA
    return f"{100.0 * float(value):.1f}"


def number(value: Any) -> str:
    """Integers as is, floats with 3 decimals, -1 as "n/a", other values as compact JSON."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if _is_number(value):
        if value == -1:
            return NA
        if isinstance(value, int):
            return str(value)
        return f"{value:.3f}" if value == 0 or abs(value) >= 0.001 else f"{value:.3g}"
    if value is None:
        return NA
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _is_rate(key: str) -> bool:
    return key.split("_")[-1].startswith(("AP", "AR"))


def _columns(rows: Iterable[Mapping[str, Any]], preferred: Sequence[str]) -> list[str]:
    """Preferred keys present in any row, then the other keys in first-seen order."""
    seen: list[str] = []
    for row in rows:
        seen.extend(k for k in row if k not in seen)
    return [k for k in preferred if k in seen] + [k for k in seen if k not in preferred]


def table(header: Sequence[str], rows: Sequence[Sequence[str]], *, numeric_from: int = 1,
          css: str = "") -> str:
    """An HTML table; cells are escaped, columns from ``numeric_from`` are right-aligned."""
    head = "".join(f"<th{' class=num' if i >= numeric_from else ''}>{escape(h)}</th>"
                   for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f"<td{' class=num' if i >= numeric_from else ''}>{escape(c)}</td>"
                         for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    cls = f' class="{escape(css)}"' if css else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def metrics_table(metrics: Mapping[str, Any]) -> str:
    """Box and mask AP, AP50, AP75, APs/m/l (and other keys) in %; "" when neither is present."""
    present = [(key, label) for key, label in IOU_TYPES if isinstance(metrics.get(key), Mapping)]
    if not present:
        return ""
    cols = _columns((metrics[key] for key, _ in present), METRIC_ORDER)
    rows = [[label] + [pct(metrics[key].get(c)) if _is_rate(c) else number(metrics[key].get(c))
                       for c in cols] for key, label in present]
    return table(["", *cols], rows, css="metrics")


def per_class_table(per_class: Mapping[str, Any]) -> str:
    """One row per class (file order): instances, box/mask AP and AP50 in %."""
    entries = [(str(name), v) for name, v in per_class.items() if isinstance(v, Mapping)]
    if not entries:
        return ""
    cols = _columns((v for _, v in entries), CLASS_ORDER)
    rows = [[name] + [pct(v.get(c)) if _is_rate(c) else number(v.get(c)) for c in cols]
            for name, v in entries]
    header = ["class"] + [c.replace("bbox_", "box ").replace("segm_", "mask ") for c in cols]
    return table(header, rows)


def flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested mapping -> ``[("a.b.c", value)]`` in insertion order (lists stay values)."""
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            out.extend(flatten(value, name))
        else:
            out.append((name, value))
    return out


def image_level_table(image_level: Mapping[str, Any]) -> str:
    """Flattened image-level numbers (e.g. detection of the target per image)."""
    rows = [[name, number(value)] for name, value in flatten(image_level)]
    return table(["measure", "value"], rows) if rows else ""


def config_table(config: Mapping[str, Any]) -> str:
    """The resolved configuration as a two-column table of dotted keys."""
    rows = [[name, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)]
            for name, value in flatten(config)]
    return table(["setting", "value"], rows, numeric_from=2, css="config")


def landmarks_table(lm: Mapping[str, Any]) -> str:
    """The ``landmarks`` block of metrics.json: corner errors, shares within thresholds,
    detection rate and, when present, Cobb SMAPE and MAE per angle column."""
    rows = [["vertebrae (matched)", f"{number(lm.get('vertebrae'))} ({number(lm.get('matched'))})"],
            ["mean corner error (px)", number(lm.get("corner_error_px"))],
            ["mean corner error (% of image height)", number(lm.get("corner_error_pct_height"))]]
    within = lm.get("within_px")
    for px, share in (within.items() if isinstance(within, Mapping) else []):
        rows.append([f"corners within {px} px (%)", pct(share)])
    rows.append(["detection rate (%)", pct(lm.get("detection_rate"))])
    cobb = lm.get("cobb")
    if isinstance(cobb, Mapping):
        rows.append([f"Cobb SMAPE (%, {number(cobb.get('images'))} images)", number(cobb.get("smape_pct"))])
        mae = cobb.get("mae_deg")
        for column, value in (mae.items() if isinstance(mae, Mapping) else []):
            rows.append([f"{column} MAE (deg)", number(value)])
    return table(["", "value"], rows)
