"""The de-identified zone through dagster.materialize: real HL7 and DICOM, real Ray, the blocking leak check.

Most tests read the session's whole-graph run; those that need other settings make runs of their own."""

import os
import secrets
import stat
from io import BytesIO

import pyarrow as pa
import pyarrow.parquet as pq
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from medical_assets.privacy.audit import AuditLog
from medical_assets.privacy.keys import parse_key_ring
from medical_assets.privacy.pseudonyms import Pseudonymizer
from medical_assets.storage import resolve_location
from medical_assets_tests.defs.pipeline import materialize_all, materialize_planted_leak

pytestmark = pytest.mark.slow

# Runs with settings of their own take a small corpus: the first messages and images of the shared
# run's, since a synthetic corpus begins alike whatever its size.
SMALL_MESSAGES, SMALL_DICOM_FILES = 60, 4


def _table(data_dir, zone, name):
    return pq.read_table(os.path.join(data_dir, zone, name))


@pytest.fixture(scope="module")
def first_run(pipeline_run):
    return pipeline_run.data, pipeline_run.result


def test_every_record_reaches_the_deid_zone_and_the_leak_checks_pass(first_run):
    data, result = first_run
    assert result.success
    for table in ("hl7_messages", "hl7_lab_results", "hl7_pharmacy_orders", "hl7_encounters"):
        assert _table(data, "deid", table).num_rows == _table(data, "phi", table).num_rows, table
    evaluations = result.get_asset_check_evaluations()
    failed = [(e.asset_key.to_user_string(), e.check_name) for e in evaluations if not e.passed]
    assert not failed
    names = {e.check_name for e in evaluations}
    assert {"no_identifiers_leaked_hl7", "no_identifiers_leaked_dicom", "zones_agree", "hl7_error_rate"} <= names
    schema_checked = {e.asset_key.to_user_string() for e in evaluations if e.check_name == "schema_matches_contract"}
    assert {"hl7_messages", "dicom_images", "deid/hl7_messages", "deid/dicom_images"} <= schema_checked

    images, excluded = _table(data, "phi", "dicom_images"), _table(data, "phi", "dicom_deid_excluded")
    exported = _table(data, "deid", "dicom_images")
    assert exported.num_rows + excluded.num_rows == images.num_rows  # nothing lost
    assert exported.num_rows > 0
    assert set(excluded["modality"].to_pylist()) <= {"US"}  # the synthetic US clips carry burned-in text
    deid_files = [os.path.join(d, f) for d, _, fs in os.walk(data / "deid" / "dicom") for f in fs]
    assert len(deid_files) == exported.num_rows
    ds = pydicom.dcmread(deid_files[0])
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.SOPInstanceUID in exported["sop_instance_uid"].to_pylist()
    assert ds.SOPInstanceUID not in images["sop_instance_uid"].to_pylist()


def test_patient_tokens_join_hl7_and_dicom(tmp_path):
    """A patient with one HL7 message and one exportable image (the same MRN and assigning authority)
    is the one patient whose de-identified messages and images join on the token. The same MRN
    of another issuer, and a patient on one side only, join nothing.

    The pure parse and de-identification functions the Ray jobs run, on a corpus made to hold such
    a patient (the synthetic corpus of `first_run` need not hold one)."""
    from medical_assets.dicom.export import export_deidentified
    from medical_assets.dicom.reader import read_dicom_file
    from medical_assets.hl7.reader import parse_hl7_file
    from medical_assets.privacy.hl7_deid import deidentify_hl7_tables
    from medical_assets.privacy.pseudonyms import patient_identity

    def message(control_id: str, mrn: str, issuer: str) -> str:
        return (
            f"MSH|^~\\&|LAB|SGH|EMR|WARD|20240315093000||ADT^A08^ADT_A08|{control_id}|P|2.5.1\r"
            f"PID|1||{mrn}^^^{issuer}^MR||FAMILYQX^GIVENQX||19600612|F\r"
        )

    feed = message("J1", "MRN7001", "SGH") + message("J2", "MRN7002", "SGH") + message("J3", "MRN7003", "OTHER")
    hl7 = parse_hl7_file(feed.encode(), "feed.hl7").tables()
    sources = {}
    for name, mrn, issuer in [("shared.dcm", "MRN7001", "SGH"), ("other_issuer.dcm", "MRN7002", "OTHER"),
                              ("dicom_only.dcm", "MRN7004", "SGH")]:  # fmt: skip
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))  # CT, ORIGINAL\PRIMARY: no burned-in text risk
        ds.PatientID, ds.IssuerOfPatientID = mrn, issuer
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(tmp_path / name, enforce_file_format=True)
        sources[name] = (tmp_path / name).read_bytes()
    parsed = [read_dicom_file(data, name) for name, data in sources.items()]
    images, thumbnails = (pa.concat_tables(getattr(file, table) for file in parsed) for table in ("images", "thumbnails"))

    pseudonymizer = Pseudonymizer(parse_key_ring(secrets.token_urlsafe(32)).current)
    deid_messages = deidentify_hl7_tables(hl7, pseudonymizer)["hl7_messages"]
    written = {}
    exported = export_deidentified(images, thumbnails, sources.__getitem__, written.__setitem__, pseudonymizer, "safe_harbor")
    deid_images = exported["dicom_images"]
    assert deid_messages.num_rows == 3 and deid_images.num_rows == 3  # every image exported, none held back

    joined = deid_messages.select(["patient_token", "message_token"]).join(
        deid_images.select(["patient_token", "sop_instance_uid"]), "patient_token", join_type="inner"
    )
    shared_token = pseudonymizer.token("patient", patient_identity("MRN7001", "SGH"))
    assert joined.num_rows == 1
    assert joined["patient_token"].to_pylist() == [shared_token]
    assert joined["message_token"].to_pylist() == [pseudonymizer.token("message", "J1")]
    (new_uid,) = joined["sop_instance_uid"].to_pylist()
    assert new_uid == pseudonymizer.uid(pydicom.dcmread(tmp_path / "shared.dcm").SOPInstanceUID)
    (shared_file,) = [data for path, data in written.items() if path.endswith(f"{new_uid}.dcm")]
    assert pydicom.dcmread(BytesIO(shared_file)).PatientID == shared_token  # the file says what its row says


def test_the_pipeline_tokenises_the_patient_identities_of_both_sides(pipeline_run, first_run):
    """Through the whole graph, both sides turn a patient (the MRN with its assigning authority)
    into `Pseudonymizer.token("patient", ...)`, the token the join above relies on."""
    from medical_assets.privacy.hl7_patients import patient_identities
    from medical_assets.privacy.patients import dicom_patient_identity

    data, _ = first_run
    pseudonymizer = Pseudonymizer(parse_key_ring(pipeline_run.key).current)
    hl7 = set(patient_identities(_table(data, "phi", "hl7_messages")).to_pylist())
    images = _table(data, "phi", "dicom_images").to_pylist()
    dicom = {dicom_patient_identity(r["patient_id"], r["patient_id_issuer"], r["institution_name"]) for r in images}
    hl7_tokens = set(_table(data, "deid", "hl7_messages")["patient_token"].to_pylist())
    dicom_tokens = set(_table(data, "deid", "dicom_images")["patient_token"].to_pylist())
    assert hl7_tokens == {pseudonymizer.token("patient", patient) for patient in hl7}
    assert dicom_tokens and dicom_tokens <= {pseudonymizer.token("patient", patient) for patient in dicom}


def test_compliance_metadata_is_stamped_in_every_deid_parquet_file(first_run):
    data, result = first_run
    parquet_files = [os.path.join(d, f) for d, _, fs in os.walk(data / "deid") for f in fs if f.endswith(".parquet")]
    assert parquet_files
    for path in parquet_files:
        metadata = pq.read_schema(path).metadata
        assert metadata[b"medical_assets.run_id"].decode() == result.run_id, path
        assert any(b"profile" in k for k in metadata), path


def test_phi_zone_is_owner_only_and_every_phi_read_is_audited(first_run):
    data, result = first_run
    for folder, _, files in os.walk(data / "phi"):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700, folder
        for name in files:
            assert stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode) == 0o600, name
    records = [r for r in AuditLog(resolve_location(str(data / "phi" / "_audit"))).records() if r.run_id == result.run_id]
    subjects = " ".join(r.subject for r in records)
    assert all(r.action == "read_phi" and r.outcome == "success" for r in records)
    for read in ("HL7 landing", "DICOM landing", "HL7 tables", "DICOM images", "leak check"):
        assert read in subjects


def test_same_key_same_tokens_other_key_other_tokens_reversible_tokens_and_date_shift(
    pipeline_run, first_run, tmp_path, monkeypatch, capsys
):
    data, _ = first_run
    again = tmp_path / "again"
    assert materialize_all(
        again, pipeline_run.key, messages=SMALL_MESSAGES, dicom_files=SMALL_DICOM_FILES, reversible_tokens=True
    ).success
    # Reversible tokens make the output pseudonymised, not de-identified: its files say so.
    folder = again / "deid" / "hl7_messages"
    standard = pq.read_schema(folder / sorted(os.listdir(folder))[0]).metadata[b"deid.standard"].decode()
    assert standard.startswith("Pseudonymised") and "Safe Harbor" not in standard
    messages, shared = _table(again, "deid", "hl7_messages"), _table(data, "deid", "hl7_messages")
    # The same key: each message, and its patient, has the tokens it has in the shared run.
    tokens = set(zip(messages["message_token"].to_pylist(), messages["patient_token"].to_pylist()))
    assert messages.num_rows == SMALL_MESSAGES
    assert tokens <= set(zip(shared["message_token"].to_pylist(), shared["patient_token"].to_pylist()))
    same = set(shared["patient_token"].to_pylist())
    assert shared["patient_reversible_token"].null_count == shared.num_rows

    token = messages["patient_reversible_token"][0].as_py()
    # `python -m medical_assets.privacy reidentify`, called in this process (its own tests run it as a command).
    from medical_assets.privacy.__main__ import main as privacy_command

    monkeypatch.setenv("MEDICAL_ASSETS_DATA_DIR", str(again))
    monkeypatch.setenv("MEDICAL_ASSETS_PSEUDONYM_KEY", pipeline_run.key)
    capsys.readouterr()
    returncode = privacy_command(["reidentify", token, "--purpose", "lab callback, ticket 42"])
    opened = capsys.readouterr()
    assert returncode == 0, opened.err
    # A reversible token seals the patient: the MRN with its assigning authority (else the sending facility).
    phi_row = _table(again, "phi", "hl7_messages").slice(0, 1).to_pylist()[0]
    issuer = (phi_row["patient_id_issuer"] or phi_row["sending_facility"]).upper()
    assert opened.out.strip().split("\t") == [phi_row["patient_id"], issuer]
    audit = AuditLog(resolve_location(str(again / "phi" / "_audit"))).records()
    assert [(r.action, r.purpose, r.outcome) for r in audit if r.action == "reidentify"] == [
        ("reidentify", "lab callback, ticket 42", "success")
    ]

    # The same patients under another key: none of their tokens is one of the shared run's.
    other = tmp_path / "other"
    assert materialize_all(
        other, secrets.token_urlsafe(32), messages=SMALL_MESSAGES, dicom_files=SMALL_DICOM_FILES, deid_profile="date_shift"
    ).success
    assert not set(_table(other, "deid", "hl7_messages")["patient_token"].to_pylist()) & same
    shifted = _table(other, "deid", "hl7_messages")
    assert shifted["message_datetime_shifted"].null_count == 0  # the longitudinal profile keeps (shifted) dates
    assert pq.read_schema(other / "deid" / "hl7_messages" / os.listdir(other / "deid" / "hl7_messages")[0]).metadata[
        b"deid.profile"
    ] == b"date_shift"


@pytest.mark.parametrize("merged_index", [True, False], ids=["merged index", "index part by part, as a night's"])
def test_a_leak_is_never_published_and_waits_in_quarantine(pipeline_run, tmp_path, merged_index):
    """Publish on pass: an output with an identifier (a patient's name, a phone number anyone's)
    stays out of deid/, which keeps its previous version; the output waits in phi/quarantine/.
    On a copy of the shared run's zones, which the planted output changes."""
    data = pipeline_run.copy(tmp_path / "data")
    assert len(os.listdir(data / "phi" / "_census" / "identifiers")) >= 3  # the secret and 2+ parts: several to search
    phi = _table(data, "phi", "hl7_messages")
    name = next(n for n in phi["patient_family_name"].to_pylist() if n and len(n) >= 5)
    before = sorted(os.listdir(data / "deid" / "hl7_messages"))
    leaked = pa.table({"comment": [f"seen by {name} yesterday", "call 617-555-0142"]})
    result = materialize_planted_leak(data, pipeline_run.key, "hl7_messages", leaked, merged_index=merged_index)
    assert not result.success
    evaluations = result.get_asset_check_evaluations()
    assert [(e.check_name, e.passed) for e in evaluations] == [("planted_leak_check", False)]
    # Part by part, a value several parts hold counts once a part: the check says so.
    assert ("identifiers counted" in evaluations[0].metadata) == (not merged_index)
    shown = str(evaluations[0].metadata)
    assert "part-99999.parquet" in shown and "phone pattern" in shown and name not in shown and "0142" not in shown
    assert sorted(os.listdir(data / "deid" / "hl7_messages")) == before  # the previous version, untouched
    quarantine = data / "phi" / "quarantine" / "planted_leak_check"
    (run,) = os.listdir(quarantine)
    assert os.listdir(quarantine / run / "hl7_messages") == ["part-99999.parquet"]
    assert not (data / "deid" / ".staging" / run).exists()
