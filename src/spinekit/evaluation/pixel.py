"""Pixel metrics on class maps: confusion matrix, FCN metrics, Dice and HD95 (pure numpy/scipy).

A *class map* is an ``(H, W)`` integer array: 0 = background, 1..K = classes.
The confusion matrix ``n`` is ``(K+1, K+1)`` int64 with ``n[i, j]`` = pixels of
truth class ``i`` predicted as class ``j`` (rows = truth, background included).
With ``t_i = sum_j n[i, j]`` (truth pixels of class i), ``p_i = sum_j n[j, i]``
(predicted pixels of class i) and ``T = sum_i t_i``, the metrics of Long et al.,
"Fully Convolutional Networks for Semantic Segmentation" (CVPR 2015), are::

    pixel accuracy = sum_i n_ii / T
    mean accuracy  = mean over {i : t_i > 0} of n_ii / t_i
    mean IoU       = mean over {i : t_i + p_i > 0} of n_ii / (t_i + p_i - n_ii)
    FW IoU         = sum over {i : t_i > 0} of (t_i / T) * n_ii / (t_i + p_i - n_ii)

The paper divides by the number of classes ``n_cl``; which classes count is
fixed here as in the FCN reference scoring code (NaN-mean of per-class values):
a class absent from both truth and prediction is left out of every mean; a
class in the prediction only has IoU 0 and counts in the mean IoU, has no
accuracy (0/0) and is left out of the mean accuracy (its wrongly predicted
pixels already lower the accuracy of the truth classes they belong to) and has
weight 0 in FW IoU; a class in the truth only has accuracy 0 and IoU 0 and
counts in every mean. With no pixel at all (``T = 0``) every metric is NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

PIXEL_METRICS = ("pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou")


def _check_maps(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Both maps as flat int64 arrays; ValueError on shape mismatch or labels outside 0..K."""
    t = np.asarray(truth)
    p = np.asarray(pred)
    if t.shape != p.shape:
        raise ValueError(f"truth and prediction shapes differ: {t.shape} vs {p.shape}")
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    for name, arr in (("truth", t), ("prediction", p)):
        if arr.size and (arr.min() < 0 or arr.max() > num_classes):
            raise ValueError(f"{name} labels must lie in 0..{num_classes}, "
                             f"found {int(arr.min())}..{int(arr.max())}")
    return t.reshape(-1).astype(np.int64, copy=False), p.reshape(-1).astype(np.int64, copy=False)


def confusion_matrix(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``(K+1, K+1)`` int64 confusion matrix of two class maps (rows = truth, columns = prediction).

    ``truth`` and ``pred`` are integer arrays of the same shape (any, e.g.
    ``(H, W)`` or the 1-D selection of evaluated pixels) with labels in
    ``0..num_classes``; one ``np.bincount`` over ``truth * (K+1) + pred``.
    """
    t, p = _check_maps(truth, pred, num_classes)
    size = num_classes + 1
    counts = np.bincount(t * size + p, minlength=size * size)
    return counts.reshape(size, size).astype(np.int64, copy=False)


def class_scores(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class accuracy ``n_ii / t_i`` and IoU, each ``(K+1,)`` float64, NaN where 0/0."""
    n = np.asarray(confusion, dtype=np.float64)
    if n.ndim != 2 or n.shape[0] != n.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {n.shape}")
    diag = np.diag(n)
    truth = n.sum(axis=1)
    union = truth + n.sum(axis=0) - diag
    with np.errstate(divide="ignore", invalid="ignore"):
        accuracy = np.where(truth > 0, diag / truth, np.nan)
        iou = np.where(union > 0, diag / union, np.nan)
    return accuracy, iou


def pixel_metrics(confusion: np.ndarray) -> dict[str, float]:
    """FCN metrics of a confusion matrix (see the module docstring for formulas and NaN rules).

    ``confusion``: ``(K+1, K+1)`` counts, rows = truth. Returns ``pixel_accuracy``,
    ``mean_accuracy``, ``mean_iou``, ``fw_iou`` (floats in [0, 1], NaN when the
    matrix holds no pixel).
    """
    n = np.asarray(confusion, dtype=np.float64)
    accuracy, iou = class_scores(n)
    truth = n.sum(axis=1)
    total = float(truth.sum())
    if total <= 0:
        return {name: float("nan") for name in PIXEL_METRICS}
    in_truth = truth > 0
    present = ~np.isnan(iou)
    return {
        "pixel_accuracy": float(np.trace(n) / total),
        "mean_accuracy": float(accuracy[in_truth].mean()),
        "mean_iou": float(iou[present].mean()),
        "fw_iou": float(np.sum(truth[in_truth] * iou[in_truth]) / total),
    }


def dice_from_confusion(confusion: np.ndarray) -> float:
    """Mean foreground Dice of a ``(K+1, K+1)`` confusion matrix (see :func:`dice`)."""
    n = np.asarray(confusion, dtype=np.float64)
    diag = np.diag(n)[1:]
    sizes = n.sum(axis=1)[1:] + n.sum(axis=0)[1:]
    present = sizes > 0
    if not present.any():
        return float("nan")
    return float(np.mean(2.0 * diag[present] / sizes[present]))


def dice(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> float:
    """Mean Dice ``2 |A_c ∩ B_c| / (|A_c| + |B_c|)`` over foreground classes ``c`` in either map.

    ``truth``, ``pred``: class maps (same shape, labels ``0..num_classes``). A
    class absent from both maps is left out; a class in one map only scores 0.
    Returns NaN when neither map has any foreground pixel (Dice is undefined
    there, so it is never reported as 0 or 1).
    """
    return dice_from_confusion(confusion_matrix(truth, pred, num_classes))


def boundary(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a binary mask: ``mask & ~binary_erosion(mask)`` (bool, same shape).

    Erosion with scipy's default structuring element (4-connected cross) and
    everything outside the array counted as background, so a mask pixel is on the
    boundary when one of its 4 neighbours is background or outside the image.
    """
    m = np.asarray(mask, dtype=bool)
    return np.asarray(m & ~ndimage.binary_erosion(m), dtype=bool)


def _directed_distances(source: np.ndarray, target: np.ndarray,
                        sampling: Sequence[float] | None) -> np.ndarray:
    """Distances (float64, 1-D) from every True pixel of ``source`` to the nearest of ``target``."""
    field = ndimage.distance_transform_edt(~target, sampling=sampling)
    return np.asarray(field, dtype=np.float64)[source]


def hausdorff95(truth_fg: np.ndarray, pred_fg: np.ndarray,
                spacing: Sequence[float] | None = None) -> float:
    """Symmetric 95th-percentile Hausdorff distance between the boundaries of two ``(H, W)`` masks.

    Convention of MONAI's ``compute_hausdorff_distance(percentile=95,
    directed=False)``: boundaries ``A``, ``B`` as in :func:`boundary`; for every
    pixel of ``A`` its Euclidean distance to the nearest pixel of ``B``
    (``scipy.ndimage.distance_transform_edt`` with ``sampling=spacing``) and vice
    versa; HD95 = max(P95(A -> B), P95(B -> A)), ``P95`` being
    ``numpy.percentile(d, 95)`` (linear interpolation). (medpy's ``hd95`` instead
    takes the 95th percentile of both directions pooled.) ``spacing`` is the
    pixel size ``(row, col)``, e.g. in mm; without it distances are in pixels.
    Returns NaN when either mask is empty, 0.0 when the masks are identical.
    """
    a = np.asarray(truth_fg, dtype=bool)
    b = np.asarray(pred_fg, dtype=bool)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"masks must be 2-D of the same shape, got {a.shape} and {b.shape}")
    if spacing is not None and (len(spacing) != 2 or min(float(s) for s in spacing) <= 0):
        raise ValueError(f"spacing must be two positive numbers (row, col), got {spacing}")
    if not a.any() or not b.any():
        return float("nan")
    rows = np.flatnonzero((a | b).any(axis=1))
    cols = np.flatnonzero((a | b).any(axis=0))
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    # cropping to the union's bounding box changes nothing: no boundary lies outside it
    edge_a, edge_b = boundary(a[window]), boundary(b[window])
    sampling = None if spacing is None else [float(s) for s in spacing]
    forward = _directed_distances(edge_a, edge_b, sampling)
    backward = _directed_distances(edge_b, edge_a, sampling)
    return float(max(np.percentile(forward, 95), np.percentile(backward, 95)))
