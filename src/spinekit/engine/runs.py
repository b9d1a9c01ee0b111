"""Opening a finished (or running) run folder: its config, classes and model weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from spinekit.engine.checkpoint import BEST, LAST, checkpoint_path, load_checkpoint
from spinekit.engine.config import Config, config_from_dict, load_config
from spinekit.errors import InputError, UsageError
from spinekit.io.jsonfile import read_json_object
from spinekit.models.registry import build_model
from spinekit.models.semantic import SemanticPostprocess


@dataclass
class LoadedRun:
    """A run's resolved config, class names (index i = category id i + 1), dataset and model."""

    run: Path
    config: Config
    classes: list[str]
    dataset: Path | None
    model: torch.nn.Module
    checkpoint: Path


CHECKPOINTS = ("best", "last")
"""The checkpoints of a run ``which`` can name (``--checkpoint``)."""


def load_run(run: str | Path, *, which: str = "best", device: torch.device | None = None) -> LoadedRun:
    """Build the run's model and load ``checkpoints/best.pt`` (``which="best"``; ``last.pt``
    when there is no best yet) or ``last.pt`` (``which="last"``).

    Raises :class:`UsageError` for another ``which``, :class:`InputError` when the folder
    is not a run, its ``config.yaml`` is unreadable or invalid (read by
    :func:`~spinekit.engine.config.load_config`: size, depth and alias limits, value
    rules), or the checkpoint does not fit the model named in its config. The model is
    built from the config stored in the checkpoint (the one it was trained with).
    """
    if which not in CHECKPOINTS:
        raise UsageError(f"--checkpoint must be {' or '.join(CHECKPOINTS)}, got {which!r}")
    folder = Path(run)
    if not (folder / "config.yaml").is_file():
        raise InputError(folder, "not a spinekit run folder (no config.yaml)")
    load_config(folder / "config.yaml")  # limited YAML reader + validation: a damaged run is refused
    path = checkpoint_path(folder, BEST if which == "best" else LAST)
    if which == "best" and not path.exists():
        path = checkpoint_path(folder, LAST)
    payload = load_checkpoint(path)
    try:
        config = config_from_dict(payload["config"])
    except UsageError as exc:
        raise InputError(path, f"the config stored in the checkpoint is invalid: {exc}") from exc
    classes = [str(c) for c in payload["classes"]]
    model = build_model(config.model.name, num_classes=len(classes), in_channels=config.data.channels,
                        image_size=max(config.data.size), norm=config.model.norm,
                        postprocess=SemanticPostprocess(min_area=config.model.min_area,
                                                        split_touching=config.model.split_touching),
                        expected_count=config.model.expected_count)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise InputError(path, f"checkpoint does not fit model {config.model.name!r} "
                         f"({' '.join(str(exc).split())[:160]})") from exc
    # channels_last: +12 % images/s on CPU in benchmarks/bench_inference.py, same AP
    model.to(device or torch.device("cpu")).to(memory_format=torch.channels_last).eval()
    info: dict[str, Any] = {}
    if (folder / "dataset.json").is_file():
        info = read_json_object(folder / "dataset.json")
    dataset = Path(info["dataset"]) if info.get("dataset") else None
    return LoadedRun(folder, config, classes, dataset, model, path)
