"""Statistics for model comparisons and ablations (pandas in, pandas out).

Input is the long per-image table of ``spinekit compare``: one row per group
(model or setting), fold and test image, with metric columns (float; NaN where a
metric is undefined for that image). The statistical unit is the image: every
fold model is evaluated on the same fixed test set, so the K rows of one image
within a group are K looks at the same image, not K independent observations.
:func:`per_unit_means` averages them so each image counts once per group.

Tests (see docs/statistics.md):

- normality: Shapiro-Wilk per group and continuous metric;
- across groups, groups as independent samples (as the X-ray study did):
  Kruskal-Wallis, then Dunn's test with Holm's correction;
- across groups, paired by image (every group sees the same images): Friedman,
  then Wilcoxon signed-rank with Holm; binary metrics: Cochran's Q, then exact
  McNemar with Holm;
- settings across the same folds (ablation, :func:`paired_setting_tests`):
  paired t-test and exact Wilcoxon signed-rank, Friedman for more than two.

A p-value that cannot be computed is NaN with the reason in a ``reason`` column.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from spinekit.errors import InputError
from spinekit.evaluation.statistics_report import format_p, statistics_markdown
from spinekit.evaluation.statistics_tests import (
    cochran_row,
    complete_matrix,
    dunn_rows,
    finite,
    friedman_row,
    holm_adjust,
    kruskal_row,
    paired_rows,
    run_quietly,
)

logger = logging.getLogger(__name__)

__all__ = [
    "BINARY_METRICS",
    "compare_groups",
    "describe",
    "format_p",
    "holm_adjust",
    "paired_setting_tests",
    "per_unit_means",
    "prepare_table",
    "statistics_markdown",
]

BINARY_METRICS = ("recognised", "composite_recognised")
"""Metric columns treated as binary (0/1) unless ``binary=`` says otherwise."""

TEST_COLUMNS = ("metric", "test", "design", "statistic", "df", "n", "p", "below_alpha", "reason", "note")
PAIR_COLUMNS = ("metric", "test", "design", "group_a", "group_b", "n_a", "n_b", "statistic", "p",
                "p_holm", "effect", "effect_name", "below_alpha", "reason", "note")


# ----------------------------------------------------------------------------- input handling

def prepare_table(table: pd.DataFrame, group: str, metrics: Sequence[str],
                  keys: Sequence[str] = ()) -> pd.DataFrame:
    """Copy of the needed columns, metric columns as float64 (NaN kept, +-inf -> NaN).

    Raises InputError for missing columns, missing labels or non-numeric metric values.
    """
    if isinstance(metrics, str):
        raise InputError(None, "metrics must be a list of column names, not one string")
    needed = [group, *keys, *metrics]
    missing = [name for name in dict.fromkeys(needed) if name not in table.columns]
    if missing:
        raise InputError(None, f"table has no column {', '.join(map(repr, missing))} "
                               f"(columns: {', '.join(map(str, table.columns))})")
    data = table[list(dict.fromkeys(needed))].copy()
    for key in (group, *keys):
        if data[key].isna().any():
            raise InputError(None, f"column {key!r} has {int(data[key].isna().sum())} empty value(s)")
    for metric in metrics:
        column = data[metric]
        values = pd.to_numeric(column.astype(np.float64) if column.dtype == bool else column,
                               errors="coerce")
        bad = values.isna() & column.notna()
        if bad.any():
            raise InputError(None, f"metric {metric!r} has a non-numeric value {column[bad].iloc[0]!r}")
        values = values.astype(np.float64)
        infinite = np.isinf(values.to_numpy())
        if infinite.any():
            logger.warning("metric %s: %d infinite value(s) counted as undefined (NaN)", metric,
                           int(infinite.sum()))
            values[infinite] = np.nan
        data[metric] = values
    return data


def _groups(data: pd.DataFrame, group: str) -> list[Any]:
    """Group labels in order of first appearance."""
    return list(pd.unique(data[group]))


def _binary_set(metrics: Sequence[str], binary: Sequence[str] | None) -> set[str]:
    chosen = set(BINARY_METRICS if binary is None else binary)
    return {metric for metric in metrics if metric in chosen}


def _check_binary(data: pd.DataFrame, metrics: set[str]) -> None:
    for metric in metrics:
        values = finite(data[metric])
        if not np.isin(values, (0.0, 1.0)).all():
            raise InputError(None, f"binary metric {metric!r} has values other than 0, 1 and NaN")


def _below(p: float, alpha: float) -> Any:
    return pd.NA if not math.isfinite(p) else bool(p < alpha)


# ----------------------------------------------------------------------------- descriptives

def _summary(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return dict.fromkeys(("mean", "sd", "median", "q1", "q3", "iqr", "min", "max"), np.nan)
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"mean": float(values.mean()),
            "sd": float(values.std(ddof=1)) if len(values) > 1 else np.nan,
            "median": float(median), "q1": float(q1), "q3": float(q3), "iqr": float(q3 - q1),
            "min": float(values.min()), "max": float(values.max())}


def describe(table: pd.DataFrame, *, group: str, metrics: Sequence[str]) -> pd.DataFrame:
    """Per group and metric: n (non-NaN), n_nan, mean, sd (ddof=1), median, q1, q3, iqr, min, max.

    NaNs are left out of every statistic and counted in ``n_nan``; never read as 0.
    Returns one row per (group, metric), column ``group`` holding the label.
    """
    metrics = list(metrics)
    data = prepare_table(table, group, metrics)
    rows = []
    for label in _groups(data, group):
        sub = data[data[group] == label]
        for metric in metrics:
            values = finite(sub[metric])
            rows.append({"group": label, "metric": metric, "n": len(values),
                         "n_nan": len(sub) - len(values), **_summary(values)})
    return pd.DataFrame(rows, columns=["group", "metric", "n", "n_nan", "mean", "sd", "median", "q1",
                                       "q3", "iqr", "min", "max"])


def per_unit_means(table: pd.DataFrame, *, group: str, unit: str = "image_id",
                   metrics: Sequence[str]) -> pd.DataFrame:
    """One row per (group, unit): each metric averaged over that unit's rows (the K folds).

    The same test image is evaluated by all K fold models of a group, so its K rows
    are repeated measurements of one image, not K independent observations; tests
    that treat them as independent would count every image K times and give p-values
    that are too small. NaN rows are skipped in the mean; a unit with no defined value
    stays NaN. Column ``n_rows`` counts the rows averaged. Groups and units keep their
    order of first appearance.
    """
    metrics = list(metrics)
    data = prepare_table(table, group, metrics, keys=[unit])
    grouped = data.groupby([group, unit], sort=False)
    means = grouped[metrics].mean()
    means["n_rows"] = grouped.size()
    return means.reset_index()


# ----------------------------------------------------------------------------- compare_groups

def _info(data: pd.DataFrame, units: pd.DataFrame, *, group: str, unit: str, alpha: float,
          labels: list[Any], binary: set[str]) -> pd.DataFrame:
    facts = {"alpha": alpha, "unit": unit, "group_column": group,
             "groups": ", ".join(map(str, labels)), "n_groups": len(labels),
             "n_units": units[unit].nunique(), "n_rows": len(data),
             "binary_metrics": ", ".join(sorted(binary)),
             "binary_rule": "a unit counts as 1 when at least half of its rows are 1"}
    return pd.DataFrame({"key": list(facts), "value": [str(v) for v in facts.values()]})


def _normality(units: pd.DataFrame, group: str, metrics: Sequence[str], labels: list[Any],
               alpha: float) -> pd.DataFrame:
    rows = []
    for label in labels:
        sub = units[units[group] == label]
        for metric in metrics:
            values = finite(sub[metric])
            row: dict[str, Any] = {"group": label, "metric": metric, "n": len(values), "W": np.nan,
                                   "p": np.nan, "reason": "", "note": ""}
            if len(values) < 3:
                row["reason"] = f"n = {len(values)} < 3"
            elif np.all(values == values[0]):
                row["reason"] = "all values are equal"
            else:
                result, caught = run_quietly(functools.partial(stats.shapiro, values))
                row.update(W=float(result.statistic), p=float(result.pvalue), note=caught)
            rows.append(row)
    frame = pd.DataFrame(rows, columns=["group", "metric", "n", "W", "p", "reason", "note"])
    frame.insert(5, "below_alpha", pd.array([_below(p, alpha) for p in frame["p"]], dtype="boolean"))
    return frame


def _metric_tests(units: pd.DataFrame, group: str, unit: str, metric: str, labels: list[Any], *,
                  binary: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Omnibus rows and pairwise rows of one metric."""
    wide = units.pivot(index=unit, columns=group, values=metric).reindex(columns=labels)
    matrix, note = complete_matrix(wide)
    if binary:
        return [cochran_row(metric, matrix, note)], paired_rows(metric, matrix, labels, binary=True)
    samples = {label: finite(units.loc[units[group] == label, metric]) for label in labels}
    omnibus = [kruskal_row(metric, samples), friedman_row(metric, matrix, note)]
    if len(labels) < 2:
        return omnibus, []
    return omnibus, dunn_rows(metric, samples) + paired_rows(metric, matrix, labels, binary=False)


def _frame(rows: list[dict[str, Any]], columns: Sequence[str], p_column: str,
           alpha: float) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=[c for c in columns if c != "below_alpha"])
    at = list(columns).index("below_alpha")
    frame.insert(at, "below_alpha",
                 pd.array([_below(p, alpha) for p in frame[p_column]], dtype="boolean"))
    return frame


def compare_groups(table: pd.DataFrame, *, group: str, metrics: Sequence[str],
                   unit: str = "image_id", alpha: float = 0.05,
                   binary: Sequence[str] | None = None) -> dict[str, pd.DataFrame]:
    """Compare groups (models / settings) on the per-image metrics of one fixed test set.

    ``table`` is the long table (one row per group, fold, image). It is first reduced
    to one value per image and group (:func:`per_unit_means`). ``binary`` names the
    0/1 metrics (default: :data:`BINARY_METRICS` present in ``metrics``); per image they
    are dichotomised as 1 when at least half of the fold rows are 1.

    Returns tables keyed ``info`` (key/value: alpha, unit, groups, counts), ``describe``
    (:func:`describe` of the per-image values), ``normality`` (Shapiro-Wilk per group and
    continuous metric), ``omnibus`` (per metric: Kruskal-Wallis and Friedman, or Cochran's
    Q for binary metrics) and ``pairwise`` (Dunn with Holm, Wilcoxon signed-rank with
    Holm, or exact McNemar with Holm). ``below_alpha`` is p < alpha (Holm-adjusted p for
    pairwise rows); NaN p-values come with a ``reason``.
    """
    if not 0.0 < alpha < 1.0:
        raise InputError(None, f"alpha must be between 0 and 1, got {alpha}")
    metrics = list(metrics)
    binary_metrics = _binary_set(metrics, binary)
    data = prepare_table(table, group, metrics, keys=[unit])
    if data.empty:
        raise InputError(None, "the table has no rows")
    _check_binary(data, binary_metrics)
    units = per_unit_means(data, group=group, unit=unit, metrics=metrics)
    labels = _groups(units, group)
    dichotomised = units.copy()
    for metric in binary_metrics:
        column = dichotomised[metric]
        dichotomised[metric] = np.where(column.isna(), np.nan, (column >= 0.5).astype(np.float64))
    omnibus: list[dict[str, Any]] = []
    pairwise: list[dict[str, Any]] = []
    for metric in metrics:
        tests, pairs = _metric_tests(dichotomised, group, unit, metric, labels,
                                     binary=metric in binary_metrics)
        omnibus += tests
        pairwise += pairs
    continuous = [m for m in metrics if m not in binary_metrics]
    return {
        "info": _info(data, units, group=group, unit=unit, alpha=alpha, labels=labels,
                      binary=binary_metrics),
        "describe": describe(units, group=group, metrics=metrics),
        "normality": _normality(units, group, continuous, labels, alpha),
        "omnibus": _frame(omnibus, TEST_COLUMNS, "p", alpha),
        "pairwise": _frame(pairwise, PAIR_COLUMNS, "p_holm", alpha),
    }


# ----------------------------------------------------------------------------- paired settings

SETTING_COLUMNS = ("metric", "setting_a", "setting_b", "n_pairs", "mean_a", "mean_b", "mean_diff",
                   "ci_low", "ci_high", "t", "df", "p_t", "p_t_holm", "wilcoxon_W", "p_wilcoxon",
                   "p_wilcoxon_holm", "wilcoxon_min_p", "wilcoxon_method", "friedman_chi2",
                   "friedman_df", "friedman_p", "note", "reason")


def _t_part(x: np.ndarray, y: np.ndarray, confidence: float) -> tuple[dict[str, Any], str, str]:
    """Paired t columns and CI, the reason (if NaN) and captured warnings."""
    differences = x - y
    if len(differences) < 2:
        return {}, f"t-test: {len(differences)} paired value(s)", ""
    scale = max(1.0, float(np.abs(np.concatenate([x, y])).max()))
    if np.ptp(differences) <= 1e-12 * scale:  # equal up to rounding: t is 0/0 or infinite
        return {}, "t-test and CI: paired differences have zero variance", ""
    result, caught = run_quietly(lambda: stats.ttest_rel(x, y))
    interval = result.confidence_interval(confidence_level=confidence)
    return ({"t": float(result.statistic), "df": int(result.df), "p_t": float(result.pvalue),
             "ci_low": float(interval.low), "ci_high": float(interval.high)}, "", caught)


def _wilcoxon_part(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[dict[str, Any], str, str]:
    """Exact Wilcoxon columns, the reason (if NaN) and a note (smallest reachable p, warnings)."""
    nonzero = int(np.sum(x - y != 0))
    if nonzero == 0:
        return {}, "wilcoxon: all paired differences are zero", ""
    min_p = min(1.0, 2.0 ** (1 - nonzero))
    note = ""
    if min_p >= alpha:
        note = (f"with {nonzero} non-zero paired difference(s) the exact two-sided Wilcoxon p "
                f"cannot be below {min_p:.4g}, so it cannot reach p < {alpha:g}")
    method, label = _wilcoxon_method(x - y)
    result, caught = run_quietly(lambda: stats.wilcoxon(x, y, method=method))
    return ({"wilcoxon_W": float(result.statistic), "p_wilcoxon": float(result.pvalue),
             "wilcoxon_min_p": min_p, "wilcoxon_method": label}, "",
            "; ".join(filter(None, [note, caught])))


def _wilcoxon_method(differences: np.ndarray) -> tuple[Any, str]:
    """scipy ``method`` giving the exact p-value, and its label.

    Zero differences are dropped (Wilcoxon's rule), which keeps the no-ties exact null
    distribution valid. Tied |differences| make that distribution inexact (scipy then
    only rounds conservatively), so ties use all 2^n sign flips (exhaustive permutation,
    the exact conditional p) up to n = 16, the normal approximation beyond.
    """
    magnitudes = np.abs(differences[differences != 0])
    if len(np.unique(magnitudes)) == len(magnitudes):
        return "exact", "exact"
    if len(magnitudes) <= 16:
        return stats.PermutationMethod(n_resamples=np.inf), "exact (all sign flips; ties)"
    return "asymptotic", "normal approximation (ties, n > 16)"


def _setting_pair(metric: str, x: np.ndarray, y: np.ndarray, a: Any, b: Any,
                  alpha: float) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(SETTING_COLUMNS, np.nan)
    row.update(metric=metric, setting_a=a, setting_b=b, n_pairs=len(x), note="", reason="")
    if len(x):
        row.update(mean_a=float(x.mean()), mean_b=float(y.mean()), mean_diff=float((x - y).mean()))
    t_values, t_reason, t_note = _t_part(x, y, 1.0 - alpha)
    w_values, w_reason, w_note = _wilcoxon_part(x, y, alpha)
    row.update(t_values)
    row.update(w_values)
    row.update(note="; ".join(filter(None, [t_note, w_note])),
               reason="; ".join(filter(None, [t_reason, w_reason])))
    return row


def paired_setting_tests(fold_table: pd.DataFrame, *, group: str, pair_by: str = "fold",
                         metrics: Sequence[str], alpha: float = 0.05) -> pd.DataFrame:
    """Settings compared across the same folds (ablation): one row per metric and pair of settings.

    ``fold_table`` has one row per setting and fold (``pair_by``); fold ``k`` of every
    setting must use the same patients. Only folds with a value for every setting are
    used. Per pair: means, mean difference (a - b) with its t-based (1 - alpha)
    confidence interval (95 % by default), paired t-test (scipy ``ttest_rel``) and exact
    Wilcoxon signed-rank test (``wilcoxon_method``: scipy's exact distribution, or all
    sign flips when |differences| tie). ``wilcoxon_min_p`` is the smallest two-sided p
    the exact test can give with that many non-zero differences (0.0625 for 5); a note
    says when it cannot reach p < alpha. With more than two settings: Friedman across
    all settings (repeated on each row of the metric) and Holm over the pairs of one metric,
    separately for t and Wilcoxon; with two, the Holm columns equal the raw p.
    """
    metrics = list(metrics)
    data = prepare_table(fold_table, group, metrics, keys=[pair_by])
    if data.empty:
        raise InputError(None, "the fold table has no rows")
    duplicated = data.duplicated([group, pair_by])
    if duplicated.any():
        first = data[duplicated].iloc[0]
        raise InputError(None, f"more than one row for {group}={first[group]!r}, "
                               f"{pair_by}={first[pair_by]!r}")
    labels = _groups(data, group)
    rows: list[dict[str, Any]] = []
    for metric in metrics:
        if len(labels) < 2:
            single: dict[str, Any] = dict.fromkeys(SETTING_COLUMNS, np.nan)
            single.update(metric=metric, setting_a=labels[0] if labels else "", setting_b="", note="",
                          reason="only one setting: no paired test")
            rows.append(single)
            continue
        wide = data.pivot(index=pair_by, columns=group, values=metric).reindex(columns=labels)
        matrix, note = complete_matrix(wide, "fold")
        pairs = [_setting_pair(metric, matrix[:, i], matrix[:, j], labels[i], labels[j], alpha)
                 for i, j in combinations(range(len(labels)), 2)]
        for column in ("p_t", "p_wilcoxon"):
            for row, adjusted in zip(pairs, holm_adjust([r[column] for r in pairs]), strict=True):
                row[f"{column}_holm"] = float(adjusted)
        friedman = friedman_row(metric, matrix, "")
        for row in pairs:
            row.update(friedman_chi2=friedman["statistic"], friedman_df=friedman["df"],
                       friedman_p=friedman["p"],
                       note="; ".join(filter(None, [note, row["note"]])))
            if friedman["reason"]:
                row["reason"] = "; ".join(filter(None, [row["reason"], "friedman: " + friedman["reason"]]))
        rows += pairs
    return pd.DataFrame(rows, columns=list(SETTING_COLUMNS))
