"""The synthetic DICOM corpus, read back with pydicom and the reader: deterministic, valid, realistic."""

import hashlib
import subprocess
import sys
from collections import Counter, defaultdict
from io import BytesIO

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

from medical_assets.dicom import read_dicom_file
from medical_assets.privacy.pseudonyms import patient_identity
from medical_assets.synthetic.dicom import DicomCorpusSettings, file_name, is_synthetic_file_name, render_file
from medical_assets.synthetic.hl7_patients import PATIENT_POOL_SIZE, synthetic_patient

SAMPLE = DicomCorpusSettings(total_files=60)


@pytest.fixture(scope="module")
def files() -> list[bytes]:
    return [render_file(SAMPLE, index) for index in range(SAMPLE.total_files)]


@pytest.fixture(scope="module")
def datasets(files) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(BytesIO(data)) for data in files]


@pytest.fixture(scope="module")
def rows(files) -> list[dict]:
    rows = []
    for index, data in enumerate(files):
        result = read_dicom_file(data, file_name(index))
        assert result.errors.num_rows == 0, result.errors.to_pylist()
        rows.extend(result.images.to_pylist())
    return rows


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_same_settings_give_the_same_bytes_in_another_process(files):
    assert [render_file(SAMPLE, index) for index in (0, 17, 59)] == [files[0], files[17], files[59]]
    script = (
        "import hashlib; from medical_assets.synthetic.dicom import DicomCorpusSettings, render_file; "
        "print(*(hashlib.sha256(render_file(DicomCorpusSettings(total_files=60), i)).hexdigest() for i in (3, 40)))"
    )
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert output.split() == [digest(files[3]), digest(files[40])]


def test_another_seed_gives_another_corpus(files):
    other = DicomCorpusSettings(total_files=60, seed=7)
    assert render_file(other, 0) != files[0]


def test_files_are_dicom_files_with_file_meta(files, datasets):
    for data, dataset in zip(files, datasets):
        assert data[128:132] == b"DICM"
        assert dataset.file_meta.MediaStorageSOPInstanceUID == dataset.SOPInstanceUID
        assert dataset.file_meta.MediaStorageSOPClassUID == dataset.SOPClassUID
        assert dataset.file_meta.ImplementationVersionName == "MEDASSETS_SYN1"


def test_every_modality_and_transfer_syntax_is_present(datasets):
    assert {dataset.Modality for dataset in datasets} == {"CT", "MR", "CR", "DX", "US"}
    syntaxes = Counter(dataset.file_meta.TransferSyntaxUID for dataset in datasets)
    expected = {ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, RLELossless}
    assert set(syntaxes) == expected
    assert syntaxes[ExplicitVRLittleEndian] == max(syntaxes.values())


def test_the_reader_agrees_with_numpy_over_pydicoms_pixel_array(datasets, rows):
    for dataset, row in zip(datasets, rows):
        pixels = dataset.pixel_array
        assert row["pixel_error"] is None
        assert row["pixel_mean"] == pytest.approx(np.mean(pixels), rel=1e-12)
        assert row["pixel_std"] == pytest.approx(np.std(pixels), rel=1e-9)
        assert (row["pixel_min"], row["pixel_max"]) == (float(pixels.min()), float(pixels.max()))
        assert row["transfer_syntax_uid"] == dataset.file_meta.TransferSyntaxUID


def test_images_have_each_modalitys_size_and_storage(datasets):
    for dataset in datasets:
        pixels = dataset.pixel_array
        modality = dataset.Modality
        if modality == "CT":
            assert pixels.shape == (512, 512) and pixels.dtype == np.int16
            assert (dataset.RescaleSlope, dataset.RescaleIntercept) == (1, -1024)
            body = pixels[pixels != dataset.PixelPaddingValue] + dataset.RescaleIntercept
            assert -1100 < body.min() < -900 and 600 < body.max() < 1200  # air to bone in HU
        elif modality == "MR":
            assert pixels.shape == (256, 256) and pixels.dtype == np.uint16
            assert dataset.BitsStored == 12 and pixels.max() <= 4095
        elif modality in ("CR", "DX"):
            assert pixels.shape in ((1024, 1024), (1152, 896)) and pixels.dtype == np.uint16
            assert dataset.BitsStored == 12 and pixels.max() <= 4095
            assert dataset.PhotometricInterpretation == ("MONOCHROME1" if modality == "CR" else "MONOCHROME2")
        else:
            assert pixels.shape[-3:] == (480, 640, 3) and pixels.dtype == np.uint8
            assert dataset.PhotometricInterpretation == "RGB" and dataset.BurnedInAnnotation == "YES"


def test_multi_frame_rgb_cine(datasets, rows):
    cines = [(dataset, row) for dataset, row in zip(datasets, rows) if row["number_of_frames"] > 1]
    assert cines
    for dataset, row in cines:
        assert dataset.SOPClassUID == "1.2.840.10008.5.1.4.1.1.3.1"  # Ultrasound Multi-frame Image Storage
        assert dataset.pixel_array.shape == (dataset.NumberOfFrames, 480, 640, 3)
        assert row["samples_per_pixel"] == 3 and row["number_of_frames"] == dataset.NumberOfFrames
        assert float(dataset.FrameTime) > 0


def test_realistic_attributes_are_present(datasets, rows):
    for dataset, row in zip(datasets, rows):
        for column in (
            "patient_id", "patient_name", "patient_birth_date", "patient_age", "patient_sex", "accession_number", "study_date",
            "study_description", "series_description", "body_part_examined", "institution_name", "manufacturer",
            "manufacturer_model_name", "photometric_interpretation", "bits_stored", "burned_in_annotation",
        ):  # fmt: skip
            assert row[column] not in (None, ""), (column, dataset.Modality)
        assert len(row["patient_birth_date"]) == 8 and row["patient_birth_date"] < row["study_date"]
        assert dataset.PatientAge.endswith("Y") and row["patient_age"] == dataset.PatientAge
        if dataset.Modality != "US":  # ultrasound calibrates its regions instead
            assert len(row["pixel_spacing"]) == 2 and all(spacing > 0 for spacing in row["pixel_spacing"])
            assert row["window_center"] is not None and row["window_width"] > 0
        if dataset.Modality in ("CT", "MR"):
            assert row["slice_thickness"] == 5.0
            assert UID(dataset.FrameOfReferenceUID).is_valid
    flagged = Counter((row["modality"], row["burned_in_annotation"]) for row in rows)
    assert flagged[("US", "YES")] and flagged[("CT", "NO")]


def test_multi_valued_window_presets_give_their_first_value(datasets, rows):
    chest = [(dataset, row) for dataset, row in zip(datasets, rows) if dataset.get("WindowCenterWidthExplanation")]
    assert chest
    for dataset, row in chest:
        assert row["window_center"] == float(dataset.WindowCenter[0])
        assert row["window_width"] == float(dataset.WindowWidth[0])


def test_uids_are_valid_and_unique_per_instance(datasets):
    instances = [dataset.SOPInstanceUID for dataset in datasets]
    assert len(set(instances)) == len(instances)
    for dataset in datasets:
        for uid in (dataset.SOPInstanceUID, dataset.StudyInstanceUID, dataset.SeriesInstanceUID):
            assert UID(uid).is_valid and len(uid) <= 64


def test_files_group_into_studies_and_series_of_several_images(datasets):
    series_by_study = defaultdict(set)
    instances_by_series = defaultdict(list)
    for dataset in datasets:
        series_by_study[dataset.StudyInstanceUID].add(dataset.SeriesInstanceUID)
        instances_by_series[dataset.SeriesInstanceUID].append(int(dataset.InstanceNumber))
    assert len(series_by_study) < len(instances_by_series) < len(datasets)
    assert max(len(instances) for instances in instances_by_series.values()) >= 5
    for instances in instances_by_series.values():
        assert instances == list(range(1, len(instances) + 1))
    # One study's files are together, in file order.
    study_order = [dataset.StudyInstanceUID for dataset in datasets]
    assert study_order == sorted(study_order, key=study_order.index)


def test_patients_are_the_hl7_corpus_patients(datasets):
    pool = {patient.medical_record_number: patient for n in range(PATIENT_POOL_SIZE) if (
        patient := synthetic_patient(SAMPLE.seed, n))}  # fmt: skip
    for dataset in datasets:
        patient = pool[dataset.PatientID]
        assert str(dataset.PatientName) == f"{patient.family_name}^{patient.given_name}"
        assert dataset.PatientBirthDate == patient.birth_date
        assert dataset.InstitutionName == patient.facility
        assert dataset.get("IssuerOfPatientID") == patient.issuer  # absent where the HL7 feed names none


def test_patient_identity_is_the_hl7_feeds_issuer_and_mrn(datasets, rows):
    """The HL7-DICOM join holds on (issuer, MRN): each side's issuer, or its facility where it names none."""
    pool = {patient.medical_record_number: patient for n in range(PATIENT_POOL_SIZE) if (
        patient := synthetic_patient(SAMPLE.seed, n))}  # fmt: skip
    issuers = Counter()
    assert len(datasets) == len(rows)
    for row in rows:
        patient = pool[row["patient_id"]]
        # What an HL7 message of this patient gives: PID-3.4, else MSH-4.
        hl7_identity = patient_identity(patient.medical_record_number, patient.issuer or patient.facility)
        dicom_identity = patient_identity(row["patient_id"], row["patient_id_issuer"] or row["institution_name"])
        assert dicom_identity == hl7_identity
        issuers[row["patient_id_issuer"] is not None] += 1
    assert issuers[True] > issuers[False] > 0  # most files name the issuer, some leave it to the institution


def test_file_names_sort_in_file_order_and_are_recognised():
    names = [file_name(index) for index in range(0, 20_000, 997)]
    assert names == sorted(names)
    assert all(is_synthetic_file_name(name) for name in names)
    assert not any(
        is_synthetic_file_name(name)
        for name in ("pacs_demo_00001.hl7", "pacs_demo_.dcm", "pacs_demo_0001a.dcm", "scan_00001.dcm", "IM000001")
    )


def test_settings_and_indices_are_checked():
    with pytest.raises(ValueError, match="total_files"):
        DicomCorpusSettings(total_files=-1)
    with pytest.raises(IndexError, match="file_index 60"):
        render_file(SAMPLE, 60)
    assert [render_file(DicomCorpusSettings(total_files=3), index)[:132] for index in range(3)]
