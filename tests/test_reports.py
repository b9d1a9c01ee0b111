"""Overlays, per-image scores and the HTML run report on a tiny real dataset and run folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from faster_coco_eval.core import mask as mask_api
from PIL import Image

from conftest import labelme_doc, poly, write_png
from spinekit.data.ingest import IngestOptions, ingest
from spinekit.data.records import load_dataset
from spinekit.errors import InputError
from spinekit.geometry import rasterize
from spinekit.reports import build_report, draw_overlay, image_score, save_overlay
from spinekit.reports.overlay import class_colour

W, H = 80, 60
F_BOX = [[10, 10], [40, 10], [40, 30], [10, 30]]
E_BOX = [[45, 35], [70, 35], [70, 52], [45, 52]]
F_FLAT = [float(v) for point in F_BOX for v in point]
E_FLAT = [float(v) for point in E_BOX for v in point]


def _rle(mask: np.ndarray) -> dict:
    rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _det(image_id: int, category: int, mask: np.ndarray, score: float) -> dict:
    rle = _rle(mask)
    return {"image_id": image_id, "category_id": category, "score": score,
            "bbox": [float(v) for v in mask_api.toBbox(rle)], "segmentation": rle}


def _poly_mask(points: list[list[float]], dx: int = 0) -> np.ndarray:
    return rasterize([np.asarray(points, dtype=float) + np.array([dx, 0.0])], H, W)


# ---------------------------------------------------------------- overlay and scoring


def test_overlay_shape_dtype_colours_and_threshold() -> None:
    image = np.full((H, W), 40, dtype=np.uint8)
    expert = [{"id": 1, "category_id": 1, "segmentation": [F_FLAT], "bbox": [10, 10, 30, 20]}]
    kept = _det(1, 2, _poly_mask(E_BOX), 0.9)
    dropped = _det(1, 2, _poly_mask([[2, 40], [8, 40], [8, 55], [2, 55]]), 0.3)
    pic = draw_overlay(image, detections=[kept, dropped], expert=expert, names={1: "F", 2: "E"},
                       max_side=None)
    assert pic.dtype == np.uint8 and pic.ndim == 3 and pic.shape[1:] == (W, 3)
    assert pic.shape[0] > H  # legend strip below the picture
    assert tuple(pic[10, 25]) == class_colour(1)  # top edge of the expert outline
    inside_e = pic[45, 58].astype(int)  # inside the kept prediction: tinted towards class 2
    expected = np.rint(40 * 0.65 + np.array(class_colour(2)) * 0.35)
    assert np.abs(inside_e - expected).max() <= 1
    assert tuple(pic[47, 5]) == (40, 40, 40)  # below the score threshold: not drawn


def test_overlay_downscales_uint16_and_rgb() -> None:
    wide = np.zeros((300, 1200), dtype=np.uint16)
    wide[:, 600:] = 4000
    pic = draw_overlay(wide, names={1: "F"}, max_side=240)
    assert pic.shape[1] == 240 and pic.shape[0] > 60
    assert pic[:60].shape == (60, 240, 3)
    assert pic[30, 200].min() == 255 and pic[30, 20].max() == 0  # uint16 max -> 255
    rgb = np.zeros((50, 40, 3), dtype=np.uint8)
    assert draw_overlay(rgb, names={}, max_side=100).shape[1] == 40  # never enlarged


def test_save_overlay_writes_png(tmp_path: Path) -> None:
    pic = draw_overlay(np.zeros((20, 30), dtype=np.uint8), names={1: "F"})
    save_overlay(tmp_path / "o.png", pic)
    with Image.open(tmp_path / "o.png") as img:
        assert img.format == "PNG" and img.size == (30, pic.shape[0])


def test_image_score_matches_greedily_by_class() -> None:
    expert = [{"id": 1, "category_id": 1, "segmentation": [F_FLAT], "bbox": [10, 10, 30, 20]},
              {"id": 2, "category_id": 2, "segmentation": [E_FLAT], "bbox": [45, 35, 25, 17]}]
    good = _det(1, 1, _poly_mask(F_BOX), 0.9)
    shifted = _det(1, 1, _poly_mask(F_BOX, dx=3), 0.95)  # IoU 27/33 with the expert F
    wrong_class = _det(1, 1, _poly_mask(E_BOX), 0.8)
    low = _det(1, 2, _poly_mask(E_BOX), 0.1)
    score = image_score([good, shifted, wrong_class, low], expert, 0.5)
    assert (score["matched"], score["false_positives"], score["false_negatives"]) == (1, 2, 1)
    assert score["mean_iou"] == pytest.approx(27 / 33, abs=1e-6)  # highest score matched first
    assert score["badness"] == pytest.approx(3 + 1 - 27 / 33, abs=1e-5)
    perfect = image_score([good, _det(1, 2, _poly_mask(E_BOX), 0.7)], expert, 0.5)
    assert perfect["badness"] == pytest.approx(0.0) and perfect["mean_iou"] == pytest.approx(1.0)
    boxes_only = [{k: v for k, v in d.items() if k != "segmentation"} for d in (good, wrong_class)]
    by_box = image_score(boxes_only, expert, 0.5, size=(H, W))
    assert (by_box["matched"], by_box["false_positives"], by_box["false_negatives"]) == (1, 1, 1)
    assert image_score([], [], 0.5)["badness"] == 0.0


# ---------------------------------------------------------------- the HTML report

FILES = {"P001_a.png": [("F", F_BOX)], "P002_b.png": [("F", F_BOX)],
         "P003_<b>c.png": [("E", E_BOX)], "P004_n.png": []}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    for name, shapes in FILES.items():
        write_png(src / name, W, H)
        doc = labelme_doc(name, W, H, [poly(label, pts) for label, pts in shapes])
        (src / name.replace(".png", ".json")).write_text(json.dumps(doc))
    out = tmp_path / "ds"
    ingest(src, out, IngestOptions(format="labelme", patient_pattern=r"^(P\d+)_"))
    ids = [img["id"] for img in load_dataset(out).images]
    (out / "splits.json").write_text(json.dumps({"version": 1, "test": ids, "folds": [[], []]}))
    return out


def _predictions(dataset: Path) -> list[dict]:
    records = load_dataset(dataset)
    by_name = {Path(img["file_name"]).name: img["id"] for img in records.images}
    cats = {c["name"]: c["id"] for c in records.categories}
    return [
        _det(by_name["P001_a.png"], cats["F"], _poly_mask(F_BOX), 0.97),
        _det(by_name["P002_b.png"], cats["F"], _poly_mask(F_BOX), 0.95),
        _det(by_name["P002_b.png"], cats["E"], _poly_mask(E_BOX), 0.88),  # planted false positive
        _det(by_name["P003_<b>c.png"], cats["E"], _poly_mask(E_BOX, dx=2), 0.91),
    ]


def _write_run(run: Path, dataset: Path) -> None:
    run.mkdir(parents=True)
    config = {"model": {"name": "maskrcnn", "classes": ["F", "E"]}, "train": {"lr": 0.0025}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    lines = [{"kind": "train", "epoch": e, "step": s, "lr": 0.001 * s, "loss": 2.0 / s,
              "loss_classifier": 0.5 / s, "loss_box_reg": 0.5 / s, "loss_mask": 0.6 / s,
              "loss_objectness": 0.2 / s, "loss_rpn_box_reg": 0.2 / s, "images_per_s": 9.5,
              "seconds": 0.4 * s} for e in range(2) for s in range(1 + 5 * e, 6 + 5 * e)]
    lines += [{"kind": "val", "epoch": e, "step": 5 + 5 * e, "bbox_AP": 0.3 + e / 10,
               "bbox_AP50": 0.6, "segm_AP": 0.25, "segm_AP50": 0.5} for e in range(2)]
    half_written = '{"kind": "tr'
    (run / "log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + half_written)
    metrics = {"split": "test", "images": 4, "negative_images": 1,
               "bbox": {"AP": 0.4567, "AP50": 0.8123, "AP75": 0.5, "APs": -1.0, "APm": 0.3,
                        "APl": 0.6},
               "segm": {"AP": 0.4012, "AP50": 0.79, "AP75": 0.45, "APs": -1.0, "APm": 0.25,
                        "APl": 0.55},
               "per_class": {"F": {"instances": 2, "bbox_AP": 0.7321, "bbox_AP50": 1.0,
                                   "segm_AP": 0.7, "segm_AP50": 1.0},
                             "E": {"instances": 1, "bbox_AP": 0.1806, "bbox_AP50": 0.5,
                                   "segm_AP": -1, "segm_AP50": 0.5}},
               "image_level": {"target": {"F": {"sensitivity": 0.95, "detected": 2}}}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "predictions").mkdir()
    (run / "predictions" / "test.json").write_text(json.dumps(_predictions(dataset)))
    reference = {"dataset": str(dataset), "split": "test", "fold": 0}
    (run / "dataset.json").write_text(json.dumps(reference))


def test_report_of_a_complete_run(tmp_path: Path, dataset: Path) -> None:
    run = tmp_path / "run"
    _write_run(run, dataset)
    calls: list[tuple[int, int]] = []
    out = build_report(run, progress=lambda done, total: calls.append((done, total)))
    assert out == run / "report.html"
    page = out.read_text(encoding="utf-8")
    assert page.count("data:image/") == 4 + 1  # four overlays + the training curves
    assert page.count("data:image/png") == 1
    assert calls[-1] == (4, 4)
    for text in ("45.7", "81.2", "40.1", "73.2", "18.1", "0.950", "target.F.sensitivity"):
        assert text in page, text
    assert re.search(r"<td>F</td><td class=num>2</td><td class=num>73\.2</td>", page)
    assert re.search(r"<td>E</td>.*?<td class=num>n/a</td>", page)  # segm AP -1
    assert "<td class=num>n/a</td>" in page  # APs = -1
    captions = re.findall(r'class="name">([^<]*)</span>', page)
    assert captions[0] == "images/P002_b.png"  # the planted false positive comes first
    assert captions[-1] in ("images/P001_a.png", "images/P004_n.png")  # perfect images last
    assert "images/P003_&lt;b&gt;c.png" in captions
    assert "<b>c" not in page
    assert "1 of 13 lines skipped, not valid log entries" in page  # the half-written last log line
    assert "What is missing" not in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert len(page) < 5_000_000


def test_report_limits_overlays_and_accepts_dataset_override(tmp_path: Path, dataset: Path) -> None:
    run = tmp_path / "run"
    _write_run(run, dataset)
    (run / "dataset.json").unlink()
    page = build_report(run, dataset=dataset, max_overlays=2).read_text(encoding="utf-8")
    assert page.count("data:image/jpeg") == 2
    assert "2 of 4 evaluated images" in page
    assert "dataset.json</code> is missing" in page


def test_report_of_a_run_with_only_a_config(tmp_path: Path) -> None:
    run = tmp_path / "early"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {"name": "x<y>"}}))
    page = build_report(run).read_text(encoding="utf-8")
    assert "What is missing" in page
    assert "<code>metrics.json</code> is missing: the run has not been evaluated" in page
    assert "<code>log.jsonl</code> is missing" in page
    assert "data:image/" not in page
    assert "x&lt;y&gt;" in page and "model.name" in page


def test_report_needs_a_run_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="run folder not found"):
        build_report(tmp_path / "nope")
