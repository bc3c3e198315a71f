"""De-identification of DICOM files and of rows of the PHI `dicom_images` table for the `deid/` zone.

The file side keeps only what `medical_assets.dicom.attributes` declares, each attribute with its
declared treatment, at every depth: whatever is not declared is removed (unknown and new public
attributes, private elements and their creators, group lengths, overlays, curves, free text in
sequence items). Kept sequences are walked with the same declaration. The PS3.15 Annex E table
(Table E.1-1 as the `dicom-anonymizer` package, BSD-3, ships it: `ANNEX_E_RELEASE`) stays as a
cross-check: nothing it lists is declared to be kept as written. Its own applier is not used: it
draws random UIDs and writes dummies where this project needs keyed pseudonyms that join across
files, runs and HL7 (`medical_assets.privacy.pseudonyms`).

- Codes, numbers and pixel data are kept when they have the syntax their treatment expects (a DS
  holding letters is not a number and is removed).
- Instance UIDs become keyed UIDs (`Pseudonymizer.uid`), so every reference stays consistent across
  files; values under the DICOM root (well-known UIDs) and class UIDs are kept.
- Vocabulary-only text (descriptions, body part, code meanings) is kept only when the value is one
  the caller's vocabulary allows for that keyword: free text cannot be cleaned, a vetted term can be kept.
- The 128-byte preamble is zeroed (dual-format files keep a TIFF header there); the file meta is rebuilt.

Dates and times. HIPAA Safe Harbor allows a year but no other element of a date. Profile
`safe_harbor` writes the year alone (DA `YYYY0101`, DT `YYYY0101000000`) and empties TM. Profile
`date_shift` is the Retain Longitudinal Temporal Information with Modified Dates option: DA and
DT move by `Pseudonymizer.date_offset_days` of the patient identity, the same for every file of a
patient, so intervals survive; times of day stay. Patient's Birth Date is emptied in both.

The patient: PatientID and PatientName both become the token of the patient identity
(`patient_identity(PatientID, IssuerOfPatientID or InstitutionName, scope)`), as the HL7 side
computes it, so patients join across modalities and MRN 12345 of two hospitals are two patients.
Patient's Age is kept with ages over 89 written as 090Y, and removed for a patient the caller knows
to be over 89 (`patients_over_89`), whose 089Y would give the birth year away.

Pixel data is never changed: whether text is burned into it is `export_risk`'s question, and an image
at risk is kept out of the export, not cleaned.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from io import BytesIO

import pyarrow as pa
import pydicom
from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.datadict import keyword_for_tag
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medical_assets.dicom.attributes import (
    BURNED_IN_IMAGE_TYPES,
    BURNED_IN_KEYWORDS,
    BURNED_IN_TEXT_MODALITIES,
    DEID_RULES,
    Criterion,
    Treatment,
    burned_in_sop_class,
    treatment_of,
)
from medical_assets.dicom.reader import file_problem
from medical_assets.dicom.tables import DICOM_IMAGES
from medical_assets.privacy.declarations import Treatment as ColumnTreatment
from medical_assets.privacy.declarations import declared
from medical_assets.privacy.pseudonyms import ISSUER_SCOPE, PATIENT_DOMAIN, Pseudonymizer, patient_identity

PROFILES = ("safe_harbor", "date_shift")
ANNEX_E_RELEASE = "dicomfields_2026c"  # the release of Table E.1-1 in dicom-anonymizer

Vocabulary = Mapping[str, Collection[str]]  # keyword -> the values that may be kept


def burned_in_risk(
    modality: str | None,
    burned_in_annotation: str | None,
    *,
    sop_class_uid: str | None = None,
    image_type: str | list[str] | None = None,
    conversion_type: str | None = None,
    attributes: Mapping[str, object] | None = None,
) -> str | None:
    """Why the image should stay out of the export because text may be burned into its pixels,
    or None when it may go.

    Modality and Burned In Annotation are always judged; the keyword arguments and `attributes`
    (keyword -> value, for the attributes of `attributes.BURNED_IN_KEYWORDS` the caller has) are
    judged when given, and a rule that reads an attribute the caller did not give is skipped.
    Burned In Annotation YES is a reason; NO clears the modality rule only, never the SOP class,
    Image Type, Conversion Type or rule set evidence: a device that saved a screen writes NO about
    the image it made, not about the screen it saved.
    """
    values: dict[str, object] = dict(attributes or {})
    values.update(Modality=modality, BurnedInAnnotation=burned_in_annotation)
    given = {"SOPClassUID": sop_class_uid, "ImageType": image_type, "ConversionType": conversion_type}
    values.update({keyword: value for keyword, value in given.items() if value is not None})
    return _risk(values)


def export_risk(dataset: Dataset) -> str | None:
    """`burned_in_risk` with every attribute its rules read taken from the data set (absent ones count as absent)."""
    values = {keyword: dataset.get(keyword) for keyword in BURNED_IN_KEYWORDS}
    return _risk(values)


def _risk(values: Mapping[str, object]) -> str | None:
    flag = (_text(values.get("BurnedInAnnotation")) or "").upper()
    if flag == "YES":
        return "Burned In Annotation (0028,0301) is YES: the pixels carry text such as names or dates"
    sop_class = _text(values.get("SOPClassUID"))
    reason = burned_in_sop_class(sop_class)
    if reason:
        return f"SOP Class UID (0008,0016) is {UID(sop_class).name}: {reason}"
    if _text(values.get("ConversionType")):
        return "Conversion Type (0008,0064) is set: the image is a capture of a screen, document or film"
    image_types = {value.strip().upper() for value in _texts(values.get("ImageType"))}
    for term, kind in BURNED_IN_IMAGE_TYPES.items():
        if term in image_types:
            return f"Image Type (0008,0008) holds {term}: {kind}, whose pixels often show patient data"
    for rule in DEID_RULES:
        if all(criterion.keyword in values for criterion in rule.criteria) and all(
            _holds(criterion, values) for criterion in rule.criteria
        ):
            return f"the header matches the pydicom/deid rule set's '{rule.name}': text is likely burned in"
    if flag == "NO":
        return None
    modality = (_text(values.get("Modality")) or "").upper()
    if not modality:
        return (
            "Burned In Annotation (0028,0301) and Modality (0008,0060) are both missing, so the risk cannot be judged"
        )
    reason = BURNED_IN_TEXT_MODALITIES.get(modality)
    if reason:
        return f"Burned In Annotation (0028,0301) does not say NO, and in {modality} images {reason}"
    return None


def _holds(criterion: Criterion, values: Mapping[str, object]) -> bool:
    raw = values.get(criterion.keyword)
    texts = [text.strip() for text in _texts(raw)]
    if criterion.test == "missing_or_empty":
        return not any(texts)
    if criterion.test == "empty":
        return raw is not None and not any(texts)
    joined = "\\".join(texts).upper()
    return any(term.upper() in joined for term in criterion.terms)


def _texts(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, MultiValue | list | tuple):
        return [str(item) for item in value]
    return [str(value)]


def patient_is_over_89(dataset_or_age: Dataset | str | None) -> bool:
    """True when Patient's Age (a data set's, or an AS value) is 090Y or more."""
    age = dataset_or_age.get("PatientAge") if isinstance(dataset_or_age, Dataset) else dataset_or_age
    match = _AGE.fullmatch(_text(age) or "")
    return bool(match) and match.group(2) == "Y" and int(match.group(1)) >= 90


def dicom_patient_identity(dataset: Dataset, scope: str = ISSUER_SCOPE) -> str | None:
    """`patient_identity` of PatientID with IssuerOfPatientID, else InstitutionName, as the issuer."""
    issuer = _text(dataset.get("IssuerOfPatientID")) or _text(dataset.get("InstitutionName"))
    return patient_identity(_text(dataset.get("PatientID")), issuer, scope)


def deidentify_dicom_bytes(
    data: bytes,
    pseudonymizer: Pseudonymizer,
    profile: str = "safe_harbor",
    *,
    vocabulary: Vocabulary | None = None,
    patients_over_89: Collection[str] = frozenset(),
    patient_id_scope: str = ISSUER_SCOPE,
) -> bytes:
    """The de-identified Part 10 file of a DICOM file: zeroed preamble, new file meta (the new Media
    Storage SOP Instance UID, the same transfer syntax), the data set after `deidentify_dataset`.

    Bytes pass the reader's `file_problem` check and are read with `force=True`, as the reader
    does, so files without preamble or file meta are read too; pixel data is written back byte
    for byte, and a deflated data set is deflated again. Raises ValueError for bytes that are not
    DICOM or cannot be written back; the message never quotes the file.
    """
    _check_profile(profile)
    problem = file_problem(data)
    if problem:
        raise ValueError(f"cannot de-identify: {problem}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about odd values it reads and writes as they are
        try:
            dataset = pydicom.dcmread(BytesIO(data), force=True)
        except Exception as error:
            # The parser's message can quote values, so only its type is kept, and the cause is
            # not chained for a traceback to print.
            raise ValueError(
                f"cannot de-identify: the DICOM data set could not be parsed ({type(error).__name__})"
            ) from None
        if not len(dataset):
            raise ValueError("cannot de-identify: the file holds no data elements")
        deidentify_dataset(
            dataset,
            pseudonymizer,
            profile,
            vocabulary=vocabulary,
            patients_over_89=patients_over_89,
            patient_id_scope=patient_id_scope,
        )
        missing = [name for keyword, name in _REQUIRED_FILE_META.items() if keyword not in dataset.file_meta]
        if missing:
            raise ValueError(
                f"cannot de-identify: the file names no {' and no '.join(missing)}, which its file meta needs"
            )
        buffer = BytesIO()
        try:
            pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
        except Exception as error:
            raise ValueError(
                f"cannot de-identify: the cleaned data set could not be written ({type(error).__name__})"
            ) from None
    return buffer.getvalue()


_REQUIRED_FILE_META = {
    "MediaStorageSOPClassUID": "SOP Class UID (0008,0016)",
    "MediaStorageSOPInstanceUID": "SOP Instance UID (0008,0018)",
    "TransferSyntaxUID": "transfer syntax",
}


def deidentify_dataset(
    dataset: Dataset,
    pseudonymizer: Pseudonymizer,
    profile: str = "safe_harbor",
    *,
    vocabulary: Vocabulary | None = None,
    patients_over_89: Collection[str] = frozenset(),
    patient_id_scope: str = ISSUER_SCOPE,
) -> None:
    """Keep only the declared attributes of the data set, in place, each with its treatment (module docstring).

    `vocabulary` maps a keyword of vocabulary-only text to the values that may be kept; without it
    such text is removed. `patients_over_89` holds patient identities (`patient_identity`) known to
    be 90 or older elsewhere (HL7): their Patient's Age is removed. The file meta, when the data
    set has one, is rebuilt with the SOP class, the new SOP instance UID and the transfer syntax only.
    """
    _check_profile(profile)
    identity = dicom_patient_identity(dataset, patient_id_scope)
    patient_token = pseudonymizer.token(PATIENT_DOMAIN, identity) or ""
    context = _Context(
        pseudonymizer,
        profile,
        pseudonymizer.date_offset_days(identity) if profile == "date_shift" else 0,
        patient_token=patient_token,
        over_89=identity is not None and identity in patients_over_89,
        vocabulary={keyword: frozenset(values) for keyword, values in (vocabulary or {}).items()},
    )
    original_meta = getattr(dataset, "file_meta", None)
    _clean(dataset, context)
    dataset.PatientID = patient_token
    dataset.PatientName = patient_token  # a dummy value: the token, never a name
    _record_method(dataset, pseudonymizer, profile)
    if original_meta is not None:
        dataset.file_meta = _file_meta(dataset, original_meta, context)
    if getattr(dataset, "preamble", None) is not None:
        dataset.preamble = bytes(128)


def deid_relative_path(new_study: str, new_series: str, new_sop: str) -> str:
    """Where the de-identified file goes under `deid/dicom/`: `<study>/<series>/<sop>.dcm`, new UIDs.

    Raises ValueError unless each is a UID (digits and dots), so no value can leave the folder.
    """
    for uid in (new_study, new_series, new_sop):
        if not isinstance(uid, str) or not _UID_SYNTAX.fullmatch(uid):
            raise ValueError("a de-identified file path needs three UIDs of digits and dots")
    return f"{new_study}/{new_series}/{new_sop}.dcm"


_UID_SYNTAX = re.compile(r"[0-9]+(\.[0-9]+)*")


def _copied(treatment: ColumnTreatment, *names: str) -> list[pa.Field]:
    """PHI dicom_images columns published under `treatment`, with the attribute each reads."""
    return [_declared_as_phi(name, treatment) for name in names]


def _declared_as_phi(name: str, treatment: ColumnTreatment, description: str = "") -> pa.Field:
    field = DICOM_IMAGES.field(name)
    return declared(name, field.type, treatment, _ATTRIBUTE_OF.get(name, name), description)


# The DICOM attribute behind each copied column (the PHI table's comments say the same).
_ATTRIBUTE_OF = {
    "sop_class_uid": "(0008,0016) SOPClassUID", "series_number": "(0020,0011) SeriesNumber",
    "instance_number": "(0020,0013) InstanceNumber", "modality": "(0008,0060) Modality",
    "body_part_examined": "(0018,0015) BodyPartExamined", "manufacturer": "(0008,0070) Manufacturer",
    "manufacturer_model_name": "(0008,1090) ManufacturerModelName", "rows": "(0028,0010) Rows",
    "columns": "(0028,0011) Columns", "number_of_frames": "(0028,0008) NumberOfFrames",
    "samples_per_pixel": "(0028,0002) SamplesPerPixel", "photometric_interpretation": "(0028,0004) PhotometricInterpretation",
    "bits_allocated": "(0028,0100) BitsAllocated", "bits_stored": "(0028,0101) BitsStored",
    "pixel_representation": "(0028,0103) PixelRepresentation", "pixel_spacing": "(0028,0030) PixelSpacing",
    "slice_thickness": "(0018,0050) SliceThickness", "window_center": "(0028,1050) WindowCenter",
    "window_width": "(0028,1051) WindowWidth", "rescale_slope": "(0028,1053) RescaleSlope",
    "rescale_intercept": "(0028,1052) RescaleIntercept", "burned_in_annotation": "(0028,0301) BurnedInAnnotation",
    "transfer_syntax_uid": "(0002,0010) TransferSyntaxUID", "has_pixel_data": "(7FE0,0010) PixelData",
    "pixel_mean": "(7FE0,0010) PixelData", "pixel_std": "(7FE0,0010) PixelData", "pixel_min": "(7FE0,0010) PixelData",
    "pixel_max": "(7FE0,0010) PixelData", "pixel_error": "pixel decoding",
}  # fmt: skip

# Each column declared with its treatment, as the HL7 tables' are (`privacy.declarations`).
T = ColumnTreatment
DEID_DICOM_IMAGES = pa.schema(
    [
        declared("deid_file", pa.string(), T.TOKENISE, "new UIDs", "deid/dicom/<study>/<series>/<sop>.dcm of the exported file."),
        # The UIDs of the de-identified file: keyed replacements (Pseudonymizer.uid) of the originals
        declared("sop_instance_uid", pa.string(), T.TOKENISE, "(0008,0018) SOPInstanceUID", "Keyed 2.25. replacement."),
        declared("study_instance_uid", pa.string(), T.TOKENISE, "(0020,000D) StudyInstanceUID", "Keyed 2.25. replacement."),
        declared("series_instance_uid", pa.string(), T.TOKENISE, "(0020,000E) SeriesInstanceUID", "Keyed 2.25. replacement."),
        *_copied(T.CODE, "sop_class_uid"),
        *_copied(T.NUMBER, "series_number", "instance_number"),
        # Pseudonymizer.token("patient", patient_identity(PatientID, issuer)): the HL7 tables' token of PID-3
        declared("patient_token", pa.string(), T.TOKENISE, "(0010,0020) PatientID + (0010,0021) IssuerOfPatientID",
                 "Keyed token of the patient (MRN with its issuer), the same as the HL7 tables'."),
        *_copied(T.CODE, "modality"),
        # The study's year; under date_shift the shifted date's, so it cannot narrow the shift
        declared("study_year", pa.int32(), T.YEAR, "(0008,0020) StudyDate", "Year of the study."),
        # date_shift only: StudyDate moved by the patient's offset, YYYYMMDD; null under safe_harbor
        declared("study_date", pa.string(), T.SHIFT, "(0008,0020) StudyDate", "Shifted study date (date_shift only)."),
        # vocabulary-only: null unless the census's vocabulary allows the value
        *_copied(T.VOCABULARY, "body_part_examined", "manufacturer", "manufacturer_model_name"),
        *_copied(
            T.NUMBER,
            "rows",
            "columns",
            "number_of_frames",
            "samples_per_pixel",
        ),
        *_copied(T.CODE, "photometric_interpretation"),
        *_copied(
            T.NUMBER,
            "bits_allocated",
            "bits_stored",
            "pixel_representation",
            "pixel_spacing",
            "slice_thickness",
            "window_center",
            "window_width",
            "rescale_slope",
            "rescale_intercept",
        ),
        *_copied(T.CODE, "burned_in_annotation"),
        # burned_in_risk's reason to keep the file out of the export; null when it may go
        declared("burned_in_risk", pa.string(), T.DERIVED, "SOP class, ImageType, modality, flag", "Why the image may carry text in its pixels."),
        *_copied(T.CODE, "transfer_syntax_uid"),
        declared("file_size_bytes", pa.int64(), T.NUMBER, "source file", "Size of the source file."),
        *_copied(T.NUMBER, "has_pixel_data", "pixel_mean", "pixel_std", "pixel_min", "pixel_max"),
        *_copied(T.DERIVED, "pixel_error"),
    ]
)

# Copied unchanged from the PHI row: image geometry, equipment and pixel statistics identify no one.
_COPIED_COLUMNS = tuple(
    name
    for name in DEID_DICOM_IMAGES.names
    if name in DICOM_IMAGES.names
    and name
    not in ("sop_instance_uid", "study_instance_uid", "series_instance_uid", "study_date", "body_part_examined")
)


def deid_image_row(
    phi_row: Mapping,
    pseudonymizer: Pseudonymizer,
    profile: str = "safe_harbor",
    *,
    vocabulary: Vocabulary | None = None,
    patient_id_scope: str = ISSUER_SCOPE,
) -> dict:
    """The `DEID_DICOM_IMAGES` row of one row of the PHI `dicom_images` table.

    UIDs, token and dates are those `deidentify_dicom_bytes` writes into the file the row was
    read from; the body part is kept only when the vocabulary allows it, as in the file. Names,
    IDs, birth date, sex, accession number, institution, descriptions (free text) and the source
    path are left out. The issuer is the row's `patient_id_issuer`, else its institution.
    """
    _check_profile(profile)
    issuer = _text(phi_row.get("patient_id_issuer")) or _text(phi_row.get("institution_name"))
    identity = patient_identity(phi_row.get("patient_id"), issuer, patient_id_scope)
    offset = pseudonymizer.date_offset_days(identity) if profile == "date_shift" else 0
    context = _Context(pseudonymizer, profile, offset)
    sop, study, series = (
        context.new_uid(phi_row.get(column) or "")
        for column in ("sop_instance_uid", "study_instance_uid", "series_instance_uid")
    )
    study_date = _study_date(phi_row.get("study_date"), context)
    body_part = _text(phi_row.get("body_part_examined"))
    row = {name: phi_row.get(name) for name in _COPIED_COLUMNS}
    row.update(
        deid_file=deid_relative_path(study, series, sop) if study and series and sop else None,
        sop_instance_uid=sop or None,
        study_instance_uid=study or None,
        series_instance_uid=series or None,
        patient_token=pseudonymizer.token(PATIENT_DOMAIN, identity),
        study_year=int(study_date[:4]) if study_date else None,
        study_date=study_date if profile == "date_shift" else None,
        body_part_examined=body_part if body_part in (vocabulary or {}).get("BodyPartExamined", ()) else None,
        manufacturer=_vocabulary_value(phi_row.get("manufacturer"), vocabulary, "Manufacturer"),
        manufacturer_model_name=_vocabulary_value(phi_row.get("manufacturer_model_name"), vocabulary, "ManufacturerModelName"),
        burned_in_risk=burned_in_risk(
            phi_row.get("modality"), phi_row.get("burned_in_annotation"), sop_class_uid=phi_row.get("sop_class_uid")
        ),
    )
    return {name: row[name] for name in DEID_DICOM_IMAGES.names}


def _vocabulary_value(value, vocabulary: Vocabulary | None, keyword: str) -> str | None:
    """The value when the vocabulary allows it for `keyword`, else None (text leaves only as vocabulary)."""
    text = _text(value)
    return text if text in (vocabulary or {}).get(keyword, ()) else None


def _study_date(value: str | None, context: _Context) -> str | None:
    """The study date as the profile writes it (YYYYMMDD), or None when it is not a date."""
    if not value:
        return None
    written = context.date(value.strip())
    return written if len(written) == 8 else None


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown de-identification profile {profile!r}; choose one of {', '.join(PROFILES)}")


def annex_e_action(tag: int) -> str | None:
    """The Basic Profile's action for the tag in Table E.1-1 (D, Z, X, U, Z/D, X/Z, X/D, X/Z/D or
    X/Z/U*), or None when the table does not list it."""
    action = _ANNEX_E_ACTIONS.get(tag)
    if action:
        return action
    group, element = tag >> 16, tag & 0xFFFF
    for masked_group, masked_element, group_mask, element_mask, masked_action in _ANNEX_E_MASKED:
        if group & group_mask == masked_group and element & element_mask == masked_element:
            return masked_action
    return None


_TABLE_CATEGORIES = {
    "D_TAGS": "D",
    "Z_TAGS": "Z",
    "X_TAGS": "X",
    "U_TAGS": "U",
    "Z_D_TAGS": "Z/D",
    "X_Z_TAGS": "X/Z",
    "X_D_TAGS": "X/D",
    "X_Z_D_TAGS": "X/Z/D",
    "X_Z_U_STAR_TAGS": "X/Z/U*",
}


def _load_table(release: str) -> tuple[dict[int, str], tuple[tuple[int, int, int, int, str], ...]]:
    """The table as {tag: action}, and its repeating groups as (group, element, masks, action)."""
    categories = dicom_anonymization_database_selector(release)
    exact: dict[int, str] = {}
    masked = []
    for category, action in _TABLE_CATEGORIES.items():
        for entry in categories[category]:
            if len(entry) == 4:  # (group, element, group mask, element mask), e.g. the 60xx overlays
                group, element, group_mask, element_mask = entry
                masked.append((group & group_mask, element & element_mask, group_mask, element_mask, action))
            else:
                exact[Tag(*entry)] = action
    return exact, tuple(masked)


_ANNEX_E_ACTIONS, _ANNEX_E_MASKED = _load_table(ANNEX_E_RELEASE)


_DICOM_UID_ROOT = "1.2.840.10008."


@dataclass(frozen=True)
class _Context:
    pseudonymizer: Pseudonymizer
    profile: str
    date_offset_days: int  # 0 under safe_harbor
    patient_token: str = ""
    over_89: bool = False  # the patient is known to be 90 or older elsewhere
    vocabulary: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def new_uid(self, value: str) -> str:
        """The keyed replacement of a UID; well-known UIDs under the DICOM root stay."""
        value = value.strip().rstrip("\0")
        if not value or value.startswith(_DICOM_UID_ROOT):
            return value
        return self.pseudonymizer.uid(value)

    def date(self, value: str) -> str:
        """A DA value as the profile writes it; empty when it is not a date."""
        if self.profile == "date_shift":
            # ACR-NEMA wrote YYYY.MM.DD; anything after the date is not DA and is dropped.
            shifted, _ = _shifted_date(value.replace(".", ""), self.date_offset_days)
            return shifted
        year = _year(value)
        return f"{year}0101" if year else ""

    def date_time(self, value: str) -> str:
        """A DT value as the profile writes it: the date moved, or the year alone; empty when it is not one."""
        if self.profile == "date_shift":
            shifted, rest = _shifted_date(value, self.date_offset_days)
            return shifted + rest if shifted else ""
        year = _year(value)
        return f"{year}0101000000" if year else ""

    def time(self, value: str) -> str:
        return value if self.profile == "date_shift" else ""


def _clean(dataset: Dataset, context: _Context) -> None:
    """Keep the declared elements with their treatment, recursing into kept sequences; remove the rest."""
    for tag in list(dataset.keys()):
        treatment = None if tag.is_private else treatment_of(tag)
        if treatment is None:
            del dataset[tag]
            continue
        try:
            # Converting kept elements gives each its VR, which a data set read as implicit VR
            # lacks and an explicit VR transfer syntax needs when it is written.
            element = dataset[tag]
        except Exception:  # a value pydicom cannot convert cannot be checked either: drop it
            del dataset[tag]
            continue
        if not _KEEPERS[treatment](element, context):
            del dataset[tag]


_STRING_CODE_VRS = frozenset({"CS", "SH", "LO"})
# A code, a vendor or model name, a software version: letters, digits and a little punctuation.
_CODE_SYNTAX = re.compile(r"[A-Za-z0-9 _.:/+()\-]{0,64}")
_BINARY_NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT"})
_NUMBER_SYNTAX = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "US", "SS"})
_TEMPORAL_VRS = frozenset({"DA", "DT", "TM"})


def _keep_code(element: DataElement, context: _Context) -> bool:
    texts = _texts(element.value)
    return element.VR in _STRING_CODE_VRS and all(_CODE_SYNTAX.fullmatch(text.strip()) for text in texts)


def _keep_number(element: DataElement, context: _Context) -> bool:
    if element.VR in _BINARY_NUMBER_VRS:
        return True
    return element.VR in ("DS", "IS") and all(
        not text.strip() or _NUMBER_SYNTAX.fullmatch(text.strip()) for text in _texts(element.value)
    )


def _keep_binary(element: DataElement, context: _Context) -> bool:
    return element.VR in _BINARY_VRS


def _keep_class_uid(element: DataElement, context: _Context) -> bool:
    return element.VR == "UI" and all(
        _UID_SYNTAX.fullmatch(text.strip().rstrip("\0")) for text in _texts(element.value) if text
    )


def _replace_uid(element: DataElement, context: _Context) -> bool:
    if element.VR != "UI":
        return False
    element.value = _each(element.value, context.new_uid)
    return True


def _generalise_date(element: DataElement, context: _Context) -> bool:
    convert = {"DA": context.date, "DT": context.date_time, "TM": context.time}.get(element.VR)
    if convert is None:  # a date attribute written with another VR: nothing safe to keep
        return False
    element.value = _each(element.value, lambda value: convert(value.strip()))
    return True


def _cap_age(element: DataElement, context: _Context) -> bool:
    if context.over_89:  # HL7 shows the patient as 90+: any age here would narrow the birth year
        return False
    age = _capped_age(_text(element.value))
    if age is None:
        return False
    element.value = age
    return True


def _patient_token(element: DataElement, context: _Context) -> bool:
    element.value = context.patient_token
    return True


def _empty(element: DataElement, context: _Context) -> bool:
    element.clear()
    return True


def _vetted_text(element: DataElement, context: _Context) -> bool:
    allowed = context.vocabulary.get(keyword_for_tag(element.tag), frozenset())
    texts = [text.strip() for text in _texts(element.value)]
    return bool(texts) and all(text in allowed for text in texts)


def _walk_sequence(element: DataElement, context: _Context) -> bool:
    if element.VR != "SQ":
        return False
    for item in element.value or ():
        _clean(item, context)
    return True


_KEEPERS = {
    Treatment.CODE: _keep_code,
    Treatment.NUMBER: _keep_number,
    Treatment.BINARY: _keep_binary,
    Treatment.CLASS_UID: _keep_class_uid,
    Treatment.NEW_UID: _replace_uid,
    Treatment.DATE: _generalise_date,
    Treatment.AGE: _cap_age,
    Treatment.PATIENT_TOKEN: _patient_token,
    Treatment.EMPTY: _empty,
    Treatment.VOCABULARY: _vetted_text,
    Treatment.SEQUENCE: _walk_sequence,
}


def _each(value, convert):
    """`convert` over a single value or each of a multi-valued one; an empty value stays empty."""
    if value is None or value == "":
        return value
    if isinstance(value, MultiValue | list | tuple):
        return [convert(str(item)) for item in value]
    return convert(str(value))


def _year(value: str) -> str | None:
    return value[:4] if len(value) >= 4 and value[:4].isdigit() else None


_DATE_PREFIX = re.compile(r"(\d{4})(\d{2})?(\d{2})?")


def _shifted_date(value: str, days: int) -> tuple[str, str]:
    """The date that starts `value` (YYYY, YYYYMM or YYYYMMDD) moved by `days` at its own
    precision, and the rest of the value (a DT's time, fraction and UTC offset); ("", "") when
    the value does not start with a date."""
    match = _DATE_PREFIX.match(value)
    if not match:
        return "", ""
    year, month, day = match.group(1), match.group(2) or "01", match.group(3) or "01"
    try:
        moved = date(int(year), int(month), int(day)) + timedelta(days=days)
    except (ValueError, OverflowError):
        return "", ""
    digits = f"{moved.year:04d}{moved.month:02d}{moved.day:02d}"
    return digits[: match.end()], value[match.end() :]


_AGE = re.compile(r"(\d{3})([DWMY])")
OLDEST_AGE = "090Y"  # Safe Harbor: every age over 89 in one group


def _capped_age(value: str | None) -> str | None:
    """Patient's Age (AS) with ages over 89 years as 090Y; None when it is not an age string."""
    match = _AGE.fullmatch((value or "").strip())
    if not match:
        return None
    if match.group(2) == "Y" and int(match.group(1)) > 89:
        return OLDEST_AGE
    return match.group(0)


_METHOD_CODES = {
    "113100": "Basic Application Confidentiality Profile",
    "113107": "Retain Longitudinal Temporal Information Modified Dates Option",
}


def _record_method(dataset: Dataset, pseudonymizer: Pseudonymizer, profile: str) -> None:
    """Patient Identity Removed, De-identification Method (each value at most LO's 64 characters)
    and its codes from CID 7050; Longitudinal Temporal Information Modified, since no date stays as it was."""
    dataset.PatientIdentityRemoved = "YES"
    dataset.DeidentificationMethod = [
        f"DICOM PS3.15 Annex E Basic Profile ({ANNEX_E_RELEASE[-5:]})",
        f"medical-assets profile {profile}",
        f"pseudonym key {pseudonymizer.key_id}",
    ]
    codes = ["113100"] + (["113107"] if profile == "date_shift" else [])
    dataset.DeidentificationMethodCodeSequence = [_code_item(code) for code in codes]
    dataset.LongitudinalTemporalInformationModified = "MODIFIED"


def _code_item(code: str) -> Dataset:
    item = Dataset()
    item.CodeValue = code
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = _METHOD_CODES[code]
    return item


_SYNTAX_OF_ENCODING = {
    (True, True): ImplicitVRLittleEndian,
    (False, True): ExplicitVRLittleEndian,
    (False, False): ExplicitVRBigEndian,
}


def _file_meta(dataset: Dataset, original: FileMetaDataset, context: _Context) -> FileMetaDataset:
    """New file meta: SOP class, the new SOP instance UID and the transfer syntax, nothing else.

    Source and sending AE titles and private information are not carried over; pydicom adds its
    own implementation class UID when writing. A file read without a transfer syntax names the
    uncompressed one its data set was read in.
    """
    meta = FileMetaDataset()
    sop_class = _text(dataset.get("SOPClassUID")) or _text(original.get("MediaStorageSOPClassUID"))
    sop_instance = _text(dataset.get("SOPInstanceUID")) or context.new_uid(
        _text(original.get("MediaStorageSOPInstanceUID")) or ""
    )
    transfer_syntax = _text(original.get("TransferSyntaxUID")) or _SYNTAX_OF_ENCODING.get(dataset.original_encoding)
    if sop_class:
        meta.MediaStorageSOPClassUID = sop_class
    if sop_instance:
        meta.MediaStorageSOPInstanceUID = sop_instance
    if transfer_syntax:
        meta.TransferSyntaxUID = transfer_syntax
    return meta


def _text(value: object) -> str | None:
    """A value as text without DICOM's padding; None when absent or empty."""
    if value is None:
        return None
    text = str(value).strip().rstrip("\0").strip()
    return text or None
