"""Arrow schemas of the DICOM tables, in the PHI zone and in the de-identified one (README: The asset graph).

Each reader result carries one of these schemas explicitly, so a block whose rows all lack a
value never infers `null` columns. Attribute names are DICOM keywords with their tags; text is
kept as the file has it (dates `YYYYMMDD`, names with `^` between components), stripped of
the padding spaces DICOM adds.
"""

import pyarrow as pa

from medical_assets.columns import column, description_of, source_of
from medical_assets.dicom.thumbnails import THUMBNAIL_SIZE
from medical_assets.privacy.declarations import Treatment as ColumnTreatment
from medical_assets.privacy.declarations import declared

_SOURCE_FILE = column("source_file", pa.string(), "landing file", "Path of the landing file, as in the landing manifest.")
_PIXEL_DATA = "(7FE0,0010) PixelData"
_OF_STORED_VALUES = (
    "over the stored values of every frame and sample, as pydicom's pixel_array returns them (before "
    "RescaleSlope/Intercept); null without pixel data or when decoding fails."
)

DICOM_IMAGES = pa.schema(
    [
        _SOURCE_FILE,
        column("sop_instance_uid", pa.string(), "(0008,0018) SOPInstanceUID",
               "The image's UID; else the file meta's MediaStorageSOPInstanceUID (0002,0003)."),
        column("sop_class_uid", pa.string(), "(0008,0016) SOPClassUID",
               "Kind of object (CT image, secondary capture, ...); else the file meta's MediaStorageSOPClassUID (0002,0002)."),
        column("study_instance_uid", pa.string(), "(0020,000D) StudyInstanceUID"),
        column("series_instance_uid", pa.string(), "(0020,000E) SeriesInstanceUID"),
        column("series_number", pa.int32(), "(0020,0011) SeriesNumber", "Number of the series in its study."),
        column("instance_number", pa.int32(), "(0020,0013) InstanceNumber", "Number of the image in its series."),
        column("patient_id", pa.string(), "(0010,0020) PatientID"),
        # The fallback to institution_name is the de-identification's to make, not the reader's
        column("patient_id_issuer", pa.string(), "(0010,0021) IssuerOfPatientID",
               "The PatientID's assigning authority; null when absent."),
        column("patient_name", pa.string(), "(0010,0010) PatientName", "As written, e.g. FAMILY^GIVEN^MIDDLE."),
        column("patient_birth_date", pa.string(), "(0010,0030) PatientBirthDate", "YYYYMMDD as written."),
        column("patient_age", pa.string(), "(0010,1010) PatientAge", "As written, e.g. 089Y."),
        column("patient_sex", pa.string(), "(0010,0040) PatientSex", "M, F or O."),
        column("accession_number", pa.string(), "(0008,0050) AccessionNumber"),
        column("modality", pa.string(), "(0008,0060) Modality", "Acquisition modality, e.g. CT, MR, CR, US."),
        column("study_date", pa.string(), "(0008,0020) StudyDate", "YYYYMMDD as written."),
        column("study_description", pa.string(), "(0008,1030) StudyDescription"),
        column("series_description", pa.string(), "(0008,103E) SeriesDescription"),
        column("body_part_examined", pa.string(), "(0018,0015) BodyPartExamined", "Body part examined, as written (e.g. CHEST)."),
        column("institution_name", pa.string(), "(0008,0080) InstitutionName"),
        column("manufacturer", pa.string(), "(0008,0070) Manufacturer", "Manufacturer of the equipment."),
        column("manufacturer_model_name", pa.string(), "(0008,1090) ManufacturerModelName", "Model of the equipment."),
        column("rows", pa.int32(), "(0028,0010) Rows", "Image height in pixels."),
        column("columns", pa.int32(), "(0028,0011) Columns", "Image width in pixels."),
        column("number_of_frames", pa.int32(), "(0028,0008) NumberOfFrames",
               "1 for an image without it; null without pixel data or when invalid."),
        column("samples_per_pixel", pa.int32(), "(0028,0002) SamplesPerPixel", "1 grey, 3 colour."),
        column("photometric_interpretation", pa.string(), "(0028,0004) PhotometricInterpretation",
               "How pixel values map to colour, e.g. MONOCHROME2, RGB."),
        column("bits_allocated", pa.int32(), "(0028,0100) BitsAllocated", "Bits per stored sample."),
        column("bits_stored", pa.int32(), "(0028,0101) BitsStored", "Bits of each sample that hold the value."),
        column("pixel_representation", pa.int32(), "(0028,0103) PixelRepresentation", "0 unsigned, 1 signed."),
        column("pixel_spacing", pa.list_(pa.float64()), "(0028,0030) PixelSpacing",
               "In mm as the file orders it: [between rows, between columns]."),
        column("slice_thickness", pa.float64(), "(0018,0050) SliceThickness", "In mm."),
        column("window_center", pa.float64(), "(0028,1050) WindowCenter", "First value when several."),
        column("window_width", pa.float64(), "(0028,1051) WindowWidth", "First value when several."),
        column("rescale_slope", pa.float64(), "(0028,1053) RescaleSlope", "Stored value to output units."),
        column("rescale_intercept", pa.float64(), "(0028,1052) RescaleIntercept", "E.g. -1024 for CT Hounsfield units."),
        column("burned_in_annotation", pa.string(), "(0028,0301) BurnedInAnnotation", "YES or NO as written."),
        column("transfer_syntax_uid", pa.string(), "(0002,0010) TransferSyntaxUID",
               "For a file without one, the uncompressed syntax its data set was read in."),
        column("file_size_bytes", pa.int64(), "landing file", "Size of the file in bytes."),
        column("has_preamble", pa.bool_(), "landing file", "The 128-byte preamble and \"DICM\" marker are there."),
        column("has_pixel_data", pa.bool_(), _PIXEL_DATA, "PixelData, or its float or double float forms, is there."),
        column("pixel_mean", pa.float64(), _PIXEL_DATA, f"Mean {_OF_STORED_VALUES}"),
        column("pixel_std", pa.float64(), _PIXEL_DATA, f"Population standard deviation {_OF_STORED_VALUES}"),
        column("pixel_min", pa.float64(), _PIXEL_DATA, f"Minimum {_OF_STORED_VALUES}"),
        column("pixel_max", pa.float64(), _PIXEL_DATA, f"Maximum {_OF_STORED_VALUES}"),
        column("pixel_error", pa.string(), "derived", "Why the pixel data could not be decoded; null when it was."),
    ]
)

DICOM_ERRORS = pa.schema(
    [
        _SOURCE_FILE,
        column("error", pa.string(), "derived", "Why the file was not read: a reason a person can act on; never patient data."),
    ]
)

_THUMBNAIL_TYPE = pa.fixed_shape_tensor(pa.float32(), (THUMBNAIL_SIZE, THUMBNAIL_SIZE))
_THUMBNAIL = f"The middle frame as luma, area-averaged to {THUMBNAIL_SIZE} x {THUMBNAIL_SIZE}, min-max normalised to [0, 1]."
_FRAME_INDEX = "0-based frame the thumbnail shows (the middle one)."

DICOM_THUMBNAILS = pa.schema(
    [
        _SOURCE_FILE,
        column("sop_instance_uid", pa.string(), "(0008,0018) SOPInstanceUID", "To join dicom_images."),
        column("frame_index", pa.int32(), "derived", _FRAME_INDEX),
        column("thumbnail", _THUMBNAIL_TYPE, _PIXEL_DATA, _THUMBNAIL),
    ]
)

TABLES = {
    "dicom_images": DICOM_IMAGES,
    "dicom_thumbnails": DICOM_THUMBNAILS,
    "dicom_errors": DICOM_ERRORS,
}

# PHI zone: images kept out of the de-identified export, and why (burned-in text, a failure).
DICOM_DEID_EXCLUDED = pa.schema(
    [
        _SOURCE_FILE,
        column("sop_instance_uid", pa.string(), "(0008,0018) SOPInstanceUID", "The original UID, to find the image."),
        column("modality", pa.string(), "(0008,0060) Modality"),
        column("reason", pa.string(), "derived",
               "Why the image was kept out (burned-in text risk, a failure); a reason a person can act on, never patient data."),
        column("detail", pa.string(), "derived", "The error's own message; it may quote the file, so PHI zone only."),
    ]
)

# Each column declared with its treatment, as the HL7 tables' are (`privacy.declarations`).
T = ColumnTreatment

# De-identified zone: thumbnails of exported images only, joined on the new SOP Instance UID.
DEID_DICOM_THUMBNAILS = pa.schema(
    [
        declared("sop_instance_uid", pa.string(), T.TOKENISE, "(0008,0018) SOPInstanceUID",
                 "Keyed replacement UID under the 2.25 root, as in the de-identified dicom_images."),
        declared("frame_index", pa.int32(), T.DERIVED, "derived", _FRAME_INDEX),
        declared("thumbnail", _THUMBNAIL_TYPE, T.GENERALISE, _PIXEL_DATA,
                 f"{_THUMBNAIL} Only images cleared of burned-in text risk are exported."),
    ]
)


def _copied(treatment: ColumnTreatment, *names: str) -> list[pa.Field]:
    """PHI dicom_images columns published under `treatment`, with the source and description the PHI column declares."""
    return [_declared_as_phi(name, treatment) for name in names]


def _declared_as_phi(name: str, treatment: ColumnTreatment) -> pa.Field:
    field = DICOM_IMAGES.field(name)
    return declared(name, field.type, treatment, source_of(field), description_of(field))


_NEW_UID = "Keyed replacement UID under the 2.25 root."
DEID_DICOM_IMAGES = pa.schema(
    [
        declared("deid_file", pa.string(), T.TOKENISE, "new UIDs", "deid/dicom/<study>/<series>/<sop>.dcm of the exported file."),
        # The UIDs of the de-identified file: keyed replacements (Pseudonymizer.uid) of the originals
        declared("sop_instance_uid", pa.string(), T.TOKENISE, "(0008,0018) SOPInstanceUID", _NEW_UID),
        declared("study_instance_uid", pa.string(), T.TOKENISE, "(0020,000D) StudyInstanceUID", _NEW_UID),
        declared("series_instance_uid", pa.string(), T.TOKENISE, "(0020,000E) SeriesInstanceUID", _NEW_UID),
        *_copied(T.CODE, "sop_class_uid"),
        *_copied(T.NUMBER, "series_number", "instance_number"),
        # Pseudonymizer.token("patient", patient_identity(PatientID, issuer)): the HL7 tables' token of PID-3
        declared("patient_token", pa.string(), T.TOKENISE, "(0010,0020) PatientID + (0010,0021) IssuerOfPatientID",
                 "Keyed token of the patient (MRN with its issuer, else InstitutionName), the same as the HL7 tables'."),
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
        declared("burned_in_risk", pa.string(), T.DERIVED, "SOP class, ImageType, modality, flag",
                 "Why the image may carry text in its pixels."),
        *_copied(T.CODE, "transfer_syntax_uid"),
        *_copied(T.NUMBER, "file_size_bytes", "has_pixel_data", "pixel_mean", "pixel_std", "pixel_min", "pixel_max"),
        *_copied(T.DERIVED, "pixel_error"),
    ]
)
