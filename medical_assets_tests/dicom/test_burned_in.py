"""Images whose pixels may show text are kept out of the de-identified export, with a reason, judged
from the SOP class, Image Type, Conversion Type, modality, the Burned In Annotation flag and the
pydicom/deid rule set; a plain CT goes out."""

import secrets
import warnings
from io import BytesIO

import pyarrow as pa
import pydicom
import pytest
from pydicom import uid
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from medical_assets.dicom import read_dicom_file
from medical_assets.dicom.burned_in import burned_in_risk, export_risk
from medical_assets.dicom.export import export_deidentified
from medical_assets.dicom.tables import DICOM_THUMBNAILS
from medical_assets.privacy.keys import parse_key_ring
from medical_assets.privacy.pseudonyms import Pseudonymizer


@pytest.fixture(scope="module")
def pseudonymizer() -> Pseudonymizer:
    return Pseudonymizer(parse_key_ring(secrets.token_urlsafe(32)).current)


def _ct(**attributes) -> Dataset:
    """pydicom's CT, a plain original axial image without a Burned In Annotation flag, changed as asked."""
    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for keyword, value in attributes.items():
        if value is None:
            dataset.pop(keyword, None)
        else:
            setattr(dataset, keyword, value)
    if "SOPClassUID" in attributes:
        dataset.file_meta.MediaStorageSOPClassUID = attributes["SOPClassUID"]
    return dataset


def _bytes(dataset: Dataset) -> bytes:
    buffer = BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


def _export(files: dict[str, bytes], pseudonymizer: Pseudonymizer):
    images = [read_dicom_file(data, name).images for name, data in files.items()]
    written = {}
    result = export_deidentified(
        pa.concat_tables(images),
        DICOM_THUMBNAILS.empty_table(),
        files.__getitem__,
        written.__setitem__,
        pseudonymizer,
        "safe_harbor",
    )
    return result, written


# A CT dose screen saved as a Secondary Capture: no flag, the patient's name in its pixels.
DOSE_SCREEN = {
    "SOPClassUID": uid.SecondaryCaptureImageStorage,
    "ImageType": ["DERIVED", "SECONDARY", "SCREEN SAVE"],
    "BurnedInAnnotation": None,
}


def test_a_secondary_capture_dose_screen_without_flag_is_kept_out_with_a_reason(pseudonymizer):
    """Attack: a CT dose screen stored as a Secondary Capture (Image Type DERIVED\\SECONDARY\\SCREEN SAVE,
    Modality CT, no Burned In Annotation) shows the patient's name in its pixels; a screen by modality
    and flag alone exports it unchanged. It must be excluded, with a reason, and no file written."""
    assert burned_in_risk("CT", None) is None  # what the modality-and-flag screen said
    result, written = _export({"dose.dcm": _bytes(_ct(**DOSE_SCREEN))}, pseudonymizer)
    assert written == {} and result["dicom_images"].num_rows == 0
    [excluded] = result["dicom_deid_excluded"].to_pylist()
    assert excluded["source_file"] == "dose.dcm"
    assert "Secondary Capture" in excluded["reason"]


def test_a_screen_save_in_a_ct_class_saying_no_is_caught_by_the_files_header(pseudonymizer):
    """Attack: the PHI row (CT, CT Image Storage, flag NO) looks clean; only the file's Image Type
    says it is a saved screen. The export reads the header before it writes the file."""
    dataset = _ct(ImageType=["DERIVED", "SECONDARY", "SCREEN SAVE"], BurnedInAnnotation="NO")
    result, written = _export({"screen.dcm": _bytes(dataset)}, pseudonymizer)
    assert written == {}
    [excluded] = result["dicom_deid_excluded"].to_pylist()
    assert "Image Type" in excluded["reason"] and excluded["detail"] is None


def test_a_plain_ct_is_exported(pseudonymizer):
    data = _bytes(_ct())
    assert export_risk(pydicom.dcmread(BytesIO(data))) is None
    result, written = _export({"ct.dcm": data}, pseudonymizer)
    assert result["dicom_deid_excluded"].num_rows == 0
    assert list(written) == result["dicom_images"].column("deid_file").to_pylist()


@pytest.mark.parametrize(
    "sop_class",
    [
        uid.SecondaryCaptureImageStorage,
        uid.MultiFrameTrueColorSecondaryCaptureImageStorage,
        uid.MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
        uid.MultiFrameSingleBitSecondaryCaptureImageStorage,
        uid.EncapsulatedPDFStorage,
        uid.EncapsulatedCDAStorage,
        uid.BasicTextSRStorage,
        uid.ComprehensiveSRStorage,
        uid.EnhancedSRStorage,
        uid.XRayRadiationDoseSRStorage,
        uid.KeyObjectSelectionDocumentStorage,
        uid.UltrasoundImageStorage,
        uid.UltrasoundMultiFrameImageStorage,
        uid.VLEndoscopicImageStorage,
        uid.VideoEndoscopicImageStorage,
        uid.VLPhotographicImageStorage,
        uid.VideoPhotographicImageStorage,
        uid.VLWholeSlideMicroscopyImageStorage,
    ],
)
def test_sop_classes_of_screens_documents_reports_and_photos_are_at_risk_whatever_the_flag(sop_class):
    """Attack: the capturing device writes Burned In Annotation NO about the image it made, not the
    screen or page it captured; the SOP class alone is reason enough."""
    reason = export_risk(_ct(SOPClassUID=sop_class, BurnedInAnnotation="NO"))
    assert reason is not None and "SOP Class UID" in reason
    assert burned_in_risk("CT", "NO", sop_class_uid=sop_class) == reason


@pytest.mark.parametrize("conversion", ["WSD", "SD", "SI", "DV", "DI", "DF", "SYN"])
def test_any_conversion_type_is_a_risk(conversion):
    reason = export_risk(_ct(ConversionType=conversion, BurnedInAnnotation="NO"))
    assert reason is not None and "Conversion Type" in reason


@pytest.mark.parametrize(
    ("image_type", "risky"),
    [
        (["ORIGINAL", "PRIMARY", "AXIAL"], False),
        (["DERIVED", "SECONDARY", "SCREEN SAVE"], True),
        (["DERIVED", "PRIMARY", "SCREEN SAVE"], True),
        (["DERIVED", "SECONDARY", "MPR"], True),
        (["ORIGINAL", "PRIMARY", "REPORTDATA"], True),
        (["DERIVED", "PRIMARY", "AXIAL"], True),  # deid blacklist: derived CT or MR
        (["ORIGINAL", "PRIMARY", "LOCALIZER"], True),  # deid graylist: CT localizers carry text
        (None, True),  # deid blacklist: missing Image Type
    ],
)
def test_image_type_and_the_deid_rule_set(image_type, risky):
    assert (export_risk(_ct(ImageType=image_type, BurnedInAnnotation="NO")) is not None) == risky


def test_deid_rules_read_series_description_and_empty_capture_fields():
    assert "Dose Report" in export_risk(_ct(SeriesDescription="Dose Report", BurnedInAnnotation="NO"))
    empty_capture_device = _ct(BurnedInAnnotation="NO")
    empty_capture_device.SecondaryCaptureDeviceManufacturer = ""
    assert "SecondaryCaptureDeviceManufacturer" in export_risk(empty_capture_device)


@pytest.mark.parametrize("modality", ["OT", "SC", "DOC", "SR", "US", "XC", "ES"])
def test_modalities_that_carry_text_are_at_risk_unless_the_flag_says_no(modality):
    assert burned_in_risk(modality, None) is not None
    assert export_risk(_ct(Modality=modality)) is not None
    assert burned_in_risk(modality, "NO") is None


def test_the_flag_yes_is_a_risk_for_any_image():
    assert "YES" in export_risk(_ct(BurnedInAnnotation="YES"))


@pytest.mark.parametrize(
    ("name", "risky"),
    [("CT_small.dcm", False), ("SC_rgb_rle.dcm", True), ("MR_small.dcm", True), ("SC_rgb_gdcm_KY.dcm", True)],
)
def test_pydicoms_own_files(name, risky):
    dataset = pydicom.dcmread(get_testdata_file(name), stop_before_pixels=True)
    assert (export_risk(dataset) is not None) == risky
