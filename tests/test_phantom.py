"""Tests of the built-in ultrasound phantom (spinekit.data.phantom)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from spinekit.data.ingest import IngestOptions, ingest
from spinekit.data.phantom import (
    FULL_LABELS,
    LABELS,
    LOCAL_LABELS,
    PATIENT_PATTERN,
    SUMMARY_FILE,
    PhantomConfig,
    PhantomSummary,
    make_ultrasound_facet_phantom,
)
from spinekit.data.phantom_anatomy import patient_geometry, sample_patient
from spinekit.data.phantom_echo import TARGET_LABEL
from spinekit.data.phantom_render import fan_mask, header_height
from spinekit.data.records import load_dataset
from spinekit.errors import InputError
from spinekit.geometry import polygon_area, rasterize

SMALL = PhantomConfig(width=320, height=240, negative_fraction=0.25)
N_SMALL = 8


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> PhantomSummary:
    out = tmp_path_factory.mktemp("phantom") / "ph"
    return make_ultrasound_facet_phantom(out, n=N_SMALL, seed=11, config=SMALL)


def _doc(summary: PhantomSummary, variant: str, name: str) -> dict[str, Any]:
    return json.loads((summary.folder(variant) / f"{name}.json").read_text())


def _polygons(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The polygon shapes of a LabelMe document (the needle-target points left out)."""
    return [s for s in doc["shapes"] if s["shape_type"] != "point"]


def _pixels(summary: PhantomSummary, name: str) -> np.ndarray:
    return np.asarray(Image.open(summary.folder("full") / f"{name}.png"))


def _segments_cross(p1: np.ndarray, p2: np.ndarray, q1: np.ndarray, q2: np.ndarray) -> bool:
    def orient(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
        return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    d1, d2 = orient(q1, q2, p1), orient(q1, q2, p2)
    d3, d4 = orient(p1, p2, q1), orient(p1, p2, q2)
    return d1 * d2 < 0 and d3 * d4 < 0


def _self_intersects(points: np.ndarray) -> bool:
    n = len(points)
    edges = [(points[i], points[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue  # neighbours through the closing edge
            if _segments_cross(*edges[i], *edges[j]):
                return True
    return False


def test_writes_two_complete_labelme_folders(small: PhantomSummary) -> None:
    assert len(small.frames) == N_SMALL
    for variant in ("local", "full"):
        folder = small.folder(variant)
        assert sorted(p.name for p in folder.glob("*.png")) == sorted(f"{f}.png" for f in small.frames)
        assert sorted(p.name for p in folder.glob("*.json")) == sorted(f"{f}.json" for f in small.frames)
        for name in small.frames:
            with Image.open(folder / f"{name}.png") as img:
                assert img.mode == "L" and img.size == (SMALL.width, SMALL.height)
    for name in small.frames:  # the same frame pixels in both variants
        local = (small.folder("local") / f"{name}.png").read_bytes()
        assert local == (small.folder("full") / f"{name}.png").read_bytes()


def test_labelme_documents_are_valid_polygons(small: PhantomSummary) -> None:
    for variant in ("local", "full"):
        for name in small.frames:
            doc = _doc(small, variant, name)
            assert doc["version"].startswith("5.")
            assert doc["flags"] == {} and doc["imageData"] is None
            assert doc["imagePath"] == f"{name}.png"
            assert (doc["imageWidth"], doc["imageHeight"]) == (SMALL.width, SMALL.height)
            assert {s["shape_type"] for s in doc["shapes"]} <= {"polygon", "point"}
            for shape in _polygons(doc):
                assert shape["shape_type"] == "polygon" and shape["group_id"] is None
                assert shape["description"] == "" and shape["flags"] == {}
                pts = np.asarray(shape["points"], dtype=float)
                assert pts.ndim == 2 and pts.shape[1] == 2 and len(pts) >= 3
                assert (pts[:, 0] >= 0).all() and (pts[:, 0] <= SMALL.width).all()
                assert (pts[:, 1] >= 0).all() and (pts[:, 1] <= SMALL.height).all()
                assert polygon_area(pts) > 4.0
                assert not _self_intersects(pts), f"{variant}/{name}: {shape['label']} self-intersects"


def test_label_sets_of_the_two_variants(small: PhantomSummary) -> None:
    assert set(LOCAL_LABELS) == {"F", "E"} and set(FULL_LABELS) == {"F", "E", "TP", "SP"}
    assert set(LABELS) == set(FULL_LABELS)
    seen: dict[str, set[str]] = {"local": set(), "full": set()}
    for name in small.frames:
        local = _polygons(_doc(small, "local", name))
        full = _polygons(_doc(small, "full", name))
        seen["local"] |= {s["label"] for s in local}
        seen["full"] |= {s["label"] for s in full}
        # local = full restricted to the targets, same polygons; the same target points
        assert local == [s for s in full if s["label"] in LOCAL_LABELS]
        points = [s for s in _doc(small, "local", name)["shapes"] if s["shape_type"] == "point"]
        assert points == [s for s in _doc(small, "full", name)["shapes"] if s["shape_type"] == "point"]
    assert seen["local"] == {"F", "E"}
    assert seen["full"] == {"F", "E", "TP", "SP"}
    assert small.counts["local"] == {k: small.counts["full"][k] for k in LOCAL_LABELS}


def test_negative_frames(small: PhantomSummary) -> None:
    expected = math.floor(N_SMALL * SMALL.negative_fraction + 0.5)
    assert small.negatives == expected == 2
    summary = json.loads((small.out / SUMMARY_FILE).read_text())
    negatives = [f["name"] for f in summary["frames"] if f["negative"]]
    assert len(negatives) == expected
    for name in small.frames:
        local = _doc(small, "local", name)["shapes"]
        full_labels = [s["label"] for s in _polygons(_doc(small, "full", name))]
        if name in negatives:
            assert local == []
            assert "F" not in full_labels and "E" not in full_labels
        else:
            assert full_labels.count("E") == 1 and 1 <= full_labels.count("F") <= 2


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    cfg = PhantomConfig(width=192, height=144, negative_fraction=0.34)
    a = make_ultrasound_facet_phantom(tmp_path / "a", n=3, seed=5, config=cfg)
    b = make_ultrasound_facet_phantom(tmp_path / "b", n=3, seed=5, config=cfg)
    c = make_ultrasound_facet_phantom(tmp_path / "c", n=3, seed=6, config=cfg)
    files = sorted(p.relative_to(a.out) for p in a.out.rglob("*") if p.is_file())
    assert len(files) == 1 + 2 * 2 * 3
    assert files == sorted(p.relative_to(b.out) for p in b.out.rglob("*") if p.is_file())
    for rel in files:
        assert (a.out / rel).read_bytes() == (b.out / rel).read_bytes(), rel
    for name in a.frames:
        png = Path("full") / f"{name}.png"
        assert (a.out / png).read_bytes() != (c.out / png).read_bytes()
    assert a.patients != c.patients


def test_patients_grouped_by_file_name(small: PhantomSummary) -> None:
    groups: dict[str, list[str]] = {}
    for name in small.frames:
        match = re.match(PATIENT_PATTERN, name)
        assert match is not None and re.fullmatch(r"P\d{3}_F\d{3}", name)
        groups.setdefault(match.group(1), []).append(name)
    assert len(groups) == math.ceil(N_SMALL / SMALL.frames_per_patient) == len(small.patients)
    assert all(len(frames) == SMALL.frames_per_patient for frames in groups.values())
    summary = json.loads((small.out / SUMMARY_FILE).read_text())
    spacing = {p["patient_id"]: p["pixel_spacing_mm"] for p in summary["patients"]}
    for frame in summary["frames"]:  # one depth setting per patient, patients differ
        assert frame["pixel_spacing_mm"] == spacing[frame["patient_id"]]
    assert len(set(spacing.values())) == len(spacing)
    names = [p["name"] for p in summary["patients"]]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"[A-Z]+\^[A-Z]+ \d{5}", name) for name in names)


def test_patient_count_is_configurable(tmp_path: Path) -> None:
    cfg = PhantomConfig(width=160, height=120, patients=2, negative_fraction=0.0)
    summary = make_ultrasound_facet_phantom(tmp_path / "p", n=5, seed=1, config=cfg)
    assert [f[:4] for f in summary.frames] == ["P001"] * 3 + ["P002"] * 2
    assert summary.negatives == 0


def test_header_text_outside_fan_image_inside(small: PhantomSummary) -> None:
    for name in small.frames:
        img = _pixels(small, name)
        fan = _fan_of(small, name)
        band = header_height(SMALL.width, SMALL.height)
        assert not fan[:band].any()
        assert (img[:band] > 150).sum() > 50  # burned-in patient name and date
        assert img[fan].mean() > 15
        corner = img[-SMALL.height // 8 :, : SMALL.width // 8]  # below the fan, left of the text
        assert corner.max() == 0


def _fan_of(summary: PhantomSummary, name: str) -> np.ndarray:
    """Fan mask of a frame: recomputed from the patient's settings."""
    patient = int(name[1:4]) - 1
    rng = np.random.default_rng(np.random.SeedSequence([summary.seed, 1, patient]))
    return fan_mask(patient_geometry(sample_patient(rng), SMALL.width, SMALL.height))


def _region_mean(img: np.ndarray, poly: np.ndarray, dy: float = 0.0) -> float:
    mask = rasterize([poly + np.array([0.0, dy])], img.shape[0], img.shape[1]).astype(bool)
    return float(img[mask].mean())


def test_bone_is_bright_with_a_shadow_below(small: PhantomSummary) -> None:
    checked = 0
    for name in small.frames:
        img = _pixels(small, name).astype(float)
        fan = _fan_of(small, name)
        for shape in _polygons(_doc(small, "full", name)):
            poly = np.asarray(shape["points"])
            height = float(np.ptp(poly[:, 1]))
            rows = slice(int(poly[:, 1].min()), int(poly[:, 1].max()) + 1)
            same_depth = float(img[rows][fan[rows]].mean())
            assert _region_mean(img, poly) > 1.2 * same_depth, (name, shape["label"])
            if shape["label"] in ("F", "SP", "TP"):
                below = _region_mean(img, poly, dy=height + 8)
                above = _region_mean(img, poly, dy=-(height + 4))
                assert below < 0.6 * above, (name, shape["label"], below, above)
                checked += 1
    assert checked >= 10


def test_a_plain_threshold_does_not_segment_facets(small: PhantomSummary) -> None:
    best = 0.0
    for threshold in range(60, 250, 10):
        inter = union = 0
        for name in small.frames:
            img = _pixels(small, name)
            polys = [
                np.asarray(s["points"]) for s in _doc(small, "local", name)["shapes"] if s["label"] == "F"
            ]
            truth = rasterize(polys, SMALL.height, SMALL.width).astype(bool)
            band = header_height(SMALL.width, SMALL.height)
            guess = img > threshold
            guess[:band] = False
            inter += int((truth & guess).sum())
            union += int((truth | guess).sum())
        best = max(best, inter / max(union, 1))
    assert best < 0.35


def test_default_size_frame(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    summary = make_ultrasound_facet_phantom(
        tmp_path / "big", n=2, seed=3, progress=lambda done, total: calls.append((done, total))
    )
    assert calls == [(1, 2), (2, 2)]
    with Image.open(summary.folder("local") / f"{summary.frames[0]}.png") as img:
        assert img.mode == "L" and img.size == (960, 720)
    doc = _doc(summary, "local", summary.frames[0])
    assert (doc["imageWidth"], doc["imageHeight"]) == (960, 720)
    assert {s["label"] for s in _polygons(doc)} == {"F", "E"}
    facets = [np.asarray(s["points"]) for s in doc["shapes"] if s["label"] == "F"]
    assert all(2000 < polygon_area(p) < 20000 for p in facets)  # joint-sized, not a blob or the fan
    assert summary.seconds_per_frame < 5.0


def test_rerun_replaces_an_earlier_phantom(tmp_path: Path) -> None:
    cfg = PhantomConfig(width=160, height=120)
    out = tmp_path / "ph"
    make_ultrasound_facet_phantom(out, n=5, seed=1, config=cfg)
    summary = make_ultrasound_facet_phantom(out, n=3, seed=1, config=cfg)
    for variant in ("local", "full"):
        assert sorted(p.stem for p in summary.folder(variant).glob("*.png")) == sorted(summary.frames)
    assert json.loads((out / SUMMARY_FILE).read_text())["n"] == 3


def test_bad_settings_raise_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="at least 1"):
        make_ultrasound_facet_phantom(tmp_path / "a", n=0, seed=1)
    with pytest.raises(InputError, match="negative_fraction"):
        make_ultrasound_facet_phantom(tmp_path / "b", n=2, seed=1, config=PhantomConfig(negative_fraction=2))
    with pytest.raises(InputError, match="patients"):
        make_ultrasound_facet_phantom(tmp_path / "c", n=2, seed=1, config=PhantomConfig(patients=3))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not empty"):
        make_ultrasound_facet_phantom(foreign, n=1, seed=1, config=PhantomConfig(width=160, height=120))
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert not (foreign / "local").exists()


def _edge_distance(ring: np.ndarray, point: np.ndarray) -> float:
    """Distance from ``point`` ``(2,)`` to the closed polygon ``ring`` ``(N, 2)``."""
    a, b = ring, np.roll(ring, -1, axis=0)
    d = b - a
    t = np.clip(((point - a) * d).sum(axis=1) / np.maximum((d * d).sum(axis=1), 1e-12), 0.0, 1.0)
    return float(np.min(np.hypot(*(a + t[:, None] * d - point).T)))


def test_needle_targets_on_the_dorsal_edge_of_the_facets(small: PhantomSummary) -> None:
    """Every positive frame has one needle target per visible facet cleft, on the facet
    polygon's probe-side edge, in both variants; negatives have none; the spacing is in
    the document and ingest keeps the points as image points, not as a class."""
    summary = json.loads((small.out / SUMMARY_FILE).read_text())
    frames = {f["name"]: f for f in summary["frames"]}
    assert TARGET_LABEL in summary["points"]
    total = 0
    for name in small.frames:
        doc = _doc(small, "local", name)
        points = [s for s in doc["shapes"] if s["shape_type"] == "point"]
        assert all(p["label"] == TARGET_LABEL and len(p["points"]) == 1 for p in points)
        assert [p["points"][0] for p in points] == frames[name]["needle_targets"]
        assert doc["pixel_spacing_mm"] == [frames[name]["pixel_spacing_mm"]] * 2
        facets = [np.asarray(s["points"]) for s in _polygons(doc) if s["label"] == "F"]
        if frames[name]["negative"]:
            assert points == []
        assert len(points) <= len(facets)
        for p in points:
            point = np.asarray(p["points"][0])
            # on a facet polygon's edge (coordinates are stored to 0.01 px) ...
            facet = min(facets, key=lambda f: _edge_distance(f, point))
            assert _edge_distance(facet, point) < 0.05, (name, point)
            # ... on its probe-side (upper) half at that x
            inside = rasterize([facet], SMALL.height, SMALL.width).astype(bool)[:, int(point[0])]
            rows = np.flatnonzero(inside)
            assert rows.size and abs(point[1] - rows.min()) <= 1.0, (name, point, rows.min())
        total += len(points)
    assert total >= small.n - small.negatives  # at least one target per positive frame
    dataset = ingest(small.folder("local"), small.out / "ds", IngestOptions(format="labelme"))
    records = load_dataset(small.out / "ds")
    assert dataset.images == N_SMALL and {c["name"] for c in records.categories} == {"F", "E"}
    kept = [p for img in records.images for p in img.get("points", [])]
    assert len(kept) == total and {p["label"] for p in kept} == {TARGET_LABEL}
    assert all(img["pixel_spacing_mm"] is not None for img in records.images)
