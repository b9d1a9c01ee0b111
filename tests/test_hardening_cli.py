"""Hostile input through the console script: every problem is one line naming the file or option.

User errors exit 2 with one red line; anything else is an internal error (exit 1,
one line); tracebacks appear only with ``--debug``. Real files in tmp_path, the
real CLI (typer's CliRunner); the tiny model trains for one or two steps.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pytest
import typer
import yaml
from typer.testing import CliRunner

from conftest import labelme_doc, poly, write_png
from spinekit.cli.main import _Group, app, main

runner = CliRunner()
TINY = ["data.size=[64,64]", "data.workers=0", "train.batch_size=2", "optim.lr=0.001",
        "optim.warmup_steps=1", "train.threads=1", "data.val_part=none"]


def one_error(args: list[str], *, code: int = 2, cli: typer.Typer = app) -> str:
    """Run the CLI; assert the exit code, exactly one output line and no traceback; return the line."""
    result = runner.invoke(cli, args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == code, (args, result.output)
    assert len(lines) == 1, (args, result.output)
    assert "Traceback" not in result.output
    return lines[0]


# ----------------------------------------------------------------------------- the mechanism

def _test_app() -> typer.Typer:
    """spinekit's group and global options with two commands that fail like real code can."""
    cli = typer.Typer(cls=_Group, pretty_exceptions_enable=False)
    cli.callback()(main)

    @cli.command()
    def divide(n: int) -> None:
        typer.echo(str(1 // n))

    @cli.command()
    def logs() -> None:
        table: dict[str, int] = {}
        try:
            table["missing"]
        except KeyError:
            logging.getLogger("some.library").exception("lookup failed")
        typer.echo("done")

    return cli


def test_a_bug_is_one_internal_error_line_and_debug_shows_the_traceback() -> None:
    cli = _test_app()
    line = one_error(["divide", "0"], code=1, cli=cli)
    assert line == ("internal error: ZeroDivisionError: integer division or modulo by zero "
                    "(rerun with --debug for the traceback)")
    result = runner.invoke(cli, ["--debug", "divide", "0"])
    assert result.exit_code == 1 and "Traceback" in result.output and "1 // n" in result.output


def test_a_logged_library_traceback_is_one_line_unless_debug() -> None:
    cli = _test_app()
    result = runner.invoke(cli, ["logs"])
    assert result.exit_code == 0 and "lookup failed (KeyError: 'missing')" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(cli, ["--debug", "logs"])
    assert result.exit_code == 0 and "Traceback" in result.output


def test_bad_argument_values_are_one_line(tmp_path: Path) -> None:
    line = one_error(["predict", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "o"),
                      "--batch-size", "many"])
    assert "--batch-size" in line and "spinekit predict --help" in line
    assert "No such command 'nope'" in one_error(["nope"])


def test_user_error_with_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--debug", "split", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "Traceback" in result.output
    assert "dataset folder not found" in result.output


# ----------------------------------------------------------------------------- options

def test_bad_patient_pattern_names_the_option(labelme_folder: Path, tmp_path: Path) -> None:
    line = one_error(["ingest", str(labelme_folder), "--format", "labelme", "--out", str(tmp_path / "ds"),
                      "--patient-pattern", "(P\\d+"])
    assert line.startswith("error: --patient-pattern: invalid regular expression '(P\\\\d+'")
    assert "missing )" in line and not (tmp_path / "ds").exists()


@pytest.mark.parametrize("args", [
    ["evaluate", "--predictions", "p.json", "--data", "ds", "--score-threshold", "nan"],
    ["measure", "ds", "--out", "m.csv", "--score-threshold", "inf"],
    ["compare", "ds", "--models", "unet_r18", "--iou-threshold", "1.5"],
    ["ingest", "src", "--format", "images", "--out", "o", "--frames", "-1"],
])
def test_non_finite_or_out_of_range_options_are_refused(args: list[str], tmp_path: Path) -> None:
    line = one_error([a if not a.endswith(("json", "ds", "csv", "src")) or a.startswith("-")
                      else str(tmp_path / a) for a in args])
    option = next(a for a in reversed(args) if a.startswith("--"))
    assert option in line, line


def test_predict_refuses_nan_threshold_before_loading_anything(tmp_path: Path) -> None:
    line = one_error(["predict", str(tmp_path / "run"), str(tmp_path), "--out", str(tmp_path / "o"),
                      "--score-threshold", "nan"])
    assert line == "error: --score-threshold must be a finite number, got nan"


# ----------------------------------------------------------------------------- config

@pytest.mark.parametrize(("text", "message"), [
    ("train: {batch_size: 0}", "train.batch_size must be >= 1, got 0"),
    ("optim: {lr: .inf}", "optim.lr must be a finite number, got inf"),
    ("train: {epochs: -3}", "train.epochs must be >= 1, got -3"),
    ("eval: {score_threshold: .nan}", "eval.score_threshold must be a finite number, got nan"),
    ("train: {max_steps: -1}", "train.max_steps must be >= 1, got -1"),
    ("data: {size: [64, 100000000]}", "data.size must be <= 16384, got 100000000"),
    ("[1, 2]", "config must be a YAML mapping of sections, got list"),
    ("train: {batch_sise: 4}", "unknown config key 'train.batch_sise'"),
    ("train: {batch_size: four}", "train.batch_size: expected an integer, got 'four'"),
    ("train: [1, 2]", "train: expected a mapping"),
    ("train: {batch_size: 4", "broken YAML"),
])
def test_config_file_problems_name_the_file_and_key(text: str, message: str, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(text)
    line = one_error(["train", str(tmp_path / "ds"), "--out", str(tmp_path / "run"), "--config", str(config)])
    assert line.startswith(f"error: {config}: ") and message in line, line
    assert not (tmp_path / "run").exists()


def test_override_problems_name_the_key(tmp_path: Path) -> None:
    base = ["train", str(tmp_path / "ds"), "--out", str(tmp_path / "run"), "--set"]
    line = one_error([*base, "train.batch_size=0"])
    assert line == "error: train.batch_size must be >= 1, got 0"
    line = one_error([*base, "optim.lr=nan"])
    assert line == "error: optim.lr must be a finite number, got nan"


def test_config_path_that_is_a_folder(tmp_path: Path) -> None:
    line = one_error(["train", str(tmp_path), "--out", str(tmp_path / "run"), "--config", str(tmp_path)])
    assert line == f"error: {tmp_path}: config file is a folder, not a file"


def test_yaml_alias_bomb_is_refused_fast(tmp_path: Path) -> None:
    rows = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        rows.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(rows) + "\n")  # 9^9 = 387 million strings once expanded
    from spinekit.engine.config import load_config
    from spinekit.errors import InputError

    start = time.perf_counter()
    with pytest.raises(InputError, match="alias bomb"):
        load_config(bomb)
    assert time.perf_counter() - start < 1.0
    line = one_error(["train", str(tmp_path), "--out", str(tmp_path / "run"), "--config", str(bomb)])
    assert str(bomb) in line and "after expanding aliases" in line
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 20000 + "]" * 20000)
    assert "nested too deeply" in one_error(["train", str(tmp_path), "--out", str(tmp_path / "r"),
                                             "--config", str(deep)])


# ----------------------------------------------------------------------------- checkpoints

@pytest.mark.parametrize("content", [b"", b"\x00garbage, not a zip file" * 10])
def test_empty_or_corrupt_checkpoint_names_the_file(content: bytes, tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("{}\n")
    checkpoint = run / "checkpoints" / "best.pt"
    checkpoint.write_bytes(content)
    line = one_error(["evaluate", str(run)])
    assert line.startswith(f"error: {checkpoint}: not a")
    assert ("not a spinekit checkpoint: the file is empty" in line) if not content else "checkpoint" in line


# ----------------------------------------------------------------------------- training and prediction

@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four distinct LabelMe images of four patients, ingested and split (2 folds + test)."""
    root = tmp_path_factory.mktemp("hardening")
    src = root / "labelme"
    for patient in range(4):
        name = f"P{patient:03d}_F000"
        write_png(src / f"{name}.png", 64, 48, value=40 + 50 * patient)
        shapes = [poly("F", [[10, 10], [20 + patient, 10], [20, 18], [10, 18]])]
        (src / f"{name}.json").write_text(json.dumps(labelme_doc(f"{name}.png", 64, 48, shapes)))
    result = runner.invoke(app, ["ingest", str(src), "--format", "labelme", "--out", str(root / "ds"),
                                 "--patient-pattern", r"^(P\d+)_"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["split", str(root / "ds"), "--test-fraction", "0.25", "--folds", "2"])
    assert result.exit_code == 0, result.output
    return root / "ds"


@pytest.fixture(scope="module")
def one_step_run(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run") / "run"
    args = ["train", str(small_dataset), "--out", str(run), "--device", "cpu"]
    for item in [*TINY, "train.max_steps=1", "train.epochs=5"]:
        args += ["--set", item]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return run


def test_resume_with_larger_max_steps_trains_on(small_dataset: Path, one_step_run: Path,
                                                tmp_path: Path) -> None:
    import shutil

    from spinekit.engine.checkpoint import load_checkpoint

    run = tmp_path / "run"
    shutil.copytree(one_step_run, run)
    base = ["train", str(small_dataset), "--out", str(run), "--device", "cpu", "--resume"]
    overrides = [x for item in [*TINY, "train.epochs=5"] for x in ("--set", item)]
    result = runner.invoke(app, [*base, *overrides, "--set", "train.max_steps=2"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(run / "checkpoints" / "last.pt")["loop"]["step"] == 2
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["max_steps"] == 2
    saved = (run / "config.yaml").read_bytes()
    line = one_error([*base, *overrides, "--set", "train.max_steps=2"])
    assert line.startswith(f"error: {run}: nothing left to train: the run has done 2 steps")
    assert (run / "config.yaml").read_bytes() == saved, "config.yaml rewritten without training"


def test_predict_skips_a_dicom_claiming_a_billion_frames_and_shortens_long_names(
        one_step_run: Path, tmp_path: Path) -> None:
    from test_dicom import write_dicom

    inputs = tmp_path / "in"
    inputs.mkdir()
    write_dicom(inputs / "huge.dcm", np.arange(256, dtype=np.uint16).reshape(16, 16),
                NumberOfFrames=10**9)
    long_name = "x" * 240 + ".png"
    write_png(inputs / long_name, 64, 48)
    write_png(inputs / b"caf\xe9.png".decode("utf-8", "surrogateescape"), 64, 48)  # a Latin-1 name
    start = time.perf_counter()
    result = runner.invoke(app, ["predict", str(one_step_run), str(inputs), "--out", str(tmp_path / "out"),
                                 "--device", "cpu", "--format", "coco,labelme,overlay"])
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - start < 60
    assert "huge.dcm: header claims 1000000000 frame(s)" in result.output
    assert "2 images" in result.output and "Traceback" not in result.output
    written = [p.name for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert max(len(name.encode()) for name in written) <= 120
    assert len([n for n in written if n.startswith("x" * 80) and n.endswith(".json")]) == 1
    assert "caf\ufffd.json" in written


# ----------------------------------------------------------------------------- silent cases of the corpus

def _labelme_pair(src: Path, **changes: object) -> Path:
    """A good LabelMe document P000_F000 plus ``bad.json`` (with ``changes``) beside its image."""
    for name in ("P000_F000", "bad"):
        write_png(src / f"{name}.png", 64, 48, texture=len(name))
        doc = labelme_doc(f"{name}.png", 64, 48, [poly("F", [[10, 10], [20, 10], [20, 18]])])
        (src / f"{name}.json").write_text(json.dumps({**doc, **changes} if name == "bad" else doc))
    return src / "bad.json"


def _ingest_report(out: Path) -> dict:
    return json.loads((out / "ingest_report.json").read_text(encoding="utf-8"))


def test_labelme_group_id_must_be_an_integer_or_null(tmp_path: Path) -> None:
    shapes = [{**poly("F", [[10, 10], [20, 10], [20, 18]]), "group_id": "x"},
              poly("F", [[30, 30], [40, 30], [40, 38]], group_id=2)]
    bad = _labelme_pair(tmp_path / "src", shapes=shapes)
    result = runner.invoke(app, ["ingest", str(tmp_path / "src"), "--format", "labelme",
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    reason = "shapes[0].group_id: must be an integer, got 'x'"
    assert f"warning {bad}: {reason}" in result.output  # on screen, and in the report:
    assert {"file": str(bad), "reason": reason} in _ingest_report(tmp_path / "out")["warnings"]
    assert _ingest_report(tmp_path / "out")["annotations"] == 2  # the good shapes of both files


def test_labelme_broken_image_data_skips_the_file_even_beside_its_image(tmp_path: Path) -> None:
    bad = _labelme_pair(tmp_path / "src", imageData="!!notbase64")
    result = runner.invoke(app, ["ingest", str(tmp_path / "src"), "--format", "labelme",
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    (skipped,) = _ingest_report(tmp_path / "out")["skipped"]
    assert skipped["file"] == str(bad) and skipped["reason"].startswith("imageData: is not valid base64")
    assert f"skipped {bad}: imageData: is not valid base64" in result.output
    # valid base64 with line breaks (as some tools wrap it) is read when the image file is absent
    import base64

    png = (tmp_path / "src" / "bad.png").read_bytes()
    encoded = base64.b64encode(png).decode()
    (tmp_path / "src" / "bad.png").unlink()
    doc = json.loads(bad.read_text())
    bad.write_text(json.dumps({**doc, "imageData": "\n".join(encoded[i:i + 76]
                                                             for i in range(0, len(encoded), 76))}))
    result = runner.invoke(app, ["ingest", str(tmp_path / "src"), "--format", "labelme",
                                 "--out", str(tmp_path / "out2")])
    assert result.exit_code == 0 and _ingest_report(tmp_path / "out2")["images"] == 2, result.output
    assert (tmp_path / "out2" / "images" / "bad.png").read_bytes() == png


def test_patient_pattern_needs_a_group_and_classes_one_equals_sign(tmp_path: Path) -> None:
    _labelme_pair(tmp_path / "src")
    base = ["ingest", str(tmp_path / "src"), "--format", "labelme", "--out", str(tmp_path / "out")]
    assert one_error([*base, "--patient-pattern", "^P"]) == (
        "error: --patient-pattern: '^P' must contain one capture group (the patient id)")
    assert one_error([*base, "--classes", "E=x,F=a=b"]) == (
        "error: --classes: 'F=a=b' has more than one '=' (use A=B to rename, A to keep, A= to drop)")
    assert not (tmp_path / "out").exists()


def test_deidentify_fails_a_file_whose_header_claims_more_pixels_than_it_holds(tmp_path: Path) -> None:
    from test_dicom import write_dicom

    src = tmp_path / "src"
    src.mkdir()
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    write_dicom(src / "huge.dcm", pixels, NumberOfFrames=10**9)
    write_dicom(src / "good.dcm", pixels)
    write_dicom(src / "empty.dcm", pixels, PixelData=b"")
    out = tmp_path / "out"
    result = runner.invoke(app, ["deidentify", str(src), "--out", str(out), "--salt", "s"])
    assert result.exit_code == 1, result.output
    assert "failed: huge.dcm: header claims 1000000000 frame(s) of 16x16x1 at 8 bits" in result.output
    assert (out / "good.dcm").is_file() and not (out / "huge.dcm").exists()
    report = json.loads((out / "deidentify_report.json").read_text())
    failed = {f["source"]: f["reason"] for f in report["files"] if f["status"] == "failed"}
    assert "its Pixel Data has 256 bytes" in failed["huge.dcm"]
    assert "(256 bytes of pixel data) but its Pixel Data has 0 bytes" in failed["empty.dcm"]
    assert not (out / "empty.dcm").exists()


def _run_folder(root: Path, config: str) -> Path:
    run = root / "run"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(config)
    return run


def test_evaluate_checkpoint_must_be_best_or_last(tmp_path: Path) -> None:
    run = _run_folder(tmp_path, "{}\n")
    assert one_error(["evaluate", str(run), "--checkpoint", "x"]) == (
        "error: --checkpoint must be best or last, got 'x'")


def test_a_runs_config_goes_through_the_limited_reader_everywhere(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    rows = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    rows += [f"{n}: &{n} [" + ", ".join([f"*{p}"] * 10) + "]" for p, n in zip("abcdefgh", "bcdefghi",
                                                                             strict=True)]
    run = _run_folder(tmp_path, "\n".join(rows) + "\n")  # 10^9 values once expanded
    config = run / "config.yaml"
    start = time.perf_counter()
    predict = ["predict", str(run), str(tmp_path), "--out", str(tmp_path / "o")]
    for command in (["evaluate", str(run)], predict):
        line = one_error(command)
        assert line.startswith(f"error: {config}: more than 100000 values after expanding aliases"), line
    config.write_text("train: {batch_size: 0}\n")
    assert one_error(["evaluate", str(run)]) == f"error: {config}: train.batch_size must be >= 1, got 0"
    config.write_text("train: " + "[" * 5000 + "]" * 5000 + "\n")
    monkeypatch.chdir(tmp_path)  # short paths: the log handler wraps lines at 80 columns here
    result = runner.invoke(app, ["report", "run"])  # the report notes it and goes on
    assert result.exit_code == 0, result.output
    assert "run/config.yaml: YAML nested too deeply; refused (configuration not shown)" in " ".join(
        result.output.split())
    assert "YAML nested too deeply" in (run / "report.html").read_text()
    assert time.perf_counter() - start < 30


def test_report_warns_about_bad_log_lines_and_builds_from_the_good_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _run_folder(tmp_path, "{}\n")
    good = [{"kind": "train", "epoch": 0, "step": s, "loss": 1.0 / s, "lr": 0.01} for s in (1, 2)]
    lines = [json.dumps(good[0]), '{"kind": "train", "step": NaN}', "", "[1, 2]", json.dumps(good[1]),
             "{broken"]
    (run / "log.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path)  # short paths: the log handler wraps lines at 80 columns here
    result = runner.invoke(app, ["report", "run"])
    assert result.exit_code == 0, result.output
    warning = ("run/log.jsonl: 3 of 5 lines skipped, not valid log entries (strict JSON objects "
               "with a kind): lines 2, 4, 6")
    assert warning in " ".join(result.output.split())
    from spinekit.reports.run_files import read_run_files

    assert [e["step"] for e in read_run_files(run).train] == [1, 2]


def test_run_log_is_strict_json_and_resume_drops_a_half_written_line(tmp_path: Path) -> None:
    from spinekit.engine.runlog import RunLog
    from spinekit.io.jsonfile import parse_json

    path = tmp_path / "log.jsonl"
    RunLog(path).write({"kind": "train", "step": 1, "loss": float("nan")})
    assert parse_json(path.read_text().strip(), path) == {"kind": "train", "step": 1, "loss": None}
    path.write_text(path.read_text() + '{"kind": "train", "step": 2}\n{"kind": "tr')
    RunLog(path, keep_until_step=1)
    assert path.read_text() == '{"kind": "train", "step": 1, "loss": null}\n'
