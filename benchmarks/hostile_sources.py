"""Hostile cases for the AASCE, label-mask and plain-image ingest formats (see :mod:`hostile_inputs`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hostile_fixtures import LATIN1, LONG, deep, dicom, ingested, png, reported, write
from hostile_inputs import Case


def _ingest(fmt: str, src: str = "src") -> list[str]:
    return ["ingest", src, "--format", fmt, "--out", "out"]


# ---------------------------------------------------------------- AASCE, masks, images


def _aasce_case(
    name: str,
    kind: str,
    landmarks: str | bytes | None = None,
    *,
    names: str | bytes | None = None,
    fast: bool = False,
) -> Case:
    def setup(d: Path) -> None:
        src = d / "src"
        for k in range(2):
            png(src / "images" / f"s{k}.jpg", seed=k, size=(64, 128))
        good = ",".join(["0.4"] * 68 + [f"{0.1 + 0.8 * i / 67:.4f}" for i in range(68)])
        write(src / "filenames.csv", names if names is not None else "s0.jpg\ns1.jpg\n")
        write(src / "landmarks.csv", landmarks if landmarks is not None else f"{good}\n{good}\n")

    return Case(
        f"aasce-{name}",
        kind,
        _ingest("aasce"),
        setup,
        ("landmarks.csv", "filenames.csv", "s0.jpg", "s1.jpg", "nope.jpg", "passwd"),
        ok=reported("landmarks.csv", "s1.jpg", "filenames.csv", "nope.jpg", "passwd"),
        fast=fast,
    )


def aasce_cases() -> list[Case]:
    good = ",".join(["0.4"] * 68 + [f"{0.1 + 0.8 * i / 67:.4f}" for i in range(68)])
    return [
        _aasce_case(
            "non-numeric", "non-numeric CSV values", f"{good}\n{good.replace('0.4', 'abc', 1)}\n", fast=True
        ),
        _aasce_case("nan", "NaN/Infinity in CSV", f"{good}\n{good.replace('0.4', 'nan', 1)}\n"),
        _aasce_case("inf", "NaN/Infinity in CSV", f"{good}\n{good.replace('0.4', 'inf', 1)}\n"),
        _aasce_case("huge", "huge numbers/Infinity sizes", f"{good}\n{good.replace('0.4', '1e308', 1)}\n"),
        _aasce_case("short-row", "datasets missing fields", f"{good}\n0.1,0.2\n", fast=True),
        _aasce_case("row-count", "datasets missing fields", f"{good}\n"),
        _aasce_case("empty", "datasets missing fields", ""),
        _aasce_case("binary", "broken file", b"\x00\xff\xfe" * 100),
        _aasce_case("latin1-names", "Latin-1 file names", names=b"s0.jpg\ns\xe91.jpg\n"),
        _aasce_case("missing-image", "missing files", names="s0.jpg\nnope.jpg\n"),
        _aasce_case("traversal", "path traversal", names="s0.jpg\n../../../etc/passwd\n"),
    ]


def _masks_case(
    name: str,
    kind: str,
    labels: Any,
    *,
    mask_size: tuple[int, int] = (64, 48),
    extra: list[str] | None = None,
    fast: bool = False,
) -> Case:
    def setup(d: Path) -> None:
        import numpy as np
        from PIL import Image

        png(d / "src" / "images" / "a.png")
        mask = np.zeros((mask_size[1], mask_size[0]), dtype=np.uint8)
        mask[5:20, 5:20] = 1
        (d / "src" / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(d / "src" / "masks" / "a.png")
        write(d / "src" / "labels.json", labels)

    return Case(
        f"masks-{name}",
        kind,
        [*_ingest("masks"), *(extra or [])],
        setup,
        ("labels.json", "a.png", "--min-component-px", "min_component_px"),
        ok=reported("a.png", "labels.json"),
        fast=fast,
    )


def masks_cases() -> list[Case]:
    good = {"mask_values": {"1": "L5"}, "background": 0}
    return [
        _masks_case("values-list", "wrong field types", {"mask_values": ["L5"]}, fast=True),
        _masks_case("deep", "deep JSON nesting", '{"mask_values": ' + deep() + "}", fast=True),
        _masks_case(
            "nan-spacing",
            "NaN/Infinity in JSON",
            '{"mask_values": {"1": "L5"}, "pixel_spacing_mm": [NaN, 1]}',
        ),
        _masks_case(
            "huge-spacing", "huge numbers/Infinity sizes", {**good, "pixel_spacing_mm": [1e308, 1e308]}
        ),
        _masks_case("value-abc", "wrong field types", {"mask_values": {"abc": "L5"}}),
        _masks_case("value-300", "huge numbers/Infinity sizes", {"mask_values": {"300": "L5"}}),
        _masks_case("label-null", "label null", {"mask_values": {"1": None}}),
        _masks_case("background-str", "wrong field types", {**good, "background": "x"}),
        _masks_case("size-mismatch", "wrong field types", good, mask_size=(32, 32)),
        _masks_case("min-component-negative", "bad option", good, extra=["--min-component-px", "-5"]),
        _masks_case("truncated", "broken JSON", '{"mask_values": {"1": "L5"'),
    ]


def _images_case(
    name: str,
    kind: str,
    setup_bad: Callable[[Path], Any],
    token: str,
    fast: bool = False,
    timeout_kind: bool = False,
) -> Case:
    def setup(d: Path) -> None:
        png(d / "src" / "good.png")
        setup_bad(d / "src")

    return Case(f"images-{name}", kind, _ingest("images"), setup, (token,), ok=reported(token), fast=fast)


def _long_name_source(d: Path) -> None:
    png(d / "src" / "good.png")
    png(d / "src" / f"{LONG}.png", seed=1)


def images_cases() -> list[Case]:
    def bomb(src: Path) -> None:
        bomb_png = png(src / "bomb.png")
        data = bytearray(bomb_png.read_bytes())
        data[16:24] = (100_000).to_bytes(4, "big") + (100_000).to_bytes(4, "big")  # IHDR w, h
        bomb_png.write_bytes(bytes(data))

    return [
        _images_case("zero-byte", "broken file", lambda s: write(s / "zero.png", b""), "zero.png", fast=True),
        _images_case(
            "truncated",
            "broken file",
            lambda s: write(s / "trunc.png", png(s / "t.png").read_bytes()[:-100]) or (s / "t.png").unlink(),
            "trunc.png",
            fast=True,
        ),
        _images_case(
            "garbage-jpg", "broken file", lambda s: write(s / "g.jpg", b"\xff\xd8garbage" * 10), "g.jpg"
        ),
        _images_case("bomb-header", "huge numbers/Infinity sizes", bomb, "bomb.png"),
        _images_case(
            "dicom-1e9-frames",
            "DICOM claiming 10^9 frames",
            lambda s: dicom(s / "frames.dcm", frames_claimed=10**9),
            "frames.dcm",
        ),
        _images_case(
            "dicom-frames-zero",
            "DICOM frame counts",
            lambda s: dicom(s / "zero.dcm", frames_claimed=0),
            "zero.dcm",
        ),
        _images_case(
            "dicom-slope-nan",
            "DICOM RescaleSlope NaN",
            lambda s: dicom(s / "nan.dcm", RescaleSlope="NaN", RescaleIntercept="0"),
            "nan.dcm",
        ),
        _images_case(
            "dicom-slope-inf",
            "DICOM RescaleSlope NaN",
            lambda s: dicom(s / "inf.dcm", RescaleSlope="1e400", RescaleIntercept="0"),
            "inf.dcm",
        ),
        _images_case(
            "dicom-nested",
            "deeply nested DICOM sequences",
            lambda s: dicom(s / "nested.dcm", nested=3000),
            "nested.dcm",
        ),
        _images_case("dicom-zero-byte", "broken file", lambda s: write(s / "z.dcm", b""), "z.dcm"),
        _images_case(
            "dicom-truncated",
            "broken file",
            lambda s: write(s / "t.dcm", dicom(s / "x.dcm").read_bytes()[:400]) or (s / "x.dcm").unlink(),
            "t.dcm",
        ),
        _images_case(
            "dicom-rows-huge",
            "huge numbers/Infinity sizes",
            lambda s: dicom(s / "rows.dcm", Rows=65535, Columns=65535),
            "rows.dcm",
        ),
        _images_case(
            "latin1-name",
            "Latin-1 file names",
            lambda s: png(Path(os.fsdecode(os.fsencode(s) + b"/" + LATIN1 + b".png"))),
            "caf",
        ),
        Case(
            "images-long-name",
            "near-NAME_MAX file names",
            _ingest("images"),
            _long_name_source,
            (LONG[:30],),
            ok=ingested(2),
        ),
    ]
