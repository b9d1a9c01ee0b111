"""VIA reader: project files and region exports, VIA 1.x and 2.x, every shape type."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from spinekit.errors import InputError
from spinekit.io.formats.via import ELLIPSE_POINTS, read_via


def _png(path: Path, size: tuple[int, int] = (12, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((size[1], size[0]), dtype=np.uint8)).save(path)
    return path


def _write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _region(shape: dict[str, Any], **attrs: Any) -> dict[str, Any]:
    return {"shape_attributes": shape, "region_attributes": attrs}


ALL_SHAPES = [
    _region({"name": "polygon", "all_points_x": [1, 5, 5], "all_points_y": [1, 1, 4]}, label="vertebra"),
    _region({"name": "polyline", "all_points_x": [0, 3, 6], "all_points_y": [2, 2, 5]}, label="line"),
    _region({"name": "rect", "x": 2, "y": 3, "width": 4, "height": 5}, label="box"),
    _region({"name": "circle", "cx": 6, "cy": 5, "r": 2}, label="disc"),
    _region({"name": "ellipse", "cx": 6, "cy": 5, "rx": 3, "ry": 1, "theta": 0}, label="oval"),
    _region({"name": "point", "cx": 7, "cy": 8}, label="tip"),
]


def _project(entries: dict[str, Any], default_filepath: str = "") -> dict[str, Any]:
    return {
        "_via_settings": {"core": {"default_filepath": default_filepath}, "project": {"name": "p"}},
        "_via_img_metadata": entries,
        "_via_attributes": {"region": {}, "file": {}},
    }


def test_project_file_reads_every_shape_type(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    entry = {
        "filename": "a.png",
        "size": 123,
        "regions": ALL_SHAPES,
        "file_attributes": {"patient_id": "P7", "view": "AP"},
    }
    path = _write(tmp_path / "via_project.json", _project({"a.png123": entry}))
    result = read_via(path)
    assert result.skipped == []
    (item,) = result.items
    assert item.file_name == "a.png"
    assert item.image_path == (tmp_path / "a.png").resolve()
    assert item.patient_id == "P7"
    assert item.width is None and item.height is None  # VIA "size" is bytes, not pixels
    kinds = {s.label: s for s in item.shapes}
    assert kinds["vertebra"].kind == "polygon"
    assert kinds["vertebra"].points == ((1.0, 1.0), (5.0, 1.0), (5.0, 4.0))
    assert kinds["line"].kind == "polyline" and len(kinds["line"].points) == 3
    assert kinds["box"].kind == "rectangle"
    assert kinds["box"].points == ((2.0, 3.0), (6.0, 8.0))
    assert kinds["disc"].kind == "circle"
    assert kinds["disc"].points == ((6.0, 5.0), (8.0, 5.0))
    oval = np.asarray(kinds["oval"].points)
    assert kinds["oval"].kind == "polygon" and len(oval) == ELLIPSE_POINTS
    assert np.allclose(((oval[:, 0] - 6) / 3) ** 2 + ((oval[:, 1] - 5) / 1) ** 2, 1.0)
    assert kinds["tip"].kind == "point" and kinds["tip"].points == ((7.0, 8.0),)
    assert item.extra["file_attributes"] == {"view": "AP"}


def test_rotated_ellipse(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    region = _region({"name": "ellipse", "cx": 0, "cy": 0, "rx": 4, "ry": 1, "theta": math.pi / 2}, label="e")
    path = _write(tmp_path / "v.json", {"k": {"filename": "a.png", "size": 1, "regions": [region]}})
    pts = np.asarray(read_via(path).items[0].shapes[0].points)
    assert np.isclose(np.ptp(pts[:, 1]), 8.0) and np.isclose(np.ptp(pts[:, 0]), 2.0)


def test_export_with_dict_regions_and_attributes(tmp_path: Path) -> None:
    _png(tmp_path / "img" / "b.png")
    regions = {
        "1": _region({"name": "point", "cx": 1, "cy": 2}, **{"class": "cusp", "side": "left"}),
        "0": _region(
            {"name": "rect", "x": 0, "y": 0, "width": 2, "height": 2},
            type="vertebra",
            flags={"fractured": True, "blurred": False, "rotated": True},
            score=3,
        ),
    }
    export = {"b.png9": {"filename": "img/b.png", "size": 9, "regions": regions, "file_attributes": {}}}
    result = read_via(_write(tmp_path / "export.json", export))
    (item,) = result.items
    assert item.file_name == "img/b.png"
    first, second = item.shapes  # dict regions in key order "0", "1"
    assert first.label == "vertebra"
    assert first.attributes == {"flags": "fractured,rotated", "score": "3"}
    assert second.label == "cusp" and second.attributes == {"side": "left"}


def test_label_attribute_choice(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    regions = [
        _region({"name": "point", "cx": 1, "cy": 1}, organ="L1"),  # single attribute: its value
        _region({"name": "point", "cx": 2, "cy": 2}, label="x", level="L2"),
    ]
    path = _write(tmp_path / "v.json", {"k": {"filename": "a.png", "size": 1, "regions": regions}})
    default = read_via(path).items[0]
    assert [s.label for s in default.shapes] == ["L1", "x"]
    assert default.shapes[1].attributes == {"level": "L2"}
    chosen = read_via(path, label_attribute="level").items[0]
    assert [s.label for s in chosen.shapes] == ["L2"]
    assert chosen.shapes[0].attributes == {"label": "x"}
    assert "no label attribute (level)" in str(chosen.extra["warnings"])


def test_bad_regions_become_warnings(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    regions = [
        _region({"name": "polygon", "all_points_x": [1, 2], "all_points_y": [1, 2]}, label="p"),
        _region({"name": "spline"}, label="s"),
        _region({"name": "rect", "x": 1}, label="r"),
        _region({"name": "point", "cx": 1, "cy": 1}),
        _region({"name": "point", "cx": 3, "cy": 3}, label="ok"),
    ]
    path = _write(tmp_path / "v.json", {"k": {"filename": "a.png", "size": 1, "regions": regions}})
    (item,) = read_via(path).items
    assert [s.label for s in item.shapes] == ["ok"]
    warnings = item.extra["warnings"]
    assert isinstance(warnings, list) and len(warnings) == 4
    assert "polygon with 2 points" in warnings[0]
    assert "unsupported shape 'spline'" in warnings[1]


def test_escaping_url_and_missing_images_are_skipped(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _png(src / "good.png")
    _png(tmp_path / "outside.png")
    entries = {
        "1": {"filename": "../outside.png", "size": 1, "regions": []},
        "2": {"filename": "http://example.org/x.png", "size": 1, "regions": []},
        "3": {"filename": "missing.png", "size": 1, "regions": []},
        "4": {"filename": "good.png", "size": 1, "regions": []},
    }
    result = read_via(_write(src / "v.json", _project(entries)))
    assert [i.file_name for i in result.items] == ["good.png"]
    assert len(result.skipped) == 3
    assert "outside the dataset folder" in result.skipped[0]
    assert "URL" in result.skipped[1]
    assert "missing.png" in result.skipped[2] and "image not found" in result.skipped[2]


def test_default_filepath_folder(tmp_path: Path) -> None:
    _png(tmp_path / "frames" / "c.png")
    entries = {"c": {"filename": "c.png", "size": 1, "regions": []}}
    (item,) = read_via(_write(tmp_path / "p.json", _project(entries, "frames/"))).items
    assert item.file_name == "frames/c.png"
    escaping = _project(entries, "../")
    assert "image not found" in read_via(_write(tmp_path / "p.json", escaping)).skipped[0]


def test_broken_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="broken JSON"):
        read_via(bad)
    _png(tmp_path / "a.png")
    _write(tmp_path / "good.json", {"k": {"filename": "a.png", "size": 1, "regions": []}})
    result = read_via(tmp_path)
    assert len(result.items) == 1
    assert len(result.skipped) == 1 and "bad.json" in result.skipped[0]


def test_unusable_sources_raise(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_via(tmp_path / "nope")
    with pytest.raises(InputError, match="no VIA"):
        read_via(tmp_path)
    _write(tmp_path / "other.json", {"images": []})
    with pytest.raises(InputError, match="not a VIA file"):
        read_via(tmp_path / "other.json")
