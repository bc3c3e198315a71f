"""What a de-identified DICOM file may hold, declared once: the allow-list, and the rules that keep an
image out of the export because text may be burned into its pixels.

The allow-list names every attribute that may leave the PHI zone with its `Treatment`. An attribute
it does not name is removed, at every depth: an unknown public attribute, every private element, a
new text attribute of the next standard release. Sequences it names are kept and their items are
walked with the same list, so a kept sequence cannot smuggle an item attribute the list does not
name (a Text Value, a Code Meaning, a comment).

The burned-in rules are data too: SOP classes, Image Type values, Conversion Type, modalities, and
the header criteria of the pydicom/deid rule set (its default "dicom" recipe; MIT licence, copyright
Vanessa Sochat; its graylist and blacklist take the CTP DicomPixelAnonymizer script's criteria).
The graylist's vendor rules give pixel regions to blank; nothing here blanks pixels, so an image
one of them matches is kept out of the export, and the rules are written without the vendor and
size conditions (an image of another vendor with the same kind of screen is as risky).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pydicom.datadict import tag_for_keyword


class Treatment(Enum):
    CODE = "code"  # a coded or enumerated value, kept when it has the syntax of a code
    NUMBER = "number"  # a number or tag, kept when each value is one
    BINARY = "binary"  # pixel data, lookup tables and colour profiles: what a viewer needs
    CLASS_UID = "class uid"  # names a SOP class or coding scheme, not an instance: kept
    NEW_UID = "new uid"  # names an instance: the keyed replacement (`Pseudonymizer.uid`)
    DATE = "date"  # DA, DT, TM: generalised by the profile (the year, or shifted)
    AGE = "age"  # Patient's Age: capped at 090Y, removed for a patient known to be over 89
    PATIENT_TOKEN = "patient token"  # the patient's keyed token in place of the value
    EMPTY = "empty"  # present but emptied: Type 2 attributes an IOD needs, whose value identifies
    VOCABULARY = "vocabulary"  # free text kept only when the value is in the caller's vocabulary
    SEQUENCE = "sequence"  # kept; each item is cleaned with this same list


# Treatments that keep the value as written. Annex E of PS3.15 must list none of these attributes:
# what the standard says to remove, empty or replace is never kept as it is.
KEPT_AS_WRITTEN = frozenset({Treatment.CODE, Treatment.NUMBER, Treatment.BINARY, Treatment.CLASS_UID})


def _declare(treatment: Treatment, keywords: str) -> dict[str, Treatment]:
    return dict.fromkeys(keywords.split(), treatment)


_DECLARATIONS: tuple[dict[str, Treatment], ...] = (
    _declare(
        Treatment.CODE,
        # character set (needed to read any text), image kind, technique, equipment, code items
        """
        SpecificCharacterSet Modality ImageType FrameType PhotometricInterpretation PixelPresentation
        VolumetricProperties VolumeBasedCalculationTechnique ComplexImageComponent AcquisitionContrast
        RescaleType VOILUTFunction PresentationLUTShape LossyImageCompression LossyImageCompressionMethod
        BurnedInAnnotation RecognizableVisualFeatures ConversionType PatientPosition PatientOrientation
        ViewPosition Laterality ImageLaterality ScanningSequence SequenceVariant ScanOptions MRAcquisitionType
        InPlanePhaseEncodingDirection ConvolutionKernel RotationDirection FilterType PixelIntensityRelationship
        ColorSpace Manufacturer ManufacturerModelName SoftwareVersions
        CodeValue CodingSchemeDesignator CodingSchemeVersion MappingResource ContextIdentifier
        """,
    ),
    _declare(
        Treatment.NUMBER,
        # image pixel, multi-frame, display and geometry, acquisition parameters, frame indexing
        """
        Rows Columns SamplesPerPixel PlanarConfiguration BitsAllocated BitsStored HighBit PixelRepresentation
        NumberOfFrames FrameIncrementPointer FrameTime FrameTimeVector CineRate RecommendedDisplayFrameRate
        PixelAspectRatio SmallestImagePixelValue LargestImagePixelValue PixelPaddingValue PixelPaddingRangeLimit
        WindowCenter WindowWidth RescaleIntercept RescaleSlope LUTDescriptor LossyImageCompressionRatio
        RedPaletteColorLookupTableDescriptor GreenPaletteColorLookupTableDescriptor
        BluePaletteColorLookupTableDescriptor PixelIntensityRelationshipSign
        PixelSpacing ImagerPixelSpacing SliceThickness SpacingBetweenSlices ImagePositionPatient
        ImageOrientationPatient SliceLocation SeriesNumber InstanceNumber AcquisitionNumber
        EchoNumbers EchoTime RepetitionTime InversionTime MagneticFieldStrength FlipAngle EchoTrainLength
        ImagingFrequency NumberOfAverages PixelBandwidth KVP XRayTubeCurrent ExposureTime Exposure
        DataCollectionDiameter ReconstructionDiameter GantryDetectorTilt TableHeight SpiralPitchFactor CTDIvol
        DistanceSourceToDetector DistanceSourceToPatient EstimatedRadiographicMagnificationFactor
        FunctionalGroupPointer DimensionIndexPointer DimensionIndexValues InStackPositionNumber
        TemporalPositionIndex FrameAcquisitionNumber ReferencedFrameNumber
        """,
    ),
    _declare(
        Treatment.BINARY,
        """
        PixelData FloatPixelData DoubleFloatPixelData ExtendedOffsetTable ExtendedOffsetTableLengths LUTData
        RedPaletteColorLookupTableData GreenPaletteColorLookupTableData BluePaletteColorLookupTableData
        SegmentedRedPaletteColorLookupTableData SegmentedGreenPaletteColorLookupTableData
        SegmentedBluePaletteColorLookupTableData ICCProfile
        """,
    ),
    _declare(Treatment.CLASS_UID, "SOPClassUID ReferencedSOPClassUID CodingSchemeUID ContextUID MappingResourceUID"),
    _declare(
        Treatment.NEW_UID,
        """
        SOPInstanceUID StudyInstanceUID SeriesInstanceUID FrameOfReferenceUID ReferencedSOPInstanceUID
        ReferencedFrameOfReferenceUID SynchronizationFrameOfReferenceUID DimensionOrganizationUID
        ConcatenationUID IrradiationEventUID
        """,
    ),
    _declare(
        Treatment.DATE,
        """
        StudyDate SeriesDate AcquisitionDate ContentDate StudyTime SeriesTime AcquisitionTime ContentTime
        AcquisitionDateTime FrameAcquisitionDateTime FrameReferenceDateTime
        """,
    ),
    _declare(Treatment.AGE, "PatientAge"),  # Annex E's Retain Patient Characteristics Option, capped
    _declare(Treatment.PATIENT_TOKEN, "PatientID PatientName"),
    _declare(Treatment.EMPTY, "PatientBirthDate PatientSex ReferringPhysicianName AccessionNumber StudyID"),
    # Annex E's Clean Descriptors Option, cleaned by keeping only values a person has vetted.
    _declare(Treatment.VOCABULARY, "StudyDescription SeriesDescription ProtocolName BodyPartExamined CodeMeaning"),
    _declare(
        Treatment.SEQUENCE,
        # references (their UIDs replaced), anatomy and derivation codes, lookup tables, functional groups
        """
        ReferencedImageSequence SourceImageSequence AnatomicRegionSequence AnatomicRegionModifierSequence
        PrimaryAnatomicStructureSequence DerivationCodeSequence ProcedureCodeSequence ViewCodeSequence
        PatientOrientationCodeSequence PurposeOfReferenceCodeSequence VOILUTSequence ModalityLUTSequence
        PerFrameFunctionalGroupsSequence SharedFunctionalGroupsSequence PixelMeasuresSequence
        PlanePositionSequence PlaneOrientationSequence FrameContentSequence FrameVOILUTSequence
        PixelValueTransformationSequence DimensionIndexSequence DimensionOrganizationSequence
        """,
    ),
)


def _allow_list() -> dict[str, Treatment]:
    """Every declaration in one map; a keyword declared twice or unknown to pydicom is a mistake."""
    merged: dict[str, Treatment] = {}
    for declarations in _DECLARATIONS:
        for keyword, treatment in declarations.items():
            if keyword in merged:
                raise ValueError(f"{keyword} is declared twice in the DICOM allow-list")
            if tag_for_keyword(keyword) is None:
                raise ValueError(f"{keyword} is not a DICOM keyword pydicom knows")
            merged[keyword] = treatment
    return merged


ALLOWED_ATTRIBUTES: dict[str, Treatment] = _allow_list()
ALLOWED_TAGS: dict[int, Treatment] = {tag_for_keyword(keyword): t for keyword, t in ALLOWED_ATTRIBUTES.items()}


def treatment_of(tag: int) -> Treatment | None:
    """The declared treatment of a tag, or None: the attribute is removed."""
    return ALLOWED_TAGS.get(int(tag))


_STORAGE = "1.2.840.10008.5.1.4.1.1."

# SOP classes whose instances are pictures of screens, documents, reports or scenes, in which text
# such as a name or a date is the rule. A root covers the class itself and every class under it.
BURNED_IN_SOP_CLASS_ROOTS: dict[str, str] = {
    f"{_STORAGE}7": "secondary captures (single and multi-frame) are screenshots and scans",
    f"{_STORAGE}104": "encapsulated documents (PDF, CDA, 3D models) carry their own text",
    f"{_STORAGE}88": "structured reports are text",
    f"{_STORAGE}6": "ultrasound scanners print the patient's name, the date and measurements into the image",
    f"{_STORAGE}3": "ultrasound scanners print the patient's name, the date and measurements into the image",
    f"{_STORAGE}77": "visible light photographs and videos (endoscopy, microscopy, slide scans, eye and skin "
    "photographs) show labels, wristbands, faces and overlaid patient data",
}


def burned_in_sop_class(sop_class_uid: str | None) -> str | None:
    """Why instances of this SOP class carry text in their pixels, or None."""
    uid = (sop_class_uid or "").strip().rstrip("\0")
    for root, reason in BURNED_IN_SOP_CLASS_ROOTS.items():
        if uid == root or uid.startswith(root + "."):
            return reason
    return None


# Reasons why images of a modality often carry text in their pixels, used when Burned In Annotation
# does not say NO. Cross-sectional and projection radiography (CT, MR, PT, NM, CR, DX, MG) keep
# annotations out of the pixels as a rule and are not listed.
BURNED_IN_TEXT_MODALITIES: dict[str, str] = {
    "US": "ultrasound scanners print the patient's name, the date and measurements into the image",
    "IVUS": "intravascular ultrasound consoles print patient data into the image",
    "ES": "endoscopy video processors overlay the patient's name and the date on the video",
    "XA": "angiography systems print patient and procedure data into the image",
    "RF": "fluoroscopy systems print patient and procedure data into the image",
    "OT": "secondary captures are often screenshots showing patient data",
    "SC": "secondary captures are often screenshots showing patient data",
    "DOC": "scanned documents are text",
    "SR": "structured reports are text",
    "KO": "key object selections are reports",
    "XC": "photographs can show faces, wristbands and labels",
    "GM": "microscope photographs often show specimen labels",
    "SM": "slide scans include the slide label, which often carries the patient's name",
    "OP": "fundus cameras print patient data into the image",
}

# Image Type (0008,0008) values that say the pixels are a capture of a screen or a report. SECONDARY
# is any image made after the acquisition (screenshots, saved screens, dose sheets, reformats) and is
# blacklisted by the deid rule set whether the file has a flag or not.
BURNED_IN_IMAGE_TYPES: dict[str, str] = {
    "SECONDARY": "a secondary image, such as a screen capture or a dose sheet",
    "SCREEN SAVE": "a saved screen",
    "REPORTDATA": "a report page",
    "DEMOGRAPHICDATA": "a page of patient demographics",
    "INVALID": "an image its system marked invalid",
    "DOSE": "a dose report page",
    "VOLREN": "a volume rendering with its annotations",
}


@dataclass(frozen=True)
class Criterion:
    """One header test of a rule. `contains`: a value of the attribute contains one of `terms`
    (case-insensitive; multi-valued attributes are read joined by backslashes). `missing_or_empty`:
    the attribute is absent or has no value. `empty`: it is present with no value (a field the
    capturing system left blank)."""

    keyword: str
    test: str
    terms: tuple[str, ...] = ()


@dataclass(frozen=True)
class BurnedInRule:
    """A header pattern under which the pixels likely hold text: every criterion must hold."""

    name: str
    criteria: tuple[Criterion, ...]


def _contains(keyword: str, *terms: str) -> Criterion:
    return Criterion(keyword, "contains", terms)


_CT_OR_MR = _contains("Modality", "CT", "MR")
_CT = _contains("Modality", "CT")

# The pydicom/deid rule set, "%filter blacklist" (each "||" alternative its own rule), and
# the manufacturer-independent part of its "%filter graylist" rules (from the CTP script).
DEID_RULES: tuple[BurnedInRule, ...] = (
    BurnedInRule("deid blacklist: Any Scanned Document or Secondary Save",
                 (_contains("ImageType", "SECONDARY"), _contains("Modality", "OT"))),
    BurnedInRule("deid blacklist: Any REPORTDATA", (_contains("ImageType", "REPORTDATA"),)),
    BurnedInRule("deid blacklist: Any DEMOGRAPHICDATA", (_contains("ImageType", "DEMOGRAPHICDATA"),)),
    BurnedInRule("deid blacklist: Any INVALID", (_contains("ImageType", "INVALID"),)),
    BurnedInRule("deid blacklist: Missing ImageType", (Criterion("ImageType", "missing_or_empty"),)),
    BurnedInRule("deid blacklist: secondary or derived catchall",
                 (_CT_OR_MR, _contains("ImageType", "DERIVED", "SECONDARY", "SCREEN", "SAVE"))),
    BurnedInRule("deid blacklist: Dose Report or External",
                 (_CT_OR_MR, _contains("SeriesDescription", "Patient Protocol", "PACS nomination form",
                                       "Dose Report", "Study acquired outside hospital"))),
    BurnedInRule("deid blacklist (CTP): Burned In Annotation, saved screen",
                 (_contains("ImageType", "SAVE"), _CT_OR_MR)),
    BurnedInRule("deid blacklist (CTP): Burned In Annotation, saved series",
                 (_contains("SeriesDescription", "SAVE"),)),
    BurnedInRule("deid blacklist (CTP): Burned In Annotation flag", (_contains("BurnedInAnnotation", "YES"),)),
    *(
        BurnedInRule(f"deid blacklist (CTP): Burned In Annotation, {keyword} left empty",
                     (Criterion(keyword, "empty"),))
        for keyword in ("DateOfSecondaryCapture", "SecondaryCaptureDeviceManufacturer",
                        "SecondaryCaptureDeviceManufacturerModelName", "SecondaryCaptureDeviceSoftwareVersions")
    ),
    BurnedInRule("deid graylist: Reconstruction without manufacturer",
                 (Criterion("Manufacturer", "missing_or_empty"),
                  _contains("ImageType", "RECONSTRUCTION", "SECONDARY", "DERIVED"))),
    BurnedInRule("deid graylist: CT dose report", (_CT, _contains("SeriesDescription", "Dose"))),
    BurnedInRule("deid graylist: CT localizer", (_CT, _contains("ImageType", "LOCAL"))),
    BurnedInRule("deid graylist: CT localizer series", (_CT, _contains("SeriesDescription", "Localizer"))),
    BurnedInRule("deid graylist: CT enhancement curve", (_CT, _contains("SeriesDescription", "Enhancement"))),
    BurnedInRule("deid graylist: CT workstation report",
                 (_CT, _contains("SeriesDescription", "Report", "AW electronic field", "3D", "MEDRAD"))),
    BurnedInRule("deid graylist (CTP): CT dose series", (_CT, _contains("CodeMeaning", "IEC Body Dosimetry Phantom"))),
    BurnedInRule("deid graylist (CTP): CT dose report comments", (_CT, _contains("CommentsOnRadiationDose", "DLP"))),
)  # fmt: skip

# Every attribute a burned-in rule reads, so callers know what to pass.
BURNED_IN_KEYWORDS: frozenset[str] = frozenset(
    {"SOPClassUID", "Modality", "ImageType", "ConversionType", "BurnedInAnnotation"}
    | {criterion.keyword for rule in DEID_RULES for criterion in rule.criteria}
)
