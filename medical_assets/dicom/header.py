"""The row of dicom_images for one data set: its attributes, and what became of its pixel data."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medical_assets.dicom.error_text import without_patient
from medical_assets.dicom.pixels import PIXEL_DATA_TAGS, pixel_statistics
from medical_assets.dicom.values import decimal, decimals, integer, text

# The uncompressed transfer syntax of each encoding pydicom reports as (implicit VR, little endian).
SYNTAX_OF_ENCODING = {
    (True, True): ImplicitVRLittleEndian,
    (False, True): ExplicitVRLittleEndian,
    (False, False): ExplicitVRBigEndian,
}


def image_row(
    dataset: Dataset, pixel_problem: str | None, data: bytes, source_file: str
) -> tuple[dict, np.ndarray | None]:
    """The row of dicom_images, and the decoded pixels when they decoded."""
    file_meta = dataset.file_meta
    transfer_syntax = _transfer_syntax(dataset)
    has_pixel_data = pixel_problem is not None or any(tag in dataset for tag in PIXEL_DATA_TAGS)
    number_of_frames = integer(dataset, "NumberOfFrames")
    if number_of_frames is None and has_pixel_data and "NumberOfFrames" not in dataset:
        number_of_frames = 1  # DICOM: an image without Number of Frames has one
    statistics, pixel_error, pixels = (None, None, None, None), None, None
    if has_pixel_data:
        statistics, pixel_error, pixels = pixel_statistics(dataset, transfer_syntax, pixel_problem)
    elif all(keyword in dataset for keyword in _IMAGE_PIXEL_KEYWORDS):
        # What a file cut just before its pixel data looks like; structured reports and plans
        # have none of these.
        pixel_error = (
            "no pixel data although Rows, Columns and Bits Allocated describe an image; the file may be truncated"
        )
    if pixel_error:
        pixel_error = without_patient(pixel_error, dataset)
    pixel_mean, pixel_std, pixel_min, pixel_max = statistics
    row = {
        "source_file": source_file,
        "sop_instance_uid": text(dataset, "SOPInstanceUID") or text(file_meta, "MediaStorageSOPInstanceUID"),
        "sop_class_uid": text(dataset, "SOPClassUID") or text(file_meta, "MediaStorageSOPClassUID"),
        "study_instance_uid": text(dataset, "StudyInstanceUID"),
        "series_instance_uid": text(dataset, "SeriesInstanceUID"),
        "series_number": integer(dataset, "SeriesNumber"),
        "instance_number": integer(dataset, "InstanceNumber"),
        "patient_id": text(dataset, "PatientID"),
        "patient_id_issuer": text(dataset, "IssuerOfPatientID"),
        "patient_name": text(dataset, "PatientName"),
        "patient_birth_date": text(dataset, "PatientBirthDate"),
        "patient_age": text(dataset, "PatientAge"),
        "patient_sex": text(dataset, "PatientSex"),
        "accession_number": text(dataset, "AccessionNumber"),
        "modality": text(dataset, "Modality"),
        "study_date": text(dataset, "StudyDate"),
        "study_description": text(dataset, "StudyDescription"),
        "series_description": text(dataset, "SeriesDescription"),
        "body_part_examined": text(dataset, "BodyPartExamined"),
        "institution_name": text(dataset, "InstitutionName"),
        "manufacturer": text(dataset, "Manufacturer"),
        "manufacturer_model_name": text(dataset, "ManufacturerModelName"),
        "rows": integer(dataset, "Rows"),
        "columns": integer(dataset, "Columns"),
        "number_of_frames": number_of_frames,
        "samples_per_pixel": integer(dataset, "SamplesPerPixel"),
        "photometric_interpretation": text(dataset, "PhotometricInterpretation"),
        "bits_allocated": integer(dataset, "BitsAllocated"),
        "bits_stored": integer(dataset, "BitsStored"),
        "pixel_representation": integer(dataset, "PixelRepresentation"),
        "pixel_spacing": decimals(dataset, "PixelSpacing"),
        "slice_thickness": decimal(dataset, "SliceThickness"),
        "window_center": decimal(dataset, "WindowCenter"),
        "window_width": decimal(dataset, "WindowWidth"),
        "rescale_slope": decimal(dataset, "RescaleSlope"),
        "rescale_intercept": decimal(dataset, "RescaleIntercept"),
        "burned_in_annotation": text(dataset, "BurnedInAnnotation"),
        "transfer_syntax_uid": str(transfer_syntax) if transfer_syntax else None,
        "file_size_bytes": len(data),
        "has_preamble": data[128:132] == b"DICM",
        "has_pixel_data": has_pixel_data,
        "pixel_mean": pixel_mean,
        "pixel_std": pixel_std,
        "pixel_min": pixel_min,
        "pixel_max": pixel_max,
        "pixel_error": pixel_error,
    }
    return row, pixels if pixel_error is None else None


_IMAGE_PIXEL_KEYWORDS = ("Rows", "Columns", "BitsAllocated")


def _transfer_syntax(dataset: Dataset) -> UID | None:
    """The file meta's Transfer Syntax UID; without one, the syntax the data set was read in.

    A file written without file meta (or without that element) is still uncompressed data in
    the encoding pydicom recognised, so naming it lets the pixel data decode; the inferred UID
    is also set on the data set for that purpose.
    """
    transfer_syntax = text(dataset.file_meta, "TransferSyntaxUID")
    if transfer_syntax:
        return UID(transfer_syntax)
    inferred = SYNTAX_OF_ENCODING.get(dataset.original_encoding)
    if inferred:
        dataset.file_meta.TransferSyntaxUID = inferred
    return inferred
