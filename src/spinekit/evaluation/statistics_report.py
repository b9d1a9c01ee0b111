"""Markdown rendering of the statistics tables (:mod:`spinekit.evaluation.statistics`).

The text states which tests, corrections, unit and alpha were used and marks
results only as "p < alpha" or not; it draws no other conclusion.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pandas as pd

__all__ = ["format_p", "statistics_markdown"]


def format_p(p: Any) -> str:
    """``0.003`` style (3 decimals, half up: 0.0625 -> 0.063), ``<0.001`` below 0.001, ``n/a`` for NaN."""
    if p is None or p is pd.NA or not math.isfinite(float(p)):
        return "n/a"
    value = float(p)
    if value < 0.001:
        return "<0.001"
    return str(Decimal(repr(value)).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP))


def _num(value: Any, digits: int = 4) -> str:
    """Number with ``digits`` significant digits; integers as is; ``n/a`` for NaN."""
    if value is None or value is pd.NA:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    number = float(value)
    if not math.isfinite(number):
        return "n/a"
    return str(int(number)) if number.is_integer() and abs(number) < 1e6 else f"{number:.{digits}g}"


def _text(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _flag(value: Any) -> str:
    if value is None or value is pd.NA:
        return "n/a"
    return "yes" if bool(value) else "no"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown pipe table of ``headers`` and ``rows`` (cells already text)."""
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _describe_section(frame: pd.DataFrame) -> str:
    rows = [[_text(r.group), _text(r.metric), _num(r.n), _num(r.n_nan),
             f"{_num(r.mean)} ± {_num(r.sd)}", f"{_num(r.median)} [{_num(r.q1)}, {_num(r.q3)}]"]
            for r in frame.itertuples(index=False)]
    return ("### Descriptive statistics\n\n"
            + markdown_table(["group", "metric", "n", "NaN", "mean ± SD", "median [Q1, Q3]"], rows))


def _normality_section(frame: pd.DataFrame, alpha: float) -> str:
    if frame.empty:
        return "### Normality (Shapiro-Wilk)\n\nNo continuous metric."
    rows = [[_text(r.group), _text(r.metric), _num(r.n), _num(r.W), format_p(r.p),
             _flag(r.below_alpha), _text("; ".join(filter(None, [r.reason, r.note])))]
            for r in frame.itertuples(index=False)]
    return ("### Normality (Shapiro-Wilk)\n\n"
            + markdown_table(["group", "metric", "n", "W", "p", f"p < {alpha:g}", "reason / note"], rows))


def _omnibus_section(frame: pd.DataFrame, alpha: float) -> str:
    rows = [[_text(r.metric), _text(r.test), _text(r.design), _num(r.statistic), _num(r.df),
             _num(r.n), format_p(r.p), _flag(r.below_alpha),
             _text("; ".join(filter(None, [r.reason, r.note])))]
            for r in frame.itertuples(index=False)]
    return ("### Tests across all groups\n\n"
            + markdown_table(["metric", "test", "design", "statistic", "df", "n", "p", f"p < {alpha:g}",
                      "reason / note"], rows))


def _pairwise_section(frame: pd.DataFrame, alpha: float) -> str:
    if frame.empty:
        return "### Pairwise comparisons\n\nNo pairs (fewer than two groups)."
    rows = [[_text(r.metric), _text(r.test), f"{_text(r.group_a)} vs {_text(r.group_b)}",
             f"{_num(r.n_a)} / {_num(r.n_b)}", f"{_num(r.effect)} ({_text(r.effect_name)})",
             format_p(r.p), format_p(r.p_holm), _flag(r.below_alpha),
             _text("; ".join(filter(None, [r.reason, r.note])))]
            for r in frame.itertuples(index=False)]
    return ("### Pairwise comparisons\n\n"
            + markdown_table(["metric", "test", "pair (a vs b)", "n a / b", "effect (a - b)", "p",
                      "p (Holm)", f"p (Holm) < {alpha:g}", "reason / note"], rows))


def _below_text(p: Any, alpha: float) -> str:
    return "n/a" if format_p(p) == "n/a" else ("yes" if float(p) < alpha else "no")


def _settings_row(r: Any, alpha: float, many: bool) -> list[str]:
    row = [_text(r.metric), f"{_text(r.setting_a)} vs {_text(r.setting_b)}", _num(r.n_pairs),
           _num(r.mean_a), _num(r.mean_b), f"{_num(r.mean_diff)} [{_num(r.ci_low)}, {_num(r.ci_high)}]",
           format_p(r.p_t), format_p(r.p_wilcoxon)]
    p_t, p_w = (r.p_t_holm, r.p_wilcoxon_holm) if many else (r.p_t, r.p_wilcoxon)
    if many:
        row += [format_p(p_t), format_p(p_w), format_p(r.friedman_p)]
    row.append(f"{_below_text(p_t, alpha)} / {_below_text(p_w, alpha)}")
    reasons = [part for part in str(r.reason or "").split("; ")
               if part and (many or not part.startswith("friedman:"))]
    method = _text(r.wilcoxon_method)
    method = f"Wilcoxon: {method}" if method not in ("", "exact") else ""
    return [*row, _text("; ".join(filter(None, [*reasons, method, r.note])))]


def _settings_section(frame: pd.DataFrame, alpha: float) -> str:
    labels = {_text(v) for v in [*frame["setting_a"], *frame["setting_b"]]} - {""}
    many = len(labels) > 2
    rows = [_settings_row(r, alpha, many) for r in frame.itertuples(index=False)]
    confidence = f"{100 * (1 - alpha):g} % CI"
    headers = ["metric", "settings (a vs b)", "folds", "mean a", "mean b", f"a - b [{confidence}]",
               "p (paired t)", "p (Wilcoxon, exact)"]
    if many:
        headers += ["p t (Holm)", "p Wilcoxon (Holm)", "p (Friedman)"]
    below = f"p{' (Holm)' if many else ''} < {alpha:g}: t / Wilcoxon"
    return "### Settings compared across folds\n\n" + markdown_table([*headers, below, "reason / note"], rows)


def _how_to_read(info: Mapping[str, str], alpha: float, *, groups: bool, settings: bool) -> str:
    parts = []
    if groups:
        unit = info.get("unit", "image_id")
        parts.append(
            f"The unit of analysis is the test image (`{unit}`): each image's values are averaged "
            "over the fold models of a group, because the same image is evaluated by every fold "
            "model and those values are not independent. NaN values (metric undefined) are left "
            "out and counted in the NaN column, never read as 0. Normality: Shapiro-Wilk per group. "
            "Across groups: Kruskal-Wallis (groups as independent samples) and Friedman (paired by "
            "image, on the images with a value in every group); binary metrics use Cochran's Q "
            "(an image counts as 1 when at least half of its fold rows are 1). Pairwise: Dunn's test "
            "after Kruskal-Wallis, Wilcoxon signed-rank (paired) or exact McNemar (binary); each "
            "family (one metric, one test) is corrected with Holm's method. Effects are a minus b.")
    if settings:
        parts.append(
            "Settings are paired by fold (fold k of every setting uses the same patients): paired "
            "t-test with the t-based confidence interval of the mean difference, and exact Wilcoxon "
            "signed-rank test; with more than two settings, Friedman and Holm over the pairs.")
    parts.append(
        f"\"p < {alpha:g}\" marks p-values (Holm-adjusted for pairwise rows) below alpha = {alpha:g}; "
        "n/a means the test could not be computed, and the reason is given. No other conclusion "
        "is drawn here.")
    return "**How to read.** " + " ".join(parts)


def statistics_markdown(results: Mapping[str, pd.DataFrame] | None = None,
                        settings: pd.DataFrame | None = None, *, title: str = "Statistics",
                        alpha: float | None = None) -> str:
    """Markdown report of :func:`compare_groups` results and/or a :func:`paired_setting_tests` table.

    ``alpha`` defaults to the one recorded in ``results["info"]`` (else 0.05). p-values
    read ``0.003`` / ``<0.001`` / ``n/a``.
    """
    info: dict[str, str] = {}
    if results is not None and "info" in results:
        frame = results["info"]
        info = dict(zip(frame["key"].astype(str), frame["value"].astype(str), strict=True))
    if alpha is None:
        alpha = float(info.get("alpha", 0.05))
    sections = [f"## {title}",
                _how_to_read(info, alpha, groups=results is not None, settings=settings is not None)]
    if results is not None:
        if info:
            sections.append(f"Groups ({info.get('group_column', 'group')}): {info.get('groups', '')}; "
                            f"{info.get('n_units', '?')} units ({info.get('unit', '')}), "
                            f"{info.get('n_rows', '?')} rows.")
            if info.get("n_groups") == "1":
                sections.append("Only one group: no between-group tests.")
        sections += [_describe_section(results["describe"]),
                     _normality_section(results["normality"], alpha),
                     _omnibus_section(results["omnibus"], alpha),
                     _pairwise_section(results["pairwise"], alpha)]
    if settings is not None:
        sections.append(_settings_section(settings, alpha))
    return "\n\n".join(sections) + "\n"
