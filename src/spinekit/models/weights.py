"""Loading local weights for transfer learning (never downloads).

Accepted files (``torch.load(weights_only=True)``):

- a torchvision (or timm) ResNet state dict (``conv1.weight``, ``layer1.0...``) ->
  loaded into the model's ResNet: the detector's ``backbone.body`` or a semantic
  model's encoder (``model.encoder``);
- a state dict of the same kind of model (a torchvision/spinekit Mask R-CNN,
  ``backbone.body...``, ``rpn...``, ``roi_heads...``, or a spinekit semantic model,
  ``model.encoder...``, ``model.decoder...``), optionally wrapped as
  ``{"model": state}`` (a spinekit checkpoint) -> everything whose shape fits;
  class-specific predictor layers of another class count are skipped and reported.

A file is taken as a whole-model state dict when one of its names is a name of
the model, otherwise as a bare ResNet.

A 3-channel first convolution is summed over RGB for 1-channel (gray) models,
which keeps its response to gray images.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spinekit.errors import InputError

log = logging.getLogger(__name__)


def safe_torch_load(path: str | Path, what: str = "weights file") -> Any:
    """``torch.load(weights_only=True)`` on CPU; InputError naming the file on any failure.

    ``weights_only`` means no pickled code is ever run, whatever the file holds.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, f"{what} not found")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        detail = " ".join(str(exc).split())[:200]
        raise InputError(p, f"not a loadable PyTorch {what} ({exc.__class__.__name__}"
                         + (f": {detail})" if detail else ")")) from exc


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict safely; InputError naming the file when it is not one."""
    p = Path(path)
    data = safe_torch_load(p)
    if isinstance(data, Mapping) and isinstance(data.get("model"), Mapping):
        data = data["model"]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise InputError(p, "not a state dict (expected a mapping of parameter names to tensors)")
    return dict(data)


def _adapt(name: str, value: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    if value.shape == target.shape:
        return value
    if name.endswith("conv1.weight") and value.ndim == 4 and value.shape[1] == 3 and target.shape[1] == 1 \
            and value.shape[0] == target.shape[0]:
        return value.sum(dim=1, keepdim=True)
    return None


_BACKBONE_PREFIXES = ("backbone.body.", "model.encoder.", "encoder.")
"""Where a bare ResNet sits in a Mask R-CNN, a semantic model and a landmark model."""


def _backbone_prefix(own: Mapping[str, torch.Tensor]) -> str:
    return next((p for p in _BACKBONE_PREFIXES if f"{p}conv1.weight" in own), "")


def load_weights(model: nn.Module, path: str | Path) -> dict[str, int]:
    """Load ``path`` into ``model`` where names and shapes fit; returns counts.

    Raises :class:`InputError` when nothing matches (weights of another model).
    """
    state = read_state_dict(path)
    own = model.state_dict()
    prefix = "" if any(name in own for name in state) else _backbone_prefix(own)
    loaded: dict[str, torch.Tensor] = {}
    skipped = 0
    for name, value in state.items():
        target_name = prefix + name
        if target_name not in own:
            skipped += 1
            continue
        adapted = _adapt(target_name, value, own[target_name])
        if adapted is None:
            skipped += 1
            log.info("weights: %s has shape %s, model needs %s: skipped", name, tuple(value.shape),
                     tuple(own[target_name].shape))
            continue
        loaded[target_name] = adapted
    if not loaded:
        raise InputError(path, "no parameter of this file fits the model (weights of another model?)")
    model.load_state_dict(loaded, strict=False)
    counts = {"loaded": len(loaded), "skipped": skipped, "not_in_file": len(own) - len(loaded)}
    log.info("weights from %s: %s", path, counts)
    return counts
