"""COCO reader: polygons, RLE (both forms), bbox, keypoints, spinekit extensions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from spinekit.errors import InputError
from spinekit.geometry import rasterize
from spinekit.io.formats.coco import (
    counts_to_rle_string,
    decode_rle,
    mask_to_rle_counts,
    read_coco,
    rle_string_to_counts,
)

H, W = 12, 16


def _png(path: Path, size: tuple[int, int] = (W, H)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((size[1], size[0]), dtype=np.uint8)).save(path)


def _coco(path: Path, images: list[dict[str, Any]], anns: list[dict[str, Any]], **extra: Any) -> Path:
    cats = [
        {"id": 1, "name": "vertebra"},
        {"id": 2, "name": "spine", "keypoints": ["top", "bottom", "tip"]},
    ]
    doc = {"images": images, "annotations": anns, "categories": cats, **extra}
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _image(image_id: int, name: str, **extra: Any) -> dict[str, Any]:
    return {"id": image_id, "file_name": name, "width": W, "height": H, **extra}


def _raster(points: tuple[tuple[float, float], ...]) -> np.ndarray:
    """spinekit's rasteriser (pixel centre inside) on one polygon, ``(H, W)`` bool."""
    return rasterize([np.asarray(points)], H, W).astype(bool)


def _test_mask() -> np.ndarray:
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[2:6, 3:9] = 1  # 6 x 4 block
    mask[8:11, 11:15] = 1  # second part
    return mask


# ----------------------------------------------------------------------------- RLE codec


def test_rle_string_known_values() -> None:
    # Hand-derived with pycocotools' rule (runs from the 4th on are deltas to run i-2):
    # 1024 = 0 + 32*0 + 1024*1 -> groups 0|more, 0|more, 1 -> "P", "P", "1".
    assert rle_string_to_counts("0PP1") == [0, 1024]
    # [0, 6, 1, 3]: 4th run 3 - 6 = -3 -> (-3 & 31) = 29 -> chr(48 + 29) = "M".
    assert rle_string_to_counts("061M") == [0, 6, 1, 3]
    assert counts_to_rle_string([0, 6, 1, 3]) == "061M"
    assert counts_to_rle_string([100]) == "T3"  # 100 = 4 + 32 * 3, 4 | 0x20 -> "T"
    with pytest.raises(ValueError, match="invalid RLE character"):
        rle_string_to_counts("0 1")
    with pytest.raises(ValueError, match="truncated"):
        rle_string_to_counts("0P")


def test_rle_roundtrip_on_hand_encoded_mask() -> None:
    mask = _test_mask()
    counts = mask_to_rle_counts(mask)
    # column-major: column 0..2 empty (3 * 12 = 36 zeros) + 2 rows of column 3 -> 38
    assert counts[:2] == [38, 4]
    assert sum(counts) == H * W
    assert np.array_equal(decode_rle(counts, H, W), mask)
    assert np.array_equal(decode_rle(counts_to_rle_string(counts), H, W), mask)
    starts_with_one = np.ones((2, 2), dtype=np.uint8)
    assert mask_to_rle_counts(starts_with_one) == [0, 4]
    with pytest.raises(ValueError, match="sum to 305, not 12x16"):
        decode_rle([5, 300], H, W)
    with pytest.raises(ValueError, match="sum to 7, not 12x16"):  # short: no longer padded with 0
        decode_rle([5, 2], H, W)


def test_rle_random_masks_roundtrip() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = (rng.random((9, 7)) > 0.6).astype(np.uint8)
        text = counts_to_rle_string(mask_to_rle_counts(mask))
        assert np.array_equal(decode_rle(text, 9, 7), mask)


# ----------------------------------------------------------------------------- reader


def test_polygons_multipart_and_bbox(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    anns = [
        {"id": 10, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 5, 1, 5, 4]], "bbox": []},
        {
            "id": 11,
            "image_id": 1,
            "category_id": 1,
            "segmentation": [[0, 0, 2, 0, 2, 2], [8, 8, 10, 8, 10, 10, 8, 10]],
            "iscrowd": 0,
        },
        {"id": 12, "image_id": 1, "category_id": 1, "bbox": [2, 3, 4, 5], "iscrowd": 1},
    ]
    result = read_coco(_coco(tmp_path / "c.json", [_image(1, "a.png")], anns))
    assert result.skipped == []
    (item,) = result.items
    assert item.file_name == "a.png" and (item.width, item.height) == (W, H)
    first, part_a, part_b, box = item.shapes
    assert first.kind == "polygon" and first.points == ((1.0, 1.0), (5.0, 1.0), (5.0, 4.0))
    assert first.attributes == {"instance": "10"}
    assert part_a.attributes["instance"] == part_b.attributes["instance"] == "11"
    assert len(part_b.points) == 4
    assert box.kind == "rectangle" and box.points == ((2.0, 3.0), (6.0, 8.0))
    assert box.attributes == {"instance": "12", "iscrowd": "1"}
    assert all(s.label == "vertebra" for s in item.shapes)


@pytest.mark.parametrize("compressed", [False, True])
def test_rle_segmentation_becomes_exact_polygons(tmp_path: Path, compressed: bool) -> None:
    _png(tmp_path / "a.png")
    mask = _test_mask()
    counts: Any = mask_to_rle_counts(mask)
    if compressed:
        counts = counts_to_rle_string(counts)
    seg = {"size": [H, W], "counts": counts}
    anns = [{"id": 5, "image_id": 1, "category_id": 1, "segmentation": seg, "iscrowd": 1}]
    (item,) = read_coco(_coco(tmp_path / "c.json", [_image(1, "a.png")], anns)).items
    assert len(item.shapes) == 2  # two connected parts, one instance
    assert {s.attributes["instance"] for s in item.shapes} == {"5"}
    assert item.shapes[0].attributes["iscrowd"] == "1"
    rebuilt = _raster(item.shapes[0].points) | _raster(item.shapes[1].points)
    assert np.array_equal(rebuilt, mask.astype(bool))
    xs = [p[0] for p in item.shapes[0].points]
    assert 3.0 <= min(xs) <= 3.5 and 8.5 <= max(xs) <= 9.0  # columns 3..8, 0.5 px tolerance


def test_bad_annotations_are_noted(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": {"size": [H, W], "counts": [5, 999]}},
        {"id": 2, "image_id": 1, "category_id": 1, "segmentation": [[1, 2, 3]]},
        {"id": 3, "image_id": 1, "category_id": 99, "bbox": [0, 0, 1, 1]},
        {"id": 4, "image_id": 42, "category_id": 1, "bbox": [0, 0, 1, 1]},
        {"id": 5, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2]},
    ]
    result = read_coco(_coco(tmp_path / "c.json", [_image(1, "a.png")], anns))
    (item,) = result.items
    assert [s.attributes["instance"] for s in item.shapes] == ["5"]
    warnings = item.extra["warnings"]
    assert isinstance(warnings, list) and len(warnings) == 2
    assert "annotations[0].segmentation" in warnings[0] and "sum to 1004" in warnings[0]
    assert "annotations[1].segmentation[0]" in warnings[1]
    assert any("annotations[2].category_id: unknown category id 99" in s for s in result.skipped)
    assert any("annotations[3].image_id: unknown image id 42" in s for s in result.skipped)


def test_missing_and_escaping_images_are_skipped(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _png(src / "images" / "in_images.png")
    _png(tmp_path / "outside.png")
    images = [_image(1, "gone.png"), _image(2, "../outside.png"), _image(3, "in_images.png")]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}]
    result = read_coco(_coco(src / "c.json", images, anns))
    (item,) = result.items
    assert item.file_name == "images/in_images.png"  # found through the images/ fallback
    assert item.image_path == (src / "images" / "in_images.png").resolve()
    assert len(result.skipped) == 2  # the annotation of the missing image adds no line
    assert "gone.png" in result.skipped[0] and "image not found" in result.skipped[0]
    assert "outside" in result.skipped[1]


def test_keypoints_become_named_points(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    kps = [1, 2, 2, 0, 0, 0, 5, 6, 1]  # "bottom" not labelled (v=0)
    anns = [{"id": 7, "image_id": 1, "category_id": 2, "bbox": [0, 0, 8, 8], "keypoints": kps}]
    (item,) = read_coco(_coco(tmp_path / "c.json", [_image(1, "a.png")], anns)).items
    points = [s for s in item.shapes if s.kind == "point"]
    assert [(p.label, p.points) for p in points] == [
        ("spine:top", ((1.0, 2.0),)),
        ("spine:tip", ((5.0, 6.0),)),
    ]
    assert [s.kind for s in item.shapes].count("rectangle") == 1


def test_spinekit_extensions_pass_through(tmp_path: Path) -> None:
    _png(tmp_path / "images" / "x.png")
    image = _image(
        1,
        "images/x.png",
        patient_id="P-3",
        pixel_spacing_mm=[0.5, 0.25],
        frame=2,
        source="orig/x.json",
        points=[{"label": "sacrum", "x": 3.5, "y": 4}],
    )
    rect = [2, 3, 6, 3, 6, 8, 2, 8]
    anns = [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 1,
            "segmentation": [rect],
            "attributes": {"level": "L4"},
            "shape": "rectangle",
        },
        {"id": 2, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 4, 4]], "shape": "polyline"},
    ]
    path = _coco(tmp_path / "annotations.json", [image], anns, info={"image_root": "."})
    (item,) = read_coco(tmp_path).items
    assert path.is_file() and item.file_name == "images/x.png"
    assert item.patient_id == "P-3" and item.pixel_spacing_mm == (0.5, 0.25) and item.frame == 2
    assert item.extra["source"] == "orig/x.json"
    point, rectangle, line = item.shapes
    assert point.kind == "point" and point.label == "sacrum" and point.points == ((3.5, 4.0),)
    assert rectangle.kind == "rectangle" and rectangle.points == ((2.0, 3.0), (6.0, 8.0))
    assert rectangle.attributes == {"level": "L4", "instance": "1"}
    assert line.kind == "polyline" and line.points == ((0.0, 0.0), (4.0, 4.0))


def test_json_selection_in_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no COCO"):
        read_coco(tmp_path)
    _png(tmp_path / "a.png")
    _coco(tmp_path / "instances_train.json", [_image(1, "a.png")], [])
    _coco(tmp_path / "other.json", [], [])
    assert len(read_coco(tmp_path).items) == 1  # the single instances*.json
    _coco(tmp_path / "instances_val.json", [], [])
    with pytest.raises(InputError, match=r"instances_train\.json, instances_val\.json"):
        read_coco(tmp_path)
    bad = tmp_path / "broken.json"
    bad.write_text("[1, 2", encoding="utf-8")
    with pytest.raises(InputError, match="broken JSON"):
        read_coco(bad)
    not_coco = tmp_path / "labels.json"
    not_coco.write_text(json.dumps({"mask_values": {"1": "L5"}}), encoding="utf-8")
    with pytest.raises(InputError, match="not a COCO file"):
        read_coco(not_coco)
