"""COCO evaluation: hand-made exact cases, identity with pycocotools, joint rule, result files."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from faster_coco_eval.core import mask as mask_api

from conftest import labelme_doc, poly, write_png
from spinekit.data.ingest import IngestOptions, ingest
from spinekit.data.records import DatasetRecords, load_dataset
from spinekit.errors import InputError
from spinekit.evaluation import (
    CocoEvaluator,
    detections_to_coco,
    encode_mask,
    evaluate_results,
    image_sizes,
    load_results,
    write_metrics,
    write_results,
)
from spinekit.evaluation.results import upsample_region, window_rle
from spinekit.geometry import as_points, rasterize
from spinekit.transforms.geometric import ResizePlan

# ----------------------------------------------------------------------------- hand-made dataset

F_RECT = [[10, 10], [30, 10], [30, 26], [10, 26]]  # 20 x 16 px
E_RECT = [[35, 5], [60, 5], [60, 40], [35, 40]]  # 25 x 35 px


def _labelme_dataset(tmp_path: Path) -> tuple[DatasetRecords, dict[str, int], dict[str, int]]:
    """img1: F + E; img2: F; neg1, neg2: nothing. Returns records, image ids, class ids by name."""
    src = tmp_path / "labelme"
    content = {"img1": [poly("F", F_RECT), poly("E", E_RECT)], "img2": [poly("F", F_RECT)],
               "neg1": [], "neg2": []}
    for name, shapes in content.items():
        write_png(src / f"{name}.png", 64, 48)
        (src / f"{name}.json").write_text(json.dumps(labelme_doc(f"{name}.png", 64, 48, shapes)))
    ingest(src, tmp_path / "ds", IngestOptions(format="labelme"))
    records = load_dataset(tmp_path / "ds")
    images = {Path(img["file_name"]).stem: int(img["id"]) for img in records.images}
    classes = {name: cid for cid, name in records.category_names().items()}
    return records, images, classes


def _det(image_id: int, category_id: int, rect: list[list[float]], score: float,
         dx: float = 0.0) -> dict[str, Any]:
    """A result from a rectangle polygon shifted by ``dx`` (polygon segmentation, COCO-rasterised)."""
    pts = np.asarray(rect, dtype=np.float64) + np.array([dx, 0.0])
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return {"image_id": image_id, "category_id": category_id, "score": score,
            "bbox": [x0, y0, x1 - x0, y1 - y0], "segmentation": [pts.reshape(-1).tolist()]}


def _perfect(images: dict[str, int], classes: dict[str, int]) -> list[dict[str, Any]]:
    return [_det(images["img1"], classes["F"], F_RECT, 0.9),
            _det(images["img1"], classes["E"], E_RECT, 0.8),
            _det(images["img2"], classes["F"], F_RECT, 0.7)]


def test_perfect_predictions_give_ap_one(tmp_path: Path) -> None:
    records, images, classes = _labelme_dataset(tmp_path)
    metrics = evaluate_results(records, list(images.values()), _perfect(images, classes))
    assert metrics["images"] == 4 and metrics["negative_images"] == 2 and metrics["detections"] == 3
    for iou_type in ("bbox", "segm"):
        stats = metrics[iou_type]
        assert stats["AP"] == pytest.approx(1.0) and stats["AP75"] == pytest.approx(1.0)
        assert stats["AR100"] == pytest.approx(1.0)
        # every object is smaller than 32^2 px: no medium or large ground truth -> undefined (-1)
        assert stats["APs"] == pytest.approx(1.0) and stats["APm"] == -1 and stats["APl"] == -1
    assert metrics["per_class"]["F"]["instances"] == 2 and metrics["per_class"]["E"]["instances"] == 1
    assert metrics["per_class"]["F"]["segm_AP"] == pytest.approx(1.0)
    level = metrics["image_level"]
    assert level["negatives"] == {"images": 2, "specificity": 1.0, "false_positives_per_image": 0.0}
    assert level["positives"] == {"images": 2, "sensitivity": 1.0}
    assert level["joint_rule"] is None and "joint_rule_coco" not in metrics


def test_shift_missing_and_false_positive_exact_numbers(tmp_path: Path) -> None:
    records, images, classes = _labelme_dataset(tmp_path)
    ids = list(images.values())
    # shifting img2's F by 4 px gives IoU 16/24 = 0.667: a hit at IoU 0.50..0.65, a miss above
    shifted = [*_perfect(images, classes)[:2], _det(images["img2"], classes["F"], F_RECT, 0.7, dx=4)]
    f_ap = (4 * 1.0 + 6 * 51 / 101) / 10  # above 0.65 the 2nd F is a false positive at recall 0.5
    metrics = evaluate_results(records, ids, shifted)
    for iou_type in ("bbox", "segm"):
        assert metrics[iou_type]["AP"] == pytest.approx((1.0 + f_ap) / 2, abs=1e-12)
        assert metrics[iou_type]["AP50"] == pytest.approx(1.0)
    assert metrics["per_class"]["F"]["bbox_AP"] == pytest.approx(f_ap, abs=1e-12)
    # no E detection: E has recall 0, F recall 1 -> AR = AP = 0.5
    missing = [r for r in _perfect(images, classes) if r["category_id"] != classes["E"]]
    metrics = evaluate_results(records, ids, missing)
    assert metrics["bbox"]["AR100"] == pytest.approx(0.5) and metrics["bbox"]["AP"] == pytest.approx(0.5)
    assert metrics["per_class"]["E"]["bbox_AP"] == pytest.approx(0.0)
    # a confident false positive on neg1 (ranked first) and a weak one on neg2
    fps = [*_perfect(images, classes), _det(images["neg1"], classes["F"], F_RECT, 0.95),
           _det(images["neg2"], classes["F"], F_RECT, 0.3)]
    metrics = evaluate_results(records, ids, fps, score_threshold=0.5)
    assert metrics["per_class"]["F"]["bbox_AP"] == pytest.approx(2 / 3, abs=1e-12)
    assert metrics["bbox"]["AP"] == pytest.approx((2 / 3 + 1.0) / 2, abs=1e-12)
    negatives = metrics["image_level"]["negatives"]
    assert negatives == {"images": 2, "specificity": 0.5, "false_positives_per_image": 0.5}
    per_class = metrics["image_level"]["per_class"]
    assert per_class["F"] == {"images": 2, "sensitivity": 1.0, "specificity": 0.5}
    assert per_class["E"]["specificity"] == 1.0  # no E anywhere but img1
    low = evaluate_results(records, ids, fps, score_threshold=0.2)["image_level"]["negatives"]
    assert low == {"images": 2, "specificity": 0.0, "false_positives_per_image": 1.0}


def test_joint_rule_drops_unsupported_primary_detections(tmp_path: Path) -> None:
    records, images, classes = _labelme_dataset(tmp_path)
    f, e = classes["F"], classes["E"]
    results = [
        _det(images["img1"], f, F_RECT, 0.9), _det(images["img1"], e, E_RECT, 0.8),
        _det(images["img2"], f, F_RECT, 0.9), _det(images["img2"], e, E_RECT, 0.3),  # E too weak
        _det(images["neg1"], f, F_RECT, 0.7),                                        # no E: dropped
        _det(images["neg2"], f, F_RECT, 0.6), _det(images["neg2"], e, E_RECT, 0.6),  # E: kept
    ]
    metrics = evaluate_results(records, list(images.values()), results, joint_rule=("F", "E"))
    rule = metrics["image_level"]["joint_rule"]
    assert rule["primary"] == "F" and rule["required"] == "E" and rule["dropped_detections"] == 2
    assert rule["before"]["negatives"] == {"images": 2, "specificity": 0.0,
                                           "false_positives_per_image": 1.5}
    assert rule["after"]["negatives"] == {"images": 2, "specificity": 0.5,
                                          "false_positives_per_image": 1.0}
    assert rule["before"]["positives"]["sensitivity"] == 1.0
    assert rule["after"]["positives"]["sensitivity"] == 0.5  # img2 lost its only detection >= 0.5
    assert rule["after"]["per_class"]["F"] == {"images": 2, "sensitivity": 0.5, "specificity": 0.5}
    assert metrics["image_level"]["negatives"] == rule["before"]["negatives"]
    # COCO on the filtered set: F keeps one true positive (img1) of two, and one FP (neg2, 0.6)
    coco_after = metrics["joint_rule_coco"]
    assert coco_after["per_class"]["F"]["bbox_AP"] == pytest.approx(51 / 101, abs=1e-12)
    assert metrics["per_class"]["F"]["bbox_AP"] > coco_after["per_class"]["F"]["bbox_AP"]
    with pytest.raises(ValueError, match=r"unknown class 'X'.*'E', 'F'"):
        CocoEvaluator(records, list(images.values()), joint_rule=("X", "E"))


def test_process_rejects_foreign_images_and_classes(tmp_path: Path) -> None:
    records, images, classes = _labelme_dataset(tmp_path)
    evaluator = CocoEvaluator(records, [images["img1"], images["neg1"]], iou_types=("bbox",))
    with pytest.raises(ValueError, match=r"result 0: image_id .* not one of the 2 images"):
        evaluator.process([_det(images["img2"], classes["F"], F_RECT, 0.9)])
    with pytest.raises(ValueError, match="unknown category_id 77"):
        evaluator.process([_det(images["img1"], 77, F_RECT, 0.9)])
    with pytest.raises(ValueError, match="result 0: 'score' missing"):
        evaluator.process([{"image_id": images["img1"], "category_id": classes["F"], "bbox": [0, 0, 1, 1]}])
    evaluator.process(_perfect(images, classes)[:2])
    metrics = evaluator.evaluate()
    assert metrics["segm"] is None and metrics["bbox"]["AP"] == pytest.approx(1.0)
    evaluator.reset()
    assert evaluator.evaluate()["bbox"]["AP"] == 0.0
    out = tmp_path / "out" / "metrics.json"
    write_metrics(out, metrics)
    assert json.loads(out.read_text())["bbox"]["AP"] == pytest.approx(1.0)


def test_excluded_annotations_leave_ground_truth(tmp_path: Path) -> None:
    records, images, classes = _labelme_dataset(tmp_path)
    e_ann = next(a["id"] for a in records.annotations if a["category_id"] == classes["E"])
    missing = [r for r in _perfect(images, classes) if r["category_id"] != classes["E"]]
    metrics = evaluate_results(records, list(images.values()), missing, excluded_annotations={e_ann})
    assert metrics["bbox"]["AP"] == pytest.approx(1.0)  # E has no ground truth left: AP -1, skipped
    assert metrics["per_class"]["E"]["bbox_AP"] == -1 and metrics["per_class"]["E"]["instances"] == 0


# ----------------------------------------------------------------------------- pycocotools identity


def _random_polygon(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    size = rng.uniform(6, min(width, height) * 0.8)
    cx, cy = rng.uniform(size / 2, width - size / 2), rng.uniform(size / 2, height - size / 2)
    angles = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(4, 9)))
    radius = size / 2 * rng.uniform(0.6, 1.0, len(angles))
    return np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles) * 0.8], axis=1)


def _random_dataset(tmp_path: Path, rng: np.random.Generator, crowd: bool) -> DatasetRecords:
    images, annotations = [], []
    for image_id in range(1, 9):
        width, height = int(rng.integers(90, 480)), int(rng.integers(80, 400))
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": width, "height": height})
        count = 0 if image_id in (4, 7) else int(rng.integers(1, 5))  # two negatives
        for _ in range(count):
            pts = _random_polygon(rng, width, height)
            x0, y0 = pts.min(axis=0)
            x1, y1 = pts.max(axis=0)
            area = 0.5 * abs(np.dot(pts[:, 0], np.roll(pts[:, 1], -1))
                             - np.dot(pts[:, 1], np.roll(pts[:, 0], -1)))
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": int(rng.integers(1, 3)),
                "segmentation": [pts.reshape(-1).round(2).tolist()], "area": float(area),
                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                "iscrowd": int(crowd and len(annotations) == 3)})
    categories = [{"id": 1, "name": "F"}, {"id": 2, "name": "E"}, {"id": 3, "name": "unused"}]
    root = tmp_path / "random"
    root.mkdir()
    coco = {"info": {"image_root": "."}, "images": images, "annotations": annotations,
            "categories": categories}
    (root / "annotations.json").write_text(json.dumps(coco))
    return load_dataset(root)


def _prediction(rng: np.random.Generator, image: dict[str, Any], pts: np.ndarray,
                category_id: int) -> dict[str, Any]:
    """Mask rasterised by spinekit (not COCO's rasteriser), jittered box, random score."""
    mask = rasterize([pts], image["height"], image["width"])
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    jitter = rng.normal(0, 1.5, 4)
    return {"image_id": image["id"], "category_id": category_id, "score": float(rng.uniform(0.05, 1)),
            "bbox": [float(x0 + jitter[0]), float(y0 + jitter[1]), float(max(x1 - x0 + jitter[2], 1)),
                     float(max(y1 - y0 + jitter[3], 1))],
            "segmentation": encode_mask(mask)}


def _random_predictions(rng: np.random.Generator, records: DatasetRecords) -> list[dict[str, Any]]:
    sizes = {img["id"]: img for img in records.images}
    out = []
    for ann in records.annotations:
        if rng.uniform() < 0.85:
            pts = as_points(ann["segmentation"][0])
            centre = pts.mean(axis=0)
            pts = (pts - centre) * rng.uniform(0.85, 1.15) + centre + rng.normal(0, 1.5, 2)
            label = ann["category_id"] if rng.uniform() < 0.9 else 3 - ann["category_id"]
            out.append(_prediction(rng, sizes[ann["image_id"]], pts, label))
    for _ in range(12):  # false positives, negatives included
        image = sizes[int(rng.integers(1, 9))]
        out.append(_prediction(rng, image, _random_polygon(rng, image["width"], image["height"]),
                               int(rng.integers(1, 3))))
    return out


def _pycocotools_stats(gt: dict[str, Any], results: list[dict[str, Any]], iou_type: str,
                       cat_ids: list[int] | None = None) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        dets = copy.deepcopy(results)
        if iou_type == "segm":
            for det in dets:
                det.pop("bbox")
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(dets), iou_type)
        if cat_ids is not None:
            evaluator.params.catIds = cat_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats)


@pytest.mark.parametrize("crowd", [False, True])
def test_identical_to_pycocotools(tmp_path: Path, crowd: bool) -> None:
    rng = np.random.default_rng(3 if crowd else 1)
    records = _random_dataset(tmp_path, rng, crowd)
    predictions = _random_predictions(rng, records)
    evaluator = CocoEvaluator(records, [img["id"] for img in records.images])
    evaluator.process(predictions)
    metrics = evaluator.evaluate()
    assert 0.1 < metrics["segm"]["AP"] < 0.95 and 0.1 < metrics["bbox"]["AP"] < 0.95  # non-trivial
    assert any(a["iscrowd"] for a in evaluator.ground_truth["annotations"]) == crowd
    for iou_type in ("bbox", "segm"):
        reference = _pycocotools_stats(evaluator.ground_truth, evaluator.results, iou_type)
        ours = np.array([metrics[iou_type][name] for name in
                         ("AP", "AP50", "AP75", "APs", "APm", "APl",
                          "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")])
        np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-9)
        for cat_id, name in ((1, "F"), (2, "E"), (3, "unused")):
            per_cat = _pycocotools_stats(evaluator.ground_truth, evaluator.results, iou_type, [cat_id])
            assert metrics["per_class"][name][f"{iou_type}_AP"] == pytest.approx(per_cat[0], abs=1e-9)
            assert metrics["per_class"][name][f"{iou_type}_AP50"] == pytest.approx(per_cat[1], abs=1e-9)
    assert metrics["per_class"]["unused"]["bbox_AP"] == -1


# ----------------------------------------------------------------------------- model outputs


@pytest.mark.parametrize("keep_aspect", [False, True])
def test_detections_to_coco_round_trip(keep_aspect: bool) -> None:
    width, height = 300, 170
    polygon = np.array([[40, 30], [180, 45], [200, 140], [70, 150], [30, 90]], dtype=np.float64)
    plan = ResizePlan.make(width, height, (256, 256), keep_aspect)
    small = torch.from_numpy(rasterize([plan.apply_points(polygon)], 256, 256)).float()
    prob = F.avg_pool2d(small[None, None], 3, stride=1, padding=1)  # soft edges like a mask head
    box = plan.apply_points(polygon)
    output = {"boxes": torch.tensor([[*box.min(axis=0), *box.max(axis=0)], [0, 0, 5, 5]],
                                    dtype=torch.float32),
              "labels": torch.tensor([2, 1]), "scores": torch.tensor([0.9, 0.1]),
              "masks": torch.cat([prob, torch.zeros_like(prob)])}
    results = detections_to_coco(output, image_id=7, plan=plan, orig_width=width,
                                 orig_height=height, score_threshold=0.5)
    assert len(results) == 1 and results[0]["image_id"] == 7 and results[0]["category_id"] == 2
    truth = rasterize([polygon], height, width).astype(bool)
    mask = mask_api.decode(results[0]["segmentation"]).astype(bool)
    assert mask.shape == (height, width)
    assert (mask & truth).sum() / (mask | truth).sum() > 0.9
    x0, y0 = polygon.min(axis=0)
    x1, y1 = polygon.max(axis=0)
    np.testing.assert_allclose(results[0]["bbox"], [x0, y0, x1 - x0, y1 - y0], atol=0.02)
    # the windowed resize equals a full-image F.interpolate of the unpadded map
    inner = prob[0, 0, plan.pad_y:plan.pad_y + plan.inner_height, plan.pad_x:plan.pad_x + plan.inner_width]
    full = F.interpolate(inner[None, None], (height, width), mode="bilinear", align_corners=False)[0, 0]
    assert np.count_nonzero(mask != (full >= 0.5).numpy()) <= 2
    window = upsample_region(inner.numpy(), height, width, (20, 160), (15, 230))
    soft = F.interpolate(inner[None, None], (height, width), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(window, soft[0, 0, 20:160, 15:230].numpy(), atol=1e-6, rtol=0)
    both = detections_to_coco(output, image_id=7, plan=plan, orig_width=width, orig_height=height)
    assert len(both) == 2 and mask_api.area(both[1]["segmentation"]) == 0


def test_detections_to_coco_empty_and_box_only() -> None:
    plan = ResizePlan.make(100, 80, (64, 64), keep_aspect=False)
    empty = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64),
             "scores": torch.zeros(0), "masks": torch.zeros((0, 1, 64, 64))}
    assert detections_to_coco(empty, image_id=1, plan=plan, orig_width=100, orig_height=80) == []
    boxes_only = {"boxes": torch.tensor([[-5.0, 10.0, 70.0, 32.0]]), "labels": torch.tensor([1]),
                  "scores": torch.tensor([0.8])}
    (result,) = detections_to_coco(boxes_only, image_id=1, plan=plan, orig_width=100, orig_height=80)
    assert "segmentation" not in result
    assert result["bbox"] == pytest.approx([0.0, 12.5, 100.0, 27.5])  # clipped to the image
    wrong_size = {**boxes_only, "masks": torch.zeros((1, 1, 32, 32))}
    with pytest.raises(ValueError, match="masks are"):
        detections_to_coco(wrong_size, image_id=1, plan=plan, orig_width=100, orig_height=80)


def test_encode_mask_matches_pycocotools() -> None:
    from pycocotools import mask as py_mask

    mask = np.zeros((37, 53), dtype=np.uint8)
    mask[3:20, 5:40] = 1
    mask[25:30, 1:3] = 1
    rle = encode_mask(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == [37, 53]
    assert rle["counts"].encode() == py_mask.encode(np.asfortranarray(mask))["counts"]
    assert (mask_api.decode(rle) == mask).all()
    # a window pasted at (top, left) encodes as the full mask, also at the image borders
    rng = np.random.default_rng(0)
    boxes = [(0, 0, 5, 4), (30, 50, 7, 3), (10, 5, 27, 6), (0, 20, 37, 10), (0, 0, 37, 53)]
    for _ in range(20):
        top, left = int(rng.integers(0, 37)), int(rng.integers(0, 53))
        boxes.append((top, left, int(rng.integers(1, 38 - top)), int(rng.integers(1, 54 - left))))
    for top, left, rows, cols in boxes:
        window = rng.uniform(size=(rows, cols)) < 0.5
        window[0, 0] = window[-1, -1] = True
        full = np.zeros((37, 53), dtype=np.uint8)
        full[top:top + rows, left:left + cols] = window
        assert window_rle(window, top, left, 37, 53) == encode_mask(full)
    assert window_rle(np.zeros((0, 0), dtype=bool), 0, 0, 4, 6) == encode_mask(np.zeros((4, 6)))


# ----------------------------------------------------------------------------- result files


def test_load_results_validates_and_normalises(tmp_path: Path) -> None:
    sizes = image_sizes([{"id": 1, "width": 64, "height": 48}, {"id": 2, "width": 64, "height": 48}])
    good = [{"image_id": 1, "category_id": 1, "score": 0.5,
             "segmentation": [[10, 10, 30, 10, 30, 26, 10, 26]]},
            {"image_id": 2, "category_id": 2, "score": 0.25, "bbox": [1, 2, 3, 4]}]
    path = tmp_path / "pred.json"
    write_results(path, good)
    assert load_results(path) == good
    loaded = load_results(path, image_sizes=sizes)
    assert loaded[0]["segmentation"]["size"] == [48, 64]
    assert isinstance(loaded[0]["segmentation"]["counts"], str)
    assert loaded[0]["bbox"] == [10.0, 10.0, 20.0, 16.0]
    assert mask_api.area(loaded[0]["segmentation"]) == 320
    cases = [
        ({"not": "a list"}, "must be a JSON list"),
        ([good[0], {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}], "entry 1: 'score' missing"),
        ([{"image_id": 1, "category_id": 1, "score": 0.1}], "entry 0: needs 'bbox' or 'segmentation'"),
        ([{**good[1], "bbox": [0, 0, -1, 2]}], "entry 0: 'bbox' width and height"),
        ([{**good[1], "image_id": 99}], "entry 0: image_id 99 is not an image of the dataset"),
        ([{**good[0], "segmentation": {"size": [10, 10], "counts": "PP"}}], "differs from the image size"),
    ]
    for content, message in cases:
        path.write_text(json.dumps(content))
        with pytest.raises(InputError, match=message) as info:
            load_results(path, image_sizes=sizes)
        assert str(path) in str(info.value)
    path.write_text("[{broken")
    with pytest.raises(InputError, match="cannot read COCO results JSON"):
        load_results(path)
    with pytest.raises(InputError, match="not found"):
        load_results(tmp_path / "missing.json")
