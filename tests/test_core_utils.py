"""Atomic writes, safe paths, geometry round trips and the AASCE reader on the real set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spinekit.data.ingest import IngestOptions, ingest
from spinekit.data.records import load_dataset
from spinekit.errors import InputError
from spinekit.geometry import mask_to_polygons, polygon_area, rasterize
from spinekit.io.atomic import atomic_write_json, atomic_write_text
from spinekit.io.formats.aasce import AASCE_LEVELS
from spinekit.io.paths import safe_join


def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"a": object()})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"], "no temp file left behind"
    atomic_write_text(tmp_path / "sub" / "x.txt", "hi")
    assert (tmp_path / "sub" / "x.txt").read_text() == "hi"


@pytest.mark.parametrize(
    "bad", ["../x.png", "a/../../x.png", "/etc/passwd", "C:\\x.png", "..\\..\\x.png", ""]
)
def test_safe_join_refuses_escapes(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InputError):
        safe_join(tmp_path, bad, source="ann.json")


def test_safe_join_accepts_inside_paths(tmp_path: Path) -> None:
    assert safe_join(tmp_path, "a\\b.png") == (tmp_path / "a" / "b.png").resolve()
    assert safe_join(tmp_path, "a/../b.png") == (tmp_path / "b.png").resolve()


def test_symlink_out_of_folder_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"x")
    root = tmp_path / "root"
    root.mkdir()
    (root / "link.png").symlink_to(outside)
    with pytest.raises(InputError, match="outside"):
        safe_join(root, "link.png")


def test_rasterize_and_polygonise_round_trip() -> None:
    yy, xx = np.mgrid[:60, :80]
    mask = (((xx - 40) / 25.0) ** 2 + ((yy - 30) / 12.0) ** 2 <= 1).astype(np.uint8)
    polys = mask_to_polygons(mask, tolerance=0.0)
    assert len(polys) == 1
    again = rasterize(polys, 60, 80)
    iou = (mask & again).sum() / (mask | again).sum()
    assert iou > 0.97
    assert abs(polygon_area(polys[0]) - mask.sum()) / mask.sum() < 0.05


def test_polygon_area_of_unit_square_and_degenerate() -> None:
    assert polygon_area(np.array([[0, 0], [2, 0], [2, 3], [0, 3]])) == 6.0
    assert polygon_area(np.array([[0, 0], [1, 1]])) == 0.0


@pytest.mark.slow
def test_aasce_real_set_ingests_every_vertebra(tmp_path: Path, aasce_dir: Path) -> None:
    report = ingest(aasce_dir, tmp_path / "aasce", IngestOptions(format="aasce", copy_images=False,
                                                             verify_pixels=False))
    names = [r for r in (aasce_dir / "filenames.csv").read_text().splitlines() if r.strip()]
    assert report.images == len(names) == 481 and report.skipped == []
    records = load_dataset(tmp_path / "aasce")
    assert len(records.annotations) == 481 * 17
    by_image = records.annotations_by_image()
    for image in records.images:
        levels = [a["attributes"]["level"] for a in by_image[image["id"]]]
        assert levels == list(AASCE_LEVELS)
        assert len(image["cobb_angles_deg"]) == 3
    first = records.images[0]
    assert first["patient_id"] == "162"
    corners = by_image[first["id"]][0]["corners"]
    assert len(corners) == 4 and all(0 <= x <= first["width"] for x, _ in corners)


@pytest.mark.slow
def test_lumbar_mri_ingests_every_level_with_patient_and_spacing(tmp_path: Path, mri_dir: Path) -> None:
    report = ingest(mri_dir, tmp_path / "mri", IngestOptions(format="masks"))
    slices = json.loads((mri_dir / "slices.json").read_text())
    assert report.images == len(slices) == 168 and report.skipped == []
    records = load_dataset(tmp_path / "mri")
    by_name = {Path(img["file_name"]).name: img for img in records.images}
    by_image = records.annotations_by_image()
    for entry in slices:
        image = by_name[Path(entry["image"]).name]
        assert image["patient_id"] == entry["patient_id"]
        assert image["pixel_spacing_mm"] == entry["pixel_spacing_mm"]
        levels = sorted(a["attributes"]["level"] for a in by_image[image["id"]])
        assert levels == sorted(entry["levels_present"])


def test_atomic_outputs_get_normal_permissions(tmp_path: Path) -> None:
    import os

    atomic_write_text(tmp_path / "a.txt", "x")
    plain = tmp_path / "b.txt"
    plain.write_text("x")
    assert os.stat(tmp_path / "a.txt").st_mode & 0o777 == os.stat(plain).st_mode & 0o777
