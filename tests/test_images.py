"""Tests of spinekit.io.images on raster files written into tmp_path."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spinekit.errors import InputError
from spinekit.io.images import (
    decode_image_bytes,
    image_size,
    is_dicom,
    is_image_file,
    read_image,
    to_gray,
    to_uint8,
)

RAMP8 = np.tile(np.arange(256, dtype=np.uint8), (8, 1))
"""8 x 256 horizontal ramp 0..255."""


def gray_pattern(height: int = 24, width: int = 40) -> np.ndarray:
    """Deterministic uint8 gray image ``(H, W)`` with varied content."""
    y, x = np.mgrid[0:height, 0:width]
    return ((x * 7 + y * 13) % 256).astype(np.uint8)


def bilevel_png(path: Path, width: int, height: int) -> Path:
    """A valid all-black 1-bit PNG of any size, written cheaply (rows compressed in a stream)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    packer = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    signature = b"\x89PNG\r\n\x1a\n"
    path.write_bytes(signature + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


# ----------------------------------------------------------------------------- formats


def test_png_8bit_gray(tmp_path: Path) -> None:
    img = gray_pattern()
    path = tmp_path / "a.png"
    Image.fromarray(img).save(path)
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (24, 40)
    np.testing.assert_array_equal(out, img)
    assert image_size(path) == (40, 24)
    assert is_image_file(path) and not is_dicom(path)


def test_png_16bit_keeps_values(tmp_path: Path) -> None:
    img = (np.arange(30 * 20, dtype=np.uint32).reshape(20, 30) * 101).astype(np.uint16)
    assert int(img.max()) > 255
    path = tmp_path / "b.png"
    Image.fromarray(img).save(path)
    out = read_image(path)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, img)


def test_rgb_jpeg(tmp_path: Path) -> None:
    img = np.zeros((32, 48, 3), dtype=np.uint8)
    img[:, :16] = (200, 30, 30)
    img[:, 16:32] = (30, 200, 30)
    img[:, 32:] = (30, 30, 200)
    path = tmp_path / "c.jpg"
    Image.fromarray(img).save(path, quality=95)
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (32, 48, 3)
    # lossy: compare block centres with a tolerance
    for col, colour in ((8, (200, 30, 30)), (24, (30, 200, 30)), (40, (30, 30, 200))):
        assert np.abs(out[16, col].astype(int) - np.array(colour)).max() <= 12


def test_bmp_rgb_and_gray(tmp_path: Path) -> None:
    rgb = np.dstack([gray_pattern(), 255 - gray_pattern(), gray_pattern() // 2])
    path = tmp_path / "d.bmp"
    Image.fromarray(rgb).save(path)
    np.testing.assert_array_equal(read_image(path), rgb)
    gray = tmp_path / "e.BMP"
    Image.fromarray(gray_pattern()).save(gray, format="BMP")
    np.testing.assert_array_equal(read_image(gray), gray_pattern())


def test_tiff_8_and_16_bit(tmp_path: Path) -> None:
    path8 = tmp_path / "f.tif"
    Image.fromarray(gray_pattern()).save(path8)
    np.testing.assert_array_equal(read_image(path8), gray_pattern())
    img16 = gray_pattern().astype(np.uint16) * 250
    path16 = tmp_path / "g.tiff"
    Image.fromarray(img16).save(path16)
    out = read_image(path16)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, img16)


# ----------------------------------------------------------------------------- bad input


def test_truncated_png_names_the_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    noisy = rng.integers(0, 256, size=(64, 64), dtype=np.uint8)  # incompressible
    full = tmp_path / "full.png"
    Image.fromarray(noisy).save(full)
    cut = tmp_path / "cut.png"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(InputError) as info:
        read_image(cut)
    assert str(cut) in str(info.value)
    assert "truncated" in str(info.value) or "damaged" in str(info.value)


def test_non_image_file(tmp_path: Path) -> None:
    fake = tmp_path / "notes.png"
    fake.write_text("hello, not an image\n")
    with pytest.raises(InputError, match="not a readable image") as info:
        read_image(fake)
    assert str(fake) in str(info.value)
    with pytest.raises(InputError, match="not a readable image"):
        image_size(fake)
    with pytest.raises(InputError, match="not found"):
        read_image(tmp_path / "missing.png")


def test_decompression_bomb_refused_by_max_pixels(tmp_path: Path) -> None:
    path = bilevel_png(tmp_path / "big.png", 5000, 5000)
    assert path.stat().st_size < 100_000
    with pytest.raises(InputError, match=r"5000x5000 = 25000000 pixels, over the limit of 1000000"):
        read_image(path, max_pixels=1_000_000)
    with pytest.raises(InputError, match="over the limit"):
        image_size(path, max_pixels=1_000_000)
    assert image_size(path) == (5000, 5000)  # under the default limit: header only


def test_decompression_bomb_20000_squared_read_image(tmp_path: Path) -> None:
    path = bilevel_png(tmp_path / "bomb.png", 20000, 20000)
    assert path.stat().st_size < 200_000
    with pytest.raises(InputError, match=r"too large|over the limit") as info:
        read_image(path, max_pixels=1_000_000)
    assert str(path) in str(info.value)
    with pytest.raises(InputError, match=r"too large|over the limit"):
        read_image(path)


def test_decompression_bomb_20000_squared_image_size(tmp_path: Path) -> None:
    path = bilevel_png(tmp_path / "bomb.png", 20000, 20000)
    with pytest.raises(InputError, match=r"too large|over the limit"):
        image_size(path, max_pixels=1_000_000)


# ----------------------------------------------------------------------------- in memory


def test_decode_image_bytes(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(gray_pattern()).save(buffer, format="PNG")
    out = decode_image_bytes(buffer.getvalue(), source="labelme.json")
    np.testing.assert_array_equal(out, gray_pattern())
    with pytest.raises(InputError, match=r"^labelme\.json: "):
        decode_image_bytes(b"\x89PNG garbage", source="labelme.json")
    with pytest.raises(InputError, match="over the limit"):
        decode_image_bytes(buffer.getvalue(), source="x.json", max_pixels=100)


# ----------------------------------------------------------------------------- conversions


def test_to_gray() -> None:
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    rgb[0, 2] = (0, 0, 255)
    rgb[1] = (90, 90, 90)
    gray = to_gray(rgb)
    assert gray.shape == (2, 3) and gray.dtype == np.uint8
    assert gray[0].tolist() == [76, 150, 29]  # 0.299, 0.587, 0.114 of 255, rounded
    assert gray[1].tolist() == [90, 90, 90]
    plain = gray_pattern()
    assert to_gray(plain) is plain
    assert to_gray(rgb.astype(np.uint16) * 257).dtype == np.uint16


@pytest.mark.parametrize("contrast", ["none", "minmax", "equalize"])
def test_to_uint8_global_methods_are_monotonic_on_a_ramp(contrast: str) -> None:
    for ramp in (RAMP8, (RAMP8.astype(np.uint16) * 16)):
        out = to_uint8(ramp, contrast)  # type: ignore[arg-type]
        assert out.dtype == np.uint8 and out.shape == ramp.shape
        assert int(out.max()) == 255 and int(out.min()) <= 1
        assert np.all(np.diff(out.astype(int), axis=1) >= 0)
        assert len(np.unique(out)) > 200  # no collapse of levels


def test_to_uint8_none_passes_uint8_through_and_minmax_stretches() -> None:
    low = (RAMP8 // 4 + 100).astype(np.uint8)  # 100..163
    assert to_uint8(low, "none") is low
    stretched = to_uint8(low, "minmax")
    assert int(stretched.min()) == 0 and int(stretched.max()) == 255
    flat = np.full((4, 4), 7, dtype=np.uint16)
    assert to_uint8(flat, "minmax").max() == 0  # constant image: no division by zero


def test_to_uint8_clahe() -> None:
    ramp = np.tile(np.arange(256, dtype=np.uint8), (64, 1))  # tiles are 1/8 of each side
    out = to_uint8(ramp, "clahe")
    assert out.dtype == np.uint8 and out.shape == ramp.shape
    assert int(out.min()) == 0 and int(out.max()) >= 250
    # adaptive, so only nearly monotonic: strongly ordered with the ramp
    assert np.corrcoef(out.ravel(), ramp.ravel())[0, 1] > 0.99
    assert np.mean(np.diff(out.astype(int), axis=1) >= 0) > 0.98
    # a low-contrast texture gets a wider range
    texture = (100 + (gray_pattern(64, 64) % 8)).astype(np.uint8)
    enhanced = to_uint8(texture, "clahe")
    assert int(np.ptp(enhanced)) > 4 * int(np.ptp(texture))
    rgb = to_uint8(np.dstack([RAMP8] * 3), "clahe")
    assert rgb.shape == (8, 256, 3) and rgb.dtype == np.uint8
    with pytest.raises(ValueError, match="unknown contrast"):
        to_uint8(RAMP8, "sharpen")  # type: ignore[arg-type]
