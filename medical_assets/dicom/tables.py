"""Arrow schemas of the DICOM tables in the PHI zone (README: The asset graph).

Each reader result carries one of these schemas explicitly, so a block whose rows all lack a
value never infers `null` columns. Attribute names are DICOM keywords with their tags; text is
kept as the file has it (dates `YYYYMMDD`, names with `^` between components), stripped of
the padding spaces DICOM adds.
"""

import pyarrow as pa

from medical_assets.dicom.thumbnails import THUMBNAIL_SIZE

DICOM_IMAGES = pa.schema(
    [
        pa.field("source_file", pa.string()),
        # SOPInstanceUID (0008,0018), else the file meta's MediaStorageSOPInstanceUID (0002,0003)
        pa.field("sop_instance_uid", pa.string()),
        # SOPClassUID (0008,0016), else the file meta's MediaStorageSOPClassUID (0002,0002)
        pa.field("sop_class_uid", pa.string()),
        pa.field("study_instance_uid", pa.string()),  # StudyInstanceUID (0020,000D)
        pa.field("series_instance_uid", pa.string()),  # SeriesInstanceUID (0020,000E)
        pa.field("series_number", pa.int32()),  # SeriesNumber (0020,0011)
        pa.field("instance_number", pa.int32()),  # InstanceNumber (0020,0013)
        pa.field("patient_id", pa.string()),  # PatientID (0010,0020)
        # IssuerOfPatientID (0010,0021), the PatientID's assigning authority; null when absent (the
        # fallback to institution_name is the de-identification's to make, not the reader's)
        pa.field("patient_id_issuer", pa.string()),
        pa.field("patient_name", pa.string()),  # PatientName (0010,0010), e.g. FAMILY^GIVEN^MIDDLE
        pa.field("patient_birth_date", pa.string()),  # PatientBirthDate (0010,0030), YYYYMMDD
        pa.field("patient_age", pa.string()),  # PatientAge (0010,1010) as written, e.g. 089Y
        pa.field("patient_sex", pa.string()),  # PatientSex (0010,0040): M, F or O
        pa.field("accession_number", pa.string()),  # AccessionNumber (0008,0050)
        pa.field("modality", pa.string()),  # Modality (0008,0060), e.g. CT, MR, CR, US
        pa.field("study_date", pa.string()),  # StudyDate (0008,0020), YYYYMMDD
        pa.field("study_description", pa.string()),  # StudyDescription (0008,1030)
        pa.field("series_description", pa.string()),  # SeriesDescription (0008,103E)
        pa.field("body_part_examined", pa.string()),  # BodyPartExamined (0018,0015)
        pa.field("institution_name", pa.string()),  # InstitutionName (0008,0080)
        pa.field("manufacturer", pa.string()),  # Manufacturer (0008,0070)
        pa.field("manufacturer_model_name", pa.string()),  # ManufacturerModelName (0008,1090)
        pa.field("rows", pa.int32()),  # Rows (0028,0010)
        pa.field("columns", pa.int32()),  # Columns (0028,0011)
        # NumberOfFrames (0028,0008); 1 for an image without it, null without pixel data or when invalid
        pa.field("number_of_frames", pa.int32()),
        pa.field("samples_per_pixel", pa.int32()),  # SamplesPerPixel (0028,0002): 1 grey, 3 colour
        pa.field("photometric_interpretation", pa.string()),  # PhotometricInterpretation (0028,0004)
        pa.field("bits_allocated", pa.int32()),  # BitsAllocated (0028,0100)
        pa.field("bits_stored", pa.int32()),  # BitsStored (0028,0101)
        pa.field("pixel_representation", pa.int32()),  # PixelRepresentation (0028,0103): 0 unsigned, 1 signed
        # PixelSpacing (0028,0030) in mm as the file orders it: [between rows, between columns]
        pa.field("pixel_spacing", pa.list_(pa.float64())),
        pa.field("slice_thickness", pa.float64()),  # SliceThickness (0018,0050), mm
        pa.field("window_center", pa.float64()),  # WindowCenter (0028,1050), first value when several
        pa.field("window_width", pa.float64()),  # WindowWidth (0028,1051), first value when several
        pa.field("rescale_slope", pa.float64()),  # RescaleSlope (0028,1053): stored value to output units
        pa.field("rescale_intercept", pa.float64()),  # RescaleIntercept (0028,1052), e.g. -1024 for CT HU
        pa.field("burned_in_annotation", pa.string()),  # BurnedInAnnotation (0028,0301): YES or NO as written
        # TransferSyntaxUID (0002,0010); for a file without one, the uncompressed syntax its data set was read in
        pa.field("transfer_syntax_uid", pa.string()),
        pa.field("file_size_bytes", pa.int64()),
        pa.field("has_preamble", pa.bool_()),  # the 128-byte preamble and "DICM" marker are there
        pa.field("has_pixel_data", pa.bool_()),  # PixelData (7FE0,0010), or its float or double float forms
        # Statistics over the stored values of every frame and sample, as pydicom's pixel_array
        # returns them (before RescaleSlope/Intercept); null without pixel data or when it fails.
        pa.field("pixel_mean", pa.float64()),
        pa.field("pixel_std", pa.float64()),  # population standard deviation
        pa.field("pixel_min", pa.float64()),
        pa.field("pixel_max", pa.float64()),
        pa.field("pixel_error", pa.string()),  # why the pixel data could not be decoded; null when it was
    ]
)

DICOM_ERRORS = pa.schema(
    [
        pa.field("source_file", pa.string()),
        pa.field("error", pa.string()),  # a reason a person can act on; never patient data
    ]
)

DICOM_THUMBNAILS = pa.schema(
    [
        pa.field("source_file", pa.string()),
        pa.field("sop_instance_uid", pa.string()),  # (0008,0018), to join dicom_images
        pa.field("frame_index", pa.int32()),  # 0-based frame the thumbnail shows (the middle one)
        # Middle frame as luma, area-averaged to 64 x 64, min-max normalised to [0, 1].
        pa.field("thumbnail", pa.fixed_shape_tensor(pa.float32(), (THUMBNAIL_SIZE, THUMBNAIL_SIZE))),
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
        pa.field("source_file", pa.string()),
        pa.field("sop_instance_uid", pa.string()),  # the original UID, to find the image
        pa.field("modality", pa.string()),
        pa.field("reason", pa.string()),  # a reason a person can act on; never patient data
        pa.field("detail", pa.string()),  # the error's own message (may quote the file: PHI zone only)
    ]
)

# De-identified zone: thumbnails of exported images only, joined on the new SOP Instance UID.
DEID_DICOM_THUMBNAILS = pa.schema(
    [
        pa.field("sop_instance_uid", pa.string()),  # keyed replacement UID, as in deid dicom_images
        pa.field("frame_index", pa.int32()),
        pa.field("thumbnail", pa.fixed_shape_tensor(pa.float32(), (THUMBNAIL_SIZE, THUMBNAIL_SIZE))),
    ]
)
