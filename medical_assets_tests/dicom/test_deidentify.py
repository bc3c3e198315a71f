"""De-identification of DICOM files and image rows: identifiers planted where real data hides them
must be gone from every byte, UIDs must stay consistent under one key, and pixels must not change."""

import copy
import secrets
import warnings
import zlib
from io import BytesIO

import numpy as np
import pyarrow as pa
import pydicom
import pytest
from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

from medical_assets.dicom import read_dicom_file
from medical_assets.dicom.annex_e import ANNEX_E_RELEASE, annex_e_action
from medical_assets.dicom.burned_in import burned_in_risk
from medical_assets.dicom.deidentify import (
    PROFILES,
    deid_image_row,
    deid_relative_path,
    deidentify_dataset,
    deidentify_dicom_bytes,
    patient_is_over_89,
)
from medical_assets.dicom.tables import DEID_DICOM_IMAGES
from medical_assets.privacy.keys import parse_key_ring
from medical_assets.privacy.pseudonyms import Pseudonymizer, patient_identity
from medical_assets.synthetic.dicom import DicomCorpusSettings, render_file

SAMPLE = DicomCorpusSettings(total_files=40)

PATIENT_ID = "MRN-PLANTED-0042"
BIRTH_DATE = "19310704"
STUDY_DATE = "20240131"
STUDY_TIME = "083015"
DATE_TIME = "20240131083015.000000"
# Every planted text holds this marker, so one search finds any of them.
MARKER = "PLANTED"
# A private root no real file uses, with a date inside, as archives' home-made UIDs often have.
UID_ROOT = "1.2.840.99999.20240131"
STUDY_UID = f"{UID_ROOT}.1"
SERIES_UID = f"{UID_ROOT}.1.2"
INSTITUTION = f"{MARKER} GENERAL HOSPITAL"
ISSUER = f"{MARKER}_MRN_AUTHORITY"
# The patient the planted files name: their MRN with its assigning authority.
PLANTED_IDENTITY = patient_identity(PATIENT_ID, ISSUER)


def new_pseudonymizer() -> Pseudonymizer:
    return Pseudonymizer(parse_key_ring(secrets.token_urlsafe(32)).current)


@pytest.fixture(scope="module")
def key_ring_value() -> str:
    return secrets.token_urlsafe(32)


@pytest.fixture(scope="module")
def pseudonymizer(key_ring_value) -> Pseudonymizer:
    return Pseudonymizer(parse_key_ring(key_ring_value).current)


@pytest.fixture(scope="module")
def corpus() -> list[bytes]:
    return [render_file(SAMPLE, index) for index in range(SAMPLE.total_files)]


@pytest.fixture(scope="module")
def headers(corpus) -> list[Dataset]:
    return [pydicom.dcmread(BytesIO(data), stop_before_pixels=True) for data in corpus]


def first(headers: list[Dataset], modality: str, transfer_syntax: str, frames: int | None = None) -> int:
    """The index of the first synthetic file of the modality, syntax and number of frames."""
    for index, header in enumerate(headers):
        if (
            header.Modality == modality
            and header.file_meta.TransferSyntaxUID == transfer_syntax
            and header.get("NumberOfFrames") == frames
        ):
            return index
    raise LookupError(f"no {modality} file in {transfer_syntax} among the first {len(headers)}")


# (modality, transfer syntax, frames) of the synthetic files the tests run on.
SYNTHETIC_KINDS = {
    "CT explicit VR": ("CT", ExplicitVRLittleEndian, None),
    "CT implicit VR": ("CT", ImplicitVRLittleEndian, None),
    "MR RLE": ("MR", RLELossless, None),
    "MR deflated": ("MR", DeflatedExplicitVRLittleEndian, None),
    "US implicit VR": ("US", ImplicitVRLittleEndian, None),
    "US cine": ("US", ExplicitVRLittleEndian, 8),
}
# pydicom's own files, shipped in its wheel: other vendors' attributes, compressed and big endian data.
PYDICOM_FILES = (
    "CT_small.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "SC_rgb_rle.dcm",
    "rtplan.dcm",
)


def source_file(name: str, corpus, headers) -> bytes:
    if name in SYNTHETIC_KINDS:
        return corpus[first(headers, *SYNTHETIC_KINDS[name])]
    with open(get_testdata_file(name), "rb") as file:
        return file.read()


def plant_identifiers(data: bytes) -> bytes:
    """The file with identifiers everywhere real data hides them, written in its own transfer syntax."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = pydicom.dcmread(BytesIO(data), force=True)
    for element in dataset.iterall():
        _plant_temporal(element)
    dataset.preamble = f"{MARKER}FAMILY".encode().ljust(128, b"\0")  # dual-format files keep data here
    dataset.file_meta.SourceApplicationEntityTitle = f"{MARKER}AE"
    dataset.PatientName = f"{MARKER}FAMILY^{MARKER}GIVEN"
    dataset.PatientID = PATIENT_ID
    dataset.IssuerOfPatientID = ISSUER
    dataset.PatientBirthDate = BIRTH_DATE
    dataset.PatientAge = "095Y"
    dataset.OtherPatientIDs = f"OTHERID-{MARKER}-77"
    dataset.OtherPatientIDsSequence = [_item(PatientID=f"SEQID-{MARKER}", IssuerOfPatientID=f"ISSUER-{MARKER}")]
    dataset.PatientAddress = f"7 {MARKER} LANE, SPRINGFIELD"
    dataset.PatientTelephoneNumbers = f"555-{MARKER}"
    dataset.ReferringPhysicianName = f"REFDOC^{MARKER}"
    dataset.PerformingPhysicianName = f"PERFDOC^{MARKER}"
    dataset.OperatorsName = f"OPERATOR^{MARKER}"
    dataset.InstitutionName = INSTITUTION
    dataset.InstitutionAddress = f"12 {MARKER} STREET, SPRINGFIELD"
    dataset.InstitutionalDepartmentName = f"{MARKER} RADIOLOGY"
    dataset.StationName = f"{MARKER}STN"
    dataset.DeviceSerialNumber = f"SERIAL-{MARKER}"
    dataset.AccessionNumber = f"ACC{MARKER}9"
    dataset.StudyID = f"S{MARKER}"
    dataset.StudyDescription = f"CT for {MARKER}FAMILY"
    dataset.SeriesDescription = f"series of {MARKER}FAMILY"
    dataset.ImageComments = f"Seen by Dr {MARKER}DOC, call 555-0199"
    dataset.StudyDate = dataset.SeriesDate = dataset.AcquisitionDate = dataset.ContentDate = STUDY_DATE
    dataset.StudyTime = STUDY_TIME
    dataset.AcquisitionDateTime = DATE_TIME
    dataset.StudyInstanceUID = STUDY_UID
    dataset.SeriesInstanceUID = SERIES_UID
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = f"{SERIES_UID}.3"
    dataset.FrameOfReferenceUID = f"{UID_ROOT}.9"
    dataset.RequestAttributesSequence = [
        _item(
            RequestedProcedureID=f"REQ-{MARKER}",
            ScheduledProcedureStepID=f"SPS-{MARKER}",
            StudyInstanceUID=STUDY_UID,
            ScheduledPerformingPhysicianName=f"SCHEDDOC^{MARKER}",
        )
    ]
    dataset.ReferencedStudySequence = [
        _item(ReferencedSOPClassUID="1.2.840.10008.3.1.2.3.1", ReferencedSOPInstanceUID=f"{UID_ROOT}.5")
    ]
    # A sequence the table does not list: kept, but its items are cleaned like the data set.
    region = _item(CodeValue="T-D4000", CodingSchemeDesignator="SRT", CodeMeaning="Abdomen")
    region.PersonName = f"PERSON^{MARKER}"
    region.ReferencedSOPInstanceUID = f"{UID_ROOT}.6"
    region.private_block(0x0011, f"{MARKER} NESTED CREATOR", create=True).add_new(0x01, "LO", f"NESTED-{MARKER}")
    dataset.AnatomicRegionSequence = [region]
    private = dataset.private_block(0x0009, f"{MARKER} CREATOR", create=True)
    private.add_new(0x01, "LO", f"PRIVATENAME^{MARKER}")
    private.add_new(0x02, "SQ", [_item(PatientName=f"PRIVSEQ^{MARKER}")])
    _plant_overlay(dataset)
    buffer = BytesIO()
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


def _item(**attributes) -> Dataset:
    item = Dataset()
    for keyword, value in attributes.items():
        setattr(item, keyword, value)
    return item


def _plant_temporal(element: DataElement) -> None:
    planted = {"DA": STUDY_DATE, "DT": DATE_TIME, "TM": STUDY_TIME}.get(element.VR)
    if planted and element.value not in (None, ""):
        element.value = planted


def _plant_overlay(dataset: Dataset) -> None:
    dataset.add_new(0x60000010, "US", 4)
    dataset.add_new(0x60000011, "US", 4)
    dataset.add_new(0x60000022, "LO", f"OVERLAY {MARKER}")
    dataset.add_new(0x60000040, "CS", "G")
    dataset.add_new(0x60000050, "SS", [1, 1])
    dataset.add_new(0x60000100, "US", 1)
    dataset.add_new(0x60000102, "US", 0)
    dataset.add_new(0x60001500, "LO", f"LABEL {MARKER}")
    dataset.add_new(0x60003000, "OW", b"\xff\x00")


def planted_secrets(planted: bytes, profile: str) -> list[str]:
    """What must not survive: the marker, the dates, every original instance UID, and under
    safe_harbor the time of day."""
    dataset = pydicom.dcmread(BytesIO(planted))
    found = [MARKER, BIRTH_DATE, STUDY_DATE, PATIENT_ID, UID_ROOT]
    found += sorted(instance_uids(dataset))
    if profile == "safe_harbor":
        found.append(STUDY_TIME)
    return found


def instance_uids(dataset: Dataset) -> set[str]:
    """The UIDs in the data set and its file meta that name an instance rather than a class or syntax."""
    found = set()
    for element in [*dataset.file_meta, *dataset.iterall()]:
        if element.VR != "UI" or "Class" in element.keyword or "Syntax" in element.keyword:
            continue
        values = element.value if isinstance(element.value, list | pydicom.multival.MultiValue) else [element.value]
        found.update(str(value) for value in values if value and not str(value).startswith("1.2.840.10008."))
    return found


def inspectable_bytes(data: bytes) -> bytes:
    """The file's bytes, with a deflated data set inflated so that a search sees inside it."""
    meta_end = 144 + int.from_bytes(data[140:144], "little")  # after (0002,0000)'s value
    meta = pydicom.dcmread(BytesIO(data), stop_before_pixels=True).file_meta
    if meta.TransferSyntaxUID != DeflatedExplicitVRLittleEndian:
        return data
    return data[:meta_end] + zlib.decompress(data[meta_end:], -zlib.MAX_WBITS)


def every_text(dataset: Dataset) -> list[str]:
    texts = [str(element.value) for element in dataset.file_meta]
    for element in dataset.iterall():
        if element.tag != 0x7FE00010:
            texts.append(f"{element.value!r} {element.value}")
    return texts


def pixel_bytes(data: bytes) -> bytes:
    return pydicom.dcmread(BytesIO(data)).get("PixelData", b"")


ALL_SOURCES = (*SYNTHETIC_KINDS, *PYDICOM_FILES)
IMAGE_SOURCES = tuple(source for source in ALL_SOURCES if source != "rtplan.dcm")  # an RT plan has no pixels


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("source", ALL_SOURCES)
def test_no_planted_identifier_survives_in_any_byte_or_element(source, profile, corpus, headers, pseudonymizer):
    planted = plant_identifiers(source_file(source, corpus, headers))
    hidden = planted_secrets(planted, profile)
    # Each secret is in the planted file and not in its pixel data, which stays as it is.
    planted_bytes = inspectable_bytes(planted)
    pixels = pixel_bytes(planted)
    for secret in hidden:
        assert secret.encode() in planted_bytes and secret.encode() not in pixels, secret

    output = deidentify_dicom_bytes(planted, pseudonymizer, profile)

    output_bytes = inspectable_bytes(output)
    assert [secret for secret in hidden if secret.encode() in output_bytes] == []
    texts = every_text(pydicom.dcmread(BytesIO(output)))
    assert [secret for secret in hidden if any(secret in text for text in texts)] == []


@pytest.mark.parametrize("source", IMAGE_SOURCES)
def test_pixel_data_and_image_attributes_are_untouched(source, corpus, headers, pseudonymizer):
    data = source_file(source, corpus, headers)
    original = pydicom.dcmread(BytesIO(data))
    # The body part is vocabulary-only text: kept here because the vocabulary allows the file's value.
    vocabulary = {"BodyPartExamined": {original.get("BodyPartExamined")} - {None}}
    output = deidentify_dicom_bytes(data, pseudonymizer, "safe_harbor", vocabulary=vocabulary)
    assert output[:128] == bytes(128) and output[128:132] == b"DICM"
    result = pydicom.dcmread(BytesIO(output))  # without force: a valid Part 10 file
    assert result.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert result.PixelData == original.PixelData
    assert np.array_equal(result.pixel_array, original.pixel_array)
    for keyword in IMAGE_KEYWORDS:
        assert result.get(keyword) == original.get(keyword), keyword


IMAGE_KEYWORDS = (
    "Modality", "SOPClassUID", "Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "PhotometricInterpretation",
    "PlanarConfiguration", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "PixelSpacing",
    "SliceThickness", "ImagePositionPatient", "ImageOrientationPatient", "WindowCenter", "WindowWidth",
    "RescaleIntercept", "RescaleSlope", "BodyPartExamined", "Manufacturer", "ManufacturerModelName",
    "SeriesNumber", "InstanceNumber", "BurnedInAnnotation", "ImageType",
)  # fmt: skip


def test_a_deflated_file_stays_deflated_and_readable(corpus, headers, pseudonymizer):
    data = source_file("MR deflated", corpus, headers)
    output = deidentify_dicom_bytes(data, pseudonymizer, "date_shift")
    assert inspectable_bytes(output) != output  # the data set after the file meta is deflated
    assert pydicom.dcmread(BytesIO(output)).file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian


def test_a_file_without_preamble_gets_one_and_the_same_new_uids(corpus, headers, pseudonymizer):
    data = source_file("CT explicit VR", corpus, headers)
    with_preamble = pydicom.dcmread(BytesIO(deidentify_dicom_bytes(data, pseudonymizer)))
    output = deidentify_dicom_bytes(data[132:], pseudonymizer)
    assert output[128:132] == b"DICM"
    without_preamble = pydicom.dcmread(BytesIO(output))
    for keyword in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "PatientID"):
        assert without_preamble[keyword].value == with_preamble[keyword].value


def test_the_file_meta_names_the_new_instance_and_nothing_else(corpus, headers, pseudonymizer):
    data = plant_identifiers(source_file("CT explicit VR", corpus, headers))
    original = pydicom.dcmread(BytesIO(data))
    result = pydicom.dcmread(BytesIO(deidentify_dicom_bytes(data, pseudonymizer)))
    new_sop = pseudonymizer.uid(original.SOPInstanceUID)
    assert result.SOPInstanceUID == result.file_meta.MediaStorageSOPInstanceUID == new_sop
    assert result.file_meta.MediaStorageSOPClassUID == original.SOPClassUID
    assert "SourceApplicationEntityTitle" not in result.file_meta


def test_one_key_gives_one_study_uid_across_files_and_instances_another_key_others(corpus, headers, key_ring_value):
    index = first(headers, "CT", ExplicitVRLittleEndian)
    first_file, second_file = corpus[index], corpus[index + 1]
    originals = [pydicom.dcmread(BytesIO(data), stop_before_pixels=True) for data in (first_file, second_file)]
    assert originals[0].StudyInstanceUID == originals[1].StudyInstanceUID
    assert originals[0].SeriesInstanceUID == originals[1].SeriesInstanceUID
    one = Pseudonymizer(parse_key_ring(key_ring_value).current)
    same_key = Pseudonymizer(parse_key_ring(key_ring_value).current)
    other_key = new_pseudonymizer()

    def new_uids(data: bytes, pseudonymizer: Pseudonymizer) -> tuple[str, ...]:
        result = pydicom.dcmread(BytesIO(deidentify_dicom_bytes(data, pseudonymizer)))
        uids = (result.StudyInstanceUID, result.SeriesInstanceUID, result.FrameOfReferenceUID, result.SOPInstanceUID)
        return uids

    first_uids, second_uids = new_uids(first_file, one), new_uids(second_file, same_key)
    assert first_uids[:3] == second_uids[:3]  # study, series and frame of reference
    assert first_uids[3] != second_uids[3]
    assert new_uids(first_file, same_key) == first_uids
    other_uids = new_uids(first_file, other_key)
    assert all(mine != theirs for mine, theirs in zip(first_uids, other_uids))
    assert all(uid.startswith("2.25.") and len(uid) <= 64 for uid in first_uids + other_uids)
    assert first_uids[0] == one.uid(originals[0].StudyInstanceUID)


def test_references_to_other_instances_follow_their_new_uids(corpus, headers, pseudonymizer):
    index = first(headers, "CT", ExplicitVRLittleEndian)
    referenced = pydicom.dcmread(BytesIO(corpus[index + 1]), stop_before_pixels=True)
    dataset = pydicom.dcmread(BytesIO(corpus[index]))
    dataset.ReferencedImageSequence = [
        _item(ReferencedSOPClassUID=referenced.SOPClassUID, ReferencedSOPInstanceUID=referenced.SOPInstanceUID)
    ]
    dataset.SourceImageSequence = [
        _item(ReferencedSOPClassUID=referenced.SOPClassUID, ReferencedSOPInstanceUID=referenced.SOPInstanceUID)
    ]
    buffer = BytesIO()
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    result = pydicom.dcmread(BytesIO(deidentify_dicom_bytes(buffer.getvalue(), pseudonymizer)))
    new_referenced = pydicom.dcmread(BytesIO(deidentify_dicom_bytes(corpus[index + 1], pseudonymizer)))
    for sequence in (result.ReferencedImageSequence, result.SourceImageSequence):
        assert sequence[0].ReferencedSOPInstanceUID == new_referenced.SOPInstanceUID
        assert sequence[0].ReferencedSOPClassUID == referenced.SOPClassUID  # a class UID names no one


def test_patient_id_and_name_become_the_hl7_patient_token(corpus, headers, pseudonymizer):
    data = plant_identifiers(source_file("US implicit VR", corpus, headers))
    result = pydicom.dcmread(BytesIO(deidentify_dicom_bytes(data, pseudonymizer)))
    token = pseudonymizer.token("patient", PLANTED_IDENTITY)
    assert result.PatientID == token
    assert str(result.PatientName) == token
    assert result.PatientBirthDate == ""


def test_the_data_set_records_its_de_identification(corpus, headers, pseudonymizer):
    data = source_file("CT explicit VR", corpus, headers)
    for profile, codes in (("safe_harbor", ["113100"]), ("date_shift", ["113100", "113107"])):
        result = pydicom.dcmread(BytesIO(deidentify_dicom_bytes(data, pseudonymizer, profile)))
        assert result.PatientIdentityRemoved == "YES"
        method = list(result.DeidentificationMethod)
        assert any(profile in value for value in method)
        assert any(pseudonymizer.key_id in value for value in method)
        assert [item.CodeValue for item in result.DeidentificationMethodCodeSequence] == codes
        assert {item.CodingSchemeDesignator for item in result.DeidentificationMethodCodeSequence} == {"DCM"}
        assert result.DeidentificationMethodCodeSequence[0].CodeMeaning == "Basic Application Confidentiality Profile"
        assert result.LongitudinalTemporalInformationModified == "MODIFIED"


def test_a_key_id_of_forty_characters_still_fits_de_identification_method():
    key = parse_key_ring(f"{'k' * 40}:{secrets.token_urlsafe(32)}").current
    dataset = _minimal_dataset()
    deidentify_dataset(dataset, Pseudonymizer(key), "date_shift")
    assert all(len(value) <= 64 for value in dataset.DeidentificationMethod)


def _minimal_dataset(**attributes) -> Dataset:
    dataset = Dataset()
    dataset.SOPClassUID = CTImageStorage
    dataset.SOPInstanceUID = f"{SERIES_UID}.3"
    dataset.StudyInstanceUID = STUDY_UID
    dataset.SeriesInstanceUID = SERIES_UID
    dataset.Modality = "CT"
    dataset.PatientID = PATIENT_ID
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    return dataset


@pytest.mark.parametrize(
    ("age", "expected"),
    [("095Y", "090Y"), ("090Y", "090Y"), ("089Y", "089Y"), ("045Y", "045Y"), ("003M", "003M"), ("012D", "012D")],
)
def test_ages_over_89_become_090y(age, expected, pseudonymizer):
    dataset = _minimal_dataset(PatientAge=age)
    deidentify_dataset(dataset, pseudonymizer)
    assert dataset.PatientAge == expected


def test_an_age_of_89_is_removed_for_a_patient_hl7_shows_as_90_or_older(pseudonymizer):
    """Attack: HL7 publishes the patient as 90+ (no birth year) while the image says 089Y, so the two
    zones joined on the token give the birth year away. Told the patient is over 89, the age goes."""
    identity = patient_identity(PATIENT_ID, ISSUER)
    told = _minimal_dataset(PatientAge="089Y", IssuerOfPatientID=ISSUER)
    deidentify_dataset(told, pseudonymizer, patients_over_89={identity})
    assert "PatientAge" not in told
    another_patient = _minimal_dataset(PatientAge="089Y", IssuerOfPatientID="OTHER_AUTHORITY")
    deidentify_dataset(another_patient, pseudonymizer, patients_over_89={identity})
    assert another_patient.PatientAge == "089Y"  # the same MRN of another issuer is another patient


@pytest.mark.parametrize(
    ("age", "over"), [("090Y", True), ("095Y", True), ("089Y", False), ("100Y", True), ("900D", False), (None, False)]
)
def test_patient_is_over_89(age, over):
    assert patient_is_over_89(age) is over
    assert patient_is_over_89(_minimal_dataset(**({"PatientAge": age} if age else {}))) is over


def test_patient_tokens_differ_for_one_patient_id_of_two_issuers(pseudonymizer):
    """Attack: MRN 12345 of hospital A and MRN 12345 of hospital B are two people; one token would merge them."""
    first, second = (_minimal_dataset(IssuerOfPatientID=issuer) for issuer in ("HOSP_A", "HOSP_B"))
    by_institution = _minimal_dataset(InstitutionName="hosp_a")  # no issuer: the institution stands in
    for dataset in (first, second, by_institution):
        deidentify_dataset(dataset, pseudonymizer)
    assert first.PatientID != second.PatientID
    hospital_a = pseudonymizer.token("patient", patient_identity(PATIENT_ID, "HOSP_A"))
    assert first.PatientID == by_institution.PatientID == hospital_a
    shared = [_minimal_dataset(IssuerOfPatientID=issuer) for issuer in ("HOSP_A", "HOSP_B")]
    for dataset in shared:
        deidentify_dataset(dataset, pseudonymizer, patient_id_scope="shared")
    assert shared[0].PatientID == shared[1].PatientID == pseudonymizer.token("patient", PATIENT_ID)
    rows = [
        deid_image_row({"patient_id": PATIENT_ID, "patient_id_issuer": issuer}, pseudonymizer)
        for issuer in ("HOSP_A", "HOSP_B")
    ]
    assert [row["patient_token"] for row in rows] == [first.PatientID, second.PatientID]


@pytest.mark.filterwarnings("ignore:Invalid value for VR AS")
def test_an_age_that_is_not_an_age_string_is_removed(pseudonymizer):
    dataset = _minimal_dataset(PatientAge="95 years")
    deidentify_dataset(dataset, pseudonymizer)
    assert "PatientAge" not in dataset


def test_safe_harbor_keeps_the_year_alone(pseudonymizer):
    dataset = _minimal_dataset(
        StudyDate=STUDY_DATE, SeriesDate="20240201", StudyTime=STUDY_TIME, AcquisitionDateTime="20240131083015+0100",
        PatientBirthDate=BIRTH_DATE, SelectorDAValue=["20231130", "20240115"],
    )  # fmt: skip
    deidentify_dataset(dataset, pseudonymizer, "safe_harbor")
    assert dataset.StudyDate == dataset.SeriesDate == "20240101"
    assert dataset.AcquisitionDateTime == "20240101000000"
    assert dataset.StudyTime == ""
    assert dataset.PatientBirthDate == ""
    assert "SelectorDAValue" not in dataset  # a date the allow-list does not declare is removed, not generalised


def test_date_shift_moves_every_date_of_a_patient_by_one_offset(pseudonymizer):
    offset = pseudonymizer.date_offset_days(PATIENT_ID)
    assert offset != 0
    first_visit = _minimal_dataset(
        StudyDate="20240131", StudyTime=STUDY_TIME, AcquisitionDateTime="20240131083015.5+0100"
    )
    second_visit = _minimal_dataset(StudyDate="20240315", SeriesDate="20240315", PatientBirthDate=BIRTH_DATE)
    another_patient = _minimal_dataset(PatientID="MRN-OTHER-7", StudyDate="20240131")
    for dataset in (first_visit, second_visit, another_patient):
        deidentify_dataset(dataset, pseudonymizer, "date_shift")
    first_date, second_date = _day(first_visit.StudyDate), _day(second_visit.StudyDate)
    assert (first_date - _day("20240131")).days == offset
    assert (second_date - first_date).days == 44  # the interval survives
    assert second_visit.SeriesDate == second_visit.StudyDate
    assert first_visit.AcquisitionDateTime == f"{first_visit.StudyDate}083015.5+0100"  # time of day and zone stay
    assert first_visit.StudyTime == STUDY_TIME
    assert second_visit.PatientBirthDate == ""  # a birth date near the real one would tell an age over 89
    other_offset = pseudonymizer.date_offset_days("MRN-OTHER-7")
    assert (_day(another_patient.StudyDate) - _day("20240131")).days == other_offset


def test_date_shift_keeps_the_precision_of_partial_date_times(pseudonymizer):
    dataset = _minimal_dataset(AcquisitionDateTime="202401", FrameAcquisitionDateTime="2024")
    deidentify_dataset(dataset, pseudonymizer, "date_shift")
    assert len(dataset.AcquisitionDateTime) == 6 and dataset.AcquisitionDateTime.isdigit()
    # Frame Acquisition DateTime is D in the table: it stays, a year-only value shifted at its own precision.
    assert len(dataset.FrameAcquisitionDateTime) == 4


def _day(value: str):
    from datetime import date

    return date(int(value[:4]), int(value[4:6]), int(value[6:8]))


def test_nested_sequences_private_tags_and_overlays(corpus, headers, pseudonymizer):
    data = plant_identifiers(source_file("CT explicit VR", corpus, headers))
    output = deidentify_dicom_bytes(data, pseudonymizer, vocabulary={"CodeMeaning": {"Abdomen"}})
    result = pydicom.dcmread(BytesIO(output))
    region = result.AnatomicRegionSequence[0]  # a declared sequence: kept, its item cleaned
    assert (region.CodeValue, region.CodeMeaning) == ("T-D4000", "Abdomen")
    assert region.ReferencedSOPInstanceUID == pseudonymizer.uid(f"{UID_ROOT}.6")
    assert "PersonName" not in region  # not declared: removed inside the item too
    assert [element.tag for element in region if element.tag.is_private] == []
    for removed in ("RequestAttributesSequence", "ReferencedStudySequence", "OtherPatientIDsSequence", "ImageComments"):
        assert removed not in result
    private = [element.tag for element in result.iterall() if element.tag.is_private]
    assert private == []
    assert [element.tag for element in result if element.tag.group == 0x6000] == []


def every_table_attribute() -> Dataset:
    """A data set holding every attribute of Table E.1-1, each with a planted value of its VR."""
    dataset = Dataset()
    categories = dicom_anonymization_database_selector(ANNEX_E_RELEASE)
    for number, entry in enumerate(categories["ALL_TAGS"]):
        tag = Tag(entry[0], entry[1] if len(entry) == 2 or entry[3] else 0x3000)
        if tag.group in (0x0000, 0x0002, 0x0004):  # command, file meta, DICOMDIR: not in a data set
            continue
        try:
            vr = dictionary_VR(tag).split(" ")[0]
        except KeyError:
            vr = "LO"  # newer than pydicom's dictionary
        dataset.add(DataElement(tag, vr, _planted_value(vr, number)))
    return dataset


def _planted_value(vr: str, number: int):
    if vr == "SQ":
        return [_item(PatientName=f"{MARKER}^SQ", ReferencedSOPInstanceUID=f"{UID_ROOT}.{number}")]
    texts = {"DA": STUDY_DATE, "DT": DATE_TIME, "TM": STUDY_TIME, "UI": f"{UID_ROOT}.{number}", "AS": "095Y",
             "UR": f"http://{MARKER}.example/{number}", "DS": "7.5", "IS": "7", "AT": 0x00100010}  # fmt: skip
    if vr in texts:
        return texts[vr]
    if vr in ("FL", "FD"):
        return 7.5
    if vr in ("SL", "SS", "UL", "US", "SV", "UV"):
        return 7
    if vr in ("OB", "OD", "OF", "OL", "OV", "OW", "UN"):
        return f"{MARKER}!".encode()
    return f"{MARKER}_{number}"  # upper case, digits and underscores: valid for CS too


@pytest.mark.parametrize("profile", PROFILES)
def test_every_attribute_of_the_table_is_removed_emptied_or_replaced(profile, pseudonymizer):
    dataset = every_table_attribute()
    planted = {element.tag: copy.deepcopy(element.value) for element in dataset}
    assert len(planted) > 600
    deidentify_dataset(dataset, pseudonymizer, profile)
    # The date-shift option keeps times of day, alone (TM) and in date-times (DT).
    hidden = (MARKER, UID_ROOT, STUDY_DATE) + ((STUDY_TIME,) if profile == "safe_harbor" else ())
    survivors = []
    for tag, original in planted.items():
        if tag not in dataset or tag in (Tag("PatientID"), Tag("PatientName"), Tag("PatientAge")):
            continue
        element = dataset[tag]
        if element.VR == "TM" and profile == "date_shift":
            continue  # the option keeps times of day
        text = repr(list(element.value) if element.VR == "SQ" else element.value)
        if element.value == original or any(secret in text for secret in hidden):
            survivors.append(f"{tag} {annex_e_action(tag)}")
    assert survivors == []


def test_the_table_is_dicom_anonymizers_including_repeating_groups():
    categories = dicom_anonymization_database_selector(ANNEX_E_RELEASE)
    exact = [entry for entry in categories["ALL_TAGS"] if len(entry) == 2]
    assert all(annex_e_action(Tag(*entry)) for entry in exact)
    assert annex_e_action(Tag("PatientName")) == "Z"
    assert annex_e_action(Tag("PatientID")) == "Z/D"
    assert annex_e_action(Tag("StudyInstanceUID")) == "U"
    assert annex_e_action(Tag("InstitutionName")) == "X/Z/D"
    assert annex_e_action(Tag("ReferencedImageSequence")) == "X/Z/U*"
    assert annex_e_action(0x60023000) == "X"  # Overlay Data of the second overlay group
    assert annex_e_action(0x501E0010) == "X"  # a curve group
    assert annex_e_action(Tag("Rows")) is None


@pytest.mark.parametrize(
    ("modality", "flag", "risky"),
    [
        ("CT", "YES", True),
        ("US", "yes ", True),
        ("US", "NO", False),
        ("XA", "NO", False),
        ("US", None, True),
        ("US", "", True),
        ("OT", None, True),
        ("SC", None, True),
        ("XA", None, True),
        ("ES", "", True),
        ("SM", None, True),
        ("CT", None, False),
        ("MR", "", False),
        ("CR", "NO", False),
        (None, None, True),
        ("", "NO", False),
    ],
)
def test_burned_in_risk(modality, flag, risky):
    reason = burned_in_risk(modality, flag)
    assert (reason is not None) == risky
    if reason:
        assert "Burned In Annotation" in reason


def test_the_synthetic_ultrasound_is_kept_out_of_the_export(corpus, headers):
    row = read_dicom_file(source_file("US implicit VR", corpus, headers), "us.dcm").images.to_pylist()[0]
    assert "YES" in burned_in_risk(row["modality"], row["burned_in_annotation"])


@pytest.mark.parametrize("profile", PROFILES)
def test_the_image_row_matches_the_file_and_holds_no_identifier(profile, corpus, headers, pseudonymizer):
    data = plant_identifiers(source_file("MR RLE", corpus, headers))
    phi_row = read_dicom_file(data, "landing/PLANTEDFAMILY/mr.dcm").images.to_pylist()[0]
    row = deid_image_row(phi_row, pseudonymizer, profile)
    table = pa.Table.from_pylist([row], schema=DEID_DICOM_IMAGES)
    assert table.num_rows == 1 and list(row) == DEID_DICOM_IMAGES.names
    result = pydicom.dcmread(BytesIO(deidentify_dicom_bytes(data, pseudonymizer, profile)))
    assert row["sop_instance_uid"] == result.SOPInstanceUID
    assert row["study_instance_uid"] == result.StudyInstanceUID
    assert row["series_instance_uid"] == result.SeriesInstanceUID
    assert row["deid_file"] == f"{result.StudyInstanceUID}/{result.SeriesInstanceUID}/{result.SOPInstanceUID}.dcm"
    assert row["patient_token"] == result.PatientID == pseudonymizer.token("patient", PLANTED_IDENTITY)
    if profile == "safe_harbor":
        assert (row["study_year"], row["study_date"]) == (2024, None)
    else:
        assert row["study_date"] == result.StudyDate != STUDY_DATE
        assert row["study_year"] == int(result.StudyDate[:4])
    # Vocabulary-only text, and no vocabulary was given.
    assert (row["body_part_examined"], row["manufacturer"], row["manufacturer_model_name"]) == (None, None, None)
    vocabulary = {"Manufacturer": {phi_row["manufacturer"]}, "ManufacturerModelName": {phi_row["manufacturer_model_name"]}}
    allowed = deid_image_row(phi_row, pseudonymizer, profile, vocabulary=vocabulary)
    assert (allowed["manufacturer"], allowed["manufacturer_model_name"]) == (
        phi_row["manufacturer"], phi_row["manufacturer_model_name"]
    )
    for column in ("modality", "rows", "columns", "bits_stored", "pixel_spacing", "pixel_mean",
                   "series_number", "instance_number", "transfer_syntax_uid", "has_pixel_data"):  # fmt: skip
        assert row[column] == phi_row[column], column
    assert "deid_profile" not in row  # the profile and key id travel in the Parquet metadata
    text = repr(row)
    hidden = [MARKER, PATIENT_ID, BIRTH_DATE, STUDY_DATE, UID_ROOT]
    assert [secret for secret in hidden if secret in text] == []


def test_a_row_without_uids_has_no_deid_file(pseudonymizer):
    row = deid_image_row({"patient_id": PATIENT_ID, "modality": "CT"}, pseudonymizer)
    assert row["deid_file"] is None and row["sop_instance_uid"] is None
    assert pa.Table.from_pylist([row], schema=DEID_DICOM_IMAGES).num_rows == 1


def test_the_relative_path_is_made_of_uids_only():
    assert deid_relative_path("2.25.1", "2.25.2", "2.25.3") == "2.25.1/2.25.2/2.25.3.dcm"
    for bad in ("../etc", "2.25.1/..", "", "PLANTED"):
        with pytest.raises(ValueError):
            deid_relative_path(bad, "2.25.2", "2.25.3")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        f"MSH|^~\\&|Patient {MARKER}FAMILY born {BIRTH_DATE}\r".encode() * 20,
        b"\x89PNG\r\n\x1a\n" + f"{MARKER}FAMILY".encode() * 20,
    ],
    ids=["empty", "text", "png"],
)
def test_what_is_not_dicom_raises_a_value_error_that_quotes_nothing(data, pseudonymizer):
    with pytest.raises(ValueError) as raised:
        deidentify_dicom_bytes(data, pseudonymizer)
    message = str(raised.value)
    assert "cannot de-identify" in message
    assert MARKER not in message and BIRTH_DATE not in message
    assert raised.value.__cause__ is None


def test_a_data_set_without_sop_uids_cannot_be_written_and_says_why(pseudonymizer):
    dataset = Dataset()
    dataset.Modality = "OT"
    dataset.PatientName = f"{MARKER}^X"
    buffer = BytesIO()
    pydicom.dcmwrite(buffer, dataset, implicit_vr=True, little_endian=True)  # no preamble, no file meta
    with pytest.raises(ValueError, match="SOP Class UID") as raised:
        deidentify_dicom_bytes(buffer.getvalue(), pseudonymizer)
    assert MARKER not in str(raised.value)


def test_an_unknown_profile_is_refused(pseudonymizer):
    with pytest.raises(ValueError, match="safe_harbor, date_shift"):
        deidentify_dataset(_minimal_dataset(), pseudonymizer, "k_anonymity")
