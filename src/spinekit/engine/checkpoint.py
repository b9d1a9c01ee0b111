"""Checkpoints: model, optimiser, scheduler, RNG states and loop position, saved atomically.

Everything is stored as tensors and plain Python containers so it loads with
``torch.load(weights_only=True)``: no pickled code is ever executed.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spinekit.errors import InputError
from spinekit.io.atomic import atomic_path
from spinekit.models.weights import safe_torch_load

CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states in a weights_only-safe form."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": {"name": np_name, "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states captured by :func:`rng_state`."""
    version, values, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in values), gauss))
    np_state = state["numpy"]
    np.random.set_state((str(np_state["name"]), np_state["keys"].numpy().astype(np.uint32),
                         int(np_state["pos"]), int(np_state["has_gauss"]), float(np_state["gauss"])))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    scheduler: Any, loop: dict[str, Any], config: dict[str, Any],
                    classes: list[str]) -> None:
    """Write a checkpoint atomically (temp file + rename)."""
    payload = {
        "format": "spinekit-checkpoint-1",
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "loop": loop,
        "config": config,
        "classes": classes,
        "rng": rng_state(),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


_REQUIRED = {"model": dict, "config": dict, "classes": list, "loop": dict}
"""Entries every checkpoint has, with their types (optimizer, scheduler and rng may be None)."""


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a spinekit checkpoint with ``weights_only=True``.

    InputError naming the file when it is missing, empty, damaged, not a
    spinekit checkpoint or lacks one of its entries (checked before use, so a
    bad file never ends in a KeyError).
    """
    p = Path(path)
    if p.is_file() and p.stat().st_size == 0:
        raise InputError(p, "not a spinekit checkpoint: the file is empty (0 bytes)")
    payload = safe_torch_load(p, "checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != "spinekit-checkpoint-1":
        raise InputError(p, "not a spinekit checkpoint (no 'format': 'spinekit-checkpoint-1' entry)")
    for key, kind in _REQUIRED.items():
        if not isinstance(payload.get(key), kind):
            raise InputError(p, f"not a spinekit checkpoint: entry {key!r} is missing or not a "
                             f"{kind.__name__}")
    return payload


def checkpoint_path(run: str | Path, which: str = LAST) -> Path:
    """``RUN/checkpoints/<which>``."""
    return Path(run) / CHECKPOINT_DIR / which
