"""Run configuration: frozen dataclasses, one YAML file, ``--set key=value`` overrides.

``load_config(path, overrides)`` starts from the defaults below, applies the YAML
mapping (same nesting as the dataclasses), then each ``section.key=value``
override (values parsed as YAML, so ``optim.lr=3e-4`` is a float and
``data.size=[320,320]`` a list). Unknown keys and values of the wrong type raise
``ValueError`` naming the key. ``dump_config`` writes the resolved config that
is saved beside every run's outputs.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from spinekit.errors import InputError
from spinekit.io.atomic import atomic_write_text


@dataclass(frozen=True)
class DataSection:
    """Which images and how they are prepared (see :class:`spinekit.data.torch_dataset.DatasetConfig`)."""

    size: tuple[int, int] = (256, 256)
    keep_aspect: bool = False
    channels: int = 1
    contrast: Literal["none", "minmax", "equalize", "clahe"] = "none"
    flip_prob: float = 0.5
    flip_pairs: dict[str, str] = field(default_factory=dict)
    fold: int = 0
    splits: str | None = None
    train_part: Literal["train", "trainval"] = "train"
    val_part: Literal["val", "test", "none"] = "val"
    workers: int = 2


@dataclass(frozen=True)
class ModelSection:
    """Model table entry and its options.

    ``min_area`` and ``split_touching`` are used by semantic models only (see
    :class:`spinekit.models.semantic.SemanticPostprocess`): instances smaller than
    ``min_area`` model-input pixels are dropped; ``split_touching`` cuts touching
    instances of one class apart with a distance-transform watershed.
    """

    name: str = "maskrcnn_light"
    norm: Literal["group", "frozen_bn", "batch"] = "group"
    weights: str | None = None
    trainable_layers: int = 5
    min_area: int = 16
    split_touching: bool = False


@dataclass(frozen=True)
class OptimSection:
    """Optimiser and learning-rate schedule (linear warm-up, then cosine or steps)."""

    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-4
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_steps: int = 50
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    step_milestones: tuple[float, ...] = (0.67, 0.89)
    grad_clip: float = 10.0


@dataclass(frozen=True)
class TrainSection:
    """Loop length, batching, precision, checkpoints and stopping."""

    epochs: int = 40
    batch_size: int = 4
    max_steps: int | None = None
    time_limit_s: float | None = None
    eval_every: int = 1
    early_stop_patience: int = 0
    amp: Literal["auto", "bf16", "off"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    log_every: int = 10
    threads: int | None = None


@dataclass(frozen=True)
class EvalSection:
    """Evaluation options: image-level score threshold and the optional joint rule."""

    score_threshold: float = 0.5
    joint_rule: tuple[str, str] | None = None


@dataclass(frozen=True)
class Config:
    """A whole run configuration."""

    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check/convert ``value`` to the annotated type ``hint``; ValueError naming ``key``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(errors[0])
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{key}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise ValueError(f"{key}: expected {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args, strict=True))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): _coerce(v, args[1], key) for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{key}: expected a string, got {value!r}")
        return value
    raise ValueError(f"{key}: unsupported type {hint!r}")


def _build(cls: type[Any], values: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        where = f"{prefix}{unknown[0]}"
        raise ValueError(f"unknown config key {where!r}; known keys: "
                         + ", ".join(f"{prefix}{k}" for k in sorted(known)))
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        hint = hints[name]
        if is_dataclass(hint):
            if not isinstance(value, Mapping):
                raise ValueError(f"{prefix}{name}: expected a mapping")
            kwargs[name] = _build(hint, value, f"{prefix}{name}.")  # type: ignore[arg-type]
        else:
            kwargs[name] = _coerce(value, hint, f"{prefix}{name}")
    return cls(**kwargs)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"--set {dotted}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=3e-4"`` -> ``("optim.lr", 0.0003)``; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set expects key=value, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ValueError(f"--set {key}: cannot parse value {raw!r} ({exc})") from exc
    if isinstance(value, str) and _looks_numeric(value):
        value = float(value)
    return key.strip(), value


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def to_dict(config: Any) -> dict[str, Any]:
    """Nested plain dict (tuples as lists) of a config dataclass."""
    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {k: plain(v) if not is_dataclass(v) else to_dict(v)
            for k, v in ((f.name, getattr(config, f.name)) for f in fields(config))}


def config_from_dict(values: Mapping[str, Any], overrides: Iterable[str] = ()) -> Config:
    """Defaults <- ``values`` <- overrides; ValueError on unknown keys or bad values."""
    tree: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in values.items()}
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
    return typing.cast(Config, _build(Config, tree, ""))


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Read a YAML config (or none: defaults) and apply ``--set`` overrides."""
    values: Any = {}
    if path is not None:
        p = Path(path)
        try:
            values = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except FileNotFoundError as exc:
            raise InputError(p, "config file not found") from exc
        except yaml.YAMLError as exc:
            raise InputError(p, f"broken YAML ({exc})") from exc
        if not isinstance(values, Mapping):
            raise InputError(p, "config must be a YAML mapping")
    return config_from_dict(values, overrides)


def dump_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    atomic_write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))

