"""``spinekit measure``: Cobb angles from expert corners, lateral lumbar measurements from
ingested level masks and from predicted RLE masks, flags for bad input, and the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from spinekit.cli.main import app
from spinekit.clinical.cobb import cobb_angles
from spinekit.clinical.measure import COLUMNS, measure_dataset, measure_images, write_csv
from spinekit.clinical.vertebrae import AP_LEVELS
from spinekit.data.ingest import IngestOptions, ingest
from spinekit.data.records import load_dataset
from spinekit.errors import InputError
from spinekit.evaluation.results import encode_mask

LUMBAR = ("L1", "L2", "L3", "L4", "L5")


def _spine_corners(tilts_deg: list[float]) -> np.ndarray:
    """Corners ``(V, 4, 2)`` TL, TR, BL, BR of V bodies 40 x 16 px stacked 22 px apart,
    each tilted by its angle (integer-rounded to 2 decimals like the ingested data)."""
    out = []
    for k, tilt in enumerate(tilts_deg):
        t = np.deg2rad(tilt)
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        local = np.array([[-20, -8], [20, -8], [-20, 8], [20, 8]], dtype=np.float64)
        out.append(local @ rot.T + np.array([100.0 + 3 * np.sin(k / 3), 30.0 + 22 * k]))
    return np.round(np.asarray(out), 2)


def _ap_annotation(ann_id: int, image_id: int, level: str, corners: np.ndarray) -> dict[str, Any]:
    ring = corners[[0, 1, 3, 2]]
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
            "segmentation": [ring.reshape(-1).tolist()], "corners": corners.tolist(),
            "attributes": {"level": level}}


def _write_dataset(root: Path, images: list[dict[str, Any]], anns: list[dict[str, Any]],
                   fmt: str = "aasce") -> Path:
    root.mkdir(parents=True)
    coco = {"info": {"image_root": ".", "format": fmt}, "images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "vertebra"}]}
    (root / "annotations.json").write_text(json.dumps(coco), encoding="utf-8")
    return root


def _image(image_id: int, name: str) -> dict[str, Any]:
    return {"id": image_id, "file_name": name, "width": 200, "height": 420,
            "patient_id": f"p{image_id}", "pixel_spacing_mm": None}


def _ap_dataset(tmp_path: Path) -> tuple[Path, np.ndarray]:
    tilts = [0, 2, 5, 9, 12, 10, 6, 1, -4, -9, -13, -15, -11, -6, -2, 1, 3]
    corners = _spine_corners([float(t) for t in tilts])
    anns = [_ap_annotation(k + 1, 1, lv, corners[k]) for k, lv in enumerate(AP_LEVELS)]
    anns.append(_ap_annotation(100, 2, "T5", corners[4]))  # one vertebra only
    flipped = corners[::-1].copy()  # the same spine, head down: T1 at the bottom
    anns += [_ap_annotation(200 + k, 3, lv, flipped[k]) for k, lv in enumerate(AP_LEVELS)]
    images = [_image(1, "a.png"), _image(2, "one.png"), _image(3, "flipped.png")]
    return _write_dataset(tmp_path / "ap", images, anns), corners


def test_ap_cobb_angles_from_corners(tmp_path: Path) -> None:
    dataset, corners = _ap_dataset(tmp_path)
    rows = {r["image"]: r for r in measure_dataset(dataset)}
    want = cobb_angles(corners, image_height=420)
    good = rows["a.png"]
    assert good["view"] == "ap" and good["n_vertebrae"] == 17 and good["flags"] == ""
    got = [good["cobb_1_deg"], good["cobb_2_deg"], good["cobb_3_deg"]]
    np.testing.assert_allclose(got, want.angles_deg, atol=1e-3)
    assert got[0] > 20  # the constructed curve: +12 deg (T5) to -15 deg (T12)
    (u, lo) = want.end_vertebrae[0]
    assert good["cobb_end_vertebrae"].startswith(f"{AP_LEVELS[u]}-{AP_LEVELS[lo]}")
    one = rows["one.png"]
    assert "at least 2" in one["flags"] and one["cobb_1_deg"] is None
    flipped = rows["flipped.png"]
    assert "inverted" in flipped["flags"] and flipped["cobb_1_deg"] is None


def test_ap_from_polygons_without_corners(tmp_path: Path) -> None:
    dataset, corners = _ap_dataset(tmp_path)
    coco = json.loads((dataset / "annotations.json").read_text())
    for ann in coco["annotations"]:
        ann.pop("corners")
    coco["info"]["format"] = "labelme"  # no format fallback for the view
    (dataset / "annotations.json").write_text(json.dumps(coco))
    rows = {r["image"]: r for r in measure_dataset(dataset)}
    row = rows["a.png"]
    assert row["view"] == "ap" and row["n_vertebrae"] == 17
    want = cobb_angles(corners, image_height=420).angles_deg[0]
    assert abs(row["cobb_1_deg"] - want) < 2.0  # corners refitted on rasterised masks
    assert rows["one.png"]["view"] is None and "undetermined" in rows["one.png"]["flags"]


def _rect(shape: tuple[int, int], centre: tuple[float, float], size: tuple[float, float],
          angle: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    t = np.deg2rad(angle)
    dx, dy = xx - centre[0], yy - centre[1]
    u, v = dx * np.cos(t) + dy * np.sin(t), -dx * np.sin(t) + dy * np.cos(t)
    return (np.abs(u) <= size[0] / 2) & (np.abs(v) <= size[1] / 2)


def _lordotic_levels(total_deg: float) -> np.ndarray:
    """Label mask ``(240, 260)`` uint8 (value k+1 = L(k+1)) of L1..L5 rectangles 40 x 25 px
    on an arc bowing to the image left; L1 upper and L5 lower endplates differ by ``total_deg``."""
    step = np.deg2rad(total_deg / 4)
    radius = 33.0 / step
    label = np.zeros((240, 260), dtype=np.uint8)
    for k in range(5):
        alpha = (2 - k) * step
        pos = (80.0 + radius - radius * np.cos(alpha), 120.0 - radius * np.sin(alpha))
        label[_rect(label.shape, pos, (40, 25), np.degrees(alpha))] = k + 1
    return label


def _lateral_dataset(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    label = _lordotic_levels(36.0)
    one = np.zeros_like(label)
    one[label == 3] = 3  # only L3 present
    for name, mask in (("spine", label), ("single", one)):
        Image.fromarray(np.full(label.shape, 90, dtype=np.uint8)).save(src / "images" / f"{name}.png")
        Image.fromarray(mask).save(src / "masks" / f"{name}.png")
    doc = {"mask_values": {str(k + 1): lv for k, lv in enumerate(LUMBAR)},
           "pixel_spacing_mm": [0.5, 0.5]}
    (src / "labels.json").write_text(json.dumps(doc), encoding="utf-8")
    out = tmp_path / "lat"
    ingest(src, out, IngestOptions(format="masks", verify_pixels=False))
    return out


def test_lateral_from_ingested_masks(tmp_path: Path) -> None:
    dataset = _lateral_dataset(tmp_path)
    rows = {Path(r["image"]).stem: r for r in measure_dataset(dataset)}
    row = rows["spine"]
    assert row["view"] == "lateral" and row["unit"] == "mm" and row["n_vertebrae"] == 5
    assert abs(row["lordosis_L1_L5_deg"] - 36.0) < 2.0
    assert row["lordosis_L1_S1_deg"] is None
    assert abs(row["body_L3_middle"] - 12.5) < 1.0  # 25 px at 0.5 mm
    single = rows["single"]
    assert single["lordosis_L1_L5_deg"] is None and "L1-L5 lordosis not measured" in single["flags"]


def _predictions(dataset: Path, degenerate: bool) -> Path:
    coco = json.loads((dataset / "annotations.json").read_text())
    image = next(i for i in coco["images"] if "spine" in i["file_name"])
    label = _lordotic_levels(36.0)
    dets = []
    for k in range(5):
        mask = label == k + 1
        if degenerate and k == 2:
            mask = np.zeros_like(mask)
            mask[100, 60:200] = True  # a one-pixel line instead of L3
        dets.append({"image_id": image["id"], "category_id": 1, "score": 0.9 - 0.01 * k,
                     "segmentation": encode_mask(mask)})
    path = dataset.parent / f"pred_{degenerate}.json"
    path.write_text(json.dumps(dets), encoding="utf-8")
    return path


def test_lateral_from_predictions(tmp_path: Path) -> None:
    dataset = _lateral_dataset(tmp_path)
    rows = measure_dataset(dataset, predictions=_predictions(dataset, False))
    by = {Path(r["image"]).stem: r for r in rows}
    row = by["spine"]
    assert row["levels"] == " ".join(LUMBAR) and abs(row["lordosis_L1_L5_deg"] - 36.0) < 2.0
    assert by["single"]["n_vertebrae"] == 0 and "no vertebrae" in by["single"]["flags"]
    bad = {Path(r["image"]).stem: r for r in
           measure_dataset(dataset, predictions=_predictions(dataset, True))}["spine"]
    assert "degenerate" in bad["flags"] and bad["body_L3_middle"] is None


def test_errors_and_csv(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        measure_dataset(tmp_path / "missing")
    dataset, _ = _ap_dataset(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.json"):
        measure_dataset(dataset, predictions=bad)
    rows = measure_dataset(dataset, view="lateral")  # forced wrong view: flags, no crash
    assert all(r["cobb_1_deg"] is None for r in rows)
    path = write_csv(measure_dataset(dataset), tmp_path / "out.csv")
    with open(path, newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert tuple(table[0]) == COLUMNS and len(table) == 3
    assert table[1]["cobb_1_deg"] == "" and table[0]["cobb_1_deg"] != ""


def test_cli_measure(tmp_path: Path) -> None:
    dataset, _ = _ap_dataset(tmp_path)
    out = tmp_path / "m.csv"
    result = CliRunner().invoke(app, ["measure", str(dataset), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 rows written" in result.output and "2 images with flags" in result.output
    assert out.is_file() and out.read_text().count("\n") == 4
    missing = CliRunner().invoke(app, ["measure", str(tmp_path / "nope"), "--out", str(out)])
    assert missing.exit_code == 2


# ---------------------------------------------------------------- bad input, ultrasound


def _growing_spine(flip: bool) -> list[np.ndarray]:
    """17 AP vertebra masks ``(420, 200)`` growing caudally (as real ones do), tilted into a
    gentle curve; ``flip``: the image upside down."""
    masks = []
    for k in range(17):
        centre = (100.0 + 6 * np.sin(k / 3), 20.0 + 22.5 * k)
        mask = _rect((420, 200), centre, (26.0 + 1.5 * k, 11.0 + 0.4 * k), 8 * np.sin(k / 4))
        masks.append(np.flipud(mask) if flip else mask)
    return masks


def _ap_prediction_dataset(tmp_path: Path) -> tuple[Path, Path]:
    """An AP dataset of 5 blank images and predictions: normal, upside down, one vertebra,
    degenerate masks (a line, a pixel) among good ones with holes, and none."""
    root = tmp_path / "apds"
    (root / "images").mkdir(parents=True)
    images = []
    for k, name in enumerate(["normal", "flipped", "single", "degenerate", "nothing"], start=1):
        Image.fromarray(np.zeros((420, 200), np.uint8)).save(root / "images" / f"{name}.png")
        images.append({**_image(k, f"images/{name}.png")})
    _write_dataset_into(root, images)
    good, flipped = _growing_spine(False), _growing_spine(True)
    holed = [m.copy() for m in good]
    for m in holed:
        ys, xs = np.nonzero(m)
        m[int(ys.mean()), int(xs.mean()) - 3 : int(xs.mean()) + 3] = False  # a hole in each body
    line, pixel = np.zeros_like(good[0]), np.zeros_like(good[0])
    line[200, 40:160] = True
    pixel[300, 100] = True
    sets = {1: good, 2: flipped, 3: good[5:6], 4: [*holed[:8], line, pixel, *holed[8:]]}
    dets = [{"image_id": i, "category_id": 1, "score": 0.9, "segmentation": encode_mask(m)}
            for i, masks in sets.items() for m in masks]
    path = tmp_path / "ap_pred.json"
    path.write_text(json.dumps(dets), encoding="utf-8")
    return root, path


def _write_dataset_into(root: Path, images: list[dict[str, Any]]) -> None:
    coco = {"info": {"image_root": ".", "format": "aasce"}, "images": images, "annotations": [],
            "categories": [{"id": 1, "name": "vertebra"}]}
    (root / "annotations.json").write_text(json.dumps(coco), encoding="utf-8")


def test_bad_ap_predictions_are_flagged_never_invented(tmp_path: Path) -> None:
    root, path = _ap_prediction_dataset(tmp_path)
    rows = {Path(r["image"]).stem: r for r in measure_dataset(root, predictions=path, view="ap")}
    normal = rows["normal"]
    assert normal["n_vertebrae"] == 17 and normal["cobb_1_deg"] is not None and normal["flags"] == ""
    flipped = rows["flipped"]
    assert "upside down" in flipped["flags"] and flipped["cobb_1_deg"] is None
    single = rows["single"]
    assert "at least 2" in single["flags"] and single["cobb_1_deg"] is None
    degenerate = rows["degenerate"]
    assert "degenerate masks dropped" in degenerate["flags"] and degenerate["n_vertebrae"] == 17
    assert abs(degenerate["cobb_1_deg"] - normal["cobb_1_deg"]) < 1.0  # holes change nothing
    assert "no vertebrae" in rows["nothing"]["flags"] and rows["nothing"]["cobb_1_deg"] is None
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    blank = measure_dataset(root, predictions=empty, view="ap")
    assert all(r["flags"].startswith("predictions file is empty") for r in blank)
    assert all(r["cobb_1_deg"] is None for r in blank)
    (tmp_path / "none.json").write_text("[]", encoding="utf-8")
    assert all("no vertebrae" in r["flags"] for r in measure_dataset(root, predictions=tmp_path / "none.json",
                                                                     view="ap"))


def test_workers_give_the_same_rows_in_order(tmp_path: Path) -> None:
    root, path = _ap_prediction_dataset(tmp_path)
    serial = measure_dataset(root, predictions=path, view="ap")
    seen: list[tuple[int, int]] = []
    parallel = measure_dataset(root, predictions=path, view="ap", workers=2,
                               progress=lambda done, total: seen.append((done, total)))
    assert [r["image"] for r in parallel] == [r["image"] for r in serial]
    text = write_csv(serial, tmp_path / "s.csv").read_text()
    assert write_csv(parallel, tmp_path / "p.csv").read_text() == text
    assert serial[0]["cobb_1_deg"] is not None and "upside down" in serial[1]["flags"]
    assert seen == [(k, 5) for k in range(1, 6)]
    with pytest.raises(ValueError, match="workers"):
        measure_dataset(root, workers=0)
    records = load_dataset(root)  # a chunk that cannot reach a worker is measured here instead
    records.images[1]["unpicklable"] = lambda: None
    rescued = [m.row for m in measure_images(records, predictions=path, view="ap", workers=2)]
    assert rescued == serial
    out = tmp_path / "cli.csv"
    result = CliRunner().invoke(app, ["measure", str(root), "--predictions", str(path), "--view", "ap",
                                      "--workers", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == text


def _ultrasound_dataset(tmp_path: Path) -> Path:
    from spinekit.data.phantom import PATIENT_PATTERN, PhantomConfig, make_ultrasound_facet_phantom

    cfg = PhantomConfig(negative_fraction=0.25)  # the default 960 x 720 frames
    summary = make_ultrasound_facet_phantom(tmp_path / "ph", n=4, seed=5, config=cfg)
    out = tmp_path / "us"
    ingest(summary.folder("local"), out, IngestOptions(format="labelme", patient_pattern=PATIENT_PATTERN))
    return out


def test_ultrasound_targets_from_expert_masks_and_predictions(tmp_path: Path) -> None:
    from spinekit.clinical.summary import summarize
    from spinekit.geometry import rasterize

    dataset = _ultrasound_dataset(tmp_path)
    rows = measure_dataset(dataset)
    assert {r["view"] for r in rows} == {"ultrasound"}
    positive = [r for r in rows if r["facet_present"]]
    assert len(positive) == 3 and all(r["trusted"] and r["unit"] == "mm" for r in positive)
    assert all(r["target_error_mm"] is not None and r["target_error_mm"] < 5.0 for r in positive)
    negative = next(r for r in rows if not r["facet_present"])
    assert "no facet joint" in negative["flags"] and negative["target_x_px"] is None
    needle = summarize(rows)["needle"]
    assert needle["targets"] == 3 and needle["within_5mm"] == 1.0 and needle["unit"] == "mm"
    # predictions: the expert masks re-encoded; facet without ventral complex in one image,
    # the ventral complex moved above the facets (an upside-down image) in another
    coco = json.loads((dataset / "annotations.json").read_text())
    by_image: dict[int, list[dict[str, Any]]] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    ids = sorted(i for i, anns in by_image.items() if anns)
    dets = []
    for ann in coco["annotations"]:
        image = next(i for i in coco["images"] if i["id"] == ann["image_id"])
        mask = rasterize(ann["segmentation"], image["height"], image["width"])
        if ann["category_id"] == 2 and ann["image_id"] == ids[0]:
            continue  # no ventral complex: not trusted
        if ann["category_id"] == 2 and ann["image_id"] == ids[1]:
            mask = np.roll(mask, -int(np.nonzero(mask)[0].min()) + 2, axis=0)  # to the top
        dets.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "score": 0.9,
                     "segmentation": encode_mask(mask)})
    pred = tmp_path / "us_pred.json"
    pred.write_text(json.dumps(dets), encoding="utf-8")
    by_id = {r["image"]: r for r in measure_dataset(dataset, predictions=pred)}
    names = {i["id"]: i["file_name"] for i in coco["images"]}
    untrusted, inverted, fine = by_id[names[ids[0]]], by_id[names[ids[1]]], by_id[names[ids[2]]]
    assert untrusted["facet_present"] and not untrusted["trusted"] and "not trusted" in untrusted["flags"]
    assert "upside down" in inverted["flags"] and inverted["target_x_px"] is None
    assert fine["trusted"] and fine["target_error_mm"] is not None and fine["target_error_mm"] < 5.0
    out = tmp_path / "us.csv"
    result = CliRunner().invoke(app, ["measure", str(dataset), "--out", str(out), "--predictions",
                                      str(pred), "--overlay", str(tmp_path / "pics")])
    assert result.exit_code == 0, result.output
    assert "needle targets on" in result.output and "4 overlays" in result.output
    pics = sorted((tmp_path / "pics").glob("*.png"))
    assert len(pics) == 4 and all(Image.open(p).size[0] == 960 for p in pics)


def test_overlay_names_are_safe_and_unique() -> None:
    from spinekit.reports.measure_overlay import overlay_name

    taken: set[str] = set()
    assert overlay_name("images/a b.png", taken) == "a_b.png"
    assert overlay_name("other/a b.jpg", taken) == "a_b-2.png"
    assert overlay_name("../../etc/passwd", taken) == "passwd.png"
    assert overlay_name("..\\..\\x.dcm", taken) == "x.png"
    assert overlay_name("", taken) == "image.png"


def test_report_shows_clinical_measurements_only_when_measurable(tmp_path: Path) -> None:
    from spinekit.geometry import rasterize
    from spinekit.reports import build_report

    dataset = _ultrasound_dataset(tmp_path)
    coco = json.loads((dataset / "annotations.json").read_text())
    ids = [img["id"] for img in coco["images"]]
    (dataset / "splits.json").write_text(json.dumps({"version": 1, "test": ids, "folds": [[], []]}))
    sizes = {img["id"]: (img["height"], img["width"]) for img in coco["images"]}
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 0.9, "bbox": a["bbox"],
             "segmentation": encode_mask(rasterize(a["segmentation"], *sizes[a["image_id"]]))}
            for a in coco["annotations"]]
    run = tmp_path / "run"
    (run / "predictions").mkdir(parents=True)
    (run / "predictions" / "test.json").write_text(json.dumps(dets))
    (run / "dataset.json").write_text(json.dumps({"dataset": str(dataset), "split": "test"}))
    page = build_report(run, max_overlays=0).read_text(encoding="utf-8")
    section = page[page.index('<section id="clinical">'):]
    section = section[: section.index("</section>")]
    assert "within 5 mm" in section and "100 %" in section
    assert 1 <= section.count("data:image/jpeg") <= 3
    coco["categories"] = [{"id": 1, "name": "blob"}, {"id": 2, "name": "other"}]
    (dataset / "annotations.json").write_text(json.dumps(coco))
    plain = build_report(run, max_overlays=0).read_text(encoding="utf-8")
    assert 'id="clinical"' not in plain and "Clinical measurements" not in plain


def test_rle_crops_know_when_they_are_one_component() -> None:
    from spinekit.clinical.endplates import endplates_from_mask
    from spinekit.masks import crop_from_rle

    body = _rect((120, 100), (50.0, 60.0), (40.0, 20.0), 7.0)
    whole = crop_from_rle(encode_mask(body))
    assert whole.connected is True and np.array_equal(whole.full(), body)
    specked = body.copy()
    specked[5, 5] = True  # a separate speck: unknown, so the fit labels components
    crop = crop_from_rle(encode_mask(specked))
    assert crop.connected is None and np.array_equal(crop.full(), specked)
    np.testing.assert_array_equal(endplates_from_mask(crop).corners, endplates_from_mask(whole).corners)
    diagonal = np.zeros((10, 10), dtype=bool)
    diagonal[2, 2] = diagonal[3, 3] = True  # 8-connected through a corner
    assert crop_from_rle(encode_mask(diagonal)).connected is True
    apart = np.zeros((10, 10), dtype=bool)
    apart[2, 2] = apart[4, 3] = True  # neighbouring columns, rows two apart
    assert crop_from_rle(encode_mask(apart)).connected is None
