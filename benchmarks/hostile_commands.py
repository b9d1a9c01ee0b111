"""Hostile cases for the commands after ingest: clean, split, export, deidentify, train,
evaluate, predict, measure, report, compare (see :mod:`hostile_inputs`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hostile_fixtures import deep, dicom, png, strict_json_problem, write
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


def _results(change: Callable[[list[dict[str, Any]]], Any] | str) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        seg = {"size": [48, 64], "counts": "Sc03m00000000000000000000ST0"}
        items = [
            {"image_id": 1, "category_id": 1, "bbox": [10, 10, 10, 8], "score": 0.9, "segmentation": seg},
            {"image_id": 1, "category_id": 2, "bbox": [30, 30, 20, 10], "score": 0.8, "segmentation": seg},
        ]
        if isinstance(change, str):
            write(d / "pred.json", change)
            return
        out = change(items)
        write(d / "pred.json", items if out is None else out)

    return setup


def results_cases() -> list[Case]:
    def each(**kw: Any) -> Callable[[list[dict[str, Any]]], None]:
        return lambda items: [item.update(kw) for item in items] and None

    def drop(key: str) -> Callable[[list[dict[str, Any]]], None]:
        return lambda items: [item.pop(key) for item in items] and None

    def strict_out(d: Path, output: str) -> str | None:
        bad = strict_json_problem(d / "out") or strict_json_problem(d / "ds")
        return f"non-strict JSON written: {bad}" if bad else None

    variants: list[tuple[str, str, Any, tuple[str, ...], Any]] = [
        ("box-only", "box-only results", drop("segmentation"), ("pred.json", "segmentation"), strict_out),
        (
            "nan-score",
            "NaN/Infinity in JSON",
            '[{"image_id": 1, "category_id": 1, "bbox": [1,1,2,2], "score": NaN}]',
            ("pred.json", "score"),
            None,
        ),
        (
            "unknown-category",
            "unknown categories in measure",
            each(category_id=99),
            ("pred.json", "category"),
            None,
        ),
        ("unknown-image", "datasets missing fields", each(image_id=999), ("pred.json", "image"), None),
        ("not-list", "wrong field types", '{"a": 1}', ("pred.json",), None),
        ("deep", "deep JSON nesting", deep(), ("pred.json",), None),
        (
            "rle-garbage",
            "malformed RLE",
            each(segmentation={"size": [48, 64], "counts": "\x00\x01~~~"}),
            ("pred.json", "segmentation", "rle"),
            None,
        ),
        (
            "rle-wrong-size",
            "RLE wrong size",
            each(segmentation={"size": [10, 10], "counts": [0, 100]}),
            ("pred.json", "segmentation", "size"),
            None,
        ),
        (
            "bbox-inf",
            "huge numbers/Infinity sizes",
            '[{"image_id": 1, "category_id": 1, "bbox": [1, 1, Infinity, 2], "score": 0.5}]',
            ("pred.json", "bbox"),
            None,
        ),
        ("score-string", "wrong field types", each(score="high"), ("pred.json", "score"), None),
        ("truncated", "broken JSON", '[{"image_id": 1', ("pred.json",), None),
    ]
    cases: list[Case] = []
    for name, kind, change, names, ok in variants:
        cases.append(
            Case(
                f"evaluate-pred-{name}",
                kind,
                ["evaluate", "--predictions", "pred.json", "--data", "ds", "--split", "all"],
                _results(change),
                names,
                needs=("ds",),
                outputs=(*DS_OUT, "pred.metrics.json"),
                ok=ok,
            )
        )
        cases.append(
            Case(
                f"measure-pred-{name}",
                kind,
                ["measure", "ds", "--predictions", "pred.json", "--out", "out/m.csv"],
                _results(change),
                names,
                needs=("ds",),
                outputs=("out",),
                ok=ok,
            )
        )
    cases += [
        Case(
            "evaluate-score-nan",
            "NaN --score-threshold",
            ["evaluate", "--predictions", "pred.json", "--data", "ds", "--score-threshold", "nan"],
            _results(lambda items: None),
            ("score-threshold", "score_threshold"),
            needs=("ds",),
            outputs=DS_OUT,
        ),
        Case(
            "evaluate-split-bogus",
            "bad option",
            ["evaluate", "--predictions", "pred.json", "--data", "ds", "--split", "bogus"],
            _results(lambda items: None),
            ("split", "bogus"),
            needs=("ds",),
            outputs=DS_OUT,
        ),
        Case(
            "evaluate-fold-99",
            "bad option",
            ["evaluate", "--predictions", "pred.json", "--data", "ds", "--split", "val", "--fold", "99"],
            _results(lambda items: None),
            ("fold",),
            needs=("ds",),
            outputs=DS_OUT,
        ),
        Case(
            "evaluate-joint-rule-bad",
            "bad option",
            ["evaluate", "--predictions", "pred.json", "--data", "ds", "--joint-rule", "X"],
            _results(lambda items: None),
            ("joint-rule", "joint_rule", "X"),
            needs=("ds",),
            outputs=DS_OUT,
        ),
        Case(
            "measure-view-bogus",
            "bad option",
            ["measure", "ds", "--out", "out/m.csv", "--view", "bogus"],
            _nothing,
            ("view", "bogus"),
            needs=("ds",),
        ),
        Case(
            "measure-workers-zero",
            "negative limits",
            ["measure", "ds", "--out", "out/m.csv", "--workers", "0"],
            _nothing,
            ("workers",),
            needs=("ds",),
        ),
        Case(
            "measure-score-nan",
            "NaN --score-threshold",
            ["measure", "ds", "--out", "out/m.csv", "--score-threshold", "nan"],
            _nothing,
            ("score-threshold", "score_threshold"),
            needs=("ds",),
        ),
    ]
    return cases


def run_cases() -> list[Case]:
    """Cases on a trained run (the ``run`` base: 1 training step)."""

    def zero_ckpt(d: Path) -> None:
        for name in ("best.pt", "last.pt"):
            (d / "run" / "checkpoints" / name).unlink()
            write(d / "run" / "checkpoints" / name, b"")

    def garbage_ckpt(d: Path) -> None:
        for name in ("best.pt", "last.pt"):
            (d / "run" / "checkpoints" / name).unlink()
            write(d / "run" / "checkpoints" / name, b"PK\x03\x04garbage" * 50)

    def run(
        name: str,
        kind: str,
        args: list[str],
        setup: Callable[[Path], Any],
        names: tuple[str, ...],
        needs: tuple[str, ...] = ("run", "ds"),
        ok: Any = None,
    ) -> Case:
        return Case(name, kind, args, lambda d: setup(d) and None, names, needs=needs, outputs=RUN_OUT, ok=ok)

    def fixed_run_ds(d: Path) -> None:
        """Point the run at this case's dataset copy."""
        for name in ("dataset.json",):
            path = d / "run" / name
            if path.is_file():
                doc = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(doc, dict):
                    for key in doc:
                        if key in ("dataset", "root", "path"):
                            doc[key] = str(d / "ds")
                    write(path, doc)

    img = ["ds/images/P000_F000.png"]
    cases = [
        run(
            "evaluate-ckpt-zero",
            "0-byte checkpoint",
            ["evaluate", "run", "--data", "ds"],
            zero_ckpt,
            ("best.pt", "checkpoint"),
        ),
        run(
            "evaluate-ckpt-garbage",
            "0-byte checkpoint",
            ["evaluate", "run", "--data", "ds"],
            garbage_ckpt,
            ("best.pt", "checkpoint"),
        ),
        run(
            "evaluate-checkpoint-bogus",
            "bad option",
            ["evaluate", "run", "--data", "ds", "--checkpoint", "x"],
            fixed_run_ds,
            ("checkpoint", "x"),
        ),
        run(
            "evaluate-no-config",
            "datasets missing fields",
            ["evaluate", "run", "--data", "ds"],
            lambda d: (d / "run" / "config.yaml").unlink(),
            ("config.yaml", "run"),
        ),
        run(
            "evaluate-config-bomb",
            "YAML alias bomb",
            ["evaluate", "run", "--data", "ds"],
            lambda d: write(
                d / "run" / "config.yaml",
                "a: &a [x, x]\nb: " + "[*a, " * 1 + "*a]\n" + "c: " + "[" * 5000 + "]" * 5000 + "\n",
            ),
            ("config.yaml",),
        ),
        run(
            "predict-ckpt-zero",
            "0-byte checkpoint",
            ["predict", "run", *img, "--out", "out"],
            zero_ckpt,
            ("best.pt", "checkpoint"),
        ),
        run(
            "predict-input-zero",
            "broken file",
            ["predict", "run", "z.png", "--out", "out"],
            lambda d: write(d / "z.png", b""),
            ("z.png",),
            ok=lambda d, o: None if "z.png" in o else "0-byte input skipped without a word",
        ),
        run(
            "predict-input-missing",
            "missing files",
            ["predict", "run", "nope.png", "--out", "out"],
            _nothing,
            ("nope.png",),
        ),
        run(
            "predict-dicom-1e9",
            "DICOM claiming 10^9 frames",
            ["predict", "run", "f.dcm", "--out", "out"],
            lambda d: dicom(d / "f.dcm", frames_claimed=10**9),
            ("f.dcm",),
            ok=lambda d, o: None if "f.dcm" in o else "10^9-frame DICOM passed without a word",
        ),
        run(
            "predict-format-bogus",
            "bad option",
            ["predict", "run", *img, "--out", "out", "--format", "bogus"],
            _nothing,
            ("format", "bogus"),
        ),
        run(
            "predict-score-nan",
            "NaN --score-threshold",
            ["predict", "run", *img, "--out", "out", "--score-threshold", "nan"],
            _nothing,
            ("score-threshold", "score_threshold"),
        ),
        run(
            "predict-batch-zero",
            "batch_size 0",
            ["predict", "run", *img, "--out", "out", "--batch-size", "0"],
            _nothing,
            ("batch-size", "batch_size"),
        ),
        run(
            "predict-latin1-input",
            "Latin-1 file names",
            ["predict", "run", "in", "--out", "out"],
            lambda d: png(Path(str(d / "in") + "/" + "caf\udce9.png")),
            ("caf",),
            ok=lambda d, o: None if list((d / "out").rglob("*.json")) else "nothing written",
        ),
        run(
            "report-log-garbage",
            "broken JSON",
            ["report", "run", "--data", "ds"],
            lambda d: write(d / "run" / "log.jsonl", '{"step": NaN}\n{broken\n'),
            ("log.jsonl",),
            ok=lambda d, o: None if "log.jsonl" in o else "broken log.jsonl lines went by silently",
        ),
        run(
            "report-max-overlays-negative",
            "negative limits",
            ["report", "run", "--max-overlays", "-1"],
            _nothing,
            ("max-overlays", "max_overlays"),
        ),
        run("report-run-missing", "missing files", ["report", "nope"], _nothing, ("nope",), needs=()),
    ]
    return cases


def compare_cases() -> list[Case]:
    def case(
        name: str,
        kind: str,
        extra: list[str],
        names: tuple[str, ...],
        fast: bool = False,
        setup: Callable[[Path], None] = _nothing,
    ) -> Case:
        args = ["compare", "ds", "--out", "out", *extra]
        return Case(f"compare-{name}", kind, args, setup, names, needs=("ds",), outputs=DS_OUT, fast=fast)

    return [
        case(
            "models-bogus",
            "bad option",
            ["--models", "nosuch,maskrcnn_light", "--folds", "2"],
            ("nosuch", "models"),
        ),
        case("folds-one", "negative limits", ["--models", "maskrcnn_light", "--folds", "1"], ("folds",)),
        case(
            "ablation-bad-value",
            "bad option",
            ["--ablation", "flip=maybe", "--folds", "2"],
            ("ablation", "flip", "maybe"),
        ),
        case(
            "ablation-unknown",
            "bad option",
            ["--ablation", "bogus=on,off", "--folds", "2"],
            ("ablation", "bogus"),
        ),
        case("datasets-malformed", "bad option", ["--datasets", "x", "--folds", "2"], ("datasets", "x")),
        case(
            "fraction-nan",
            "NaN options",
            ["--models", "maskrcnn_light", "--test-fraction", "nan"],
            ("test-fraction", "test fraction", "test_fraction"),
        ),
        case(
            "score-nan",
            "NaN --score-threshold",
            ["--models", "maskrcnn_light", "--score-threshold", "nan"],
            ("score-threshold", "score_threshold"),
        ),
        case(
            "iou-two",
            "huge numbers",
            ["--models", "maskrcnn_light", "--iou-threshold", "2"],
            ("iou-threshold", "iou_threshold"),
        ),
        case(
            "config-folder",
            "config path is a folder",
            ["--models", "maskrcnn_light", "--config", "cfg"],
            ("cfg",),
            setup=lambda d: (d / "cfg").mkdir() and None,
        ),
        case("set-lr-inf", "lr inf", ["--models", "maskrcnn_light", "--set", "optim.lr=inf"], ("lr",)),
    ]


def command_cases() -> list[Case]:
    """Every case after ingest."""
    return [*dataset_cases(), *deid_cases(), *train_cases(), *results_cases(), *run_cases(), *compare_cases()]
