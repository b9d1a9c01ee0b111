"""Semantic segmentation models (U-Net, PSPNet, DeepLabv3) behind the Mask R-CNN interface.

A :class:`SemanticSegmenter` wraps a segmentation_models_pytorch network with
``num_classes + 1`` output channels (channel 0 = background) and speaks exactly
what the engine expects of a torchvision Mask R-CNN:

- training: ``model(images, targets)`` -> ``{"loss_ce": ..., "loss_dice": ...}``
  (scalar tensors; cross-entropy and multiclass Dice over the foreground classes);
- eval: ``model(images)`` -> one dict per image with ``boxes`` ``(N, 4)`` float32
  xyxy, ``labels`` ``(N,)`` int64, ``scores`` ``(N,)`` float32 and ``masks``
  ``(N, 1, H, W)`` float32 0/1, instances taken from the predicted class map.

``images`` is a list of ``(C, H, W)`` float tensors in [0, 1] of one size; H and
W are padded (bottom/right, value 0) up to the multiple the architecture needs
(32 for U-Net, 8 for PSPNet and DeepLabv3) and the logits cropped back.

**Class map of a target** (training): background 0; a pixel covered by several
instances takes the label of the *smallest* of them (fewest mask pixels), so a
small structure drawn over a large one stays visible; between instances of equal
area the later one in the target wins.

**Instances from the class map** (eval, :func:`instances_from_maps`): the class
map is the per-pixel argmax of the softmax. For each foreground class, its pixels
are split into 8-connected components; with ``split_touching`` each component is
further cut by a distance-transform watershed (see :class:`SemanticPostprocess`).
Pieces of fewer than ``min_area`` pixels (model-input pixels) are dropped. Each
remaining piece is one instance: ``score`` = mean softmax probability of its
class over the piece, ``box`` = its extent (x2/y2 exclusive, as the dataset's
targets), ``mask`` = the piece. Instances are sorted by decreasing score.

No builder downloads anything: encoders are built with ``encoder_weights=None``;
local weights go through :func:`spinekit.models.weights.load_weights`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import segmentation_models_pytorch as smp
import torch
from scipy import ndimage
from skimage.morphology import h_maxima
from skimage.segmentation import relabel_sequential, watershed
from torch import nn
from torch.nn import functional
from torchvision.ops import misc as misc_nn_ops

from spinekit.models.maskrcnn import Norm, group_norm

_EIGHT = np.ones((3, 3), dtype=bool)
_ARCHS: dict[str, Callable[..., nn.Module]] = {
    "unet": smp.Unet,
    "pspnet": smp.PSPNet,
    "deeplabv3": smp.DeepLabV3,
}


@dataclass(frozen=True)
class SemanticPostprocess:
    """How the predicted class map becomes instances.

    ``min_area``: pieces with fewer pixels (at model input size) are dropped.
    ``split_touching``: cut touching instances of one class apart. Rule: the
    Euclidean distance of each pixel of the class to the nearest other pixel is
    computed; its regional maxima that rise at least ``split_depth`` pixels above
    the saddle to any other maximum (h-maxima) seed a watershed of the negated
    distance inside the class's pixels (8-connectivity). Two discs joined by a
    neck narrower than their radii minus ``split_depth`` become two instances; a
    component without such a seed stays whole. ``min_area`` applies after splitting.
    """

    min_area: int = 16
    split_touching: bool = False
    split_depth: float = 2.0

    def __post_init__(self) -> None:
        if self.min_area < 0:
            raise ValueError(f"min_area must be >= 0, got {self.min_area}")
        if self.split_depth <= 0:
            raise ValueError(f"split_depth must be > 0, got {self.split_depth}")


# ----------------------------------------------------------------------------- targets


def target_class_map(target: dict[str, torch.Tensor], height: int, width: int) -> torch.Tensor:
    """``(H, W)`` int64 class map of one torchvision target (``masks`` ``(N, H, W)``, ``labels`` ``(N,)``).

    Background is 0; where instances overlap the smallest one (fewest mask
    pixels) wins, ties going to the later instance.
    """
    masks = target["masks"]
    labels = target["labels"].to(torch.int64)
    if masks.shape[0] == 0:
        return torch.zeros((height, width), dtype=torch.int64, device=labels.device)
    if tuple(masks.shape[-2:]) != (height, width):
        raise ValueError(f"target masks are {tuple(masks.shape[-2:])}, the image is {(height, width)}")
    inside = masks.to(torch.bool)
    area = inside.flatten(1).sum(dim=1)
    order = torch.argsort(area, descending=True, stable=True)  # painted first ... last (wins)
    priority = torch.empty_like(order)
    priority[order] = torch.arange(1, len(order) + 1, device=order.device)
    best = torch.where(inside, priority[:, None, None], 0).argmax(dim=0)
    return torch.where(inside.any(dim=0), labels[best], 0)


# ----------------------------------------------------------------------------- postprocessing


def _empty(height: int, width: int) -> dict[str, torch.Tensor]:
    return {"boxes": torch.zeros((0, 4), dtype=torch.float32),
            "labels": torch.zeros(0, dtype=torch.int64),
            "scores": torch.zeros(0, dtype=torch.float32),
            "masks": torch.zeros((0, 1, height, width), dtype=torch.float32)}


def _components(binary: np.ndarray, postprocess: SemanticPostprocess) -> tuple[np.ndarray, int]:
    """``(H, W)`` int32 pieces 1..n of a bool mask (8-connected, optionally watershed-split), and n."""
    pieces, count = ndimage.label(binary, structure=_EIGHT)
    if not postprocess.split_touching or count == 0:
        return pieces.astype(np.int32), int(count)
    distance = ndimage.distance_transform_edt(binary)
    seeds, _ = ndimage.label(h_maxima(distance, postprocess.split_depth).astype(bool) & binary,
                             structure=_EIGHT)
    split = watershed(-distance, seeds, mask=binary, connectivity=2)
    unseeded = binary & (split == 0)  # components whose maxima are lower than split_depth
    if unseeded.any():
        split[unseeded] = pieces[unseeded] + int(split.max())
    relabelled, _, _ = relabel_sequential(split)
    return relabelled.astype(np.int32), int(relabelled.max())


def instances_from_maps(classes: np.ndarray, confidence: np.ndarray,
                        postprocess: SemanticPostprocess = SemanticPostprocess()) -> dict[str, torch.Tensor]:
    """Instances of a class map (the rule is in the module docstring).

    ``classes``: ``(H, W)`` int argmax class map (0 = background);
    ``confidence``: ``(H, W)`` float softmax probability of each pixel's class.
    Returns CPU tensors ``boxes`` ``(N, 4)`` float32 xyxy (x2/y2 exclusive),
    ``labels`` ``(N,)`` int64, ``scores`` ``(N,)`` float32, ``masks`` ``(N, 1, H, W)``
    float32 0/1, sorted by decreasing score.
    """
    height, width = classes.shape
    instance_map = np.zeros((height, width), dtype=np.int32)
    piece_labels: list[np.ndarray] = []
    count = 0
    for label in np.unique(classes):
        if label <= 0:
            continue
        pieces, n = _components(classes == label, postprocess)
        inside = pieces > 0
        instance_map[inside] = pieces[inside] + count
        piece_labels.append(np.full(n, int(label), dtype=np.int64))
        count += n
    if count == 0:
        return _empty(height, width)
    flat = instance_map.ravel()
    area = np.bincount(flat, minlength=count + 1)[1:]
    total = np.bincount(flat, weights=confidence.ravel().astype(np.float64), minlength=count + 1)[1:]
    score = total / np.maximum(area, 1)
    keep = np.flatnonzero(area >= max(1, postprocess.min_area))
    keep = keep[np.argsort(-score[keep], kind="stable")]
    if keep.size == 0:
        return _empty(height, width)
    extents = ndimage.find_objects(instance_map)
    boxes = np.array([[extents[k][1].start, extents[k][0].start, extents[k][1].stop, extents[k][0].stop]
                      for k in keep], dtype=np.float32)
    masks = instance_map[None] == (keep + 1)[:, None, None]
    return {"boxes": torch.from_numpy(boxes),
            "labels": torch.from_numpy(np.concatenate(piece_labels)[keep]),
            "scores": torch.from_numpy(score[keep].astype(np.float32)),
            "masks": torch.from_numpy(masks[:, None].astype(np.float32))}


def instances_from_probabilities(probabilities: np.ndarray | torch.Tensor,
                                 postprocess: SemanticPostprocess = SemanticPostprocess()
                                 ) -> dict[str, torch.Tensor]:
    """:func:`instances_from_maps` of a ``(K + 1, H, W)`` float softmax map (channel 0 = background)."""
    probs = torch.as_tensor(probabilities, dtype=torch.float32)
    confidence, classes = probs.max(dim=0)
    return instances_from_maps(classes.cpu().numpy(), confidence.cpu().numpy(), postprocess)


# ----------------------------------------------------------------------------- model


class SemanticSegmenter(nn.Module):
    """A segmentation_models_pytorch network with the Mask R-CNN call interface.

    ``network`` maps ``(B, C, H, W)`` to ``(B, num_classes + 1, H, W)`` logits for
    H and W multiples of ``size_multiple``. Inputs in [0, 1] are normalised as
    ``(x - 0.5) / 0.25`` (as the Mask R-CNN builders do). ``postprocess`` is a
    plain attribute (not saved in state dicts).
    """

    def __init__(self, network: nn.Module, *, num_classes: int, size_multiple: int,
                 postprocess: SemanticPostprocess = SemanticPostprocess()) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError("a semantic model needs at least one foreground class")
        self.model = network
        self.num_classes = num_classes
        self.size_multiple = size_multiple
        self.postprocess = postprocess
        self.dice = smp.losses.DiceLoss("multiclass", classes=list(range(1, num_classes + 1)),
                                        from_logits=True)

    @property
    def encoder(self) -> nn.Module:
        """The network's encoder (a ResNet: ``conv1``, ``bn1``, ``layer1`` .. ``layer4``)."""
        encoder = self.model.encoder
        assert isinstance(encoder, nn.Module)
        return encoder

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` float in [0, 1] -> ``(B, num_classes + 1, H, W)`` logits."""
        height, width = batch.shape[-2:]
        pad_h = -height % self.size_multiple
        pad_w = -width % self.size_multiple
        if pad_h or pad_w:
            batch = functional.pad(batch, (0, pad_w, 0, pad_h))
        out = self.model((batch - 0.5) / 0.25)
        assert isinstance(out, torch.Tensor)
        return out[..., :height, :width]

    def forward(self, images: Sequence[torch.Tensor], targets: Sequence[dict[str, torch.Tensor]] | None = None
                ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """Training: losses ``{"loss_ce", "loss_dice"}``; eval: one instance dict per image."""
        if self.training:
            if targets is None:
                raise ValueError("targets are needed in training mode")
            return self.losses(images, targets)
        return self.predict_instances(images)

    def losses(self, images: Sequence[torch.Tensor], targets: Sequence[dict[str, torch.Tensor]]
               ) -> dict[str, torch.Tensor]:
        """Cross-entropy and multiclass Dice (foreground classes) of a batch of one image size."""
        if len({tuple(img.shape) for img in images}) != 1:
            raise ValueError("training images of one batch must all have the same size")
        batch = torch.stack(list(images))
        height, width = batch.shape[-2:]
        classes = torch.stack([target_class_map(t, height, width) for t in targets]).to(batch.device)
        logits = self.logits(batch).float()
        return {"loss_ce": functional.cross_entropy(logits, classes), "loss_dice": self.dice(logits, classes)}

    def predict_instances(self, images: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Instances of each image (see :func:`instances_from_maps`), on the images' device."""
        outputs: list[dict[str, torch.Tensor]] = [{} for _ in images]
        by_size: dict[tuple[int, ...], list[int]] = {}
        for index, image in enumerate(images):
            by_size.setdefault(tuple(image.shape), []).append(index)
        for indices in by_size.values():
            batch = torch.stack([images[i] for i in indices])
            probs = torch.softmax(self.logits(batch).float(), dim=1)
            confidence, classes = probs.max(dim=1)
            confidence_np, classes_np = confidence.detach().cpu().numpy(), classes.detach().cpu().numpy()
            for row, index in enumerate(indices):
                found = instances_from_maps(classes_np[row], confidence_np[row], self.postprocess)
                outputs[index] = {k: v.to(batch.device) for k, v in found.items()}
        return outputs


# ----------------------------------------------------------------------------- builders


def replace_batchnorm(module: nn.Module, norm: Norm) -> None:
    """Replace every ``nn.BatchNorm2d`` below ``module`` in place.

    ``group``: GroupNorm (32 groups, halved until they divide the channels);
    ``frozen_bn``: torchvision's FrozenBatchNorm2d; ``batch``: left as is.
    """
    if norm not in ("group", "frozen_bn", "batch"):
        raise ValueError(f"unknown norm {norm!r}; choose group, frozen_bn or batch")
    if norm == "batch":
        return
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            replacement: nn.Module = (group_norm(child.num_features) if norm == "group"
                                      else misc_nn_ops.FrozenBatchNorm2d(child.num_features, eps=child.eps))
            setattr(module, name, replacement)
        else:
            replace_batchnorm(child, norm)


def _drop_unused_stages(encoder: nn.Module) -> None:
    """Replace ResNet stages beyond the encoder's depth by ``nn.Identity`` (PSPNet uses 3 of 5).

    They are never called; left in place they would hold unused parameters
    (which DistributedDataParallel rejects) and weight-decay state.
    """
    depth = int(getattr(encoder, "_depth", 5))
    for stage in range(max(depth, 1), 5):
        name = f"layer{stage}"
        if hasattr(encoder, name):
            setattr(encoder, name, nn.Identity())


def build_semantic(*, arch: str, encoder: str, num_classes: int, in_channels: int = 1,
                   norm: Norm = "group",
                   postprocess: SemanticPostprocess = SemanticPostprocess()) -> SemanticSegmenter:
    """A :class:`SemanticSegmenter` of smp ``arch`` (unet, pspnet, deeplabv3) on ``encoder``.

    smp's default decoder settings; ``encoder_weights=None`` (no download).
    """
    if arch not in _ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(_ARCHS)}")
    network = _ARCHS[arch](encoder_name=encoder, encoder_weights=None, in_channels=in_channels,
                           classes=num_classes + 1)
    resnet = network.get_submodule("encoder")
    _drop_unused_stages(resnet)
    replace_batchnorm(network, norm)
    multiple = int(getattr(resnet, "output_stride", 32))
    return SemanticSegmenter(network, num_classes=num_classes, size_multiple=multiple,
                             postprocess=postprocess)


def build_unet_r18(*, num_classes: int, in_channels: int = 1, image_size: int = 256,
                   norm: Norm = "group") -> SemanticSegmenter:
    """U-Net, ResNet-18 encoder (inputs padded to multiples of 32). ``image_size``: any size works."""
    return build_semantic(arch="unet", encoder="resnet18", num_classes=num_classes,
                          in_channels=in_channels, norm=norm)


def build_pspnet_r18(*, num_classes: int, in_channels: int = 1, image_size: int = 256,
                     norm: Norm = "group") -> SemanticSegmenter:
    """PSPNet, ResNet-18 encoder to stride 8 (layer1-2), output upsampled x8 (multiples of 8)."""
    return build_semantic(arch="pspnet", encoder="resnet18", num_classes=num_classes,
                          in_channels=in_channels, norm=norm)


def build_deeplabv3_r18(*, num_classes: int, in_channels: int = 1, image_size: int = 256,
                        norm: Norm = "group") -> SemanticSegmenter:
    """DeepLabv3, dilated ResNet-18 encoder (output stride 8), ASPP (multiples of 8)."""
    return build_semantic(arch="deeplabv3", encoder="resnet18", num_classes=num_classes,
                          in_channels=in_channels, norm=norm)


def build_unet_r50(*, num_classes: int, in_channels: int = 1, image_size: int = 256,
                   norm: Norm = "group") -> SemanticSegmenter:
    """U-Net, ResNet-50 encoder (inputs padded to multiples of 32)."""
    return build_semantic(arch="unet", encoder="resnet50", num_classes=num_classes,
                          in_channels=in_channels, norm=norm)


def build_pspnet_r50(*, num_classes: int, in_channels: int = 1, image_size: int = 256,
                     norm: Norm = "group") -> SemanticSegmenter:
    """PSPNet, ResNet-50 encoder to stride 8 (layer1-2), output upsampled x8."""
    return build_semantic(arch="pspnet", encoder="resnet50", num_classes=num_classes,
                          in_channels=in_channels, norm=norm)


def build_deeplabv3_r50(*, num_classes: int, in_channels: int = 1, image_size: int = 256,
                        norm: Norm = "group") -> SemanticSegmenter:
    """DeepLabv3, dilated ResNet-50 encoder (output stride 8), ASPP."""
    return build_semantic(arch="deeplabv3", encoder="resnet50", num_classes=num_classes,
                          in_channels=in_channels, norm=norm)
