"""Hostile cases for the commands after ingest: clean, split, export, deidentify, train,
evaluate, predict, measure, report, compare (see :mod:`hostile_inputs`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hostile_fixtures import deep, dicom, png, write
from hostile_inputs import Case

DS_OUT = ("ds/cleaning_report.json", "ds/splits.json", "out")
RUN_OUT = ("run/metrics.json", "run/report.html", "run/report", "run/predictions", "run/eval", "out")


def _edit_ds(change: Callable[[dict[str, Any]], Any] | str) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        path = d / "ds" / "annotations.json"
        if isinstance(change, str):
            write(path, change)
            return
        doc = json.loads(path.read_text(encoding="utf-8"))
        out = change(doc)
        write(path, doc if out is None else out)

    return setup


def _ds_case(
    command: str,
    name: str,
    kind: str,
    extra: list[str],
    setup: Callable[[Path], None],
    names: tuple[str, ...],
    fast: bool = False,
    ok: Any = None,
) -> Case:
    return Case(
        f"{command}-{name}",
        kind,
        [command, "ds", *extra],
        setup,
        names,
        outputs=DS_OUT,
        needs=("ds",),
        fast=fast,
        ok=ok,
    )


def _nothing(d: Path) -> None:
    return None


def dataset_cases() -> list[Case]:
    ann_nan = _edit_ds(lambda doc: doc["annotations"][0].update(bbox=[float("nan")] * 4))
    edits: list[tuple[str, str, Callable[[Path], None], tuple[str, ...]]] = [
        ("nan", "NaN/Infinity in JSON", ann_nan, ("annotations.json",)),
        ("deep", "deep JSON nesting", _edit_ds('{"images": ' + deep() + "}"), ("annotations.json",)),
        (
            "no-images",
            "datasets missing fields",
            _edit_ds(lambda doc: doc.pop("images")),
            ("annotations.json", "images"),
        ),
        (
            "image-no-id",
            "datasets missing fields",
            _edit_ds(lambda doc: doc["images"][0].pop("id")),
            ("annotations.json", "id"),
        ),
        (
            "ann-no-image-id",
            "datasets missing fields",
            _edit_ds(lambda doc: doc["annotations"][0].pop("image_id")),
            ("annotations.json", "image_id"),
        ),
        (
            "ann-no-segmentation",
            "datasets missing fields",
            _edit_ds(lambda doc: doc["annotations"][0].pop("segmentation")),
            ("annotations.json", "segmentation"),
        ),
        (
            "dup-image-ids",
            "duplicate ids",
            _edit_ds(lambda doc: doc["images"][1].update(id=1)),
            ("annotations.json", "duplicate"),
        ),
        ("truncated", "broken JSON", _edit_ds('{"images": ['), ("annotations.json",)),
        (
            "patient-list",
            "wrong field types",
            _edit_ds(lambda doc: doc["images"][0].update(patient_id=[1])),
            ("annotations.json", "patient_id"),
        ),
    ]
    cases: list[Case] = []
    for command, extra in (
        ("clean", []),
        ("split", ["--folds", "2", "--test-fraction", "0.34"]),
        ("export", ["--format", "coco", "--out", "out"]),
    ):
        for name, kind, setup, names in edits:
            ok = _clean_reports if command == "clean" else None
            cases.append(
                _ds_case(
                    command,
                    name,
                    kind,
                    extra,
                    setup,
                    names,
                    ok=ok,
                    fast=name in ("deep", "no-images", "truncated"),
                )
            )
    cases += [
        _ds_case(
            "clean",
            "bad-regex",
            "bad regex",
            ["--name-pattern", "(x"],
            _nothing,
            ("name-pattern", "name_pattern"),
            fast=True,
        ),
        _ds_case(
            "clean",
            "outlier-nan",
            "NaN options",
            ["--outlier-z", "nan"],
            _nothing,
            ("outlier-z", "outlier_z"),
            fast=True,
        ),
        _ds_case(
            "clean",
            "outlier-negative",
            "negative limits",
            ["--outlier-z", "-1"],
            _nothing,
            ("outlier-z", "outlier_z"),
        ),
        _ds_case(
            "clean",
            "exclude-bogus",
            "bad option",
            ["--exclude", "bogus"],
            _nothing,
            ("bogus", "exclude"),
            fast=True,
        ),
        _ds_case("clean", "show-negative", "negative limits", ["--show", "-1"], _nothing, ("--show", "show")),
        _ds_case(
            "clean",
            "ingest-report-broken",
            "broken JSON",
            [],
            lambda d: write(d / "ds" / "ingest_report.json", "{"),
            ("ingest_report.json",),
        ),
        Case("clean-missing-folder", "missing files", ["clean", "nope"], _nothing, ("nope",), fast=True),
        _ds_case(
            "split",
            "fraction-nan",
            "NaN options",
            ["--test-fraction", "nan"],
            _nothing,
            ("test-fraction", "test fraction", "test_fraction"),
            fast=True,
        ),
        _ds_case(
            "split",
            "fraction-big",
            "huge numbers",
            ["--test-fraction", "1.5"],
            _nothing,
            ("test-fraction", "test fraction", "test_fraction"),
        ),
        _ds_case("split", "folds-zero", "negative limits", ["--folds", "0"], _nothing, ("folds",), fast=True),
        _ds_case(
            "split", "folds-huge", "huge numbers", ["--folds", "1000000"], _nothing, ("folds", "patients")
        ),
        _ds_case(
            "split",
            "seed-negative",
            "negative limits",
            ["--seed", "-1"],
            _nothing,
            ("seed",),
            ok=lambda d, o: None,
        ),
        _ds_case("split", "seed-huge", "huge numbers", ["--seed", "9" * 30], _nothing, ("seed",)),
        _ds_case(
            "split",
            "cleaning-report-bad",
            "wrong field types",
            ["--folds", "2"],
            lambda d: write(
                d / "ds" / "cleaning_report.json", {"excluded_images": "x", "excluded_annotations": []}
            ),
            ("cleaning_report.json",),
            fast=True,
        ),
        _ds_case(
            "split",
            "dup-groups-bad",
            "wrong field types",
            ["--folds", "2"],
            lambda d: write(
                d / "ds" / "cleaning_report.json",
                {"excluded_images": [], "excluded_annotations": [], "duplicate_groups": [5]},
            ),
            ("cleaning_report.json",),
            fast=True,
        ),
        _ds_case(
            "export",
            "format-bogus",
            "bad option",
            ["--format", "bogus", "--out", "out"],
            _nothing,
            ("format", "bogus"),
            fast=True,
        ),
        _ds_case(
            "export",
            "out-is-file",
            "bad option",
            ["--format", "coco", "--out", "afile"],
            lambda d: write(d / "afile", "x"),
            ("afile",),
        ),
        _ds_case(
            "export",
            "same-names-labelme",
            "same-named images on export",
            ["--format", "labelme", "--out", "out"],
            _same_names,
            ("P000_F000",),
            ok=_both_exported,
        ),
        _ds_case(
            "export",
            "same-names-coco",
            "same-named images on export",
            ["--format", "coco", "--out", "out"],
            _same_names,
            ("P000_F000",),
            ok=_both_exported,
        ),
    ]
    return cases


def _clean_reports(d: Path, output: str) -> str | None:
    return "clean accepted a broken annotations.json (exit 0)"


def _same_names(d: Path) -> None:
    """Two images with the same base name in different folders."""
    images = d / "ds" / "images"
    (images / "a").mkdir()
    (images / "b").mkdir()
    (images / "P000_F000.png").rename(images / "a" / "P000_F000.png")
    png(images / "b" / "P000_F000.png", seed=9)
    path = d / "ds" / "annotations.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["images"][0]["file_name"] = "images/a/P000_F000.png"
    doc["images"][1]["file_name"] = "images/b/P000_F000.png"
    (images / "P000_F001.png").unlink()
    write(path, doc)


def _both_exported(d: Path, output: str) -> str | None:
    files = [
        p for p in (d / "out").rglob("*") if p.is_file() and "P000_F000" in p.name and p.suffix != ".json"
    ]
    return None if len(files) >= 2 else f"{len(files)} of 2 same-named images exported"


def deid_cases() -> list[Case]:
    def case(
        name: str,
        kind: str,
        setup: Callable[[Path], Any],
        names: tuple[str, ...],
        extra: list[str] | None = None,
        fast: bool = False,
        ok: Any = None,
    ) -> Case:
        args = ["deidentify", "src", "--out", "out", "--salt", "s3cret", *(extra or [])]
        return Case(
            f"deidentify-{name}", kind, args, lambda d: setup(d / "src") and None, names, fast=fast, ok=ok
        )

    def refused(token: str) -> Any:
        def check(d: Path, output: str) -> str | None:
            written = [p.name for p in (d / "out").rglob("*") if p.is_file() and token in p.name]
            return (
                f"{token} written although unreadable"
                if written
                else (None if token in output else f"{token} skipped without a word")
            )

        return check

    return [
        case(
            "zero-byte",
            "broken file",
            lambda s: write(s / "z.dcm", b""),
            ("z.dcm",),
            fast=True,
            ok=refused("z.dcm"),
        ),
        case(
            "nested",
            "deeply nested DICOM sequences",
            lambda s: dicom(s / "n.dcm", nested=3000),
            ("n.dcm",),
            ok=refused("n.dcm"),
        ),
        case(
            "1e9-frames",
            "DICOM claiming 10^9 frames",
            lambda s: dicom(s / "f.dcm", frames_claimed=10**9),
            ("f.dcm",),
            ok=refused("f.dcm"),
        ),
        case(
            "truncated",
            "broken file",
            lambda s: write(s / "t.dcm", dicom(s / "x.dcm").read_bytes()[:400]) or (s / "x.dcm").unlink(),
            ("t.dcm",),
            ok=refused("t.dcm"),
        ),
        case(
            "header-fraction-nan",
            "NaN options",
            lambda s: dicom(s / "a.dcm"),
            ("header-fraction", "header_fraction"),
            extra=["--header-fraction", "nan"],
            fast=True,
        ),
        case(
            "header-fraction-big",
            "huge numbers",
            lambda s: dicom(s / "a.dcm"),
            ("header-fraction", "header_fraction"),
            extra=["--header-fraction", "2"],
        ),
        case(
            "box-garbage",
            "bad option",
            lambda s: dicom(s / "a.dcm"),
            ("--box", "box"),
            extra=["--box", "a,b"],
            fast=True,
        ),
        case(
            "box-huge",
            "huge numbers",
            lambda s: dicom(s / "a.dcm"),
            ("--box", "box"),
            extra=["--box", "0,0,1e308,1e308"],
        ),
        Case(
            "deidentify-empty-salt",
            "bad option",
            ["deidentify", "src", "--out", "out", "--salt", ""],
            lambda d: dicom(d / "src" / "a.dcm") and None,
            ("salt",),
            fast=True,
        ),
        Case(
            "deidentify-out-in-src",
            "bad option",
            ["deidentify", "src", "--out", "src/o", "--salt", "x"],
            lambda d: dicom(d / "src" / "a.dcm") and None,
            ("src", "out"),
            outputs=("src/o",),
        ),
        Case(
            "deidentify-src-missing",
            "missing files",
            ["deidentify", "nope", "--out", "out", "--salt", "x"],
            _nothing,
            ("nope",),
            fast=True,
        ),
    ]


def _set_case(
    name: str,
    kind: str,
    sets: list[str],
    names: tuple[str, ...],
    fast: bool = False,
    setup: Callable[[Path], None] = _nothing,
    extra: list[str] | None = None,
) -> Case:
    args = [
        "train",
        "ds",
        "--out",
        "out",
        "--set",
        "train.max_steps=1",
        "--set",
        "data.size=[64,64]",
        "--set",
        "data.workers=0",
    ]
    for s in sets:
        args += ["--set", s]
    return Case(
        f"train-{name}",
        kind,
        [*args, *(extra or [])],
        setup,
        names,
        needs=("ds",),
        fast=fast,
        outputs=("out",),
    )


def train_cases() -> list[Case]:
    alias_bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
    cases = [
        _set_case("lr-inf", "lr inf", ["optim.lr=inf"], ("optim.lr", "lr")),
        _set_case("lr-nan", "NaN options", ["optim.lr=nan"], ("optim.lr", "lr")),
        _set_case("lr-negative", "negative limits", ["optim.lr=-1"], ("optim.lr", "lr")),
        _set_case("batch-zero", "batch_size 0", ["train.batch_size=0"], ("batch_size",)),
        _set_case("batch-abc", "wrong field types", ["train.batch_size=abc"], ("batch_size",)),
        _set_case("steps-negative", "negative steps", ["train.max_steps=-1"], ("max_steps",)),
        _set_case("epochs-negative", "negative steps", ["train.epochs=-5"], ("epochs",)),
        _set_case("epochs-huge", "huge numbers", ["train.epochs=" + "9" * 40], ("epochs",)),
        _set_case("size-zero", "huge numbers/Infinity sizes", ["data.size=[0,0]"], ("data.size", "size")),
        _set_case(
            "size-huge", "huge numbers/Infinity sizes", ["data.size=[100000,100000]"], ("data.size", "size")
        ),
        _set_case("fold-99", "bad option", ["data.fold=99"], ("fold",)),
        _set_case("workers-negative", "negative limits", ["data.workers=-1"], ("workers",)),
        _set_case("time-limit-nan", "NaN options", ["train.time_limit_s=nan"], ("time_limit_s",)),
        _set_case(
            "score-threshold-nan", "NaN --score-threshold", ["eval.score_threshold=nan"], ("score_threshold",)
        ),
        _set_case("unknown-key", "bad option", ["train.bogus=1"], ("bogus",)),
        _set_case("unknown-section", "bad option", ["bogus.key=1"], ("bogus",)),
        _set_case("no-equals", "bad option", ["optim.lr"], ("optim.lr", "--set")),
        _set_case("flip-prob-2", "huge numbers", ["data.flip_prob=2"], ("flip_prob",)),
        _set_case("grad-clip-inf", "lr inf", ["optim.grad_clip=inf"], ("grad_clip",)),
        _set_case("warmup-negative", "negative steps", ["optim.warmup_steps=-3"], ("warmup_steps",)),
        _set_case(
            "model-bogus", "bad option", [], ("nosuch", "model"), extra=["--model", "nosuch"], fast=False
        ),
        _set_case("device-tpu", "bad option", [], ("tpu", "device"), extra=["--device", "tpu"]),
        _set_case(
            "config-folder",
            "config path is a folder",
            [],
            ("cfg",),
            extra=["--config", "cfg"],
            setup=lambda d: (d / "cfg").mkdir() and None,
        ),
        _set_case("config-missing", "missing files", [], ("nope.yaml",), extra=["--config", "nope.yaml"]),
        _set_case(
            "config-alias-bomb",
            "YAML alias bomb",
            [],
            ("bomb.yaml",),
            extra=["--config", "bomb.yaml"],
            setup=lambda d: write(d / "bomb.yaml", alias_bomb),
        ),
        _set_case(
            "config-list",
            "wrong field types",
            [],
            ("c.yaml",),
            extra=["--config", "c.yaml"],
            setup=lambda d: write(d / "c.yaml", "- 1\n- 2\n"),
        ),
        _set_case(
            "config-deep",
            "deep YAML nesting",
            [],
            ("c.yaml",),
            extra=["--config", "c.yaml"],
            setup=lambda d: write(d / "c.yaml", "a: " + "[" * 10000 + "]" * 10000 + "\n"),
        ),
        _set_case(
            "config-nan",
            "NaN options",
            [],
            ("c.yaml", "lr"),
            extra=["--config", "c.yaml"],
            setup=lambda d: write(d / "c.yaml", "optim:\n  lr: .nan\n"),
        ),
        _set_case(
            "config-binary",
            "broken file",
            [],
            ("c.yaml",),
            extra=["--config", "c.yaml"],
            setup=lambda d: write(d / "c.yaml", b"\x00\xff\xfe\x00"),
        ),
        Case(
            "train-no-splits",
            "datasets missing fields",
            ["train", "ds", "--out", "out"],
            lambda d: (d / "ds" / "splits.json").unlink(),
            ("splits.json", "split"),
            needs=("ds",),
        ),
    ]
    return cases


def command_cases() -> list[Case]:
    """Every case after ingest."""
    return [*dataset_cases(), *deid_cases(), *train_cases()]
