"""Resize and flip of an image together with its instances.

Images are ``(H, W)`` or ``(H, W, 3)`` uint8 arrays before tensor conversion;
instances are polygon rings in pixel coordinates, rasterised *after* the
geometric transform so masks stay sharp at the output size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from spinekit.errors import UsageError


@dataclass(frozen=True)
class ResizePlan:
    """Maps source pixel coordinates to output ones: ``x' = x * sx + pad_x``, same for y."""

    out_width: int
    out_height: int
    inner_width: int
    inner_height: int
    sx: float
    sy: float
    pad_x: int
    pad_y: int

    @classmethod
    def make(cls, width: int, height: int, size: tuple[int, int], keep_aspect: bool) -> ResizePlan:
        """Plan for a ``width`` x ``height`` image to ``size`` = (H, W).

        ``keep_aspect=False`` stretches to exactly ``size`` (as the ultrasound study's
        256x256 input); ``True`` scales by the same factor on both axes to fit
        inside ``size`` and centres the result on a zero background.
        """
        out_h, out_w = size
        if not keep_aspect:
            return cls(out_w, out_h, out_w, out_h, out_w / width, out_h / height, 0, 0)
        scale = min(out_w / width, out_h / height)
        new_w, new_h = min(out_w, max(1, round(width * scale))), min(out_h, max(1, round(height * scale)))
        return cls(out_w, out_h, new_w, new_h, new_w / width, new_h / height,
                   (out_w - new_w) // 2, (out_h - new_h) // 2)

    def apply_points(self, points: np.ndarray) -> np.ndarray:
        """Map ``(N, 2)`` source points to output coordinates."""
        out = np.asarray(points, dtype=np.float64).copy()
        out[:, 0] = out[:, 0] * self.sx + self.pad_x
        out[:, 1] = out[:, 1] * self.sy + self.pad_y
        return out

    def invert_points(self, points: np.ndarray) -> np.ndarray:
        """Map ``(N, 2)`` output points back to source coordinates."""
        out = np.asarray(points, dtype=np.float64).copy()
        out[:, 0] = (out[:, 0] - self.pad_x) / self.sx
        out[:, 1] = (out[:, 1] - self.pad_y) / self.sy
        return out


def resize_image(img: Image.Image, plan: ResizePlan) -> Image.Image:
    """Resize a Pillow image by ``plan`` (bilinear, antialiased), padding with zeros."""
    size = (plan.inner_width, plan.inner_height)
    resized = img.resize(size, Image.Resampling.BILINEAR)
    if size == (plan.out_width, plan.out_height):
        return resized
    canvas = Image.new(resized.mode, (plan.out_width, plan.out_height), 0)
    canvas.paste(resized, (plan.pad_x, plan.pad_y))
    return canvas


def flip_pairs_to_label_map(pairs: Mapping[str, str], category_ids: Mapping[str, int]) -> dict[int, int]:
    """Label-id permutation for a horizontal flip from left/right class-name pairs.

    ``pairs`` maps e.g. ``{"TP_left": "TP_right"}``; the map is made symmetric.
    Names missing from ``category_ids`` raise ValueError (a typo would silently
    teach the model wrong sides).
    """
    out: dict[int, int] = {}
    for left, right in pairs.items():
        for name in (left, right):
            if name not in category_ids:
                raise UsageError(f"flip pair names unknown class {name!r}; classes: {sorted(category_ids)}")
        out[category_ids[left]] = category_ids[right]
        out[category_ids[right]] = category_ids[left]
    return out


def hflip(image: torch.Tensor, target: dict[str, torch.Tensor],
          label_map: Mapping[int, int] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Flip ``image`` (C, H, W) and its target left-right; swap paired labels.

    ``target["boxes"]`` (N, 4) xyxy and ``target["masks"]`` (N, H, W) are flipped;
    ``target["labels"]`` (N,) are remapped through ``label_map`` when given;
    ``target["corners"]`` (N, 4, 2) (top-left, top-right, bottom-left, bottom-right)
    are mirrored and left/right swapped, so they stay in that order.
    """
    width = image.shape[-1]
    out = dict(target)
    out_image = image.flip(-1)
    if "boxes" in target and target["boxes"].numel():
        boxes = target["boxes"].clone()
        boxes[:, 0] = width - target["boxes"][:, 2]
        boxes[:, 2] = width - target["boxes"][:, 0]
        out["boxes"] = boxes
    if "masks" in target:
        out["masks"] = target["masks"].flip(-1)
    if "corners" in target and target["corners"].numel():
        corners = target["corners"][:, [1, 0, 3, 2]].clone()
        corners[..., 0] = width - corners[..., 0]
        out["corners"] = corners
    if label_map and "labels" in target and target["labels"].numel():
        labels = target["labels"].clone()
        for src, dst in label_map.items():
            labels[target["labels"] == src] = dst
        out["labels"] = labels
    return out_image, out


def model_input(img: Image.Image, plan: ResizePlan, *, channels: int, contrast: str = "none") -> torch.Tensor:
    """Any Pillow image -> the model's input: ``(C, H, W)`` float32 in [0, 1] at the plan's size.

    The one preparation shared by training, evaluation and prediction: 16-bit and
    float images are mapped to 8-bit (:func:`spinekit.io.images.to_uint8`), then
    converted to gray (ITU-R 601 luma) or RGB for ``channels`` 1 or 3, resized by
    ``plan`` and contrast-enhanced after resizing (``contrast`` as in ``to_uint8``).
    """
    from spinekit.io.images import to_uint8

    if img.mode.startswith(("I", "F")):
        img = Image.fromarray(to_uint8(np.asarray(img)))
    mode = "L" if channels == 1 else "RGB"
    if img.mode != mode:
        img = img.convert(mode)
    arr = np.array(resize_image(img, plan))
    if contrast != "none":
        arr = to_uint8(arr, contrast)  # type: ignore[arg-type]
    tensor = torch.from_numpy(arr).float().div_(255.0)
    return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()
