"""LabelMe pre-annotations from predictions, read back by `spinekit ingest --format labelme`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from faster_coco_eval.core import mask as mask_api

from conftest import write_png
from spinekit.data.ingest import IngestOptions, ingest
from spinekit.data.records import load_dataset
from spinekit.geometry import rasterize
from spinekit.io.formats.predictions import write_labelme_predictions

W, H = 72, 56
NAMES = {1: "F", 2: "E"}


def _rle(mask: np.ndarray) -> dict:
    rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _detection(mask: np.ndarray, category: int, score: float) -> dict:
    rle = _rle(mask)
    bbox = [float(v) for v in mask_api.toBbox(rle)]
    return {"image_id": 1, "category_id": category, "bbox": bbox, "score": score,
            "segmentation": rle}


def _masks() -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:H, 0:W]
    ellipse = (((cols - 22) / 12.0) ** 2 + ((rows - 20) / 8.0) ** 2 <= 1.0).astype(np.uint8)
    blob = np.zeros((H, W), dtype=np.uint8)
    blob[30:48, 40:66] = 1
    blob[30:38, 40:48] = 0  # an L shape: a concave outline
    return ellipse, blob


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(a & b) / np.count_nonzero(a | b))


def test_predictions_round_trip_through_labelme_ingest(tmp_path: Path) -> None:
    src = tmp_path / "loop"
    write_png(src / "scan.png", W, H)
    ellipse, blob = _masks()
    speck = np.zeros((H, W), dtype=np.uint8)
    speck[2:4, 2:4] = 1
    detections = [
        _detection(blob, 2, 0.81),
        _detection(ellipse, 1, 0.934),
        _detection(speck, 1, 0.2),  # below the threshold: not written
        {"image_id": 1, "category_id": 1, "bbox": [50.0, 4.0, 12.0, 10.0], "score": 0.6},  # no mask
    ]
    n = write_labelme_predictions(src / "scan.json", image_ref="scan.png", width=W, height=H,
                                  detections=detections, names=NAMES, score_threshold=0.5)
    assert n == 3
    doc = json.loads((src / "scan.json").read_text())
    assert [s["label"] for s in doc["shapes"]] == ["F", "E", "F"]  # by descending score
    scores = [s["description"] for s in doc["shapes"]]
    assert scores == ["score=0.934", "score=0.810", "score=0.600"]
    assert [s["shape_type"] for s in doc["shapes"]] == ["polygon", "polygon", "rectangle"]
    assert (doc["imagePath"], doc["imageWidth"], doc["imageHeight"]) == ("scan.png", W, H)

    ingest(src, tmp_path / "ds", IngestOptions(format="labelme"))
    records = load_dataset(tmp_path / "ds")
    names = records.category_names()
    back = {(names[a["category_id"]], a["shape"]): a for a in records.annotations}
    assert len(records.annotations) == 3
    for (label, kind), original in ((("F", "polygon"), ellipse), (("E", "polygon"), blob)):
        got = rasterize(back[(label, kind)]["segmentation"], H, W)
        assert _iou(got.astype(bool), original.astype(bool)) > 0.9, label
    rect = back[("F", "rectangle")]
    assert rect["bbox"] == [50.0, 4.0, 12.0, 10.0]
    assert back[("F", "polygon")]["attributes"]["description"] == "score=0.934"


def test_empty_prediction_list_writes_document_without_shapes(tmp_path: Path) -> None:
    n = write_labelme_predictions(tmp_path / "a.json", image_ref="a.png", width=W, height=H,
                                  detections=[], names=NAMES)
    assert n == 0
    assert json.loads((tmp_path / "a.json").read_text())["shapes"] == []


def test_mask_of_another_size_and_unknown_class_are_refused(tmp_path: Path) -> None:
    ellipse, _ = _masks()
    wrong_size = _detection(ellipse[:40], 1, 0.9)
    with pytest.raises(ValueError, match="differs from the image size"):
        write_labelme_predictions(tmp_path / "a.json", image_ref="a.png", width=W, height=H,
                                  detections=[wrong_size], names=NAMES)
    with pytest.raises(ValueError, match="category_id 7"):
        write_labelme_predictions(tmp_path / "a.json", image_ref="a.png", width=W, height=H,
                                  detections=[_detection(ellipse, 7, 0.9)], names=NAMES)
    assert not (tmp_path / "a.json").exists()
