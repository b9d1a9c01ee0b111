"""DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile, applied to a dataset.

The attribute table is the standard's Table E.1-1 (package data, see
:mod:`spinekit.data.deid_table`). :func:`apply_basic_profile` walks a pydicom
:class:`~pydicom.dataset.Dataset` recursively and applies, per attribute:

- ``D``: a dummy consistent with the VR (UIDs are remapped; a sequence keeps
  its items, each cleaned by the same rules; in a code sequence the code
  values and meanings are replaced by dummies); binary values cannot hold a
  dummy and are removed;
- ``Z``: zero length (a sequence with no items);
- ``X``: removed;
- ``K``: kept (sequence items still cleaned);
- ``U``: the UID replaced by a salted, deterministic ``2.25.`` UID
  (:func:`remap_uid`), so references between de-identified files still resolve;
- ``C`` (only with the modified-dates option): dates shifted by a salted
  per-patient number of days.

Compound codes reduce to one action (:func:`resolve_action`). Retain options
(:class:`ProfileOptions`) switch rows to ``K`` (or ``C``) where the standard's
option column says so. Wildcard rows: private attributes (odd groups) removed
unless ``keep_private``; curves (50xx) and overlays (60xx) removed. Attributes
the table does not list are removed unless on :data:`SAFE_KEYWORDS`; unlisted
instance UIDs are remapped. The command group (0000,xxxx) and group lengths are
removed. PatientID and PatientName become a salted pseudonym
(:func:`pseudonymise_id`; the table's Z allows a dummy) so records still group
by patient.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal, cast

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.uid import UID

from spinekit.data.deid_table import SAFE_KEYWORDS, TableRow, load_table

Action = Literal["D", "Z", "X", "K", "U", "C"]
DateMode = Literal["remove", "full", "offset"]

PSEUDONYM_PREFIX = "ANON-"
UID_ROOT = "2.25."
_BINARY_VRS = frozenset({"UN", "OB", "OW", "OF", "OD", "OL", "OV", "AT"})
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                       "TM", "UC", "UR", "UT"})
_DUMMIES: dict[str, Any] = {
    "PN": "ANONYMOUS", "LO": "ANONYMIZED", "SH": "ANONYMIZED", "LT": "ANONYMIZED",
    "ST": "ANONYMIZED", "UT": "ANONYMIZED", "UC": "ANONYMIZED", "AE": "ANONYMIZED",
    "CS": "ANONYMIZED", "UR": "ANONYMIZED", "DA": "19000101", "TM": "000000",
    "DT": "19000101000000", "AS": "000Y", "IS": "0", "DS": "0", "US": 0, "SS": 0, "UL": 0,
    "SL": 0, "FL": 0.0, "FD": 0.0, "UV": 0, "SV": 0,
}
"""Dummy value per VR for action D."""
_CODE_KEYWORDS = frozenset({"CodeValue", "CodeMeaning", "LongCodeValue", "URNCodeValue",
                            "CodingSchemeDesignator", "CodingSchemeVersion"})
KEEP_UID_KEYWORDS = frozenset({"CodingSchemeUID", "ContextUID", "MappingResourceUID"})
_KEEP_UID_SUFFIXES = ("ClassUID", "ClassUIDInFile", "TransferSyntaxUID", "TransferSyntaxUIDInFile",
                      "ClassesInStudy", "ClassesInSeries", "ClassesSupported")
"""UID attributes that name classes, transfer syntaxes or coding schemes, not instances: kept."""
DATE_SHIFT_MAX_DAYS = 3652


@dataclass(frozen=True)
class ProfileOptions:
    """The PS3.15 retain options spinekit implements (each adds its code, CID 7050).

    ``retain_dates``: ``"remove"`` (Basic Profile), ``"full"`` (Retain Longitudinal
    Temporal Information with Full Dates, 113106) or ``"offset"`` (Modified Dates,
    113107: dates shifted back by a salted per-patient 1..3652 days; times kept).
    ``retain_uids`` (113110), ``retain_device_identity`` (113109),
    ``retain_institution_identity`` (113112), ``retain_patient_characteristics``
    (113108) keep the rows whose option column says K; rows marked C in those
    columns (AE titles, free-text patient state) keep the Basic action, as
    spinekit has no cleaner for them. ``keep_private`` retains all private
    attributes: that is *not* the Retain Safe Private option (no safe list is
    known), so no code is claimed for it.
    """

    retain_dates: DateMode = "remove"
    retain_uids: bool = False
    retain_device_identity: bool = False
    retain_institution_identity: bool = False
    retain_patient_characteristics: bool = False
    keep_private: bool = False

    def __post_init__(self) -> None:
        if self.retain_dates not in ("remove", "full", "offset"):
            raise ValueError(f"retain_dates must be remove, full or offset, not {self.retain_dates!r}")

    def _columns(self) -> list[str]:
        flags = [(self.retain_dates == "full", "rtnLongFullDatesOpt"),
                 (self.retain_dates == "offset", "rtnLongModifDatesOpt"),
                 (self.retain_uids, "rtnUIDsOpt"), (self.retain_device_identity, "rtnDevIdOpt"),
                 (self.retain_institution_identity, "rtnInstIdOpt"),
                 (self.retain_patient_characteristics, "rtnPatCharsOpt")]
        return [column for on, column in flags if on]

    def method_codes(self) -> list[tuple[str, str]]:
        """(code value, code meaning) of the profile and of each option in force."""
        names = ["BasicApplicationConfidentialityProfile"]
        names += {"full": ["RetainLongitudinalTemporalInformationFullDatesOption"],
                  "offset": ["RetainLongitudinalTemporalInformationModifiedDatesOption"],
                  "remove": []}[self.retain_dates]
        for on, name in ((self.retain_patient_characteristics, "RetainPatientCharacteristicsOption"),
                         (self.retain_device_identity, "RetainDeviceIdentityOption"),
                         (self.retain_uids, "RetainUidsOption"),
                         (self.retain_institution_identity, "RetainInstitutionIdentityOption")):
            if on:
                names.append(name)
        return [(getattr(codes.DCM, n).value, getattr(codes.DCM, n).meaning) for n in names]


def resolve_action(code: str) -> Action:
    """Reduce a Table E.1-1 action code to one concrete action.

    Simple codes map to themselves. Compound codes: ``X/Z/U*`` (reference
    sequences) -> ``U`` (kept, every UID inside remapped, items cleaned); codes
    containing ``Z`` (``X/Z``, ``Z/D``, ``X/Z/D``) -> ``Z`` (zero length keeps Type 2
    attributes present); ``X/D`` -> ``X``. ``C`` without the option that defines
    the cleaning is handled by the caller.
    """
    parts = code.split("/")
    if len(parts) == 1:
        if code not in ("D", "Z", "X", "K", "U", "C"):
            raise ValueError(f"unknown Annex E action code {code!r}")
        return cast(Action, code)
    if "U*" in parts:
        return "U"
    if "Z" in parts:
        return "Z"
    if parts == ["X", "D"]:
        return "X"
    raise ValueError(f"unknown Annex E action code {code!r}")


def row_action(row: TableRow, options: ProfileOptions) -> Action:
    """The action for one table row under ``options``: an option's K or date C wins."""
    for column in options._columns():
        value = row.options.get(column)
        if value == "K" or (value == "C" and column == "rtnLongModifDatesOpt"):
            return cast(Action, value)
    return resolve_action(row.action)


@lru_cache(maxsize=16)
def profile_actions(options: ProfileOptions) -> dict[int, Action]:
    """Tag (``0xGGGGEEEE``) -> concrete action for every single-attribute row."""
    return {tag: row_action(row, options) for tag, row in load_table().rows.items()}


@dataclass
class DeidChanges:
    """What was changed in one file: tag keywords only, never values."""

    removed: set[str] = field(default_factory=set)
    replaced: set[str] = field(default_factory=set)
    emptied: set[str] = field(default_factory=set)
    shifted: set[str] = field(default_factory=set)
    uids_remapped: int = 0
    private_tags_removed: int = 0
    regions_blanked: list[dict[str, Any]] = field(default_factory=list)
    pixels: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form with sorted keyword lists."""
        return {
            "removed": sorted(self.removed), "replaced": sorted(self.replaced),
            "emptied": sorted(self.emptied), "dates_shifted": sorted(self.shifted),
            "uids_remapped": self.uids_remapped, "private_tags_removed": self.private_tags_removed,
            "regions_blanked": self.regions_blanked, "pixels": self.pixels, "notes": self.notes,
        }


def pseudonymise_id(value: str, salt: str) -> str:
    """Stable pseudonym ``"ANON-" + 16 hex chars``: HMAC-SHA256 of ``value`` keyed by ``salt``.

    Surrounding whitespace (DICOM padding) is ignored. The same value and salt
    always give the same pseudonym; another salt gives an unrelated one.
    """
    if not salt:
        raise ValueError("a non-empty salt is required")
    digest = hmac.new(salt.encode("utf-8"), value.strip().encode("utf-8"), hashlib.sha256)
    return PSEUDONYM_PREFIX + digest.hexdigest()[:16]


def remap_uid(uid: str, salt: str) -> str:
    """Map a UID to ``2.25.<decimal 128-bit value>`` (at most 44 chars) with a salted hash.

    The 128 bits are the first half of HMAC-SHA256(salt, uid) with the RFC 9562
    version-8 ("custom") UUID bits set. Deterministic for a given salt.
    """
    if not salt:
        raise ValueError("a non-empty salt is required")
    message = b"spinekit-uid:" + uid.strip().rstrip("\x00").encode("ascii", "replace")
    digest = hmac.new(salt.encode("utf-8"), message, hashlib.sha256).digest()
    number = int.from_bytes(digest[:16], "big")
    number = (number & ~(0xF << 76)) | (0x8 << 76)
    number = (number & ~(0x3 << 62)) | (0x2 << 62)
    return UID_ROOT + str(number)


def date_shift_days(patient_key: str, salt: str) -> int:
    """Salted per-patient shift in days, 1..3652 (dates move back by this many days)."""
    digest = hmac.new(salt.encode("utf-8"), b"spinekit-date-shift:" + patient_key.strip().encode(),
                      hashlib.sha256).digest()
    return 1 + int.from_bytes(digest[:4], "big") % DATE_SHIFT_MAX_DAYS


def _shift_date_text(value: str, vr: str, days: int) -> str:
    """Shift a DA (``YYYYMMDD``) or the date part of a DT; TM and empty values are unchanged."""
    text = value.strip()
    if vr not in ("DA", "DT") or not text:
        return value
    day = dt.datetime.strptime(text[:8], "%Y%m%d").date() - dt.timedelta(days=days)
    return day.strftime("%Y%m%d") + text[8:]


@dataclass
class _Context:
    salt: str
    options: ProfileOptions
    actions: dict[int, Action]
    changes: DeidChanges
    shift_days: int | None


def _name(elem: DataElement) -> str:
    return elem.keyword or str(elem.tag)


def _has_value(elem: DataElement) -> bool:
    value = elem.value
    if isinstance(value, list | MultiValue | Sequence | str | bytes):
        return len(value) > 0
    return value is not None and str(value) != ""


def default_action(elem: DataElement, options: ProfileOptions) -> Action:
    """Action for a standard attribute that Table E.1-1 does not list.

    Kept when on :data:`SAFE_KEYWORDS`. UIDs are kept when they are registered
    DICOM UIDs (``1.2.840.10008.`` root) or name a class, transfer syntax or
    coding scheme, kept with ``retain_uids``, and otherwise remapped (a remapped
    UID carries no information and keeps references intact). Everything else
    is removed.
    """
    if elem.keyword in SAFE_KEYWORDS:
        return "K"
    if elem.VR == "UI":
        values = elem.value if isinstance(elem.value, list | MultiValue) else [elem.value]
        if options.retain_uids or elem.keyword in KEEP_UID_KEYWORDS or elem.keyword.endswith(
                _KEEP_UID_SUFFIXES) or all(not v or not UID(str(v)).is_private for v in values):
            return "K"
        return "U"
    return "X"


def _remap_element(elem: DataElement, ctx: _Context) -> None:
    if not _has_value(elem):
        return
    if isinstance(elem.value, list | MultiValue):
        elem.value = [remap_uid(str(v), ctx.salt) if v else v for v in elem.value]
        ctx.changes.uids_remapped += sum(1 for v in elem.value if v)
    else:
        elem.value = remap_uid(str(elem.value), ctx.salt)
        ctx.changes.uids_remapped += 1


def _shift_element(ds: Dataset, elem: DataElement, ctx: _Context) -> None:
    """Action C (modified dates): shift DA/DT values; an unparseable value is removed."""
    if ctx.shift_days is None or not _has_value(elem):
        return
    values = elem.value if isinstance(elem.value, list | MultiValue) else [elem.value]
    try:
        shifted = [_shift_date_text(str(v), elem.VR, ctx.shift_days) for v in values]
    except ValueError:
        del ds[elem.tag]
        ctx.changes.removed.add(_name(elem))
        ctx.changes.notes.append(f"{_name(elem)}: not a valid date, removed instead of shifted")
        return
    elem.value = shifted if len(shifted) > 1 else shifted[0]
    if elem.VR in ("DA", "DT"):
        ctx.changes.shifted.add(_name(elem))


def _apply_sequence(elem: DataElement, action: Action, ctx: _Context) -> None:
    if action == "Z":
        if _has_value(elem):
            ctx.changes.emptied.add(_name(elem))
        elem.value = Sequence()
        return
    dummy_codes = action == "D" and elem.keyword.endswith("CodeSequence")
    for item in elem.value:
        _walk(item, ctx, dummy_codes=dummy_codes)
    if action == "D":
        ctx.changes.replaced.add(_name(elem))


def _apply_action(ds: Dataset, elem: DataElement, action: Action, ctx: _Context) -> None:
    """Apply one concrete action to ``elem`` of ``ds``."""
    name = _name(elem)
    if action == "X" or (action not in ("K", "C") and elem.VR in _BINARY_VRS):
        del ds[elem.tag]
        ctx.changes.removed.add(name)
    elif elem.VR == "SQ":
        _apply_sequence(elem, action, ctx)
    elif action == "Z":
        if _has_value(elem):
            ctx.changes.emptied.add(name)
        elem.value = "" if elem.VR in _TEXT_VRS else None
    elif elem.VR == "UI" and action in ("U", "D"):
        _remap_element(elem, ctx)
    elif action in ("D", "U"):
        elem.value = _DUMMIES.get(elem.VR, "ANONYMIZED")
        ctx.changes.replaced.add(name)
    elif action == "C":
        _shift_element(ds, elem, ctx)


def _pseudonymise_patient(ds: Dataset, ctx: _Context) -> None:
    """PatientID and PatientName both become the pseudonym of the PatientID.

    Without a PatientID the name is the key; without either both stay empty.
    """
    pid = str(ds.get("PatientID", "") or "").strip()
    key = pid or str(ds.get("PatientName", "") or "").strip()
    pseudonym = pseudonymise_id(key, ctx.salt) if key else ""
    for keyword in ("PatientID", "PatientName"):
        if keyword in ds:
            elem = ds[keyword]
            if _has_value(elem):
                (ctx.changes.replaced if pseudonym else ctx.changes.emptied).add(keyword)
            elem.value = pseudonym


def _is_overlay_or_curve(group: int) -> bool:
    return group % 2 == 0 and (0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF)


def _walk(ds: Dataset, ctx: _Context, *, dummy_codes: bool = False) -> None:
    _pseudonymise_patient(ds, ctx)
    for tag in list(ds.keys()):
        if tag.group == 0:
            del ds[tag]
            ctx.changes.removed.add("CommandGroup")
            continue
        elem = ds[tag]
        if tag.is_private:
            if not ctx.options.keep_private:
                del ds[tag]
                ctx.changes.private_tags_removed += 1
            elif elem.VR == "SQ":
                for item in elem.value:
                    _walk(item, ctx)
        elif tag.element == 0:
            del ds[tag]
        elif _is_overlay_or_curve(tag.group):
            del ds[tag]
            ctx.changes.removed.add("OverlayGroup" if tag.group >= 0x6000 else "CurveGroup")
        elif elem.keyword not in ("PatientID", "PatientName"):
            action = ctx.actions.get(int(tag)) or default_action(elem, ctx.options)
            if dummy_codes and elem.keyword in _CODE_KEYWORDS:
                action = "D"
            _apply_action(ds, elem, action, ctx)


def apply_basic_profile(ds: Dataset, salt: str, options: ProfileOptions | None = None, *,
                        changes: DeidChanges | None = None) -> DeidChanges:
    """Apply the Basic Profile (and ``options``) to every element of ``ds`` in place.

    The file meta group is not touched here (see :mod:`spinekit.data.deidentify`).
    """
    if not salt:
        raise ValueError("a non-empty salt is required")
    options = options or ProfileOptions()
    changes = DeidChanges() if changes is None else changes
    shift = None
    if options.retain_dates == "offset":
        key = str(ds.get("PatientID", "") or "").strip() or str(ds.get("PatientName", "") or "")
        shift = date_shift_days(key, salt)
    ctx = _Context(salt, options, profile_actions(options), changes, shift)
    _walk(ds, ctx)
    return changes
