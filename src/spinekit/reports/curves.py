"""Training curves of a run as one small PNG (matplotlib, Agg canvas, no pyplot state).

Panels: losses vs step (log scale, raw values faint plus a running mean),
learning rate vs step, throughput (images/s) vs step, validation AP / AP50
(box and mask, in %) vs epoch.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

LOSS_KEYS = ("loss", "loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness",
             "loss_rpn_box_reg", "loss_ce", "loss_dice")
VAL_KEYS = (("bbox_AP", "box AP"), ("bbox_AP50", "box AP50"), ("segm_AP", "mask AP"),
            ("segm_AP50", "mask AP50"))
_COLOURS = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#D55E00", "#CC79A7", "#0072B2")


def _finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _series(entries: Sequence[dict[str, Any]], x_key: str,
            y_key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` float arrays of the entries having finite numbers for both keys."""
    pairs = [(_finite(e.get(x_key)), _finite(e.get(y_key))) for e in entries]
    kept = [(x, y) for x, y in pairs if x is not None and y is not None]
    return np.asarray([x for x, _ in kept], dtype=np.float64), np.asarray([y for _, y in kept],
                                                                         dtype=np.float64)


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` points (shorter at the start); same length as ``values``."""
    if window <= 1 or len(values) == 0:
        return values.astype(np.float64)
    cumulative = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    idx = np.arange(1, len(values) + 1)
    start = np.maximum(idx - window, 0)
    return (cumulative[idx] - cumulative[start]) / (idx - start)


def _placeholder(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#777777")
    ax.set_xticks([])
    ax.set_yticks([])


def _plot_losses(ax: Any, train: Sequence[dict[str, Any]]) -> None:
    ax.set_title("Training losses", loc="left")
    drawn = 0
    for key in LOSS_KEYS:
        x, y = _series(train, "step", key)
        keep = y > 0
        x, y = x[keep], y[keep]
        if len(y) == 0:
            continue
        colour = _COLOURS[drawn % len(_COLOURS)]
        window = max(1, len(y) // 40)
        if window > 1:
            ax.plot(x, y, color=colour, alpha=0.18, linewidth=0.8)
        ax.plot(x, running_mean(y, window), color=colour, linewidth=1.8 if key == "loss" else 1.1,
                label="total" if key == "loss" else key.removeprefix("loss_"))
        drawn += 1
    if not drawn:
        _placeholder(ax, "no loss values logged")
        return
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend(fontsize=7, frameon=False, ncol=2)


def _plot_simple(ax: Any, train: Sequence[dict[str, Any]], key: str, title: str, *, log: bool,
                 smooth: bool) -> None:
    ax.set_title(title, loc="left")
    x, y = _series(train, "step", key)
    if len(y) == 0:
        _placeholder(ax, f"no {key} logged")
        return
    window = max(1, len(y) // 40) if smooth else 1
    if window > 1:
        ax.plot(x, y, color="#0072B2", alpha=0.2, linewidth=0.8)
    ax.plot(x, running_mean(y, window), color="#0072B2", linewidth=1.4)
    if log and np.all(y > 0) and y.max() / max(y.min(), 1e-30) > 20:
        ax.set_yscale("log")
    ax.set_xlabel("step")


def _plot_val(ax: Any, val: Sequence[dict[str, Any]]) -> None:
    ax.set_title("Validation (%)", loc="left")
    drawn = False
    for colour, (key, label) in zip(_COLOURS[1:], VAL_KEYS, strict=False):
        x, y = _series(val, "epoch", key)
        keep = y >= 0
        if keep.any():
            ax.plot(x[keep], 100.0 * y[keep], marker="o", markersize=3, color=colour,
                    linewidth=1.2, linestyle="-" if "50" not in key else "--", label=label)
            drawn = True
    if not drawn:
        _placeholder(ax, "no validation yet")
        return
    ax.set_xlabel("epoch")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, frameon=False)


def curves_png(train: Sequence[dict[str, Any]], val: Sequence[dict[str, Any]], *,
               dpi: int = 80) -> bytes | None:
    """PNG bytes of the 2 x 2 training-curve figure, or None when nothing was logged."""
    if not train and not val:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.0, 6.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    _plot_losses(axes[0, 0], train)
    _plot_simple(axes[0, 1], train, "lr", "Learning rate", log=True, smooth=False)
    _plot_simple(axes[1, 0], train, "images_per_s", "Throughput (images/s)", log=False,
                 smooth=True)
    _plot_val(axes[1, 1], val)
    for ax in axes.flat:
        ax.grid(True, color="#e5e5e5", linewidth=0.6)
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(labelsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
