"""Shared fixtures: tiny real image files and LabelMe folders in tmp_path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
AASCE = SHARED / "aasce"
LUMBAR_MRI = SHARED / "lumbar-mri"


def shared_data(folder: Path, marker: str) -> Path:
    """``folder`` of ../shared/data when it holds ``marker``; else skip, or fail under CI.

    A user's clone has no ../shared beside it: the tests on the real sets skip
    there, with the reason. CI (``CI=true``) always has it, so there a missing
    folder is an error, never a silent skip.
    """
    if (folder / marker).is_file():
        return folder
    reason = f"real data set not found: {folder.resolve()} (needs ../shared/data beside the clone)"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason}; CI=true requires it")
    pytest.skip(reason)


@pytest.fixture
def aasce_dir() -> Path:
    """The AASCE set in ../shared/data/aasce (skip outside CI when absent)."""
    return shared_data(AASCE, "filenames.csv")


@pytest.fixture
def mri_dir() -> Path:
    """The lumbar MRI set in ../shared/data/lumbar-mri (skip outside CI when absent)."""
    return shared_data(LUMBAR_MRI, "slices.json")


def write_png(path: Path, width: int = 64, height: int = 48, value: int | None = None,
              texture: int | None = None) -> Path:
    """A small gray PNG with a gradient (or a constant ``value``).

    With ``texture`` (a seed), half gradient and half seeded noise: images with
    different textures are not duplicates of each other (``spinekit clean``/``split``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if value is None:
        arr = (np.add.outer(np.arange(height), np.arange(width)) % 256).astype(np.uint8)
        if texture is not None:
            noise = np.random.default_rng(texture).integers(0, 256, (height, width))
            arr = (arr // 2 + noise // 2).astype(np.uint8)
    else:
        arr = np.full((height, width), value, dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def labelme_doc(image_path: str, width: int, height: int, shapes: list[dict]) -> dict:
    return {"version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": image_path,
            "imageData": None, "imageWidth": width, "imageHeight": height}


def poly(label: str, points: list[list[float]], shape_type: str = "polygon",
         group_id: int | None = None) -> dict:
    return {"label": label, "points": points, "group_id": group_id, "shape_type": shape_type,
            "flags": {}, "description": ""}


@pytest.fixture
def labelme_folder(tmp_path: Path) -> Path:
    """Six LabelMe images of three patients, one negative, F and E polygons."""
    src = tmp_path / "labelme"
    for patient in range(3):
        for frame in range(2):
            name = f"P{patient:03d}_F{frame:03d}"
            write_png(src / f"{name}.png", 64, 48, texture=2 * patient + frame)
            shapes = [] if (patient, frame) == (2, 1) else [
                poly("F", [[10, 10], [20, 10], [20, 18], [10, 18]]),
                poly("E", [[30, 30], [50, 30], [50, 36]]),
            ]
            (src / f"{name}.json").write_text(json.dumps(labelme_doc(f"{name}.png", 64, 48, shapes)))
    return src


@pytest.fixture
def dataset(labelme_folder: Path, tmp_path: Path) -> Path:
    """:func:`labelme_folder` ingested (3 patients) and split: 1 test patient, 2 folds."""
    from spinekit.data.ingest import IngestOptions, ingest
    from spinekit.data.splits import SplitConfig, make_splits

    out = tmp_path / "ds"
    ingest(labelme_folder, out, IngestOptions(format="labelme", patient_pattern=r"^(P\d+)_"))
    make_splits(out, SplitConfig(test_fraction=0.34, folds=2, seed=0))
    return out
