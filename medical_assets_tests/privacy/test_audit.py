"""The audit log: one create-only JSON object per record, private on a local disk, readable in the order written.
The hash chain and who the actor is are tested in test_audit_chain.py."""

import json
import os
import stat

import pyarrow.fs as pafs
import pytest

from medical_assets.privacy import audit as audit_module
from medical_assets.privacy.audit import (
    ACTOR_VAR,
    DENIED,
    SUCCESS,
    AuditLog,
    AuditLogError,
    AuditRecord,
    failure,
)
from medical_assets.storage import Location, resolve_location


def _record(**overrides) -> AuditRecord:
    values = {"action": "read_phi", "subject": "hl7_messages", "purpose": "nightly run", "outcome": SUCCESS}
    return AuditRecord(**{**values, **overrides})


def test_a_record_is_one_private_json_file_in_the_phi_zone(tmp_path):
    log = AuditLog.in_data_dir(resolve_location(str(tmp_path / "data")))
    record = _record(run_id="run-1", key_id="k123", details={"rows": 50000})

    written = log.append(record)

    assert written.path.startswith(str(tmp_path / "data" / "phi" / "_audit") + os.sep)
    assert written.path.endswith(".json")
    assert stat.S_IMODE(os.stat(written.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "data" / "phi" / "_audit").st_mode) == 0o700
    assert json.loads(written.read_bytes())["details"] == {"rows": 50000}
    assert log.records() == [record]


def test_the_file_name_starts_with_the_record_number_then_the_utc_time(tmp_path):
    log = AuditLog(resolve_location(str(tmp_path)))
    written = log.append(_record(time="2025-03-04T05:06:07.000008Z"))
    second = log.append(_record(time="2025-03-04T05:06:08Z"))
    assert written.name.startswith("0000000001-20250304T050607.000008Z-")
    assert second.name.startswith("0000000002-20250304T050608.000000Z-")


def test_records_come_back_in_the_order_written_whatever_their_clocks_say(tmp_path):
    # Hosts' clocks disagree; the chain's order is the order the log took the records in.
    log = AuditLog(resolve_location(str(tmp_path)))
    later = _record(time="2025-01-02T00:00:00+00:00", action="reidentify", outcome=DENIED, purpose="")
    earlier = _record(time="2025-01-01T23:59:59.999999Z")
    log.append(later)
    log.append(earlier)
    assert log.records() == [later, earlier]
    assert [record.sequence for record in log.records()] == [1, 2]


def test_a_record_is_never_overwritten(tmp_path, monkeypatch):
    log = AuditLog(resolve_location(str(tmp_path)))
    monkeypatch.setattr(audit_module, "_record_name", lambda record: "0000000001-fixed.json")
    first = _record(time="2025-01-01T00:00:00Z", purpose="first")
    log.append(first)
    with pytest.raises(FileExistsError):
        log.append(_record(time="2025-01-01T00:00:00Z", purpose="second"))
    assert log.records() == [first]


def test_records_work_on_an_object_store():
    store = Location(pafs._MockFileSystem(), "bucket/data/phi/_audit")
    log = AuditLog(store)
    first = _record(time="2025-01-01T00:00:00Z")
    second = _record(time="2025-01-01T00:00:01Z", outcome=failure("no key with id 'k1'"))
    log.append(second)
    log.append(first)
    assert log.records() == [second, first]
    assert log.verify().intact and log.verify().records == 2


def test_an_empty_log_has_no_records(tmp_path):
    assert AuditLog(resolve_location(str(tmp_path / "nothing-yet"))).records() == []


def test_a_declared_actor_is_kept_beside_the_os_user_never_instead(monkeypatch):
    monkeypatch.setattr(audit_module.pwd, "getpwuid", lambda uid: type("Entry", (), {"pw_name": "alice"})())
    assert (_record().actor, _record().declared_actor) == ("alice", None)
    monkeypatch.setenv(ACTOR_VAR, "dr.bob@hospital.example")
    assert (_record().actor, _record().declared_actor) == ("alice", "dr.bob@hospital.example")


def test_a_record_needs_a_purpose_unless_it_records_a_refusal_for_lacking_one():
    with pytest.raises(ValueError, match="purpose"):
        _record(purpose="  ")
    assert _record(purpose="", outcome=DENIED).outcome == DENIED


def test_time_and_host_are_filled_in():
    record = _record()
    assert record.time.endswith("Z")
    assert record.moment.utcoffset().total_seconds() == 0
    assert record.host


@pytest.mark.parametrize("outcome", ["ok", "failed", "failure no colon"])
def test_outcomes_are_success_denied_or_a_failure_with_its_reason(outcome):
    with pytest.raises(ValueError, match="outcome"):
        _record(outcome=outcome)


def test_failure_keeps_the_reason_on_one_line():
    assert failure("bad\ntoken  here") == "failure: bad token here"


def test_times_must_be_utc():
    with pytest.raises(ValueError, match="UTC"):
        _record(time="2025-01-01T00:00:00+02:00")
    with pytest.raises(ValueError):
        _record(time="2025-01-01T00:00:00")


def test_a_damaged_record_is_reported_by_its_file(tmp_path):
    log = AuditLog(resolve_location(str(tmp_path)))
    log.append(_record())
    (tmp_path / "20250101T000000.000000Z-broken.json").write_text("{not json")
    with pytest.raises(AuditLogError, match="broken.json"):
        log.records()


def test_fields_from_a_later_version_do_not_stop_reading(tmp_path):
    log = AuditLog(resolve_location(str(tmp_path)))
    record = _record(time="2025-01-01T00:00:00Z")
    data = {**json.loads(record.to_json()), "ticket": "CHG-1"}
    (tmp_path / "20250101T000000.000000Z-later.json").write_text(json.dumps(data))
    assert log.records() == [record]
