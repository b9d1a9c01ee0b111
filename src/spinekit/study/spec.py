"""What a comparison study compares: its arms, folds and settings, and the study manifest.

A study has one or more *arms*. Each arm is trained on the same K patient-level
folds and evaluated on the same fixed test set:

- models: ``--models unet_r18,maskrcnn_light`` -> one arm per model name;
- ablation: ``--ablation flip=on,off`` or ``--ablation optim.lr=1e-3,1e-4`` -> one arm per
  value of one config key (``flip`` is short for ``data.flip_prob`` with on = 0.5, off = 0);
- datasets: ``--datasets full=DIR_A,local=DIR_B`` -> one arm per dataset (the same images
  labelled two ways). The folds are made on the first dataset and carried to the others
  by image file name, and only the classes every dataset has are evaluated.

``STUDY/study.json`` records the dataset(s), their annotation checksums, the folds, the
seed, the shared settings and the config file's checksum. Running again into the same
folder resumes: finished folds are not trained again, arms may be added, but a
different dataset (or changed labels), fold count, seed, shared setting or config file
content is refused (use another ``--out``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spinekit.data.records import ANNOTATIONS_FILE
from spinekit.errors import InputError, UsageError
from spinekit.io.atomic import atomic_write_json
from spinekit.io.jsonfile import read_json_object
from spinekit.models.registry import MODELS

STUDY_FILE = "study.json"
ABLATION_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "flip": ("data.flip_prob", {"on": 0.5, "off": 0.0}),
}


@dataclass(frozen=True)
class Arm:
    """One compared thing: a label, the dataset it trains on, and its config overrides."""

    label: str
    dataset: Path
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class StudySpec:
    """A whole study: arms, K folds, the held-out test fraction, seed and shared settings.

    ``mode`` is ``models``, ``ablation`` or ``datasets`` (what the arms differ in).
    ``config`` is an optional YAML run config; ``overrides`` ``--set`` values shared by
    every arm. ``score_threshold`` / ``iou_threshold`` drive the per-image metrics.
    """

    arms: tuple[Arm, ...]
    mode: str
    folds: int = 5
    test_fraction: float = 0.2
    seed: int = 0
    config: Path | None = None
    overrides: tuple[str, ...] = ()
    score_threshold: float = 0.5
    iou_threshold: float = 0.5
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def reference(self) -> Path:
        """The dataset the folds are made on (the first arm's)."""
        return self.arms[0].dataset


def _label_ok(label: str) -> str:
    if not label or any(ch in label for ch in "/\\:*?\"<>|") or label in (".", ".."):
        raise UsageError(f"arm label {label!r} cannot name a folder")
    return label


def _split_list(text: str, what: str) -> list[str]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise UsageError(f"{what}: nothing given")
    if len(set(items)) != len(items):
        raise UsageError(f"{what}: {text!r} names an entry twice")
    return items


def model_arms(dataset: Path, models: str) -> tuple[Arm, ...]:
    """One arm per model name; ValueError for a name not in the model table."""
    arms = []
    for name in _split_list(models, "--models"):
        if name not in MODELS:
            raise UsageError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
        arms.append(Arm(name, dataset, (f"model.name={name}",)))
    return tuple(arms)


def ablation_arms(dataset: Path, ablation: str) -> tuple[Arm, ...]:
    """``key=v1,v2,...`` -> one arm per value (``flip=on,off`` is an alias, see module doc)."""
    key, sep, values = ablation.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"--ablation expects key=value1,value2, got {ablation!r}")
    target, aliases = ABLATION_ALIASES.get(key, (key, {}))
    items = _split_list(values, "--ablation")
    if len(items) < 2:
        raise UsageError(f"--ablation {key}: give at least two values to compare")
    arms = []
    for item in items:
        if aliases and item not in aliases:
            raise UsageError(f"--ablation {key}: {item!r} is not one of {', '.join(aliases)}")
        value = aliases.get(item, item)
        arms.append(Arm(_label_ok(f"{key}={item}"), dataset, (f"{target}={value}",)))
    return tuple(arms)


def dataset_arms(datasets: str) -> tuple[Arm, ...]:
    """``label=DIR,label=DIR`` -> one arm per dataset folder."""
    arms = []
    for item in _split_list(datasets, "--datasets"):
        label, sep, folder = item.partition("=")
        if not sep or not label.strip() or not folder.strip():
            raise UsageError(f"--datasets expects label=DIR pairs, got {item!r}")
        path = Path(folder.strip())
        if not (path / ANNOTATIONS_FILE).is_file():
            raise InputError(path, "not a spinekit dataset (no annotations.json)")
        arms.append(Arm(_label_ok(label.strip()), path))
    if len(arms) < 2:
        raise UsageError("--datasets: give at least two datasets to compare")
    return tuple(arms)


def annotations_checksum(dataset: Path) -> str:
    """SHA-256 of ``DATASET/annotations.json`` (identifies the labels a study used)."""
    return _file_checksum(Path(dataset) / ANNOTATIONS_FILE)


def _file_checksum(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror})") from exc


def manifest(spec: StudySpec) -> dict[str, Any]:
    """The study.json content of ``spec`` (arms listed separately from the shared part)."""
    datasets = sorted({str(arm.dataset.resolve()) for arm in spec.arms})
    return {
        "version": 1,
        "shared": {
            "mode": spec.mode, "folds": spec.folds, "test_fraction": spec.test_fraction,
            "seed": spec.seed, "config": str(spec.config) if spec.config else None,
            "config_sha256": _file_checksum(spec.config) if spec.config else None,
            "overrides": list(spec.overrides), "score_threshold": spec.score_threshold,
            "iou_threshold": spec.iou_threshold,
            "datasets": {path: annotations_checksum(Path(path)) for path in datasets},
        },
        "arms": [{"label": a.label, "dataset": str(a.dataset.resolve()), "overrides": list(a.overrides)}
                 for a in spec.arms],
    }


def _difference(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            if key == "datasets":
                return ("it was made from other data or the labels changed since "
                        f"(was {sorted(old.get(key) or {})}, now {sorted(new.get(key) or {})})")
            return f"its {key} was {old.get(key)!r}, now {new.get(key)!r}"
    return None


def open_study(out: Path, spec: StudySpec, *, write: bool = True) -> list[dict[str, Any]]:
    """Create ``out/study.json``, or check an existing one matches ``spec`` (resume).

    Returns the arms of the folder after merging (earlier arms first). Raises
    :class:`InputError` when the folder belongs to another study. With
    ``write=False`` only the checks run (nothing is created); then call
    :func:`write_study` with the returned arms once the study can start.
    """
    current = manifest(spec)
    path = out / STUDY_FILE
    arms: list[dict[str, Any]] = list(current["arms"])
    if path.exists():
        old = read_json_object(path, "spinekit study file")
        problem = _difference(dict(old.get("shared") or {}), current["shared"])
        if problem:
            raise InputError(out, f"holds another study: {problem}; use another --out")
        old_arms = {a["label"]: a for a in old.get("arms") or []}
        for arm in current["arms"]:
            if arm["label"] in old_arms and old_arms[arm["label"]] != arm:
                raise InputError(out, f"arm {arm['label']!r} had other settings in this study; "
                                 "use another label or --out")
        arms = list(old_arms.values()) + [a for a in current["arms"] if a["label"] not in old_arms]
    elif out.exists() and any(out.iterdir()):
        raise InputError(out, "exists and is not a spinekit study folder; use another --out")
    if write:
        write_study(out, spec, arms)
    return arms


def write_study(out: Path, spec: StudySpec, arms: list[dict[str, Any]]) -> None:
    """Write ``out/study.json`` for ``spec`` with the merged ``arms`` (atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / STUDY_FILE, {**manifest(spec), "arms": arms}, indent=2)


