"""Tests of spinekit.io.dicom on DICOM files written with pydicom and on pydicom's bundled files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import get_decoder
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGLSLossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from spinekit.errors import InputError
from spinekit.io.dicom import (
    dicom_frame_count,
    dicom_metadata,
    dicom_size,
    dicom_to_uint8,
    read_dicom,
    read_dicom_frame,
)
from spinekit.io.images import image_size, is_dicom, read_image

RAMP = np.arange(256, dtype=np.uint16).reshape(16, 16)
"""16x16 ramp 0..255, row-major: pixel (r, c) holds 16 * r + c."""


def bundled(name: str) -> Path:
    """A file shipped inside the pydicom wheel (no download)."""
    path = get_testdata_file(name)
    assert path is not None, name
    return Path(str(path))


def write_dicom(
    path: Path,
    pixels: np.ndarray | None,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    signed: bool = False,
    preamble: bool = True,
    **attrs: Any,
) -> Path:
    """Write a minimal Secondary Capture DICOM file.

    ``pixels``: ``(H, W)`` or ``(F, H, W)`` gray, ``(H, W, 3)`` or ``(F, H, W, 3)``
    RGB (photometric="RGB"); uint8 is stored in 8 bits, anything else in 16.
    ``None`` writes an image header without Pixel Data. ``attrs`` are set as
    DICOM keywords (e.g. ``RescaleSlope=2``).
    """
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "P001"
    ds.Modality = "OT"
    if pixels is not None:
        _set_pixels(ds, pixels, photometric, bits_stored, signed)
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    if preamble:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.save_as(path, implicit_vr=True, little_endian=True)
    return path


def _set_pixels(
    ds: Dataset, pixels: np.ndarray, photometric: str, bits_stored: int | None, signed: bool
) -> None:
    colour = photometric == "RGB"
    frames = pixels if pixels.ndim == (4 if colour else 3) else pixels[np.newaxis]
    eight = pixels.dtype == np.uint8
    ds.Rows, ds.Columns = frames.shape[1], frames.shape[2]
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    if frames.shape[0] > 1:
        ds.NumberOfFrames = frames.shape[0]
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if eight else 16
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(signed)
    dtype = "u1" if eight else ("<i2" if signed else "<u2")
    data = frames.astype(dtype).tobytes()
    ds.PixelData = data + b"\0" * (len(data) % 2)


def dicom_window(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 LINEAR window to 0..255, written out independently."""
    x = x.astype(np.float64)
    c, w = center - 0.5, width - 1.0
    out = ((x - c) / w + 0.5) * 255.0
    out = np.where(x <= c - w / 2, 0.0, np.where(x > c + w / 2, 255.0, out))
    return np.rint(out).astype(np.uint8)


# ----------------------------------------------------------------------------- modality values


def test_rescale_slope_intercept_gives_exact_modality_values(tmp_path: Path) -> None:
    stored = (RAMP * 100).astype(np.uint16)  # 0..25500, needs 16 bits
    path = write_dicom(tmp_path / "ct.dcm", stored, RescaleSlope=2, RescaleIntercept=-1024, Modality="CT")
    image = read_dicom(path)
    assert image.frames.shape == (1, 16, 16)
    assert image.frames.dtype == np.float32
    np.testing.assert_array_equal(image.frames[0], stored.astype(np.float64) * 2 - 1024)
    assert image.bits_stored == 16
    assert image.modality == "CT"
    assert image.patient_id == "P001"
    assert image.number_of_frames == 1
    assert image.sop_uid is not None and image.study_uid is not None
    # no window in the header: min-max of the frame
    out = dicom_to_uint8(image, 0)
    np.testing.assert_array_equal(out, RAMP.astype(np.uint8))


def test_bundled_ct_matches_pydicom_stored_values_times_rescale() -> None:
    path = bundled("CT_small.dcm")
    ds = pydicom.dcmread(path)
    expected = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    image = read_dicom(path)
    np.testing.assert_array_equal(image.frames[0], expected)
    assert image.pixel_spacing_mm == pytest.approx((0.661468, 0.661468))
    assert image.modality == "CT"


def test_signed_12_bit_stored_in_16_ignores_unused_high_bits(tmp_path: Path) -> None:
    values = np.arange(16, dtype=np.uint16).reshape(4, 4) * 250  # 0..3750 fits 12 bits
    path = write_dicom(tmp_path / "u12.dcm", values | 0xF000, bits_stored=12)
    np.testing.assert_array_equal(read_dicom(path).frames[0], values)
    # signed 12-bit two's complement: 0xFFB = -5, 0x800 = -2048, 0x7FF = 2047
    raw = np.array([[0xFFB, 5], [0x800, 0x7FF]], dtype=np.uint16)
    path = write_dicom(tmp_path / "s12.dcm", raw.view(np.int16), bits_stored=12, signed=True)
    image = read_dicom(path)
    np.testing.assert_array_equal(image.frames[0], [[-5, 5], [-2048, 2047]])
    assert image.bits_stored == 12
    out = dicom_to_uint8(image, 0)  # min-max: -2048 -> 0, 2047 -> 255
    assert out[1, 0] == 0 and out[1, 1] == 255


def test_eight_bit_unscaled_data_is_shown_as_stored(tmp_path: Path) -> None:
    values = (RAMP // 2 + 20).astype(np.uint8)  # 20..147, not the full range
    path = write_dicom(tmp_path / "us.dcm", values, Modality="US")
    np.testing.assert_array_equal(read_dicom_frame(path), values)


# ----------------------------------------------------------------------------- VOI


def test_window_center_width_exact_output_on_ramp(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "w.dcm", RAMP, WindowCenter=100, WindowWidth=101)
    out = read_dicom_frame(path)
    assert out.dtype == np.uint8 and out.shape == (16, 16)
    np.testing.assert_array_equal(out, dicom_window(RAMP, 100, 101))
    flat = out.ravel()
    assert flat[49] == 0 and flat[100] == 129 and flat[150] == 255 and flat[151] == 255
    assert np.all(np.diff(flat.astype(int)) >= 0)


def test_multi_valued_window_uses_first_and_explicit_window_overrides(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "w2.dcm", RAMP, WindowCenter=[100, 30], WindowWidth=[101, 10])
    np.testing.assert_array_equal(read_dicom_frame(path), dicom_window(RAMP, 100, 101))
    # explicit window (LINEAR_EXACT): (x - c) / w + 0.5, here x / 256
    out = read_dicom_frame(path, window=(128.0, 256.0))
    np.testing.assert_array_equal(out, np.rint(RAMP / 256.0 * 255.0).astype(np.uint8))
    with pytest.raises(InputError, match="window width"):
        read_dicom_frame(path, window=(10.0, 0.0))


def test_window_applies_to_rescaled_values(tmp_path: Path) -> None:
    path = write_dicom(
        tmp_path / "hu.dcm",
        RAMP * 10,
        RescaleSlope=1,
        RescaleIntercept=-1000,
        WindowCenter=300,
        WindowWidth=1500,
    )
    hu = RAMP.astype(np.float64) * 10 - 1000
    np.testing.assert_array_equal(read_dicom_frame(path), dicom_window(hu, 300, 1500))


def test_voi_lut_sequence_takes_precedence_over_window(tmp_path: Path) -> None:
    lut = Dataset()
    lut.LUTDescriptor = [256, 0, 8]
    table = (255 - np.arange(256)) // 2  # decreasing, 127..0
    lut.add_new("LUTData", "OW", table.astype("<u2").tobytes())
    path = write_dicom(tmp_path / "lut.dcm", RAMP, VOILUTSequence=[lut], WindowCenter=128, WindowWidth=256)
    out = read_dicom_frame(path)
    # LUT output is 8 bits (0..255) -> kept as is
    np.testing.assert_array_equal(out, table[RAMP].astype(np.uint8))


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    m2 = read_dicom_frame(write_dicom(tmp_path / "m2.dcm", RAMP))
    m1 = read_dicom_frame(write_dicom(tmp_path / "m1.dcm", RAMP, photometric="MONOCHROME1"))
    np.testing.assert_array_equal(m2, RAMP.astype(np.uint8))
    np.testing.assert_array_equal(m1, 255 - RAMP.astype(np.uint8))
    assert m1[0, 0] == 255 and m1[-1, -1] == 0  # lowest stored value is brightest
    windowed = read_dicom_frame(
        write_dicom(tmp_path / "m1w.dcm", RAMP, photometric="MONOCHROME1", WindowCenter=100, WindowWidth=101)
    )
    np.testing.assert_array_equal(windowed, 255 - dicom_window(RAMP, 100, 101))


# ----------------------------------------------------------------------------- frames


def test_multi_frame_counts_and_decodes_only_requested_frames(tmp_path: Path) -> None:
    stack = np.stack([RAMP + 1000 * k for k in range(3)]).astype(np.uint16)
    path = write_dicom(tmp_path / "cine.dcm", stack, RescaleSlope=1, RescaleIntercept=0)
    assert dicom_frame_count(path) == 3
    full = read_dicom(path)
    assert full.frames.shape == (3, 16, 16) and full.frame_indices == (0, 1, 2)
    np.testing.assert_array_equal(full.frames, stack)
    one = read_dicom(path, frames=[2])
    assert one.frames.shape == (1, 16, 16) and one.frame_indices == (2,)
    np.testing.assert_array_equal(one.frames[0], stack[2])
    assert one.number_of_frames == 3
    np.testing.assert_array_equal(read_dicom_frame(path, frame=2), RAMP.astype(np.uint8))
    np.testing.assert_array_equal(read_image(path, frame=1), RAMP.astype(np.uint8))
    with pytest.raises(InputError, match=r"frame 3 out of range.*3 frame"):
        read_dicom_frame(path, frame=3)
    with pytest.raises(InputError, match="out of range"):
        read_dicom(path, frames=[-1])
    with pytest.raises(InputError, match="not decoded"):
        dicom_to_uint8(one, 0)


def test_enhanced_per_frame_rescale_from_functional_groups(tmp_path: Path) -> None:
    groups = []
    for intercept in (0, -100):
        transform = Dataset()
        transform.RescaleSlope = 1
        transform.RescaleIntercept = intercept
        transform.RescaleType = "US"
        item = Dataset()
        item.PixelValueTransformationSequence = [transform]
        groups.append(item)
    measures = Dataset()
    measures.PixelSpacing = [0.8, 0.7]
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    stack = np.stack([RAMP, RAMP]).astype(np.uint16)
    path = write_dicom(
        tmp_path / "enh.dcm",
        stack,
        PerFrameFunctionalGroupsSequence=groups,
        SharedFunctionalGroupsSequence=[shared],
    )
    image = read_dicom(path)
    np.testing.assert_array_equal(image.frames[0], RAMP)
    np.testing.assert_array_equal(image.frames[1], RAMP.astype(np.float64) - 100)
    assert image.pixel_spacing_mm == pytest.approx((0.8, 0.7))


def test_bundled_multi_frame_rtdose_frame_matches_pydicom() -> None:
    path = bundled("rtdose.dcm")
    ds = pydicom.dcmread(path)
    image = read_dicom(path, frames=[5])
    expected = ds.pixel_array[5].astype(np.float64) * float(ds.get("RescaleSlope", 1))
    np.testing.assert_allclose(image.frames[0], expected, rtol=1e-6)
    assert dicom_frame_count(path) == 15


# ----------------------------------------------------------------------------- colour


def test_rgb_round_trip_and_read_image(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
    path = write_dicom(tmp_path / "rgb.dcm", rgb, photometric="RGB", Modality="US")
    image = read_dicom(path)
    assert image.frames.shape == (1, 6, 5, 3) and image.frames.dtype == np.uint8
    np.testing.assert_array_equal(dicom_to_uint8(image, 0), rgb)
    np.testing.assert_array_equal(read_image(path), rgb)
    assert image_size(path) == (5, 6)


@pytest.mark.parametrize("name", ["SC_ybr_full_422_uncompressed.dcm", "SC_rgb_rle_16bit.dcm"])
def test_bundled_colour_files_are_uint8_rgb(name: str) -> None:
    path = bundled(name)
    reference = pydicom.dcmread(path).pixel_array  # pydicom converts YBR to RGB
    if reference.dtype == np.uint16:
        reference = np.rint(reference / 257.0)
    out = read_dicom_frame(path)
    assert out.shape == (100, 100, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, reference.astype(np.uint8))


def test_bundled_palette_colour_is_expanded_to_rgb() -> None:
    out = read_dicom_frame(bundled("examples_palette.dcm"))
    assert out.shape == (350, 800, 3) and out.dtype == np.uint8
    assert len(np.unique(out.reshape(-1, 3), axis=0)) > 10


# ----------------------------------------------------------------------------- spacing, metadata


def test_pixel_spacing_sources(tmp_path: Path) -> None:
    direct = write_dicom(tmp_path / "a.dcm", RAMP, PixelSpacing=[0.5, 0.25], ImagerPixelSpacing=[0.9, 0.9])
    assert read_dicom(direct).pixel_spacing_mm == pytest.approx((0.5, 0.25))
    imager = write_dicom(tmp_path / "b.dcm", RAMP, ImagerPixelSpacing=[0.14, 0.15])
    assert dicom_metadata(imager)["pixel_spacing_mm"] == pytest.approx((0.14, 0.15))
    assert read_dicom(write_dicom(tmp_path / "c.dcm", RAMP)).pixel_spacing_mm is None


def _us_region(units: int, dx: float, dy: float, x1: int, y1: int) -> Dataset:
    region = Dataset()
    region.RegionSpatialFormat = 1
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 0
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = x1, y1
    region.PhysicalUnitsXDirection = units
    region.PhysicalUnitsYDirection = units
    region.PhysicalDeltaX = dx
    region.PhysicalDeltaY = dy
    return region


def test_ultrasound_region_spacing_cm_to_mm(tmp_path: Path) -> None:
    regions = [
        _us_region(4, 0.5, 0.5, 15, 15),  # seconds (Doppler): ignored
        _us_region(3, 0.01, 0.02, 5, 5),  # small cm region
        _us_region(3, 0.015, 0.025, 15, 15),  # largest cm region wins
    ]
    path = write_dicom(tmp_path / "us.dcm", RAMP, SequenceOfUltrasoundRegions=regions)
    assert read_dicom(path).pixel_spacing_mm == pytest.approx((0.25, 0.15))
    only_seconds = write_dicom(
        tmp_path / "us2.dcm", RAMP, SequenceOfUltrasoundRegions=[_us_region(4, 1, 1, 9, 9)]
    )
    assert dicom_metadata(only_seconds)["pixel_spacing_mm"] is None


def test_header_only_functions(tmp_path: Path) -> None:
    stack = np.zeros((2, 7, 9), dtype=np.uint16)
    path = write_dicom(tmp_path / "h.dcm", stack, PixelSpacing=[0.3, 0.3], Modality="MR")
    assert dicom_size(path) == (9, 7)
    meta = dicom_metadata(path)
    assert meta["rows"] == 7 and meta["columns"] == 9
    assert meta["number_of_frames"] == 2 and meta["modality"] == "MR"
    assert meta["photometric"] == "MONOCHROME2" and meta["patient_id"] == "P001"
    assert meta["pixel_spacing_mm"] == pytest.approx((0.3, 0.3))


# ----------------------------------------------------------------------------- bad input


def test_huge_header_is_refused_before_decoding(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "huge.dcm", np.zeros((2, 2), dtype=np.uint16))
    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns = 60000, 60000  # pixel data stays 8 bytes: decoding would fail
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(InputError, match="60000x60000 = 3600000000 pixels, over the limit"):
        read_dicom(path)
    with pytest.raises(InputError, match="over the limit of 1000000"):
        read_image(path, max_pixels=1_000_000)
    assert dicom_size(path) == (60000, 60000)
    with pytest.raises(InputError, match="over the limit"):
        dicom_size(path, max_pixels=1_000_000)


def test_non_image_dicom_is_refused_naming_the_file(tmp_path: Path) -> None:
    report = write_dicom(tmp_path / "report.dcm", None, Modality="SR")
    with pytest.raises(InputError, match="non-image DICOM") as info:
        read_dicom(report)
    assert str(report) in str(info.value)
    header_only = write_dicom(tmp_path / "nopix.dcm", None, Rows=4, Columns=4, BitsAllocated=16)
    with pytest.raises(InputError, match=r"non-image DICOM.*no pixel data") as info:
        read_image(header_only)
    assert str(header_only) in str(info.value)
    for name in ("test-SR.dcm", "rtplan.dcm"):
        with pytest.raises(InputError, match="non-image DICOM"):
            read_dicom(bundled(name))
    dicomdir = bundled("CT_small.dcm").parent / "dicomdirtests" / "DICOMDIR"
    with pytest.raises(InputError, match=r"non-image DICOM.*Directory"):
        dicom_metadata(dicomdir)


def test_not_a_dicom_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.dcm"
    text.write_text("this is not a DICOM file\n" * 20)
    with pytest.raises(InputError, match="not a DICOM") as info:
        read_image(text)
    assert str(text) in str(info.value)
    with pytest.raises(InputError, match="not a DICOM"):
        dicom_size(text)
    with pytest.raises(InputError, match="not found"):
        read_dicom(tmp_path / "missing.dcm")


def test_truncated_pixel_data() -> None:
    with pytest.raises(InputError, match="truncated"):
        read_dicom(bundled("MR_truncated.dcm"))


def test_compressed_without_decoder_names_syntax_and_packages() -> None:
    path = bundled("MR_small_jpeg_ls_lossless.dcm")
    if get_decoder(JPEGLSLossless).is_available:  # decoder installed: must decode
        reference = read_dicom(bundled("MR_small.dcm")).frames
        np.testing.assert_array_equal(read_dicom(path).frames, reference)
        return
    with pytest.raises(InputError, match=r"JPEG-LS Lossless.*pylibjpeg") as info:
        read_dicom(path)
    assert str(path) in str(info.value)


def test_compressed_with_available_decoders_decode() -> None:
    reference = read_dicom(bundled("MR_small.dcm")).frames
    for name in ("MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_bigendian.dcm"):
        np.testing.assert_array_equal(read_dicom(bundled(name)).frames, reference)
    deflated = bundled("image_dfl.dcm")
    np.testing.assert_array_equal(read_dicom(deflated).frames[0], pydicom.dcmread(deflated).pixel_array)


# ----------------------------------------------------------------------------- dispatch


def test_read_image_dispatches_dicom_with_and_without_suffix(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "IM0001", RAMP, WindowCenter=100, WindowWidth=101)
    assert is_dicom(path)
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (16, 16)
    np.testing.assert_array_equal(out, dicom_window(RAMP, 100, 101))
    assert image_size(path) == (16, 16)


def test_legacy_file_without_preamble_or_meta(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "legacy.dcm", RAMP, preamble=False)
    assert path.read_bytes()[128:132] != b"DICM"
    image = read_dicom(path)
    np.testing.assert_array_equal(image.frames[0], RAMP)
    np.testing.assert_array_equal(read_image(path), RAMP.astype(np.uint8))
