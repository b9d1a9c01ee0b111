"""Instance matching, recognition and composite recognition of one image (pure numpy/scipy).

Masks are ``(N, H, W)`` bool (or 0/1) arrays, one per instance, with ``(N,)``
integer class labels; the expert (truth) and predicted instances of one image.

Matching (:func:`match_instances`): within each class, a one-to-one assignment
of predictions to expert instances by the Hungarian method
(``scipy.optimize.linear_sum_assignment``) over the pairs with mask IoU >=
``iou_threshold``; it maximises first the number of matched pairs, then their
summed IoU. Unassigned expert instances are *missed*, unassigned predictions
*extra* (a prediction of the wrong class is both: its class has no expert to
match and the expert's class gets no prediction).

Recognised: no missed and no extra instance, i.e. every expert instance is
matched by a prediction of its class with IoU >= ``iou_threshold`` and no
further prediction exists; an image without expert instances is recognised iff
nothing is predicted.

Composite recognised: recognised, and

- no fusion: no prediction covers at least ``fuse_fraction`` (default 0.5) of the
  *own* area of two or more expert instances, the own area of an expert instance
  being its pixels not covered by any other expert instance (so a prediction
  that follows one of two overlapping experts exactly is not a fusion, one
  covering both is; an expert with no own area is never counted as fused);
- no spurious overlap: for any two matched pairs ``(a1, p1)``, ``(a2, p2)`` whose
  expert instances are disjoint (no common pixel), the predictions overlap by
  at most ``overlap_tolerance`` (default 0.01) of the smaller prediction's area:
  ``|p1 ∩ p2| <= overlap_tolerance * min(|p1|, |p2|)``.

All pairwise intersections come from one matrix product ``X @ X.T`` of the
masks flattened to an ``(N, H*W)`` 0/1 matrix ``X``, held as a scipy CSR sparse
matrix: exact integer counts at a cost proportional to the mask pixels (not to
N x H x W), single-threaded (a dense float BLAS product is slower here and
erratic on a shared machine). :func:`recognition_from_matrices` takes such
matrices directly, e.g. built from mask windows without dense masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import linear_sum_assignment

COUNT_KEYS = ("truth", "predicted", "matched", "missed", "extra", "fused", "overlapping")


@dataclass(frozen=True)
class Matching:
    """One-to-one matching: ``pairs`` of (truth index, prediction index, IoU), sorted by truth index."""

    pairs: tuple[tuple[int, int, float], ...]
    unmatched_truth: tuple[int, ...]
    unmatched_pred: tuple[int, ...]


@dataclass(frozen=True)
class Recognition:
    """Matching, fusing predictions, overlapping prediction pairs and the two verdicts of one image."""

    matching: Matching
    n_truth: int
    n_pred: int
    fused: tuple[int, ...]
    overlapping: tuple[tuple[int, int], ...]
    recognised: bool
    composite_recognised: bool

    @property
    def counts(self) -> dict[str, int]:
        """``truth``, ``predicted``, ``matched``, ``missed``, ``extra``, ``fused``, ``overlapping``.

        ``fused`` counts predictions that fuse >= 2 expert instances, ``overlapping``
        pairs of matched predictions that overlap although their experts do not.
        """
        return {"truth": self.n_truth, "predicted": self.n_pred, "matched": len(self.matching.pairs),
                "missed": len(self.matching.unmatched_truth),
                "extra": len(self.matching.unmatched_pred),
                "fused": len(self.fused), "overlapping": len(self.overlapping)}


def _as_masks(masks: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``(N, H, W)`` bool array; an empty sequence becomes ``(0, *shape)``."""
    arr = np.asarray(masks, dtype=bool)
    if arr.size == 0 and arr.ndim != 3:
        arr = np.zeros((0, *(shape or (0, 0))), dtype=bool)
    if arr.ndim != 3:
        raise ValueError(f"instance masks must be (N, H, W), got shape {arr.shape}")
    return arr


def _as_labels(labels: Any, count: int, what: str) -> np.ndarray:
    arr = np.asarray(labels, dtype=np.int64).reshape(-1)
    if arr.shape[0] != count:
        raise ValueError(f"{what}: {count} masks but {arr.shape[0]} labels")
    return arr


def _inputs(truth_masks: Any, truth_labels: Any, pred_masks: Any, pred_labels: Any
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    truth = _as_masks(truth_masks)
    pred = _as_masks(pred_masks, truth.shape[1:])
    if truth.shape[0] == 0 and pred.shape[0] > 0:
        truth = np.zeros((0, *pred.shape[1:]), dtype=bool)
    if truth.shape[1:] != pred.shape[1:]:
        raise ValueError(f"truth masks are {truth.shape[1:]}, predicted masks {pred.shape[1:]}")
    return (truth, _as_labels(truth_labels, truth.shape[0], "truth"),
            pred, _as_labels(pred_labels, pred.shape[0], "prediction"))


def mask_matrix(masks: np.ndarray) -> sparse.csr_matrix:
    """``(N, H, W)`` bool masks -> ``(N, H*W)`` CSR matrix of int32 ones (row-major pixel order)."""
    arr = np.asarray(masks, dtype=bool)
    flat = arr.reshape(arr.shape[0], int(np.prod(arr.shape[1:])))
    rows, cols = np.nonzero(flat)
    return sparse.csr_matrix((np.ones(rows.size, dtype=np.int32), (rows, cols)), shape=flat.shape)


def gram(matrix: sparse.csr_matrix) -> np.ndarray:
    """``(M, M)`` int64 ``X @ X.T`` of an ``(M, F)`` 0/1 sparse matrix: intersections (areas: diagonal)."""
    return np.asarray((matrix @ matrix.T).toarray(), dtype=np.int64)


def intersections(masks: np.ndarray) -> np.ndarray:
    """``(M, M)`` int64 pixel counts ``|m_i ∩ m_j|`` of ``(M, H, W)`` bool masks (areas on the diagonal)."""
    return gram(mask_matrix(masks))


def _own_counts(truth: sparse.csr_matrix, pred: sparse.csr_matrix, counts: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Own areas ``(N,)`` of the experts and ``(P, N)`` overlaps of predictions with them.

    ``counts`` is :func:`gram` of ``[truth; pred]``. The own area of an expert is
    its area minus its pixels shared with another expert, so only the pixels
    covered by two or more experts need a second (small) product.
    """
    n = truth.shape[0]
    areas, pred_truth = np.diag(counts)[:n].copy(), counts[n:, :n].copy()
    if not (counts[:n, :n] - np.diag(areas)).any():
        return areas, pred_truth
    coverage = np.asarray(truth.sum(axis=0)).ravel()
    multi = np.flatnonzero(coverage >= 2)
    truth_multi = truth[:, multi]
    areas -= np.asarray(truth_multi.sum(axis=1), dtype=np.int64).ravel()
    shared = np.asarray((pred[:, multi] @ truth_multi.T).toarray(), dtype=np.int64)
    return areas, pred_truth - shared


def iou_from_counts(inter: np.ndarray, area_a: np.ndarray, area_b: np.ndarray) -> np.ndarray:
    """IoU ``(A, B)`` float64 from intersections ``(A, B)`` and areas; 0 where the union is empty."""
    union = area_a[:, None] + area_b[None, :] - inter
    out = np.zeros(inter.shape, dtype=np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def _match(iou: np.ndarray, truth_labels: np.ndarray, pred_labels: np.ndarray,
           iou_threshold: float) -> Matching:
    """Per-class Hungarian matching on ``iou`` ``(N, P)``, pairs with IoU >= ``iou_threshold`` only."""
    pairs: list[tuple[int, int, float]] = []
    for label in np.intersect1d(truth_labels, pred_labels):
        t_idx = np.flatnonzero(truth_labels == label)
        p_idx = np.flatnonzero(pred_labels == label)
        sub = iou[np.ix_(t_idx, p_idx)]
        eligible = sub >= iou_threshold
        if not eligible.any():
            continue
        # a constant above the largest possible match count makes cardinality come first
        bonus = float(min(len(t_idx), len(p_idx)) + 1)
        rows, cols = linear_sum_assignment(np.where(eligible, bonus + sub, 0.0), maximize=True)
        pairs += [(int(t_idx[r]), int(p_idx[c]), float(sub[r, c]))
                  for r, c in zip(rows, cols, strict=True) if eligible[r, c]]
    pairs.sort()
    matched_t = {p[0] for p in pairs}
    matched_p = {p[1] for p in pairs}
    return Matching(tuple(pairs),
                    tuple(i for i in range(len(truth_labels)) if i not in matched_t),
                    tuple(j for j in range(len(pred_labels)) if j not in matched_p))


def match_instances(truth_masks: Any, truth_labels: Any, pred_masks: Any, pred_labels: Any,
                    iou_threshold: float = 0.5) -> Matching:
    """One-to-one matching of predicted to expert instances within each class (module docstring).

    ``truth_masks`` ``(N, H, W)``, ``truth_labels`` ``(N,)``, ``pred_masks``
    ``(P, H, W)``, ``pred_labels`` ``(P,)``. Returns the matched pairs with their
    IoU, the unmatched truth indices (missed) and prediction indices (extra).
    """
    truth, t_labels, pred, p_labels = _inputs(truth_masks, truth_labels, pred_masks, pred_labels)
    counts = intersections(np.concatenate([truth, pred]))
    n = truth.shape[0]
    areas = np.diag(counts)
    return _match(iou_from_counts(counts[:n, n:], areas[:n], areas[n:]), t_labels, p_labels, iou_threshold)


def _fusing(pred_truth_own: np.ndarray, own_area: np.ndarray, fuse_fraction: float) -> tuple[int, ...]:
    """Predictions covering >= ``fuse_fraction`` of the own area ``(N,)`` of two or more experts."""
    if pred_truth_own.shape[1] < 2 or pred_truth_own.shape[0] == 0:
        return ()
    covered = (own_area[None, :] > 0) & (pred_truth_own >= fuse_fraction * own_area[None, :])
    return tuple(int(j) for j in np.flatnonzero(covered.sum(axis=1) >= 2))


def _overlapping(matching: Matching, truth_inter: np.ndarray, pred_inter: np.ndarray,
                 overlap_tolerance: float) -> tuple[tuple[int, int], ...]:
    """Pairs of matched predictions overlapping beyond tolerance where their experts are disjoint."""
    if len(matching.pairs) < 2:
        return ()
    t_idx = np.array([p[0] for p in matching.pairs])
    p_idx = np.array([p[1] for p in matching.pairs])
    experts = truth_inter[np.ix_(t_idx, t_idx)]
    preds = pred_inter[np.ix_(p_idx, p_idx)]
    areas = np.diag(preds)
    limit = overlap_tolerance * np.minimum(areas[:, None], areas[None, :])
    bad = (experts == 0) & (preds > limit)
    first, second = np.nonzero(np.triu(bad, k=1))
    return tuple(sorted((int(min(p_idx[i], p_idx[j])), int(max(p_idx[i], p_idx[j])))
                        for i, j in zip(first, second, strict=True)))


def recognition_from_matrices(truth: sparse.csr_matrix, truth_labels: Any, pred: sparse.csr_matrix,
                              pred_labels: Any, *, iou_threshold: float = 0.5, fuse_fraction: float = 0.5,
                              overlap_tolerance: float = 0.01) -> Recognition:
    """:func:`recognition` of masks given as ``(N, F)`` and ``(P, F)`` 0/1 sparse matrices.

    Rows are flattened masks (see :func:`mask_matrix`) in any pixel order, the same for both.
    """
    if not 0.0 < fuse_fraction <= 1.0 or not 0.0 <= overlap_tolerance <= 1.0:
        raise ValueError("fuse_fraction must be in (0, 1] and overlap_tolerance in [0, 1]")
    if truth.shape[1] != pred.shape[1]:
        raise ValueError(f"truth masks have {truth.shape[1]} pixels, predicted masks {pred.shape[1]}")
    n, p = truth.shape[0], pred.shape[0]
    t_labels = _as_labels(truth_labels, n, "truth")
    p_labels = _as_labels(pred_labels, p, "prediction")
    counts = gram(sparse.vstack([truth, pred], format="csr"))
    areas = np.diag(counts)
    matching = _match(iou_from_counts(counts[:n, n:], areas[:n], areas[n:]), t_labels, p_labels,
                      iou_threshold)
    own_area, pred_own = _own_counts(truth, pred, counts)
    fused = _fusing(pred_own, own_area, fuse_fraction)
    overlapping = _overlapping(matching, counts[:n, :n], counts[n:, n:], overlap_tolerance)
    ok = not matching.unmatched_truth and not matching.unmatched_pred
    return Recognition(matching, n, p, fused, overlapping, recognised=ok,
                       composite_recognised=ok and not fused and not overlapping)


def recognition(truth_masks: Any, truth_labels: Any, pred_masks: Any, pred_labels: Any, *,
                iou_threshold: float = 0.5, fuse_fraction: float = 0.5,
                overlap_tolerance: float = 0.01) -> Recognition:
    """Matching, recognition and composite recognition of one image in one pass (module docstring).

    Shapes as in :func:`match_instances`; ``fuse_fraction`` and
    ``overlap_tolerance`` are the composite rule's parameters (fractions in [0, 1]).
    """
    truth, t_labels, pred, p_labels = _inputs(truth_masks, truth_labels, pred_masks, pred_labels)
    return recognition_from_matrices(mask_matrix(truth), t_labels, mask_matrix(pred), p_labels,
                                     iou_threshold=iou_threshold, fuse_fraction=fuse_fraction,
                                     overlap_tolerance=overlap_tolerance)


def recognised(truth_masks: Any, truth_labels: Any, pred_masks: Any, pred_labels: Any,
               iou_threshold: float = 0.5) -> tuple[bool, dict[str, int]]:
    """Whether the image is recognised (module docstring), and the counts of :class:`Recognition`."""
    result = recognition(truth_masks, truth_labels, pred_masks, pred_labels, iou_threshold=iou_threshold)
    return result.recognised, result.counts


def composite_recognised(truth_masks: Any, truth_labels: Any, pred_masks: Any, pred_labels: Any,
                         iou_threshold: float = 0.5, fuse_fraction: float = 0.5,
                         overlap_tolerance: float = 0.01) -> tuple[bool, dict[str, int]]:
    """Whether the image is composite-recognised (module docstring), and the counts."""
    result = recognition(truth_masks, truth_labels, pred_masks, pred_labels, iou_threshold=iou_threshold,
                         fuse_fraction=fuse_fraction, overlap_tolerance=overlap_tolerance)
    return result.composite_recognised, result.counts
