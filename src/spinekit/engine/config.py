"""Run configuration: frozen dataclasses, one YAML file, ``--set key=value`` overrides.

``load_config(path, overrides)`` starts from the defaults below, applies the YAML
mapping (same nesting as the dataclasses), then each ``section.key=value``
override (values parsed as YAML, so ``optim.lr=3e-4`` is a float and
``data.size=[320,320]`` a list). Unknown keys, values of the wrong type and
values outside the range of :data:`RULES` (checked after YAML and overrides,
NaN and infinity never accepted) raise :class:`~spinekit.errors.UsageError`
naming the key (``train.batch_size must be >= 1, got 0``); problems in a YAML
file raise :class:`~spinekit.errors.InputError` naming the file too. YAML is
read with limits (size, nesting, alias expansion), so an alias bomb is refused
at once. ``dump_config`` writes the resolved config that is saved beside every
run's outputs.
"""

from __future__ import annotations

import math
import reprlib
import types
import typing
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from spinekit.errors import InputError, UsageError
from spinekit.io.atomic import atomic_write_text
from spinekit.io.yamlfile import YamlLimitError, load_yaml_text, read_yaml


@dataclass(frozen=True)
class DataSection:
    """Which images and how they are prepared (see :class:`spinekit.data.torch_dataset.DatasetConfig`).

    ``aug_*`` are training augmentations, all off (0) by default
    (:class:`spinekit.transforms.augment.Augment`): brightness shift, contrast
    and gamma ranges, rotation in degrees, zoom range and translation as a
    fraction of the input size; image, masks, boxes and corners move together.
    """

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
    aug_brightness: float = 0.0
    aug_contrast: float = 0.0
    aug_gamma: float = 0.0
    aug_rotate_deg: float = 0.0
    aug_scale: float = 0.0
    aug_translate: float = 0.0


@dataclass(frozen=True)
class ModelSection:
    """Model table entry and its options.

    ``min_area`` and ``split_touching`` are used by semantic models only (see
    :class:`spinekit.models.semantic.SemanticPostprocess`): instances smaller than
    ``min_area`` model-input pixels are dropped; ``split_touching`` cuts touching
    instances of one class apart with a distance-transform watershed.
    ``expected_count`` is used by landmark models only: the number of vertebrae
    decoded per image (17 = T1..L5 on AASCE AP views).
    """

    name: str = "maskrcnn_light"
    norm: Literal["group", "frozen_bn", "batch"] = "group"
    weights: str | None = None
    trainable_layers: int = 5
    min_area: int = 16
    split_touching: bool = False
    expected_count: int = 17


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
    """Evaluation options: image-level score threshold, the optional joint rule and the
    test-time augmentation (``tta``: ``flip`` for landmark models)."""

    score_threshold: float = 0.5
    joint_rule: tuple[str, str] | None = None
    tta: Literal["none", "flip"] = "none"


@dataclass(frozen=True)
class Config:
    """A whole run configuration."""

    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)


_SHOW = reprlib.Repr()
_SHOW.maxlevel, _SHOW.maxstring, _SHOW.maxother, _SHOW.maxlist = 2, 60, 60, 6


def _show(value: Any) -> str:
    """A short repr for messages (never the whole of a huge or deeply nested value)."""
    return _SHOW.repr(value)


@dataclass(frozen=True)
class Rule:
    """Allowed values of a numeric setting: ``low <= v <= high`` (``low < v`` when
    ``low_open``); ``None`` leaves that side open; ``choices`` lists the only values."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[int, ...] = ()

    def check(self, key: str, value: float) -> None:
        """UsageError ``"<key> must be ..., got <value>"`` when ``value`` breaks the rule."""
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"{key} must be a finite number, got {value}")
        if self.choices and value not in self.choices:
            raise UsageError(f"{key} must be one of {', '.join(map(str, self.choices))}, got {value}")
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            raise UsageError(f"{key} must be {'>' if self.low_open else '>='} {_num(self.low)}, got {value}")
        if self.high is not None and value > self.high:
            raise UsageError(f"{key} must be <= {_num(self.high)}, got {value}")


def _num(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


_BIG = 1_000_000_000
RULES: dict[str, Rule] = {
    "data.size": Rule(16, 16384),
    "data.channels": Rule(choices=(1, 3)),
    "data.flip_prob": Rule(0, 1),
    "data.fold": Rule(0, 1000),
    "data.workers": Rule(0, 256),
    "data.aug_brightness": Rule(0, 1),
    "data.aug_contrast": Rule(0, 0.9),
    "data.aug_gamma": Rule(0, 0.9),
    "data.aug_rotate_deg": Rule(0, 45),
    "data.aug_scale": Rule(0, 0.5),
    "data.aug_translate": Rule(0, 0.5),
    "model.trainable_layers": Rule(0, 5),
    "model.min_area": Rule(0, _BIG),
    "model.expected_count": Rule(1, 1000),
    "optim.lr": Rule(0, None, low_open=True),
    "optim.weight_decay": Rule(0, None),
    "optim.momentum": Rule(0, 1),
    "optim.warmup_steps": Rule(0, _BIG),
    "optim.step_milestones": Rule(0, 1),
    "optim.grad_clip": Rule(0, None),
    "train.epochs": Rule(1, _BIG),
    "train.batch_size": Rule(1, 65536),
    "train.max_steps": Rule(1, _BIG),
    "train.time_limit_s": Rule(0, None, low_open=True),
    "train.eval_every": Rule(1, _BIG),
    "train.early_stop_patience": Rule(0, _BIG),
    "train.seed": Rule(0, 2**32 - 1),
    "train.log_every": Rule(1, _BIG),
    "train.threads": Rule(1, 1024),
    "eval.score_threshold": Rule(0, 1),
    # quantities of CLI options without a config key
    "option.fraction": Rule(0, 1),
    "option.count": Rule(1, _BIG),
    "option.size": Rule(0, _BIG),
    "option.positive": Rule(0, None, low_open=True),
}
"""Range of every numeric setting, keyed ``section.key`` (each element of a list
setting); checked after YAML and overrides, and by the CLI for options that carry
the same quantity (e.g. ``--score-threshold`` against ``eval.score_threshold``)."""


def check_value(key: str, value: Any, rule_key: str | None = None) -> None:
    """Check ``value`` (a number, a list of numbers or None) against ``RULES[rule_key or key]``;
    UsageError naming ``key`` (a config key or a CLI option such as ``--score-threshold``)."""
    rule = RULES[rule_key or key]
    for item in value if isinstance(value, tuple | list) else (value,):
        if item is not None:
            rule.check(key, item)


def validate(config: Config) -> Config:
    """Apply :data:`RULES` to every setting of ``config``; returns it unchanged or raises UsageError."""
    for section in fields(config):
        values = getattr(config, section.name)
        for item in fields(values):
            key = f"{section.name}.{item.name}"
            if key in RULES:
                check_value(key, getattr(values, item.name))
    return config


def _coerce_scalar(value: Any, hint: Any, key: str) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise UsageError(f"{key}: expected true or false, got {_show(value)}")
        return value
    if hint is int:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{key}: expected an integer, got {_show(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UsageError(f"{key}: expected a number, got {_show(value)}")
        if not math.isfinite(value):
            raise UsageError(f"{key} must be a finite number, got {value}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise UsageError(f"{key}: expected a string, got {_show(value)}")
        if "\x00" in value:
            raise UsageError(f"{key}: the text contains a NUL character")
        return value
    raise UsageError(f"{key}: unsupported type {hint!r}")


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check/convert ``value`` to the annotated type ``hint``; UsageError naming ``key``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except UsageError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is Literal:
        if not isinstance(value, Hashable) or value not in args:
            raise UsageError(f"{key}: {_show(value)} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise UsageError(f"{key}: expected a list, got {_show(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise UsageError(f"{key}: expected {len(args)} values, got {_show(value)}")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args, strict=True))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise UsageError(f"{key}: expected a mapping, got {_show(value)}")
        return {str(k): _coerce(v, args[1], key) for k, v in value.items()}
    return _coerce_scalar(value, hint, key)


def _build(cls: type[Any], values: Mapping[Any, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(str(k) for k in values if k not in known)
    if unknown:
        where = f"{prefix}{unknown[0]}"
        raise UsageError(f"unknown config key {_show(where)}; known keys: "
                         + ", ".join(f"{prefix}{k}" for k in sorted(known)))
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        hint = hints[name]
        if is_dataclass(hint):
            if not isinstance(value, Mapping):
                raise UsageError(f"{prefix}{name}: expected a mapping, got {_show(value)}")
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
            raise UsageError(f"--set {dotted}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=3e-4"`` -> ``("optim.lr", 0.0003)``; the value is parsed as YAML (with limits)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--set expects key=value, got {_show(text)}")
    try:
        value = load_yaml_text(raw) if raw.strip() else None
    except YamlLimitError as exc:
        raise UsageError(f"--set {key.strip()}: cannot parse value {_show(raw)} ({exc})") from exc
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
    """Defaults <- ``values`` <- overrides, validated against :data:`RULES`.

    UsageError (a ValueError) naming the key on unknown keys, wrong types or values out of range.
    """
    if not isinstance(values, Mapping):
        raise UsageError(f"a config must be a mapping of sections, got {_show(values)}")
    tree: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in values.items()}
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
    return validate(typing.cast(Config, _build(Config, tree, "")))


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Read a YAML config (or none: defaults) and apply ``--set`` overrides.

    Problems in the file raise InputError naming the file and the key; problems
    that come with an override raise UsageError naming the key.
    """
    values: Any = {}
    if path is not None:
        p = Path(path)
        values = read_yaml(p, what="config file") or {}
        if not isinstance(values, Mapping):
            raise InputError(p, f"config must be a YAML mapping of sections, got {type(values).__name__}")
        try:
            config_from_dict(values)
        except UsageError as exc:
            raise InputError(p, str(exc)) from exc
    return config_from_dict(values, list(overrides))


def dump_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    atomic_write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))
