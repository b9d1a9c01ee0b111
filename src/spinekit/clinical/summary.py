"""Summary of a ``spinekit measure`` table: what the CLI prints and ``spinekit report`` shows.

:func:`summarize` takes the rows of :func:`spinekit.clinical.measure.measure_dataset` (or
of a CSV read back, where every value is a string) and returns plain numbers: per measured
column the count, mean and SD; for the ultrasound view the needle-target counts and the
error to the annotated targets (mean, median, share within :data:`WITHIN_MM` mm).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

SUMMARY_COLUMNS: tuple[str, ...] = (
    "cobb_1_deg", "cobb_2_deg", "cobb_3_deg", "lordosis_L1_L5_deg", "lordosis_L1_S1_deg",
    "body_L1_middle", "body_L3_middle", "body_L5_middle", "disc_L1-L2_middle", "disc_L4-L5_middle",
)
"""Columns given as count, mean and SD (when measured on at least one image)."""

WITHIN_MM = 5.0
"""Needle-target error threshold for the "within" share (mm)."""


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "yes")


def _stats(values: Sequence[float]) -> dict[str, float | int | None]:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"n": n, "mean": mean, "sd": sd, "min": min(values), "max": max(values)}


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def needle_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Needle-target numbers of the ultrasound rows, None when there are none."""
    us = [r for r in rows if r.get("view") == "ultrasound"]
    if not us:
        return None
    out: dict[str, Any] = {
        "images": len(us),
        "facet_present": sum(1 for r in us if _truthy(r.get("facet_present"))),
        "trusted": sum(1 for r in us if _truthy(r.get("trusted"))),
        "targets": sum(1 for r in us if _number(r.get("target_x_px")) is not None),
    }
    mm = [v for v in (_number(r.get("target_error_mm")) for r in us) if v is not None]
    px = [v for v in (_number(r.get("target_error_px")) for r in us) if v is not None]
    errors, unit = (mm, "mm") if mm else (px, "px")
    out["unit"] = unit
    out["with_error"] = len(errors)
    if errors:
        out.update(mean_error=sum(errors) / len(errors), median_error=_median(errors),
                   max_error=max(errors))
        out["within_5mm"] = (sum(1 for e in mm if e <= WITHIN_MM) / len(mm)) if mm else None
    return out


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``images``, ``flagged`` (rows with flags), ``views`` (count per view), ``columns``
    (per :data:`SUMMARY_COLUMNS` entry measured: n, mean, sd, min, max) and ``needle``
    (:func:`needle_summary`, None without ultrasound rows)."""
    columns: dict[str, dict[str, float | int | None]] = {}
    for column in SUMMARY_COLUMNS:
        values = [v for v in (_number(r.get(column)) for r in rows) if v is not None]
        if values:
            columns[column] = _stats(values)
    units = Counter(str(r.get("unit")) for r in rows if r.get("view") == "lateral" and r.get("unit"))
    return {
        "images": len(rows),
        "flagged": sum(1 for r in rows if r.get("flags")),
        "views": dict(Counter(str(r.get("view") or "undetermined") for r in rows)),
        "lateral_unit": units.most_common(1)[0][0] if units else None,
        "columns": columns,
        "needle": needle_summary(rows),
    }
