"""``spinekit split``: a fixed test set plus K folds over the rest, all by patient.

No patient appears in two parts; images with no target (negatives) are spread
across parts by stratifying on "image is negative" (scikit-learn's
``StratifiedGroupKFold``); the result is deterministic for a seed. Images the
cleaning report excludes are left out of every part and listed.

Duplicate images (the same pixels, or a near copy, under two names; see
:mod:`spinekit.data.duplicates`) stay in one part: the patients of a duplicate
group are merged into one split unit (union-find), so the same pixels never
appear in training and test. The groups come from ``cleaning_report.json``
when it lists them (``duplicate_groups``), else they are computed here;
``SplitConfig(group_duplicates=False)`` (``--ignore-duplicates``) turns this off.

``splits.json`` layout::

    {"version": 1, "seed": S, "test_fraction": F, "k": K,
     "test": [image ids], "folds": [[image ids of fold 0], ...],
     "patients": {"test": [...], "folds": [[...], ...]},
     "excluded_images": [ids], "summary": [{"part", "images", "patients", "negatives"}],
     "duplicates": {"source": "cleaning_report" | "computed" | "off", "groups": n,
                    "groups_across_patients": m, "merged_units": [[patients], ...]}}

Fold ``k`` validates on ``folds[k]`` and trains on the other folds.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from spinekit.data.duplicates import dataset_duplicate_groups
from spinekit.data.records import (
    CLEANING_REPORT_FILE,
    SPLITS_FILE,
    DatasetRecords,
    load_dataset,
    load_exclusions,
    read_json_report,
)
from spinekit.errors import InputError, UsageError
from spinekit.io.atomic import atomic_write_json
from spinekit.io.jsonfile import read_json

Part = Literal["train", "val", "test", "trainval", "all"]


@dataclass(frozen=True)
class SplitConfig:
    """How to split: ``test_fraction`` of patients held out, ``folds`` >= 2 over the rest."""

    test_fraction: float = 0.2
    folds: int = 5
    seed: int = 0
    group_duplicates: bool = True

    def validate(self) -> None:
        """Raise ValueError for values out of range."""
        if not 0.0 <= self.test_fraction < 1.0:
            raise UsageError(f"test fraction must be in [0, 1), got {self.test_fraction}")
        if self.folds < 2:
            raise UsageError(f"folds must be >= 2, got {self.folds}")


def _group_split(ids: np.ndarray, groups: np.ndarray, negative: np.ndarray,
                 n_splits: int, seed: int) -> list[np.ndarray]:
    """Indices of each of ``n_splits`` patient-disjoint parts, stratified by negativity."""
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return [test for _, test in splitter.split(ids, negative, groups)]


def _pick_test(ids: np.ndarray, groups: np.ndarray, negative: np.ndarray,
               config: SplitConfig) -> np.ndarray:
    if config.test_fraction == 0.0:
        return np.zeros(0, dtype=np.int64)
    # with few patients the test part cannot be smaller than one patient
    n_splits = min(max(2, round(1.0 / config.test_fraction)), len(set(groups.tolist())))
    parts = _group_split(ids, groups, negative, n_splits, config.seed)
    target = config.test_fraction * len(ids)
    return min(parts, key=lambda part: abs(len(part) - target))


def _duplicate_groups(records: DatasetRecords, ids: np.ndarray,
                      ) -> tuple[str, list[list[int]]]:
    """Duplicate groups (image ids, only those in ``ids``) and where they came from."""
    report = read_json_report(records.root, CLEANING_REPORT_FILE) or {}
    groups = report.get("duplicate_groups")
    source = "cleaning_report"
    if not isinstance(groups, list):
        source, groups = "computed", dataset_duplicate_groups(records, ids.tolist())
    wanted = set(ids.tolist())
    out = []
    for group in groups:
        rows = group.get("images") if isinstance(group, dict) else None
        if not isinstance(rows, list):
            raise InputError(records.root / CLEANING_REPORT_FILE,
                             "'duplicate_groups' entries must hold an 'images' list")
        members = [r.get("image_id") for r in rows if isinstance(r, dict)]
        out.append([i for i in members if isinstance(i, int) and i in wanted])
    return source, [g for g in out if len(g) > 1]


def _merge_units(ids: np.ndarray, patients: np.ndarray,
                 groups: list[list[int]]) -> tuple[np.ndarray, list[list[str]]]:
    """Split unit per image: its patient, with the patients of a duplicate group merged.

    Returns the unit labels and the merged units (their sorted patients).
    """
    parent = {p: p for p in patients.tolist()}

    def find(p: str) -> str:
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    where = {int(i): k for k, i in enumerate(ids.tolist())}
    for group in groups:
        roots = sorted({find(str(patients[where[i]])) for i in group})
        for other in roots[1:]:
            parent[other] = roots[0]
    units = np.array([find(p) for p in patients.tolist()])
    merged: dict[str, set[str]] = {}
    for p in parent:
        merged.setdefault(find(p), set()).add(p)
    return units, sorted(sorted(m) for m in merged.values() if len(m) > 1)


def _across_patients(ids: np.ndarray, patients: np.ndarray, groups: list[list[int]]) -> int:
    """How many duplicate groups hold images of more than one patient."""
    return sum(len(set(patients[np.isin(ids, g)].tolist())) > 1 for g in groups)


def _summary(name: str, index: np.ndarray, groups: np.ndarray, negative: np.ndarray) -> dict[str, Any]:
    return {"part": name, "images": len(index), "patients": len(set(groups[index].tolist())),
            "negatives": int(negative[index].sum())}


def make_splits(root: str | Path, config: SplitConfig = SplitConfig(),
                out: str | Path | None = None) -> dict[str, Any]:
    """Compute the splits of the dataset at ``root`` and write them atomically.

    Written to ``out`` when given (e.g. a comparison study's own folds), else to
    ``root/splits.json``. Raises :class:`InputError` when there are too few
    patients for the parts asked for.
    """
    config.validate()
    records = load_dataset(root)
    excluded_images, excluded_anns = load_exclusions(Path(root))
    kept_anns = [a for a in records.annotations if int(a["id"]) not in excluded_anns]
    positive = {int(a["image_id"]) for a in kept_anns}
    images = sorted((img for img in records.images if int(img["id"]) not in excluded_images),
                    key=lambda img: int(img["id"]))
    ids = np.array([int(img["id"]) for img in images], dtype=np.int64)
    groups = np.array([str(img.get("patient_id") or f"image-{img['id']}") for img in images])
    negative = np.array([int(i) not in positive for i in ids], dtype=np.int64)
    source, dup_groups = _duplicate_groups(records, ids) if config.group_duplicates else ("off", [])
    units, merged = _merge_units(ids, groups, dup_groups)
    n_units = len(set(units.tolist()))
    needed = config.folds + (1 if config.test_fraction > 0 else 0)
    if n_units < needed:
        joined = f" ({len(set(groups.tolist()))} before merging the patients of duplicate " \
            "images; see `spinekit clean`)" if merged else ""
        raise InputError(Path(root), f"{n_units} patients{joined} cannot make {config.folds} folds"
                         f"{' plus a test set' if config.test_fraction > 0 else ''}")
    test_index = _pick_test(ids, units, negative, config)
    rest = np.setdiff1d(np.arange(len(ids)), test_index)
    if len(set(units[rest].tolist())) < config.folds:
        raise InputError(Path(root), f"too few patients outside the test set for {config.folds} folds")
    fold_parts = _group_split(ids[rest], units[rest], negative[rest], config.folds, config.seed)
    folds = [rest[part] for part in fold_parts]
    splits = {
        "version": 1, "seed": config.seed, "test_fraction": config.test_fraction, "k": config.folds,
        "test": ids[test_index].tolist(),
        "folds": [ids[f].tolist() for f in folds],
        "patients": {"test": sorted(set(groups[test_index].tolist())),
                     "folds": [sorted(set(groups[f].tolist())) for f in folds]},
        "excluded_images": sorted(excluded_images),
        "summary": [_summary("test", test_index, groups, negative)]
        + [_summary(f"fold {k}", f, groups, negative) for k, f in enumerate(folds)],
        "duplicates": {"source": source, "groups": len(dup_groups),
                       "groups_across_patients": _across_patients(ids, groups, dup_groups),
                       "merged_units": merged},
    }
    atomic_write_json(Path(out) if out is not None else Path(root) / SPLITS_FILE, splits)
    return splits


def load_splits(root: str | Path, file: str | Path | None = None) -> dict[str, Any]:
    """Read ``root/splits.json`` (or ``file``); InputError when missing or malformed."""
    path = Path(file) if file is not None else Path(root) / SPLITS_FILE
    if not path.is_file():
        raise InputError(path, f"no {path.name}: run `spinekit split` first")
    splits = read_json(path)
    if not isinstance(splits, dict) or not isinstance(splits.get("folds"), list):
        raise InputError(path, "not a spinekit splits file (no 'folds' list)")
    parts = [("test", splits.get("test"))] + [(f"folds[{k}]", f) for k, f in enumerate(splits["folds"])]
    for where, ids in parts:
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise InputError(path, f"{where}: must be a list of image ids")
    return splits


def split_image_ids(splits: dict[str, Any], part: Part, fold: int = 0) -> list[int]:
    """Image ids of ``part``: train/val of ``fold``, test, trainval (all but test) or all."""
    folds: Sequence[list[int]] = splits["folds"]
    if part in ("train", "val") and not 0 <= fold < len(folds):
        raise UsageError(f"fold {fold} out of range (the splits have {len(folds)} folds)")
    if part == "test":
        return list(splits["test"])
    if part == "val":
        return list(folds[fold])
    if part == "train":
        return [i for k, f in enumerate(folds) if k != fold for i in f]
    if part == "trainval":
        return [i for f in folds for i in f]
    if part == "all":
        return list(splits["test"]) + [i for f in folds for i in f]
    raise UsageError(f"unknown split part {part!r}")
