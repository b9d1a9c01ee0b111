"""Semantic models (U-Net, PSPNet, DeepLabv3): losses, instances from the class map, weights, training."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.models import resnet18
from torchvision.ops.misc import FrozenBatchNorm2d

from spinekit.data.ingest import IngestOptions, ingest
from spinekit.data.splits import SplitConfig, make_splits
from spinekit.engine.config import load_config
from spinekit.engine.evaluate import evaluate_run
from spinekit.engine.runs import load_run
from spinekit.engine.train import fit
from spinekit.errors import InputError
from spinekit.models.registry import MODELS, build_model
from spinekit.models.semantic import (
    SemanticPostprocess,
    SemanticSegmenter,
    instances_from_probabilities,
    target_class_map,
)
from spinekit.models.weights import load_weights

R18 = ["unet_r18", "pspnet_r18", "deeplabv3_r18"]
SEMANTIC = [name for name, spec in MODELS.items() if spec.kind == "semantic"]
TINY = ["data.size=[64,64]", "data.workers=0", "train.batch_size=2", "optim.lr=0.001",
        "optim.warmup_steps=1", "train.threads=1"]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: tiny models on a shared 2-core machine run far faster so."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _target(boxes: list[tuple[int, int, int, int]], labels: list[int],
            size: tuple[int, int] = (64, 64)) -> dict[str, torch.Tensor]:
    """A torchvision target of filled rectangles ``(x1, y1, x2, y2)`` (x2/y2 exclusive) in an (H, W) image."""
    masks = torch.zeros((len(boxes), *size), dtype=torch.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        masks[k, y1:y2, x1:x2] = 1
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64), "masks": masks}


def _check_output(out: dict[str, torch.Tensor], height: int, width: int, num_classes: int) -> None:
    n = out["boxes"].shape[0]
    assert out["boxes"].shape == (n, 4) and out["boxes"].dtype == torch.float32
    assert out["labels"].shape == (n,) and out["labels"].dtype == torch.int64
    assert out["scores"].shape == (n,) and out["scores"].dtype == torch.float32
    assert out["masks"].shape == (n, 1, height, width) and out["masks"].dtype == torch.float32
    assert set(out["masks"].unique().tolist()) <= {0.0, 1.0}
    assert bool(((out["labels"] >= 1) & (out["labels"] <= num_classes)).all())
    assert bool(((out["scores"] > 0) & (out["scores"] <= 1)).all())


@pytest.mark.parametrize("name", R18)
def test_architecture_trains_and_predicts(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=2, image_size=64)
    assert MODELS[name].kind == "semantic" and isinstance(model, SemanticSegmenter)
    assert model.encoder.get_submodule("conv1").in_channels == 1
    model.train()
    images = [torch.rand(1, 50, 70) for _ in range(2)]  # not multiples of 8/32: padded, then cropped
    targets = [_target([(5, 5, 25, 20)], [1], (50, 70)),
               _target([(30, 10, 60, 40), (5, 30, 15, 45)], [2, 1], (50, 70))]
    losses = model(images, targets)
    assert set(losses) == {"loss_ce", "loss_dice"}
    assert all(v.ndim == 0 and torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    grad = model.encoder.get_submodule("conv1").weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    model.eval()
    with torch.inference_mode():
        outputs = model([torch.rand(1, 64, 64), torch.rand(1, 40, 48), torch.rand(1, 64, 64)])
    assert len(outputs) == 3
    for out, (h, w) in zip(outputs, [(64, 64), (40, 48), (64, 64)], strict=True):
        _check_output(out, h, w, 2)


def _probabilities() -> np.ndarray:
    """(3, 64, 64): class-1 blobs at 0.8 and 0.7, a class-2 blob at 0.6, a 2x2 class-2 speck."""
    probs = np.zeros((3, 64, 64), dtype=np.float32)
    probs[0] = 0.9
    probs[1:] = 0.05

    def paint(rows: slice, cols: slice, label: int, p: float) -> None:
        probs[:, rows, cols] = (1 - p) / 2
        probs[label, rows, cols] = p

    paint(slice(5, 15), slice(5, 20), 1, 0.8)
    paint(slice(30, 40), slice(40, 50), 1, 0.7)
    paint(slice(45, 60), slice(5, 15), 2, 0.6)
    paint(slice(60, 62), slice(60, 62), 2, 0.9)
    return probs


def test_instances_from_probability_maps() -> None:
    out = instances_from_probabilities(_probabilities())
    _check_output(out, 64, 64, 2)
    assert out["labels"].tolist() == [1, 1, 2], "sorted by score; the 2x2 speck is under min_area"
    assert out["boxes"].tolist() == [[5, 5, 20, 15], [40, 30, 50, 40], [5, 45, 15, 60]]
    assert np.allclose(out["scores"].numpy(), [0.8, 0.7, 0.6])
    assert out["masks"].sum(dim=(1, 2, 3)).tolist() == [150, 100, 150]
    assert out["masks"][0, 0, 5:15, 5:20].all() and out["masks"][0].sum() == 150
    kept = instances_from_probabilities(_probabilities(), SemanticPostprocess(min_area=4))
    assert kept["labels"].tolist() == [2, 1, 1, 2] and kept["boxes"][0].tolist() == [60, 60, 62, 62]
    background = np.zeros((3, 32, 32), dtype=np.float32)
    background[0] = 1
    empty = instances_from_probabilities(background)
    _check_output(empty, 32, 32, 2)
    assert empty["boxes"].shape == (0, 4)


def test_components_are_eight_connected() -> None:
    probs = np.zeros((2, 32, 32), dtype=np.float32)
    probs[0] = 1
    for rows, cols in ((slice(4, 10), slice(4, 10)), (slice(10, 16), slice(10, 16))):  # touch at a corner
        probs[0, rows, cols], probs[1, rows, cols] = 0.2, 0.8
    out = instances_from_probabilities(probs)
    assert out["labels"].tolist() == [1] and out["boxes"].tolist() == [[4, 4, 16, 16]]


def _two_discs() -> np.ndarray:
    """(2, 64, 64): two class-1 discs of radius 10 whose centres are 17 px apart (they overlap)."""
    yy, xx = np.mgrid[:64, :64]
    discs = ((yy - 32) ** 2 + (xx - 22) ** 2 <= 100) | ((yy - 32) ** 2 + (xx - 39) ** 2 <= 100)
    probs = np.stack([np.where(discs, 0.1, 0.9), np.where(discs, 0.9, 0.1)]).astype(np.float32)
    return probs


def test_split_touching_separates_two_discs() -> None:
    probs = _two_discs()
    whole = instances_from_probabilities(probs)
    assert whole["labels"].tolist() == [1], "without splitting the two discs are one instance"
    split = instances_from_probabilities(probs, SemanticPostprocess(split_touching=True))
    assert split["labels"].tolist() == [1, 1]
    masks = split["masks"][:, 0].bool()
    assert not (masks[0] & masks[1]).any() and torch.equal(masks[0] | masks[1], whole["masks"][0, 0].bool())
    lefts = sorted(split["boxes"][:, 0].tolist())
    rights = sorted(split["boxes"][:, 2].tolist())
    assert lefts[0] == 12 and 28 <= lefts[1] <= 33 and 28 <= rights[0] <= 33 and rights[1] == 50
    single = np.zeros((2, 64, 64), dtype=np.float32)
    single[0], single[1, 20:40, 20:40] = 1, 1
    single[0, 20:40, 20:40] = 0
    assert instances_from_probabilities(single, SemanticPostprocess(split_touching=True))["labels"].tolist() \
        == [1], "one square has one distance maximum: not split"


def test_class_map_smallest_instance_wins() -> None:
    target = _target([(5, 5, 10, 10), (0, 0, 20, 20), (30, 30, 40, 40), (35, 35, 45, 45)], [2, 1, 1, 3])
    classes = target_class_map(target, 64, 64)
    assert classes.dtype == torch.int64 and classes.shape == (64, 64)
    assert classes[7, 7] == 2, "the small instance listed first still wins over the large one"
    assert classes[2, 2] == 1 and classes[25, 25] == 0
    assert classes[37, 37] == 3, "equal areas: the later instance wins"
    assert classes[32, 32] == 1 and classes[42, 42] == 3
    empty = _target([], [])
    assert not target_class_map(empty, 64, 64).any()


@pytest.mark.parametrize("name", R18)
def test_norm_options(name: str) -> None:
    group = build_model(name, num_classes=1, norm="group")
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in group.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in group.modules())
    frozen = build_model(name, num_classes=1, norm="frozen_bn")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in frozen.modules())
    batch = build_model(name, num_classes=1, norm="batch")
    assert any(isinstance(m, nn.BatchNorm2d) for m in batch.modules())
    group.train()
    losses = group([torch.rand(1, 64, 64)], [_target([(8, 8, 24, 24)], [1])])  # batch 1 with GroupNorm
    assert all(torch.isfinite(v) for v in losses.values())


def test_building_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("a model builder tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert set(SEMANTIC) == {f"{a}_{e}" for a in ("unet", "pspnet", "deeplabv3") for e in ("r18", "r50")}
    for name in SEMANTIC:
        model = build_model(name, num_classes=3, norm="frozen_bn")
        assert model.get_submodule("model.segmentation_head.0").out_channels == 4


def test_weights_same_model_and_plain_resnet(tmp_path: Path) -> None:
    source = build_model("unet_r18", num_classes=2)
    torch.save({"model": source.state_dict()}, tmp_path / "unet.pt")
    same = build_model("unet_r18", num_classes=2, weights=tmp_path / "unet.pt")
    assert all(torch.equal(v, same.state_dict()[k]) for k, v in source.state_dict().items())
    other = build_model("unet_r18", num_classes=4)
    counts = load_weights(other, tmp_path / "unet.pt")
    assert counts["skipped"] == 2, "the class-specific segmentation head (weight, bias) is skipped"
    key = "model.decoder.blocks.0.conv1.0.weight"
    assert torch.equal(other.state_dict()[key], source.state_dict()[key])

    reference = resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    unet = build_model("unet_r18", num_classes=2, norm="frozen_bn", weights=tmp_path / "resnet18.pth")
    assert torch.allclose(unet.encoder.get_submodule("conv1").weight,
                          reference.conv1.weight.sum(dim=1, keepdim=True))
    assert torch.equal(unet.encoder.get_submodule("layer4")[1].conv2.weight, reference.layer4[1].conv2.weight)
    assert torch.equal(unet.encoder.get_submodule("bn1").running_var, reference.bn1.running_var)
    psp = build_model("pspnet_r18", num_classes=2, weights=tmp_path / "resnet18.pth")
    assert torch.equal(psp.encoder.get_submodule("layer2")[0].conv1.weight, reference.layer2[0].conv1.weight)
    torch.save(build_model("maskrcnn_light", num_classes=2).state_dict(), tmp_path / "maskrcnn.pt")
    with pytest.raises(InputError, match="no parameter of this file fits"):
        build_model("unet_r18", num_classes=2, weights=tmp_path / "maskrcnn.pt")


def test_freezing_semantic_encoder() -> None:
    model = build_model("unet_r18", num_classes=2, trainable_layers=2)
    trainable = {n.split(".")[0] for n, p in model.encoder.named_parameters() if p.requires_grad}
    assert trainable == {"layer3", "layer4"}
    assert all(p.requires_grad for p in model.get_submodule("model.decoder").parameters())


def test_fit_unet_then_evaluate_run(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = load_config(None, [*TINY, "train.epochs=2", "model.name=unet_r18", "model.min_area=8",
                                "model.split_touching=true"])
    result = fit(dataset, run, config)
    assert result.state.step == 2 and result.best_metrics is not None and "segm" in result.best_metrics
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert any("loss_dice" in r for r in records if r["kind"] == "epoch")
    loaded = load_run(run)
    assert isinstance(loaded.model, SemanticSegmenter)
    assert loaded.model.postprocess == SemanticPostprocess(min_area=8, split_touching=True)
    metrics = evaluate_run(run, split="test", device="cpu")
    assert -1.0 <= metrics["segm"]["AP50"] <= 1.0 and "AP" in metrics["bbox"] and "image_level" in metrics
    assert isinstance(json.loads((run / "predictions" / "test.json").read_text()), list)


def _squares(folder: Path, count: int, size: int = 64) -> Path:
    """LabelMe images: a bright (220) and a dim (110) square on dark noise, sides 12-19 px."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(count):
        pixels = rng.integers(10, 40, (size, size), dtype=np.uint8)
        kinds = [("bright", 220), ("dim", 110)][:: 1 if i % 2 else -1]
        shapes = []
        for x0, (label, value) in zip([4, 36], kinds, strict=True):
            side = int(rng.integers(12, 20))
            y0 = int(rng.integers(4, size - side - 4))
            pixels[y0:y0 + side, x0:x0 + side] = value
            corners = [[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side]]
            shapes.append({"label": label, "points": corners, "group_id": None, "shape_type": "polygon",
                           "flags": {}, "description": ""})
        name = f"P{i:03d}_F000"
        Image.fromarray(pixels).save(folder / f"{name}.png")
        (folder / f"{name}.json").write_text(json.dumps({
            "version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": f"{name}.png", "imageData": None,
            "imageWidth": size, "imageHeight": size}))
    return folder


def test_semantic_model_learns_bright_and_dim_squares(tmp_path: Path) -> None:
    ingest(_squares(tmp_path / "labelme", 12), tmp_path / "ds",
           IngestOptions(format="labelme", patient_pattern=r"^(P\d+)_"))
    make_splits(tmp_path / "ds", SplitConfig(test_fraction=0.25, folds=2, seed=0))
    config = load_config(None, [*TINY, "train.batch_size=4", "train.epochs=1000", "train.max_steps=60",
                                "model.name=pspnet_r18", "data.train_part=trainval", "data.val_part=none"])
    fit(tmp_path / "ds", tmp_path / "run", config)
    metrics = evaluate_run(tmp_path / "run", split="test", device="cpu")
    assert metrics["segm"]["AP50"] > 0.5 and metrics["bbox"]["AP50"] > 0.5
    assert all(metrics["per_class"][name]["segm_AP50"] > 0.5 for name in ("bright", "dim")), \
        "both classes found with the right labels"
