"""De-identification: Annex E header profile, pseudonyms, UID remapping, burned-in text."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian
from scipy import ndimage

from spinekit.data.deid_profile import resolve_action
from spinekit.data.deidentify import (
    DEFAULT_REPORT_NAME,
    DeidConfig,
    deidentify,
    estimate_sector,
    pseudonymise_id,
    remap_uid,
    write_report,
)
from spinekit.errors import InputError

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
SALT = "test-salt-1"
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
SECRETS = {
    "name": "Doe^Jane", "id": "MRN12345", "birth": "19800214", "institution": "St Elsewhere",
    "address": "1 Main Street", "referring": "House^Gregory", "performing": "Wilson^James",
    "operator": "Smith^Operator", "accession": "ACC998877", "study_id": "STUDY42",
    "description": "Lumbar scan of Jane", "station": "USROOM3", "serial": "SN-77777",
    "study_date": "20240131", "phone": "555-0100", "private": "private note Jane",
    "other_name": "Roe^Richard", "mother": "Doe^Mary",
}
UID_RE = re.compile(r"^2\.25\.(0|[1-9][0-9]*)$")
H, W, FRAMES = 60, 80, 3


def _uid() -> str:
    return "1.2.826.0.1.3680043.9.7." + str(secrets.randbelow(10**20) + 10**20)


def _fan_mask() -> np.ndarray:
    """Bool (H, W): a 80-degree sector of radius 50 with its apex at (x=40, y=8)."""
    yy, xx = np.mgrid[0:H, 0:W]
    dy, dx = yy - 8.0, xx - 40.0
    angle = np.degrees(np.arctan2(np.abs(dx), np.maximum(dy, 1e-6)))
    return (dy > 0) & (np.hypot(dx, dy) <= 50) & (angle <= 40)


def _us_frames() -> np.ndarray:
    """uint8 (FRAMES, H, W): speckle in the fan, bright 'text' in the header and a corner."""
    rng = np.random.default_rng(0)
    frames = np.zeros((FRAMES, H, W), dtype=np.uint8)
    fan = _fan_mask()
    frames[:, fan] = rng.integers(60, 200, size=(FRAMES, int(fan.sum())), dtype=np.uint8)
    frames[:, 1:4, 5:30] = 255  # patient name in the header band
    frames[:, 52:58, 1:7] = 255  # text outside the sector
    return frames


def _identity(ds: Dataset) -> None:
    ds.PatientName, ds.PatientID = SECRETS["name"], SECRETS["id"]
    ds.PatientBirthDate, ds.PatientSex = SECRETS["birth"], "F"
    ds.PatientAddress, ds.PatientTelephoneNumbers = SECRETS["address"], SECRETS["phone"]
    ds.OtherPatientNames, ds.PatientMotherBirthName = SECRETS["other_name"], SECRETS["mother"]
    ds.InstitutionName, ds.InstitutionAddress = SECRETS["institution"], SECRETS["address"]
    ds.ReferringPhysicianName = SECRETS["referring"]
    ds.PerformingPhysicianName = SECRETS["performing"]
    ds.OperatorsName, ds.StationName = SECRETS["operator"], SECRETS["station"]
    ds.DeviceSerialNumber, ds.AccessionNumber = SECRETS["serial"], SECRETS["accession"]
    ds.StudyID, ds.StudyDescription = SECRETS["study_id"], SECRETS["description"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = SECRETS["study_date"]
    ds.StudyTime = ds.ContentTime = "101500"
    ds.DateOfSecondaryCapture = SECRETS["study_date"]  # not in Table E.1-1: emptied by rule
    ds.EvaluatorName = SECRETS["performing"]  # PN not in Table E.1-1: emptied by rule


def _nested(ds: Dataset, referenced_uid: str | None) -> None:
    equipment = Dataset()
    equipment.Manufacturer = "ACME"
    equipment.InstitutionName = SECRETS["institution"]
    equipment.OperatorsName = SECRETS["operator"]
    equipment.ContributionDateTime = SECRETS["study_date"] + "101500"
    equipment.private_block(0x0031, "ACME NESTED", create=True).add_new(0x01, "LO",
                                                                       SECRETS["private"])
    ds.ContributingEquipmentSequence = Sequence([equipment])
    other = Dataset()
    other.PatientID, other.IssuerOfPatientID = SECRETS["id"], "HOSP"
    ds.OtherPatientIDsSequence = Sequence([other])
    if referenced_uid:
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = US_MULTIFRAME, referenced_uid
        ds.SourceImageSequence = Sequence([ref])


def make_us_file(path: Path, study_uid: str, sop_uid: str, *, referenced_uid: str | None = None) -> Path:
    """Write a multi-frame US DICOM with identifying header data and private tags."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(US_MULTIFRAME)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.SourceApplicationEntityTitle = SECRETS["station"]
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = US_MULTIFRAME, sop_uid, "US"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, study_uid + ".1"
    ds.FrameOfReferenceUID = study_uid + ".9"
    ds.MultiFrameSourceSOPInstanceUID = sop_uid  # instance UID not in Table E.1-1
    ds.FailedSOPInstanceUIDList = [sop_uid, study_uid]  # multi-valued UID
    _identity(ds)
    _nested(ds, referenced_uid)
    block = ds.private_block(0x0029, "ACME US", create=True)
    block.add_new(0x10, "LO", SECRETS["private"])
    block.add_new(0x11, "LO", SECRETS["name"])
    ds.BurnedInAnnotation = "YES"
    ds.set_pixel_data(_us_frames(), "MONOCHROME2", 8, generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture()
def study(tmp_path: Path) -> dict[str, object]:
    src = tmp_path / "in"
    (src / "patient1" / "series1").mkdir(parents=True)
    study_uid, sop1, sop2 = _uid(), _uid(), _uid()
    first = make_us_file(src / "patient1" / "series1" / "a.dcm", study_uid, sop1)
    second = make_us_file(src / "patient1" / "b.dcm", study_uid, sop2, referenced_uid=sop1)
    (src / "notes.txt").write_text("not an image")
    return {"src": src, "files": [first, second], "study_uid": study_uid, "sops": [sop1, sop2]}


def _all_values(ds: Dataset) -> list[str]:
    values = [str(elem.value) for elem in ds.file_meta.iterall()] if hasattr(ds, "file_meta") else []
    values += [str(elem.value) for elem in ds.iterall() if elem.tag != 0x7FE00010]
    return values


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _us_config(**kwargs: object) -> DeidConfig:
    return DeidConfig(salt=SALT, blank_header_fraction=0.1, blank_outside_sector=True,
                      **kwargs)  # type: ignore[arg-type]


def test_compound_action_codes_resolve() -> None:
    assert [resolve_action(c) for c in ("X/Z", "X/D", "X/Z/D", "Z/D", "X/Z/U*")] == \
        ["Z", "X", "Z", "Z", "U"]
    with pytest.raises(ValueError):
        resolve_action("Q")


def test_header_identifiers_gone_everywhere(study: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    before = {p: _digest(p) for p in study["files"]}
    report = deidentify(study["src"], out, _us_config())
    assert {p: _digest(p) for p in study["files"]} == before  # input untouched
    assert report.totals["files_written"] == 2 and report.totals["files_failed"] == 0
    assert [f.source for f in report.files if f.status == "skipped"] == ["notes.txt"]
    assert not (out / "notes.txt").exists()
    for rel in ("patient1/series1/a.dcm", "patient1/b.dcm"):
        raw = (out / rel).read_bytes()
        ds = pydicom.dcmread(out / rel)
        values = " | ".join(_all_values(ds)).lower()
        for secret in SECRETS.values():
            assert secret.lower() not in values, secret
        for secret in (SECRETS["name"], SECRETS["id"], SECRETS["private"], SECRETS["institution"],
                       study["study_uid"], *study["sops"]):
            assert secret.encode() not in raw, secret
        assert not any(elem.tag.is_private for elem in ds.iterall())
        assert "OtherPatientIDsSequence" not in ds and "PatientAddress" not in ds
        assert ds.PatientBirthDate == "" and ds.PatientSex == "" and ds.StudyDate == ""
        assert ds.PatientIdentityRemoved == "YES"
        codes = [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
        assert codes == ["113100", "113101"]
        assert "ContributingEquipmentSequence" not in ds  # not in Table E.1-1, not on the safe list
        assert ds.Modality == "US" and ds.SOPClassUID == US_MULTIFRAME  # safe list kept
        assert "SourceApplicationEntityTitle" not in ds.file_meta


def test_uids_remapped_consistently(study: dict, tmp_path: Path) -> None:
    deidentify(study["src"], tmp_path / "out", _us_config())
    first = pydicom.dcmread(tmp_path / "out" / "patient1" / "series1" / "a.dcm")
    second = pydicom.dcmread(tmp_path / "out" / "patient1" / "b.dcm")
    assert first.StudyInstanceUID == second.StudyInstanceUID != study["study_uid"]
    assert first.SOPInstanceUID != second.SOPInstanceUID
    assert second.SourceImageSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert second.SourceImageSequence[0].ReferencedSOPClassUID == US_MULTIFRAME  # class kept
    assert first.MultiFrameSourceSOPInstanceUID == first.SOPInstanceUID  # remapped by rule
    assert list(first.FailedSOPInstanceUIDList) == [first.SOPInstanceUID, first.StudyInstanceUID]
    for ds in (first, second):
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID,
                    ds.FrameOfReferenceUID):
            assert UID_RE.match(uid) and len(uid) <= 64
    # a separate run with the same salt gives the same UIDs and pseudonyms
    deidentify(study["files"][0], tmp_path / "again", _us_config())
    again = pydicom.dcmread(tmp_path / "again" / "a.dcm")
    assert again.SOPInstanceUID == first.SOPInstanceUID and again.PatientID == first.PatientID
    deidentify(study["files"][0], tmp_path / "other", DeidConfig(salt="another salt"))
    other = pydicom.dcmread(tmp_path / "other" / "a.dcm")
    assert other.StudyInstanceUID != first.StudyInstanceUID


def test_pseudonyms_are_salted_and_stable(study: dict, tmp_path: Path) -> None:
    deidentify(study["src"], tmp_path / "out", DeidConfig(salt=SALT))
    ds = pydicom.dcmread(tmp_path / "out" / "patient1" / "b.dcm")
    expected = pseudonymise_id(SECRETS["id"], SALT)
    assert re.fullmatch(r"ANON-[0-9a-f]{16}", expected)
    assert ds.PatientID == expected and str(ds.PatientName) == expected
    assert pseudonymise_id(" MRN12345 ", SALT) == expected
    assert pseudonymise_id(SECRETS["id"], "other salt") != expected
    assert pseudonymise_id("MRN12346", SALT) != expected
    assert remap_uid("1.2.3", SALT) == remap_uid("1.2.3", SALT) != remap_uid("1.2.3", "x")
    with pytest.raises(ValueError):
        pseudonymise_id("x", "")


def test_burned_in_text_blanked_sector_kept(study: dict, tmp_path: Path) -> None:
    config = _us_config(blank_boxes=((70, 0, 80, 10),))
    deidentify(study["src"], tmp_path / "out", config)
    ds = pydicom.dcmread(tmp_path / "out" / "patient1" / "series1" / "a.dcm")
    pixels, original = ds.pixel_array, _us_frames()
    assert pixels.shape == (FRAMES, H, W) and ds.BurnedInAnnotation == "NO"
    assert not pixels[:, :6].any()  # header band (ceil(0.1 * 60) rows)
    assert not pixels[:, 52:58, 1:7].any()  # text outside the sector
    assert not pixels[:, 0:10, 70:80].any()  # configured box
    inside = _fan_mask()
    inside[:6] = False
    inside[0:10, 70:80] = False
    np.testing.assert_array_equal(pixels[:, inside], original[:, inside])


def test_sector_estimate_fills_shadows() -> None:
    frames = _us_frames()
    shadow = _fan_mask() & (np.mgrid[0:H, 0:W][1] >= 35) & (np.mgrid[0:H, 0:W][1] <= 45)
    shadow &= np.mgrid[0:H, 0:W][0] >= 30  # acoustic shadow reaching the sector's arc
    frames[:, shadow] = 0
    sector = estimate_sector(frames)
    fan = _fan_mask()
    assert sector[shadow].mean() > 0.95  # only the sliver between the arc and a chord is lost
    assert not sector[52:58, 1:7].any() and not sector[1:4, 5:30].any()
    assert sector[fan].mean() > 0.98
    near_fan = ndimage.binary_dilation(fan, np.ones((3, 3)), iterations=2)  # mean filter widens
    assert not (sector & ~near_fan).any()
    with pytest.raises(ValueError):
        estimate_sector(np.zeros((1, 10, 10), dtype=np.uint8))


def test_refuses_overlap_and_existing_outputs(study: dict, tmp_path: Path) -> None:
    src = study["src"]
    for out in (src, src / "deid", tmp_path):
        with pytest.raises(InputError):
            deidentify(src, out, DeidConfig(salt=SALT))
    deidentify(src, tmp_path / "out", DeidConfig(salt=SALT))
    with pytest.raises(InputError, match="already exist"):
        deidentify(src, tmp_path / "out", DeidConfig(salt=SALT))
    report = deidentify(src, tmp_path / "out", DeidConfig(salt=SALT), overwrite=True)
    assert report.totals["files_written"] == 2
    with pytest.raises(InputError):
        DeidConfig(salt="")
    with pytest.raises(InputError):
        DeidConfig(salt=SALT, blank_boxes=((10, 10, 5, 20),))


def test_damaged_files_reported_and_run_continues(study: dict, tmp_path: Path) -> None:
    src = study["src"]
    good = study["files"][0].read_bytes()
    (src / "truncated.dcm").write_bytes(good[:600])
    (src / "garbage.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x13\x37" * 50)
    calls: list[tuple[int, int]] = []
    report = deidentify(src, tmp_path / "out", _us_config(),
                        progress=lambda done, total: calls.append((done, total)))
    by_name = {f.source: f for f in report.files}
    assert by_name["truncated.dcm"].status == "failed" and by_name["truncated.dcm"].reason
    assert by_name["garbage.dcm"].status == "failed" and by_name["garbage.dcm"].reason
    assert not (tmp_path / "out" / "truncated.dcm").exists()
    assert report.totals["files_written"] == 2 and report.totals["files_failed"] == 2
    assert calls[-1] == (4, 4) and len(calls) == 4


def test_report_lists_changes_without_values(study: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = deidentify(study["src"], out, _us_config())
    write_report(report, out / DEFAULT_REPORT_NAME)
    text = (out / DEFAULT_REPORT_NAME).read_text()
    data = json.loads(text)
    for secret in (*SECRETS.values(), study["study_uid"], *study["sops"], SALT):
        assert secret not in text, secret
    entry = next(f for f in data["files"] if f["source"] == "patient1/b.dcm")
    assert "PatientAddress" in entry["removed"] and "OtherPatientIDsSequence" in entry["removed"]
    assert {"PatientBirthDate", "InstitutionName", "AccessionNumber"} <= set(entry["emptied"])
    assert {"PatientID", "PatientName"} <= set(entry["replaced"])
    assert entry["private_tags_removed"] == 3  # top level: creator + 2 (nested ones go with their sequence)
    assert entry["uids_remapped"] == 8  # study, series, SOP, frame of ref., source, 2 failed, ref.
    assert {"DateOfSecondaryCapture", "EvaluatorName"} <= set(entry["removed"])  # not in the table
    assert {"header_band", "outside_sector"} <= {r["kind"] for r in entry["regions_blanked"]}
    assert entry["pixels"]["checked"] is True
    assert data["totals"]["files_written"] == 2 and data["skipped"][0]["source"] == "notes.txt"
    assert "salt" not in data["settings"]


def test_bundled_pydicom_files(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name in ("CT_small.dcm", "MR_small_implicit.dcm", "SC_rgb_rle_2frame.dcm",
                 "SC_rgb_jpeg.dcm", "rtplan.dcm", "test-SR.dcm"):
        shutil.copy(TEST_FILES / name, src / name)
    shutil.copy(TEST_FILES / "dicomdirtests" / "DICOMDIR", src / "DICOMDIR")
    originals = {p.name: pydicom.dcmread(p) for p in src.glob("*.dcm")}
    config = DeidConfig(salt=SALT, blank_header_fraction=0.2, blank_burned_in_for_modalities=("OT",))
    report = deidentify(src, tmp_path / "out", config)
    status = {f.source: f.status for f in report.files}
    assert status.pop("DICOMDIR") == "skipped" and set(status.values()) == {"ok"}
    for name, orig in originals.items():
        ds = pydicom.dcmread(tmp_path / "out" / name)
        values = _all_values(ds)
        for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "SOPInstanceUID"):
            secret = str(orig.get(keyword, "") or "")
            if len(secret) >= 4:
                assert not any(secret in v for v in values), (name, keyword)
        for keyword in ("InstitutionName", "ReferringPhysicianName", "StudyDate", "StudyTime"):
            secret = str(orig.get(keyword, "") or "")
            if secret:
                assert secret not in values, (name, keyword)
        assert not any(elem.tag.is_private for elem in ds.iterall())
    ct_out = pydicom.dcmread(tmp_path / "out" / "CT_small.dcm")
    assert ct_out.PixelData == originals["CT_small.dcm"].PixelData  # CT not in modalities
    ct_notes = next(f for f in report.files if f.source == "CT_small.dcm").changes.notes  # type: ignore[union-attr]
    assert any("not checked for burned-in text" in note for note in ct_notes)
    assert [i.CodeValue for i in ct_out.DeidentificationMethodCodeSequence] == ["113100"]
    assert 0xFFFCFFFC in originals["CT_small.dcm"] and 0xFFFCFFFC not in ct_out  # padding
    rle = pydicom.dcmread(tmp_path / "out" / "SC_rgb_rle_2frame.dcm")
    assert rle.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    orig_rgb = originals["SC_rgb_rle_2frame.dcm"].pixel_array
    assert not rle.pixel_array[:, :20].any()
    np.testing.assert_array_equal(rle.pixel_array[:, 20:], orig_rgb[:, 20:])
    jpeg = pydicom.dcmread(tmp_path / "out" / "SC_rgb_jpeg.dcm")
    assert jpeg.PhotometricInterpretation == "RGB" and not jpeg.pixel_array[:20].any()


def test_keep_private_option(study: dict, tmp_path: Path) -> None:
    deidentify(study["files"][0], tmp_path / "out", DeidConfig(salt=SALT, keep_private=True))
    ds = pydicom.dcmread(tmp_path / "out" / "a.dcm")
    assert any(elem.tag.is_private for elem in ds)
    assert "private attributes retained" in list(ds.DeidentificationMethod)
    assert ds.PatientID == pseudonymise_id(SECRETS["id"], SALT)


def test_png_and_jpeg_frames(tmp_path: Path) -> None:
    src = tmp_path / "frames"
    src.mkdir()
    frame = _us_frames()[0]
    info = PngInfo()
    info.add_text("PatientName", SECRETS["name"])
    Image.fromarray(frame).save(src / "f1.png", pnginfo=info)
    exif = Image.Exif()
    exif[0x013B] = SECRETS["name"]  # Artist
    exif[0x0112] = 6  # orientation: its loss is reported
    Image.fromarray(np.stack([frame] * 3, axis=-1)).save(src / "f2.jpg", exif=exif.tobytes(),
                                                         comment=SECRETS["id"], quality=98)
    before = _digest(src / "f1.png")
    report = deidentify(src, tmp_path / "out", DeidConfig(salt=SALT, blank_header_fraction=0.1))
    assert _digest(src / "f1.png") == before and report.totals["files_written"] == 2
    png_bytes = (tmp_path / "out" / "f1.png").read_bytes()
    assert SECRETS["name"].encode() not in png_bytes
    with Image.open(tmp_path / "out" / "f1.png") as img:
        assert not img.info.get("PatientName") and not getattr(img, "text", {})
        out = np.asarray(img)
    assert not out[:6].any()
    np.testing.assert_array_equal(out[6:], frame[6:])
    jpg_bytes = (tmp_path / "out" / "f2.jpg").read_bytes()
    assert SECRETS["name"].encode() not in jpg_bytes and SECRETS["id"].encode() not in jpg_bytes
    with Image.open(tmp_path / "out" / "f2.jpg") as img:
        assert "exif" not in img.info and "comment" not in img.info
        assert int(np.asarray(img)[:4].max()) <= 8
    notes = next(f for f in report.files if f.source == "f2.jpg").changes.notes  # type: ignore[union-attr]
    assert any("JPEG quality 95" in note for note in notes)
    assert any("EXIF orientation 6" in note for note in notes)


def test_text_modalities_option_checks_other_modalities(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from spinekit.cli.main import app

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(TEST_FILES / "CT_small.dcm", src / "ct.dcm")
    runner = CliRunner()
    default = runner.invoke(app, ["deidentify", str(src), "--out", str(tmp_path / "a"), "--salt", SALT])
    assert default.exit_code == 0
    report = json.loads((tmp_path / "a" / "deidentify_report.json").read_text())
    assert report["files"][0]["pixels"] == {"checked": False}
    checked = runner.invoke(app, ["deidentify", str(src), "--out", str(tmp_path / "b"), "--salt", SALT,
                                  "--text-modalities", "all"])
    assert checked.exit_code == 0
    report = json.loads((tmp_path / "b" / "deidentify_report.json").read_text())
    assert report["files"][0]["pixels"]["checked"] is True
    ct = pydicom.dcmread(tmp_path / "b" / "ct.dcm")
    assert "113101" in [c.CodeValue for c in ct.DeidentificationMethodCodeSequence]
    bad = runner.invoke(app, ["deidentify", str(src), "--out", str(tmp_path / "c"), "--salt", SALT,
                              "--text-modalities", "U S;rm"])
    assert bad.exit_code == 2 and "--text-modalities" in bad.output and not (tmp_path / "c").exists()
