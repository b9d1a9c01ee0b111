"""Burned-in text: detected on synthetic and real ultrasound frames, blanked or refused, checked by OCR."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageDraw, ImageFont
from pydicom.pixels import apply_color_lut

from spinekit.data.deid_pixels import estimate_sector
from spinekit.data.deid_text import boxes_mask, detect_text
from spinekit.data.deidentify import DeidConfig, deidentify

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
SALT = "text-salt"
H, W = 240, 320


def _fan() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    dy, dx = yy - 40.0, xx - 160.0
    angle = np.degrees(np.arctan2(np.abs(dx), np.maximum(dy, 1e-6)))
    return (dy > 0) & (np.hypot(dx, dy) <= 190) & (angle <= 35)


def _frame_with_text() -> tuple[np.ndarray, np.ndarray]:
    """uint8 (H, W) speckled fan with two text lines drawn by PIL; returns frame and text mask."""
    rng = np.random.default_rng(1)
    frame = np.zeros((H, W), dtype=np.uint8)
    fan = _fan()
    frame[fan] = ndimage_speckle(rng, int(fan.sum()))
    canvas = Image.new("L", (W, H), 0)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=14)
    draw.text((6, 6), "DOE^JANE 1980-02-14", fill=255, font=font)
    draw.text((232, 222), "MRN 12345", fill=220, font=font)  # beside the fan, not over it
    text = np.asarray(canvas) > 0
    frame[text] = np.asarray(canvas)[text]
    return frame, text


def ndimage_speckle(rng: np.random.Generator, n: int) -> np.ndarray:
    """Rayleigh-distributed speckle, clipped to 0..255."""
    return np.clip(rng.rayleigh(50.0, size=n), 0, 255).astype(np.uint8)


def test_detects_drawn_text_not_the_fan() -> None:
    frame, text = _frame_with_text()
    boxes = detect_text(frame)
    mask = boxes_mask(boxes, frame.shape)
    assert mask[text].mean() >= 0.99  # every glyph pixel is inside a box
    assert mask[_fan() & ~text].mean() < 0.01  # speckle is not text
    assert len(boxes) == 2
    assert detect_text(np.zeros((H, W), dtype=np.uint8)) == []


def _palette_rgb(ds: pydicom.Dataset) -> np.ndarray:
    rgb = apply_color_lut(ds.pixel_array, ds)
    return (rgb >> 8).astype(np.uint8)


def test_real_scanner_frame_header_text_blanked(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(TEST_FILES / "examples_palette.dcm", src / "us.dcm")
    original = _palette_rgb(pydicom.dcmread(src / "us.dcm"))
    sector = estimate_sector(original[None])
    assert not sector[:60].any()  # the grey header bar is not the imaging sector
    assert sector[90, 430] and sector[200, 460]  # the fan (bright top, dark depth) is
    report = deidentify(src, tmp_path / "out", DeidConfig(salt=SALT))
    entry = report.files[0]
    assert entry.status == "ok" and entry.changes is not None
    assert entry.changes.pixels["checked"] and entry.changes.pixels["text_lines"] >= 10
    ds = pydicom.dcmread(tmp_path / "out" / "us.dcm")
    assert ds.BurnedInAnnotation == "NO" and ds.PhotometricInterpretation == "RGB"
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100", "113101"]
    out = ds.pixel_array
    assert not out[8:22, 10:75].any()  # "PHILIPS"
    assert not out[8:22, 668:775].any()  # "5/25/2011"
    assert not out[36:50, 95:265].any()  # "11-05-25-142825"
    assert not out[38:48, 328:496].any()  # "Philips Healthcare": the thin "ili" too
    fan = sector.copy()
    fan[:100] = False  # below the top arc, where no text is
    assert (out[fan] == original[fan]).mean() > 0.99


def test_refuse_option_writes_nothing(tmp_path: Path) -> None:
    frame, _ = _frame_with_text()
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(frame).save(src / "frame.png")
    Image.fromarray(np.where(_fan(), frame, 0).astype(np.uint8)).save(src / "clean.png")
    report = deidentify(src, tmp_path / "out", DeidConfig(salt=SALT, text_action="refuse"))
    status = {f.source: (f.status, f.reason) for f in report.files}
    assert status["frame.png"][0] == "failed" and "burned-in text detected" in str(status["frame.png"][1])
    assert status["clean.png"][0] == "ok"
    assert not (tmp_path / "out" / "frame.png").exists() and (tmp_path / "out" / "clean.png").exists()


def _ocr_words(path: Path) -> set[str]:
    result = subprocess.run(["tesseract", str(path), "-", "--psm", "11"], capture_output=True,
                            text=True, timeout=60, check=True)
    return {w for w in re.findall(r"[A-Za-z0-9]{4,}", result.stdout)}


@pytest.mark.skipif(shutil.which("tesseract") is None,
                    reason="tesseract not installed (apt-get install tesseract-ocr): OCR check not run")
def test_ocr_finds_no_text_after_deidentification(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(TEST_FILES / "examples_jpeg2k.dcm", src / "us.dcm")
    deidentify(src, tmp_path / "out", DeidConfig(salt=SALT))
    before, after = tmp_path / "before.png", tmp_path / "after.png"
    Image.fromarray(pydicom.dcmread(src / "us.dcm").pixel_array).save(before)
    ds = pydicom.dcmread(tmp_path / "out" / "us.dcm")
    Image.fromarray(ds.pixel_array).save(after)
    found_before = _ocr_words(before)
    assert {"LYMPH", "NODE", "CINE", "0118"} <= found_before  # OCR reads the burned-in text
    assert not found_before & _ocr_words(after), found_before & _ocr_words(after)
