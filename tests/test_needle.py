"""Facet-joint needle target: the inflection rule on synthetic contours of known shape, the
image-level decision, bad masks, crop decoding of masks, and the phantom's expert masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from faster_coco_eval.core import mask as mask_api

from spinekit.clinical.needle import measure_ultrasound, needle_target, target_error
from spinekit.data.phantom import PhantomConfig, make_ultrasound_facet_phantom
from spinekit.evaluation.results import encode_mask
from spinekit.geometry import rasterize
from spinekit.masks import CropMask, crop_from_polygons, crop_from_rle, crop_iou, rle_counts


def band(top: object, x0: float = 20.0, x1: float = 140.0, thick: float = 15.0,
         shape: tuple[int, int] = (120, 160)) -> np.ndarray:
    """Mask ``(H, W)`` uint8 of a band whose upper edge is ``y = top(x)`` over ``[x0, x1]``."""
    xs = np.linspace(x0, x1, 240)
    ys = np.asarray(top(xs))  # type: ignore[operator]
    ring = np.concatenate([np.stack([xs, ys], 1), np.stack([xs[::-1], ys[::-1] + thick], 1)])
    return rasterize([ring], *shape)


def step(x: np.ndarray, at: float = 90.0, amp: float = 5.0) -> np.ndarray:
    return 40.0 + amp * np.tanh((x - at) / 8.0)


def test_step_contour_gives_its_inflection_point() -> None:
    for at in (70.0, 90.0, 105.0):
        result = needle_target(band(lambda x, at=at: step(x, at)))
        assert result.flag is None and result.point is not None and result.inflections >= 1
        assert abs(result.point[0] - at) < 1.0 and abs(result.point[1] - 40.0) < 1.0
        assert result.contour is not None and result.contour.points().shape[1] == 2


def test_mirrored_image_gives_the_mirrored_target() -> None:
    mask = band(lambda x: step(x, 75.0))
    right = needle_target(mask).point
    left = needle_target(np.fliplr(mask)).point
    assert right is not None and left is not None
    assert abs((160.0 - left[0]) - right[0]) < 0.6 and abs(left[1] - right[1]) < 0.6


@pytest.mark.parametrize("angle", [0.0, 4.0, 15.0, 30.0])
def test_straight_and_evenly_curved_outlines_have_no_target(angle: float) -> None:
    slope = np.tan(np.radians(angle))
    line = needle_target(band(lambda x: 50.0 + slope * (x - 80.0)))
    assert line.point is None and line.flag == "no inflection on the dorsal contour"
    arc = needle_target(band(lambda x: 40.0 + (x - 80.0) ** 2 / (2 * (60.0 + 10 * angle))))
    assert arc.point is None and arc.inflections == 0


def test_degenerate_masks_are_flagged_not_invented() -> None:
    empty = needle_target(np.zeros((50, 50), np.uint8))
    assert empty.point is None and empty.flag == "facet mask empty"
    pixel = np.zeros((50, 50), np.uint8)
    pixel[20, 20] = 1
    assert "too narrow" in (needle_target(pixel).flag or "")
    line = np.zeros((50, 80), np.uint8)
    line[25, 5:75] = 1  # a one-pixel line: flat top, no inflection
    assert needle_target(line).point is None
    holed = band(lambda x: step(x)).copy()
    holed[47:52, 40:130:6] = 0  # holes inside the band leave the dorsal contour alone
    filled = needle_target(band(lambda x: step(x))).point
    assert needle_target(holed).point == filled


def test_image_level_decision_and_trust() -> None:
    facet = band(lambda x: step(x))
    both = measure_ultrasound([(facet, 0.9)], [0.8], threshold=0.5)
    assert both.facet_present and both.trusted and both.target is not None and both.flags == []
    alone = measure_ultrasound([(facet, 0.9)], [0.3], threshold=0.5)
    assert alone.facet_present and not alone.trusted and alone.target is not None
    assert any("not trusted" in f for f in alone.flags)
    weak = measure_ultrasound([(facet, 0.4)], [0.9], threshold=0.5)
    assert not weak.facet_present and weak.target is None and weak.facets == []
    flat = band(lambda x: 50.0 + 0.0 * x)
    two = measure_ultrasound([(flat, 0.95), (facet, 0.7)], [0.9], threshold=0.5)
    assert two.primary is not None and two.facets[two.primary].index == 1  # the one with a target
    none = measure_ultrasound([(flat, 0.95)], [0.9], threshold=0.5)
    assert none.target is None and any(f.startswith("no needle target") for f in none.flags)


def test_target_error_uses_the_pixel_spacing() -> None:
    px, mm, k = target_error((10.0, 10.0), [(100.0, 100.0), (13.0, 14.0)], (2.0, 0.5))
    assert k == 1 and abs(px - 5.0) < 1e-9 and mm is not None and abs(mm - np.hypot(1.5, 8.0)) < 1e-9
    assert target_error((0.0, 0.0), [(3.0, 4.0)], None)[1] is None
    with pytest.raises(ValueError):
        target_error((0.0, 0.0), [], None)


def test_rle_is_decoded_into_the_box_only() -> None:
    rng = np.random.default_rng(0)
    for k in range(60):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        mask = rng.random((h, w)) < rng.random()
        if k % 3 == 0:  # runs wrapping over column ends
            mask[:] = False
            mask[int(rng.integers(0, h)):, int(rng.integers(0, w)):] = True
        rle = encode_mask(mask)
        crop = crop_from_rle(rle)
        assert np.array_equal(crop.full(), mask)
        assert crop.area() == int(mask.sum())
        raw = mask_api.decode(mask_api.frPyObjects(rle, h, w) if isinstance(rle["counts"], list) else rle)
        assert np.array_equal(np.asarray(raw, bool), mask)
    assert rle_counts("") .size == 0
    with pytest.raises(ValueError):
        crop_from_rle({"size": [4, 4], "counts": "0"})
    ring = np.array([[10.2, 5.5], [30.7, 8.0], [28.0, 40.2], [9.0, 35.0]])
    crop = crop_from_polygons([ring], 50, 40)
    assert np.array_equal(crop.full(), rasterize([ring], 50, 40) != 0)
    assert crop_from_polygons([ring + 100.0], 50, 40).empty
    a = CropMask.from_full(rasterize([ring], 50, 40))
    assert crop_iou(a, a) == 1.0 and crop_iou(a, crop_from_polygons([ring + 30.0], 80, 80)) == 0.0


def test_phantom_expert_masks_find_their_targets(tmp_path: Path) -> None:
    """The needle rule on clean expert facet outlines lands on the annotated target.

    Tolerance: the claim is statistical, not per frame. Over three phantom seeds
    (about 20 targets) at least 90 % must lie within the study's 5 mm criterion and
    the median within 1.5 mm. A single target beyond 5 mm is allowed: on this
    machine seeds 3..12 give 2 of 66 targets at 5.2 and 6.9 mm (a facet whose
    dorsal contour turns twice), and the same seed gave 3.7 mm here and 5.2 mm on
    a fresh machine, so a max-error bound of 5 mm on 8 targets was a coin toss.
    """
    cfg = PhantomConfig(width=480, height=360, negative_fraction=0.0)
    errors: list[float] = []
    for seed in (3, 4, 5):
        summary = make_ultrasound_facet_phantom(tmp_path / f"ph{seed}", n=4, seed=seed, config=cfg)
        for name in summary.frames:
            doc = json.loads((summary.folder("local") / f"{name}.json").read_text())
            points = [tuple(s["points"][0]) for s in doc["shapes"] if s["shape_type"] == "point"]
            spacing = tuple(doc["pixel_spacing_mm"])
            for shape in doc["shapes"]:
                if shape["label"] == "F":
                    target = needle_target(crop_from_polygons([np.array(shape["points"])], 360, 480))
                    if target.point is not None:
                        mm = target_error(target.point, points, (spacing[0], spacing[1]))[1]
                        assert mm is not None
                        errors.append(mm)
    assert len(errors) >= 15
    within = float(np.mean(np.array(errors) < 5.0))
    assert within >= 0.9 and float(np.median(errors)) < 1.5, (within, sorted(errors)[-3:])
    assert max(errors) < 10.0  # never the other facet joint (the two targets lie about 35 mm apart)
