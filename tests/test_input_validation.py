"""Hostile and malformed annotation/result files: one clear InputError (or a named warning).

Every test writes real files in tmp_path and checks the error type and that the message
names the file and the field or record at fault. The property-based tests at the end
mutate valid LabelMe, VIA and COCO documents and require each read to either succeed
with finite, valid shapes or raise InputError, never another exception.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import labelme_doc, poly, write_png
from spinekit.data.export import export_dataset
from spinekit.data.ingest import IngestOptions, ingest
from spinekit.data.records import ANNOTATIONS_FILE, load_dataset
from spinekit.data.splits import SplitConfig, make_splits
from spinekit.errors import InputError
from spinekit.io.atomic import atomic_path, atomic_write_json
from spinekit.io.formats.aasce import read_aasce
from spinekit.io.formats.coco import read_coco
from spinekit.io.formats.labelme import read_labelme
from spinekit.io.formats.via import read_via
from spinekit.io.jsonfile import MAX_JSON_DEPTH, json_depth, parse_json, read_json
from spinekit.io.shapes import ReadResult

# ----------------------------------------------------------------------------- helpers


def _write(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _labelme(folder: Path, **changes: Any) -> Path:
    write_png(folder / "a.png", 64, 48)
    doc = labelme_doc("a.png", 64, 48, [poly("F", [[10, 10], [20, 10], [20, 18]])])
    doc.update(changes)
    return _write(folder / "a.json", doc)


def _coco_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                         "segmentation": [[10, 10, 20, 10, 20, 18]], "bbox": [10, 10, 10, 8]}],
        "categories": [{"id": 1, "name": "F"}],
    }
    doc.update(changes)
    return doc


def _coco(folder: Path, doc: dict[str, Any]) -> Path:
    write_png(folder / "a.png", 64, 48)
    return _write(folder / "c.json", doc)


def _via_doc(region_attributes: Any = None, shape: dict[str, Any] | None = None) -> dict[str, Any]:
    shape = shape or {"name": "polygon", "all_points_x": [10, 20, 20], "all_points_y": [10, 10, 18]}
    region = {"shape_attributes": shape,
              "region_attributes": {"label": "F"} if region_attributes is None else region_attributes}
    return {"a.png123": {"filename": "a.png", "size": 123, "regions": [region], "file_attributes": {}}}


def _via(folder: Path, doc: dict[str, Any]) -> Path:
    write_png(folder / "a.png", 64, 48)
    return _write(folder / "v.json", doc)


def _raises(path: Path, *fragments: str, call: Any) -> InputError:
    """``call()`` raises InputError whose message names ``path`` and every fragment."""
    with pytest.raises(InputError) as info:
        call()
    message = str(info.value)
    assert str(path) in message and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return info.value


def _skipped(result: ReadResult, *fragments: str) -> str:
    lines = [s for s in result.skipped if all(f in s for f in fragments)]
    assert len(lines) == 1, result.skipped
    return lines[0]


def _warnings(result: ReadResult) -> list[str]:
    return [str(w) for item in result.items for w in item.extra.get("warnings", [])]  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- strict JSON


@pytest.mark.parametrize(("text", "fragment"), [
    ('{"imageWidth": NaN}', "NaN is not valid JSON (numbers must be finite) (line 1, column 16)"),
    ('{"imageWidth":\n Infinity}', "Infinity is not valid JSON (numbers must be finite) (line 2, column 2)"),
    ('{"imageWidth": 1e999}', "number 1e999 is out of range"),
    ('{"a": 1, "a": 2}', "duplicate key 'a'"),
    ("[" * 5000 + "]" * 5000, f"nested 5000 levels deep, deeper than the limit of {MAX_JSON_DEPTH}"),
    ("9" * 5000, "invalid JSON value"),
    ('{"a": [1, 2', "broken JSON"),
    ('{"shapes": [{"label": "\\udce9"}]}', "shapes[0].label: a \\u escape that is not valid Unicode"),
])
def test_strict_json_refuses_non_json_and_hostile_values(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(text, encoding="utf-8")
    _raises(path, fragment, call=lambda: read_json(path))


def test_json_limits_size_encoding_and_depth_counting(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text("[" + "1," * 100 + "1]", encoding="utf-8")
    _raises(path, "over the limit of 100 bytes", call=lambda: read_json(path, max_bytes=100))
    latin = tmp_path / "latin.json"
    latin.write_bytes('{"label": "café"}'.encode("latin-1"))
    _raises(latin, "not UTF-8 text", call=lambda: read_json(latin))
    # brackets and escaped quotes inside strings do not count as nesting
    assert json_depth(json.dumps({"a": ['[[[{{"\\', {"b": "]]"}]}).encode()) == 3
    assert parse_json(json.dumps({"x": "\u00e9[\"]"}), "s") == {"x": "\u00e9[\"]"}


def test_labelme_deeply_nested_file_is_skipped_with_the_reason(tmp_path: Path) -> None:
    path = _labelme(tmp_path / "src")
    path.write_text('{"shapes": [], "flags": ' + "[" * 3000 + "]" * 3000 + "}", encoding="utf-8")
    line = _skipped(read_labelme(tmp_path / "src"), str(path))
    assert "nested 3001 levels deep" in line


# ----------------------------------------------------------------------------- wrong types


def test_labelme_flags_as_a_list_skips_the_file_naming_the_field(tmp_path: Path) -> None:
    path = _labelme(tmp_path / "src", flags=["reviewed"])
    line = _skipped(read_labelme(tmp_path / "src"), str(path))
    assert "flags: must be an object, got ['reviewed']" in line


def test_labelme_bad_shapes_are_dropped_with_named_warnings(tmp_path: Path) -> None:
    shapes = [poly("F", [[10, "abc"], [20, 10], [20, 18]]), {**poly("E", [[1, 1], [5, 1], [5, 5]]),
                                                            "label": None},
              {**poly("F", [[1, 1], [5, 1], [5, 5]]), "flags": [1]}, poly("F", [[1, 1], [9, 1], [9, 9]])]
    path = _labelme(tmp_path / "src", shapes=shapes)
    result = read_labelme(tmp_path / "src")
    (item,) = result.items
    assert [s.label for s in item.shapes] == ["F"]  # no class named "None"
    warnings = _warnings(result)
    assert all(w.startswith(f"{path}: ") for w in warnings) and len(warnings) == 3
    assert "shapes[0].points[0][1]: must be a number, got 'abc'" in warnings[0]
    assert "shapes[1].label: must be a string, got null" in warnings[1]
    assert "shapes[2].flags: must be an object" in warnings[2]


@pytest.mark.parametrize(("value", "fragment"), [
    (1e300, "imageWidth: 1e+300 is outside [1, 1000000]"),
    (10**30, "imageWidth: 1000000000000000000000000000000 is outside"),
    ("640", "imageWidth: must be an integer, got '640'"),
    (-5, "imageWidth: -5 is outside"),
])
def test_labelme_huge_or_wrong_image_sizes(tmp_path: Path, value: Any, fragment: str) -> None:
    path = _labelme(tmp_path / "src", imageWidth=value)
    assert fragment in _skipped(read_labelme(tmp_path / "src"), str(path))


def test_labelme_infinity_size_is_refused_as_not_json(tmp_path: Path) -> None:
    path = _labelme(tmp_path / "src")
    path.write_text(path.read_text().replace('"imageWidth": 64', '"imageWidth": Infinity'))
    assert "Infinity is not valid JSON" in _skipped(read_labelme(tmp_path / "src"), str(path))


def test_via_attributes_as_a_list_and_non_numbers_are_named(tmp_path: Path) -> None:
    doc = _via_doc(region_attributes=["F"])
    doc["b.png1"] = _via_doc(shape={"name": "rect", "x": "abc", "y": 1, "width": 5, "height": 5})[
        "a.png123"]
    path = _via(tmp_path / "src", doc)
    result = read_via(path)
    warnings = _warnings(result)
    assert len(warnings) == 2 and all(w.startswith(f"{path}: a.png: ") for w in warnings)
    assert "a.png123.regions[0].region_attributes: must be an object, got ['F']" in warnings[0]
    assert "b.png1.regions[0].shape_attributes.x: is not a number: 'abc'" in warnings[1]


def test_via_regions_and_file_attributes_of_the_wrong_type(tmp_path: Path) -> None:
    doc = _via_doc()
    doc["a.png123"]["file_attributes"] = ["P1"]
    doc["b.png1"] = {**_via_doc()["a.png123"], "regions": "none"}
    path = _via(tmp_path / "src", doc)
    result = read_via(path)
    assert not result.items and len(result.skipped) == 2
    assert _skipped(result, str(path), "a.png123.file_attributes: must be an object, got ['P1']")
    assert _skipped(result, str(path), "b.png1.regions: must be a list or an object of regions, got 'none'")


# ----------------------------------------------------------------------------- COCO


_ANN = _coco_doc()["annotations"][0]


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"annotations": [_ANN, {**_ANN, "bbox": [0, 0, 5, 5]}]},
     "annotations[1].id: duplicate annotation id 1 (also annotations[0].id)"),
    ({"categories": [{"id": 1, "name": "F"}, {"id": 1, "name": "E"}]},
     "categories[1].id: duplicate category id 1 (also categories[0].id)"),
    ({"categories": [{"id": 1, "name": None}]}, "categories[0].name: must be a string, got null"),
    ({"images": [{"id": 1, "file_name": "a.png"}, {"id": 1, "file_name": "b.png"}]},
     "images[1].id: duplicate image id 1"),
    ({"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "a.png"}]},
     "images[1].file_name: duplicate image file_name 'a.png'"),
    ({"images": [{"id": 1, "file_name": "a.png", "width": 1e300, "height": 48}]},
     "images[0].width: 1e+300 is outside"),
    ({"annotations": [{"id": 1, "image_id": "1", "category_id": 1}]},
     "annotations[0].image_id: must be an integer, got '1'"),
])
def test_coco_structure_errors_name_the_record(tmp_path: Path, changes: dict[str, Any],
                                               fragment: str) -> None:
    path = _coco(tmp_path / "src", _coco_doc(**changes))
    _raises(path, fragment, call=lambda: read_coco(path))


def test_coco_rle_of_the_wrong_size_or_malformed_is_dropped_with_a_warning(tmp_path: Path) -> None:
    good = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]}
    anns = [
        {**good, "id": 2, "segmentation": {"size": [10, 10], "counts": [0, 100]}},  # wrong size
        {**good, "id": 3, "segmentation": {"size": [48, 64], "counts": [5, -5, 3072]}},
        {**good, "id": 4, "segmentation": {"size": [48, 64], "counts": [5, 10]}},  # short
        {**good, "id": 5, "segmentation": {"size": [48, 64], "counts": "\u00e9\u00e9"}},
        good,
    ]
    path = _coco(tmp_path / "src", _coco_doc(annotations=anns))
    result = read_coco(path)
    warnings = _warnings(result)
    assert [s.kind for s in result.items[0].shapes] == ["rectangle"]
    assert len(warnings) == 4 and all(w.startswith(f"{path}: annotations[") for w in warnings)
    assert "RLE size [10, 10] differs from the image size [48, 64]" in warnings[0]
    assert "negative run length" in warnings[1]
    assert "runs sum to 15, not 48x64 = 3072 pixels" in warnings[2]
    assert "outside the COCO alphabet" in warnings[3]


# ----------------------------------------------------------------------------- AASCE CSV


def _aasce(root: Path, row: list[str], angles: list[str] | None = None) -> None:
    write_png(root / "images" / "x-1 A AP.png", 40, 80)
    (root / "filenames.csv").write_text("x-1 A AP.png\n")
    (root / "landmarks.csv").write_text(",".join(row) + "\n")
    if angles is not None:
        (root / "angles.csv").write_text(",".join(angles) + "\n")


def test_aasce_non_numbers_name_file_row_and_column(tmp_path: Path) -> None:
    row = ["0.5"] * 136
    row[70] = "abc"
    _aasce(tmp_path, row)
    line = _skipped(read_aasce(tmp_path), "landmarks.csv")
    assert "row 1 (x-1 A AP.png), column y3: 'abc' is not a number" in line
    row[70], row[3] = "0.5", "nan"
    _aasce(tmp_path, row, ["1", "abc", "3"])
    assert "column x4: nan is not a finite number" in _skipped(read_aasce(tmp_path), "landmarks.csv")
    row[3] = "0.5"
    _aasce(tmp_path, row, ["1", "abc", "3"])
    line = _skipped(read_aasce(tmp_path), str(tmp_path / "angles.csv"))
    assert "row 1 (x-1 A AP.png), column angle 2: 'abc' is not a number" in line


# ----------------------------------------------------------------------------- datasets


def test_hand_made_dataset_missing_fields_name_annotations_json_and_record(dataset: Path,
                                                                            tmp_path: Path) -> None:
    path = dataset / ANNOTATIONS_FILE
    coco = json.loads(path.read_text())
    del coco["annotations"][2]["category_id"]
    path.write_text(json.dumps(coco))
    for call in (lambda: make_splits(dataset, SplitConfig(test_fraction=0.34, folds=2)),
                 lambda: export_dataset(dataset, tmp_path / "out", "labelme")):
        _raises(path, "annotations[2].category_id: missing", call=call)
    del coco["images"][0]["id"]
    path.write_text(json.dumps(coco))
    _raises(path, "images[0].id: missing", call=lambda: load_dataset(dataset))


def test_nan_never_reaches_a_json_file(tmp_path: Path, dataset: Path) -> None:
    metrics = tmp_path / "m.json"
    atomic_write_json(metrics, {"AP": float("nan"), "per": [float("inf"), 1.0]})
    assert json.loads(metrics.read_text()) == {"AP": None, "per": [None, 1.0]}  # standard JSON
    with pytest.raises(ValueError, match="refusing to write NaN"):
        atomic_write_json(tmp_path / "a.json", {"x": float("nan")}, strict=True)
    records = load_dataset(dataset)
    before = (dataset / ANNOTATIONS_FILE).read_bytes()
    records.annotations[0]["bbox"][0] = float("nan")
    with pytest.raises(ValueError, match=r"annotations\.json: refusing to write NaN"):
        records.save()
    assert (dataset / ANNOTATIONS_FILE).read_bytes() == before  # the old file is untouched


def test_export_keeps_same_named_images_and_pixel_spacing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name in ("x.png", "x.jpg"):
        write_png(src / name, 64, 48)
        doc = labelme_doc(name, 64, 48, [poly("F", [[10, 10], [20, 10], [20, 18]])])
        doc["pixel_spacing_mm"] = [0.25, 0.5]
        _write(src / f"{name}.json", doc)
    ingest(src, tmp_path / "ds", IngestOptions(format="labelme"))
    assert export_dataset(tmp_path / "ds", tmp_path / "out", "labelme") == 2
    docs = sorted((tmp_path / "out").rglob("*.json"))
    assert len(docs) == 2
    for path in docs:
        doc = json.loads(path.read_text())
        assert doc["pixel_spacing_mm"] == [0.25, 0.5] and (path.parent / doc["imagePath"]).is_file()
    again = ingest(tmp_path / "out", tmp_path / "ds2", IngestOptions(format="labelme"))
    assert again.images == 2 and again.annotations == 2


def test_latin1_file_name_is_skipped_with_a_reason_not_a_codec_error(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_png(src / "ok.png")
    os.rename(src / "ok.png", os.fsencode(src) + b"/caf\xe9.png")
    write_png(src / "ok.png")
    report = ingest(src, tmp_path / "ds", IngestOptions(format="images"))
    assert report.images == 1
    (skipped,) = report.skipped
    assert skipped["file"].endswith("caf\\xe9.png") and "not valid UTF-8" in skipped["reason"]
    json.loads((tmp_path / "ds" / "ingest_report.json").read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- file names


def test_atomic_temp_names_fit_beside_a_long_target(tmp_path: Path) -> None:
    long_name = "a" * 240 + ".json"  # 245 bytes: the old ".<name>.XXXXXXXX.json" temp name overflowed
    atomic_write_json(tmp_path / long_name, {"ok": 1})
    assert json.loads((tmp_path / long_name).read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == [long_name]
    too_long = tmp_path / ("b" * 300 + ".png")
    with (pytest.raises(InputError, match="file name of 304 bytes is longer than the filesystem allows"),
          atomic_path(too_long)):
        pass


# ----------------------------------------------------------------------------- results files


def _results_dataset(dataset: Path, tmp_path: Path, entries: list[dict[str, Any]]) -> Path:
    path = tmp_path / "pred.json"
    path.write_text(json.dumps(entries))
    return path


def test_box_only_results_evaluate_boxes_and_measure_asks_for_masks(dataset: Path, tmp_path: Path) -> None:
    from spinekit.clinical.measure import measure_dataset
    from spinekit.engine.evaluate import evaluate_predictions

    records = load_dataset(dataset)
    anns = records.annotations
    path = _results_dataset(dataset, tmp_path, [
        {"image_id": a["image_id"], "category_id": a["category_id"], "score": 0.9, "bbox": a["bbox"]}
        for a in anns])
    metrics = evaluate_predictions(path, dataset, split="all", out=tmp_path / "metrics.json")
    assert metrics["segm"] is None and metrics["bbox"]["AP"] == pytest.approx(1.0)
    _raises(path, "entry 0: no 'segmentation': measure needs instance masks",
            call=lambda: measure_dataset(dataset, predictions=path))


@pytest.mark.parametrize(("segmentation", "fragment"), [
    ({"size": [48, 64], "counts": [5, 10]}, "runs sum to 15, not 48x64"),
    ({"size": [48, 64], "counts": [3000, -10, 82]}, "negative run length"),
    ({"size": [48, 64], "counts": "\u00ff\u00ff"}, "outside the COCO alphabet"),
    ({"size": [48, 64], "counts": "0" * 13 + "1"}, "runs sum to"),
    ({"size": [10, 10], "counts": [100]}, "differs from the image size [48, 64]"),
])
def test_malformed_rle_never_reaches_the_c_decoder(dataset: Path, tmp_path: Path,
                                                   segmentation: dict[str, Any], fragment: str) -> None:
    from spinekit.engine.evaluate import evaluate_predictions

    path = _results_dataset(dataset, tmp_path, [
        {"image_id": 1, "category_id": 1, "score": 0.9, "segmentation": segmentation}])
    _raises(path, "entry 0: segmentation: ", fragment,
            call=lambda: evaluate_predictions(path, dataset, split="all"))


def test_unknown_categories_are_refused_by_evaluate_and_measure_alike(dataset: Path, tmp_path: Path) -> None:
    from spinekit.clinical.measure import measure_dataset
    from spinekit.engine.evaluate import evaluate_predictions

    path = _results_dataset(dataset, tmp_path, [
        {"image_id": 1, "category_id": 77, "score": 0.9,
         "segmentation": {"size": [48, 64], "counts": [3072]}}])
    for call in (lambda: evaluate_predictions(path, dataset, split="all"),
                 lambda: measure_dataset(dataset, predictions=path)):
        _raises(path, "entry 0: category_id 77 is not a category of the dataset", call=call)


# ----------------------------------------------------------------------------- property-based fuzz

HOSTILE = [None, True, -1, 0, 10**30, 1e300, "abc", "", "\udce9", [], {}, [[1, 2]], {"x": 1},
           float("nan"), float("inf"), json.loads("[" * 80 + "]" * 80)]
DELETE = object()


def _paths(doc: Any) -> list[tuple[Any, ...]]:
    """Every key/index path inside ``doc`` (iteratively)."""
    out: list[tuple[Any, ...]] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [((), doc)]
    while stack:
        path, value = stack.pop()
        children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(
            value, list) else []
        for key, child in children:
            out.append((*path, key))
            stack.append(((*path, key), child))
    return sorted(out, key=repr)


def _mutate(doc: Any, data: st.DataObject) -> Any:
    doc = json.loads(json.dumps(doc))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(doc)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        value = data.draw(st.sampled_from([*HOSTILE, DELETE]))
        if value is DELETE:
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(value)  # never share (and later mutate) HOSTILE's values
    return doc


def _dump(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=True)  # NaN/Infinity as the non-JSON literals


def _check_result(result: ReadResult) -> None:
    for item in result.items:
        assert item.width is None or (isinstance(item.width, int) and item.width > 0)
        assert item.height is None or (isinstance(item.height, int) and item.height > 0)
        for shape in item.shapes:
            assert isinstance(shape.label, str) and shape.label.strip()
            shape.label.encode("utf-8")
            assert shape.points and all(math.isfinite(v) for p in shape.points for v in p)


FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.data())
def test_fuzz_labelme(tmp_path: Path, data: st.DataObject) -> None:
    path = _labelme(tmp_path / "lm")
    doc = json.loads(path.read_text())
    doc["shapes"].append({**poly("P", [[5, 5]], "point"), "group_id": 1, "description": "x"})
    path.write_text(_dump(_mutate(doc, data)))
    try:
        result = read_labelme(tmp_path / "lm")
    except InputError:
        return
    _check_result(result)


@FUZZ
@given(data=st.data())
def test_fuzz_via(tmp_path: Path, data: st.DataObject) -> None:
    doc = _via_doc()
    doc["a.png123"]["regions"].append({"shape_attributes": {"name": "ellipse", "cx": 9, "cy": 9, "rx": 3,
                                                            "ry": 2, "theta": 0.5},
                                       "region_attributes": {"label": "E", "side": {"left": True}}})
    path = _via(tmp_path / "via", {"_via_settings": {"core": {"default_filepath": ""}},
                                   "_via_img_metadata": doc})
    path.write_text(_dump(_mutate(json.loads(path.read_text()), data)))
    try:
        result = read_via(path)
    except InputError:
        return
    _check_result(result)


@FUZZ
@given(data=st.data())
def test_fuzz_coco(tmp_path: Path, data: st.DataObject) -> None:
    doc = _coco_doc()
    doc["annotations"].append({"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 1, "bbox": [0, 0, 4, 4],
                               "segmentation": {"size": [48, 64], "counts": [100, 20, 2952]},
                               "attributes": {"level": "L4"}})
    doc["images"][0]["points"] = [{"label": "tip", "x": 3, "y": 4}]
    doc["images"][0]["pixel_spacing_mm"] = [0.5, 0.5]
    path = _coco(tmp_path / "coco", doc)
    path.write_text(_dump(_mutate(doc, data)))
    try:
        result = read_coco(path)
    except InputError:
        return
    _check_result(result)


@FUZZ
@given(data=st.data())
def test_fuzz_dataset_annotations_json(dataset: Path, data: st.DataObject) -> None:
    path, original = dataset / ANNOTATIONS_FILE, dataset / "original.json"
    if not original.exists():  # the fixture is shared by every example: keep the valid file
        original.write_bytes(path.read_bytes())
    coco = json.loads(original.read_text())
    coco["annotations"] = coco["annotations"][:3]
    path.write_text(_dump(_mutate(coco, data)))
    try:
        records = load_dataset(dataset)
    except InputError:
        return
    by_image = records.annotations_by_image()
    assert sum(len(v) for v in by_image.values()) == len(records.annotations)
    assert all(isinstance(n, str) for n in records.category_names().values())
    boxes = [a["bbox"] for a in records.annotations if a.get("bbox") is not None]
    assert np.all(np.isfinite(np.asarray(boxes, dtype=np.float64)))
