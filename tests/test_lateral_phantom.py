"""The lateral lumbar phantom (known lordosis, segmental angles, heights): measure_lateral and
``spinekit measure`` on a masks dataset written from it must recover the known values.

Tolerances (stated in docs/clinical.md): lordosis within 1.0 degree, segmental angles within
1.5 degrees, body and disc heights within 0.75 mm, at pixel spacings from 0.3 to 1.0 mm
(square and 2:1 anisotropic) and for a column facing either side.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from spinekit.cli.main import app
from spinekit.clinical.lateral import measure_lateral
from spinekit.clinical.measure import measure_dataset
from spinekit.data.ingest import IngestOptions, ingest
from spinekit.data.phantom_lateral import LEVELS, LateralPhantom, make_lateral_phantom

ANGLE_TOL = 1.0
SEGMENT_TOL = 1.5
HEIGHT_TOL = 0.75


def _check(ph: LateralPhantom, got: dict[str, float | dict[str, float] | None]) -> None:
    assert got["lordosis_L1_L5_deg"] is not None and got["lordosis_L1_S1_deg"] is not None
    assert abs(float(got["lordosis_L1_L5_deg"]) - ph.lordosis_L1_L5_deg) < ANGLE_TOL  # type: ignore[arg-type]
    assert abs(float(got["lordosis_L1_S1_deg"]) - ph.lordosis_L1_S1_deg) < ANGLE_TOL  # type: ignore[arg-type]


@pytest.mark.parametrize(("spacing", "facing"), [((0.5, 0.5), "left"), ((0.8, 0.4), "left"),
                                                  ((0.3, 0.6), "right"), ((1.0, 1.0), "right")])
def test_measure_lateral_recovers_the_phantom(spacing: tuple[float, float], facing: str) -> None:
    ph = make_lateral_phantom(pixel_spacing_mm=spacing, facing=facing)  # type: ignore[arg-type]
    assert ph.image.dtype == np.uint8 and set(ph.masks) == set(LEVELS)
    assert abs(ph.lordosis_L1_S1_deg - 43.0) < 1e-9 and abs(ph.lordosis_L1_L5_deg - 31.0) < 1e-9
    result = measure_lateral(ph.masks, pixel_spacing_mm=spacing)
    assert result.unit == "mm" and result.levels == list(LEVELS) and result.anterior == facing
    mirrored = [f for f in result.flags if "mirrored" in f]
    assert (facing == "right") == bool(mirrored) and len(result.flags) == len(mirrored)
    _check(ph, {"lordosis_L1_L5_deg": result.lordosis_L1_L5_deg,
                "lordosis_L1_S1_deg": result.lordosis_L1_S1_deg})
    assert set(result.segmental_deg) == set(ph.segmental_deg)  # L5-S1 included
    for pair, angle in ph.segmental_deg.items():
        assert abs(result.segmental_deg[pair] - angle) < SEGMENT_TOL, pair
    for truth, got in ((ph.body_heights, result.body_heights), (ph.disc_heights, result.disc_heights)):
        for key, parts in truth.items():
            for part, value in parts.items():
                assert abs(got[key][part] - value) < HEIGHT_TOL, (key, part, got[key][part], value)


def test_known_construction_and_bad_arguments() -> None:
    ph = make_lateral_phantom(disc_angles_deg=(0, 0, 0, 0, 0), body_wedges_deg=(0, 0, 0, 0, 0),
                              sacral_slope_deg=0.0, pixel_spacing_mm=(1.0, 1.0))
    assert abs(ph.lordosis_L1_S1_deg) < 1e-9 and abs(ph.body_heights["L3"]["anterior"] - 27.0) < 1e-9
    assert abs(ph.disc_heights["L4-L5"]["posterior"] - 11.0) < 1e-9
    with pytest.raises(ValueError, match="5 values"):
        make_lateral_phantom(disc_angles_deg=(1.0, 2.0))
    with pytest.raises(ValueError, match="facing"):
        make_lateral_phantom(facing="up")  # type: ignore[arg-type]


def _masks_dataset(tmp_path: Path, phantoms: dict[str, LateralPhantom], spacing: tuple[float, float]) -> Path:
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    for name, ph in phantoms.items():
        Image.fromarray(ph.image).save(src / "images" / f"{name}.png")
        Image.fromarray(ph.label).save(src / "masks" / f"{name}.png")
    doc = {"mask_values": {str(k + 1): lv for k, lv in enumerate(LEVELS)},
           "pixel_spacing_mm": list(spacing)}
    (src / "labels.json").write_text(json.dumps(doc), encoding="utf-8")
    out = tmp_path / "ds"
    ingest(src, out, IngestOptions(format="masks", verify_pixels=False))
    return out


def test_spinekit_measure_on_a_phantom_dataset(tmp_path: Path) -> None:
    spacing = (0.8, 0.4)
    upright = make_lateral_phantom(pixel_spacing_mm=spacing, seed=1)
    mirrored = make_lateral_phantom(pixel_spacing_mm=spacing, facing="right", seed=2)
    flipped = make_lateral_phantom(pixel_spacing_mm=spacing, seed=3)
    flipped = LateralPhantom(**{**flipped.__dict__, "image": np.flipud(flipped.image),
                                "label": np.flipud(flipped.label)})
    dataset = _masks_dataset(tmp_path, {"up": upright, "mirror": mirrored, "down": flipped}, spacing)
    rows = {Path(r["image"]).stem: r for r in measure_dataset(dataset)}
    for name, ph in (("up", upright), ("mirror", mirrored)):
        row = rows[name]
        assert row["view"] == "lateral" and row["unit"] == "mm" and row["n_vertebrae"] == 6
        _check(ph, row)
        assert abs(row["segmental_L5-S1_deg"] - ph.segmental_deg["L5-S1"]) < SEGMENT_TOL
        assert abs(row["body_L3_middle"] - ph.body_heights["L3"]["middle"]) < HEIGHT_TOL
    assert rows["up"]["flags"] == "" and "mirrored" in rows["mirror"]["flags"]
    down = rows["down"]
    assert "inverted" in down["flags"] and down["lordosis_L1_L5_deg"] is None
    out = tmp_path / "m.csv"
    result = CliRunner().invoke(app, ["measure", str(dataset), "--out", str(out),
                                      "--overlay", str(tmp_path / "pictures")])
    assert result.exit_code == 0, result.output
    assert "mean L1-L5 lordosis" in result.output and "3 overlays" in result.output
    assert sorted(p.name for p in (tmp_path / "pictures").iterdir()) == ["down.png", "mirror.png", "up.png"]
