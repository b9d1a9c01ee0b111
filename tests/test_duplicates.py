"""Duplicate images: flagged by ``spinekit clean``, kept in one part by ``spinekit split``.

Real image files in tmp_path, ingested with ``--format images``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from spinekit.data.cleaning import CleaningConfig, clean_dataset, write_cleaning_report
from spinekit.data.duplicates import (
    MAX_DISTANCE,
    MIN_CORRELATION,
    correlation,
    duplicate_groups,
    fingerprint,
    hamming,
)
from spinekit.data.ingest import IngestOptions, ingest
from spinekit.data.records import load_dataset
from spinekit.data.splits import SplitConfig, make_splits

PATIENT = r"^(P\d+)_"


def scan(seed: int, shape: tuple[int, int] = (96, 64)) -> np.ndarray:
    """A smooth random 'scan' (blurred noise plus a bright blob), uint8."""
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=shape), 4.0)
    field = (field - field.min()) / np.ptp(field)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cy, cx = rng.uniform(0.3, 0.7, 2) * shape
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 120.0)
    return np.clip(255 * (0.7 * field + 0.3 * blob), 0, 255).astype(np.uint8)


def dataset(tmp_path: Path, patients: int = 8) -> Path:
    """``patients`` patients with 2 distinct scans each; P000's first scan copied to P005 (same
    pixels, other name) and P002's re-encoded as JPEG, resized by 5 % and brightened for P007."""
    src = tmp_path / "src"
    src.mkdir()
    for p in range(patients):
        for f in range(2):
            Image.fromarray(scan(10 * p + f)).save(src / f"P{p:03d}_F{f}.png")
    Image.fromarray(scan(0)).save(src / "P005_F9.png")
    near = Image.fromarray(np.clip(scan(20).astype(np.int16) + 12, 0, 255).astype(np.uint8))
    near.resize((67, 101), Image.Resampling.BILINEAR).save(src / "P007_F9.jpg", quality=80)
    out = tmp_path / "ds"
    ingest(src, out, IngestOptions(format="images", patient_pattern=PATIENT))
    return out


def by_name(root: Path) -> dict[str, int]:
    return {Path(img["file_name"]).name: int(img["id"]) for img in load_dataset(root).images}


def test_clean_reports_exact_and_near_duplicates_and_nothing_else(tmp_path: Path) -> None:
    root = dataset(tmp_path)
    ids = by_name(root)
    report = clean_dataset(root, CleaningConfig())
    groups = {frozenset(Path(r["file"]).name for r in g["images"]): g
              for g in report.duplicate_groups or []}
    assert set(groups) == {frozenset({"P000_F0.png", "P005_F9.png"}),
                           frozenset({"P002_F0.png", "P007_F9.jpg"})}
    exact = groups[frozenset({"P000_F0.png", "P005_F9.png"})]
    near = groups[frozenset({"P002_F0.png", "P007_F9.jpg"})]
    assert exact["kind"] == "exact" and exact["patients"] == ["P000", "P005"]
    assert near["kind"] == "near" and near["patients"] == ["P002", "P007"]
    assert near["vs_first"][0]["correlation"] > 0.97 and not near["vs_first"][0]["same_pixels"]
    flagged = {(f.image_id, f.reason) for f in report.findings if f.check == "duplicate_image"}
    assert {i for i, _ in flagged} == {ids["P005_F9.png"], ids["P007_F9.jpg"]}
    reasons = " ".join(r for _, r in flagged)
    assert "same pixels as" in reasons and "P000_F0.png" in reasons and "patient P005" in reasons
    assert "near copy" in reasons and "P002_F0.png" in reasons
    assert report.counts()["duplicate_image"] == 2 and not report.excluded_images
    on_disk = json.loads(write_cleaning_report(report, root).read_text())
    assert len(on_disk["duplicate_groups"]) == 2
    assert clean_dataset(root, CleaningConfig(verify_pixels=False)).duplicate_groups is None


def test_similar_but_different_images_are_not_duplicates() -> None:
    base = scan(1).astype(np.int16)
    other = base.copy()
    other[40:60, 20:40] = 255 - other[40:60, 20:40]  # same scan, a 20x20 px region changed
    a, b, c = (fingerprint(x) for x in (base.astype(np.uint8), other.astype(np.uint8), scan(2)))
    assert hamming(a, b) <= MAX_DISTANCE, "the hash alone would call them duplicates"
    assert correlation(a, b) < MIN_CORRELATION
    assert duplicate_groups({1: a, 2: b, 3: c}) == []
    flat = fingerprint(np.full((32, 32), 7, dtype=np.uint8))
    assert flat.thumb is None and duplicate_groups({1: flat, 2: flat}) == []


def part_of(splits: dict, image_id: int) -> str:
    if image_id in splits["test"]:
        return "test"
    return next(f"fold {k}" for k, fold in enumerate(splits["folds"]) if image_id in fold)


def test_split_keeps_duplicate_groups_in_one_part_across_seeds(tmp_path: Path) -> None:
    root = dataset(tmp_path)
    ids = by_name(root)
    pairs = [(ids["P000_F0.png"], ids["P005_F9.png"]), (ids["P002_F0.png"], ids["P007_F9.jpg"])]
    apart, computed = 0, {}
    for seed in range(6):
        config = SplitConfig(test_fraction=0.25, folds=2, seed=seed)
        splits = computed[seed] = make_splits(root, config)
        assert splits["duplicates"]["source"] == "computed"
        assert splits["duplicates"]["groups"] == 2 == splits["duplicates"]["groups_across_patients"]
        assert splits["duplicates"]["merged_units"] == [["P000", "P005"], ["P002", "P007"]]
        for a, b in pairs:
            assert part_of(splits, a) == part_of(splits, b), (seed, a, b)
        plain = make_splits(root, SplitConfig(test_fraction=0.25, folds=2, seed=seed,
                                              group_duplicates=False))
        assert plain["duplicates"] == {"source": "off", "groups": 0, "groups_across_patients": 0,
                                       "merged_units": []}
        apart += sum(part_of(plain, a) != part_of(plain, b) for a, b in pairs)
    assert apart > 0, "without grouping, some seed must separate a pair (else the test proves nothing)"
    write_cleaning_report(clean_dataset(root, CleaningConfig()), root)
    from_report = make_splits(root, SplitConfig(test_fraction=0.25, folds=2, seed=3))
    assert from_report["duplicates"]["source"] == "cleaning_report"
    assert from_report["folds"] == computed[3]["folds"] and from_report["test"] == computed[3]["test"]
