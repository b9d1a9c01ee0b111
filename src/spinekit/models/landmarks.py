"""Vertebra landmark model: centre heatmap + sub-pixel offset + four corner offsets.

Written from CenterNet (Zhou et al., "Objects as Points", 2019) and the
vertebra-focused landmark detection of Yi et al. (ISBI 2020). A :class:`LandmarkNet`
speaks the engine's (torchvision Mask R-CNN) interface:

- training: ``model(images, targets)`` -> ``{"loss_heatmap", "loss_offset", "loss_corners"}``;
  every target needs ``corners`` ``(N, 4, 2)`` (top-left, top-right, bottom-left,
  bottom-right, input pixels) and ``labels`` ``(N,)``;
- eval: ``model(images)`` -> per image exactly ``expected_count`` vertebrae (fewer only
  when the output map has fewer cells) in spine order, head first: ``boxes`` ``(N, 4)``
  (extent of the corners, clipped to the image), ``labels``, ``scores`` (heatmap peak),
  ``keypoints`` ``(N, 4, 3)`` (corner x, y, score), ``weak`` ``(N,)`` bool (peak below
  ``weak_score``: a vertebra the decoder had to take to reach the count), and ``masks``
  ``(N, 1, H, W)`` 0/1, the corner quadrilateral rasterised (for the mask-based
  evaluation and measurement paths).

Network: torchvision ResNet (``weights=None``; local weights through
:func:`spinekit.models.weights.load_weights`, ResNet under ``encoder.``), 1-channel
input, a feature-pyramid neck (1 x 1 laterals of layer1..layer4, nearest upsampling
and sums, a 3 x 3 conv) to stride 4, GroupNorm; three heads (3 x 3 conv, ReLU, 1 x 1
conv). Losses: penalty-reduced focal loss on the heatmap (alpha 2, beta 4, normalised
by the number of vertebrae), L1 on the offset and on the corner offsets (map units, i.e.
pixels / stride) at the vertebra centres. Targets: :mod:`spinekit.models.landmark_targets`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torchvision
from torch import nn
from torch.nn import functional

from spinekit.geometry import rasterize
from spinekit.models.landmark_targets import (
    STRIDE,
    decode_points,
    encode_targets,
    order_along_spine,
    top_peaks,
)
from spinekit.models.landmark_tta import mirrored_points
from spinekit.models.maskrcnn import Norm, group_norm
from spinekit.models.semantic import replace_batchnorm

_RING = (0, 1, 3, 2)  # TL, TR, BL, BR -> polygon ring TL, TR, BR, BL
_SIZE_MULTIPLE = 32


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), group_norm(cout),
                         nn.ReLU(inplace=True))


def _head(cin: int, cout: int, bias: float = 0.0) -> nn.Sequential:
    last = nn.Conv2d(cin // 2, cout, 1)
    assert last.bias is not None
    nn.init.constant_(last.bias, bias)
    return nn.Sequential(nn.Conv2d(cin, cin // 2, 3, padding=1), nn.ReLU(inplace=True), last)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, num_objects: int) -> torch.Tensor:
    """Penalty-reduced pixel focal loss (CenterNet, alpha 2, beta 4), summed / ``num_objects``."""
    prob = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    positive = target >= 1.0
    pos = -((1 - prob) ** 2) * torch.log(prob)
    neg = -((1 - target) ** 4) * prob ** 2 * torch.log(1 - prob)
    return torch.where(positive, pos, neg).sum() / max(1, num_objects)


class LandmarkNet(nn.Module):
    """ResNet + stride-4 neck + heatmap/offset/corner heads (module docstring)."""

    def __init__(self, resnet: nn.Module, channels: Sequence[int], *, num_classes: int,
                 neck_channels: int = 128, expected_count: int = 17, weak_score: float = 0.1) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError("a landmark model needs at least one class")
        self.encoder = resnet
        self.num_classes = num_classes
        self.expected_count = expected_count
        self.weak_score = weak_score
        self.tta_flip = False  # flip test-time augmentation (spinekit.models.landmark_tta)
        self.laterals = nn.ModuleList(nn.Conv2d(c, neck_channels, 1) for c in channels)
        self.smooth = _conv_block(neck_channels, neck_channels)
        self.heatmap = _head(neck_channels, num_classes, bias=-math.log((1 - 0.1) / 0.1))
        self.offset = _head(neck_channels, 2)
        self.corners = _head(neck_channels, 8)

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` in [0, 1], H and W multiples of 32 -> ``(B, neck, H / 4, W / 4)``."""
        x = (batch - 0.5) / 0.25
        for name in ("conv1", "bn1", "relu", "maxpool"):
            x = self.encoder.get_submodule(name)(x)
        levels = []
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = self.encoder.get_submodule(name)(x)
            levels.append(x)
        out = self.laterals[-1](levels[-1])
        for lateral, level in zip(reversed(self.laterals[:-1]), reversed(levels[:-1]), strict=True):
            out = lateral(level) + functional.interpolate(out, size=level.shape[-2:], mode="nearest")
        smoothed: torch.Tensor = self.smooth(out)
        return smoothed

    def heads(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int]]:
        """Heatmap logits, offsets and corner offsets of a batch (padded to multiples of 32),
        cropped to the map of the unpadded input; and that map size ``(h, w)``."""
        height, width = batch.shape[-2:]
        pad_h, pad_w = -height % _SIZE_MULTIPLE, -width % _SIZE_MULTIPLE
        if pad_h or pad_w:
            batch = functional.pad(batch, (0, pad_w, 0, pad_h))
        feats = self.features(batch)
        h, w = math.ceil(height / STRIDE), math.ceil(width / STRIDE)
        crop = (..., slice(0, h), slice(0, w))
        return (self.heatmap(feats)[crop].float(), self.offset(feats)[crop].float(),
                self.corners(feats)[crop].float(), (h, w))

    def forward(self, images: Sequence[torch.Tensor], targets: Sequence[dict[str, torch.Tensor]] | None = None
                ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """Training: the three losses; eval: one vertebra dict per image."""
        if self.training:
            if targets is None:
                raise ValueError("targets are needed in training mode")
            return self.losses(images, targets)
        return self.predict_landmarks(images)

    def losses(self, images: Sequence[torch.Tensor], targets: Sequence[dict[str, torch.Tensor]]
               ) -> dict[str, torch.Tensor]:
        """Focal heatmap loss and L1 offset / corner losses of a batch of one image size."""
        if len({tuple(img.shape) for img in images}) != 1:
            raise ValueError("training images of one batch must all have the same size")
        if any("corners" not in t for t in targets):
            raise ValueError("the landmark model needs 'corners' (N, 4, 2) in every target")
        heat, offset, corners, size = self.heads(torch.stack(list(images)))
        encoded = [encode_targets(t["corners"], t["labels"], num_classes=self.num_classes, map_size=size)
                   for t in targets]
        total = sum(len(e.cells) for e in encoded)
        loss_heat = focal_loss(heat, torch.stack([e.heatmap for e in encoded]), total)
        off_err = heat.new_zeros(())
        corner_err = heat.new_zeros(())
        for b, e in enumerate(encoded):
            if len(e.cells) == 0:
                continue
            xs, ys = e.cells[:, 0], e.cells[:, 1]
            off_err = off_err + (offset[b][:, ys, xs].T - e.offsets).abs().sum()
            corner_err = corner_err + (corners[b][:, ys, xs].T - e.corners).abs().sum()
        count = max(1, total)
        return {"loss_heatmap": loss_heat, "loss_offset": off_err / (2 * count),
                "loss_corners": corner_err / (8 * count)}

    def predict_landmarks(self, images: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Exactly ``expected_count`` vertebrae per image, in spine order (module docstring)."""
        outputs: list[dict[str, torch.Tensor]] = []
        for image in images:
            heat, offset, corners, _ = self.heads(image[None])
            prob, mirrored = torch.sigmoid(heat[0]), None
            if self.tta_flip:
                heat_f, offset_f, corners_f, _ = self.heads(image[None].flip(-1))
                prob = (prob + torch.sigmoid(heat_f[0]).flip(-1)) / 2
                mirrored = (offset_f[0], corners_f[0])
            outputs.append(self._decode(prob, offset[0], corners[0],
                                        (int(image.shape[-2]), int(image.shape[-1])), mirrored))
        return outputs

    def _decode(self, prob: torch.Tensor, offset: torch.Tensor, corners: torch.Tensor,
                image_size: tuple[int, int],
                mirrored: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        peaks = top_peaks(prob, self.expected_count)
        xs, ys = peaks.cells[:, 0], peaks.cells[:, 1]
        points = decode_points(peaks.cells, offset[:, ys, xs].T, corners[:, ys, xs].T)
        if mirrored is not None:
            points = (points + mirrored_points(peaks.cells, *mirrored, width=image_size[1])) / 2
        order = order_along_spine(points).to(points.device)
        points, scores, classes = points[order], peaks.scores[order], peaks.classes[order]
        height, width = image_size
        lo, hi = points.amin(dim=1), points.amax(dim=1)
        boxes = torch.stack([lo[:, 0].clamp(0, width), lo[:, 1].clamp(0, height),
                             hi[:, 0].clamp(0, width), hi[:, 1].clamp(0, height)], dim=1)
        keypoints = torch.cat([points, scores[:, None, None].expand(-1, 4, 1)], dim=2)
        return {"boxes": boxes, "labels": classes + 1, "scores": scores, "keypoints": keypoints,
                "weak": scores < self.weak_score, "masks": quad_masks(points, height, width)}


def quad_masks(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(N, 1, H, W)`` float32 0/1 masks of corner quadrilaterals ``(N, 4, 2)`` (TL, TR, BL, BR)."""
    rings = points.detach().float().cpu().numpy()[:, _RING, :].astype(np.float64)
    masks = np.stack([rasterize([ring], height, width) for ring in rings]) if len(rings) \
        else np.zeros((0, height, width), dtype=np.uint8)
    return torch.from_numpy(masks[:, None].astype(np.float32)).to(points.device)


def _resnet(depth: int, in_channels: int, norm: Norm) -> tuple[nn.Module, list[int]]:
    builder = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34}[depth]
    resnet = builder(weights=None)
    if in_channels != 3:
        resnet.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    resnet.fc = nn.Identity()  # unused: no parameters left for DDP to miss
    replace_batchnorm(resnet, norm)
    return resnet, [64, 128, 256, 512]


def build_landmarks(*, depth: int, num_classes: int, in_channels: int = 1, norm: Norm = "group",
                    expected_count: int = 17) -> LandmarkNet:
    """A :class:`LandmarkNet` on a ResNet-``depth`` (18 or 34) with ``norm`` in the ResNet."""
    resnet, channels = _resnet(depth, in_channels, norm)
    return LandmarkNet(resnet, channels, num_classes=num_classes, expected_count=expected_count)


def build_landmarks_r18(*, num_classes: int, in_channels: int = 1, image_size: int = 256,
                        norm: Norm = "group") -> LandmarkNet:
    """Landmark model on ResNet-18 (inputs padded to multiples of 32). ``image_size``: any size works."""
    return build_landmarks(depth=18, num_classes=num_classes, in_channels=in_channels, norm=norm)


def build_landmarks_r34(*, num_classes: int, in_channels: int = 1, image_size: int = 256,
                        norm: Norm = "group") -> LandmarkNet:
    """Landmark model on ResNet-34 (inputs padded to multiples of 32)."""
    return build_landmarks(depth=34, num_classes=num_classes, in_channels=in_channels, norm=norm)
