"""De-identification benchmark: header files/s and burned-in text detection ms per frame.

Run from the repository root:

    .venv/bin/python benchmarks/bench_deid.py [--files 300] [--repeats 20]

Prints one table. Targets (2 cores): header de-identification >= 50 DICOM
files/s; text detection <= 50 ms per 640x480 frame. The comparison is a plain
pydicom loop over the same files that only reads and writes each file (no
de-identification): the floor that any pydicom-based de-identifier pays.
The header files are 64x64 MR slices with an identifying header (patient,
physicians, institution, dates, UIDs, private tags, a nested sequence); MR
pixels are not checked for text, so this measures the header path. The text
detector runs on pydicom's bundled real ultrasound frame ``examples_jpeg2k.dcm``
(640x480 RGB) and on a synthetic 640x480 speckled fan with drawn text.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from spinekit.data.deid_text import detect_text
from spinekit.data.deidentify import DeidConfig, deidentify

MR_CLASS = "1.2.840.10008.5.1.4.1.1.4"
TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _mr_file(path: Path, index: int, study: str) -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UID(MR_CLASS)
    sop = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = MR_CLASS, sop, "MR"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, study + ".1", study + ".2"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = f"Doe^Jane{index % 7}", f"MRN{index % 7}", "19800214"
    ds.PatientSex, ds.PatientAge, ds.InstitutionName = "F", "044Y", "St Elsewhere"
    ds.ReferringPhysicianName, ds.OperatorsName, ds.StationName = "House^G", "Op^Er", "MR1"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240131"
    ds.StudyTime = ds.SeriesTime = "101500"
    ds.AccessionNumber, ds.StudyID, ds.SeriesDescription = "ACC1", "S1", "T2 SAG"
    ds.InstanceNumber, ds.SliceThickness, ds.PixelSpacing = index, 4.0, [0.5, 0.5]
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, index * 4.0], [1, 0, 0, 0, 1, 0]
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = MR_CLASS, study + ".9"
    ds.ReferencedImageSequence = Sequence([ref])
    ds.private_block(0x0029, "ACME MR", create=True).add_new(0x10, "LO", "private note")
    rng = np.random.default_rng(index)
    ds.set_pixel_data(rng.integers(0, 4096, size=(64, 64), dtype=np.uint16), "MONOCHROME2", 12,
                      generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)


def _plain_loop(src: Path, out: Path) -> None:
    out.mkdir()
    for path in sorted(src.glob("*.dcm")):
        pydicom.dcmread(path).save_as(out / path.name, enforce_file_format=True)


def _rate(n: int, fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return n / (time.perf_counter() - start)


def _synthetic_frame() -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:480, 0:640]
    fan = (np.hypot(xx - 320.0, yy - 60.0) <= 400) & (np.abs(xx - 320.0) <= 0.7 * (yy - 60.0))
    frame = np.where(fan, np.clip(rng.rayleigh(50.0, size=fan.shape), 0, 255), 0).astype(np.uint8)
    canvas = Image.fromarray(frame)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=16)
    for i, line in enumerate(("DOE^JANE", "MRN 12345", "2024-01-31 10:15", "L4-L5 SAG")):
        draw.text((10, 10 + 22 * i), line, fill=255, font=font)
    return np.stack([np.asarray(canvas)] * 3, axis=-1)


def _detector_ms(frame: np.ndarray, repeats: int) -> float:
    detect_text(frame)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        detect_text(frame)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        src = tmp / "in"
        src.mkdir()
        study = generate_uid(prefix=None)[:40]  # room for the ".1" and ".2" suffixes
        for i in range(args.files):
            _mr_file(src / f"{i:05d}.dcm", i, study)
        plain = _rate(args.files, lambda: _plain_loop(src, tmp / "plain"))
        config = DeidConfig(salt="bench")
        report_holder: list[object] = []
        ours = _rate(args.files, lambda: report_holder.append(deidentify(src, tmp / "deid", config)))
        written = report_holder[0].totals["files_written"]  # type: ignore[attr-defined]
    real = pydicom.dcmread(TEST_FILES / "examples_jpeg2k.dcm").pixel_array
    real_ms = _detector_ms(real, args.repeats)
    synthetic_ms = _detector_ms(_synthetic_frame(), args.repeats)
    rows = [
        ("header de-identification (spinekit deidentify)", f"{ours:.1f} files/s", ">= 50 files/s"),
        ("plain pydicom read + write, no de-identification", f"{plain:.1f} files/s", "(floor)"),
        ("text detection, real US frame 640x480 RGB", f"{real_ms:.1f} ms/frame", "<= 50 ms"),
        ("text detection, synthetic fan 640x480 RGB", f"{synthetic_ms:.1f} ms/frame", "<= 50 ms"),
    ]
    print(f"| measure ({args.files} files, {written} written) | value | target |")
    print("|---|---|---|")
    for name, value, target in rows:
        print(f"| {name} | {value} | {target} |")


if __name__ == "__main__":
    main()
