"""Endplates from masks and lateral lumbar measurements on synthetic masks of known geometry,
plus a plausibility check (ranges only, no reference values exist) on real MRI masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spinekit.clinical.endplates import endplates_from_corners, endplates_from_mask
from spinekit.clinical.lateral import LUMBAR, measure_lateral


def rect_mask(
    shape: tuple[int, int], centre: tuple[float, float], size: tuple[float, float], angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mask ``(H, W)`` of a rectangle ``size`` = (width, height) rotated by ``angle`` deg
    (image frame, y down) and its true corners ``(4, 2)`` TL, TR, BL, BR of the body frame."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    t = np.deg2rad(angle)
    c, s = np.cos(t), np.sin(t)
    dx, dy = xx - centre[0], yy - centre[1]
    u, v = dx * c + dy * s, -dx * s + dy * c
    w, h = size
    mask = (np.abs(u) <= w / 2) & (np.abs(v) <= h / 2)
    local = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [-w / 2, h / 2], [w / 2, h / 2]])
    return mask, local @ np.array([[c, -s], [s, c]]).T + np.asarray(centre)


def lordotic_column(total_deg: float) -> dict[str, np.ndarray]:
    """L1..L5 rectangles along an arc bowing to the image left (anterior = left); the
    L1 upper endplate and the L5 lower endplate differ by exactly ``total_deg``."""
    step = np.deg2rad(total_deg / 4)
    radius = 33.0 / step  # 25 px bodies + 8 px discs along the arc
    shape, centre = (240, 260), (80.0 + radius, 120.0)
    column = {}
    for k, level in enumerate(LUMBAR):
        alpha = (2 - k) * step  # L1 at +total/2 ... L5 at -total/2
        pos = (centre[0] - radius * np.cos(alpha), centre[1] - radius * np.sin(alpha))
        column[level] = rect_mask(shape, pos, (40, 25), np.degrees(alpha))[0]
    return column


@pytest.mark.parametrize("angle", [0.0, 6.0, -13.0, 28.0])
def test_rotated_rectangle_endplates(angle: float) -> None:
    mask, true = rect_mask((120, 140), (70.3, 60.6), (46, 30), angle)
    ep = endplates_from_mask(mask)
    for seg in (ep.upper, ep.lower):
        d = seg[1] - seg[0]
        assert abs(np.degrees(np.arctan2(d[1], d[0])) - angle) < 1.0
    assert np.abs(ep.corners - true).max() < 1.0
    assert ep.method == "mask" and ep.quality < 1.0
    right = endplates_from_mask(mask, anterior="right")
    np.testing.assert_allclose(right.corners, ep.corners[[1, 0, 3, 2]])


def test_endplates_survive_specks_and_use_column_hint() -> None:
    mask, true = rect_mask((120, 140), (70.0, 60.0), (40, 36), 20.0)
    mask[5, 5] = mask[110, 130] = True  # annotation specks
    ep = endplates_from_mask(mask, column_direction=(-np.sin(np.deg2rad(20)), np.cos(np.deg2rad(20))))
    assert np.abs(ep.corners - true).max() < 1.0


def test_degenerate_masks_raise_clear_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        endplates_from_mask(np.zeros((20, 20), bool))
    tiny = np.zeros((20, 20), bool)
    tiny[5:9, 5:9] = True
    with pytest.raises(ValueError, match="16 pixels"):
        endplates_from_mask(tiny)


def test_endplates_from_corners_order() -> None:
    corners = np.array([[0, 0], [10, 1], [0, 8], [10, 9]], float)
    ep = endplates_from_corners(corners)
    np.testing.assert_array_equal(ep.upper, corners[:2])
    np.testing.assert_array_equal(ep.lower, corners[2:])
    assert ep.method == "landmarks"
    with pytest.raises(ValueError):
        endplates_from_corners(np.zeros((3, 2)))


def test_lordotic_phantom_sign_and_value() -> None:
    result = measure_lateral(lordotic_column(40.0), pixel_spacing_mm=None, anterior="auto")
    assert result.lordosis_L1_L5_deg is not None
    assert abs(result.lordosis_L1_L5_deg - 40.0) < 1.5
    assert result.lordosis_L1_S1_deg is None
    assert result.unit == "px" and result.anterior == "left" and result.flags == []
    assert set(result.segmental_deg) == {"L1-L2", "L2-L3", "L3-L4", "L4-L5"}
    for value in result.segmental_deg.values():  # rectangles: all wedging is in the discs
        assert abs(value - 10.0) < 1.5
    for heights in result.body_heights.values():
        assert abs(heights["middle"] - 25.0) < 1.0
    row = result.to_row()
    assert row["lordosis_L1_L5_deg"] == result.lordosis_L1_L5_deg and row["flags"] == ""


def test_mirrored_image_flagged_or_handled() -> None:
    mirrored = {k: np.fliplr(m) for k, m in lordotic_column(40.0).items()}
    auto = measure_lateral(mirrored, pixel_spacing_mm=None, anterior="auto")
    assert auto.anterior == "right" and any("mirrored" in f for f in auto.flags)
    assert auto.lordosis_L1_L5_deg is not None and abs(auto.lordosis_L1_L5_deg - 40.0) < 1.5
    told = measure_lateral(mirrored, pixel_spacing_mm=None, anterior="right")
    assert told.flags == [] and abs((told.lordosis_L1_L5_deg or 0.0) - 40.0) < 1.5
    wrong = measure_lateral(mirrored, pixel_spacing_mm=None, anterior="left")
    assert (wrong.lordosis_L1_L5_deg or 0.0) < -35 and any("bows posteriorly" in f for f in wrong.flags)


def test_inverted_image_not_measured() -> None:
    upside_down = {k: np.flipud(m) for k, m in lordotic_column(40.0).items()}
    result = measure_lateral(upside_down, pixel_spacing_mm=None, anterior="left")
    assert result.lordosis_L1_L5_deg is None and result.body_heights == {}
    assert any("inverted" in f for f in result.flags)


def test_heights_in_mm_with_anisotropic_spacing() -> None:
    shape = (80, 100)
    l4, l5 = np.zeros(shape, bool), np.zeros(shape, bool)
    l4[10:25, 20:80] = True  # 15 rows
    l5[30:48, 20:80] = True  # 5-row gap, 18 rows
    result = measure_lateral({"L4": l4, "L5": l5}, pixel_spacing_mm=(2.0, 0.5), anterior="left")
    assert result.unit == "mm"
    for part in ("anterior", "middle", "posterior"):
        assert abs(result.body_heights["L4"][part] - 30.0) < 0.5
        assert abs(result.body_heights["L5"][part] - 36.0) < 0.5
        assert abs(result.disc_heights["L4-L5"][part] - 10.0) < 0.5
    assert abs(result.segmental_deg["L4-L5"]) < 0.5
    assert result.to_row()["disc_L4-L5_middle_mm"] == result.disc_heights["L4-L5"]["middle"]


def test_missing_and_degenerate_levels_flagged_not_invented() -> None:
    column = lordotic_column(40.0)
    del column["L3"]
    result = measure_lateral(column, pixel_spacing_mm=(1.0, 1.0))
    assert "L2-L3" not in result.segmental_deg and "L3-L4" not in result.segmental_deg
    assert "L3" not in result.body_heights
    assert any(f.startswith("missing L3: segmental L2-L3, L3-L4") for f in result.flags)
    assert result.lordosis_L1_L5_deg is not None  # L1 and L5 are still there
    speck = np.zeros_like(column["L1"])
    speck[3:6, 3:6] = True
    broken = measure_lateral({"L1": speck, "L2": column["L2"]}, pixel_spacing_mm=None)
    assert any("mask of L1 degenerate" in f for f in broken.flags)
    assert any("fewer than 2 lumbar" in f for f in broken.flags)
    assert broken.lordosis_L1_L5_deg is None and broken.segmental_deg == {}
    empty = measure_lateral({"L5": np.zeros((10, 10), bool)}, pixel_spacing_mm=None)
    assert any("mask of L5 degenerate" in f for f in empty.flags) and empty.levels == []


@pytest.mark.slow
def test_real_mri_masks_plausible_ranges(mri_dir: Path) -> None:
    """Plausibility only: the set has no expert lordosis or height values to compare to."""
    labels = json.loads((mri_dir / "labels.json").read_text())
    names = {int(k): v for k, v in labels["mask_values"].items()}
    entries = json.loads((mri_dir / "slices.json").read_text())[::28]
    lordosis = []
    for entry in entries:
        mask = np.asarray(Image.open(mri_dir / entry["mask"]))
        vertebrae = {names[int(v)]: mask == v for v in np.unique(mask) if int(v) in names}
        result = measure_lateral(vertebrae, pixel_spacing_mm=(1.0, 1.0))
        assert result.unit == "mm"
        lordosis.append(result.lordosis_L1_L5_deg)
        for level in LUMBAR:
            assert 15.0 <= result.body_heights[level]["middle"] <= 40.0
    assert len(lordosis) == 6
    assert sum(1 for v in lordosis if v is not None and 0.0 < v < 80.0) >= 5
