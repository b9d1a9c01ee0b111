"""Reading a run folder for the report, tolerating absent or unreadable files.

A run folder written by the training engine holds ``config.yaml``,
``log.jsonl``, ``metrics.json``, ``predictions/<split>.json`` and
``dataset.json``; any of them may be missing (training still running, never
evaluated). :func:`read_run_files` reads what is there and records what is not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spinekit.errors import InputError, UsageError
from spinekit.io.jsonfile import parse_json, read_json, read_json_object

CONFIG_FILE = "config.yaml"
LOG_FILE = "log.jsonl"
METRICS_FILE = "metrics.json"
DATASET_FILE = "dataset.json"
PREDICTIONS_DIR = "predictions"
REPORT_FILE = "report.html"
LOG_KINDS = ("train", "val", "epoch")
"""The ``kind`` of every line :class:`~spinekit.engine.runlog.RunLog` writes."""

_MEANING = {
    CONFIG_FILE: "the resolved configuration is unknown",
    LOG_FILE: "no training log yet, so no training curves",
    METRICS_FILE: "the run has not been evaluated: no metrics tables",
    DATASET_FILE: "the evaluated dataset and split are unknown",
    PREDICTIONS_DIR: "no predictions: no overlays of predicted vs expert instances",
}


@dataclass
class RunFiles:
    """What a run folder holds.

    ``missing`` lists ``(file, consequence)`` pairs; ``problems`` one-line notes.
    """

    run: Path
    config: dict[str, Any] | None = None
    train: list[dict[str, Any]] = field(default_factory=list)
    val: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] | None = None
    dataset_info: dict[str, Any] = field(default_factory=dict)
    split: str = "test"
    split_assumed: bool = True
    predictions: list[dict[str, Any]] | None = None
    missing: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def note_missing(self, name: str, consequence: str | None = None) -> None:
        """Record that ``name`` is absent and what the report lacks because of it."""
        self.missing.append((name, consequence or _MEANING.get(name, "")))


def _read_config(files: RunFiles) -> None:
    """The run's config, read by the limited YAML reader (size, depth, alias expansion) and
    checked by the config rules; unreadable: noted and not shown; breaking a rule: noted and
    shown as written (the report is where one looks for what is wrong with a run)."""
    from spinekit.engine.config import config_from_dict
    from spinekit.io.yamlfile import read_yaml

    path = files.run / CONFIG_FILE
    if not path.is_file():
        files.note_missing(CONFIG_FILE)
        return
    try:
        data = read_yaml(path, what="config file")
    except InputError as exc:
        files.problems.append(f"{exc} (configuration not shown)")
        return
    if not isinstance(data, dict):
        files.problems.append(f"{path}: not a YAML mapping (configuration not shown)")
        return
    files.config = data
    try:
        config_from_dict(data)
    except UsageError as exc:
        files.problems.append(f"{path}: {exc} (configuration shown as written)")


def _log_entry(line: str, path: Path) -> dict[str, Any] | None:
    """One ``log.jsonl`` line as a log entry (strict JSON, an object with a known ``kind``)."""
    try:
        entry = parse_json(line, path)
    except InputError:
        return None
    if not isinstance(entry, dict) or entry.get("kind") not in LOG_KINDS:
        return None
    return entry


def _line_numbers(numbers: list[int], shown: int = 5) -> str:
    listed = ", ".join(str(n) for n in numbers[:shown])
    return f"line {listed}" if len(numbers) == 1 else (
        f"lines {listed}" + (f", ... ({len(numbers) - shown} more)" if len(numbers) > shown else ""))


def _read_log(files: RunFiles) -> None:
    """Training curves from ``log.jsonl``; lines that are not strict-JSON log entries (NaN,
    broken, a last line still being written) are skipped and noted with their numbers."""
    path = files.run / LOG_FILE
    if not path.is_file():
        files.note_missing(LOG_FILE)
        return
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        files.problems.append(f"{path}: cannot read ({exc.__class__.__name__}); no training curves")
        return
    bad: list[int] = []
    used = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        entry = _log_entry(line, path)
        if entry is None:
            bad.append(number)
            continue
        used += 1
        if entry["kind"] in ("train", "val"):
            getattr(files, entry["kind"]).append(entry)
    if bad:
        files.problems.append(f"{path}: {len(bad)} of {len(bad) + used} lines skipped, not valid log "
                              f"entries (strict JSON objects with a kind): {_line_numbers(bad)}")


def _read_object(files: RunFiles, name: str, what: str) -> dict[str, Any] | None:
    path = files.run / name
    if not path.is_file():
        files.note_missing(name)
        return None
    try:
        return read_json_object(path, what)
    except InputError as exc:
        files.problems.append(str(exc))
        return None


def _valid_detection(det: Any) -> bool:
    if not isinstance(det, dict):
        return False
    try:
        int(det["image_id"]), int(det["category_id"]), float(det["score"])
        bbox = [float(v) for v in det["bbox"]]
    except (KeyError, TypeError, ValueError):
        return False
    return len(bbox) == 4


def _read_predictions(files: RunFiles) -> None:
    path = files.run / PREDICTIONS_DIR / f"{files.split}.json"
    if not path.is_file():
        files.note_missing(f"{PREDICTIONS_DIR}/{files.split}.json",
                           _MEANING[PREDICTIONS_DIR])
        return
    try:
        data = read_json(path)
    except InputError as exc:
        files.problems.append(str(exc))
        return
    if not isinstance(data, list):
        files.problems.append(f"{path}: not a list of detections")
        return
    good = [d for d in data if _valid_detection(d)]
    if len(good) < len(data):
        files.problems.append(f"{path}: {len(data) - len(good)} malformed detection(s) ignored")
    files.predictions = good


def read_run_files(run: str | Path) -> RunFiles:
    """Read everything the report needs from ``run``; InputError when it is not a folder."""
    folder = Path(run)
    if not folder.is_dir():
        raise InputError(folder, "run folder not found")
    files = RunFiles(run=folder)
    _read_config(files)
    _read_log(files)
    files.metrics = _read_object(files, METRICS_FILE, "metrics file")
    files.dataset_info = _read_object(files, DATASET_FILE, "dataset reference") or {}
    split = files.dataset_info.get("split") or (files.metrics or {}).get("split")
    files.split, files.split_assumed = (str(split), False) if split else ("test", True)
    _read_predictions(files)
    return files


def dataset_from_run(files: RunFiles) -> Path | None:
    """The dataset folder named by ``dataset.json`` (else config ``dataset`` / ``data.dataset``)."""
    value = files.dataset_info.get("dataset")
    if not value and files.config:
        data = files.config.get("data")
        nested = data.get("dataset") if isinstance(data, dict) else None
        value = files.config.get("dataset") or nested
    return Path(str(value)) if isinstance(value, str) and value else None
