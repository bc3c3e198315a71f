"""The DICOM reader over pydicom's own test files, damaged copies of them, and files that are not DICOM."""

import logging
import random
import warnings
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data.data_manager import DATA_ROOT
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import MPEG2MPML, ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from medical_assets.dicom import ParsedDicomFile, is_dicom_candidate, read_dicom_file, tables
from medical_assets.dicom.pixels import _decode_12_bit_jpeg_with_gdcm

# The files the pydicom wheel ships. get_testdata_files("*") lists the same ones offline, but
# first spends about 15 s failing to download the pydicom-data files it also names.
TEST_FILES = sorted(path for path in Path(DATA_ROOT, "test_files").glob("*") if path.is_file())

# Files that are not DICOM at all: an error row that says so.
NOT_DICOM = {
    "README.txt": "looks like text",
    "rtplan.dump": "looks like text",
    "rtstruct.dump": "looks like text",
    "test1.json": "looks like text",
    "test_PN.json": "looks like text",
    "zipMR.gz": "looks like a gzip archive",
    "crayons.icc": "looks like an ICC colour profile",
    # CT_small.dcm from byte 335 on: one stray byte (the last of its file meta) before the first
    # element, so no tag is where it should be; pydicom, forced, reads one garbage element.
    "no_meta.dcm": "does not start with a group 0002 or 0008 element",
}
# DICOM files broken on purpose whose header is still unreadable: an error row.
BROKEN_FILES = {
    # A sequence cut off: 976 bytes declared, 711 present.
    "rtplan_truncated.dcm": "file is truncated: element (300A,00B0) declares 976 bytes but the file holds 711",
}
# DICOM files whose header reads but whose pixel data is broken on purpose: pixel_error says why.
BROKEN_PIXEL_DATA = {
    "MR_truncated.dcm": "pixel data truncated: expected 8192 bytes, found 8130",
    "badVR.dcm": "Number of Frames (0028,0008) is not a whole number ('1A')",
    # Two-byte pixel data stubs in files made to test private sequences and a missing transfer syntax.
    "nested_priv_SQ.dcm": "Missing required element: (0028,0100) 'Bits Allocated'",
    "meta_missing_tsyntax.dcm": "Missing required element: (0028,0100) 'Bits Allocated'",
    # JPEG2000.dcm with four codestream bytes overwritten by a sequence delimiter tag.
    "JPEG2000-embedded-sequence-delimiter.dcm": "pylibjpeg: Error decoding the J2K data: failed to read the header",
}
# 12-bit JPEG Extended, which pydicom cannot decode without the GPL libjpeg plugin. JPEG-lossy.dcm
# is JPGExtended.dcm with an invalid SOS (Se not 63); GDCM decodes both to the same values.
DECODED_BY_THE_GDCM_FALLBACK = {"JPGExtended.dcm", "JPEG-lossy.dcm"}


@pytest.fixture(scope="module")
def results() -> dict[str, ParsedDicomFile]:
    return {path.name: read_dicom_file(path.read_bytes(), path.name) for path in TEST_FILES}


@pytest.fixture(scope="module")
def image_rows(results) -> dict[str, dict]:
    return {name: result.images.to_pylist()[0] for name, result in results.items() if result.images.num_rows}


def error_of(result: ParsedDicomFile) -> str:
    assert result.images.num_rows == 0 and result.errors.num_rows == 1
    return result.errors.to_pylist()[0]["error"]


def image_row(result: ParsedDicomFile) -> dict:
    assert result.errors.num_rows == 0 and result.images.num_rows == 1
    return result.images.to_pylist()[0]


def dataset_of(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True)


def pixel_array_of(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MR_small_padded.dcm: "128 bytes of excess padding"
        return dataset_of(path).pixel_array


def test_the_wheel_ships_the_files_this_test_knows():
    # pydicom 3.0.2's wheel: a new version's files want a look before the counts below change.
    names = {path.name for path in TEST_FILES}
    assert len(names) == 85
    assert set(NOT_DICOM) | set(BROKEN_FILES) | set(BROKEN_PIXEL_DATA) | DECODED_BY_THE_GDCM_FALLBACK <= names


def test_every_file_is_in_exactly_one_table_with_its_schema(results):
    for name, result in results.items():
        assert result.images.schema == tables.DICOM_IMAGES
        assert result.errors.schema == tables.DICOM_ERRORS
        assert result.images.num_rows + result.errors.num_rows == 1, name
        table = result.images if result.images.num_rows else result.errors
        assert table["source_file"].to_pylist() == [name]


def test_files_that_are_not_dicom_are_error_rows_saying_what_they_look_like(results):
    for name, reason in NOT_DICOM.items():
        error = error_of(results[name])
        assert error.startswith("not a DICOM file") and reason in error, (name, error)


def test_broken_files_are_error_rows_saying_why(results):
    for name, reason in BROKEN_FILES.items():
        assert error_of(results[name]) == reason
    unexpected = {
        name: error_of(result)
        for name, result in results.items()
        if result.errors.num_rows and name not in NOT_DICOM | BROKEN_FILES
    }
    assert unexpected == {}


def test_broken_pixel_data_is_a_pixel_error_saying_why(image_rows):
    for name, reason in BROKEN_PIXEL_DATA.items():
        row = image_rows[name]
        assert row["has_pixel_data"] and reason in row["pixel_error"], (name, row["pixel_error"])
        assert row["pixel_mean"] is row["pixel_std"] is row["pixel_min"] is row["pixel_max"] is None
    assert "RuntimeError: could not decode JPEG 2000 Image Compression pixel data" in (
        image_rows["JPEG2000-embedded-sequence-delimiter.dcm"]["pixel_error"]
    )


def test_every_other_file_with_pixel_data_decodes(image_rows):
    failures = {
        name: row["pixel_error"]
        for name, row in image_rows.items()
        if name not in BROKEN_PIXEL_DATA and (row["pixel_error"] or row["has_pixel_data"] and row["pixel_mean"] is None)
    }
    assert failures == {}
    decoded = [name for name, row in image_rows.items() if row["pixel_mean"] is not None]
    assert len(decoded) == 59


def test_statistics_are_numpys_over_pydicoms_pixel_array(image_rows):
    for name, row in image_rows.items():
        if row["pixel_mean"] is None or name in DECODED_BY_THE_GDCM_FALLBACK:
            continue
        pixels = pixel_array_of(Path(DATA_ROOT, "test_files", name))
        assert row["pixel_mean"] == pytest.approx(np.mean(pixels), rel=1e-12), name
        assert row["pixel_std"] == pytest.approx(np.std(pixels), rel=1e-9), name
        assert row["pixel_min"] == float(np.min(pixels)), name
        assert row["pixel_max"] == float(np.max(pixels)), name


def test_twelve_bit_jpeg_extended_decodes_through_gdcm_as_pydicoms_reference_data(image_rows):
    # pydicom cannot decode it without the GPL libjpeg plugin; its reference values come from there.
    dataset = dataset_of(Path(DATA_ROOT, "test_files", "JPGExtended.dcm"))
    pixels = _decode_12_bit_jpeg_with_gdcm(dataset)
    assert pixels.shape == (1024, 256) and pixels.dtype == np.uint16
    assert (pixels[420, 140], pixels[230, 120]) == (244, 95)
    row = image_rows["JPGExtended.dcm"]
    assert row["pixel_mean"] == pytest.approx(np.mean(pixels), rel=1e-12)
    assert row["pixel_std"] == pytest.approx(np.std(pixels), rel=1e-9)
    assert (row["pixel_min"], row["pixel_max"]) == (float(pixels.min()), float(pixels.max()))
    statistics = ("pixel_mean", "pixel_std", "pixel_min", "pixel_max")
    assert [image_rows["JPEG-lossy.dcm"][key] for key in statistics] == [row[key] for key in statistics]


def test_multi_frame_and_colour_statistics_cover_every_frame_and_sample(image_rows):
    row = image_rows["SC_rgb_rle_32bit_2frame.dcm"]
    assert (row["number_of_frames"], row["samples_per_pixel"]) == (2, 3)
    # Two frames of the same test pattern, the second inverted: every value and its complement.
    assert row["pixel_mean"] == pytest.approx((2**32 - 1) / 2)
    assert image_rows["examples_ybr_color.dcm"]["number_of_frames"] == 30


def test_attributes_are_read_as_the_file_has_them(image_rows):
    row = image_rows["CT_small.dcm"]
    assert row["modality"] == "CT"
    assert row["patient_name"] == "CompressedSamples^CT1"
    assert row["patient_id"] == "1CT1"
    assert row["study_date"] == "20040119"
    assert (row["rows"], row["columns"], row["number_of_frames"]) == (128, 128, 1)
    assert row["pixel_spacing"] == [0.661468, 0.661468]
    assert row["slice_thickness"] == 5.0
    assert (row["rescale_slope"], row["rescale_intercept"]) == (1.0, -1024.0)
    assert row["transfer_syntax_uid"] == "1.2.840.10008.1.2.1"
    assert row["has_preamble"] and row["file_size_bytes"] == 39206
    assert row["sop_instance_uid"] == "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"


def test_patient_identity_attributes_are_read_as_the_file_has_them(image_rows):
    row = image_rows["CT_small.dcm"]
    assert row["patient_id_issuer"] is None  # no IssuerOfPatientID: null, not InstitutionName
    assert row["institution_name"] == "JFK IMAGING CENTER"
    assert row["patient_age"] == "000Y"
    assert image_rows["examples_overlay.dcm"]["patient_age"] == "058Y"
    assert image_rows["JPEG2000.dcm"]["patient_age"] is None  # present but empty


def test_issuer_of_patient_id_is_read_apart_from_the_institution():
    """Two hospitals' PatientID RT0001: the issuer column is what tells them apart downstream."""
    rows = []
    for issuer, institution in (("HOSP_A ", "GENERAL HOSPITAL"), ("HOSP_B", "GENERAL HOSPITAL")):
        dataset = synthetic_image()
        dataset.IssuerOfPatientID = issuer  # a padded value, as LO allows
        dataset.InstitutionName = institution
        dataset.PatientAge = "089Y"
        rows.append(image_row(read_dicom_file(file_bytes(dataset), "issuer.dcm")))
    assert [(row["patient_id"], row["patient_id_issuer"]) for row in rows] == [("RT0001", "HOSP_A"), ("RT0001", "HOSP_B")]
    assert {row["institution_name"] for row in rows} == {"GENERAL HOSPITAL"}
    assert {row["patient_age"] for row in rows} == {"089Y"}


def test_an_invalid_value_is_null_not_an_exception(image_rows):
    row = image_rows["badVR.dcm"]
    assert row["number_of_frames"] is None and row["rows"] == 10


def test_files_without_pixel_data_have_null_statistics_and_no_pixel_error(image_rows):
    for name in ("test-SR.dcm", "rtplan.dcm", "waveform_ecg.dcm", "reportsi.dcm"):
        row = image_rows[name]
        assert not row["has_pixel_data"] and row["pixel_error"] is None and row["pixel_mean"] is None, name
        assert row["number_of_frames"] is None


def test_files_without_preamble_or_file_meta(image_rows):
    row = image_rows["ExplVR_BigEndNoMeta.dcm"]
    assert not row["has_preamble"]
    assert row["modality"] == "RTPLAN"
    assert row["transfer_syntax_uid"] == "1.2.840.10008.1.2.2"  # the encoding it was read in
    assert not image_rows["rtstruct.dcm"]["has_preamble"]


def test_a_file_stripped_of_its_preamble_reads_the_same():
    data = Path(DATA_ROOT, "test_files", "MR_small.dcm").read_bytes()
    whole = image_row(read_dicom_file(data, "MR_small.dcm"))
    stripped = image_row(read_dicom_file(data[132:], "MR_small.dcm"))
    assert not stripped["has_preamble"] and whole["has_preamble"]
    differing = {key for key in whole if whole[key] != stripped[key]}
    assert differing == {"has_preamble", "file_size_bytes"}


def test_pixel_data_of_a_file_without_file_meta_decodes_in_the_syntax_it_was_read_in():
    dataset = synthetic_image()
    body = bare_data_set_bytes(dataset)
    row = image_row(read_dicom_file(body, "raw.dcm"))
    assert not row["has_preamble"] and row["transfer_syntax_uid"] == "1.2.840.10008.1.2.1"
    assert row["pixel_error"] is None and row["pixel_max"] == 15.0


def test_an_empty_file():
    assert error_of(read_dicom_file(b"", "empty.dcm")) == "file is empty"


def test_a_two_byte_stub():
    assert "2 bytes are too few" in error_of(read_dicom_file(b"\x08\x00", "stub.dcm"))


def test_a_text_file_named_dcm():
    text = b"Patient: SMITH^JOHN\r\nThis is a referral letter, not an image.\r\n" * 5
    assert "looks like text" in error_of(read_dicom_file(text, "letter.dcm"))


def test_a_png_like_binary():
    png = b"\x89PNG\r\n\x1a\n" + bytes(random.Random(1).randrange(256) for _ in range(600))
    assert "looks like a PNG image" in error_of(read_dicom_file(png, "photo.dcm"))


def test_a_preamble_with_nothing_after_it():
    error = error_of(read_dicom_file(bytes(128) + b"DICM", "preamble.dcm"))
    assert error == "file holds no data elements after its file meta information"
    assert "ends inside the 128-byte preamble" in error_of(read_dicom_file(bytes(100), "zeros.dcm"))


def test_a_file_cut_in_its_pixel_data_keeps_its_header_with_a_pixel_error():
    data = Path(DATA_ROOT, "test_files", "CT_small.dcm").read_bytes()
    row = image_row(read_dicom_file(data[:20_000], "CT_small.dcm"))
    assert row["patient_id"] == "1CT1" and row["has_pixel_data"]
    assert row["pixel_error"] == "pixel data truncated: expected 32768 bytes, found 13700"
    encapsulated = Path(DATA_ROOT, "test_files", "JPEG2000.dcm").read_bytes()
    row = image_row(read_dicom_file(encapsulated[:3200], "JPEG2000.dcm"))
    assert row["has_pixel_data"] and "pixel data truncated" in row["pixel_error"]


def test_a_file_cut_before_its_pixel_data_is_an_error_row_or_says_pixels_are_missing():
    data = Path(DATA_ROOT, "test_files", "CT_small.dcm").read_bytes()
    assert error_of(read_dicom_file(data[:1000], "CT_small.dcm")).startswith("file is truncated")
    pixel_data_offset = data.index(b"\xe0\x7f\x10\x00")
    row = image_row(read_dicom_file(data[:pixel_data_offset], "CT_small.dcm"))
    assert not row["has_pixel_data"] and "the file may be truncated" in row["pixel_error"]


def test_every_cut_of_an_image_file_is_reported():
    """A cut inside an element or its header is always seen; only a cut between two elements
    before the image attributes reads as a shorter, valid file."""
    for name in ("CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm"):
        data = Path(DATA_ROOT, "test_files", name).read_bytes()
        image_attributes_end = data.index(b"\x28\x00\x00\x01") + 10  # after Bits Allocated (0028,0100)
        for cut in range(image_attributes_end, len(data) - 8, 97):
            result = read_dicom_file(data[:cut], name)
            if result.images.num_rows:
                assert image_row(result)["pixel_error"], (name, cut)
            else:
                assert error_of(result).startswith("file is truncated"), (name, cut)
    deflated = Path(DATA_ROOT, "test_files", "image_dfl.dcm").read_bytes()
    for cut in range(400, len(deflated) - 8, 97):
        assert error_of(read_dicom_file(deflated[:cut], "image_dfl.dcm")).startswith("deflated data set is truncated")


def test_error_texts_never_quote_the_patient():
    """Damaged copies of every file with a patient: no error row or pixel_error names them."""
    for path in TEST_FILES:
        if path.name in NOT_DICOM:
            continue
        dataset = dataset_of(path)
        identifiers = {str(dataset.get(keyword) or "") for keyword in ("PatientName", "PatientID")}
        identifiers = {identifier for identifier in identifiers if len(identifier) >= 3}
        if not identifiers:
            continue
        data = path.read_bytes()
        for cut in range(140, len(data), max(1, len(data) // 25)):
            result = read_dicom_file(data[:cut], path.name)
            texts = result.errors["error"].to_pylist() + result.images["pixel_error"].to_pylist()
            for text in filter(None, texts):
                assert not any(identifier in text for identifier in identifiers), (path.name, cut, text)


def test_random_bytes_after_a_preamble_never_raise():
    generator = random.Random(7)
    for size in (4, 12, 100, 1000, 10_000):
        for _ in range(20):
            data = bytes(128) + b"DICM" + bytes(generator.randrange(256) for _ in range(size))
            result = read_dicom_file(data, "noise.dcm")
            assert result.images.num_rows + result.errors.num_rows == 1


def test_a_transfer_syntax_without_decoder_says_so():
    dataset = synthetic_image()
    dataset.file_meta.TransferSyntaxUID = MPEG2MPML
    dataset.PixelData = pydicom.encaps.encapsulate([b"\x00\x00\x01\xb3" + bytes(60)])
    row = image_row(read_dicom_file(file_bytes(dataset), "video.dcm"))
    assert row["pixel_error"] == (
        "NotImplementedError: pydicom has no pixel data decoder for transfer syntax "
        "1.2.840.10008.1.2.4.100 (MPEG2 Main Profile / Main Level)"
    )


def test_dicom_candidates_follow_the_contract():
    with_marker = bytes(128) + b"DICM"
    assert is_dicom_candidate("a/b/IMG0001.dcm", b"")
    assert is_dicom_candidate("SCAN.DICOM", b"")
    assert is_dicom_candidate("a/b/IM000001", with_marker)
    assert is_dicom_candidate("1.2.840.113619.2.55.3.604688119.969.1268071029.320", with_marker)
    assert not is_dicom_candidate("a/b/IM000001", bytes(132))
    assert not is_dicom_candidate("notes.txt", with_marker)
    assert not is_dicom_candidate("scan.dcm.gz", with_marker)


def synthetic_image() -> Dataset:
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["reader test"])
    dataset.SOPClassUID = SecondaryCaptureImageStorage
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID
    dataset.Modality = "OT"
    dataset.PatientID = "RT0001"
    dataset.Rows, dataset.Columns = 4, 4
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 8, 8, 7, 0
    dataset.PixelData = bytes(range(16))
    return dataset


def file_bytes(dataset: Dataset) -> bytes:
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def bare_data_set_bytes(dataset: Dataset) -> bytes:
    """The data set alone, as old archives hold it: no preamble, no file meta."""
    buffer = BytesIO()
    Dataset(dataset).save_as(buffer, implicit_vr=False, little_endian=True)
    return buffer.getvalue()


@pytest.fixture(autouse=True, scope="module")
def quiet_pydicom():
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)
