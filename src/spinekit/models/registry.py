"""The model table. Adding a model = one builder function + one line in :data:`MODELS`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from torch import nn

from spinekit.models.maskrcnn import (
    Norm,
    build_maskrcnn_light,
    build_maskrcnn_r50_fpn,
    build_maskrcnn_r101_fpn,
)
from spinekit.models.weights import load_weights


@dataclass(frozen=True)
class ModelSpec:
    """One model: its builder and what kind of output it gives."""

    builder: Callable[..., nn.Module]
    kind: Literal["instance", "semantic"]
    summary: str


MODELS: dict[str, ModelSpec] = {
    "maskrcnn_light": ModelSpec(build_maskrcnn_light, "instance",
                                "ResNet-18 FPN-64 Mask R-CNN, GroupNorm: fast on CPU"),
    "maskrcnn_r50_fpn": ModelSpec(build_maskrcnn_r50_fpn, "instance",
                                  "ResNet-50 FPN Mask R-CNN, GroupNorm"),
    "maskrcnn_r101_fpn": ModelSpec(build_maskrcnn_r101_fpn, "instance",
                                   "ResNet-101 FPN Mask R-CNN, GroupNorm (the ultrasound study's backbone)"),
}


def build_model(name: str, *, num_classes: int, in_channels: int = 1, image_size: int = 256,
                norm: Norm = "group", weights: str | Path | None = None,
                trainable_layers: int = 5) -> nn.Module:
    """Build model ``name`` from :data:`MODELS`; ``weights`` is an optional local file."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if num_classes < 1:
        raise ValueError("the dataset has no classes: nothing to train")
    model = MODELS[name].builder(num_classes=num_classes, in_channels=in_channels,
                                 image_size=image_size, norm=norm)
    if weights is not None:
        load_weights(model, weights)
    if trainable_layers < 5:
        freeze_backbone(model, trainable_layers)
    return model


def freeze_backbone(model: nn.Module, trainable_layers: int) -> None:
    """Freeze all but the last ``trainable_layers`` ResNet stages (0 = whole body frozen)."""
    stages = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    body = model.get_submodule("backbone.body")
    for name, parameter in body.named_parameters():
        parameter.requires_grad_(any(name.startswith(stage) for stage in stages))
