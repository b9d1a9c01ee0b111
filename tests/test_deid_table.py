"""The shipped Table E.1-1 against the standard's copies, and every profile action on real datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from pydicom.datadict import dictionary_has_tag, keyword_for_tag
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian
from typer.testing import CliRunner

from conftest import shared_data
from spinekit.cli.main import app
from spinekit.data.deid_profile import ProfileOptions, apply_basic_profile, date_shift_days, remap_uid
from spinekit.data.deid_table import SAFE_KEYWORDS, build_table, load_table
from spinekit.data.deidentify import DeidConfig, deidentify

SHARED_DICOM = Path(__file__).resolve().parents[1].parent / "shared" / "dicom"
SALT = "table-salt"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"
STUDY_UID = "1.2.826.0.1.3680043.9.7.1.100"


def _standard_rows() -> dict[str, str]:
    folder = shared_data(SHARED_DICOM, "confidentiality-profile-2024b.json")
    rows: dict[str, str] = {}
    for name in ("confidentiality-profile-2024b.json", "confidentiality-profile-2026c-additions.json"):
        for row in json.loads((folder / name).read_text()):
            rows[row["id"].lower()] = row["basicProfile"]
    return rows


def test_shipped_table_equals_the_standard() -> None:
    expected = _standard_rows()
    table = load_table()
    shipped = {r.id: r.action for r in table.rows.values()}
    shipped |= {r.id: r.action for r in table.wildcards.values()}
    assert shipped == expected  # same tags, same actions
    assert len(expected) == 656 and len(table.rows) == 652
    assert build_table(SHARED_DICOM)["rows"] == json.loads(
        (Path(__file__).resolve().parents[1] / "src/spinekit/data/deid_table_e1_1.json").read_text())["rows"]
    assert "innolitics/dicom-standard" in table.provenance["source"]


def test_every_tag_known_to_pydicom_or_noted() -> None:
    table = load_table()
    unknown = {tag for tag in table.rows if not dictionary_has_tag(tag)}
    # pydicom's dictionary predates the 2026c additions; every unknown tag must be one of them
    assert all(table.rows[tag].edition == "2026c" for tag in unknown), sorted(map(hex, unknown))
    assert len(unknown) <= 35
    for tag, row in table.rows.items():
        if tag not in unknown:
            assert keyword_for_tag(tag), row.name
    assert not SAFE_KEYWORDS & {keyword_for_tag(t) for t in table.rows}  # safe list never overrides


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _hostile_dataset() -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UID(SC_CLASS)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(STUDY_UID + ".3")
    ds.file_meta.SourceApplicationEntityTitle = "LEAKYAE"
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = SC_CLASS, STUDY_UID + ".3", "OT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY_UID, STUDY_UID + ".2"
    ds.PatientName, ds.PatientID, ds.PatientSex, ds.PatientAge = "Doe^Jane", "MRN1", "F", "042Y"
    ds.PatientWeight, ds.StudyDate, ds.ContentDate, ds.StudyTime = "61", "20240131", "20240131", "101500"
    ds.AcquisitionDateTime = "20240131101500"
    ds.GPSLatitude, ds.CameraOwnerName = "51.5", "Jane's phone"
    ds.AddressTrial, ds.TelephoneNumberTrial, ds.ReasonForVisit = "1 Main St", "555-0100", "back pain"
    ds.LabelText, ds.BarcodeValue, ds.SpecimenAccessionNumber = "JANE DOE", "BC123", "SP-9"
    ds.StationAETitle, ds.DeviceSerialNumber, ds.InstitutionName = "USROOM3", "SN-7", "St Elsewhere"
    ds.EncapsulatedDocument = b"%PDF-1.4 Jane Doe report"
    ds.add_new(0x00100041, "SQ", Sequence([_item(CodeMeaning="gender identity")]))  # 2026c
    ds.add_new(0x00100012, "LO", "Janie")  # Name to Use, 2026c, unknown to pydicom 3.0
    ds.PersonIdentificationCodeSequence = Sequence([_item(CodeValue="BADGE-42", CodeMeaning="Jane",
                                                          CodingSchemeDesignator="99HOSP")])
    text = _item(UnformattedTextValue="Jane Doe DOB 1980", BoundingBoxAnnotationUnits="PIXEL")
    ds.GraphicAnnotationSequence = Sequence([_item(TextObjectSequence=Sequence([text]),
                                                   GraphicLayer="LAYER")])
    ds.SourceImageSequence = Sequence([_item(ReferencedSOPClassUID=SC_CLASS,
                                             ReferencedSOPInstanceUID=STUDY_UID + ".4",
                                             PatientName="Nested^Name")])
    ds.ReferencedStudySequence = Sequence([_item(ReferencedSOPInstanceUID=STUDY_UID)])
    ds.ContentSequence = Sequence([_item(TextValue="Jane has pain", ValueType="TEXT")])
    ds.DateOfSecondaryCapture, ds.EvaluatorName = "20240131", "Evaluator^Eve"  # not in the table
    ds.PixelSpacing, ds.Rows, ds.Columns = [0.2, 0.2], 4, 4
    ds.add_new(0x00000000, "UL", 0)  # command group: pydicom refuses to write these
    ds.add_new(0x00001000, "UI", STUDY_UID + ".3")
    ds.add_new(0x60003000, "OW", b"\x00" * 8)
    ds.add_new(0x60004000, "LT", "overlay note Jane")
    ds.add_new(0x50000010, "US", 1)
    ds.private_block(0x0011, "ACME", create=True).add_new(0x01, "LO", "Jane private")
    return ds


def _save_raw(ds: Dataset, path: Path) -> None:
    """Write ``ds`` with its command-group elements (which ``dcmwrite`` refuses), as a scanner might."""
    with path.open("wb") as handle:
        handle.write(b"\x00" * 128 + b"DICM")
        fp = DicomFileLike(handle)
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_file_meta_info(fp, ds.file_meta, enforce_standard=True)
        write_dataset(fp, ds)


def _text(ds: Dataset) -> str:
    return " | ".join(str(e.value) for e in ds.iterall())


def test_every_action_and_the_named_leaks(tmp_path: Path) -> None:
    ds = _hostile_dataset()
    changes = apply_basic_profile(ds, SALT)
    text = _text(ds)
    for secret in ("Jane", "MRN1", "51.5", "1 Main St", "555-0100", "back pain", "BC123", "SP-9",
                   "USROOM3", "SN-7", "Elsewhere", "BADGE-42", "99HOSP", "Janie", "20240131", "PDF",
                   "Eve", STUDY_UID):
        assert secret not in text, secret
    for gone in ("GPSLatitude", "CameraOwnerName", "AddressTrial", "TelephoneNumberTrial",
                 "ReasonForVisit", "SpecimenAccessionNumber", "StationAETitle", "EncapsulatedDocument",
                 "PatientAge", "PatientWeight", "DateOfSecondaryCapture", "EvaluatorName"):
        assert gone not in ds, gone  # X, binary D, or not in the table
    assert 0x00100041 not in ds and 0x00100012 not in ds and not any(e.tag.group == 0 for e in ds)
    assert not any(e.tag.group in (0x6000, 0x5000) or e.tag.is_private for e in ds)
    assert ds.PatientSex == "" and ds.StudyDate == "" and ds.LabelText == ""  # Z, X/Z -> Z
    assert ds.ReferencedStudySequence == Sequence()  # X/Z on a sequence -> empty
    code = ds.PersonIdentificationCodeSequence[0]  # D on a code sequence: dummy codes
    assert code.CodeValue == "ANONYMIZED" and code.CodeMeaning == "ANONYMIZED"
    note = ds.GraphicAnnotationSequence[0]  # D on a sequence: cleaned items
    assert len(ds.GraphicAnnotationSequence) == 1 and "TextObjectSequence" not in note
    assert "TextValue" not in ds.ContentSequence[0] and ds.ContentSequence[0].ValueType == "TEXT"
    ref = ds.SourceImageSequence[0]  # X/Z/U* -> U: UIDs remapped inside, class kept, items cleaned
    assert ref.ReferencedSOPInstanceUID == remap_uid(STUDY_UID + ".4", SALT)
    assert ref.ReferencedSOPClassUID == SC_CLASS and ref.PatientName != "Nested^Name"
    assert ds.SOPInstanceUID == remap_uid(STUDY_UID + ".3", SALT) and ds.PixelSpacing == [0.2, 0.2]
    assert "CommandGroup" in changes.removed and changes.private_tags_removed == 2


def test_retain_options() -> None:
    options = ProfileOptions(retain_dates="offset", retain_uids=True, retain_device_identity=True,
                             retain_patient_characteristics=True)
    ds = _hostile_dataset()
    changes = apply_basic_profile(ds, SALT, options)
    shift = date_shift_days("MRN1", SALT)
    assert 1 <= shift <= 3652
    import datetime as dt

    expected = (dt.date(2024, 1, 31) - dt.timedelta(days=shift)).strftime("%Y%m%d")
    assert ds.ContentDate == expected and ds.AcquisitionDateTime == expected + "101500"
    assert ds.StudyTime == "101500" and "ContentDate" in changes.shifted
    assert ds.SOPInstanceUID == STUDY_UID + ".3" and ds.StudyInstanceUID == STUDY_UID
    assert ds.DeviceSerialNumber == "SN-7"  # device identity K
    assert "StationAETitle" not in ds  # its device-identity column says C: no cleaner, Basic action
    assert ds.PatientSex == "F" and ds.PatientAge == "042Y" and ds.PatientWeight == "61"
    assert ds.PatientName != "Doe^Jane" and "GPSLatitude" not in ds
    full = _hostile_dataset()
    apply_basic_profile(full, SALT, ProfileOptions(retain_dates="full"))
    assert full.ContentDate == "20240131" and full.SOPInstanceUID != STUDY_UID + ".3"
    codes = [c for c, _ in options.method_codes()]
    assert codes == ["113100", "113107", "113108", "113109", "113110"]
    with pytest.raises(ValueError):
        ProfileOptions(retain_dates="shifted")  # type: ignore[arg-type]


def test_written_file_meta_and_option_codes(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    _save_raw(_hostile_dataset(), src / "a.dcm")
    assert 0x00001000 in pydicom.dcmread(src / "a.dcm")
    config = DeidConfig(salt=SALT, retain_dates="full", retain_patient_characteristics=True)
    report = deidentify(src, tmp_path / "out", config)
    assert report.totals["files_written"] == 1, [f.reason for f in report.files]
    ds = pydicom.dcmread(tmp_path / "out" / "a.dcm")
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID != STUDY_UID + ".3"
    assert "SourceApplicationEntityTitle" not in ds.file_meta
    assert ds.LongitudinalTemporalInformationModified == "UNMODIFIED"
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100", "113106", "113108"]
    assert ds.PatientIdentityRemoved == "YES" and "BurnedInAnnotation" not in ds  # OT: pixels not checked


def test_failed_file_exits_nonzero_and_writes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    _save_raw(_hostile_dataset(), src / "good.dcm")
    bad = _hostile_dataset()
    bad.Modality = "US"  # pixels must be checked, and this pixel data cannot be decoded
    bad.SamplesPerPixel, bad.PhotometricInterpretation, bad.BitsAllocated = 1, "MONOCHROME2", 8
    bad.BitsStored, bad.HighBit, bad.PixelRepresentation = 8, 7, 0
    bad.PixelData = b"\x00" * 3  # 4x4 needs 16 bytes
    _save_raw(bad, src / "bad.dcm")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["deidentify", str(src), "--out", str(out), "--salt", SALT])
    assert result.exit_code == 1, result.output
    assert (out / "good.dcm").exists() and not (out / "bad.dcm").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".sk-")]  # no temporary left behind
    entry = next(f for f in json.loads((out / "deidentify_report.json").read_text())["files"]
                 if f["source"] == "bad.dcm")
    assert entry["status"] == "failed" and "\n" not in entry["reason"] and "pixel" in entry["reason"]
