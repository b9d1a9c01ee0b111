"""Landmark corners end to end: COCO keypoint results, corner-based measure, landmark metrics, flip TTA."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from spinekit.cli.main import app
from spinekit.clinical.measure import measure_dataset
from spinekit.data.records import load_dataset
from spinekit.engine.evaluate import evaluate_predictions
from spinekit.errors import InputError
from spinekit.evaluation.landmarks import landmark_metrics
from spinekit.evaluation.results import detections_to_coco, load_results, write_results
from spinekit.levels import AASCE_LEVELS
from spinekit.reports.tables import landmarks_table
from spinekit.transforms.geometric import ResizePlan
from test_landmarks import _aasce_folder, spine

runner = CliRunner()


@pytest.fixture(scope="module")
def aasce(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ingested AASCE dataset (4 images of 64 x 256, 17 vertebrae each, angles 10/10/10)."""
    root = tmp_path_factory.mktemp("lm")
    src, ds = _aasce_folder(root / "src", count=4), root / "ds"
    result = runner.invoke(app, ["ingest", str(src), "--format", "aasce", "--out", str(ds)])
    assert result.exit_code == 0, result.output
    return ds


def _keypoint_results(ds: Path, shift: float = 0.0, levels: bool = True) -> list[dict[str, Any]]:
    """Keypoint results copied from the expert corners, moved ``shift`` px to the right."""
    records = load_dataset(ds)
    out = []
    for ann in records.annotations:
        corners = np.asarray(ann["corners"], dtype=np.float64) + np.array([shift, 0.0])
        lo, hi = corners.min(axis=0), corners.max(axis=0)
        result = {"image_id": int(ann["image_id"]), "category_id": int(ann["category_id"]), "score": 0.9,
                  "bbox": [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])],
                  "keypoints": [v for x, y in corners for v in (float(x), float(y), 2)],
                  "num_keypoints": 4, "weak": False}
        if levels:
            result["level"] = ann["attributes"]["level"]
        out.append(result)
    return out


def test_detections_to_coco_writes_corners_in_original_pixels() -> None:
    plan = ResizePlan.make(64, 256, (128, 64), keep_aspect=True)  # scale 0.5, padded in x
    corners = torch.tensor(spine(17, 256, 64), dtype=torch.float32)
    model_pts = torch.from_numpy(plan.apply_points(corners.reshape(-1, 2).numpy()).reshape(17, 4, 2))
    keypoints = torch.cat([model_pts.float(), torch.full((17, 4, 1), 0.8)], dim=2)
    output = {"boxes": torch.tensor([[0.0, 0.0, 5.0, 5.0]] * 17), "labels": torch.ones(17, dtype=torch.int64),
              "scores": torch.full((17,), 0.8), "keypoints": keypoints,
              "weak": torch.tensor([False] * 16 + [True])}
    results = detections_to_coco(output, image_id=3, plan=plan, orig_width=64, orig_height=256)
    assert [r["level"] for r in results] == list(AASCE_LEVELS)
    assert results[-1]["weak"] is True and results[0]["weak"] is False
    back = np.array([r["keypoints"] for r in results]).reshape(17, 4, 3)
    assert np.abs(back[..., :2] - corners.numpy()).max() < 0.02
    assert (back[..., 2] == 2).all() and results[0]["num_keypoints"] == 4


def test_results_reader_validates_keypoints(tmp_path: Path) -> None:
    good = {"image_id": 1, "category_id": 1, "score": 0.5, "bbox": [0, 0, 4, 4],
            "keypoints": [1, 1, 2, 3, 1, 2, 1, 3, 2, 3, 3, 2], "num_keypoints": 4, "level": "T1",
            "weak": False}
    path = tmp_path / "pred.json"
    write_results(path, [good])
    loaded = load_results(path, image_sizes={1: (10, 10)})
    assert loaded[0]["keypoints"] == good["keypoints"] and loaded[0]["level"] == "T1"
    for bad, message in (({"keypoints": [1, 2, 2]}, "12 numbers"),
                         ({"keypoints": [1, 1, 5] * 4}, r"keypoints\[2\]"),
                         ({"keypoints": ["a"] + [1] * 11}, r"keypoints\[0\]"),
                         ({"weak": "yes"}, "weak: must be true or false")):
        write_results(path, [{**good, **bad}])
        with pytest.raises(InputError, match=rf"pred\.json.*entry 0: .*{message}"):
            load_results(path, image_sizes={1: (10, 10)})


def test_measure_uses_predicted_corners_directly(aasce: Path, tmp_path: Path) -> None:
    pred = tmp_path / "pred.json"
    write_results(pred, _keypoint_results(aasce, levels=False))
    rows = measure_dataset(aasce, predictions=pred, view="ap")
    expert = measure_dataset(aasce, view="ap")
    for row, ref in zip(rows, expert, strict=True):
        assert row["cobb_source"] == "predicted corners" and ref["cobb_source"] == "expert corners"
        assert row["cobb_1_deg"] == pytest.approx(ref["cobb_1_deg"], abs=1e-3)
    masks_only = [{k: v for k, v in r.items() if k not in ("keypoints", "num_keypoints", "weak")}
                  | {"segmentation": [[r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2], r["bbox"][1],
                                       r["bbox"][0] + r["bbox"][2], r["bbox"][1] + r["bbox"][3]]]}
                  for r in _keypoint_results(aasce)]
    write_results(pred, masks_only)
    out = tmp_path / "m.csv"
    result = runner.invoke(app, ["measure", str(aasce), "--predictions", str(pred), "--out", str(out),
                                 "--view", "ap", "--score-threshold", "0"])
    assert result.exit_code == 0, result.output
    with out.open() as fh:
        assert {r["cobb_source"] for r in csv.DictReader(fh)} == {"predicted masks"}


def test_landmark_metrics_perfect_and_shifted(aasce: Path) -> None:
    records = load_dataset(aasce)
    perfect = landmark_metrics(records.images, records.annotations, _keypoint_results(aasce))
    assert perfect["vertebrae"] == perfect["matched"] == 4 * 17
    assert perfect["corner_error_px"] == pytest.approx(0.0, abs=1e-9)
    assert perfect["within_px"] == {"10": 1.0, "20": 1.0, "40": 1.0} and perfect["detection_rate"] == 1.0
    assert list(perfect["detection_by_level"]) == list(AASCE_LEVELS)
    expected = np.array([img["cobb_angles_deg"] for img in records.images])
    assert perfect["cobb"]["images"] == 4 and perfect["cobb"]["mae_deg"]["cobb_1"] >= 0
    assert np.isfinite(perfect["cobb"]["smape_pct"]) and expected.shape == (4, 3)
    shifted = landmark_metrics(records.images, records.annotations, _keypoint_results(aasce, 15.0, False))
    assert shifted["corner_error_px"] == pytest.approx(15.0, abs=1e-6)
    assert shifted["corner_error_pct_height"] == pytest.approx(100 * 15 / 256, abs=1e-6)
    assert shifted["within_px"] == {"10": 0.0, "20": 1.0, "40": 1.0}
    assert shifted["cobb"]["smape_pct"] == pytest.approx(perfect["cobb"]["smape_pct"], abs=1e-6)


def test_evaluate_predictions_and_report_table(aasce: Path, tmp_path: Path) -> None:
    pred = tmp_path / "pred.json"
    write_results(pred, _keypoint_results(aasce, 5.0))
    metrics = evaluate_predictions(pred, aasce, split="all")
    assert metrics["landmarks"]["within_px"]["10"] == 1.0
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["landmarks"]["corner_error_px"] == pytest.approx(5.0, abs=1e-6)
    html = landmarks_table(on_disk["landmarks"])
    assert "Cobb SMAPE" in html and "corners within 10 px" in html and "cobb_3 MAE" in html
    result = runner.invoke(app, ["evaluate", "--predictions", str(pred), "--data", str(aasce),
                                 "--split", "all"])
    assert result.exit_code == 0 and "corner error (px)" in result.output, result.output


def _mirror(output: dict[str, torch.Tensor], width: int) -> np.ndarray:
    """Corners of a decode mirrored back (x -> W - x, left/right swapped), sorted by centre."""
    pts = output["keypoints"][..., :2].detach().numpy().astype(np.float64)[:, [1, 0, 3, 2]]
    pts[..., 0] = width - pts[..., 0]
    return _by_centre(pts)


def _by_centre(pts: np.ndarray) -> np.ndarray:
    centres = pts.mean(axis=1)
    return pts[np.lexsort((centres[:, 0], centres[:, 1]))]


def test_flip_tta_is_left_right_equivariant() -> None:
    from spinekit.models.landmarks import build_landmarks

    torch.manual_seed(0)
    model = build_landmarks(depth=18, num_classes=1, expected_count=5).eval()
    image = torch.rand(1, 64, 32)
    with torch.no_grad():
        plain = model([image])[0]
        model.tta_flip = True
        out, out_flipped = model([image])[0], model([image.flip(-1)])[0]
    assert out["keypoints"].shape == (5, 4, 3) and len(out["masks"]) == 5
    assert not torch.allclose(out["keypoints"], plain["keypoints"]), "the flip pass changes the decode"
    np.testing.assert_allclose(_by_centre(out["keypoints"][..., :2].numpy()), _mirror(out_flipped, 32),
                               atol=1e-3)


def test_tta_mode_is_validated() -> None:
    from spinekit.engine.config import config_from_dict
    from spinekit.errors import UsageError
    from spinekit.models.landmark_tta import set_tta
    from spinekit.models.landmarks import build_landmarks

    assert config_from_dict({"eval": {"tta": "flip"}}).eval.tta == "flip"
    with pytest.raises(UsageError, match=r"eval\.tta"):
        config_from_dict({"eval": {"tta": "rotate"}})
    model = build_landmarks(depth=18, num_classes=1)
    set_tta(model, "flip")
    assert model.tta_flip is True
    with pytest.raises(UsageError, match=r"--tta must be one of none, flip, got 'x'"):
        set_tta(model, "x")
    with pytest.raises(UsageError, match="--tta flip works for landmark models only"):
        set_tta(torch.nn.Linear(2, 2), "flip")
