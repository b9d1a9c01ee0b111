"""Cross-stage paths: DICOM cine ingest with pseudonyms, phantom -> de-identify, the demo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from spinekit.cli.main import app
from spinekit.data.deidentify import pseudonymise_id
from spinekit.data.ingest import IngestOptions, ingest
from spinekit.data.records import load_dataset
from spinekit.demo import run_demo
from test_dicom import write_dicom

runner = CliRunner()


def _cine(path: Path) -> Path:
    frames = np.stack([np.full((24, 32), 40 * (k + 1), dtype=np.uint8) for k in range(3)])
    return write_dicom(path, frames, Modality="US", PatientName="DOE^JANE", PixelSpacing=[0.2, 0.25])


def test_dicom_cine_ingest_one_record_per_frame_with_pseudonym(tmp_path: Path) -> None:
    src = tmp_path / "dicom"
    src.mkdir()
    _cine(src / "cine.dcm")
    ingest(src, tmp_path / "ds", IngestOptions(format="images", salt="s3cret"))
    records = load_dataset(tmp_path / "ds")
    assert [img["frame"] for img in records.images] == [0, 1, 2]
    assert {img["patient_id"] for img in records.images} == {pseudonymise_id("P001", "s3cret")}
    assert all(img["pixel_spacing_mm"] == [0.2, 0.25] for img in records.images)
    pixels = [np.asarray(Image.open(records.image_path(img))) for img in records.images]
    assert [int(p.mean()) for p in pixels] == [40, 80, 120]
    assert "P001" not in (tmp_path / "ds" / "annotations.json").read_text()
    one = ingest(src, tmp_path / "one", IngestOptions(format="images", salt="s3cret", frames=1))
    assert one.images == 1 and load_dataset(tmp_path / "one").images[0]["frame"] == 1


def test_dicom_patient_id_without_salt_is_refused_per_file(tmp_path: Path) -> None:
    src = tmp_path / "dicom"
    src.mkdir()
    _cine(src / "cine.dcm")
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(src / "plain.png")
    report = ingest(src, tmp_path / "ds", IngestOptions(format="images"))
    assert report.images == 1
    assert any("--salt" in s["reason"] and s["file"].endswith("cine.dcm") for s in report.skipped)
    assert sorted(p.name for p in (tmp_path / "ds" / "images").iterdir()) == ["plain.png"], \
        "nothing is written for a refused DICOM"


def test_phantom_then_deidentify_blanks_the_burned_in_header(tmp_path: Path) -> None:
    result = runner.invoke(app, ["phantom", "--n", "3", "--seed", "1", "--out", str(tmp_path / "ph")])
    assert result.exit_code == 0, result.output
    frames = sorted((tmp_path / "ph" / "local").glob("*.png"))
    header = slice(0, 50)
    assert all(np.asarray(Image.open(f))[header].max() > 0 for f in frames), "phantom burns a header in"
    args = ["deidentify", str(tmp_path / "ph" / "local"), "--out", str(tmp_path / "clean"),
            "--salt", "k", "--header-fraction", "0.08"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "clean" / "deidentify_report.json").read_text())
    assert report["totals"]["files_written"] == 3 and report["totals"]["files_with_text_found"] == 3
    entries = {e["source"]: e for e in report["files"]}
    for frame in frames:
        before = np.asarray(Image.open(frame))
        after = np.asarray(Image.open(tmp_path / "clean" / frame.name))
        rows = int(np.ceil(before.shape[0] * 0.08))
        assert after[:rows].max() == 0
        kept = np.ones(before.shape[:2], dtype=bool)
        kept[:rows] = False
        for region in entries[frame.name]["regions_blanked"]:  # detected text lines, e.g. side labels
            for x0, y0, x1, y1 in region.get("boxes", []):
                kept[y0:y1, x0:x1] = False
        assert kept.mean() > 0.9  # the 8 % header band plus about 1 % of text lines
        assert np.array_equal(after[kept], before[kept])


def test_demo_data_path(tmp_path: Path) -> None:
    result = run_demo(tmp_path / "demo", n=24, seed=3, train=False)
    steps = {s["step"]: s for s in result.steps}
    assert list(steps) == ["phantom", "ingest", "clean", "split"]
    assert steps["ingest"]["images"] == 24 and steps["ingest"]["negatives"] > 0
    assert json.loads((tmp_path / "demo" / "demo.json").read_text())["steps"] == result.steps
    again = run_demo(tmp_path / "demo", n=24, seed=3, train=False)
    assert [s["step"] for s in again.steps] == list(steps)


def test_demo_end_to_end_tiny(tmp_path: Path) -> None:
    tiny = ["data.size=[64,64]", "train.max_steps=2", "data.workers=0", "train.threads=1"]
    result = run_demo(tmp_path / "demo", n=24, seed=3, config_overrides=tiny)
    assert [s["step"] for s in result.steps][-4:] == ["train", "evaluate", "predict", "report"]
    assert 0.0 <= result.metrics["segm"]["AP50"] <= 1.0
    assert result.report is not None and result.report.is_file()
    labelme = sorted((tmp_path / "demo" / "predictions" / "labelme").glob("*.json"))
    assert labelme, "the demo writes LabelMe pre-annotations for the test images"
