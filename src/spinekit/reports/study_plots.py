"""Plots for a model comparison / ablation study (PNG, matplotlib Agg canvas, no pyplot state).

- :func:`density_plots`: one PNG per metric, one Gaussian kernel density curve per group;
- :func:`box_plots`: one PNG per metric, one box (with the points) per group;
- :func:`fold_plot`: one metric per fold, one line per group (settings across folds).

Pass the per-image table of :func:`spinekit.evaluation.statistics.per_unit_means` to
plot one value per image and group (the unit the tests use), or the raw long table
to plot every fold row. NaN values are left out and counted in the legend. A
degenerate group (fewer than 2 values, or all equal) has no density: it is drawn as
dashed vertical lines at its values and marked in the legend. Every file is written
atomically.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

from spinekit.errors import InputError
from spinekit.evaluation.statistics import prepare_table
from spinekit.io.atomic import atomic_write_bytes

__all__ = ["box_plots", "density_plots", "fold_plot"]

_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")


def _colour(index: int) -> str:
    return _COLOURS[index % len(_COLOURS)]


def _file_names(prefix: str, metrics: Sequence[str]) -> list[str]:
    """``prefix_metric.png`` per metric: anything but letters, digits, ``.``, ``_``, ``-`` becomes
    ``_``; a name already taken gets ``_2``, ``_3``, ..."""
    names: list[str] = []
    for metric in metrics:
        stem = f"{prefix}_{re.sub(r'[^A-Za-z0-9._-]+', '_', metric).strip('._') or 'metric'}"
        name, count = f"{stem}.png", 1
        while name in names:
            count += 1
            name = f"{stem}_{count}.png"
        names.append(name)
    return names


def _figure(width: float = 6.4, height: float = 4.2) -> tuple[Figure, Any]:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    ax.grid(True, color="#e5e5e5", linewidth=0.6)
    ax.spines[["top", "right"]].set_visible(False)
    return figure, ax


def _save(figure: Figure, path: Path, dpi: int) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _samples(data: pd.DataFrame, group: str, metric: str) -> list[tuple[Any, np.ndarray, int]]:
    """Per group (order of first appearance): label, finite values (float64 (n,)), NaN count."""
    out = []
    for label in pd.unique(data[group]):
        column = data.loc[data[group] == label, metric].to_numpy(dtype=np.float64)
        values = column[~np.isnan(column)]
        out.append((label, values, len(column) - len(values)))
    return out


def _name(label: Any) -> str:
    """Legend text of a group label (matplotlib hides labels starting with ``_``)."""
    text = str(label)
    return f" {text}" if text.startswith("_") else text


def _count_text(values: np.ndarray, n_nan: int) -> str:
    return f"n={len(values)}" + (f", {n_nan} NaN" if n_nan else "")


def _kde(values: np.ndarray) -> Any:
    """A fitted ``gaussian_kde`` or None when the values cannot have a density."""
    if len(values) < 2 or np.all(values == values[0]):
        return None
    try:
        return stats.gaussian_kde(values)
    except (np.linalg.LinAlgError, ValueError):
        return None


def _plot_range(samples: Sequence[tuple[Any, np.ndarray, int]]) -> tuple[float, float]:
    pooled = np.concatenate([values for _, values, _ in samples])
    low, high = float(pooled.min()), float(pooled.max())
    span = high - low
    pad = 0.15 * span if span > 0 else max(0.1 * abs(low), 0.5)
    return low - pad, high + pad


def _density_axes(ax: Any, samples: Sequence[tuple[Any, np.ndarray, int]], metric: str) -> None:
    if not any(len(values) for _, values, _ in samples):
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes,
                color="#777777")
    else:
        low, high = _plot_range(samples)
        grid = np.linspace(low, high, 256)
        for index, (label, values, n_nan) in enumerate(samples):
            colour, counts = _colour(index), _count_text(values, n_nan)
            kde = _kde(values)
            if len(values) == 0:
                ax.plot([], [], color=colour, label=f"{_name(label)} (no values; {n_nan} NaN)")
            elif kde is None:
                for value in np.unique(values):
                    ax.axvline(value, color=colour, linestyle="--", linewidth=1.4)
                ax.plot([], [], color=colour, linestyle="--",
                        label=f"{_name(label)} ({counts}; no density: {_degenerate_text(values)})")
            else:
                ax.plot(grid, kde(grid), color=colour, linewidth=1.6, label=f"{_name(label)} ({counts})")
                ax.plot(values, np.zeros(len(values)), "|", color=colour, markersize=10, alpha=0.6)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7, frameon=False)
    ax.set_title(f"{metric}: density per group", loc="left")
    ax.set_xlabel(metric)
    ax.set_ylabel("density")


def _degenerate_text(values: np.ndarray) -> str:
    return f"all values {values[0]:.4g}" if len(values) > 1 else f"one value {values[0]:.4g}"


def density_plots(table: pd.DataFrame, *, group: str, metrics: Sequence[str], out_dir: str | Path,
                  dpi: int = 100) -> list[Path]:
    """One ``density_<metric>.png`` per metric in ``out_dir``; returns the paths in metric order.

    Each group's non-NaN values get a Gaussian kernel density curve (scipy
    ``gaussian_kde``, Scott's bandwidth) and a rug of the values.
    """
    metrics = list(metrics)
    data = prepare_table(table, group, metrics)
    paths = []
    for metric, name in zip(metrics, _file_names("density", metrics), strict=True):
        figure, ax = _figure()
        _density_axes(ax, _samples(data, group, metric), metric)
        paths.append(_save(figure, Path(out_dir) / name, dpi))
    return paths


def box_plots(table: pd.DataFrame, *, group: str, metrics: Sequence[str], out_dir: str | Path,
              dpi: int = 100) -> list[Path]:
    """One ``box_<metric>.png`` per metric; returns the paths in metric order.

    Per group: a box (median, quartiles, whiskers at 1.5 IQR) and the points, jittered.
    """
    metrics = list(metrics)
    data = prepare_table(table, group, metrics)
    jitter = np.random.default_rng(0)
    paths = []
    for metric, name in zip(metrics, _file_names("box", metrics), strict=True):
        samples = _samples(data, group, metric)
        figure, ax = _figure(max(4.0, 1.2 * len(samples) + 2.0), 4.2)
        labels = [f"{label}\n({_count_text(values, n_nan)})" for label, values, n_nan in samples]
        ax.boxplot([values for _, values, _ in samples], showfliers=False)
        ax.set_xticks(np.arange(1, len(samples) + 1), labels)
        for index, (_, values, _) in enumerate(samples):
            x = index + 1 + jitter.uniform(-0.12, 0.12, len(values))
            ax.plot(x, values, "o", color=_colour(index), markersize=3, alpha=0.6)
        ax.set_title(f"{metric} per group", loc="left")
        ax.set_ylabel(metric)
        ax.tick_params(axis="x", labelsize=8)
        paths.append(_save(figure, Path(out_dir) / name, dpi))
    return paths


def fold_plot(fold_table: pd.DataFrame, group: str, metric: str, out: str | Path, *,
              pair_by: str = "fold", dpi: int = 100) -> Path:
    """``metric`` per fold (x: the ``pair_by`` values, sorted) with one line per group; writes ``out``.

    Expects one row per group and fold (InputError otherwise). Missing or NaN folds
    leave a gap; the legend gives each group's mean over its defined folds.
    """
    data = prepare_table(fold_table, group, [metric], keys=[pair_by])
    duplicated = data.duplicated([group, pair_by])
    if duplicated.any():
        first = data[duplicated].iloc[0]
        raise InputError(None, f"more than one row for {group}={first[group]!r}, "
                               f"{pair_by}={first[pair_by]!r}")
    folds = sorted(pd.unique(data[pair_by]), key=lambda value: (str(type(value)), value))
    positions = {fold: index for index, fold in enumerate(folds)}
    figure, ax = _figure(max(5.0, 0.6 * len(folds) + 3.0), 4.0)
    for index, label in enumerate(pd.unique(data[group])):
        sub = data[data[group] == label]
        y = np.full(len(folds), np.nan)
        y[[positions[fold] for fold in sub[pair_by]]] = sub[metric].to_numpy(dtype=np.float64)
        defined = y[~np.isnan(y)]
        mean = f"mean {defined.mean():.4g}" if len(defined) else "no values"
        ax.plot(np.arange(len(folds)), y, marker="o", color=_colour(index), linewidth=1.4,
                label=f"{_name(label)} ({mean})")
    ax.set_xticks(np.arange(len(folds)), [str(fold) for fold in folds])
    ax.set_xlabel(pair_by)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per {pair_by}", loc="left")
    ax.legend(fontsize=7, frameon=False)
    return _save(figure, Path(out), dpi)
