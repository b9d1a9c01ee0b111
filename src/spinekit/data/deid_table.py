"""DICOM PS3.15 Annex E, Table E.1-1, as shipped with spinekit (``deid_table_e1_1.json``).

The package data file is generated from the machine-readable copies of the
standard's table (``confidentiality-profile-2024b.json`` plus the
``confidentiality-profile-2026c-additions.json`` rows of the current edition)
by :func:`build_table`; regenerate it with::

    python -m spinekit.data.deid_table ../shared/dicom src/spinekit/data/deid_table_e1_1.json

Each row keeps the standard's ``basicProfile`` action code and the option
columns the 2024b copy carries (``rtnLongFullDatesOpt``, ``rtnUIDsOpt``, ...;
the 2026c additions carry none). The provenance block travels with the copy.
:func:`load_table` reads it once per process.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from spinekit.io.atomic import atomic_write_json

TABLE_RESOURCE = "deid_table_e1_1.json"
SOURCE_2024B = "confidentiality-profile-2024b.json"
SOURCE_2026C = "confidentiality-profile-2026c-additions.json"
OPTION_COLUMNS = ("rtnSafePrivOpt", "rtnUIDsOpt", "rtnDevIdOpt", "rtnInstIdOpt", "rtnPatCharsOpt",
                  "rtnLongFullDatesOpt", "rtnLongModifDatesOpt", "cleanDescOpt",
                  "cleanStructContOpt", "cleanGraphOpt")
"""The retain/clean option columns of Table E.1-1 as the innolitics copy names them."""
ACTION_CODES = frozenset({"X", "Z", "D", "U", "K", "C", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"})
PROVENANCE: dict[str, Any] = {
    "title": "DICOM PS3.15 Annex E, Table E.1-1 Application Level Confidentiality Profile Attributes",
    "editions": {"2024b": "all rows except those marked 2026c",
                 "2026c": "attributes added by the current edition (rows marked 2026c)"},
    "source": "innolitics/dicom-standard (MIT licence), standard/confidentiality_profile_attributes.json, "
              "parsed from the standard's HTML, edition 2024b",
    "additions_source": "dicom-anonymizer 2.1.0 (PyPI) current table, rows absent from 2024b",
    "cross_check": "2024b rows identical (same tags, same actions) to dicom-anonymizer 2.1.0's 2024b table",
    "licence_note": "the table is a fact of the DICOM standard; keep this provenance with any copy",
    "generated_by": "python -m spinekit.data.deid_table",
}
WILDCARD_IDS = {"ggggeeee-where-gggg-is-odd": "private", "50xxxxxx": "curve",
                "60xx3000": "overlay_data", "60xx4000": "overlay_comments"}

SAFE_KEYWORDS: frozenset[str] = frozenset("""
SamplesPerPixel PhotometricInterpretation Rows Columns BitsAllocated BitsStored HighBit PixelRepresentation
PlanarConfiguration PixelAspectRatio SmallestImagePixelValue LargestImagePixelValue
RedPaletteColorLookupTableDescriptor GreenPaletteColorLookupTableDescriptor
BluePaletteColorLookupTableDescriptor RedPaletteColorLookupTableData GreenPaletteColorLookupTableData
BluePaletteColorLookupTableData SegmentedRedPaletteColorLookupTableData
SegmentedGreenPaletteColorLookupTableData SegmentedBluePaletteColorLookupTableData PixelData
FloatPixelData DoubleFloatPixelData ExtendedOffsetTable ExtendedOffsetTableLengths NumberOfFrames
FrameIncrementPointer FrameTime FrameTimeVector CineRate RecommendedDisplayFrameRate ICCProfile ColorSpace
PixelPaddingValue PixelPaddingRangeLimit
PixelSpacing ImagerPixelSpacing NominalScannedPixelSpacing PixelSpacingCalibrationType SliceThickness
SpacingBetweenSlices ImagePositionPatient ImageOrientationPatient SliceLocation PatientPosition
PatientOrientation EstimatedRadiographicMagnificationFactor DistanceSourceToDetector
DistanceSourceToPatient ViewPosition ImageLaterality Laterality BodyPartExamined
SequenceOfUltrasoundRegions RegionSpatialFormat RegionDataType RegionFlags RegionLocationMinX0
RegionLocationMinY0 RegionLocationMaxX1 RegionLocationMaxY1 ReferencePixelX0 ReferencePixelY0
PhysicalUnitsXDirection PhysicalUnitsYDirection ReferencePixelPhysicalValueX ReferencePixelPhysicalValueY
PhysicalDeltaX PhysicalDeltaY TransducerFrequency
SOPClassUID Modality ImageType SpecificCharacterSet ConversionType InstanceNumber SeriesNumber
AcquisitionNumber PresentationIntentType BurnedInAnnotation RecognizableVisualFeatures
LossyImageCompression LossyImageCompressionRatio LossyImageCompressionMethod Manufacturer
ManufacturerModelName SoftwareVersions QualityControlImage
WindowCenter WindowWidth WindowCenterWidthExplanation VOILUTFunction VOILUTSequence ModalityLUTSequence
LUTDescriptor LUTData LUTExplanation ModalityLUTType RescaleIntercept RescaleSlope RescaleType
PresentationLUTShape PixelIntensityRelationship PixelIntensityRelationshipSign
CodeValue CodingSchemeDesignator CodingSchemeVersion CodeMeaning LongCodeValue URNCodeValue
ContextIdentifier ContextUID MappingResource ReferencedSOPClassUID ReferencedFrameNumber
SharedFunctionalGroupsSequence PerFrameFunctionalGroupsSequence PixelMeasuresSequence
PlanePositionSequence PlaneOrientationSequence FrameContentSequence PixelValueTransformationSequence
FrameVOILUTSequence DimensionIndexValues StackID InStackPositionNumber TemporalPositionIndex
FrameAcquisitionNumber AnatomicRegionSequence
ScanningSequence SequenceVariant ScanOptions MRAcquisitionType RepetitionTime EchoTime EchoTrainLength
InversionTime FlipAngle MagneticFieldStrength ImagingFrequency ImagedNucleus NumberOfAverages
PixelBandwidth AcquisitionMatrix InPlanePhaseEncodingDirection EchoNumbers
KVP XRayTubeCurrent ExposureTime Exposure ConvolutionKernel
ValueType RelationshipType ContinuityOfContent ConceptNameCodeSequence ConceptCodeSequence
MeasuredValueSequence NumericValue MeasurementUnitsCodeSequence
""".split())  # noqa: SIM905 (one keyword list, wrapped)
"""Standard attributes outside Table E.1-1 that are kept (every other unlisted attribute is removed).

What an image needs to stay decodable, displayable and measurable: the image
pixel module and palettes, multi-frame timing, geometry and spacing (including
the ultrasound regions' calibration), SOP class and modality, window/rescale
and LUTs, code triplets of coded values, the functional-group macros of
enhanced objects, the MR/CT/X-ray acquisition parameters that models use, and the coded structure
(not the text) of structured-report content items.
Unlisted UIDs are not removed but remapped (see
:func:`spinekit.data.deid_profile.default_action`).
"""


@dataclass(frozen=True)
class TableRow:
    """One row: ``tag`` as ``0xGGGGEEEE`` (None for the wildcard rows), the action and options."""

    id: str
    tag: int | None
    name: str
    action: str
    options: dict[str, str]
    edition: str


@dataclass(frozen=True)
class ProfileTable:
    """The loaded table: single-attribute rows by tag, and the wildcard rows by kind."""

    rows: dict[int, TableRow]
    wildcards: dict[str, TableRow]
    provenance: dict[str, Any]


def _row(raw: dict[str, Any], edition: str) -> dict[str, Any]:
    action = str(raw["basicProfile"])
    if action not in ACTION_CODES:
        raise ValueError(f"row {raw.get('tag')}: unknown action code {action!r}")
    options = {col: str(raw[col]) for col in OPTION_COLUMNS if raw.get(col)}
    return {"id": str(raw["id"]).lower(), "tag": raw["tag"], "name": raw["name"], "action": action,
            "options": options, "edition": edition}


def build_table(shared_dir: Path) -> dict[str, Any]:
    """The merged table document (provenance + rows sorted by id) from the standard's copies."""
    base = json.loads((shared_dir / SOURCE_2024B).read_text(encoding="utf-8"))
    added = json.loads((shared_dir / SOURCE_2026C).read_text(encoding="utf-8"))
    rows = [_row(r, "2024b") for r in base] + [_row(r, "2026c") for r in added]
    ids = [r["id"] for r in rows]
    if len(ids) != len(set(ids)):
        raise ValueError("duplicate rows between the 2024b table and the 2026c additions")
    provenance = dict(PROVENANCE, rows=len(rows), rows_2024b=len(base), rows_2026c=len(added))
    return {"provenance": provenance, "rows": sorted(rows, key=lambda r: r["id"])}


def _parse(document: dict[str, Any]) -> ProfileTable:
    rows: dict[int, TableRow] = {}
    wildcards: dict[str, TableRow] = {}
    for raw in document["rows"]:
        kind = WILDCARD_IDS.get(raw["id"])
        tag = None if kind else int(raw["id"], 16)
        row = TableRow(raw["id"], tag, raw["name"], raw["action"], dict(raw["options"]),
                       raw["edition"])
        if kind:
            wildcards[kind] = row
        else:
            rows[int(raw["id"], 16)] = row
    if set(wildcards) != set(WILDCARD_IDS.values()):
        raise ValueError(f"table lacks wildcard rows {set(WILDCARD_IDS.values()) - set(wildcards)}")
    return ProfileTable(rows, wildcards, dict(document["provenance"]))


@lru_cache(maxsize=1)
def load_table() -> ProfileTable:
    """The shipped table, parsed once per process."""
    text = resources.files("spinekit.data").joinpath(TABLE_RESOURCE).read_text(encoding="utf-8")
    return _parse(json.loads(text))


def main(argv: list[str]) -> int:
    """``python -m spinekit.data.deid_table SHARED_DICOM_DIR OUT_JSON``: regenerate the table."""
    if len(argv) != 2:
        print("usage: python -m spinekit.data.deid_table SHARED_DICOM_DIR OUT_JSON", file=sys.stderr)
        return 2
    document = build_table(Path(argv[0]))
    atomic_write_json(Path(argv[1]), document)
    print(f"wrote {len(document['rows'])} rows to {argv[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
