"""Hostile cases for evaluate, predict, measure, report and compare (see :mod:`hostile_inputs`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hostile_commands import DS_OUT, _nothing
from hostile_fixtures import deep, dicom, png, strict_json_problem, write
from hostile_inputs import Case

PRED_OUT = (*DS_OUT, "metrics.json")
RUN_OUT = ("run/metrics.json", "run/report.html", "run/report", "run/predictions", "run/eval", "out")


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


def alias_bomb(levels: int = 9, width: int = 10) -> str:
    """A "billion laughs" YAML document: ``width ** levels`` values once its aliases are expanded."""
    lines = [f"a0: &a0 [{', '.join(['x'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def report_warned(*tokens: str) -> Callable[[Path, str], str | None]:
    """Exit 0 of ``report`` is fine when ``run/report.html`` was written and one WARNING on screen
    holds every one of ``tokens`` (naming the bad file and what was skipped; the logger may
    wrap a long warning over lines, so whitespace is collapsed)."""

    def check(d: Path, output: str) -> str | None:
        if not (d / "run" / "report.html").is_file():
            return "exit 0 but no report.html"
        warnings = " ".join(output.split()).split("WARNING")[1:]
        if any(all(t in w for t in tokens) for w in warnings):
            return None
        return f"no warning with {tokens} on screen"

    return check


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
                outputs=PRED_OUT,
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
            outputs=PRED_OUT,
        ),
        Case(
            "evaluate-split-bogus",
            "bad option",
            ["evaluate", "--predictions", "pred.json", "--data", "ds", "--split", "bogus"],
            _results(lambda items: None),
            ("split", "bogus"),
            needs=("ds",),
            outputs=PRED_OUT,
        ),
        Case(
            "evaluate-fold-99",
            "bad option",
            ["evaluate", "--predictions", "pred.json", "--data", "ds", "--split", "val", "--fold", "99"],
            _results(lambda items: None),
            ("fold",),
            needs=("ds",),
            outputs=PRED_OUT,
        ),
        Case(
            "evaluate-joint-rule-bad",
            "bad option",
            ["evaluate", "--predictions", "pred.json", "--data", "ds", "--joint-rule", "X"],
            _results(lambda items: None),
            ("joint-rule", "joint_rule", "X"),
            needs=("ds",),
            outputs=PRED_OUT,
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
            lambda d: write(d / "run" / "config.yaml", alias_bomb()),
            ("config.yaml",),
        ),
        run(
            "evaluate-config-deep",
            "deep YAML nesting",
            ["evaluate", "run", "--data", "ds"],
            lambda d: write(d / "run" / "config.yaml", "train: " + "[" * 5000 + "]" * 5000 + "\n"),
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
            lambda d: write(
                d / "run" / "log.jsonl",
                '{"kind": "train", "epoch": 0, "step": 1, "loss": 0.5}\n'
                '{"kind": "train", "step": NaN}\n{broken\n',
            ),
            ("log.jsonl",),
            ok=report_warned("log.jsonl: 2 of 3 lines skipped", "lines 2, 3"),
        ),
        run(
            "report-config-bomb",
            "YAML alias bomb",
            ["report", "run", "--data", "ds"],
            lambda d: write(d / "run" / "config.yaml", alias_bomb()),
            ("config.yaml",),
            ok=report_warned("config.yaml", "alias"),
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
        return Case(f"compare-{name}", kind, args, setup, names, needs=("ds",), outputs=PRED_OUT, fast=fast)

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
        case(
            "set-lr-inf",
            "lr inf",
            ["--models", "maskrcnn_light", "--folds", "2", "--set", "optim.lr=inf"],
            ("lr",),
        ),
    ]


def model_cases() -> list[Case]:
    """Every case on results files, runs and studies."""
    return [*results_cases(), *run_cases(), *compare_cases()]
