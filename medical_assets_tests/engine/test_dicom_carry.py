"""When the published DICOM export stands after a night: the decision from what it was made with."""

import pyarrow as pa
import pyarrow.parquet as pq

from medical_assets.engine.dicom_carry import DicomBasis, load_old_patients, new_hl7_parts, old_patients_digest, save_old_patients
from medical_assets.privacy.patients import dicom_patient_identity
from medical_assets.storage import resolve_location

INPUTS = {"phi/dicom_images": "a", "phi/dicom_thumbnails": "b"}
EARLIER = {"dicom inputs": INPUTS, "hl7 parts": {"part-00000": "d0", "part-00001": "d1"}}


def _now(inputs=INPUTS, parts=None, old="x") -> DicomBasis:
    return DicomBasis(dict(inputs), dict(parts or {"part-00000": "d0", "part-00001": "d1", "part-00002": "d2"}), old)


def test_only_new_hl7_parts_keep_the_export_and_are_the_parts_to_search_for():
    assert new_hl7_parts(EARLIER, _now(), "x") == (["part-00002"], "")
    assert new_hl7_parts(EARLIER, _now(parts=EARLIER["hl7 parts"]), "x") == ([], "")


def test_anything_else_exports_again_and_says_why():
    assert new_hl7_parts(EARLIER, _now(inputs={**INPUTS, "phi/dicom_images": "changed"}), "x") == (None, "the DICOM tables changed")
    assert new_hl7_parts(EARLIER, _now(parts={"part-00000": "d0", "part-00001": "rewritten"}), "x") == (
        None, "1 HL7 part(s) it was made with changed or are gone")
    assert new_hl7_parts(EARLIER, _now(parts={"part-00001": "d1"}), "x")[0] is None
    assert new_hl7_parts(EARLIER, _now(old="y"), "x") == (None, "the new data changed which DICOM patients are 90+")
    assert new_hl7_parts(EARLIER, _now(), None) == (None, "the basis of the last export is not kept")
    assert new_hl7_parts({"dicom inputs": INPUTS}, _now(), "x") == (None, "the basis of the last export is not kept")


def test_the_old_patients_digest_counts_only_patients_with_images(tmp_path):
    phi = resolve_location(str(tmp_path / "phi"))
    images = pa.table({
        "patient_id": ["1CT1", "4MR1", "4MR1"],
        "patient_id_issuer": [None, "HOSP_A", "HOSP_A"],
        "institution_name": ["JFK IMAGING CENTER", "TOSHIBA", "TOSHIBA"],
    })
    (tmp_path / "phi" / "dicom_images").mkdir(parents=True)
    pq.write_table(images, tmp_path / "phi" / "dicom_images" / "part-00000.parquet")
    ct = dicom_patient_identity("1CT1", None, "JFK IMAGING CENTER")
    mr = dicom_patient_identity("4MR1", "HOSP_A", "TOSHIBA")
    nobody = old_patients_digest(phi, {}, "issuer")
    with_ct = old_patients_digest(phi, {ct: 2004, "HOSP_B\x1e777": 1990}, "issuer")
    assert with_ct != nobody
    # A patient 90+ without images changes nothing; a patient of an image does.
    assert old_patients_digest(phi, {ct: 2004}, "issuer") == with_ct
    assert old_patients_digest(phi, {ct: 2004, mr: None}, "issuer") not in (with_ct, nobody)
    save_old_patients(phi, with_ct)
    assert load_old_patients(phi) == with_ct
    assert load_old_patients(resolve_location(str(tmp_path / "elsewhere"))) is None
