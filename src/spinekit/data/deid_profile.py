"""DICOM PS3.15 Annex E, Table E.1-1: the Basic Application Level Confidentiality Profile.

This module holds the profile's attribute table and applies it to a pydicom
:class:`~pydicom.dataset.Dataset` (:func:`apply_basic_profile`), with the salted
pseudonyms (:func:`pseudonymise_id`) and UID remapping (:func:`remap_uid`) it uses.
Pixel data and file handling live in :mod:`spinekit.data.deidentify`.

Each row is ``(tag, keyword, action)`` with the Basic Profile action code as the
standard writes it:

- ``D``: replace with a non-zero length dummy value consistent with the VR;
- ``Z``: replace with a zero-length value (or a dummy);
- ``X``: remove;
- ``K``: keep;
- ``U``: replace the UID with a non-zero length UID that is internally consistent
  (the same input UID always gives the same output UID);
- compound codes (``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D``, ``X/Z/U*``) let an application
  pick the action that keeps the IOD valid. :func:`resolve_action` reduces them
  to one concrete action (see there).

The table was reproduced from the standard's Table E.1-1 (it covers the patient,
visit, order, physician, operator, institution, device, date/time, UID, free-text
and clinical-trial attributes); ``tests/test_deidentify.py`` checks every tag
against pydicom's data dictionary so a mistyped row fails the tests. Private
attributes, overlays (60xx) and curves (50xx) are handled by rule in
:mod:`spinekit.data.deidentify`, not row by row.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import UID

Action = Literal["D", "Z", "X", "K", "U"]

BASIC_PROFILE: tuple[tuple[int, str, str], ...] = (
    # --- patient identity and characteristics ---
    (0x00100010, "PatientName", "Z"),
    (0x00100020, "PatientID", "Z"),
    (0x00100021, "IssuerOfPatientID", "X"),
    (0x00100024, "IssuerOfPatientIDQualifiersSequence", "X"),
    (0x00100030, "PatientBirthDate", "Z"),
    (0x00100032, "PatientBirthTime", "X"),
    (0x00100033, "PatientBirthDateInAlternativeCalendar", "X"),
    (0x00100034, "PatientDeathDateInAlternativeCalendar", "X"),
    (0x00100035, "PatientAlternativeCalendar", "X"),
    (0x00100040, "PatientSex", "Z"),
    (0x00100050, "PatientInsurancePlanCodeSequence", "X"),
    (0x00100101, "PatientPrimaryLanguageCodeSequence", "X"),
    (0x00100102, "PatientPrimaryLanguageModifierCodeSequence", "X"),
    (0x00101000, "OtherPatientIDs", "X"),
    (0x00101001, "OtherPatientNames", "X"),
    (0x00101002, "OtherPatientIDsSequence", "X"),
    (0x00101005, "PatientBirthName", "X"),
    (0x00101010, "PatientAge", "X"),
    (0x00101020, "PatientSize", "X"),
    (0x00101030, "PatientWeight", "X"),
    (0x00101040, "PatientAddress", "X"),
    (0x00101050, "InsurancePlanIdentification", "X"),
    (0x00101060, "PatientMotherBirthName", "X"),
    (0x00101080, "MilitaryRank", "X"),
    (0x00101081, "BranchOfService", "X"),
    (0x00101090, "MedicalRecordLocator", "X"),
    (0x00101100, "ReferencedPatientPhotoSequence", "X"),
    (0x00102000, "MedicalAlerts", "X"),
    (0x00102110, "Allergies", "X"),
    (0x00102150, "CountryOfResidence", "X"),
    (0x00102152, "RegionOfResidence", "X"),
    (0x00102154, "PatientTelephoneNumbers", "X"),
    (0x00102155, "PatientTelecomInformation", "X"),
    (0x00102160, "EthnicGroup", "X"),
    (0x00102180, "Occupation", "X"),
    (0x001021A0, "SmokingStatus", "X"),
    (0x001021B0, "AdditionalPatientHistory", "X"),
    (0x001021C0, "PregnancyStatus", "X"),
    (0x001021D0, "LastMenstrualDate", "X"),
    (0x001021F0, "PatientReligiousPreference", "X"),
    (0x00102203, "PatientSexNeutered", "X/Z"),
    (0x00102297, "ResponsiblePerson", "X"),
    (0x00102299, "ResponsibleOrganization", "X"),
    (0x00104000, "PatientComments", "X"),
    # --- clinical trial ---
    (0x00120010, "ClinicalTrialSponsorName", "D"),
    (0x00120020, "ClinicalTrialProtocolID", "D"),
    (0x00120021, "ClinicalTrialProtocolName", "Z"),
    (0x00120030, "ClinicalTrialSiteID", "Z"),
    (0x00120031, "ClinicalTrialSiteName", "Z"),
    (0x00120040, "ClinicalTrialSubjectID", "D"),
    (0x00120042, "ClinicalTrialSubjectReadingID", "D"),
    (0x00120050, "ClinicalTrialTimePointID", "Z"),
    (0x00120051, "ClinicalTrialTimePointDescription", "X"),
    (0x00120060, "ClinicalTrialCoordinatingCenterName", "Z"),
    (0x00120071, "ClinicalTrialSeriesID", "X"),
    (0x00120072, "ClinicalTrialSeriesDescription", "X"),
    (0x00120081, "ClinicalTrialProtocolEthicsCommitteeName", "D"),
    (0x00120082, "ClinicalTrialProtocolEthicsCommitteeApprovalNumber", "X"),
    # --- study, series, instance: dates, times, identifiers, descriptions ---
    (0x00080012, "InstanceCreationDate", "X/D"),
    (0x00080013, "InstanceCreationTime", "X/Z/D"),
    (0x00080014, "InstanceCreatorUID", "U"),
    (0x00080015, "InstanceCoercionDateTime", "X"),
    (0x00080017, "AcquisitionUID", "U"),
    (0x00080018, "SOPInstanceUID", "U"),
    (0x00080019, "PyramidUID", "U"),
    (0x00080020, "StudyDate", "Z"),
    (0x00080021, "SeriesDate", "X/D"),
    (0x00080022, "AcquisitionDate", "X/Z"),
    (0x00080023, "ContentDate", "Z/D"),
    (0x00080024, "OverlayDate", "X"),
    (0x00080025, "CurveDate", "X"),
    (0x0008002A, "AcquisitionDateTime", "X/Z/D"),
    (0x00080030, "StudyTime", "Z"),
    (0x00080031, "SeriesTime", "X/D"),
    (0x00080032, "AcquisitionTime", "X/Z"),
    (0x00080033, "ContentTime", "Z/D"),
    (0x00080034, "OverlayTime", "X"),
    (0x00080035, "CurveTime", "X"),
    (0x00080050, "AccessionNumber", "Z"),
    (0x00080058, "FailedSOPInstanceUIDList", "U"),
    (0x00080201, "TimezoneOffsetFromUTC", "X"),
    (0x00080107, "ContextGroupLocalVersion", "D"),
    (0x0008010D, "ContextGroupExtensionCreatorUID", "U"),
    (0x00081030, "StudyDescription", "X"),
    (0x0008103E, "SeriesDescription", "X"),
    (0x00081080, "AdmittingDiagnosesDescription", "X"),
    (0x00081084, "AdmittingDiagnosesCodeSequence", "X"),
    (0x00081110, "ReferencedStudySequence", "X/Z"),
    (0x00081111, "ReferencedPerformedProcedureStepSequence", "X/Z/D"),
    (0x00081120, "ReferencedPatientSequence", "X"),
    (0x00081140, "ReferencedImageSequence", "X/Z/U*"),
    (0x00081155, "ReferencedSOPInstanceUID", "U"),
    (0x00081195, "TransactionUID", "U"),
    (0x00082111, "DerivationDescription", "X"),
    (0x00082112, "SourceImageSequence", "X/Z/U*"),
    (0x00083010, "IrradiationEventUID", "U"),
    (0x00084000, "IdentifyingComments", "X"),
    (0x00089123, "CreatorVersionUID", "U"),
    (0x00200010, "StudyID", "Z"),
    (0x0020000D, "StudyInstanceUID", "U"),
    (0x0020000E, "SeriesInstanceUID", "U"),
    (0x00200052, "FrameOfReferenceUID", "U"),
    (0x00200200, "SynchronizationFrameOfReferenceUID", "U"),
    (0x00204000, "ImageComments", "X"),
    (0x00209158, "FrameComments", "X"),
    (0x00209161, "ConcatenationUID", "U"),
    (0x00209164, "DimensionOrganizationUID", "U"),
    (0x00284000, "ImagePresentationComments", "X"),
    (0x00281199, "PaletteColorLookupTableUID", "U"),
    (0x00281214, "LargePaletteColorLookupTableUID", "U"),
    (0x00620021, "TrackingUID", "U"),
    # --- institution, physicians, operators ---
    (0x00080080, "InstitutionName", "X/Z/D"),
    (0x00080081, "InstitutionAddress", "X"),
    (0x00080082, "InstitutionCodeSequence", "X/Z/D"),
    (0x00080090, "ReferringPhysicianName", "Z"),
    (0x00080092, "ReferringPhysicianAddress", "X"),
    (0x00080094, "ReferringPhysicianTelephoneNumbers", "X"),
    (0x00080096, "ReferringPhysicianIdentificationSequence", "X"),
    (0x0008009C, "ConsultingPhysicianName", "Z"),
    (0x0008009D, "ConsultingPhysicianIdentificationSequence", "X"),
    (0x00081010, "StationName", "X/Z/D"),
    (0x00081040, "InstitutionalDepartmentName", "X"),
    (0x00081048, "PhysiciansOfRecord", "X"),
    (0x00081049, "PhysiciansOfRecordIdentificationSequence", "X"),
    (0x00081050, "PerformingPhysicianName", "X"),
    (0x00081052, "PerformingPhysicianIdentificationSequence", "X"),
    (0x00081060, "NameOfPhysiciansReadingStudy", "X"),
    (0x00081062, "PhysiciansReadingStudyIdentificationSequence", "X"),
    (0x00081070, "OperatorsName", "X/Z/D"),
    (0x00081072, "OperatorIdentificationSequence", "X/D"),
    # --- equipment ---
    (0x00181000, "DeviceSerialNumber", "X/Z/D"),
    (0x00181002, "DeviceUID", "U"),
    (0x00181004, "PlateID", "X"),
    (0x00181005, "GeneratorID", "X"),
    (0x00181007, "CassetteID", "X"),
    (0x00181008, "GantryID", "X"),
    (0x00181009, "UniqueDeviceIdentifier", "X"),
    (0x0018100A, "UDISequence", "X"),
    (0x0018100B, "ManufacturerDeviceClassUID", "U"),
    (0x00181200, "DateOfLastCalibration", "X"),
    (0x00181201, "TimeOfLastCalibration", "X"),
    (0x00181202, "DateTimeOfLastCalibration", "X"),
    (0x0018700A, "DetectorID", "D"),
    (0x00189371, "XRayDetectorID", "D"),
    (0x00189373, "XRayDetectorLabel", "X"),
    (0x00189367, "XRaySourceID", "D"),
    # --- acquisition ---
    (0x00180010, "ContrastBolusAgent", "Z/D"),
    (0x001811BB, "AcquisitionFieldOfViewLabel", "D"),
    (0x00181030, "ProtocolName", "X/D"),
    (0x00181400, "AcquisitionDeviceProcessingDescription", "X/D"),
    (0x00184000, "AcquisitionComments", "X"),
    (0x00189074, "FrameAcquisitionDateTime", "X/D"),
    (0x00189151, "FrameReferenceDateTime", "X/D"),
    (0x00189185, "RespiratoryMotionCompensationTechniqueDescription", "X"),
    (0x00189424, "AcquisitionProtocolDescription", "X"),
    (0x00189516, "StartAcquisitionDateTime", "X/D"),
    (0x00189517, "EndAcquisitionDateTime", "X/D"),
    (0x00189623, "FunctionalSyncPulse", "X/D"),
    (0x00189701, "DecayCorrectionDateTime", "X/D"),
    (0x00189804, "ExclusionStartDateTime", "X"),
    (0x00189919, "InstructionPerformedDateTime", "Z/D"),
    (0x0018A002, "ContributionDateTime", "X/D"),
    (0x0018A003, "ContributionDescription", "X"),
    # --- study scheduling and reading (0032) ---
    (0x00320012, "StudyIDIssuer", "X"),
    (0x00320032, "StudyVerifiedDate", "X"),
    (0x00320033, "StudyVerifiedTime", "X"),
    (0x00320034, "StudyReadDate", "X"),
    (0x00320035, "StudyReadTime", "X"),
    (0x00321000, "ScheduledStudyStartDate", "X"),
    (0x00321001, "ScheduledStudyStartTime", "X"),
    (0x00321010, "ScheduledStudyStopDate", "X"),
    (0x00321011, "ScheduledStudyStopTime", "X"),
    (0x00321020, "ScheduledStudyLocation", "X"),
    (0x00321021, "ScheduledStudyLocationAETitle", "X"),
    (0x00321030, "ReasonForStudy", "X"),
    (0x00321032, "RequestingPhysician", "X"),
    (0x00321033, "RequestingService", "X"),
    (0x00321040, "StudyArrivalDate", "X"),
    (0x00321041, "StudyArrivalTime", "X"),
    (0x00321050, "StudyCompletionDate", "X"),
    (0x00321051, "StudyCompletionTime", "X"),
    (0x00321060, "RequestedProcedureDescription", "X/Z"),
    (0x00321070, "RequestedContrastAgent", "X"),
    (0x00324000, "StudyComments", "X"),
    # --- visit (0038) ---
    (0x00380004, "ReferencedPatientAliasSequence", "X"),
    (0x00380010, "AdmissionID", "X"),
    (0x00380011, "IssuerOfAdmissionID", "X"),
    (0x00380014, "IssuerOfAdmissionIDSequence", "X"),
    (0x0038001A, "ScheduledAdmissionDate", "X"),
    (0x0038001B, "ScheduledAdmissionTime", "X"),
    (0x0038001C, "ScheduledDischargeDate", "X"),
    (0x0038001D, "ScheduledDischargeTime", "X"),
    (0x0038001E, "ScheduledPatientInstitutionResidence", "X"),
    (0x00380020, "AdmittingDate", "X"),
    (0x00380021, "AdmittingTime", "X"),
    (0x00380030, "DischargeDate", "X"),
    (0x00380032, "DischargeTime", "X"),
    (0x00380040, "DischargeDiagnosisDescription", "X"),
    (0x00380050, "SpecialNeeds", "X"),
    (0x00380060, "ServiceEpisodeID", "X"),
    (0x00380061, "IssuerOfServiceEpisodeID", "X"),
    (0x00380062, "ServiceEpisodeDescription", "X"),
    (0x00380064, "IssuerOfServiceEpisodeIDSequence", "X"),
    (0x00380300, "CurrentPatientLocation", "X"),
    (0x00380400, "PatientInstitutionResidence", "X"),
    (0x00380500, "PatientState", "X"),
    (0x00384000, "VisitComments", "X"),
    # --- scheduled / performed procedure steps, orders (0040) ---
    (0x00400001, "ScheduledStationAETitle", "X"),
    (0x00400002, "ScheduledProcedureStepStartDate", "X"),
    (0x00400003, "ScheduledProcedureStepStartTime", "X"),
    (0x00400004, "ScheduledProcedureStepEndDate", "X"),
    (0x00400005, "ScheduledProcedureStepEndTime", "X"),
    (0x00400006, "ScheduledPerformingPhysicianName", "X"),
    (0x00400007, "ScheduledProcedureStepDescription", "X"),
    (0x00400009, "ScheduledProcedureStepID", "X"),
    (0x0040000B, "ScheduledPerformingPhysicianIdentificationSequence", "X"),
    (0x00400010, "ScheduledStationName", "X"),
    (0x00400011, "ScheduledProcedureStepLocation", "X"),
    (0x00400012, "PreMedication", "X"),
    (0x00400241, "PerformedStationAETitle", "X"),
    (0x00400242, "PerformedStationName", "X"),
    (0x00400243, "PerformedLocation", "X"),
    (0x00400244, "PerformedProcedureStepStartDate", "X"),
    (0x00400245, "PerformedProcedureStepStartTime", "X"),
    (0x00400250, "PerformedProcedureStepEndDate", "X"),
    (0x00400251, "PerformedProcedureStepEndTime", "X"),
    (0x00400253, "PerformedProcedureStepID", "X"),
    (0x00400254, "PerformedProcedureStepDescription", "X"),
    (0x00400275, "RequestAttributesSequence", "X"),
    (0x00400280, "CommentsOnThePerformedProcedureStep", "X"),
    (0x00400512, "ContainerIdentifier", "D"),
    (0x00400513, "IssuerOfTheContainerIdentifierSequence", "X"),
    (0x0040051A, "ContainerDescription", "X"),
    (0x00400551, "SpecimenIdentifier", "D"),
    (0x00400554, "SpecimenUID", "U"),
    (0x00400555, "AcquisitionContextSequence", "X"),
    (0x00400562, "IssuerOfTheSpecimenIdentifierSequence", "X"),
    (0x00400600, "SpecimenShortDescription", "X"),
    (0x00400602, "SpecimenDetailedDescription", "X"),
    (0x00401001, "RequestedProcedureID", "X"),
    (0x00401002, "ReasonForTheRequestedProcedure", "X"),
    (0x00401004, "PatientTransportArrangements", "X"),
    (0x00401005, "RequestedProcedureLocation", "X"),
    (0x00401010, "NamesOfIntendedRecipientsOfResults", "X"),
    (0x00401011, "IntendedRecipientsOfResultsIdentificationSequence", "X"),
    (0x00401101, "PersonIdentificationCodeSequence", "D"),
    (0x00401102, "PersonAddress", "X"),
    (0x00401103, "PersonTelephoneNumbers", "X"),
    (0x00401104, "PersonTelecomInformation", "X"),
    (0x00401400, "RequestedProcedureComments", "X"),
    (0x00402001, "ReasonForTheImagingServiceRequest", "X"),
    (0x00402004, "IssueDateOfImagingServiceRequest", "X"),
    (0x00402005, "IssueTimeOfImagingServiceRequest", "X"),
    (0x00402008, "OrderEnteredBy", "X"),
    (0x00402009, "OrderEntererLocation", "X"),
    (0x00402010, "OrderCallbackPhoneNumber", "X"),
    (0x00402011, "OrderCallbackTelecomInformation", "X"),
    (0x00402016, "PlacerOrderNumberImagingServiceRequest", "Z"),
    (0x00402017, "FillerOrderNumberImagingServiceRequest", "Z"),
    (0x00402400, "ImagingServiceRequestComments", "X"),
    (0x00403001, "ConfidentialityConstraintOnPatientDataDescription", "X"),
    (0x00404005, "ScheduledProcedureStepStartDateTime", "X"),
    (0x00404010, "ScheduledProcedureStepModificationDateTime", "X"),
    (0x00404011, "ExpectedCompletionDateTime", "X"),
    (0x00404023, "ReferencedGeneralPurposeScheduledProcedureStepTransactionUID", "U"),
    (0x00404025, "ScheduledStationNameCodeSequence", "X"),
    (0x00404027, "ScheduledStationGeographicLocationCodeSequence", "X"),
    (0x00404028, "PerformedStationNameCodeSequence", "X"),
    (0x00404030, "PerformedStationGeographicLocationCodeSequence", "X"),
    (0x00404034, "ScheduledHumanPerformersSequence", "X"),
    (0x00404035, "ActualHumanPerformersSequence", "X"),
    (0x00404036, "HumanPerformerOrganization", "X"),
    (0x00404037, "HumanPerformerName", "X"),
    (0x00404050, "PerformedProcedureStepStartDateTime", "X"),
    (0x00404051, "PerformedProcedureStepEndDateTime", "X"),
    (0x00404052, "ProcedureStepCancellationDateTime", "X"),
    (0x0040A027, "VerifyingOrganization", "X"),
    (0x0040A030, "VerificationDateTime", "D"),
    (0x0040A032, "ObservationDateTime", "X/D"),
    (0x0040A073, "VerifyingObserverSequence", "D"),
    (0x0040A075, "VerifyingObserverName", "D"),
    (0x0040A078, "AuthorObserverSequence", "X"),
    (0x0040A07A, "ParticipantSequence", "X"),
    (0x0040A07C, "CustodialOrganizationSequence", "X"),
    (0x0040A088, "VerifyingObserverIdentificationCodeSequence", "Z"),
    (0x0040A120, "DateTime", "D"),
    (0x0040A121, "Date", "D"),
    (0x0040A122, "Time", "D"),
    (0x0040A123, "PersonName", "D"),
    (0x0040A124, "UID", "U"),
    (0x0040A171, "ObservationUID", "U"),
    (0x0040A730, "ContentSequence", "X"),
    (0x0040DB0C, "TemplateExtensionOrganizationUID", "U"),
    (0x0040DB0D, "TemplateExtensionCreatorUID", "U"),
    # --- presentation, RT, interpretation, topics, media, security ---
    (0x00700001, "GraphicAnnotationSequence", "D"),
    (0x00700084, "ContentCreatorName", "Z"),
    (0x00700086, "ContentCreatorIdentificationCodeSequence", "X"),
    (0x0070031A, "FiducialUID", "U"),
    (0x00880140, "StorageMediaFileSetUID", "U"),
    (0x00880200, "IconImageSequence", "X"),
    (0x00880904, "TopicTitle", "X"),
    (0x00880906, "TopicSubject", "X"),
    (0x00880910, "TopicAuthor", "X"),
    (0x00880912, "TopicKeywords", "X"),
    (0x00041511, "ReferencedSOPInstanceUIDInFile", "U"),
    (0x20300020, "TextString", "X"),
    (0x30060002, "StructureSetLabel", "D"),
    (0x30060004, "StructureSetName", "X"),
    (0x30060006, "StructureSetDescription", "X"),
    (0x30060008, "StructureSetDate", "Z"),
    (0x30060009, "StructureSetTime", "Z"),
    (0x30060024, "ReferencedFrameOfReferenceUID", "U"),
    (0x30060026, "ROIName", "Z"),
    (0x30060028, "ROIDescription", "X"),
    (0x30060085, "ROIObservationLabel", "X"),
    (0x30060088, "ROIObservationDescription", "X"),
    (0x300600A6, "ROIInterpreter", "Z"),
    (0x300600C2, "RelatedFrameOfReferenceUID", "U"),
    (0x300A0002, "RTPlanLabel", "D"),
    (0x300A0003, "RTPlanName", "X"),
    (0x300A0004, "RTPlanDescription", "X"),
    (0x300A0006, "RTPlanDate", "X/Z"),
    (0x300A0007, "RTPlanTime", "X/Z"),
    (0x300A0013, "DoseReferenceUID", "U"),
    (0x300E0008, "ReviewerName", "X/Z"),
    (0x40000010, "Arbitrary", "X"),
    (0x40004000, "TextComments", "X"),
    (0x40080042, "ResultsIDIssuer", "X"),
    (0x40080102, "InterpretationRecorder", "X"),
    (0x4008010A, "InterpretationTranscriber", "X"),
    (0x4008010B, "InterpretationText", "X"),
    (0x4008010C, "InterpretationAuthor", "X"),
    (0x40080111, "InterpretationApproverSequence", "X"),
    (0x40080114, "PhysicianApprovingInterpretation", "X"),
    (0x40080115, "InterpretationDiagnosisDescription", "X"),
    (0x40080118, "ResultsDistributionListSequence", "X"),
    (0x40080119, "DistributionName", "X"),
    (0x4008011A, "DistributionAddress", "X"),
    (0x40080202, "InterpretationIDIssuer", "X"),
    (0x40080300, "Impressions", "X"),
    (0x40084000, "ResultsComments", "X"),
    (0x04000100, "DigitalSignatureUID", "X"),
    (0x04000105, "DigitalSignatureDateTime", "X"),
    (0x04000310, "CertifiedTimestamp", "X"),
    (0x04000402, "ReferencedDigitalSignatureSequence", "X"),
    (0x04000403, "ReferencedSOPInstanceMACSequence", "X"),
    (0x04000404, "MAC", "X"),
    (0x04000550, "ModifiedAttributesSequence", "X"),
    (0x04000561, "OriginalAttributesSequence", "X"),
    (0x04000562, "AttributeModificationDateTime", "X/D"),
    (0x04000563, "ModifyingSystem", "X/D"),
    (0x04000564, "SourceOfPreviousValues", "X/Z"),
    (0x4FFE0001, "MACParametersSequence", "X"),
    (0xFFFAFFFA, "DigitalSignaturesSequence", "X"),
    # --- command group attributes that can leak into files ---
    (0x00001000, "AffectedSOPInstanceUID", "X"),
    (0x00001001, "RequestedSOPInstanceUID", "U"),
)


def resolve_action(code: str) -> Action:
    """Reduce a Table E.1-1 action code to one concrete action.

    Simple codes map to themselves. Compound codes resolve as follows (the most
    conservative choice that still keeps a valid object):

    - any code containing ``U*`` (``X/Z/U*``, used for the reference sequences)
      -> ``U``: the sequence is kept and every UID inside it is remapped, so
      references between de-identified instances still resolve; all other
      attributes inside the items go through the profile as well;
    - codes containing ``Z`` (``X/Z``, ``Z/D``, ``X/Z/D``) -> ``Z``: a zero-length
      value carries no information and keeps Type 2 attributes present;
    - ``X/D`` -> ``X``: removed (these attributes are Type 3 in the image IODs
      spinekit handles, so no dummy is needed).
    """
    parts = code.split("/")
    if len(parts) == 1:
        if code not in ("D", "Z", "X", "K", "U"):
            raise ValueError(f"unknown Annex E action code {code!r}")
        return cast(Action, code)
    if "U*" in parts:
        return "U"
    if "Z" in parts:
        return "Z"
    if parts == ["X", "D"]:
        return "X"
    raise ValueError(f"unknown Annex E action code {code!r}")


PROFILE_ACTIONS: dict[int, Action] = {tag: resolve_action(code) for tag, _, code in BASIC_PROFILE}
"""Tag (as ``0xGGGGEEEE``) -> concrete action, from :data:`BASIC_PROFILE`."""


# --------------------------------------------------------------------- applying the profile

PSEUDONYM_PREFIX = "ANON-"
UID_ROOT = "2.25."
_BINARY_VRS = frozenset({"UN", "OB", "OW", "OF", "OD", "OL", "OV"})
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                       "TM", "UC", "UR", "UT"})
_DUMMIES: dict[str, Any] = {
    "PN": "ANONYMOUS", "LO": "ANONYMIZED", "SH": "ANONYMIZED", "LT": "ANONYMIZED",
    "ST": "ANONYMIZED", "UT": "ANONYMIZED", "UC": "ANONYMIZED", "AE": "ANONYMIZED",
    "CS": "ANONYMIZED", "DA": "19000101", "TM": "000000", "DT": "19000101000000",
    "AS": "000Y", "IS": "0", "DS": "0", "US": 0, "SS": 0, "UL": 0, "SL": 0, "FL": 0.0,
    "FD": 0.0, "UV": 0, "SV": 0,
}
"""Dummy value per VR for action D."""
KEEP_UID_KEYWORDS = frozenset({"CodingSchemeUID", "ContextUID", "MappingResourceUID"})
_KEEP_UID_SUFFIXES = ("ClassUID", "ClassUIDInFile", "TransferSyntaxUID", "TransferSyntaxUIDInFile",
                      "ClassesInStudy", "ClassesInSeries", "ClassesSupported")
"""UID attributes that name classes, transfer syntaxes or coding schemes, not instances: kept."""
_KEEP_DATE_KEYWORDS = frozenset({"ContextGroupVersion"})


@dataclass
class DeidChanges:
    """What was changed in one file: tag keywords only, never values."""

    removed: set[str] = field(default_factory=set)
    replaced: set[str] = field(default_factory=set)
    emptied: set[str] = field(default_factory=set)
    uids_remapped: int = 0
    private_tags_removed: int = 0
    regions_blanked: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form with sorted keyword lists."""
        return {
            "removed": sorted(self.removed), "replaced": sorted(self.replaced),
            "emptied": sorted(self.emptied), "uids_remapped": self.uids_remapped,
            "private_tags_removed": self.private_tags_removed,
            "regions_blanked": self.regions_blanked, "notes": self.notes,
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


def _name(elem: DataElement) -> str:
    return elem.keyword or str(elem.tag)


def _has_value(elem: DataElement) -> bool:
    value = elem.value
    if isinstance(value, list | MultiValue | Sequence | str | bytes):
        return len(value) > 0
    return value is not None and str(value) != ""


def default_action(elem: DataElement) -> Action:
    """Action for standard attributes the table does not list.

    UIDs are remapped unless they are registered DICOM UIDs (``1.2.840.10008.``
    root) or name a class, transfer syntax or coding scheme; person names and
    dates/times (except *ContextGroupVersion*) are emptied (a spinekit addition
    to the profile); the rest is kept.
    """
    if elem.VR == "UI":
        values = elem.value if isinstance(elem.value, list | MultiValue) else [elem.value]
        if elem.keyword in KEEP_UID_KEYWORDS or elem.keyword.endswith(_KEEP_UID_SUFFIXES) or all(
                not v or not UID(str(v)).is_private for v in values):
            return "K"
        return "U"
    if elem.VR in ("PN", "DA", "DT", "TM") and elem.keyword not in _KEEP_DATE_KEYWORDS:
        return "Z"
    return "K"


def _remap_element(elem: DataElement, salt: str, changes: DeidChanges) -> None:
    if not _has_value(elem):
        return
    if isinstance(elem.value, list | MultiValue):
        elem.value = [remap_uid(str(v), salt) if v else v for v in elem.value]
        changes.uids_remapped += sum(1 for v in elem.value if v)
    else:
        elem.value = remap_uid(str(elem.value), salt)
        changes.uids_remapped += 1


def _apply_action(ds: Dataset, elem: DataElement, action: Action, salt: str, keep_private: bool,
                  changes: DeidChanges) -> None:
    """Apply one concrete action to ``elem`` of ``ds``; sequences are walked unless X or Z.

    Binary and unknown-VR values cannot take a dummy, so any action but K removes them.
    """
    name = _name(elem)
    if action == "X" or (action != "K" and elem.VR in _BINARY_VRS):
        del ds[elem.tag]
        changes.removed.add(name)
    elif elem.VR == "SQ":
        if action == "Z":
            if _has_value(elem):
                changes.emptied.add(name)
            elem.value = Sequence()
        else:
            for item in elem.value:
                apply_basic_profile(item, salt, keep_private=keep_private, changes=changes)
    elif action == "Z":
        if _has_value(elem):
            changes.emptied.add(name)
        elem.value = "" if elem.VR in _TEXT_VRS else None
    elif elem.VR == "UI" and action in ("U", "D"):
        _remap_element(elem, salt, changes)
    elif action in ("D", "U"):
        elem.value = _DUMMIES.get(elem.VR, "ANONYMIZED")
        changes.replaced.add(name)


def _pseudonymise_patient(ds: Dataset, salt: str, changes: DeidChanges) -> None:
    """PatientID and PatientName both become the pseudonym of the PatientID.

    Without a PatientID the name is the key; without either both stay empty.
    """
    pid = str(ds.get("PatientID", "") or "").strip()
    key = pid or str(ds.get("PatientName", "") or "").strip()
    pseudonym = pseudonymise_id(key, salt) if key else ""
    for keyword in ("PatientID", "PatientName"):
        if keyword in ds:
            elem = ds[keyword]
            if _has_value(elem):
                (changes.replaced if pseudonym else changes.emptied).add(keyword)
            elem.value = pseudonym


def _is_overlay_or_curve(group: int) -> bool:
    return group % 2 == 0 and (0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF)


def apply_basic_profile(ds: Dataset, salt: str, *, keep_private: bool = False,
                        changes: DeidChanges | None = None) -> DeidChanges:
    """Apply the Basic Profile to every element of ``ds`` in place, recursing into sequences.

    Also: PatientID/PatientName -> :func:`pseudonymise_id`; private elements
    removed (unless ``keep_private``); overlay (60xx) and curve (50xx) groups and
    group-length elements removed. The file meta group is not touched here.
    """
    changes = DeidChanges() if changes is None else changes
    _pseudonymise_patient(ds, salt, changes)
    for tag in list(ds.keys()):
        elem = ds[tag]
        if tag.is_private:
            if not keep_private:
                del ds[tag]
                changes.private_tags_removed += 1
            elif elem.VR == "SQ":
                for item in elem.value:
                    apply_basic_profile(item, salt, keep_private=keep_private, changes=changes)
        elif tag.element == 0:
            del ds[tag]
        elif _is_overlay_or_curve(tag.group):
            del ds[tag]
            changes.removed.add("OverlayGroup" if tag.group >= 0x6000 else "CurveGroup")
        elif elem.keyword not in ("PatientID", "PatientName"):
            action = PROFILE_ACTIONS.get(int(tag)) or default_action(elem)
            _apply_action(ds, elem, action, salt, keep_private, changes)
    return changes
