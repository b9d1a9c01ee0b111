"""The console script end to end on real files: ingest -> clean -> split -> export, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from spinekit.cli.main import app

runner = CliRunner()


def test_ingest_clean_split_export(labelme_folder: Path, tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    result = runner.invoke(app, ["ingest", str(labelme_folder), "--format", "labelme", "--out", str(ds),
                                 "--patient-pattern", r"^(P\d+)_"])
    assert result.exit_code == 0, result.output
    assert "instances" in result.output
    result = runner.invoke(app, ["clean", str(ds)])
    assert result.exit_code == 0, result.output
    report = json.loads((ds / "cleaning_report.json").read_text())
    assert report["summary"]["images"] == 6 and report["summary"]["negatives"] == 1
    result = runner.invoke(app, ["split", str(ds), "--test-fraction", "0.34", "--folds", "2"])
    assert result.exit_code == 0, result.output
    splits = json.loads((ds / "splits.json").read_text())
    assert len(splits["folds"]) == 2 and splits["test"]
    result = runner.invoke(app, ["export", str(ds), "--format", "labelme", "--out", str(tmp_path / "lm")])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "lm").glob("*.json"))) == 6


def test_errors_are_one_line_with_exit_code_2(labelme_folder: Path, tmp_path: Path) -> None:
    args = ["ingest", str(labelme_folder), "--format", "nifti", "--out", str(tmp_path / "x")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "unknown format 'nifti'" in lines[0] and str(labelme_folder) in lines[0]
    result = runner.invoke(app, ["split", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "dataset folder not found" in result.output
    result = runner.invoke(app, ["clean", str(labelme_folder), "--exclude", "bogus"])
    assert result.exit_code == 2
    assert not (labelme_folder / "cleaning_report.json").exists()


def test_train_and_evaluate_errors_are_one_line(labelme_folder: Path, tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    ingested = runner.invoke(app, ["ingest", str(labelme_folder), "--format", "labelme", "--out", str(ds)])
    assert ingested.exit_code == 0
    cases = [
        (["train", str(ds), "--out", str(tmp_path / "r"), "--set", "optim.lrr=1"], "unknown config key"),
        (["train", str(ds), "--out", str(tmp_path / "r"), "--set", "optim.lr=fast"], "expected a number"),
        (["train", str(ds), "--out", str(tmp_path / "r"), "--model", "nope"], "unknown model 'nope'"),
        (["train", str(ds), "--out", str(tmp_path / "r")], "no splits.json"),
        (["evaluate", str(tmp_path / "r")], "not a spinekit run folder"),
        (["evaluate", "--predictions", str(tmp_path / "p.json"), "--data", str(ds)], "no splits.json"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2, (args, result.output)
        assert len(lines) == 1 and message in lines[0], (args, result.output)
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_compare_errors_are_one_line(labelme_folder: Path, tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    ingested = runner.invoke(app, ["ingest", str(labelme_folder), "--format", "labelme", "--out", str(ds),
                                   "--patient-pattern", r"^(P\d+)_"])
    assert ingested.exit_code == 0
    study = str(tmp_path / "study")
    cases = [
        (["compare", str(ds), "--models", "maskrcnn_light,nope", "--out", study], "unknown model 'nope'"),
        (["compare", str(ds), "--out", study], "give exactly one of --models, --ablation or --datasets"),
        (["compare", str(ds), "--models", "unet_r18", "--folds", "5", "--out", study],
         "3 patients cannot make 5 folds"),
        (["compare", str(ds), "--ablation", "flip=maybe,off", "--out", study], "not one of on, off"),
        (["compare", str(ds), "--models", "unet_r18", "--folds", "2", "--out", study,
          "--set", "data.val_part=test"], "would select checkpoints on the study's test set"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2, (args, result.output)
        assert len(lines) == 1 and message in lines[0], (args, result.output)
