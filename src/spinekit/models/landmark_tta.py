"""Flip test-time augmentation of the landmark model (``eval.tta: flip``, ``--tta flip``).

Each image is also run mirrored left-right. The mirrored heatmap is flipped back and
averaged with the plain one before peak picking; every vertebra's corners are then the
mean of the plain decode at its cell and the mirrored decode at the mirror cell, mapped
back (``x -> W - x``) with left and right corners swapped back (TL <-> TR, BL <-> BR).
With an input width that is a multiple of the stride (4) the map cells mirror exactly,
so the flip-averaged prediction is exactly left-right equivariant.
"""

from __future__ import annotations

import torch
from torch import nn

from spinekit.errors import UsageError
from spinekit.models.landmark_targets import STRIDE, decode_points

TTA_MODES = ("none", "flip")
_SWAP = [1, 0, 3, 2]  # TL, TR, BL, BR -> mirrored


def mirrored_points(cells: torch.Tensor, offset: torch.Tensor, corners: torch.Tensor,
                    width: int) -> torch.Tensor:
    """Corners ``(N, 4, 2)`` in the plain image's pixels for ``cells`` ``(N, 2)`` (x, y), decoded
    from the mirrored image's ``offset`` ``(2, h, w)`` and ``corners`` ``(8, h, w)`` maps."""
    map_width = offset.shape[-1]
    centre = (cells[:, 0].float() + 0.5) * STRIDE
    mx = torch.floor((width - centre) / STRIDE).long().clamp(0, map_width - 1)
    ys = cells[:, 1]
    points = decode_points(torch.stack([mx, ys], dim=1), offset[:, ys, mx].T, corners[:, ys, mx].T)
    points[..., 0] = width - points[..., 0]
    return points[:, _SWAP]


def set_tta(model: nn.Module, mode: str, where: str = "--tta") -> None:
    """Switch ``model``'s test-time augmentation to ``mode`` (``none`` or ``flip``).

    UsageError naming ``where`` for an unknown mode or ``flip`` on a model that is not a
    landmark model."""
    if mode not in TTA_MODES:
        raise UsageError(f"{where} must be one of {', '.join(TTA_MODES)}, got {mode!r}")
    if not hasattr(model, "tta_flip"):
        if mode == "flip":
            raise UsageError(f"{where} flip works for landmark models only (landmarks_r18, landmarks_r34)")
        return
    setattr(model, "tta_flip", mode == "flip")  # noqa: B010 (nn.Module types attributes as tensors)
