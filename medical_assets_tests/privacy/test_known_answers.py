"""Known answers: tokens, UIDs, date offsets and the synthetic corpus, pinned as literals.

A data set released today must join one released earlier with the same key: the same patient has
the same token, an image the same new UID, a patient the same date shift. The other tests compare
the code with itself and would pass after any change to key derivation, UID generation or date
shifting; these compare it with values computed once and written down.

Every literal below: a change here breaks joins with every earlier release and needs a migration
note (what changed, which releases no longer join, how to re-key them). Do not update a literal to
make a test pass without writing that note.
"""

import hashlib

from pydicom.dataset import Dataset

from medical_assets.dicom.deidentify import deid_image_row, deidentify_dataset
from medical_assets.hl7.reader import parse_hl7_file
from medical_assets.privacy.hl7_deid import deidentify_hl7_tables
from medical_assets.privacy.keys import parse_key_ring
from medical_assets.privacy.pseudonyms import (
    PATIENT_DOMAIN,
    SHARED_SCOPE,
    Pseudonymizer,
    ReversibleTokens,
    patient_identity,
)
from medical_assets.synthetic.hl7 import GENERATOR_VERSION, HL7CorpusSettings, file_name, render_file

# A random key made for these tests only, written as MEDICAL_ASSETS_PSEUDONYM_KEY would hold it.
KEY = "9f3c2b7e5a1d4c8f0b6e2a9d7c5f1e3b8a4d6c0e2f9b7a5c3e1d8f6b4a2c0e9d"
MRN, ISSUER = "MRN0042", "SGH"
ORIGINAL_UID = "1.2.826.0.1.3680043.8.498.12345678901234567890"
STUDY_DATE = "20240315"

# A change here breaks joins with every earlier release and needs a migration note.
KEY_ID = "kaaa86935360b"  # derived from the secret; stored in every output to name its key
PATIENT_TOKEN = "9ccc7f7267422ddc8621fbe7"  # MRN0042 of issuer SGH
PATIENT_TOKEN_SHARED_SCOPE = "bafe9d8f5973c7aad0081d59"  # MRN0042 alone (MEDICAL_ASSETS_PATIENT_ID_SCOPE=shared)
NEW_UID = "2.25.56370493431866493815418304393799968994"
DATE_OFFSET_DAYS = -205
SHIFTED_STUDY_DATE = "20230823"  # 2024-03-15 moved by -205 days
REVERSIBLE_TOKEN = "rv1.kaaa86935360b.mbcjlJioN84veiILb6oQoCvWPYb9CAQiFb7f"
# The same under MEDICAL_ASSETS_RELEASE_SCOPE=univ-x-2025-03: other values, and they too must stay.
RELEASE_SCOPE = "univ-x-2025-03"
SCOPED_PATIENT_TOKEN = "cb6f1461efb60b0d6b762f16"
SCOPED_NEW_UID = "2.25.90552621449598568801434692355785919582"
SCOPED_DATE_OFFSET_DAYS = 52

# A change here means a seed renders other bytes than every earlier release: raise GENERATOR_VERSION
# (so an older landing corpus is replaced, not mixed in) and write a migration note.
SYNTHETIC_HL7_GENERATOR_VERSION = 2
SYNTHETIC_HL7_FILE_0_SHA256 = "a0e09e0aa3c66347697e12b2d0a9f6dd615a8ac244e7da5d6d40f9f3852ab5a3"
SYNTHETIC_HL7_FILE_0_BYTES = 330_665


def _pseudonymizer(release_scope: str | None = None) -> Pseudonymizer:
    return Pseudonymizer(parse_key_ring(KEY, release_scope=release_scope).current)


def test_the_key_setting_gives_the_pinned_key_id():
    assert parse_key_ring(KEY).current.key_id == KEY_ID


def test_patient_token_of_a_fixed_key_issuer_and_mrn():
    pseudonymizer = _pseudonymizer()
    assert pseudonymizer.token(PATIENT_DOMAIN, patient_identity(MRN, ISSUER)) == PATIENT_TOKEN
    # The issuer compares trimmed and case-folded, as feeds write it both ways.
    assert pseudonymizer.token(PATIENT_DOMAIN, patient_identity(f" {MRN} ", "sgh")) == PATIENT_TOKEN
    assert pseudonymizer.token(PATIENT_DOMAIN, patient_identity(MRN, ISSUER, SHARED_SCOPE)) == PATIENT_TOKEN_SHARED_SCOPE


def test_new_dicom_uid_of_a_fixed_key_and_original_uid():
    assert _pseudonymizer().uid(ORIGINAL_UID) == NEW_UID


def test_date_offset_of_a_fixed_key_and_patient():
    assert _pseudonymizer().date_offset_days(patient_identity(MRN, ISSUER)) == DATE_OFFSET_DAYS


def test_reversible_token_of_a_fixed_key_and_patient():
    assert ReversibleTokens(parse_key_ring(KEY)).seal(PATIENT_DOMAIN, patient_identity(MRN, ISSUER)) == REVERSIBLE_TOKEN


def test_a_release_scope_gives_its_own_pinned_values():
    scoped = _pseudonymizer(RELEASE_SCOPE)
    identity = patient_identity(MRN, ISSUER)
    assert scoped.token(PATIENT_DOMAIN, identity) == SCOPED_PATIENT_TOKEN
    assert scoped.uid(ORIGINAL_UID) == SCOPED_NEW_UID
    assert scoped.date_offset_days(identity) == SCOPED_DATE_OFFSET_DAYS


def test_the_hl7_de_identification_writes_the_pinned_token_and_shift():
    message = (
        "MSH|^~\\&|LAB|SGH|EMR|WARD|20240315093000||ADT^A08^ADT_A08|KA1|P|2.5.1\r"
        f"PID|1||{MRN}^^^{ISSUER}^MR||FAMILYQX^GIVENQX||19600612|F\r"
    )
    tables = parse_hl7_file(message.encode(), "known.hl7").tables()
    safe_harbor = deidentify_hl7_tables(tables, _pseudonymizer(), "safe_harbor")["hl7_messages"].to_pylist()[0]
    assert safe_harbor["patient_token"] == PATIENT_TOKEN
    assert safe_harbor["message_year"] == 2024
    shifted = deidentify_hl7_tables(tables, _pseudonymizer(), "date_shift")["hl7_messages"].to_pylist()[0]
    assert shifted["patient_token"] == PATIENT_TOKEN
    assert shifted["message_datetime_shifted"].strftime("%Y%m%d") == SHIFTED_STUDY_DATE


def test_the_dicom_de_identification_writes_the_pinned_token_uid_and_shift():
    row = {
        "patient_id": MRN,
        "patient_id_issuer": ISSUER,
        "sop_instance_uid": ORIGINAL_UID,
        "study_instance_uid": f"{ORIGINAL_UID}.1",
        "series_instance_uid": f"{ORIGINAL_UID}.2",
        "study_date": STUDY_DATE,
        "modality": "CT",
    }
    exported = deid_image_row(row, _pseudonymizer(), "date_shift")
    assert (exported["patient_token"], exported["sop_instance_uid"]) == (PATIENT_TOKEN, NEW_UID)
    assert exported["study_date"] == SHIFTED_STUDY_DATE

    dataset = Dataset()
    dataset.PatientID, dataset.IssuerOfPatientID = MRN, ISSUER
    dataset.SOPClassUID, dataset.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", ORIGINAL_UID
    dataset.Modality, dataset.StudyDate = "CT", STUDY_DATE
    deidentify_dataset(dataset, _pseudonymizer(), "date_shift")
    assert (dataset.PatientID, dataset.SOPInstanceUID, dataset.StudyDate) == (PATIENT_TOKEN, NEW_UID, SHIFTED_STUDY_DATE)


def test_the_first_synthetic_hl7_file_of_the_default_corpus(tmp_path):
    settings = HL7CorpusSettings()  # the corpus `make run` lands: 500 messages per file, seed 20240101
    path = tmp_path / file_name(0)
    path.write_bytes(render_file(settings, 0))
    data = path.read_bytes()
    assert GENERATOR_VERSION == SYNTHETIC_HL7_GENERATOR_VERSION
    assert len(data) == SYNTHETIC_HL7_FILE_0_BYTES
    assert hashlib.sha256(data).hexdigest() == SYNTHETIC_HL7_FILE_0_SHA256
