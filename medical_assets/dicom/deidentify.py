"""De-identification of DICOM files and of rows of the PHI `dicom_images` table for the `deid/` zone.

The file side keeps only what `medical_assets.dicom.attributes` declares, each attribute with its
declared treatment (`medical_assets.dicom.treatments`), at every depth: whatever is not declared is
removed (unknown and new public attributes, private elements and their creators, group lengths,
overlays, curves, free text in sequence items). Kept sequences are walked with the same declaration.
The PS3.15 Annex E table (`medical_assets.dicom.annex_e`) stays as a cross-check: nothing it lists
is declared to be kept as written.

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

Pixel data is never changed: whether text is burned into it is `medical_assets.dicom.burned_in`'s
question, and an image at risk is kept out of the export, not cleaned.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Mapping
from io import BytesIO

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset

from medical_assets.dicom.annex_e import ANNEX_E_RELEASE
from medical_assets.dicom.burned_in import burned_in_risk
from medical_assets.dicom.header import SYNTAX_OF_ENCODING
from medical_assets.dicom.reader import file_problem
from medical_assets.dicom.tables import DEID_DICOM_IMAGES, DICOM_IMAGES
from medical_assets.dicom.treatments import AGE_STRING, UID_SYNTAX, Context, clean
from medical_assets.dicom.values import value_text
from medical_assets.privacy.pseudonyms import ISSUER_SCOPE, PATIENT_DOMAIN, Pseudonymizer, patient_identity

PROFILES = ("safe_harbor", "date_shift")

Vocabulary = Mapping[str, Collection[str]]  # keyword -> the values that may be kept


def patient_is_over_89(dataset_or_age: Dataset | str | None) -> bool:
    """True when Patient's Age (a data set's, or an AS value) is 090Y or more."""
    age = dataset_or_age.get("PatientAge") if isinstance(dataset_or_age, Dataset) else dataset_or_age
    match = AGE_STRING.fullmatch(value_text(age) or "")
    return bool(match) and match.group(2) == "Y" and int(match.group(1)) >= 90


def dicom_patient_identity(dataset: Dataset, scope: str = ISSUER_SCOPE) -> str | None:
    """`patient_identity` of PatientID with IssuerOfPatientID, else InstitutionName, as the issuer."""
    issuer = value_text(dataset.get("IssuerOfPatientID")) or value_text(dataset.get("InstitutionName"))
    return patient_identity(value_text(dataset.get("PatientID")), issuer, scope)


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
    context = Context(
        pseudonymizer,
        profile,
        pseudonymizer.date_offset_days(identity) if profile == "date_shift" else 0,
        patient_token=patient_token,
        over_89=identity is not None and identity in patients_over_89,
        vocabulary={keyword: frozenset(values) for keyword, values in (vocabulary or {}).items()},
    )
    original_meta = getattr(dataset, "file_meta", None)
    clean(dataset, context)
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
        if not isinstance(uid, str) or not UID_SYNTAX.fullmatch(uid):
            raise ValueError("a de-identified file path needs three UIDs of digits and dots")
    return f"{new_study}/{new_series}/{new_sop}.dcm"


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
    issuer = value_text(phi_row.get("patient_id_issuer")) or value_text(phi_row.get("institution_name"))
    identity = patient_identity(phi_row.get("patient_id"), issuer, patient_id_scope)
    offset = pseudonymizer.date_offset_days(identity) if profile == "date_shift" else 0
    context = Context(pseudonymizer, profile, offset)
    sop, study, series = (
        context.new_uid(phi_row.get(column) or "")
        for column in ("sop_instance_uid", "study_instance_uid", "series_instance_uid")
    )
    study_date = _study_date(phi_row.get("study_date"), context)
    body_part = value_text(phi_row.get("body_part_examined"))
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
    text = value_text(value)
    return text if text in (vocabulary or {}).get(keyword, ()) else None


def _study_date(value: str | None, context: Context) -> str | None:
    """The study date as the profile writes it (YYYYMMDD), or None when it is not a date."""
    if not value:
        return None
    written = context.date(value.strip())
    return written if len(written) == 8 else None


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown de-identification profile {profile!r}; choose one of {', '.join(PROFILES)}")


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


def _file_meta(dataset: Dataset, original: FileMetaDataset, context: Context) -> FileMetaDataset:
    """New file meta: SOP class, the new SOP instance UID and the transfer syntax, nothing else.

    Source and sending AE titles and private information are not carried over; pydicom adds its
    own implementation class UID when writing. A file read without a transfer syntax names the
    uncompressed one its data set was read in.
    """
    meta = FileMetaDataset()
    sop_class = value_text(dataset.get("SOPClassUID")) or value_text(original.get("MediaStorageSOPClassUID"))
    sop_instance = value_text(dataset.get("SOPInstanceUID")) or context.new_uid(
        value_text(original.get("MediaStorageSOPInstanceUID")) or ""
    )
    transfer_syntax = value_text(original.get("TransferSyntaxUID")) or SYNTAX_OF_ENCODING.get(dataset.original_encoding)
    if sop_class:
        meta.MediaStorageSOPClassUID = sop_class
    if sop_instance:
        meta.MediaStorageSOPInstanceUID = sop_instance
    if transfer_syntax:
        meta.TransferSyntaxUID = transfer_syntax
    return meta
