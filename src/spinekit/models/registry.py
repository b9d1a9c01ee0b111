"""The model table. Adding a model = one builder function + one line in :data:`MODELS`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from torch import nn

from spinekit.errors import UsageError
from spinekit.models.landmarks import LandmarkNet, build_landmarks_r18, build_landmarks_r34
from spinekit.models.maskrcnn import (
    Norm,
    build_maskrcnn_light,
    build_maskrcnn_r50_fpn,
    build_maskrcnn_r101_fpn,
)
from spinekit.models.semantic import (
    SemanticPostprocess,
    SemanticSegmenter,
    build_deeplabv3_r18,
    build_deeplabv3_r50,
    build_pspnet_r18,
    build_pspnet_r50,
    build_unet_r18,
    build_unet_r50,
)
from spinekit.models.weights import load_weights


@dataclass(frozen=True)
class ModelSpec:
    """One model: its builder and what kind of output it gives."""

    builder: Callable[..., nn.Module]
    kind: Literal["instance", "semantic", "landmarks"]
    summary: str


MODELS: dict[str, ModelSpec] = {
    "maskrcnn_light": ModelSpec(build_maskrcnn_light, "instance",
                                "ResNet-18 FPN-64 Mask R-CNN, GroupNorm: fast on CPU"),
    "maskrcnn_r50_fpn": ModelSpec(build_maskrcnn_r50_fpn, "instance",
                                  "ResNet-50 FPN Mask R-CNN, GroupNorm"),
    "maskrcnn_r101_fpn": ModelSpec(build_maskrcnn_r101_fpn, "instance",
                                   "ResNet-101 FPN Mask R-CNN, GroupNorm (the ultrasound study's backbone)"),
    "unet_r18": ModelSpec(build_unet_r18, "semantic", "U-Net, ResNet-18 encoder, GroupNorm: fast on CPU"),
    "pspnet_r18": ModelSpec(build_pspnet_r18, "semantic",
                            "PSPNet, ResNet-18 encoder to stride 8, GroupNorm: the fastest"),
    "deeplabv3_r18": ModelSpec(build_deeplabv3_r18, "semantic",
                               "DeepLabv3, dilated ResNet-18 encoder (stride 8), ASPP, GroupNorm"),
    "unet_r50": ModelSpec(build_unet_r50, "semantic", "U-Net, ResNet-50 encoder, GroupNorm"),
    "pspnet_r50": ModelSpec(build_pspnet_r50, "semantic", "PSPNet, ResNet-50 encoder to stride 8, GroupNorm"),
    "deeplabv3_r50": ModelSpec(build_deeplabv3_r50, "semantic",
                               "DeepLabv3, dilated ResNet-50 encoder (stride 8), ASPP, GroupNorm"),
    "landmarks_r18": ModelSpec(build_landmarks_r18, "landmarks",
                               "vertebra centre heatmap + 4 corner offsets, ResNet-18, stride 4"),
    "landmarks_r34": ModelSpec(build_landmarks_r34, "landmarks",
                               "vertebra centre heatmap + 4 corner offsets, ResNet-34, stride 4"),
}


def build_model(name: str, *, num_classes: int, in_channels: int = 1, image_size: int = 256,
                norm: Norm = "group", weights: str | Path | None = None,
                trainable_layers: int = 5, postprocess: SemanticPostprocess | None = None,
                expected_count: int | None = None) -> nn.Module:
    """Build model ``name`` from :data:`MODELS`; ``weights`` is an optional local file.

    ``postprocess`` sets how semantic models turn their class map into instances
    (default :class:`SemanticPostprocess()`); ``expected_count`` how many vertebrae
    a landmark model decodes per image (default 17); other models ignore them.
    """
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if num_classes < 1:
        raise UsageError("the dataset has no classes: nothing to train")
    model = MODELS[name].builder(num_classes=num_classes, in_channels=in_channels,
                                 image_size=image_size, norm=norm)
    if postprocess is not None and isinstance(model, SemanticSegmenter):
        model.postprocess = postprocess
    if expected_count is not None and isinstance(model, LandmarkNet):
        model.expected_count = expected_count
    if weights is not None:
        load_weights(model, weights)
    if trainable_layers < 5:
        freeze_backbone(model, trainable_layers)
    return model


def backbone_body(model: nn.Module) -> nn.Module:
    """The ResNet of a model: Mask R-CNN's ``backbone.body`` or a semantic/landmark model's encoder."""
    if isinstance(model, SemanticSegmenter | LandmarkNet):
        return model.encoder
    return model.get_submodule("backbone.body")


def freeze_backbone(model: nn.Module, trainable_layers: int) -> None:
    """Freeze all but the last ``trainable_layers`` ResNet stages (0 = whole body frozen).

    Stages count from the top (layer4, layer3, layer2, layer1, conv1) for every
    model; PSPNet's encoder stops after layer2, so its layer3/layer4 hold nothing.
    """
    stages = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    body = backbone_body(model)
    for name, parameter in body.named_parameters():
        parameter.requires_grad_(any(name.startswith(stage) for stage in stages))
