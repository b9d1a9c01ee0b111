"""Patient-level splits, the torch dataset (resize, flip, negatives) and export round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import labelme_doc, poly, write_png
from spinekit.data.export import export_dataset
from spinekit.data.ingest import IngestOptions, ingest
from spinekit.data.records import load_dataset
from spinekit.data.splits import SplitConfig, load_splits, make_splits, split_image_ids
from spinekit.data.torch_dataset import DatasetConfig, SpineDataset, collate
from spinekit.errors import InputError


def _dataset(tmp_path: Path, patients: int = 12, frames: int = 3) -> Path:
    src = tmp_path / "src"
    for p in range(patients):
        for f in range(frames):
            name = f"P{p:03d}_F{f:03d}"
            write_png(src / f"{name}.png", 80, 40, texture=p * frames + f)
            negative = f == 2 and p % 2 == 0
            shapes = [] if negative else [
                poly("TP_left", [[4, 4], [20, 4], [20, 14], [4, 14]]),
                poly("TP_right", [[50, 20], [70, 20], [70, 30], [50, 30]]),
            ]
            (src / f"{name}.json").write_text(json.dumps(labelme_doc(f"{name}.png", 80, 40, shapes)))
    out = tmp_path / "ds"
    ingest(src, out, IngestOptions(format="labelme", patient_pattern=r"^(P\d+)_"))
    return out


def test_splits_are_patient_disjoint_deterministic_and_spread_negatives(tmp_path: Path) -> None:
    ds = _dataset(tmp_path)
    splits = make_splits(ds, SplitConfig(test_fraction=0.25, folds=3, seed=7))
    records = load_dataset(ds)
    patient_of = {img["id"]: img["patient_id"] for img in records.images}
    parts = [splits["test"], *splits["folds"]]
    seen: set[str] = set()
    for part in parts:
        patients = {patient_of[i] for i in part}
        assert not patients & seen, "a patient appears in two parts"
        seen |= patients
    assert sorted(i for part in parts for i in part) == sorted(patient_of)
    assert all(row["negatives"] > 0 for row in splits["summary"]), splits["summary"]
    assert make_splits(ds, SplitConfig(test_fraction=0.25, folds=3, seed=7)) == splits
    other = make_splits(ds, SplitConfig(test_fraction=0.25, folds=3, seed=8))
    assert other["test"] != splits["test"] or other["folds"] != splits["folds"]
    loaded = load_splits(ds)
    assert set(split_image_ids(loaded, "train", 1)) | set(split_image_ids(loaded, "val", 1)) == set(
        split_image_ids(loaded, "trainval"))


def test_too_few_patients(tmp_path: Path) -> None:
    ds = _dataset(tmp_path, patients=3)
    with pytest.raises(InputError, match="3 patients cannot make 5 folds"):
        make_splits(ds, SplitConfig(folds=5))


def test_cleaning_exclusions_are_honoured(tmp_path: Path) -> None:
    ds = _dataset(tmp_path, patients=6)
    report = {"excluded_images": [1], "excluded_annotations": [3]}
    (ds / "cleaning_report.json").write_text(json.dumps(report))
    splits = make_splits(ds, SplitConfig(test_fraction=0.0, folds=2))
    assert 1 not in [i for f in splits["folds"] for i in f]
    data = SpineDataset(ds, part="all", config=DatasetConfig(size=(20, 40)))
    assert 1 not in {img["id"] for img in data.images}
    image_two = next(i for i, img in enumerate(data.images) if img["id"] == 2)
    assert data[image_two][1]["labels"].tolist() == [2], "annotation 3 must be excluded"


def test_dataset_targets_resize_and_negatives(tmp_path: Path) -> None:
    ds = _dataset(tmp_path, patients=6)
    make_splits(ds, SplitConfig(test_fraction=0.0, folds=2))
    data = SpineDataset(ds, part="all", config=DatasetConfig(size=(20, 40)))
    image, target = data[0]
    assert image.shape == (1, 20, 40) and image.dtype == torch.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    assert target["masks"].shape == (2, 20, 40) and target["masks"].dtype == torch.uint8
    # TP_left occupies x 4..20, y 4..14 of 80x40 -> x 2..10, y 2..7 at half size
    assert target["boxes"][0].tolist() == [2.0, 2.0, 10.0, 7.0]
    assert int(target["masks"][0].sum()) == 8 * 5
    negatives = [data[i][1] for i in range(len(data)) if data.images[i]["file_name"].endswith("F002.png")
                 and int(data.images[i]["patient_id"][1:]) % 2 == 0]
    assert negatives
    assert all(t["boxes"].shape == (0, 4) and t["masks"].shape == (0, 20, 40) for t in negatives)
    images, targets = collate([data[0], data[1]])
    assert len(images) == 2 and len(targets) == 2


def test_keep_aspect_pads_and_flip_swaps_sides(tmp_path: Path) -> None:
    ds = _dataset(tmp_path, patients=6)
    make_splits(ds, SplitConfig(test_fraction=0.0, folds=2))
    config = DatasetConfig(size=(40, 40), keep_aspect=True, flip_prob=1.0,
                           flip_pairs={"TP_left": "TP_right"})
    data = SpineDataset(ds, part="all", config=config)
    plain = SpineDataset(ds, part="all", config=DatasetConfig(size=(40, 40), keep_aspect=True))
    image, target = data[0]
    ref_image, ref_target = plain[0]
    assert torch.equal(image, ref_image.flip(-1))
    assert float(ref_image[0, :9].abs().sum()) == 0.0, "padding rows above a letterboxed image are zero"
    names = load_dataset(ds).category_names()
    assert [names[i] for i in ref_target["labels"].tolist()] == ["TP_left", "TP_right"]
    assert [names[i] for i in target["labels"].tolist()] == ["TP_right", "TP_left"]
    assert torch.equal(target["masks"], ref_target["masks"].flip(-1))
    flipped_box = ref_target["boxes"][0]
    assert target["boxes"][0].tolist() == [40 - flipped_box[2].item(), flipped_box[1].item(),
                                           40 - flipped_box[0].item(), flipped_box[3].item()]
    with pytest.raises(ValueError, match="unknown class"):
        SpineDataset(ds, part="all", config=DatasetConfig(flip_pairs={"TP_lft": "TP_right"}))


def test_export_labelme_round_trip(tmp_path: Path) -> None:
    ds = _dataset(tmp_path, patients=2)
    export_dataset(ds, tmp_path / "lm", "labelme")
    again = tmp_path / "again"
    ingest(tmp_path / "lm", again, IngestOptions(format="labelme"))
    a, b = load_dataset(ds), load_dataset(again)
    assert len(a.images) == len(b.images)
    key = lambda r: sorted((x["bbox"], x["area"]) for x in r.annotations)  # noqa: E731
    assert key(a) == key(b)
    export_dataset(ds, tmp_path / "coco", "coco")
    coco = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    assert all((tmp_path / "coco" / img["file_name"]).is_file() for img in coco["images"])
    assert np.isclose(sum(x["area"] for x in coco["annotations"]), sum(x["area"] for x in a.annotations))
