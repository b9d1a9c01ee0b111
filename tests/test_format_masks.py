"""Mask-folder reader: level masks, class masks, specks, pairing, and the real MRI set."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from spinekit.errors import InputError
from spinekit.geometry import rasterize
from spinekit.io.formats.masks import load_mask_mapping, read_masks
from spinekit.io.shapes import Shape

H, W = 30, 40


def _save(path: Path, arr: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        img = Image.frombytes("P", (arr.shape[1], arr.shape[0]), arr.astype(np.uint8).tobytes())
        img.putpalette([v for i in range(256) for v in (i * 7 % 256, i * 3 % 256, i)])
    else:
        img = Image.fromarray(arr)
    img.save(path)


def _labels(src: Path, values: dict[str, str], **extra: Any) -> None:
    doc = {"mask_values": values, "background": 0, **extra}
    (src / "labels.json").write_text(json.dumps(doc), encoding="utf-8")


def _raster(shapes: list[Shape], height: int, width: int) -> np.ndarray:
    """spinekit's rasteriser (pixel centre inside) on the shapes' points, ``(H, W)`` bool."""
    return rasterize([np.asarray(s.points) for s in shapes], height, width).astype(bool)


def _warnings(extra: dict[str, object]) -> list[str]:
    notes = extra["warnings"]
    assert isinstance(notes, list)
    return [str(n) for n in notes]


def _level_mask() -> np.ndarray:
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[2:8, 2:10] = 1  # L5 body, 48 px
    mask[20:25, 30:35] = 1  # second L5 part, 25 px (kept as a part)
    mask[10:16, 2:10] = 2  # L4 body, 48 px
    mask[28, 38] = 2  # 1 px speck of L4 (dropped)
    mask[0, 20:23] = 3  # L3: only 3 px
    mask[27:29, 0:2] = 7  # value missing from the mapping
    return mask


def test_level_mask_gives_vertebra_instances(tmp_path: Path) -> None:
    _labels(tmp_path, {"1": "L5", "2": "L4", "3": "L3"}, pixel_spacing_mm=[0.8, 0.7])
    mask = _level_mask()
    _save(tmp_path / "masks" / "a.png", mask)
    _save(tmp_path / "images" / "a.png", np.full((H, W), 99, dtype=np.uint8))
    result = read_masks(tmp_path)
    assert result.skipped == []
    (item,) = result.items
    assert item.file_name == "images/a.png" and item.extra["mask"] == "masks/a.png"
    assert (item.width, item.height) == (W, H) and item.pixel_spacing_mm == (0.8, 0.7)
    assert item.patient_id is None
    assert all(s.label == "vertebra" and s.kind == "polygon" for s in item.shapes)
    levels = [(s.attributes["level"], s.attributes["instance"]) for s in item.shapes]
    assert levels == [("L5", "1"), ("L5", "1"), ("L4", "2")]
    l5 = [s for s in item.shapes if s.attributes["level"] == "L5"]
    assert np.array_equal(_raster(l5, H, W), mask == 1)
    assert np.array_equal(_raster(item.shapes[2:], H, W), (mask == 2) & (np.arange(W) < 38))
    assert item.extra["warnings"] == [
        "masks/a.png: value 2 (L4): dropped 1 speck of 1 px",
        "masks/a.png: value 3 (L3): largest part has 3 px, under min_component_px=20; no instance",
        "masks/a.png: value 7 not in the mapping: 4 px ignored",
    ]
    assert len(read_masks(tmp_path, min_component_px=2).items[0].shapes) == 4  # L3 now kept


def _class_mask() -> np.ndarray:
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[2:8, 2:7] = 1  # rod part 1, 30 px
    mask[15:21, 20:25] = 1  # rod part 2, 30 px
    mask[25, 5] = 2  # screw speck
    return mask


def test_class_mask_components_are_instances(tmp_path: Path) -> None:
    _labels(tmp_path, {"1": "rod", "2": "screw"})
    _save(tmp_path / "masks" / "a.png", _class_mask(), mode="P")  # palette PNG: indices kept
    _save(tmp_path / "images" / "a.jpg", np.zeros((H, W, 3), dtype=np.uint8))
    (item,) = read_masks(tmp_path).items
    assert [(s.label, s.attributes) for s in item.shapes] == [
        ("rod", {"instance": "1.1"}),
        ("rod", {"instance": "1.2"}),
    ]
    assert item.extra["warnings"] == ["masks/a.png: value 2 (screw): dropped 1 speck of 1 px"]
    _labels(tmp_path, {"1": "rod", "2": "screw"}, mask_type="instance")
    (item,) = read_masks(tmp_path).items
    assert [s.attributes["instance"] for s in item.shapes] == ["1", "1"]  # one rod, two parts


def test_pairing_and_size_problems(tmp_path: Path) -> None:
    _labels(tmp_path, {"1": "L1"})
    small = np.zeros((H, W), dtype=np.uint8)
    small[5:15, 5:15] = 1
    _save(tmp_path / "images" / "ok.png", small)
    _save(tmp_path / "masks" / "ok.png", small)
    _save(tmp_path / "images" / "nomask.png", small)
    _save(tmp_path / "masks" / "noimage.png", small)
    _save(tmp_path / "images" / "wrong.png", np.zeros((H, W + 2), dtype=np.uint8))
    _save(tmp_path / "masks" / "wrong.png", small)
    _save(tmp_path / "masks" / "lossy.jpg", small)
    result = read_masks(tmp_path)
    assert [i.file_name for i in result.items] == ["images/ok.png"]
    joined = "\n".join(result.skipped)
    assert len(result.skipped) == 4
    assert "nomask.png: no mask" in joined
    assert "noimage.png: no image" in joined
    assert "wrong.png: mask is 40x30 but its image wrong.png is 42x30" in joined
    assert "lossy.jpg: JPEG is lossy" in joined


def test_slices_json_metadata(tmp_path: Path) -> None:
    _labels(tmp_path, {"1": "L1"}, pixel_spacing_mm=[1.0, 1.0])
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[5:15, 5:15] = 1
    for name in ("s1", "s2"):
        _save(tmp_path / "images" / f"{name}.png", mask)
        _save(tmp_path / "masks" / f"{name}.png", mask)
    entries = [
        {
            "image": "images/s1.png",
            "mask": "masks/s1.png",
            "patient_id": "P1",
            "pixel_spacing_mm": [0.5, 0.5],
        },
        {"image": "../evil.png", "mask": "masks/s2.png", "patient_id": "P2"},
    ]
    (tmp_path / "slices.json").write_text(json.dumps(entries), encoding="utf-8")
    result = read_masks(tmp_path)
    first, second = result.items
    assert (first.patient_id, first.pixel_spacing_mm) == ("P1", (0.5, 0.5))
    assert (second.patient_id, second.pixel_spacing_mm) == (None, (1.0, 1.0))  # paired by name
    assert len(result.skipped) == 1 and "outside the dataset folder" in result.skipped[0]


def test_mapping_errors(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(InputError, match="mask mapping not found"):
        read_masks(tmp_path)
    _labels(tmp_path, {"one": "L1"})
    with pytest.raises(InputError, match=r"mask_values.one: key .one. is not a mask value"):
        read_masks(tmp_path)
    other = tmp_path / "mine.json"
    other.write_text(json.dumps({"mask_values": {"1": "L1", "2": "T12"}}), encoding="utf-8")
    assert read_masks(tmp_path, mapping=other).items == []
    assert load_mask_mapping(other).vertebra_levels
    other.write_text(json.dumps({"mask_values": {"1": "L1", "2": "disc"}}), encoding="utf-8")
    assert not load_mask_mapping(other).vertebra_levels
    with pytest.raises(InputError, match="no images/ folder"):
        read_masks(tmp_path / "images", mapping=other)


@pytest.mark.slow
def test_real_lumbar_mri_set(mri_dir: Path) -> None:
    result = read_masks(mri_dir)
    slices = json.loads((mri_dir / "slices.json").read_text(encoding="utf-8"))
    assert result.skipped == [] and len(result.items) == len(slices) == 168
    by_image = {item.file_name: item for item in result.items}
    values = {v: int(k) for k, v in json.loads((mri_dir / "labels.json").read_text())["mask_values"].items()}
    ious = []
    for entry in slices:
        item = by_image[entry["image"]]
        assert item.patient_id == entry["patient_id"]
        instances = Counter(s.attributes["level"] for s in item.shapes)
        assert set(instances) == set(entry["levels_present"])
        assert all(n == 1 for n in instances.values())  # one polygon per level here
        mask = np.asarray(Image.open(mri_dir / entry["mask"]))
        for shape in item.shapes:
            truth = mask == values[shape.attributes["level"]]
            drawn = _raster([shape], *mask.shape)
            ious.append((truth & drawn).sum() / (truth | drawn).sum())
    assert min(ious) >= 0.95  # specks (1 px) are the only pixels the polygons may leave out
    warned = [w for item in result.items for w in _warnings(item.extra)]
    assert len(warned) == 6 and all("dropped 1 speck of 1 px" in w for w in warned)
