"""LabelMe reading and ingest into a dataset folder, including bad input."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from conftest import labelme_doc, poly, write_png
from spinekit.data.ingest import IngestOptions, ingest
from spinekit.data.records import load_dataset
from spinekit.errors import InputError
from spinekit.io.formats.labelme import read_labelme


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_ingest_labelme_folder(labelme_folder: Path, tmp_path: Path) -> None:
    before = _digest(labelme_folder)
    out = tmp_path / "ds"
    report = ingest(labelme_folder, out, IngestOptions(format="labelme", patient_pattern=r"^(P\d+)_"))
    assert report.images == 6
    assert report.annotations == 10
    assert report.negatives == 1
    records = load_dataset(out)
    assert [c["name"] for c in records.categories] == ["E", "F"] or \
        sorted(c["name"] for c in records.categories) == ["E", "F"]
    assert {img["patient_id"] for img in records.images} == {"P000", "P001", "P002"}
    first = records.annotations[0]
    assert first["bbox"][2] > 0 and first["area"] > 0
    assert records.image_path(records.images[0]).is_file()
    assert _digest(labelme_folder) == before, "inputs must never be modified"
    assert json.loads((out / "ingest_report.json").read_text())["images"] == 6


def test_rectangle_area_and_class_remap(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_png(src / "a.png", 40, 30)
    shapes = [poly("F", [[2, 3], [12, 13]], shape_type="rectangle"), poly("junk", [[1, 1], [5, 1], [5, 5]]),
              poly("target", [[7, 8]], shape_type="point")]
    (src / "a.json").write_text(json.dumps(labelme_doc("a.png", 40, 30, shapes)))
    report = ingest(src, tmp_path / "ds", IngestOptions(format="labelme", classes="F=facet"))
    records = load_dataset(tmp_path / "ds")
    assert report.dropped_labels == {"junk": 1}
    assert [c["name"] for c in records.categories] == ["facet"]
    assert records.annotations[0]["area"] == pytest.approx(100.0)
    assert records.annotations[0]["bbox"] == [2.0, 3.0, 10.0, 10.0]
    assert records.images[0]["points"] == [{"label": "target", "x": 7.0, "y": 8.0}]


def test_group_id_merges_parts_and_levels_become_vertebrae(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_png(src / "x.png", 50, 50)
    shapes = [poly("L4", [[1, 1], [9, 1], [9, 9]], group_id=3),
              poly("L4", [[20, 20], [29, 20], [29, 29]], group_id=3),
              poly("L5", [[30, 30], [40, 30], [40, 40]])]
    (src / "x.json").write_text(json.dumps(labelme_doc("x.png", 50, 50, shapes)))
    ingest(src, tmp_path / "ds", IngestOptions(format="labelme"))
    records = load_dataset(tmp_path / "ds")
    assert [c["name"] for c in records.categories] == ["vertebra"]
    assert len(records.annotations) == 2
    multi = records.annotations[0]
    assert len(multi["segmentation"]) == 2 and multi["attributes"]["level"] == "L4"
    assert multi["bbox"] == [1.0, 1.0, 28.0, 28.0]


def test_embedded_image_data(tmp_path: Path) -> None:
    src = tmp_path / "src"
    png = write_png(tmp_path / "emb.png", 20, 10)
    doc = labelme_doc("missing.png", 20, 10, [poly("F", [[1, 1], [5, 1], [5, 5]])])
    doc["imageData"] = base64.b64encode(png.read_bytes()).decode()
    src.mkdir()
    (src / "emb.json").write_text(json.dumps(doc))
    ingest(src, tmp_path / "ds", IngestOptions(format="labelme"))
    records = load_dataset(tmp_path / "ds")
    path = records.image_path(records.images[0])
    assert path.read_bytes() == png.read_bytes()
    assert (records.images[0]["width"], records.images[0]["height"]) == (20, 10)


def test_bad_files_are_skipped_with_reasons(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_png(src / "good.png")
    (src / "good.json").write_text(json.dumps(labelme_doc("good.png", 64, 48, [])))
    (src / "broken.json").write_text("{not json")
    (src / "escape.json").write_text(json.dumps(labelme_doc("../../etc/passwd", 64, 48, [])))
    (src / "absent.json").write_text(json.dumps(labelme_doc("absent.png", 64, 48, [])))
    (src / "trunc.png").write_bytes(write_png(tmp_path / "t.png").read_bytes()[:60])
    (src / "trunc.json").write_text(json.dumps(labelme_doc("trunc.png", 64, 48, [])))
    read = read_labelme(src)
    reasons = "\n".join(read.skipped)
    assert "broken.json: broken JSON" in reasons
    assert "outside the dataset folder" in reasons
    assert "absent.png" in reasons and "not found" in reasons
    report = ingest(src, tmp_path / "ds", IngestOptions(format="labelme"))
    assert report.images == 1
    skipped_files = {Path(s["file"]).name for s in report.skipped}
    assert {"broken.json", "escape.json", "absent.json", "trunc.png"} <= skipped_files


def test_declared_size_mismatch_is_recorded(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_png(src / "a.png", 64, 48)
    (src / "a.json").write_text(json.dumps(labelme_doc("a.png", 640, 480, [])))
    ingest(src, tmp_path / "ds", IngestOptions(format="labelme"))
    image = load_dataset(tmp_path / "ds").images[0]
    assert image["declared_size"] == [640, 480]
    assert (image["width"], image["height"]) == (64, 48)


def test_output_inside_source_and_existing_dataset_refused(labelme_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="outside the source"):
        ingest(labelme_folder, labelme_folder / "out", IngestOptions(format="labelme"))
    ingest(labelme_folder, tmp_path / "ds", IngestOptions(format="labelme"))
    with pytest.raises(InputError, match="already holds a dataset"):
        ingest(labelme_folder, tmp_path / "ds", IngestOptions(format="labelme"))
    ingest(labelme_folder, tmp_path / "ds", IngestOptions(format="labelme", overwrite=True))


def test_unknown_format_and_empty_source(tmp_path: Path, labelme_folder: Path) -> None:
    with pytest.raises(InputError, match="unknown format"):
        ingest(labelme_folder, tmp_path / "ds", IngestOptions(format="nifti"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no LabelMe"):
        ingest(empty, tmp_path / "ds2", IngestOptions(format="labelme"))


def test_reference_mode_keeps_images_in_place(labelme_folder: Path, tmp_path: Path) -> None:
    ingest(labelme_folder, tmp_path / "ds", IngestOptions(format="labelme", copy_images=False))
    records = load_dataset(tmp_path / "ds")
    assert not (tmp_path / "ds" / "images").exists()
    assert records.image_path(records.images[0]).parent == labelme_folder.resolve()
