"""Mask R-CNN builders on torchvision, tuned for 256x256 inputs and small targets.

Every builder is keyword-only and returns a ``torchvision.models.detection.MaskRCNN``
that takes a list of ``(C, H, W)`` float tensors in [0, 1] (C = ``in_channels``)
and, in training, torchvision target dicts. No weights are downloaded: pass
``weights=PATH`` to start from a local state dict (see :mod:`spinekit.models.weights`).

Training from scratch works with GroupNorm in the backbone, FPN and heads (He et
al. 2019, "Rethinking ImageNet Pre-training"); ``norm="frozen_bn"`` matches
torchvision's pretrained setting for transfer learning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from torch import nn
from torchvision.models import resnet
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import misc as misc_nn_ops

from spinekit.errors import UsageError

Norm = Literal["group", "frozen_bn", "batch"]
_RESNETS: dict[str, Callable[..., resnet.ResNet]] = {
    "resnet18": resnet.resnet18,
    "resnet34": resnet.resnet34,
    "resnet50": resnet.resnet50,
    "resnet101": resnet.resnet101,
}


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups (fewer when ``channels`` is small)."""
    groups = 32
    while channels % groups:
        groups //= 2
    return nn.GroupNorm(groups, channels)


def _norm_layer(norm: Norm) -> Callable[[int], nn.Module]:
    if norm == "group":
        return group_norm
    if norm == "frozen_bn":
        return misc_nn_ops.FrozenBatchNorm2d
    if norm == "batch":
        return nn.BatchNorm2d
    raise UsageError(f"unknown norm {norm!r}; choose group, frozen_bn or batch")


def resnet_fpn_backbone(*, depth: str, norm: Norm, in_channels: int, fpn_channels: int) -> BackboneWithFPN:
    """ResNet + FPN (levels P2..P5 plus a max-pooled P6), first conv adapted to ``in_channels``."""
    if depth not in _RESNETS:
        raise UsageError(f"unknown backbone {depth!r}; choose one of {sorted(_RESNETS)}")
    body = _RESNETS[depth](weights=None, norm_layer=_norm_layer(norm))
    if in_channels != 3:
        body.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    stage_channels = [body.inplanes // 8, body.inplanes // 4, body.inplanes // 2, body.inplanes]
    return_layers = {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}
    extra_norm = group_norm if norm == "group" else None
    return BackboneWithFPN(body, return_layers, stage_channels, fpn_channels, norm_layer=extra_norm)


def _heads(fpn_channels: int, norm: Norm, box_dim: int, mask_dim: int, mask_layers: int
           ) -> tuple[nn.Module, nn.Module]:
    head_norm = group_norm if norm == "group" else None
    box_head = FastRCNNConvFCHead((fpn_channels, 7, 7), [fpn_channels] * 4, [box_dim], norm_layer=head_norm)
    mask_head = MaskRCNNHeads(fpn_channels, [mask_dim] * mask_layers, 1, norm_layer=head_norm)
    return box_head, mask_head


def build_maskrcnn(
    *,
    num_classes: int,
    depth: str = "resnet50",
    norm: Norm = "group",
    in_channels: int = 1,
    image_size: int = 256,
    fpn_channels: int = 256,
    box_dim: int = 1024,
    mask_dim: int = 256,
    mask_layers: int = 4,
    anchor_sizes: tuple[int, ...] = (16, 32, 64, 128, 256),
    rpn_pre_nms_train: int = 2000,
    rpn_post_nms_train: int = 1000,
    rpn_pre_nms_test: int = 1000,
    rpn_post_nms_test: int = 500,
    box_batch_per_image: int = 256,
    detections_per_image: int = 100,
) -> MaskRCNN:
    """A Mask R-CNN for ``num_classes`` foreground classes (background added internally).

    Inputs are expected already resized to ``image_size`` (the dataset does it),
    so torchvision's internal transform keeps them as they are. Anchor sizes
    start at 16 px for the small targets of 256x256 ultrasound (facet joints are
    often 15-40 px there). Image mean/std are per channel (0.5/0.25 for gray).
    """
    backbone = resnet_fpn_backbone(depth=depth, norm=norm, in_channels=in_channels,
                                   fpn_channels=fpn_channels)
    anchors = AnchorGenerator(tuple((s,) for s in anchor_sizes), ((0.5, 1.0, 2.0),) * len(anchor_sizes))
    rpn_head = RPNHead(fpn_channels, anchors.num_anchors_per_location()[0], conv_depth=1)
    box_head, mask_head = _heads(fpn_channels, norm, box_dim, mask_dim, mask_layers)
    return MaskRCNN(
        backbone,
        num_classes=None,
        min_size=image_size,
        max_size=image_size,
        image_mean=[0.5] * in_channels,
        image_std=[0.25] * in_channels,
        rpn_anchor_generator=anchors,
        rpn_head=rpn_head,
        rpn_pre_nms_top_n_train=rpn_pre_nms_train,
        rpn_post_nms_top_n_train=rpn_post_nms_train,
        rpn_pre_nms_top_n_test=rpn_pre_nms_test,
        rpn_post_nms_top_n_test=rpn_post_nms_test,
        box_batch_size_per_image=box_batch_per_image,
        box_detections_per_img=detections_per_image,
        box_head=box_head,
        box_predictor=FastRCNNPredictor(box_dim, num_classes + 1),
        mask_head=mask_head,
        mask_predictor=MaskRCNNPredictor(mask_dim, mask_dim, num_classes + 1),
    )


def build_maskrcnn_r50_fpn(*, num_classes: int, in_channels: int = 1, image_size: int = 256,
                           norm: Norm = "group") -> MaskRCNN:
    """ResNet-50 FPN Mask R-CNN (torchvision's standard layout, GroupNorm by default)."""
    return build_maskrcnn(num_classes=num_classes, depth="resnet50", norm=norm,
                          in_channels=in_channels, image_size=image_size)


def build_maskrcnn_r101_fpn(*, num_classes: int, in_channels: int = 1, image_size: int = 256,
                            norm: Norm = "group") -> MaskRCNN:
    """ResNet-101 FPN Mask R-CNN: the backbone of the facet-joint ultrasound study."""
    return build_maskrcnn(num_classes=num_classes, depth="resnet101", norm=norm,
                          in_channels=in_channels, image_size=image_size)


def build_maskrcnn_light(*, num_classes: int, in_channels: int = 1, image_size: int = 256,
                         norm: Norm = "group") -> MaskRCNN:
    """CPU-friendly Mask R-CNN: ResNet-18, 64-channel FPN, slim heads, fewer proposals."""
    return build_maskrcnn(
        num_classes=num_classes, depth="resnet18", norm=norm, in_channels=in_channels,
        image_size=image_size, fpn_channels=64, box_dim=256, mask_dim=64, mask_layers=2,
        rpn_pre_nms_train=600, rpn_post_nms_train=300, rpn_pre_nms_test=300, rpn_post_nms_test=100,
        box_batch_per_image=128, detections_per_image=30,
    )

