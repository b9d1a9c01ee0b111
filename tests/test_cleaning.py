"""Tests of ``spinekit clean`` (spinekit.data.cleaning) on small datasets written to tmp_path."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from spinekit.data.cleaning import (
    CleaningConfig,
    clean_dataset,
    write_cleaning_report,
)
from spinekit.data.cleaning_checks import CHECKS
from spinekit.data.records import load_exclusions
from spinekit.errors import InputError
from spinekit.geometry import count_self_intersections

FAST = CleaningConfig(outlier_z=1000.0)  # outliers have their own test


def square(x: float, y: float, w: float, h: float | None = None) -> list[float]:
    """COCO flat polygon of an axis-aligned rectangle, clockwise from top-left."""
    h = w if h is None else h
    return [x, y, x + w, y, x + w, y + h, x, y + h]


BOW_TIE = [10.0, 10.0, 20.0, 20.0, 20.0, 10.0, 10.0, 20.0]


def ann(ann_id: int, image_id: int, poly: list[float], *, cat: int = 1, level: str | None = None,
        shape: str = "polygon") -> dict[str, Any]:
    out: dict[str, Any] = {"id": ann_id, "image_id": image_id, "category_id": cat,
                           "segmentation": [poly], "bbox": [0, 0, 1, 1], "area": 1.0,
                           "iscrowd": 0, "shape": shape}
    if level is not None:
        out["attributes"] = {"level": level}
    return out


def write_png(path: Path, width: int = 64, height: int = 64) -> None:
    """A PNG of seeded noise, different for every file name (no duplicate images)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = int.from_bytes(hashlib.sha256(path.name.encode()).digest()[:4], "little")
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def write_dataset(root: Path, images: list[dict[str, Any]], anns: list[dict[str, Any]],
                  *, on_disk: dict[str, tuple[int, int]]) -> None:
    """annotations.json with image_root 'images' and the listed PNGs (name -> (w, h))."""
    for name, (width, height) in on_disk.items():
        write_png(root / "images" / name, width, height)
    coco = {"info": {"image_root": "images"}, "images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "vertebra"}, {"id": 2, "name": "facet"}]}
    (root / "annotations.json").write_text(json.dumps(coco), encoding="utf-8")


def image(image_id: int, name: str, width: int = 64, height: int = 64) -> dict[str, Any]:
    return {"id": image_id, "file_name": name, "width": width, "height": height,
            "patient_id": f"p{image_id}", "source": f"labels/{name}.json", "frame": None}


@pytest.fixture()
def defects(tmp_path: Path) -> Path:
    """One clean control image plus one planted defect per check."""
    root = tmp_path / "ds"
    names = ["clean.png", "trunc.png", "bad name.png", "Case.png", "case.png", "clean2.png",
             "marks.png", "size.png", "geom.png", "negative.png", "emptied.png"]
    write_dataset(root, [
        image(1, "clean.png"), image(2, "missing.png"), image(3, "trunc.png"),
        image(4, "bad name.png"), image(5, "Case.png"), image(6, "case.png"),
        image(7, "clean2.png"), image(8, "clean2.png"), image(9, "marks.png"),
        image(10, "size.png", 100, 80), image(11, "geom.png"), image(12, "negative.png"),
        image(13, "emptied.png"),
    ], [
        ann(1, 1, square(10, 5, 10), level="L1"), ann(2, 1, square(10, 25, 10), level="L2"),
        ann(3, 1, square(10, 45, 10), level="L3"), ann(4, 1, square(40, 20, 8), cat=2),
        ann(10, 2, square(5, 5, 10)), ann(11, 3, square(5, 5, 10)), ann(12, 4, square(5, 5, 10)),
        ann(13, 5, square(5, 5, 10)), ann(14, 6, square(5, 5, 10)), ann(15, 7, square(5, 5, 10)),
        ann(16, 8, square(5, 5, 10)),
        ann(20, 9, square(5, 5, 10), cat=99),
        ann(21, 9, [0, 0, 5, 5, 0, 0, 5, 5]),
        ann(22, 9, square(20, 5, 10), level="X9"),
        ann(23, 9, square(5, 20, 10), level="L1"), ann(24, 9, square(20, 20, 10), level="L1"),
        ann(25, 9, square(5, 40, 10), shape="polyline"),
        ann(30, 10, square(5, 5, 10)),
        ann(40, 11, BOW_TIE), ann(41, 11, [30, 2, 31, 2, 30, 4]),
        ann(42, 11, square(50, 30, 18, 10)), ann(43, 11, square(60, 50, 30, 10)),
        ann(44, 11, square(5, 40, 10)), ann(45, 11, square(5, 40, 10)),
        ann(46, 11, [35, 45, 40, 48, 40, 54, 35, 57, 30, 54, 30, 48]),
        ann(50, 13, BOW_TIE),
        ann(60, 999, square(5, 5, 10)),
    ], on_disk={n: (64, 64) for n in names})
    trunc = root / "images" / "trunc.png"
    trunc.write_bytes(trunc.read_bytes()[:-200])
    (root / "ingest_report.json").write_text(json.dumps({
        "skipped": [{"file": "labels/broken.json", "reason": "broken JSON (line 3)"}],
        "warnings": []}), encoding="utf-8")
    return root


EXPECTED = {
    ("damaged_file", None, None, "labels/broken.json"),
    ("damaged_file", 2, None, "missing.png"),
    ("damaged_file", 3, None, "trunc.png"),
    ("naming", 4, None, "bad name.png"),
    ("naming", 6, None, "case.png"),
    ("naming", 8, None, "clean2.png"),
    ("duplicate_image", 8, None, "clean2.png"),  # images 7 and 8 both read clean2.png
    ("incorrect_mark", 9, 20, "marks.png"),
    ("incorrect_mark", 9, 21, "marks.png"),
    ("incorrect_mark", 9, 22, "marks.png"),
    ("incorrect_mark", 9, 23, "marks.png"),
    ("incorrect_mark", 9, 24, "marks.png"),
    ("wrong_shape_kind", 9, 25, "marks.png"),
    ("foreign_annotation", 10, None, "size.png"),
    ("foreign_annotation", 11, 43, "geom.png"),
    ("foreign_annotation", 999, 60, "annotations.json"),
    ("negative", 12, None, "negative.png"),
    ("emptied_image", 13, None, "emptied.png"),
    ("self_intersection", 11, 40, "geom.png"),
    ("self_intersection", 13, 50, "emptied.png"),
    ("zero_area", 11, 41, "geom.png"),
    ("outside_image", 11, 42, "geom.png"),
    ("duplicate", 11, 45, "geom.png"),
}


def found(report_dict: dict[str, Any]) -> set[tuple[Any, ...]]:
    return {(f["check"], f["image_id"], f["annotation_id"], f["file"])
            for f in report_dict["findings"]}


def test_every_planted_defect_found_and_nothing_else(defects: Path) -> None:
    data = clean_dataset(defects, FAST).to_dict()
    assert found(data) == EXPECTED
    assert not [f for f in data["findings"] if f["image_id"] == 1]  # clean control
    for f in data["findings"]:
        assert f["severity"] == CHECKS[f["check"]].severity
        assert f["reason"] and "\n" not in f["reason"]
    by_key = {(f["check"], f["annotation_id"]): f for f in data["findings"]}
    assert by_key[("incorrect_mark", 20)]["category"] is None
    assert "99" in by_key[("incorrect_mark", 20)]["reason"]
    assert "X9" in by_key[("incorrect_mark", 22)]["reason"]
    assert by_key[("duplicate", 45)]["category"] == "vertebra"
    assert "44" in by_key[("duplicate", 45)]["reason"]
    assert data["counts"]["incorrect_mark"] == 5 and data["counts"]["outlier_size"] == 0


def test_default_exclusions_and_summary(defects: Path) -> None:
    data = clean_dataset(defects).to_dict()  # default config, outlier warnings included
    assert not [f for f in data["findings"] if f["image_id"] == 1 and f["severity"] == "error"]
    assert data["version"] == 1
    assert data["excluded_images"] == [2, 3, 10, 13]
    assert data["excluded_annotations"] == [20, 21, 22, 23, 24, 40, 41, 43, 45, 50, 60]
    assert data["negative_images"] == [12]
    assert data["summary"] == {"images": 13, "annotations": 27, "negatives": 1,
                               "excluded_images": 4, "excluded_annotations": 11}
    assert "naming" not in data["exclude_checks"] and "duplicate" in data["exclude_checks"]
    skipped = next(f for f in data["findings"] if f["file"] == "labels/broken.json")
    assert skipped["excluded"] is True and "not ingested" in skipped["reason"]
    warning = next(f for f in data["findings"] if f["check"] == "outside_image")
    assert warning["excluded"] is False


def test_exclude_choice_is_followed_and_recorded(defects: Path) -> None:
    config = CleaningConfig(exclude=("duplicate", "naming"), verify_pixels=True)
    data = clean_dataset(defects, config).to_dict()
    assert data["config"]["exclude"] == ["duplicate", "naming"]
    assert data["exclude_checks"] == ["naming", "emptied_image", "duplicate"]
    assert data["excluded_annotations"] == [45]
    assert data["excluded_images"] == [4, 6, 8]  # damaged and emptied images stay in
    assert 13 not in data["negative_images"]  # its bow-tie is not excluded now
    nothing = clean_dataset(defects, CleaningConfig(exclude=())).to_dict()
    assert nothing["excluded_images"] == [] and nothing["excluded_annotations"] == []
    grouped = clean_dataset(defects, CleaningConfig(exclude=("geometry",))).to_dict()
    assert grouped["excluded_annotations"] == [40, 41, 42, 45, 50]  # with the warning
    assert grouped["excluded_images"] == [13]


@pytest.mark.parametrize("bad", [("no_such_check",), ("negative",)])
def test_exclude_rejects_bad_names(defects: Path, bad: tuple[str, ...]) -> None:
    with pytest.raises(InputError, match=bad[0]):
        clean_dataset(defects, CleaningConfig(exclude=bad))


def test_report_written_inputs_untouched(defects: Path) -> None:
    def digest() -> dict[str, str]:
        return {str(p.relative_to(defects)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(defects.rglob("*")) if p.is_file()}

    before = digest()
    calls: list[tuple[int, int]] = []
    report = clean_dataset(defects, FAST, progress=lambda done, total: calls.append((done, total)))
    assert load_exclusions(defects) == (set(), set())
    path = write_cleaning_report(report, defects)
    after = digest()
    assert path == defects / "cleaning_report.json"
    assert after.pop("cleaning_report.json")
    assert after == before
    assert calls[-1] == (13, 13) and len(calls) == 13
    on_disk = json.loads(path.read_text(encoding="utf-8"))
    assert on_disk == report.to_dict()
    assert set(on_disk) == {"version", "config", "exclude_checks", "counts", "findings",
                            "excluded_images", "excluded_annotations", "negative_images",
                            "duplicate_groups", "summary"}
    assert load_exclusions(defects) == ({2, 3, 10, 13},
                                        {20, 21, 22, 23, 24, 40, 41, 43, 45, 50, 60})


def test_load_exclusions_rejects_malformed_report(tmp_path: Path) -> None:
    (tmp_path / "cleaning_report.json").write_text('{"excluded_images": "1"}', encoding="utf-8")
    with pytest.raises(InputError, match="excluded_images"):
        load_exclusions(tmp_path)


def test_truncated_png_needs_full_decode(defects: Path) -> None:
    header_only = clean_dataset(defects, CleaningConfig(verify_pixels=False)).to_dict()
    damaged = {f["image_id"] for f in header_only["findings"] if f["check"] == "damaged_file"}
    assert damaged == {None, 2}
    full = clean_dataset(defects, CleaningConfig(verify_pixels=True)).to_dict()
    trunc = [f for f in full["findings"] if f["check"] == "damaged_file" and f["image_id"] == 3]
    assert len(trunc) == 1 and "truncated" in trunc[0]["reason"]


def test_self_intersection_geometry() -> None:
    def ring(flat: list[float]) -> np.ndarray:
        return np.asarray(flat, dtype=np.float64).reshape(-1, 2)

    assert count_self_intersections(ring(BOW_TIE)) == 1
    assert count_self_intersections(ring(square(0, 0, 10))) == 0
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    assert count_self_intersections(np.stack([np.cos(t), np.sin(t)], axis=1) * 50) == 0
    concave = ring([0, 0, 10, 0, 10, 10, 5, 3, 0, 10])  # arrow head, simple
    assert count_self_intersections(concave) == 0
    touching = ring([0, 0, 10, 0, 5, 5, 10, 10, 0, 10, 5, 5])  # figure eight through (5, 5)
    assert count_self_intersections(touching) > 0


def spine_dataset(root: Path) -> None:
    """12 images of 5 levelled vertebrae (jittered) with three planted mistakes."""
    rng = np.random.default_rng(0)
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for i in range(1, 13):
        images.append(image(i, f"spine{i:02d}.png", 120, 200))
        for k, level in enumerate(["L1", "L2", "L3", "L4", "L5"]):
            x, y, w, h = 40.0, 20.0 + 35.0 * k, 40.0, 20.0
            if (i, level) == (3, "L3"):
                x, y, w, h = 54.0, y + 7.0, 12.0, 6.0  # far too small
            if (i, level) == (5, "L2"):
                x, w, h = 20.0, 80.0, 10.0  # same area, far too flat
            if (i, level) == (7, "L5"):
                y = 0.0  # drawn above L1
            poly = (np.array(square(x, y, w, h)) + rng.normal(0, 0.6, 8)).round(2).tolist()
            anns.append(ann(len(anns) + 1, i, poly, level=level))
    write_dataset(root, images, anns, on_disk={img["file_name"]: (120, 200) for img in images})


def test_outliers_and_level_order(tmp_path: Path) -> None:
    spine_dataset(tmp_path)
    data = clean_dataset(tmp_path, CleaningConfig(verify_pixels=False)).to_dict()
    hits = {(f["check"], f["image_id"], f["annotation_id"]) for f in data["findings"]}
    small, flat, misplaced = 2 * 5 + 3, 4 * 5 + 2, 6 * 5 + 5
    assert hits == {("outlier_size", 3, small), ("outlier_shape", 5, flat),
                    ("incorrect_mark", 7, misplaced)}
    assert data["excluded_annotations"] == [misplaced]
    loose = clean_dataset(tmp_path, CleaningConfig(verify_pixels=False, outlier_z=1000.0))
    assert {f.check for f in loose.findings} == {"incorrect_mark"}


def test_declared_size_from_ingest_is_a_foreign_annotation(tmp_path: Path) -> None:
    from conftest import labelme_doc, poly, write_png
    from spinekit.data.ingest import IngestOptions, ingest

    src = tmp_path / "src"
    write_png(src / "a.png", 64, 48)
    write_png(src / "b.png", 64, 48)
    square = [poly("F", [[5, 5], [20, 5], [20, 20], [5, 20]])]
    (src / "a.json").write_text(json.dumps(labelme_doc("a.png", 640, 480, square)))
    (src / "b.json").write_text(json.dumps(labelme_doc("b.png", 64, 48, square)))
    ingest(src, tmp_path / "ds", IngestOptions(format="labelme"))
    report = clean_dataset(tmp_path / "ds").to_dict()
    foreign = [f for f in report["findings"] if f["check"] == "foreign_annotation"]
    assert [f["image_id"] for f in foreign] == [1]
    assert 1 in report["excluded_images"] and 2 not in report["excluded_images"]
