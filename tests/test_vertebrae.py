"""Vertebra ordering, NMS and level labelling on synthetic masks; corners -> Cobb angle."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from skimage.draw import polygon

from spinekit.clinical.cobb import cobb_angles
from spinekit.clinical.vertebrae import AP_LEVELS, corners_from_masks, order_and_label


def rect(shape: tuple[int, int], centre: tuple[float, float], size: tuple[float, float],
         angle: float) -> np.ndarray:
    """Bool mask ``(H, W)`` of a ``size`` = (width, height) rectangle rotated by ``angle`` deg."""
    t = np.deg2rad(angle)
    ax, ay = np.array([np.cos(t), np.sin(t)]), np.array([-np.sin(t), np.cos(t)])
    w, h = size[0] / 2, size[1] / 2
    c = np.asarray(centre, dtype=np.float64)
    pts = np.array([c - w * ax - h * ay, c + w * ax - h * ay, c + w * ax + h * ay, c - w * ax + h * ay])
    mask = np.zeros(shape, dtype=bool)
    rr, cc = polygon(pts[:, 1], pts[:, 0], shape)
    mask[rr, cc] = True
    return mask


def s_spine(n: int = 17) -> tuple[list[np.ndarray], list[tuple[float, float]]]:
    """An S-shaped scoliotic spine of n rectangles, top-down, tilted with the curve."""
    ys = 30 + 34 * np.arange(n)
    xs = 150 + 60 * np.sin(2 * np.pi * (ys - 30) / (34 * (n - 1)))
    slope = np.gradient(xs, ys)
    masks = [rect((640, 300), (x, y), (50, 24), np.degrees(np.arctan(-s)))
             for x, y, s in zip(xs, ys, slope, strict=True)]
    return masks, list(zip(xs.tolist(), ys.tolist(), strict=True))


def test_s_shaped_spine_ordered_and_labelled_top_down() -> None:
    masks, _ = s_spine()
    perm = np.random.default_rng(0).permutation(len(masks))
    spine = order_and_label([masks[i] for i in perm], [0.9] * len(masks), view="ap")
    assert [int(perm[v.index]) for v in spine.vertebrae] == list(range(17))
    assert spine.levels() == list(AP_LEVELS)
    assert spine.flags == []
    assert all(v.confidence == pytest.approx(0.9) for v in spine.vertebrae)


def test_lying_spine_where_y_sort_fails() -> None:
    """Spine at 80 degrees from vertical with sideways jitter: y-sort scrambles it."""
    n, t = 12, np.deg2rad(80)
    axis, normal = np.array([np.sin(t), np.cos(t)]), np.array([-np.cos(t), np.sin(t)])
    masks, cents = [], []
    for k in range(n):
        c = np.array([40.0, 40.0]) + 40 * k * axis + (8 if k % 2 else -8) * normal
        masks.append(rect((200, 560), (c[0], c[1]), (16 + k, 28 + 2 * k), 80))
        cents.append(c)
    y_sort = np.argsort([c[1] for c in cents])
    assert list(y_sort) != list(range(n))  # the naive sort fails here
    perm = np.random.default_rng(1).permutation(n)
    spine = order_and_label([masks[i] for i in perm], [1.0] * n, view="ap", levels=AP_LEVELS[:n])
    assert [int(perm[v.index]) for v in spine.vertebrae] == list(range(n))
    assert any("horizontal" in f for f in spine.flags)
    # centroids only: the head is the image-left end, here also the small end
    spine_c = order_and_label(np.array(cents)[perm], [1.0] * n, view="ap", levels=AP_LEVELS[:n])
    assert [int(perm[v.index]) for v in spine_c.vertebrae] == list(range(n))


def test_nms_removes_duplicate_and_min_score_drops() -> None:
    masks, _ = s_spine()
    dup = np.roll(masks[5], 2, axis=1)  # a near-copy of T6 with a lower score
    low = masks[0] | masks[1]
    scores = [0.95] * 17 + [0.8, 0.3]
    spine = order_and_label([*masks, dup, low], scores, view="ap")
    assert [v.index for v in spine.vertebrae] == list(range(17))
    assert "1 duplicates suppressed" in spine.flags
    # the duplicate wins when it scores higher; the original is suppressed
    spine2 = order_and_label([*masks, dup], [0.95] * 17 + [0.99], view="ap")
    assert spine2.vertebrae[5].index == 17 and spine2.vertebrae[5].level == "T6"


def test_missing_vertebra_flagged_and_confidence_falls() -> None:
    masks, _ = s_spine()
    kept = [m for k, m in enumerate(masks) if k != 8]
    spine = order_and_label(kept, [0.9] * 16, view="ap")
    assert spine.levels() == list(AP_LEVELS[:16])
    assert any(f.startswith("expected 17 vertebrae (T1-L5), found 16") for f in spine.flags)
    conf = [v.confidence for v in spine.vertebrae]
    assert conf[0] < 0.9 and all(a > b for a, b in pairwise(conf))


def lumbar(n: int) -> list[np.ndarray]:
    return [rect((400, 200), (100 + 5 * k, 40 + 55 * k), (60, 40), 5 * k) for k in range(n)]


def test_lateral_bottom_up_without_and_with_sacrum() -> None:
    masks = lumbar(5)
    spine = order_and_label(masks[::-1], [1.0] * 5, view="lateral")
    assert spine.levels() == ["L1", "L2", "L3", "L4", "L5"]
    assert [v.index for v in spine.vertebrae] == [4, 3, 2, 1, 0]
    assert spine.flags == []
    # four lumbar bodies + the sacrum: S1 at the bottom, L4..L1 upward, L1 missing -> flag
    masks5 = lumbar(5)
    spine_s = order_and_label(masks5, [0.9, 0.9, 0.9, 0.9, 0.2], view="lateral", sacrum=4)
    assert spine_s.levels() == ["L2", "L3", "L4", "L5", "S1"]
    assert any("expected 6 vertebrae (L1-S1), found 5" in f for f in spine_s.flags)
    assert spine_s.vertebrae[-1].confidence > spine_s.vertebrae[0].confidence
    # the same four without sacrum index: lowest is L5
    spine_n = order_and_label(masks5[:4], [0.9] * 4, view="lateral")
    assert spine_n.levels() == ["L2", "L3", "L4", "L5"]


def test_corners_recover_known_cobb_angle() -> None:
    """C-curve whose vertebra tilts go linearly from +20 to -20 degrees: Cobb 40."""
    n = 17
    tilts = np.linspace(20, -20, n)
    ys = 40 + 40 * np.arange(n)
    xs = 200 - np.cumsum(40 * np.tan(np.deg2rad(tilts)))  # column perpendicular to the bodies
    masks = [rect((760, 400), (x, y), (70, 26), a) for x, y, a in zip(xs, ys, tilts, strict=True)]
    spine = order_and_label(masks, [1.0] * n, view="ap")
    corners = corners_from_masks([masks[v.index] for v in spine.vertebrae])
    assert corners.shape == (n, 4, 2)
    # TL left of TR, BL below TL: the AASCE order
    assert np.all(corners[:, 0, 0] < corners[:, 1, 0]) and np.all(corners[:, 2, 1] > corners[:, 0, 1])
    result = cobb_angles(corners, image_height=760)
    assert result.angles_deg[0] == pytest.approx(40.0, abs=2.0)
    assert result.end_vertebrae[0] == (0, n - 1)


def test_degenerate_mask_handling() -> None:
    masks = lumbar(3)
    tiny = np.zeros_like(masks[0])
    tiny[5:8, 5:8] = True
    with pytest.raises(ValueError, match="position 1"):
        corners_from_masks([masks[0], tiny, masks[2]])
    out = corners_from_masks([masks[0], tiny, masks[2]], on_error="nan")
    assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2]]).all()
