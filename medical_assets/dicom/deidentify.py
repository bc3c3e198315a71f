"""De-identification of DICOM files and of rows of the PHI `dicom_images` table for the `deid/` zone.

The file side applies the Basic Application Level Confidentiality Profile of DICOM PS3.15 Annex E.
What happens to each attribute comes from Table E.1-1 as the `dicom-anonymizer` package (BSD-3)
ships it, scraped from the standard (`ANNEX_E_RELEASE`). Its own applier is not used: it draws
random UIDs (a study would get another StudyInstanceUID in every file and every run), does not
recurse into sequences, and writes dummies where this project needs keyed pseudonyms that join
across files, runs and HL7 (`medical_assets.privacy.pseudonyms`).

How each action of the table is carried out, where the standard leaves a choice:

- X remove; Z empty; D a dummy consistent with the VR (a keyed UID for a UI); U a keyed UID
  (`Pseudonymizer.uid`), so every reference to an instance, series, study or frame of reference
  stays consistent across files. Values under the DICOM root (well-known UIDs) are kept.
- X/Z, X/D, X/Z/D ("X unless Z or D is needed for conformance"): without IOD knowledge the
  attribute is removed, privacy over conformance; dates and times are the exception (below).
- X/Z/U* (Referenced and Source Image Sequences): the sequence is kept and its items are
  cleaned, which replaces the UIDs they reference.
- Sequences under Z, D or Z/D (Content Sequence, Verifying Observer Sequence, ...) are emptied:
  their items hold free text no table can clean.
- Attributes the table does not list are kept (the profile's K), except: sequences are kept with
  their items cleaned by the same rules; UIDs that name an instance rather than a class, syntax or
  coding scheme are replaced like U (the table cannot list every instance UID, and UIDs embed
  dates and serial numbers); attributes pydicom's dictionary does not know are removed, since
  nothing says what they hold; dates and times follow the profile below.
- Always removed: private elements and their creators, group lengths (stale after removals),
  data set trailing padding, whole overlay groups (60xx: Overlay Data is X, and a label or
  description left behind is free text), and the 128-byte preamble is zeroed (dual-format files
  keep a TIFF header there).

Dates and times. HIPAA Safe Harbor allows a year but no other element of a date. Profile
`safe_harbor` writes the year alone (DA `YYYY0101`, DT `YYYY0101000000`) and empties TM wherever
the attribute stays, that is, for every action but X: Z and D both allow a dummy consistent with
the VR, and a year-only date is one that still tells analysts when the study was. Profile
`date_shift` is the Retain Longitudinal Temporal Information with Modified Dates option: DA and
DT move by `Pseudonymizer.date_offset_days(PatientID)`, the same for every file of a patient, so
intervals survive; times of day stay. Patient's Birth Date is emptied in both: a birth year, or a
date within a year of it, says that a patient is over 89, which Safe Harbor forbids.

The patient: PatientID and PatientName both become `Pseudonymizer.token("patient", PatientID)`,
the token the HL7 side gives PID-3, so patients join across modalities. Patient's Age is kept
(the Retain Patient Characteristics option's K for it alone), with ages over 89 written as 090Y.
Patient Identity Removed, De-identification Method and its code sequence record what was done.

Pixel data is never changed: whether text is burned into it is `burned_in_risk`'s question.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from enum import Enum, auto
from io import BytesIO

import pyarrow as pa
import pydicom
from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medical_assets.dicom.reader import file_problem
from medical_assets.dicom.tables import DICOM_IMAGES
from medical_assets.privacy.pseudonyms import PATIENT_DOMAIN, Pseudonymizer, normalise

PROFILES = ("safe_harbor", "date_shift")
ANNEX_E_RELEASE = "dicomfields_2026c"  # the release of Table E.1-1 in dicom-anonymizer

# Reasons why images of a modality often carry text in their pixels, used when the file does not
# say (Burned In Annotation absent or empty). Cross-sectional and projection radiography (CT, MR,
# PT, NM, CR, DX, MG) keep annotations out of the pixels as a rule and are not listed.
BURNED_IN_TEXT_MODALITIES = {
    "US": "ultrasound scanners print the patient's name, the date and measurements into the image",
    "IVUS": "intravascular ultrasound consoles print patient data into the image",
    "ES": "endoscopy video processors overlay the patient's name and the date on the video",
    "XA": "angiography systems print patient and procedure data into the image",
    "RF": "fluoroscopy systems print patient and procedure data into the image",
    "OT": "secondary captures are often screenshots showing patient data",
    "SC": "secondary captures are often screenshots showing patient data",
    "DOC": "scanned documents are text",
    "XC": "photographs can show faces, wristbands and labels",
    "GM": "microscope photographs often show specimen labels",
    "SM": "slide scans include the slide label, which often carries the patient's name",
    "OP": "fundus cameras print patient data into the image",
}


def burned_in_risk(modality: str | None, burned_in_annotation: str | None) -> str | None:
    """Why the image should stay out of the export because text may be burned into its pixels,
    or None when it may go.

    Burned In Annotation (0028,0301) YES is a reason; NO is trusted. Absent, empty or another
    value is a reason for the modalities in `BURNED_IN_TEXT_MODALITIES`, and when the modality
    itself is missing, since nothing then says what the image is.
    """
    flag = (burned_in_annotation or "").strip().upper()
    if flag == "YES":
        return "Burned In Annotation (0028,0301) is YES: the pixels carry text such as names or dates"
    if flag == "NO":
        return None
    modality = (modality or "").strip().upper()
    if not modality:
        return (
            "Burned In Annotation (0028,0301) and Modality (0008,0060) are both missing, so the risk cannot be judged"
        )
    reason = BURNED_IN_TEXT_MODALITIES.get(modality)
    if reason:
        return f"Burned In Annotation (0028,0301) does not say NO, and in {modality} images {reason}"
    return None


def deidentify_dicom_bytes(data: bytes, pseudonymizer: Pseudonymizer, profile: str = "safe_harbor") -> bytes:
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
        deidentify_dataset(dataset, pseudonymizer, profile)
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


def deidentify_dataset(dataset: Dataset, pseudonymizer: Pseudonymizer, profile: str = "safe_harbor") -> None:
    """Apply the Basic Profile to the data set in place, with the profile's dates (module docstring).

    Sequences are cleaned at every depth; the file meta, when the data set has one, is rebuilt with
    the SOP class, the new SOP instance UID and the transfer syntax only.
    """
    _check_profile(profile)
    patient_id = normalise(_text(dataset.get("PatientID")))
    age = _capped_age(_text(dataset.get("PatientAge")))
    context = _Context(
        pseudonymizer,
        profile,
        pseudonymizer.date_offset_days(patient_id) if profile == "date_shift" else 0,
    )
    original_meta = getattr(dataset, "file_meta", None)
    _clean(dataset, context)
    patient_token = pseudonymizer.token(PATIENT_DOMAIN, patient_id) or ""
    dataset.PatientID = patient_token
    dataset.PatientName = patient_token  # Z allows a dummy value: the token, never a name
    if age:
        dataset.PatientAge = age
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


def _copied(*names: str) -> list[pa.Field]:
    return [DICOM_IMAGES.field(name) for name in names]


DEID_DICOM_IMAGES = pa.schema(
    [
        # deid_relative_path of the three new UIDs; null when one of them is missing
        pa.field("deid_file", pa.string()),
        # The UIDs of the de-identified file: keyed replacements (Pseudonymizer.uid) of the originals
        pa.field("sop_instance_uid", pa.string()),
        pa.field("study_instance_uid", pa.string()),
        pa.field("series_instance_uid", pa.string()),
        *_copied("sop_class_uid", "series_number", "instance_number"),
        # Pseudonymizer.token("patient", PatientID): the HL7 tables' token of PID-3
        pa.field("patient_token", pa.string()),
        *_copied("modality"),
        # The study's year; under date_shift the shifted date's, so it cannot narrow the shift
        pa.field("study_year", pa.int32()),
        # date_shift only: StudyDate moved by the patient's offset, YYYYMMDD; null under safe_harbor
        pa.field("study_date", pa.string()),
        *_copied(
            "body_part_examined",
            "manufacturer",
            "manufacturer_model_name",
            "rows",
            "columns",
            "number_of_frames",
            "samples_per_pixel",
            "photometric_interpretation",
            "bits_allocated",
            "bits_stored",
            "pixel_representation",
            "pixel_spacing",
            "slice_thickness",
            "window_center",
            "window_width",
            "rescale_slope",
            "rescale_intercept",
            "burned_in_annotation",
        ),
        # burned_in_risk's reason to keep the file out of the export; null when it may go
        pa.field("burned_in_risk", pa.string()),
        *_copied("transfer_syntax_uid"),
        pa.field("file_size_bytes", pa.int64()),  # of the source file
        *_copied("has_pixel_data", "pixel_mean", "pixel_std", "pixel_min", "pixel_max", "pixel_error"),
    ]
)

# Copied unchanged from the PHI row: image geometry, equipment and pixel statistics identify no one.
_COPIED_COLUMNS = tuple(
    name
    for name in DEID_DICOM_IMAGES.names
    if name in DICOM_IMAGES.names
    and name not in ("sop_instance_uid", "study_instance_uid", "series_instance_uid", "study_date")
)


def deid_image_row(phi_row: Mapping, pseudonymizer: Pseudonymizer, profile: str = "safe_harbor") -> dict:
    """The `DEID_DICOM_IMAGES` row of one row of the PHI `dicom_images` table.

    UIDs, token and dates are those `deidentify_dicom_bytes` writes into the file the row was
    read from. Names, IDs, birth date, sex, accession number, institution, descriptions (free
    text) and the source path are left out.
    """
    _check_profile(profile)
    patient_id = normalise(phi_row.get("patient_id"))
    offset = pseudonymizer.date_offset_days(patient_id) if profile == "date_shift" else 0
    context = _Context(pseudonymizer, profile, offset)
    sop, study, series = (
        context.new_uid(phi_row.get(column) or "")
        for column in ("sop_instance_uid", "study_instance_uid", "series_instance_uid")
    )
    study_date = _study_date(phi_row.get("study_date"), context)
    row = {name: phi_row.get(name) for name in _COPIED_COLUMNS}
    row.update(
        deid_file=deid_relative_path(study, series, sop) if study and series and sop else None,
        sop_instance_uid=sop or None,
        study_instance_uid=study or None,
        series_instance_uid=series or None,
        patient_token=pseudonymizer.token(PATIENT_DOMAIN, patient_id),
        study_year=int(study_date[:4]) if study_date else None,
        study_date=study_date if profile == "date_shift" else None,
        burned_in_risk=burned_in_risk(phi_row.get("modality"), phi_row.get("burned_in_annotation")),
    )
    return {name: row[name] for name in DEID_DICOM_IMAGES.names}


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


class _Operation(Enum):
    REMOVE = auto()
    EMPTY = auto()
    DUMMY = auto()
    NEW_UID = auto()
    TEMPORAL = auto()  # the profile's date or time
    CLEAN = auto()  # a sequence kept, its items cleaned
    KEEP = auto()


_TEMPORAL_VRS = frozenset({"DA", "DT", "TM"})
_EMPTIED_DATES = frozenset({Tag("PatientBirthDate")})
_ALWAYS_REMOVED = frozenset({Tag("DataSetTrailingPadding")})
# UIDs that name a registry entry rather than an instance: kept when the table does not list them.
_REGISTRY_UID_KEYWORDS = frozenset(
    {"CodingSchemeUID", "ContextUID", "MappingResourceUID", "ContextGroupExtensionCreatorUID"}
)
_DICOM_UID_ROOT = "1.2.840.10008."


def _operation(tag: BaseTag, vr: str | None) -> _Operation:
    """What happens to an element, from the table's action and the rules of the module docstring."""
    if tag.is_private or tag.element == 0 or tag in _ALWAYS_REMOVED or _is_overlay(tag) or vr is None:
        return _Operation.REMOVE
    if tag in _EMPTIED_DATES:
        return _Operation.EMPTY
    action = annex_e_action(tag)
    if action is None:
        return _unlisted_operation(tag, vr)
    if action == "X":
        return _Operation.REMOVE
    if action == "U":
        return _Operation.NEW_UID
    if action == "X/Z/U*":
        return {"SQ": _Operation.CLEAN, "UI": _Operation.NEW_UID}.get(vr, _Operation.EMPTY)
    if vr in _TEMPORAL_VRS:
        return _Operation.TEMPORAL
    if action.startswith("X"):
        return _Operation.REMOVE
    if vr == "SQ" or action != "D":
        return _Operation.EMPTY
    return _Operation.DUMMY


def _unlisted_operation(tag: BaseTag, vr: str) -> _Operation:
    keyword = keyword_for_tag(tag)
    if not keyword:
        return _Operation.REMOVE  # not in pydicom's dictionary: nothing says what it holds
    if vr in _TEMPORAL_VRS:
        return _Operation.TEMPORAL
    if vr == "SQ":
        return _Operation.CLEAN
    if vr == "UI" and not ("Class" in keyword or "Syntax" in keyword or keyword in _REGISTRY_UID_KEYWORDS):
        return _Operation.NEW_UID
    return _Operation.KEEP


def _is_overlay(tag: BaseTag) -> bool:
    return 0x6000 <= tag.group <= 0x601E and tag.group % 2 == 0


@dataclass(frozen=True)
class _Context:
    pseudonymizer: Pseudonymizer
    profile: str
    date_offset_days: int  # 0 under safe_harbor

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
    """Apply each element's operation, recursing into the sequences that stay."""
    for tag in list(dataset.keys()):
        operation = _operation(tag, _vr(dataset, tag))
        if operation is _Operation.REMOVE:
            del dataset[tag]
            continue
        try:
            # Converting kept elements too gives each its VR, which a data set read as implicit VR
            # lacks and an explicit VR transfer syntax needs when it is written.
            element = dataset[tag]
        except Exception:  # a value pydicom cannot convert cannot be cleaned either: drop it
            del dataset[tag]
            continue
        if operation is not _Operation.KEEP:
            _apply(operation, element, context)


def _vr(dataset: Dataset, tag: BaseTag) -> str | None:
    """The element's VR as written, else the dictionary's (the first of `OB or OW`); None when neither says."""
    written = dataset.get_item(tag).VR
    if written and written != "UN":
        return written
    try:
        return dictionary_VR(tag).split(" ")[0]
    except KeyError:
        return None


def _apply(operation: _Operation, element: DataElement, context: _Context) -> None:
    if operation is _Operation.EMPTY:
        element.clear()
    elif operation is _Operation.CLEAN:
        for item in element.value or ():
            _clean(item, context)
    elif operation is _Operation.NEW_UID or (operation is _Operation.DUMMY and element.VR == "UI"):
        element.value = _each(element.value, context.new_uid)
    elif operation is _Operation.TEMPORAL:
        _apply_temporal(element, context)
    else:
        _set_dummy(element)


def _apply_temporal(element: DataElement, context: _Context) -> None:
    convert = {"DA": context.date, "DT": context.date_time, "TM": context.time}.get(element.VR)
    if convert is None:  # a date attribute written with another VR: nothing safe to keep
        element.clear()
        return
    element.value = _each(element.value, lambda value: convert(value.strip()))


def _each(value, convert):
    """`convert` over a single value or each of a multi-valued one; an empty value stays empty."""
    if value is None or value == "":
        return value
    if isinstance(value, MultiValue | list | tuple):
        return [convert(str(item)) for item in value]
    return convert(str(value))


_DUMMY_TEXT = "ANONYMIZED"  # fits every string VR: 10 characters, upper case for CS
_DUMMIES = {
    **dict.fromkeys(("AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"), _DUMMY_TEXT),
    "AS": "000D",
    "DS": "0",
    "IS": "0",
    **dict.fromkeys(("US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"), 0),
}


def _set_dummy(element: DataElement) -> None:
    """D: a dummy consistent with the VR; binary and URL values are emptied instead."""
    dummy = _DUMMIES.get(element.VR)
    if dummy is None:
        element.clear()
    else:
        element.value = dummy


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
