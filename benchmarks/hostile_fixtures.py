"""Helpers of the hostile-input corpus: tiny valid inputs, DICOM writer, checks, base artefacts."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hostile_inputs import SPINEKIT, Check

Json = Any
LONG = "x" * 245  # + ".json" / ".png": near NAME_MAX (255)
LATIN1 = b"caf\xe9"  # not UTF-8
SHARED_AASCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "aasce"


# ---------------------------------------------------------------- helpers


def png(path: Path, seed: int = 0, size: tuple[int, int] = (64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8)).save(path)
    return path


def labelme_doc(image: str, shapes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    shapes = (
        shapes
        if shapes is not None
        else [
            {
                "label": "F",
                "points": [[10, 10], [20, 10], [20, 18], [10, 18]],
                "group_id": None,
                "shape_type": "polygon",
                "flags": {},
            }
        ]
    )
    return {
        "version": "5.5.0",
        "flags": {},
        "shapes": shapes,
        "imagePath": image,
        "imageData": None,
        "imageWidth": 64,
        "imageHeight": 48,
    }


def write(path: Path, content: str | bytes | Json) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_text(json.dumps(content), encoding="utf-8")


def deep(n: int = 100_000) -> str:
    return "[" * n + "]" * n


def dicom(path: Path, frames_claimed: int | None = None, nested: int = 0, **attrs: Any) -> Path:
    """A small MONOCHROME2 Secondary Capture file; optionally lying about its frames or
    carrying ``nested`` levels of sequences."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = "P001", "Doe^Jane", "OT"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 48, 64, 1
    ds.PhotometricInterpretation, ds.BitsAllocated, ds.BitsStored = "MONOCHROME2", 8, 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = np.random.default_rng(0).integers(0, 256, (48, 64), dtype=np.uint8).tobytes()
    if frames_claimed is not None:
        ds.NumberOfFrames = frames_claimed
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    if nested:  # appended by hand: pydicom's writer itself recurses per level
        with path.open("ab") as f:
            f.write(nested_sequence(nested))
    return path


def nested_sequence(levels: int) -> bytes:
    """Digital Signatures Sequence (FFFA,FFFA), the last tag, nested ``levels`` deep
    (explicit VR little endian, undefined lengths)."""
    start = b"\xfa\xff\xfa\xffSQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    end = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    return start * levels + end * levels


def strict_json_problem(folder: Path) -> str | None:
    """The first JSON file under ``folder`` that is not strict JSON (NaN, Infinity), if any."""

    def refuse(token: str) -> None:
        raise ValueError(f"{token} in JSON")

    for path in sorted(folder.rglob("*.json")) if folder.is_dir() else []:
        try:
            json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)
        except ValueError as exc:
            return f"{path.name}: {exc}"
    return None


def reported(*tokens: str, report: str = "out/ingest_report.json") -> Check:
    """Exit 0 is fine when ``report`` mentions one of ``tokens`` (skipped or warned) and every
    JSON output is strict."""

    def check(case_dir: Path, output: str) -> str | None:
        bad = strict_json_problem(case_dir / "out")
        if bad:
            return f"non-strict JSON written: {bad}"
        path = case_dir / report
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        if any(t.lower() in (text + output).lower() for t in tokens):
            return None
        return f"exit 0 and nothing about {tokens[0]!r} in {Path(report).name} or on screen"

    return check


def flagged(file: str, field: str, report: str = "out/ingest_report.json") -> Check:
    """Exit 0 is fine only when ``report`` lists ``file`` (skipped or warned) with a reason naming
    ``field``, the same ``file: ...field...`` line was shown on screen, and every JSON output is
    strict."""

    def check(case_dir: Path, output: str) -> str | None:
        bad = strict_json_problem(case_dir / "out")
        if bad:
            return f"non-strict JSON written: {bad}"
        path = case_dir / report
        doc = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        entries = [e for key in ("skipped", "warnings") for e in doc.get(key, []) if isinstance(e, dict)]
        if not any(file in str(e.get("file")) and field in str(e.get("reason")) for e in entries):
            return f"{file}: {field} not listed in {Path(report).name}"
        lines = [line for line in output.splitlines() if file in line and field in line]
        return None if lines else f"{file}: {field} not shown on screen"

    return check


def refuse_unless(test: Callable[[Path], str | None]) -> Check:
    """Exit 0 is fine when ``test(case_dir)`` returns None (else its reason)."""
    return lambda case_dir, output: test(case_dir)


def annotations(case_dir: Path, sub: str = "out") -> dict[str, Any]:
    return dict(json.loads((case_dir / sub / "annotations.json").read_text(encoding="utf-8")))


# ---------------------------------------------------------------- base artefacts


def build_bases(root: Path, need_run: bool) -> dict[str, Path]:
    """``labelme`` (6 frames, 3 patients), ``ds`` (ingested and split), ``run`` (1 step)."""
    lm = root / "labelme"
    for p in range(3):
        for f in range(2):
            name = f"P{p:03d}_F{f:03d}"
            png(lm / f"{name}.png", seed=2 * p + f)
            write(
                lm / f"{name}.json",
                labelme_doc(
                    f"{name}.png",
                    [
                        {
                            "label": "F",
                            "points": [[10, 10], [20, 10], [20, 18], [10, 18]],
                            "shape_type": "polygon",
                            "group_id": None,
                            "flags": {},
                        },
                        {
                            "label": "E",
                            "points": [[30, 30], [50, 30], [50, 40], [30, 40]],
                            "shape_type": "polygon",
                            "group_id": None,
                            "flags": {},
                        },
                    ],
                ),
            )
    spinekit = str(SPINEKIT)
    subprocess.run(
        [
            spinekit,
            "ingest",
            str(lm),
            "--format",
            "labelme",
            "--patient-pattern",
            r"^(P\d+)_",
            "--out",
            str(root / "ds"),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [spinekit, "split", str(root / "ds"), "--test-fraction", "0.34", "--folds", "2"],
        check=True,
        capture_output=True,
    )
    bases = {"labelme": lm, "ds": root / "ds"}
    if need_run:
        subprocess.run(
            [
                spinekit,
                "train",
                str(root / "ds"),
                "--out",
                str(root / "run"),
                "--set",
                "train.max_steps=1",
                "--set",
                "data.size=[64,64]",
                "--set",
                "data.workers=0",
                "--set",
                "train.batch_size=2",
            ],
            check=True,
            capture_output=True,
        )
        bases["run"] = root / "run"
    return bases


def light_run(root: Path, ds: Path) -> Path:
    """A run folder as training writes it (config.yaml, dataset.json, log.jsonl) but without
    checkpoints: enough for the cases refused before a model is loaded (CI subset; the full
    corpus trains a real one)."""
    from spinekit.engine.config import dump_config, load_config

    run = root / "run"
    run.mkdir(parents=True)
    dump_config(load_config(None, ["data.size=[64,64]", "data.workers=0"]), run / "config.yaml")
    write(run / "dataset.json", {"dataset": str(ds.resolve()), "fold": 0, "classes": ["E", "F"]})
    write(run / "log.jsonl", '{"kind": "train", "epoch": 0, "step": 1, "loss": 0.5}\n')
    return run


def ingested(n: int) -> Check:
    """Exit 0 is right when all ``n`` images made it into ``out/annotations.json`` (a valid but
    awkward input, e.g. a file name near NAME_MAX)."""
    def check(case_dir: Path, output: str) -> str | None:
        got = len(annotations(case_dir)["images"])
        return None if got == n else f"{got} of {n} images ingested"

    return check
