"""Test primitives of :mod:`spinekit.evaluation.statistics`: one result row per test.

Every function returns plain dicts (one per test or pair); a p-value that cannot be
computed is NaN with the reason in ``reason``. Warnings scipy/statsmodels emit on
the way are captured into ``note`` instead of reaching the caller.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
import scikit_posthocs
from scipy import stats
from statsmodels.stats.contingency_tables import cochrans_q, mcnemar

ONE_GROUP = "only one group: no between-group test"


def finite(values: Any) -> np.ndarray:
    """float64 1-D array of the non-NaN values."""
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[~np.isnan(array)]


def run_quietly(function: Callable[[], Any]) -> tuple[Any, str]:
    """``function()`` with warnings captured; returns the result and the warning texts."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = function()
    return result, "; ".join(dict.fromkeys(str(w.message).split("\n")[0] for w in caught))


def holm_adjust(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values, equal to statsmodels ``multipletests(method="holm")``.

    Sorted ascending, ``adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))`` (1-based j).
    Written in numpy because statsmodels runs a full ``gc.collect()`` per call (0.5 s in a
    process holding torch); the tests check it against statsmodels. NaN entries stay NaN
    and are not counted in the family. Returns float64 (n,).
    """
    p = np.asarray(p_values, dtype=np.float64).ravel()
    adjusted = np.full(p.shape, np.nan)
    defined = np.flatnonzero(np.isfinite(p))
    if defined.size:
        order = defined[np.argsort(p[defined], kind="stable")]
        m = order.size
        steps = np.minimum(1.0, (m - np.arange(m)) * p[order])
        adjusted[order] = np.maximum.accumulate(steps)
    return adjusted


# ----------------------------------------------------------------------------- omnibus tests

def omnibus_row(metric: str, test: str, design: str, **values: Any) -> dict[str, Any]:
    """An all-NaN omnibus result row with ``values`` filled in."""
    row: dict[str, Any] = {"metric": metric, "test": test, "design": design, "statistic": np.nan,
                           "df": np.nan, "n": 0, "p": np.nan, "reason": "", "note": ""}
    row.update(values)
    return row


def kruskal_row(metric: str, samples: dict[Any, np.ndarray]) -> dict[str, Any]:
    """Kruskal-Wallis H across the groups' values (empty groups left out, noted)."""
    row = omnibus_row(metric, "Kruskal-Wallis", "independent",
                      n=int(sum(len(v) for v in samples.values())))
    filled = {label: values for label, values in samples.items() if len(values)}
    if len(filled) < len(samples):
        row["note"] = "groups without values left out: " + ", ".join(
            str(label) for label in samples if label not in filled)
    if len(samples) < 2:
        return {**row, "reason": ONE_GROUP}
    if len(filled) < 2:
        return {**row, "reason": "fewer than 2 groups have values"}
    pooled = np.concatenate(list(filled.values()))
    if np.all(pooled == pooled[0]):
        return {**row, "reason": "all values are equal"}
    result, caught = run_quietly(lambda: stats.kruskal(*filled.values()))
    return {**row, "statistic": float(result.statistic), "df": len(filled) - 1,
            "p": float(result.pvalue), "note": "; ".join(filter(None, [row["note"], caught]))}


def complete_matrix(wide: pd.DataFrame, word: str = "image") -> tuple[np.ndarray, str]:
    """(n_units, k) float matrix of units with a value in every group, and a note on the rest."""
    complete = wide.dropna()
    left_out = len(wide) - len(complete)
    note = f"{left_out} {word}(s) without a value in every group left out" if left_out else ""
    return complete.to_numpy(dtype=np.float64), note


def friedman_row(metric: str, matrix: np.ndarray, note: str) -> dict[str, Any]:
    """Friedman chi-square on a (n_units, k) complete matrix; needs k >= 3 and 2 units."""
    row = omnibus_row(metric, "Friedman", "paired", n=len(matrix), note=note)
    k = matrix.shape[1]
    if k < 2:
        return {**row, "reason": ONE_GROUP}
    if k < 3:
        return {**row, "reason": "needs at least 3 groups (2 groups: see the Wilcoxon test)"}
    if len(matrix) < 2:
        return {**row, "reason": f"only {len(matrix)} unit(s) with a value in every group"}
    if np.all(matrix == matrix[:, :1]):
        return {**row, "reason": "every unit has the same value in all groups"}
    result, caught = run_quietly(lambda: stats.friedmanchisquare(*matrix.T))
    return {**row, "statistic": float(result.statistic), "df": k - 1, "p": float(result.pvalue),
            "note": "; ".join(filter(None, [note, caught]))}


def cochran_row(metric: str, matrix: np.ndarray, note: str) -> dict[str, Any]:
    """Cochran's Q on a (n_units, k) 0/1 complete matrix."""
    row = omnibus_row(metric, "Cochran's Q", "paired", n=len(matrix), note=note)
    if matrix.shape[1] < 2:
        return {**row, "reason": ONE_GROUP}
    if len(matrix) == 0:
        return {**row, "reason": "no image with a value in every group"}
    if np.all(matrix == matrix[:, :1]):
        return {**row, "reason": "no image differs between groups (Q undefined)"}
    result, caught = run_quietly(lambda: cochrans_q(matrix))
    return {**row, "statistic": float(result.statistic), "df": int(result.df),
            "p": float(result.pvalue), "note": "; ".join(filter(None, [note, caught]))}


# ----------------------------------------------------------------------------- pairwise tests

def pair_row(metric: str, test: str, design: str, a: Any, b: Any, **values: Any) -> dict[str, Any]:
    """An all-NaN pairwise result row with ``values`` filled in."""
    row: dict[str, Any] = {"metric": metric, "test": test, "design": design, "group_a": a,
                           "group_b": b, "n_a": 0, "n_b": 0, "statistic": np.nan, "p": np.nan,
                           "effect": np.nan, "effect_name": "", "reason": "", "note": ""}
    row.update(values)
    return row


def dunn_rows(metric: str, samples: dict[Any, np.ndarray]) -> list[dict[str, Any]]:
    """Dunn's test (scikit-posthocs, Holm) for every pair; effect = median(a) - median(b)."""
    labels = list(samples)
    filled = [i for i, label in enumerate(labels) if len(samples[label])]
    pooled = np.concatenate([samples[labels[i]] for i in filled]) if filled else np.empty(0)
    constant = len(pooled) > 0 and bool(np.all(pooled == pooled[0]))
    p_raw = p_holm = None
    if len(filled) >= 2 and not constant:
        long = pd.DataFrame({"value": pooled, "code": np.concatenate(
            [np.full(len(samples[labels[i]]), i) for i in filled])})
        p_raw = scikit_posthocs.posthoc_dunn(long, val_col="value", group_col="code")
        pairs = list(combinations(filled, 2))
        adjusted = holm_adjust([float(p_raw.loc[i, j]) for i, j in pairs])
        p_holm = {pair: float(value) for pair, value in zip(pairs, adjusted, strict=True)}
    rows = []
    for i, j in combinations(range(len(labels)), 2):
        a, b = samples[labels[i]], samples[labels[j]]
        row = pair_row(metric, "Dunn", "independent", labels[i], labels[j], n_a=len(a), n_b=len(b),
                       effect_name="median difference")
        if len(a) and len(b):
            row["effect"] = float(np.median(a) - np.median(b))
        if p_raw is not None and p_holm is not None and len(a) and len(b):
            row.update(p=float(p_raw.loc[i, j]), p_holm=p_holm[(i, j)])
        else:
            row["reason"] = ("all values are equal" if constant and len(a) and len(b)
                             else f"no values in group {labels[i] if not len(a) else labels[j]}")
        rows.append(row)
    return rows


def wilcoxon_pair(metric: str, x: np.ndarray, y: np.ndarray, a: Any, b: Any) -> dict[str, Any]:
    """Wilcoxon signed-rank (scipy defaults: zeros dropped, method "auto") on paired (n,) arrays."""
    differences = x - y
    row = pair_row(metric, "Wilcoxon signed-rank", "paired", a, b, n_a=len(x), n_b=len(y),
                   effect_name="median paired difference")
    if len(differences) == 0:
        return {**row, "reason": "no image with a value in every group"}
    row["effect"] = float(np.median(differences))
    if np.all(differences == 0):
        return {**row, "reason": "all paired differences are zero"}
    result, caught = run_quietly(lambda: stats.wilcoxon(x, y))
    return {**row, "statistic": float(result.statistic), "p": float(result.pvalue), "note": caught}


def mcnemar_pair(metric: str, x: np.ndarray, y: np.ndarray, a: Any, b: Any) -> dict[str, Any]:
    """Exact McNemar (binomial on the discordant pairs) on paired 0/1 (n,) arrays."""
    only_a = int(np.sum((x == 1) & (y == 0)))
    only_b = int(np.sum((x == 0) & (y == 1)))
    row = pair_row(metric, "McNemar (exact)", "paired", a, b, n_a=len(x), n_b=len(y),
                   effect_name="difference in proportions")
    if len(x) == 0:
        return {**row, "reason": "no image with a value in every group"}
    row["effect"] = float(x.mean() - y.mean())
    if only_a + only_b == 0:
        return {**row, "reason": "no discordant images (b + c = 0)"}
    both = int(np.sum((x == 1) & (y == 1)))
    neither = int(np.sum((x == 0) & (y == 0)))
    result = mcnemar([[both, only_a], [only_b, neither]], exact=True)
    return {**row, "statistic": float(result.statistic), "p": float(result.pvalue)}


def paired_rows(metric: str, matrix: np.ndarray, labels: list[Any], *,
                binary: bool) -> list[dict[str, Any]]:
    """Every pair of columns of a (n_units, k) complete matrix: McNemar or Wilcoxon, then Holm."""
    test = mcnemar_pair if binary else wilcoxon_pair
    rows = [test(metric, matrix[:, i], matrix[:, j], labels[i], labels[j])
            for i, j in combinations(range(len(labels)), 2)]
    for row, adjusted in zip(rows, holm_adjust([row["p"] for row in rows]), strict=True):
        row["p_holm"] = float(adjusted)
    return rows
