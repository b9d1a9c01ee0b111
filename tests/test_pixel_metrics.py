"""Pixel metrics: hand-computed FCN metrics and Dice, sklearn cross-checks, HD95 and NaN rules."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn import metrics as skm

from spinekit.evaluation.pixel import boundary, confusion_matrix, dice, hausdorff95, pixel_metrics

TRUTH = np.array([[0, 0, 1, 1],
                  [0, 1, 1, 1],
                  [0, 0, 2, 2]])
PRED = np.array([[0, 0, 1, 0],
                 [0, 1, 1, 2],
                 [0, 1, 2, 2]])


def test_hand_computed_fcn_metrics_and_dice() -> None:
    # rows = truth:   class 0: 4 right, 1 -> class 1; class 1: 1 -> 0, 3 right, 1 -> 2; class 2: 2 right
    confusion = confusion_matrix(TRUTH, PRED, 2)
    assert confusion.dtype == np.int64
    assert confusion.tolist() == [[4, 1, 0], [1, 3, 1], [0, 0, 2]]
    # t = (5, 5, 2), p = (5, 4, 3), T = 12
    m = pixel_metrics(confusion)
    assert m["pixel_accuracy"] == pytest.approx(9 / 12)                        # (4 + 3 + 2) / 12
    assert m["mean_accuracy"] == pytest.approx((4 / 5 + 3 / 5 + 2 / 2) / 3)   # = 0.8
    # IoU: 4 / (5 + 5 - 4) = 2/3, 3 / (5 + 4 - 3) = 1/2, 2 / (2 + 3 - 2) = 2/3 -> mean 11/18
    assert m["mean_iou"] == pytest.approx(11 / 18)
    # FW IoU: (5 * 2/3 + 5 * 1/2 + 2 * 2/3) / 12 = 43/72
    assert m["fw_iou"] == pytest.approx(43 / 72)
    # Dice: class 1: 2*3 / (5 + 4) = 2/3, class 2: 2*2 / (2 + 3) = 4/5 -> mean 11/15
    assert dice(TRUTH, PRED, 2) == pytest.approx(11 / 15)
    # a class absent from both maps changes nothing
    wider = pixel_metrics(confusion_matrix(TRUTH, PRED, 3))
    assert wider == pytest.approx(m)
    assert dice(TRUTH, PRED, 3) == pytest.approx(11 / 15)


def test_class_only_in_prediction_or_only_in_truth() -> None:
    # class 2 predicted only: n00 = 1, n02 = 1, n11 = 2; t = (2, 2, 0), p = (1, 2, 1)
    m = pixel_metrics(confusion_matrix(np.array([[0, 0], [1, 1]]), np.array([[0, 2], [1, 1]]), 2))
    assert m["pixel_accuracy"] == pytest.approx(3 / 4)
    assert m["mean_accuracy"] == pytest.approx((1 / 2 + 1) / 2)  # class 2 has no accuracy: left out
    assert m["mean_iou"] == pytest.approx((1 / 2 + 1 + 0) / 3)   # ... but IoU 0, counted
    assert m["fw_iou"] == pytest.approx((2 * 1 / 2 + 2 * 1) / 4)  # weight t_2 = 0
    assert dice(np.array([[0, 0], [1, 1]]), np.array([[0, 2], [1, 1]]), 2) == pytest.approx((1 + 0) / 2)
    # class 2 in truth only, background predicted there: t = (0, 2, 2), p = (2, 2, 0)
    m = pixel_metrics(confusion_matrix(np.array([[2, 2], [1, 1]]), np.array([[0, 0], [1, 1]]), 2))
    assert m["pixel_accuracy"] == pytest.approx(1 / 2)
    assert m["mean_accuracy"] == pytest.approx((1 + 0) / 2)  # background has no truth pixel
    assert m["mean_iou"] == pytest.approx((0 + 1 + 0) / 3)   # background predicted only: IoU 0
    assert m["fw_iou"] == pytest.approx((2 * 1 + 2 * 0) / 4)


def test_nan_rules() -> None:
    empty = confusion_matrix(np.zeros((0, 0), dtype=int), np.zeros((0, 0), dtype=int), 2)
    assert empty.shape == (3, 3) and empty.sum() == 0
    assert all(math.isnan(v) for v in pixel_metrics(empty).values())
    background = np.zeros((4, 5), dtype=int)
    m = pixel_metrics(confusion_matrix(background, background, 2))
    assert m == {"pixel_accuracy": 1.0, "mean_accuracy": 1.0, "mean_iou": 1.0, "fw_iou": 1.0}
    assert math.isnan(dice(background, background, 2))  # no foreground at all: undefined, not 0 or 1
    one = background.copy()
    one[1, 1] = 1
    assert dice(one, background, 2) == 0.0 and dice(one, one, 2) == 1.0
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.2"):
        confusion_matrix(background + 3, background, 2)
    with pytest.raises(ValueError, match="shapes differ"):
        confusion_matrix(background, background.T, 2)


def test_against_sklearn_on_random_maps() -> None:
    rng = np.random.default_rng(0)
    for trial in range(6):
        k = 4
        truth = rng.integers(0, k + 1, (23, 31))
        pred = np.where(rng.uniform(size=truth.shape) < 0.6, truth, rng.integers(0, k + 1, truth.shape))
        if trial % 2:  # class 3 in the prediction only, class 4 absent from both
            truth[truth >= 3] = 0
            pred[pred == 4] = 1
        y_true, y_pred = truth.ravel(), pred.ravel()
        labels = np.union1d(y_true, y_pred)
        confusion = confusion_matrix(truth, pred, k)
        np.testing.assert_array_equal(confusion, skm.confusion_matrix(y_true, y_pred, labels=range(k + 1)))
        m = pixel_metrics(confusion)
        assert m["pixel_accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
            assert m["mean_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
        per_class = skm.jaccard_score(y_true, y_pred, labels=labels, average=None)
        assert m["mean_iou"] == pytest.approx(per_class.mean())
        assert m["fw_iou"] == pytest.approx(skm.jaccard_score(y_true, y_pred, labels=labels,
                                                              average="weighted"))
        fg = labels[labels > 0]
        f1 = skm.f1_score(y_true, y_pred, labels=fg, average=None)
        assert dice(truth, pred, k) == pytest.approx(f1.mean())


def _square(shift: int) -> np.ndarray:
    mask = np.zeros((20, 30), dtype=bool)
    mask[3:13, 5 + shift:15 + shift] = True  # 10 x 10
    return mask


def test_hausdorff95_offset_squares_and_anisotropic_spacing() -> None:
    # Square B = A shifted 2 columns right. Boundary distances B -> A: 16 pixels 0 (shared top and
    # bottom rows), 4 of 1, 16 of 2 (the whole right side among them); the 95th percentile sits
    # at rank 0.95 * 35 = 33.25 of 36 -> 2. A -> B mirrors it: HD95 = 2 px.
    a, b = _square(0), _square(2)
    assert hausdorff95(a, b) == pytest.approx(2.0)
    assert hausdorff95(b, a) == pytest.approx(2.0)
    # (row, col) = (0.5, 2.0) mm: the right side is 2 columns = 4 mm away, 10 of 36 distances are 4 mm
    assert hausdorff95(a, b, spacing=(0.5, 2.0)) == pytest.approx(4.0)
    # (2.0, 0.5) mm: 2 columns = 1 mm, rows are 2 mm apart, so every nonzero distance is 0.5 or 1 mm
    assert hausdorff95(a, b, spacing=(2.0, 0.5)) == pytest.approx(1.0)
    assert hausdorff95(a, a) == 0.0 and hausdorff95(a, a, spacing=(0.3, 0.7)) == 0.0
    assert math.isnan(hausdorff95(a, np.zeros_like(a))) and math.isnan(hausdorff95(np.zeros_like(a), a))
    with pytest.raises(ValueError, match="spacing"):
        hausdorff95(a, b, spacing=(0.0, 1.0))


def _reference_hd95(a: np.ndarray, b: np.ndarray, spacing: tuple[float, float]) -> float:
    """Brute force: boundary = pixels with a 4-neighbour outside the mask; all pairwise distances."""
    def edge(mask: np.ndarray) -> np.ndarray:
        p = np.pad(mask, 1)
        inner = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
        return np.argwhere(mask & ~inner) * np.asarray(spacing)

    d = cdist(edge(a), edge(b))
    return float(max(np.percentile(d.min(axis=1), 95), np.percentile(d.min(axis=0), 95)))


def test_hausdorff95_matches_brute_force_on_random_blobs() -> None:
    rng = np.random.default_rng(5)
    rows, cols = np.mgrid[0:40, 0:50]
    for _ in range(5):
        blobs = []
        for _ in range(2):
            cy, cx = rng.uniform(5, 35), rng.uniform(5, 45)
            ry, rx = rng.uniform(3, 12, 2)
            blobs.append(((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1)
        blobs[0][0:3, 0:6] = True  # touches the image border
        spacing = (float(rng.uniform(0.2, 2)), float(rng.uniform(0.2, 2)))
        assert hausdorff95(blobs[0], blobs[1], spacing) == pytest.approx(
            _reference_hd95(blobs[0], blobs[1], spacing), rel=1e-9)
    ring = boundary(_square(0))
    assert ring.sum() == 36 and not ring[5:11, 7:13].any()
