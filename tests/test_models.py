"""Model table, grayscale input, local weights for transfer learning, backbone freezing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18

from spinekit.errors import InputError
from spinekit.models.registry import MODELS, backbone_body, build_model
from spinekit.models.weights import load_weights


def test_every_model_builds_and_runs_on_gray_input() -> None:
    for name in MODELS:
        model = build_model(name, num_classes=2, image_size=64).eval()
        with torch.inference_mode():
            out = model([torch.rand(1, 64, 64)])[0]
        assert set(out) >= {"boxes", "labels", "scores", "masks"}
        assert backbone_body(model).get_submodule("conv1").in_channels == 1


def test_imagenet_resnet_weights_load_into_gray_backbone(tmp_path: Path) -> None:
    reference = resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = build_model("maskrcnn_light", num_classes=2, norm="frozen_bn", weights=path)
    conv = model.get_submodule("backbone.body.conv1").weight
    assert torch.allclose(conv, reference.conv1.weight.sum(dim=1, keepdim=True))
    layer = model.get_submodule("backbone.body.layer3")[0].conv1.weight
    assert torch.equal(layer, reference.layer3[0].conv1.weight)


def test_checkpoint_of_other_class_count_skips_predictors(tmp_path: Path) -> None:
    source = build_model("maskrcnn_light", num_classes=2)
    path = tmp_path / "model.pt"
    torch.save({"model": source.state_dict()}, path)
    target = build_model("maskrcnn_light", num_classes=5)
    counts = load_weights(target, path)
    assert counts["loaded"] > 0 and counts["skipped"] >= 4  # class-specific cls/box/mask predictor layers
    key = "rpn.head.conv.0.0.weight"
    assert torch.equal(target.state_dict()[key], source.state_dict()[key])


def test_bad_weights_files(tmp_path: Path) -> None:
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="no parameter of this file fits"):
        build_model("maskrcnn_light", num_classes=2, weights=tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(InputError, match="not a loadable"):
        build_model("maskrcnn_light", num_classes=2, weights=tmp_path / "junk.pt")
    with pytest.raises(InputError, match="not found"):
        build_model("maskrcnn_light", num_classes=2, weights=tmp_path / "absent.pt")


def test_freezing_keeps_only_later_stages_trainable() -> None:
    model = build_model("maskrcnn_light", num_classes=2, trainable_layers=2)
    body = model.get_submodule("backbone.body")
    trainable = {n.split(".")[0] for n, p in body.named_parameters() if p.requires_grad}
    assert trainable == {"layer3", "layer4"}
    with pytest.raises(ValueError, match="unknown model"):
        build_model("maskrcnn_r9000", num_classes=2)
