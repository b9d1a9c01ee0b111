"""Vertebra landmark model: target round trip, loss, decoding to exactly N, flip, CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from spinekit.cli.main import app
from spinekit.engine.config import config_from_dict
from spinekit.errors import UsageError
from spinekit.geometry import rasterize
from spinekit.models.landmark_targets import decode_points, encode_targets, gaussian_radius, top_peaks
from spinekit.models.landmarks import LandmarkNet
from spinekit.models.registry import MODELS, backbone_body, build_model
from spinekit.transforms.geometric import hflip

runner = CliRunner()


def spine(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """``(n, 4, 2)`` corners (TL, TR, BL, BR) of ``n`` tilted vertebrae down a gentle curve."""
    rng = np.random.default_rng(seed)
    step = 0.8 * height / n
    out = []
    for k in range(n):
        cy = 0.1 * height + (k + 0.5) * step
        cx = width / 2 + 0.12 * width * np.sin(k / n * np.pi + rng.uniform(-0.3, 0.3))
        half_w, half_h, tilt = 0.18 * width, 0.35 * step, rng.uniform(-0.25, 0.25)
        local = np.array([[-half_w, -half_h], [half_w, -half_h], [-half_w, half_h], [half_w, half_h]])
        rot = np.array([[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]])
        out.append(local @ rot.T + [cx, cy])
    return np.array(out)


def spine_image(corners: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 image: bright quadrilaterals (ring TL, TR, BR, BL) on a dark background."""
    image = np.full((height, width), 30, dtype=np.uint8)
    for quad in corners:
        image[rasterize([quad[[0, 1, 3, 2]]], height, width) > 0] = 200
    return image


def test_gaussian_radius_keeps_the_overlap() -> None:
    w, h = 20.0, 10.0
    r = gaussian_radius(w, h, 0.7)
    inter = (w - r) * (h - r)
    assert inter / (2 * w * h - inter) == pytest.approx(0.7)
    assert gaussian_radius(0, 0) == 0


def test_encode_then_decode_gives_the_corners_back() -> None:
    corners = torch.tensor(spine(6, 128, 64), dtype=torch.float32)
    encoded = encode_targets(corners, torch.ones(6, dtype=torch.int64), num_classes=1, map_size=(32, 16))
    assert encoded.heatmap.shape == (1, 32, 16) and float(encoded.heatmap.max()) == 1.0
    offsets, corner_map = torch.zeros(2, 32, 16), torch.zeros(8, 32, 16)
    xs, ys = encoded.cells[:, 0], encoded.cells[:, 1]
    offsets[:, ys, xs], corner_map[:, ys, xs] = encoded.offsets.T, encoded.corners.T
    peaks = top_peaks(encoded.heatmap, 6)
    found = decode_points(peaks.cells, offsets[:, peaks.cells[:, 1], peaks.cells[:, 0]].T,
                          corner_map[:, peaks.cells[:, 1], peaks.cells[:, 0]].T)
    order = torch.argsort(found.mean(dim=1)[:, 1])
    assert torch.allclose(peaks.scores, torch.ones(6))
    assert (found[order] - corners).abs().max() < 1.0


def test_decode_returns_exactly_n_in_spine_order_and_flags_weak_peaks() -> None:
    model = build_model("landmarks_r18", num_classes=1, expected_count=8)
    assert isinstance(model, LandmarkNet)
    prob = torch.zeros(1, 32, 16)
    rows = [20, 3, 28, 12, 7, 16]  # six peaks out of order; two more must be taken
    for row in rows:
        prob[0, row, 8] = 0.9
    out = model._decode(prob, torch.full((2, 32, 16), 0.5), torch.zeros(8, 32, 16), (128, 64))
    assert out["keypoints"].shape == (8, 4, 3) and out["masks"].shape == (8, 1, 128, 64)
    assert int(out["weak"].sum()) == 2 and float(out["scores"].max()) == pytest.approx(0.9)
    strong_y = out["keypoints"][~out["weak"], 0, 1]
    assert strong_y.tolist() == sorted((r + 0.5) * 4 for r in rows), "head first, along the spine"


def test_model_builds_and_predicts_exactly_n() -> None:
    assert MODELS["landmarks_r18"].kind == MODELS["landmarks_r34"].kind == "landmarks"
    model = build_model("landmarks_r34", num_classes=1, expected_count=5).eval()
    assert backbone_body(model).get_submodule("conv1").in_channels == 1
    with torch.inference_mode():
        outs = model([torch.rand(1, 128, 64), torch.rand(1, 100, 60)])
    assert [len(o["scores"]) for o in outs] == [5, 5]
    assert outs[1]["masks"].shape[-2:] == (100, 60)
    assert set(outs[0]) == {"boxes", "labels", "scores", "keypoints", "weak", "masks"}


def test_loss_decreases_on_a_tiny_synthetic_set() -> None:
    torch.manual_seed(0)
    samples = [spine(6, 128, 64, seed=s) for s in range(4)]
    images = [torch.from_numpy(spine_image(c, 128, 64)).float()[None] / 255 for c in samples]
    targets = [{"corners": torch.tensor(c, dtype=torch.float32), "labels": torch.ones(6, dtype=torch.int64)}
               for c in samples]
    model = build_model("landmarks_r18", num_classes=1).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for _ in range(20):
        losses = model(images, targets)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
    assert set(losses) == {"loss_heatmap", "loss_offset", "loss_corners"}
    assert np.mean(history[-3:]) < 0.5 * np.mean(history[:3]), history


def test_missing_corners_in_training_targets_are_refused() -> None:
    model = build_model("landmarks_r18", num_classes=1).train()
    with pytest.raises(ValueError, match="corners"):
        model([torch.rand(1, 64, 64)], [{"labels": torch.ones(1, dtype=torch.int64)}])


def test_flip_swaps_left_and_right_corners() -> None:
    corners = torch.tensor(spine(3, 128, 64), dtype=torch.float32)
    masks = torch.from_numpy(np.stack([rasterize([q[[0, 1, 3, 2]]], 128, 64) for q in corners.numpy()]))
    _, flipped = hflip(torch.zeros(1, 128, 64), {"corners": corners, "masks": masks})
    new = flipped["corners"]
    assert torch.allclose(new[:, 0, 0], 64 - corners[:, 1, 0]) and torch.equal(new[:, 0, 1], corners[:, 1, 1])
    assert torch.allclose(new[:, 3, 0], 64 - corners[:, 2, 0])
    assert (new[:, 1, 0] > new[:, 0, 0]).all(), "top-left stays left of top-right"
    again = np.stack([rasterize([q[[0, 1, 3, 2]]], 128, 64) for q in new.numpy()])
    assert np.abs(again.astype(int) - flipped["masks"].numpy()).sum() <= 0.02 * masks.sum()


def test_expected_count_is_validated() -> None:
    assert config_from_dict({}).model.expected_count == 17
    with pytest.raises(UsageError, match=r"model\.expected_count must be >= 1"):
        config_from_dict({"model": {"expected_count": 0}})


def _aasce_folder(folder: Path, count: int = 6) -> Path:
    """A tiny AASCE-layout folder (17 vertebrae per image, 64 x 256 images)."""
    (folder / "images").mkdir(parents=True)
    names, rows = [], []
    for k in range(count):
        corners = spine(17, 256, 64, seed=k)
        name = f"img-{k} A AP.jpg"
        Image.fromarray(spine_image(corners, 256, 64)).save(folder / "images" / name)
        names.append(name)
        flat = corners.reshape(68, 2) / [64, 256]
        rows.append(np.concatenate([flat[:, 0], flat[:, 1]]))
    (folder / "filenames.csv").write_text("".join(f"{n}\n" for n in names))
    np.savetxt(folder / "landmarks.csv", np.array(rows), delimiter=",")
    np.savetxt(folder / "angles.csv", np.full((count, 3), 10.0), delimiter=",")
    return folder


def _ok(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (args, result.output)


def test_train_predict_evaluate_end_to_end(tmp_path: Path) -> None:
    src, ds, run = _aasce_folder(tmp_path / "src"), tmp_path / "ds", tmp_path / "run"
    _ok(["ingest", str(src), "--format", "aasce", "--out", str(ds)])
    _ok(["split", str(ds), "--test-fraction", "0.34", "--folds", "2"])
    _ok(["train", str(ds), "--out", str(run), "--model", "landmarks_r18", "--set", "train.max_steps=2",
         "--set", "train.batch_size=2", "--set", "data.size=[128,64]", "--set", "data.workers=0",
         "--set", "train.device=cpu"])
    assert (run / "checkpoints" / "last.pt").is_file()
    _ok(["evaluate", str(run), "--device", "cpu"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert "segm" in metrics and "bbox" in metrics
    csv = tmp_path / "angles.csv"
    _ok(["measure", str(ds), "--predictions", str(run / "predictions" / "test.json"), "--out", str(csv),
         "--split", "test", "--score-threshold", "0", "--view", "ap"])
    assert len(csv.read_text().strip().splitlines()) == 1 + 2, "a header and one row per test image"
    _ok(["predict", str(run), str(src / "images"), "--out", str(tmp_path / "pred"), "--device", "cpu"])
    results = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    per_image: dict[int, int] = {}
    for item in results:
        per_image[item["image_id"]] = per_image.get(item["image_id"], 0) + 1
    assert sorted(per_image.values()) == [17] * 6, "exactly 17 vertebrae per image"


def test_dataset_without_corners_is_refused_in_one_line(dataset: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", str(dataset), "--out", str(tmp_path / "r"),
                                 "--model", "landmarks_r18", "--set", "train.max_steps=1"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert str(dataset) in lines[0] and "no 4 vertebra corners" in lines[0]
    assert not (tmp_path / "r" / "checkpoints").exists()
