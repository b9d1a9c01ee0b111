"""Instance matching, recognition, composite recognition and per-image metrics on a real dataset."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faster_coco_eval.core import mask as mask_api

from spinekit.data.records import DatasetRecords, load_dataset
from spinekit.evaluation.masks import frame_matrix, frame_of
from spinekit.evaluation.per_image import aggregate, per_image_metrics
from spinekit.evaluation.recognition import (
    _match,
    composite_recognised,
    intersections,
    mask_matrix,
    match_instances,
    recognised,
    recognition,
)
from spinekit.evaluation.results import encode_mask
from spinekit.geometry import rasterize
from spinekit.masks import crop_from_polygons, crop_from_rle, rle_counts

SHAPE = (20, 30)


def rect(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """``SHAPE`` bool mask, rows r0:r1 and columns c0:c1 set."""
    mask = np.zeros(SHAPE, dtype=bool)
    mask[r0:r1, c0:c1] = True
    return mask


A = rect(0, 10, 0, 10)     # 100 px
B = rect(0, 10, 10, 20)    # 100 px, touches A, disjoint
C = rect(12, 18, 2, 12)    # 60 px, class 2


def stack(*masks: np.ndarray) -> np.ndarray:
    return np.stack(masks) if masks else np.zeros((0, *SHAPE), dtype=bool)


def test_perfect_missed_extra_and_wrong_class() -> None:
    truth, labels = stack(A, B, C), [1, 1, 2]
    result = recognition(truth, labels, stack(C, B, A), [2, 1, 1])
    assert result.recognised and result.composite_recognised
    assert result.matching.pairs == ((0, 2, 1.0), (1, 1, 1.0), (2, 0, 1.0))
    assert result.counts == {"truth": 3, "predicted": 3, "matched": 3, "missed": 0, "extra": 0,
                             "fused": 0, "overlapping": 0}
    ok, counts = recognised(truth, labels, stack(A, B), [1, 1])
    assert not ok and counts["missed"] == 1 and counts["extra"] == 0
    assert match_instances(truth, labels, stack(A, B), [1, 1]).unmatched_truth == (2,)
    ok, counts = recognised(truth, labels, stack(A, B, C, rect(14, 18, 20, 28)), [1, 1, 2, 2])
    assert not ok and counts["extra"] == 1 and counts["matched"] == 3
    # the right mask with the wrong class is a miss and an extra
    ok, counts = composite_recognised(truth, labels, stack(A, B, C), [1, 1, 1])
    assert not ok and counts["missed"] == 1 and counts["extra"] == 1 and counts["matched"] == 2


def test_iou_threshold_is_inclusive() -> None:
    half = rect(0, 10, 0, 5)  # IoU with A = 50 / 100, exactly the threshold
    assert recognised(stack(A), [1], stack(half), [1])[0]
    below = half.copy()
    below[9, 4] = False  # 49 / 100
    assert not recognised(stack(A), [1], stack(below), [1])[0]
    above = half.copy()
    above[0, 5] = True  # 51 / 100
    assert match_instances(stack(A), [1], stack(above), [1]).pairs == ((0, 0, 0.51),)
    assert recognised(stack(A), [1], stack(below), [1], iou_threshold=0.49)[0]


def test_hungarian_maximises_matches_before_iou() -> None:
    # greedy by IoU would pair (t0, p0) at 0.9 and leave t1, p1 at 0.4 unmatched
    iou = np.array([[0.9, 0.6], [0.6, 0.4]])
    matching = _match(iou, np.array([1, 1]), np.array([1, 1]), 0.5)
    assert matching.pairs == ((0, 1, 0.6), (1, 0, 0.6)) and not matching.unmatched_pred
    # among equally many matches the larger IoU sum wins
    assert _match(np.array([[0.9, 0.6], [0.6, 0.7]]), np.array([1, 1]), np.array([1, 1]),
                  0.5).pairs == ((0, 0, 0.9), (1, 1, 0.7))


def test_overlapping_experts_fused_into_one_prediction() -> None:
    left, right = rect(0, 10, 0, 10), rect(0, 10, 6, 16)  # experts overlap on 4 columns
    union = left | right  # 160 px: IoU 100/160 = 0.625 with each expert
    only_fused = recognition(stack(left, right), [1, 1], stack(union), [1])
    assert not only_fused.recognised and not only_fused.composite_recognised
    assert only_fused.counts["fused"] == 1 and only_fused.counts["missed"] == 1
    # the fused mask matches the left expert, a second prediction the right one: recognised, not composite
    both = recognition(stack(left, right), [1, 1], stack(union, right), [1, 1])
    assert both.recognised and not both.composite_recognised
    assert both.fused == (0,) and both.overlapping == ()
    # predictions that follow the overlapping experts exactly are no fusion
    exact = recognition(stack(left, right), [1, 1], stack(left, right), [1, 1])
    assert exact.composite_recognised and exact.counts["fused"] == 0


def test_predictions_overlapping_where_experts_do_not() -> None:
    grown = rect(0, 10, 0, 12)  # A plus two columns of B: IoU 100/120 with A
    result = recognition(stack(A, B), [1, 1], stack(grown, B), [1, 1])
    assert result.recognised and not result.composite_recognised
    assert result.overlapping == ((0, 1),) and result.counts["overlapping"] == 1
    one_pixel = A.copy()
    one_pixel[0, 10] = True  # 1 px into B = 0.01 * 100: within the default tolerance
    assert composite_recognised(stack(A, B), [1, 1], stack(one_pixel, B), [1, 1])[0]
    assert not composite_recognised(stack(A, B), [1, 1], stack(one_pixel, B), [1, 1],
                                    overlap_tolerance=0.0)[0]


def test_empty_images() -> None:
    assert recognition([], [], [], []).composite_recognised
    nothing = recognition(stack(), [], stack(), [])
    assert nothing.recognised and nothing.composite_recognised and nothing.counts["truth"] == 0
    ok, counts = composite_recognised(stack(), [], stack(A), [1])
    assert not ok and counts["extra"] == 1 and counts["predicted"] == 1
    with pytest.raises(ValueError, match="2 masks but 1 labels"):
        recognition(stack(A, B), [1], stack(), [])


def test_gram_intersections_equal_pairwise_counts() -> None:
    rng = np.random.default_rng(2)
    masks = rng.uniform(size=(7, 33, 41)) < 0.3
    masks[3] = False
    expected = np.array([[np.count_nonzero(a & b) for b in masks] for a in masks])
    np.testing.assert_array_equal(intersections(masks), expected)


def test_mask_windows_equal_full_masks() -> None:
    rng = np.random.default_rng(4)
    height, width = 23, 31
    cases = [np.zeros((height, width), dtype=bool), np.ones((height, width), dtype=bool)]
    for _ in range(40):
        mask = np.zeros((height, width), dtype=bool)
        r0, c0 = rng.integers(0, height), rng.integers(0, width)
        mask[r0:r0 + rng.integers(1, height), c0:c0 + rng.integers(1, width)] = True
        mask &= rng.uniform(size=mask.shape) < rng.choice([0.5, 1.0])
        cases.append(mask)
    cases[5][:, 3:6] = True  # runs that wrap from one column into the next
    windows = []
    for mask in cases:
        rle = encode_mask(mask)
        window = crop_from_rle(rle)
        counts = rle_counts(rle["counts"])  # run lengths: re-encoded by COCO's code they give the same string
        assert counts.sum() == height * width
        back = mask_api.frPyObjects({"size": [height, width], "counts": counts.tolist()}, height, width)
        text = back["counts"].decode() if isinstance(back["counts"], bytes) else back["counts"]
        assert text == rle["counts"]
        full = np.zeros_like(mask)
        full[window.top:window.bottom, window.left:window.right] = window.crop
        np.testing.assert_array_equal(full, mask)
        assert window.empty == (not mask.any())
        if mask.any():  # the window is the bounding box
            assert window.crop[0].any() and window.crop[-1].any()
            assert window.crop[:, 0].any() and window.crop[:, -1].any()
        windows.append(window)
    frame = frame_of(windows)
    assert frame == (0, 0, height, width)
    np.testing.assert_array_equal(frame_matrix(windows, frame).toarray(),
                                  mask_matrix(np.stack(cases)).toarray())
    big = {"size": [300, 200], "counts": encode_mask(np.pad(cases[7], ((150, 127), (90, 79))))["counts"]}
    assert crop_from_rle(big).crop.sum() == cases[7].sum() and crop_from_rle(big).top >= 150
    for _ in range(20):  # polygons, also leaving the image
        pts = rng.uniform(-8, 40, (int(rng.integers(3, 8)), 2))
        window = crop_from_polygons([pts.ravel().tolist()], height, width)
        full = np.zeros((height, width), dtype=bool)
        full[window.top:window.bottom, window.left:window.right] = window.crop
        np.testing.assert_array_equal(full, rasterize([pts], height, width).astype(bool))


# ----------------------------------------------------------------------------- per-image metrics

F_RECT = [[10, 10], [30, 10], [30, 26], [10, 26]]  # 20 x 16 px
E_RECT = [[35, 5], [60, 5], [60, 40], [35, 40]]    # 25 x 35 px
CROWD = [[2, 30], [20, 30], [20, 46], [2, 46]]


def _dataset(tmp_path: Path) -> DatasetRecords:
    """img 1: F + E (spacing 0.5 mm); img 2: F, an excluded E and an F crowd region; img 3: negative;
    img 4: an F given as RLE and an E given by its bbox only."""
    images = [{"id": i, "file_name": f"{i}.png", "width": 64, "height": 48, "patient_id": f"P{i}",
               "pixel_spacing_mm": [0.5, 0.5] if i == 1 else None} for i in (1, 2, 3, 4)]

    def ann(ann_id: int, image_id: int, cat: int, pts: list[list[int]], crowd: int = 0) -> dict[str, Any]:
        return {"id": ann_id, "image_id": image_id, "category_id": cat, "iscrowd": crowd,
                "segmentation": [np.asarray(pts, dtype=float).ravel().tolist()]}

    annotations = [ann(1, 1, 1, F_RECT), ann(2, 1, 2, E_RECT), ann(3, 2, 1, F_RECT),
                   ann(4, 2, 2, E_RECT), ann(5, 2, 1, CROWD, crowd=1),
                   {**ann(6, 4, 1, F_RECT), "segmentation": encode_mask(rasterize([F_RECT], 48, 64))},
                   {**ann(7, 4, 2, E_RECT), "segmentation": [], "bbox": [35, 5, 25, 35]}]
    root = tmp_path / "ds"
    root.mkdir()
    coco = {"info": {"image_root": "."}, "images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "F"}, {"id": 2, "name": "E"}]}
    (root / "annotations.json").write_text(json.dumps(coco))
    return load_dataset(root)


def _result(image_id: int, cat: int, pts: list[list[int]], score: float, dx: int = 0) -> dict[str, Any]:
    mask = rasterize([np.asarray(pts, dtype=float) + np.array([dx, 0])], 48, 64)
    return {"image_id": image_id, "category_id": cat, "score": score, "segmentation": encode_mask(mask)}


def test_per_image_metrics_perfect_and_perturbed(tmp_path: Path) -> None:
    records = _dataset(tmp_path)
    perfect = [_result(1, 1, F_RECT, 0.9), _result(1, 2, E_RECT, 0.8), _result(2, 1, F_RECT, 0.7),
               _result(2, 1, CROWD, 0.9),  # on the crowd region: ignored
               _result(4, 1, F_RECT, 0.9), _result(4, 2, E_RECT, 0.9)]
    rows = per_image_metrics(records, [1, 2, 3, 4, 1], perfect, excluded_annotations={4})
    assert [r["image_id"] for r in rows] == [1, 2, 3, 4] and rows[0]["patient_id"] == "P1"
    for row in rows:
        assert row["pixel_accuracy"] == 1.0 and row["mean_iou"] == 1.0 and row["fw_iou"] == 1.0
        assert row["recognised"] and row["composite_recognised"]
    assert rows[0]["dice"] == 1.0 and rows[0]["hd95"] == 0.0 and rows[0]["hd95_unit"] == "mm"
    assert rows[1]["ignored_pred"] == 1 and rows[1]["n_truth"] == 1 and rows[1]["hd95_unit"] == "px"
    assert sum(map(sum, rows[1]["confusion"])) == 64 * 48 - 18 * 16  # crowd pixels left out
    assert math.isnan(rows[2]["dice"]) and math.isnan(rows[2]["hd95"])
    summary = aggregate(rows)
    assert summary["set_level"]["mean_iou"] == 1.0 and summary["recognition_rate"] == 1.0
    assert summary["nan"]["dice"] == {"images": 1, "reasons": {"no foreground in truth and prediction": 1}}
    assert summary["per_image"]["dice"]["images"] == 3 and summary["per_image"]["hd95_mm"]["images"] == 1
    assert rows[3]["matched"] == 2 and rows[3]["dice"] == 1.0

    # img 1: F shifted 4 px right, E missing; img 3: a false F
    perturbed = [_result(1, 1, F_RECT, 0.9, dx=4), _result(3, 1, F_RECT, 0.6),
                 _result(2, 1, F_RECT, 0.3)]  # below the score threshold: as if absent
    rows = per_image_metrics(records, [1, 2, 3], perturbed, excluded_annotations={4})
    first = rows[0]
    # F: 256 px shared, 64 missed, 64 false; E (875 px) all predicted as background
    inter_f, bg_truth = 16 * 16, 64 * 48 - 320 - 875
    assert first["confusion"] == [[bg_truth - 64, 64, 0], [64, inter_f, 0], [875, 0, 0]]
    # background: t0 = bg_truth, p0 = (bg_truth - 64) + 64 + 875, n00 = bg_truth - 64
    iou_bg = (bg_truth - 64) / (bg_truth + (bg_truth + 875) - (bg_truth - 64))
    assert first["mean_iou"] == pytest.approx((iou_bg + 256 / 384 + 0) / 3)
    assert first["pixel_accuracy"] == pytest.approx((bg_truth - 64 + 256) / (64 * 48))
    assert first["dice"] == pytest.approx((2 * 256 / 640 + 0) / 2)
    assert not first["recognised"] and first["matched"] == 1 and first["missed"] == 1
    assert first["hd95"] > 0 and first["hd95_unit"] == "mm"
    assert not rows[1]["recognised"] and rows[1]["missed"] == 1 and rows[1]["n_pred"] == 0
    assert math.isnan(rows[1]["hd95"]) and not rows[2]["recognised"] and rows[2]["extra"] == 1
    summary = aggregate(rows)
    assert summary["recognition_rate"] == 0.0 and summary["counts"]["extra"] == 1
    assert summary["nan"]["hd95"]["reasons"] == {"no foreground in prediction": 1,
                                                 "no foreground in truth": 1}
    assert summary["nan"]["dice"]["images"] == 0
    assert summary["set_level"]["mean_iou"] < 1


def test_per_image_metrics_rejects_bad_input(tmp_path: Path) -> None:
    records = _dataset(tmp_path)
    with pytest.raises(ValueError, match=r"not in the dataset: \[9\]"):
        per_image_metrics(records, [1, 9], [])
    with pytest.raises(ValueError, match="result 0: image_id 9"):
        per_image_metrics(records, [1], [{**_result(1, 1, F_RECT, 0.9), "image_id": 9}])
    with pytest.raises(ValueError, match="result 0: no segmentation"):
        per_image_metrics(records, [1], [{"image_id": 1, "category_id": 1, "score": 0.9,
                                          "bbox": [0, 0, 4, 4]}])
    with pytest.raises(ValueError, match="unknown category_id 7"):
        per_image_metrics(records, [1], [_result(1, 7, F_RECT, 0.9)])
    # results of dataset images outside the evaluated set are skipped
    rows = per_image_metrics(records, [3], [_result(1, 1, F_RECT, 0.9)])
    assert len(rows) == 1 and rows[0]["n_pred"] == 0 and rows[0]["recognised"]
