"""What a run does with the published DICOM export, from what the export was made with."""

import pyarrow as pa
import pyarrow.parquet as pq

from medical_assets.engine.dicom_carry import DicomBasis, load_published, old_patients_digest, plan_export, save_published
from medical_assets.privacy.patients import dicom_patient_identity
from medical_assets.storage import resolve_location

INPUTS = {"phi/dicom_images": "a", "phi/dicom_thumbnails": "b"}
HL7 = {"part-00000.parquet": "h0", "part-00001.parquet": "h1"}
DICOM = {"part-00000.parquet": "d0"}
EARLIER = {
    "dicom inputs": INPUTS, "hl7 parts": HL7,
    "dicom parts": {name: {"digest": digest, "counts": {"dicom_images": 2}} for name, digest in DICOM.items()},
}
PUBLISHED = {"old patients": "x", "vocabulary": "v"}


def _now(inputs=INPUTS, hl7=None, dicom=None, old="x", vocabulary="v") -> DicomBasis:
    return DicomBasis(dict(inputs), dict(hl7 or {**HL7, "part-00002.parquet": "h2"}), dict(dicom or DICOM), old, vocabulary)


def test_new_hl7_parts_keep_the_export_whole_and_are_what_it_is_searched_for():
    plan = plan_export(EARLIER, _now(), PUBLISHED)
    assert plan.keep and plan.hl7_parts_read == ["part-00002.parquet"] and plan.computed == []


def test_new_images_export_only_their_parts():
    plan = plan_export(EARLIER, _now(inputs={**INPUTS, "phi/dicom_images": "more"}, dicom={**DICOM, "part-00001.parquet": "d1"}), PUBLISHED)
    assert not plan.keep and plan.carried == ["part-00000.parquet"] and plan.computed == ["part-00001.parquet"]
    assert plan.hl7_parts_read == ["part-00002.parquet"] and plan.why == "1 new DICOM part(s)"


def test_anything_else_exports_every_image_and_says_why():
    def why(**changes) -> str:
        earlier, published = changes.pop("earlier", EARLIER), changes.pop("published", PUBLISHED)
        plan = plan_export(earlier, _now(**changes), published)
        assert plan.computed is None and not plan.carried and not plan.keep
        return plan.why

    assert why(earlier=None) == "every image: no earlier export to build on"
    assert why(published=None) == "every image: the basis of the last export is not kept"
    assert why(hl7={"part-00000.parquet": "h0", "part-00001.parquet": "rewritten"}) == (
        "every image: 1 HL7 part(s) it was made with changed or are gone")
    assert why(dicom={"part-00000.parquet": "rewritten"}) == "every image: 1 DICOM part(s) it was made with changed or are gone"
    assert why(old="y") == "every image: the new data changed which DICOM patients are 90+"
    assert why(vocabulary="w", dicom={**DICOM, "part-00001.parquet": "d1"}) == "every image: the new images changed the DICOM vocabulary"
    assert why(inputs={**INPUTS, "phi/dicom_thumbnails": "other"}) == "every image: the DICOM tables changed"


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
    save_published(phi, _now(old=with_ct))
    assert load_published(phi) == {"old patients": with_ct, "vocabulary": "v"}
    assert load_published(resolve_location(str(tmp_path / "elsewhere"))) is None
