"""The case catalogue of :mod:`hostile_inputs`: one family per command or format.

Each family writes one small valid input and breaks one thing in it. A case's
``names`` are the tokens a clear error must contain (the broken file's name,
the field or the option); its ``ok`` check decides, for exit 0, whether the
bad input was handled (skipped and reported) or went through silently.
``fast`` marks the CI subset (no torch start-up, fixes landed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hostile_fixtures import (
    LATIN1,
    LONG,
    annotations,
    build_bases,
    deep,
    flagged,
    ingested,
    labelme_doc,
    png,
    refuse_unless,
    reported,
    strict_json_problem,
    write,
)
from hostile_inputs import Case, Check

Setup = Callable[[Path], None]
__all__ = ["all_cases", "build_bases"]


def _ingest(fmt: str, src: str = "src") -> list[str]:
    return ["ingest", src, "--format", fmt, "--out", "out"]


# ---------------------------------------------------------------- LabelMe


def _labelme_case(
    name: str,
    kind: str,
    bad: str | bytes | Any,
    *,
    fast: bool = False,
    extra: list[str] | None = None,
    stem: str = "bad",
    ok: Check | None = None,
) -> Case:
    def setup(d: Path) -> None:
        png(d / "src" / "P000_F000.png")
        write(d / "src" / "P000_F000.json", labelme_doc("P000_F000.png"))
        png(d / "src" / f"{stem}.png", seed=1)
        write(d / "src" / f"{stem}.json", bad)

    return Case(
        f"labelme-{name}",
        kind,
        [*_ingest("labelme"), *(extra or [])],
        setup,
        (f"{stem}.json"[:40], "bad"),
        ok=ok or reported(f"{stem}.json"[:40]),
        fast=fast,
    )


def labelme_cases() -> list[Case]:
    doc = labelme_doc("bad.png")
    text = json.dumps(doc)
    pt = "[[10, 10], [20, 10], [20, 18]]"

    def mut(**kw: Any) -> dict[str, Any]:
        return {**doc, **kw}

    def shape(**kw: Any) -> dict[str, Any]:
        return mut(shapes=[{**doc["shapes"][0], **kw}])

    return [
        _labelme_case("truncated", "broken JSON", text[:-20], fast=True),
        _labelme_case("empty", "broken JSON", b""),
        _labelme_case("top-list", "wrong field types", "[1, 2]"),
        _labelme_case(
            "nan-point",
            "NaN/Infinity in JSON",
            text.replace(pt, "[[NaN, 10], [20, 10], [20, 18]]")
            if pt in text
            else text.replace("[10, 10]", "[NaN, 10]"),
            fast=True,
        ),
        _labelme_case(
            "inf-width",
            "huge numbers/Infinity sizes",
            text.replace('"imageWidth": 64', '"imageWidth": Infinity'),
        ),
        _labelme_case("huge-width", "huge numbers/Infinity sizes", mut(imageWidth=1e308)),
        _labelme_case(
            "bigint-width",
            "huge numbers/Infinity sizes",
            text.replace('"imageWidth": 64', '"imageWidth": ' + "9" * 400),
        ),
        _labelme_case("neg-height", "huge numbers/Infinity sizes", mut(imageHeight=-48)),
        _labelme_case(
            "deep-flags", "deep JSON nesting", text.replace('"flags": {}', '"flags": ' + deep(), 1), fast=True
        ),
        _labelme_case("deep-points", "deep JSON nesting", text.replace("[10, 10]", deep(50_000), 1)),
        _labelme_case("flags-list", "wrong field types", mut(flags=["a"])),
        _labelme_case("shapes-dict", "wrong field types", mut(shapes={"a": 1})),
        _labelme_case("shapes-null", "wrong field types", mut(shapes=None)),
        _labelme_case(
            "points-strings", "wrong field types", shape(points=[["a", "b"], ["c", "d"], ["e", "f"]])
        ),
        _labelme_case("points-flat", "wrong field types", shape(points=[1, 2, 3, 4])),
        _labelme_case("point-bool", "wrong field types", shape(points=[[True, 1], [2, 2], [3, 1]])),
        _labelme_case("label-null", "label null", shape(label=None)),
        _labelme_case("label-number", "wrong field types", shape(label=5)),
        _labelme_case("label-empty", "wrong field types", shape(label="")),
        _labelme_case("shape-type-bogus", "wrong field types", shape(shape_type="hexagon")),
        _labelme_case(
            "group-id-str",
            "wrong field types",
            shape(group_id="x"),
            ok=flagged("bad.json", "shapes[0].group_id"),
        ),
        _labelme_case("shape-flags-list", "wrong field types", shape(flags=[1])),
        _labelme_case(
            "image-data-garbage",
            "wrong field types",
            mut(imageData="!!notbase64"),
            ok=flagged("bad.json", "imageData"),
        ),
        _labelme_case("image-path-missing", "missing files", mut(imagePath="nowhere.png")),
        _labelme_case("image-path-traversal", "path traversal", mut(imagePath="../../../etc/passwd")),
        _labelme_case("image-path-number", "wrong field types", mut(imagePath=7)),
        _labelme_case("width-string", "wrong field types", mut(imageWidth="64px")),
        _labelme_case(
            "long-name", "near-NAME_MAX file names", labelme_doc(f"{LONG}.png"), stem=LONG, ok=ingested(2)
        ),
        _labelme_case(
            "huge-coords", "huge numbers/Infinity sizes", shape(points=[[1e300, 1e300], [2, 2], [3, 1]])
        ),
        _labelme_case(
            "dup-keys-nan",
            "NaN/Infinity in JSON",
            text.replace('"imageHeight": 48', '"imageHeight": -Infinity'),
        ),
        _latin1_labelme(),
        Case(
            "labelme-bad-regex",
            "bad regex",
            [*_ingest("labelme"), "--patient-pattern", "(P"],
            lambda d: _good_labelme(d),
            ("--patient-pattern", "patient_pattern", "pattern"),
            fast=True,
        ),
        Case(
            "labelme-regex-no-group",
            "bad regex",
            [*_ingest("labelme"), "--patient-pattern", "^P"],
            lambda d: _good_labelme(d),
            ("--patient-pattern", "patient_pattern", "pattern", "group"),
        ),
        Case(
            "labelme-regex-catastrophic",
            "bad regex",
            [*_ingest("labelme"), "--patient-pattern", "^(a+)+$"],
            lambda d: _good_labelme(d),
            ("pattern",),
            ok=lambda d, o: None,
        ),
        Case(
            "ingest-format-bogus",
            "bad option",
            _ingest("bogus"),
            lambda d: _good_labelme(d),
            ("--format", "format", "bogus"),
            fast=True,
        ),
        Case(
            "ingest-src-missing",
            "missing files",
            _ingest("labelme", "nowhere"),
            lambda d: None,
            ("nowhere",),
            fast=True,
        ),
        Case(
            "ingest-src-is-file",
            "missing files",
            _ingest("labelme", "afile"),
            lambda d: write(d / "afile", "x"),
            ("afile",),
        ),
        Case(
            "ingest-out-is-file",
            "bad option",
            _ingest("labelme"),
            _good_plus("out", "x"),
            ("out",),
            outputs=(),
        ),
        Case(
            "ingest-out-inside-src",
            "bad option",
            ["ingest", "src", "--format", "labelme", "--out", "src/ds"],
            lambda d: _good_labelme(d),
            ("src", "out"),
            outputs=("src/ds",),
            ok=refuse_unless(lambda d: None),
        ),
        Case(
            "ingest-frames-abc",
            "bad option",
            [*_ingest("labelme"), "--frames", "abc"],
            lambda d: _good_labelme(d),
            ("--frames", "frames", "abc"),
            fast=True,
        ),
        Case(
            "ingest-frames-negative",
            "bad option",
            [*_ingest("labelme"), "--frames", "-1"],
            lambda d: _good_labelme(d),
            ("--frames", "frames"),
        ),
        Case(
            "ingest-classes-malformed",
            "bad option",
            [*_ingest("labelme"), "--classes", "F=a=b"],
            lambda d: _good_labelme(d),
            ("--classes", "classes", "F=a=b"),
        ),
        Case(
            "ingest-classes-empty-name",
            "bad option",
            [*_ingest("labelme"), "--classes", "=x"],
            lambda d: _good_labelme(d),
            ("--classes", "classes", "=x"),
        ),
    ]


def _good_labelme(d: Path) -> None:
    png(d / "src" / "P000_F000.png")
    write(d / "src" / "P000_F000.json", labelme_doc("P000_F000.png"))


def _good_plus(name: str, content: str | bytes) -> Setup:
    """A good LabelMe source plus the file ``name`` in the case folder."""

    def setup(d: Path) -> None:
        _good_labelme(d)
        write(d / name, content)

    return setup


def _latin1_labelme() -> Case:
    def setup(d: Path) -> None:
        _good_labelme(d)
        src = os.fsencode(d / "src")
        png(Path(os.fsdecode(src + b"/" + LATIN1 + b".png")), seed=3)
        doc = labelme_doc(os.fsdecode(LATIN1 + b".png"))
        with open(src + b"/" + LATIN1 + b".json", "w", encoding="utf-8", errors="surrogateescape") as f:
            json.dump(doc, f, ensure_ascii=False)

    return Case(
        "labelme-latin1-name",
        "Latin-1 file names",
        _ingest("labelme"),
        setup,
        ("caf",),
        ok=lambda d, o: (
            None
            if len(annotations(d)["images"]) == 2 or "caf" in o
            else "the Latin-1 named file vanished without a word"
        ),
    )


# ---------------------------------------------------------------- COCO


def _coco_doc() -> dict[str, Any]:
    seg = [[10, 10, 20, 10, 20, 18, 10, 18]]
    return {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 64, "height": 48},
            {"id": 2, "file_name": "b.png", "width": 64, "height": 48},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "segmentation": seg,
                "bbox": [10, 10, 10, 8],
                "area": 80,
                "iscrowd": 0,
            },
            {
                "id": 2,
                "image_id": 2,
                "category_id": 2,
                "segmentation": seg,
                "bbox": [10, 10, 10, 8],
                "area": 80,
                "iscrowd": 0,
            },
        ],
        "categories": [{"id": 1, "name": "F"}, {"id": 2, "name": "E"}],
    }


def _coco_case(
    name: str,
    kind: str,
    change: Callable[[dict[str, Any]], Any] | str,
    *,
    names: tuple[str, ...] = ("annotations.json",),
    silent_if: Callable[[Path], str | None] | None = None,
    fast: bool = False,
) -> Case:
    def setup(d: Path) -> None:
        png(d / "src" / "images" / "a.png")
        png(d / "src" / "images" / "b.png", seed=1)
        if isinstance(change, str):
            write(d / "src" / "annotations.json", change)
        else:
            doc = _coco_doc()
            out = change(doc)
            write(d / "src" / "annotations.json", doc if out is None else out)

    def ok(d: Path, output: str) -> str | None:
        strict = strict_json_problem(d / "out")
        if strict:
            return f"non-strict JSON written: {strict}"
        if silent_if is not None:
            return silent_if(d)
        return reported("annotations.json", "skipped", "warning")(d, output)

    return Case(
        f"coco-{name}",
        kind,
        ["ingest", "src/annotations.json", "--format", "coco", "--out", "out"],
        setup,
        names,
        ok=ok,
        fast=fast,
    )


def _n_anns(n: int) -> Callable[[Path], str | None]:
    return lambda d: (
        None
        if len(annotations(d)["annotations"]) == n
        else f"{len(annotations(d)['annotations'])} annotations written, expected {n} (merged or dropped)"
    )


def _cats_named(*names: str) -> Callable[[Path], str | None]:
    def check(d: Path) -> str | None:
        got = sorted(str(c["name"]) for c in annotations(d)["categories"])
        return None if got == sorted(names) else f"categories became {got}"

    return check


def coco_cases() -> list[Case]:
    base = json.dumps(_coco_doc())

    def ann(**kw: Any) -> Callable[[dict[str, Any]], None]:
        return lambda doc: doc["annotations"][0].update(kw)

    def img(**kw: Any) -> Callable[[dict[str, Any]], None]:
        return lambda doc: doc["images"][0].update(kw)

    def drop(section: str, key: str) -> Callable[[dict[str, Any]], None]:
        return lambda doc: doc[section][0].pop(key)

    rle = {"size": [48, 64], "counts": "PPYo1"}
    return [
        _coco_case("truncated", "broken JSON", base[:-10], fast=True),
        _coco_case("empty", "broken JSON", ""),
        _coco_case("top-list", "wrong field types", "[]"),
        _coco_case(
            "deep", "deep JSON nesting", base.replace('"iscrowd": 0', '"iscrowd": ' + deep(), 1), fast=True
        ),
        _coco_case(
            "nan-bbox", "NaN/Infinity in JSON", base.replace("[10, 10, 10, 8]", "[NaN, 10, 10, 8]", 1)
        ),
        _coco_case("inf-area", "NaN/Infinity in JSON", base.replace('"area": 80', '"area": Infinity', 1)),
        _coco_case("nan-seg", "NaN/Infinity in JSON", base.replace("[[10, 10, 20", "[[NaN, 10, 20", 1)),
        _coco_case("huge-width", "huge numbers/Infinity sizes", img(width=10**30)),
        _coco_case(
            "inf-width", "huge numbers/Infinity sizes", base.replace('"width": 64', '"width": Infinity', 1)
        ),
        _coco_case(
            "dup-ann-ids",
            "duplicate ids",
            lambda doc: doc["annotations"][1].update(id=1),
            names=("annotations.json", "duplicate", "id 1"),
            silent_if=_n_anns(2),
        ),
        _coco_case(
            "dup-image-ids",
            "duplicate ids",
            lambda doc: doc["images"][1].update(id=1),
            names=("annotations.json", "duplicate", "id 1"),
        ),
        _coco_case(
            "dup-category-ids",
            "duplicate category ids",
            lambda doc: doc["categories"].append({"id": 1, "name": "E2"}),
            names=("annotations.json", "duplicate", "category"),
        ),
        _coco_case(
            "dup-category-names",
            "duplicate ids",
            lambda doc: doc["categories"][1].update(name="F"),
            names=("annotations.json", "duplicate", "category"),
            silent_if=_cats_named("F"),
        ),
        _coco_case(
            "category-name-null",
            "label null",
            lambda doc: doc["categories"][0].update(name=None),
            names=("annotations.json", "name"),
            silent_if=lambda d: (
                "category named None"
                if any(c["name"] in (None, "None") for c in annotations(d)["categories"])
                else None
            ),
        ),
        _coco_case("category-unknown", "unknown categories", ann(category_id=99)),
        _coco_case("image-id-unknown", "datasets missing fields", ann(image_id=99)),
        _coco_case("no-file-name", "datasets missing fields", drop("images", "file_name")),
        _coco_case("no-image-id", "datasets missing fields", drop("annotations", "image_id")),
        _coco_case("no-images-key", "datasets missing fields", lambda doc: doc.pop("images")),
        _coco_case("images-dict", "wrong field types", lambda doc: doc.update(images={"a": 1})),
        _coco_case("id-string", "wrong field types", ann(id="one")),
        _coco_case("id-float", "wrong field types", ann(id=1.5)),
        _coco_case("seg-strings", "wrong field types", ann(segmentation=[["a", "b", "c", "d", "e", "f"]])),
        _coco_case("seg-number", "wrong field types", ann(segmentation=5)),
        _coco_case("iscrowd-string", "wrong field types", ann(iscrowd="no")),
        _coco_case(
            "rle-garbage", "malformed RLE", ann(segmentation={"size": [48, 64], "counts": "\x00\x01~~~"})
        ),
        _coco_case(
            "rle-negative", "malformed RLE", ann(segmentation={"size": [48, 64], "counts": [-5, 100]})
        ),
        _coco_case(
            "rle-too-long", "RLE wrong size", ann(segmentation={"size": [48, 64], "counts": [0, 100000]})
        ),
        _coco_case("rle-wrong-size", "RLE wrong size", ann(segmentation={**rle, "size": [10, 10]})),
        _coco_case(
            "rle-size-huge",
            "huge numbers/Infinity sizes",
            ann(segmentation={"size": [10**6, 10**6], "counts": [0, 10]}),
        ),
        _coco_case("file-name-traversal", "path traversal", img(file_name="../../../../etc/passwd")),
        _coco_case("file-name-long", "near-NAME_MAX file names", img(file_name=LONG + ".png")),
        _coco_case("bbox-short", "wrong field types", ann(bbox=[1, 2])),
    ]


# ---------------------------------------------------------------- VIA


def _via_case(
    name: str, kind: str, change: Callable[[dict[str, Any]], Any] | str, fast: bool = False
) -> Case:
    def setup(d: Path) -> None:
        png(d / "src" / "a.png")
        region = {
            "shape_attributes": {
                "name": "polygon",
                "all_points_x": [10, 20, 20],
                "all_points_y": [10, 10, 18],
            },
            "region_attributes": {"label": "F"},
        }
        doc: Any = {
            "a.png123": {"filename": "a.png", "size": 123, "regions": [region], "file_attributes": {}}
        }
        if isinstance(change, str):
            write(d / "src" / "via.json", change.replace("DOC", json.dumps(doc)))
            return
        out = change(doc["a.png123"])
        write(d / "src" / "via.json", doc if out is None else out)

    return Case(
        f"via-{name}",
        kind,
        ["ingest", "src/via.json", "--format", "via", "--out", "out"],
        setup,
        ("via.json", "a.png"),
        ok=reported("a.png", "region", "via.json"),
        fast=fast,
    )


def via_cases() -> list[Case]:
    def region(**kw: Any) -> Callable[[dict[str, Any]], None]:
        return lambda e: e["regions"][0].update(kw)

    def shape(**kw: Any) -> Callable[[dict[str, Any]], None]:
        return lambda e: e["regions"][0]["shape_attributes"].update(kw)

    return [
        _via_case("truncated", "broken JSON", "DOC"[:2] + "{", fast=True),
        _via_case("deep", "deep JSON nesting", '{"k": ' + deep() + "}", fast=True),
        _via_case("attributes-list", "wrong field types", region(region_attributes=["F"])),
        _via_case("file-attributes-list", "wrong field types", lambda e: e.update(file_attributes=[1])),
        _via_case("regions-string", "wrong field types", lambda e: e.update(regions="F")),
        _via_case("points-mismatch", "wrong field types", shape(all_points_y=[1])),
        _via_case(
            "points-nan",
            "NaN/Infinity in JSON",
            "DOC".replace("DOC", "") + '{"k": {"filename": "a.png", "size": 1, "regions": [{'
            '"shape_attributes": {"name": "polygon", "all_points_x": [NaN, 2, 3], '
            '"all_points_y": [1, 2, 1]}, "region_attributes": {"label": "F"}}]}}',
        ),
        _via_case("points-huge", "huge numbers/Infinity sizes", shape(all_points_x=[1e308, -1e308, 3])),
        _via_case(
            "shape-name-missing",
            "datasets missing fields",
            lambda e: e["regions"][0]["shape_attributes"].pop("name"),
        ),
        _via_case("label-null", "label null", region(region_attributes={"label": None})),
        _via_case("filename-number", "wrong field types", lambda e: e.update(filename=5)),
        _via_case(
            "circle-r-inf",
            "huge numbers/Infinity sizes",
            '{"k": {"filename": "a.png", "size": 1, "regions": [{"shape_attributes": {"name": "circle",'
            ' "cx": 5, "cy": 5, "r": Infinity}, "region_attributes": {"label": "F"}}]}}',
        ),
        _via_case("top-list", "wrong field types", "[DOC]"),
    ]


# ---------------------------------------------------------------- registry

from hostile_commands import command_cases  # noqa: E402
from hostile_model_cases import model_cases  # noqa: E402
from hostile_sources import aasce_cases, images_cases, masks_cases  # noqa: E402


def all_cases() -> list[Case]:
    """Every case; names are unique."""
    cases = [
        *labelme_cases(),
        *coco_cases(),
        *via_cases(),
        *aasce_cases(),
        *masks_cases(),
        *images_cases(),
        *command_cases(),
        *model_cases(),
    ]
    names = [c.name for c in cases]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"duplicate case names: {sorted(dup)}")
    return cases
