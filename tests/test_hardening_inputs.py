"""Hostile DICOM headers and config values: clear errors naming the file or key, never a hang.

DICOM files are written with pydicom (tests/test_dicom.py's writer); the nested
sequence file is spliced by hand because pydicom cannot write one that deep.
The config checks run property-based (hypothesis) over every numeric setting.
"""

from __future__ import annotations

import logging
import math
import struct
import time
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from typer.testing import CliRunner

from spinekit.cli.main import app
from spinekit.engine.config import RULES, Config, config_from_dict
from spinekit.errors import InputError, UsageError
from spinekit.io.dicom import dicom_frame_count, dicom_metadata, read_dicom_frame
from spinekit.io.yamlfile import YamlLimitError, load_yaml_text
from test_dicom import RAMP, write_dicom


def nested_sequence_dicom(path: Path, depth: int) -> Path:
    """A valid image file whose ContentSequence holds ``depth`` nested items (undefined lengths)."""
    write_dicom(path, RAMP, ContentSequence=[])
    empty = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 0)
    opening = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF) + struct.pack(
        "<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    closing = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    raw = path.read_bytes()
    assert raw.count(empty) == 1
    path.write_bytes(raw.replace(empty, opening * depth + closing * depth))
    return path


# ----------------------------------------------------------------------------- DICOM

def test_billion_frames_are_refused_before_any_decoding(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "huge.dcm", RAMP, NumberOfFrames=10**9)
    start = time.perf_counter()
    for read in (dicom_frame_count, dicom_metadata, lambda p: read_dicom_frame(p, frame=3)):
        with pytest.raises(InputError, match=r"huge\.dcm: header claims 1000000000 frame\(s\) of 16x16x1"):
            read(path)
    assert time.perf_counter() - start < 1.0
    honest = write_dicom(tmp_path / "two.dcm", np.stack([RAMP, RAMP + 1]), NumberOfFrames=2)
    assert dicom_frame_count(honest) == 2


def test_deeply_nested_sequences_are_a_clear_error(tmp_path: Path) -> None:
    path = nested_sequence_dicom(tmp_path / "nested.dcm", 3000)
    for read in (dicom_metadata, read_dicom_frame):
        with pytest.raises(InputError, match=r"nested\.dcm: DICOM sequences nested too deeply"):
            read(path)
    shallow = nested_sequence_dicom(tmp_path / "shallow.dcm", 5)
    assert read_dicom_frame(shallow).shape == (16, 16)


@pytest.mark.parametrize(("attrs", "message"), [
    ({"RescaleSlope": "NaN"}, "RescaleSlope is nan"),
    ({"RescaleSlope": "0"}, "RescaleSlope is 0.0"),
    ({"RescaleIntercept": "Infinity"}, "RescaleIntercept is inf"),
    ({"RescaleIntercept": "-1e400"}, "RescaleIntercept is -inf"),
])
def test_non_finite_or_zero_rescale_is_refused(attrs: dict[str, Any], message: str, tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "rescale.dcm", RAMP, **attrs)
    with pytest.raises(InputError, match=rf"rescale\.dcm: frame 0: {message}"):
        read_dicom_frame(path)


@pytest.mark.parametrize(("center", "width"), [("NaN", "100"), ("100", "0"), ("100", "Infinity"),
                                                ("100", "-5")])
def test_unusable_window_falls_back_to_min_max_with_a_warning(center: str, width: str, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    path = write_dicom(tmp_path / "window.dcm", RAMP, WindowCenter=center, WindowWidth=width)
    with caplog.at_level(logging.WARNING):
        out = read_dicom_frame(path)
    np.testing.assert_array_equal(out, RAMP.astype(np.uint8))  # RAMP spans 0..255: min-max is identity
    assert any("window.dcm: unusable VOI LUT/window" in r.getMessage() for r in caplog.records)
    with pytest.raises(InputError, match="window width must be > 0"):
        read_dicom_frame(path, window=(math.nan, 10.0))


def test_eight_bit_voi_lut_on_twelve_bit_pixels_uses_the_whole_lut(tmp_path: Path) -> None:
    pixels = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)  # 0..4095
    lut = Dataset()
    lut.LUTDescriptor = [4096, 0, 8]
    lut.add_new("LUTData", "OW", (np.arange(4096) >> 4).astype("<u2").tobytes())
    path = write_dicom(tmp_path / "lut.dcm", pixels, bits_stored=12, VOILUTSequence=[lut])
    out = read_dicom_frame(path)
    np.testing.assert_array_equal(out, (pixels >> 4).astype(np.uint8))  # pydicom's apply_voi: max 15
    lut16 = Dataset()
    lut16.LUTDescriptor = [4096, 0, 12]
    lut16.add_new("LUTData", "OW", (4095 - np.arange(4096)).astype("<u2").tobytes())
    path = write_dicom(tmp_path / "lut16.dcm", pixels, bits_stored=12, VOILUTSequence=[lut16])
    expected = np.rint((4095 - pixels) * (255.0 / 4095.0)).astype(np.uint8)
    np.testing.assert_array_equal(read_dicom_frame(path), expected)


def test_infinite_pixel_spacing_is_ignored(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "spacing.dcm", RAMP, PixelSpacing=["Infinity", "0.5"],
                       ImagerPixelSpacing=["0.2", "0.3"])
    assert dicom_metadata(path)["pixel_spacing_mm"] == (0.2, 0.3)


def test_ingest_skips_hostile_dicoms_naming_each(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    write_dicom(src / "huge.dcm", RAMP, NumberOfFrames=10**9)
    nested_sequence_dicom(src / "nested.dcm", 3000)
    write_dicom(src / "nan.dcm", RAMP, RescaleSlope="NaN")
    write_dicom(src / "good.dcm", RAMP)
    result = CliRunner().invoke(app, ["ingest", str(src), "--format", "images", "--out", str(tmp_path / "ds"),
                                      "--salt", "s3cret"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    for name, reason in (("huge.dcm", "header claims"), ("nested.dcm", "nested too deeply"),
                         ("nan.dcm", "RescaleSlope is nan")):
        assert any(name in line and reason in line for line in result.output.splitlines()), name


# ----------------------------------------------------------------------------- config values

def _numeric_settings() -> list[tuple[str, str]]:
    out = []
    for section, cls in typing.get_type_hints(Config).items():
        hints = typing.get_type_hints(cls)
        for item in fields(cls):
            text = str(hints[item.name])
            if "int" in text or "float" in text:
                out.append((section, item.name))
    return out


NUMERIC = _numeric_settings()


def test_every_numeric_setting_has_a_rule() -> None:
    assert len(NUMERIC) >= 20
    assert [f"{s}.{k}" for s, k in NUMERIC if f"{s}.{k}" not in RULES] == []


NUMBERS = st.one_of(st.integers(min_value=-(10**12), max_value=10**12), st.floats(allow_nan=True,
                    allow_infinity=True), st.sampled_from([0, -1, 1, 0.5, 2**31, 10**30, True, "7", None]))


@settings(max_examples=150, deadline=None)
@given(setting=st.sampled_from(NUMERIC), value=st.one_of(NUMBERS, st.lists(NUMBERS, max_size=3)))
def test_random_values_give_a_valid_config_or_an_error_naming_the_key(setting: tuple[str, str],
                                                                      value: object) -> None:
    section, key = setting
    try:
        config = config_from_dict({section: {key: value}})
    except UsageError as exc:
        assert f"{section}.{key}" in str(exc)
        return
    stored = getattr(getattr(config, section), key)
    rule = RULES[f"{section}.{key}"]
    for item in stored if isinstance(stored, tuple) else (stored,):
        if item is None:
            continue
        assert isinstance(item, int | float) and math.isfinite(item)
        assert rule.low is None or item >= rule.low
        assert rule.high is None or item <= rule.high


@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!,'\"\n #|>.\t0")), max_size=60))
def test_yaml_reader_gives_data_or_a_one_line_error(text: str) -> None:
    try:
        load_yaml_text(text)
    except YamlLimitError as exc:
        assert "\n" not in str(exc)
