"""`python -m medical_assets.privacy`, run as staff would run it: re-identification, new keys, the audit log."""

import json
import os
import pty
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from medical_assets.privacy.keys import (
    LOCAL_KEY_FILE,
    PSEUDONYM_KEY_VAR,
    load_key_ring,
    parse_key_ring,
)
from medical_assets.privacy.pseudonyms import ReversibleTokens

PATIENT_ID = "MRN4827691"
PURPOSE = "INC-2291 duplicate chart merge"


def _command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "medical_assets.privacy", *arguments]


def _environment(tmp_path: Path, key: str | None = None) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("MEDICAL_ASSETS_")}
    env.update(MEDICAL_ASSETS_DATA_DIR=str(tmp_path / "data"), HOME=str(tmp_path / "home"))
    if key is not None:
        env[PSEUDONYM_KEY_VAR] = key
    return env


def _run(tmp_path: Path, *arguments: str, key: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        _command(*arguments),
        env=_environment(tmp_path, key),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _seal(key: str, value: str = PATIENT_ID, domain: str = "patient") -> str:
    return ReversibleTokens(parse_key_ring(key)).seal(domain, value)


def _audit_records(tmp_path: Path) -> list[dict]:
    folder = tmp_path / "data" / "phi" / "_audit"
    files = sorted(folder.glob("*.json")) if folder.exists() else []
    return [json.loads(path.read_text()) for path in files]


def _audit_text(tmp_path: Path) -> str:
    return "".join(path.read_text() for path in (tmp_path / "data" / "phi" / "_audit").glob("*.json"))


def _assert_one_clean_error_line(completed: subprocess.CompletedProcess) -> None:
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1, completed.stderr


def test_a_sealed_token_opens_and_the_access_is_recorded(tmp_path):
    key = secrets.token_urlsafe(32)
    token = _seal(key)

    completed = _run(tmp_path, "reidentify", token, "--purpose", PURPOSE, key=key)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == PATIENT_ID + "\n"
    [record] = _audit_records(tmp_path)
    assert record["action"] == "reidentify"
    assert record["outcome"] == "success"
    assert record["subject"] == "patient"
    assert record["purpose"] == PURPOSE
    assert record["key_id"] == parse_key_ring(key).current.key_id
    assert record["details"]["token"] == token
    assert record["actor"] and record["host"] and record["time"].endswith("Z")
    assert PATIENT_ID not in _audit_text(tmp_path)


def test_the_pipelines_development_key_is_used_when_no_key_is_set(tmp_path):
    ring, _ = load_key_ring(None, str(tmp_path / "data" / "secrets"))
    token = ReversibleTokens(ring).seal("patient", PATIENT_ID)

    completed = _run(tmp_path, "reidentify", token, "--purpose", PURPOSE)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == PATIENT_ID
    assert _audit_records(tmp_path)[0]["details"]["key_source"] == "development key"


def test_without_any_key_it_says_so_and_creates_none(tmp_path):
    token = _seal(secrets.token_urlsafe(32))

    completed = _run(tmp_path, "reidentify", token, "--purpose", PURPOSE)

    _assert_one_clean_error_line(completed)
    assert "no pseudonym key" in completed.stderr
    assert PSEUDONYM_KEY_VAR in completed.stderr
    assert not (tmp_path / "data" / "secrets" / LOCAL_KEY_FILE).exists()
    [record] = _audit_records(tmp_path)
    assert record["outcome"].startswith("failure: no pseudonym key")


def test_a_wrong_key_fails_and_the_failure_is_recorded(tmp_path):
    token = _seal(secrets.token_urlsafe(32))

    completed = _run(tmp_path, "reidentify", token, "--purpose", PURPOSE, key=secrets.token_urlsafe(32))

    _assert_one_clean_error_line(completed)
    assert completed.returncode == 1
    assert completed.stdout == ""
    [record] = _audit_records(tmp_path)
    assert record["outcome"].startswith("failure: ")
    assert "no key with id" in record["outcome"]
    assert record["details"]["token"] == token


def test_a_key_with_the_same_id_but_another_secret_fails(tmp_path):
    token = _seal("k1:" + secrets.token_urlsafe(32))

    completed = _run(tmp_path, "reidentify", token, "--purpose", PURPOSE, key="k1:" + secrets.token_urlsafe(32))

    _assert_one_clean_error_line(completed)
    assert "does not open" in _audit_records(tmp_path)[0]["outcome"]


def test_a_token_of_another_domain_fails(tmp_path):
    key = secrets.token_urlsafe(32)
    token = _seal(key, domain="encounter")

    completed = _run(tmp_path, "reidentify", token, "--purpose", PURPOSE, key=key)

    _assert_one_clean_error_line(completed)
    assert completed.stdout == ""
    assert _audit_records(tmp_path)[0]["outcome"].startswith("failure: ")


def test_a_value_typed_instead_of_a_token_is_not_kept_in_the_log(tmp_path):
    completed = _run(tmp_path, "reidentify", PATIENT_ID, "--purpose", PURPOSE, key=secrets.token_urlsafe(32))

    _assert_one_clean_error_line(completed)
    assert "not a reversible token" in completed.stderr
    assert _audit_records(tmp_path)[0]["outcome"].startswith("failure: not a reversible token")
    assert PATIENT_ID not in _audit_text(tmp_path)


@pytest.mark.parametrize("purpose", [None, "", "   "])
def test_without_a_purpose_it_refuses_and_records_the_refusal(tmp_path, purpose):
    key = secrets.token_urlsafe(32)
    arguments = ["reidentify", _seal(key)] + ([] if purpose is None else ["--purpose", purpose])

    completed = _run(tmp_path, *arguments, key=key)

    _assert_one_clean_error_line(completed)
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert "purpose" in completed.stderr
    [record] = _audit_records(tmp_path)
    assert record["outcome"] == "denied"
    assert record["purpose"] == ""


def test_the_purpose_is_asked_for_on_a_terminal(tmp_path):
    key = secrets.token_urlsafe(32)
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            _command("reidentify", _seal(key)),
            env=_environment(tmp_path, key),
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.write(controller, f"{PURPOSE}\n".encode())
        stdout, stderr = process.communicate(timeout=120)
    finally:
        os.close(terminal)
        os.close(controller)

    assert process.returncode == 0, stderr
    assert stdout == PATIENT_ID + "\n"
    assert "Purpose" in stderr
    assert _audit_records(tmp_path)[0]["purpose"] == PURPOSE


def test_a_token_sealed_before_a_rotation_still_opens(tmp_path):
    old_key, new_key = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    old_token = _seal(old_key)

    completed = _run(tmp_path, "reidentify", old_token, "--purpose", PURPOSE, key=f"{new_key},{old_key}")

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == PATIENT_ID
    assert _audit_records(tmp_path)[0]["key_id"] == parse_key_ring(old_key).current.key_id


def test_new_key_prints_a_key_the_pipeline_accepts(tmp_path):
    first, second = _run(tmp_path, "new-key"), _run(tmp_path, "new-key")

    assert first.returncode == 0, first.stderr
    key = first.stdout.strip()
    assert len(first.stdout.splitlines()) == 1
    assert len(parse_key_ring(key).current.secret) >= 32
    assert PSEUDONYM_KEY_VAR in first.stderr
    assert key != second.stdout.strip()


def test_audit_prints_every_record_as_a_json_line_oldest_first(tmp_path):
    key = secrets.token_urlsafe(32)
    token = _seal(key)
    _run(tmp_path, "reidentify", token, key=key)
    _run(tmp_path, "reidentify", token, "--purpose", PURPOSE, key=key)

    completed = _run(tmp_path, "audit")

    assert completed.returncode == 0, completed.stderr
    records = [json.loads(line) for line in completed.stdout.splitlines()]
    assert [record["outcome"] for record in records] == ["denied", "success"]
    assert PATIENT_ID not in completed.stdout


def test_audit_of_an_empty_log_prints_nothing(tmp_path):
    completed = _run(tmp_path, "audit")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == ""


# Opening a token from Python: the same rules as the command line.


def _log(tmp_path: Path):
    from medical_assets.privacy.audit import AuditLog
    from medical_assets.storage import resolve_location

    return AuditLog(resolve_location(str(tmp_path / "audit")))


def test_a_direct_reveal_call_opens_nothing(tmp_path):
    """Attack: code (a notebook, a helper script) calls `ReversibleTokens(ring).reveal(...)` and
    gets the MRN with no purpose and no audit record. Before, it returned the value. Now the ring
    hands out no opening key outside an audited reveal, and the refusal says what to use instead."""
    from medical_assets.privacy.keys import UnauditedReveal

    ring = parse_key_ring(secrets.token_urlsafe(32))
    token = ReversibleTokens(ring).seal("patient", PATIENT_ID)

    with pytest.raises(UnauditedReveal, match="reveal_token") as refused:
        ReversibleTokens(ring).reveal("patient", token)
    assert PATIENT_ID not in str(refused.value)


@pytest.mark.parametrize("purpose", [None, "", "  \n"])
def test_reveal_token_without_a_purpose_is_refused_and_recorded(tmp_path, purpose):
    """Attack: a Python caller skips the purpose the command line asks for."""
    from medical_assets.privacy.reidentify import ReidentificationDenied, reveal_token

    ring = parse_key_ring(secrets.token_urlsafe(32))
    token = ReversibleTokens(ring).seal("patient", PATIENT_ID)
    log = _log(tmp_path)

    with pytest.raises(ReidentificationDenied, match="purpose is required"):
        reveal_token(ring, "patient", token, purpose=purpose, audit=log)
    [record] = log.records()
    assert (record.action, record.outcome, record.purpose) == ("reidentify", "denied", "")


def test_reveal_token_with_a_purpose_is_audited(tmp_path, monkeypatch):
    import pwd

    from medical_assets.privacy.reidentify import reveal_token

    monkeypatch.setenv("MEDICAL_ASSETS_ACTOR", "someone.else@hospital.example")
    ring = parse_key_ring(secrets.token_urlsafe(32))
    token = ReversibleTokens(ring).seal("patient", PATIENT_ID)
    log = _log(tmp_path)

    assert reveal_token(ring, "patient", token, purpose=PURPOSE, audit=log) == PATIENT_ID
    [record] = log.records()
    assert (record.outcome, record.purpose, record.key_id) == ("success", PURPOSE, ring.current.key_id)
    assert record.details["token"] == token
    assert record.actor == pwd.getpwuid(os.geteuid()).pw_name
    assert record.declared_actor == "someone.else@hospital.example"
    assert log.verify().intact
    assert PATIENT_ID not in "".join(path.read_text() for path in (tmp_path / "audit").glob("*.json"))


def test_reidentify_from_python_is_audited_in_the_data_folder(tmp_path):
    from medical_assets.privacy.reidentify import reidentify

    key = secrets.token_urlsafe(32)
    env = _environment(tmp_path, key)

    assert reidentify(_seal(key), PURPOSE, env=env) == PATIENT_ID
    assert [record["outcome"] for record in _audit_records(tmp_path)] == ["success"]


def test_nothing_is_revealed_when_the_audit_record_cannot_be_written(tmp_path):
    """Fail closed: an audit folder that cannot be written (here its parent is a file) means no value."""
    from medical_assets.privacy.audit import AuditLog, AuditLogError
    from medical_assets.privacy.reidentify import reveal_token
    from medical_assets.storage import resolve_location

    (tmp_path / "not-a-folder").write_text("")
    log = AuditLog(resolve_location(str(tmp_path / "not-a-folder" / "_audit")))
    ring = parse_key_ring(secrets.token_urlsafe(32))
    token = ReversibleTokens(ring).seal("patient", PATIENT_ID)

    with pytest.raises(AuditLogError, match="nothing was revealed") as refused:
        reveal_token(ring, "patient", token, purpose=PURPOSE, audit=log)
    assert PATIENT_ID not in str(refused.value)


def test_a_release_scoped_token_opens_only_with_its_scope(tmp_path):
    """A token of a release made for one recipient is sealed with that release's derived key."""
    from medical_assets.privacy.reidentify import ReidentificationFailed, reveal_token

    key = secrets.token_urlsafe(32)
    token = ReversibleTokens(parse_key_ring(key, release_scope="univ-x")).seal("patient", PATIENT_ID)
    log = _log(tmp_path)

    with pytest.raises(ReidentificationFailed, match="does not open"):
        reveal_token(parse_key_ring(key), "patient", token, purpose=PURPOSE, audit=log)
    assert reveal_token(parse_key_ring(key, release_scope="univ-x"), "patient", token, purpose=PURPOSE, audit=log) == PATIENT_ID
    assert [(r.outcome.split(":")[0], r.details.get("release_scope")) for r in log.records()] == [
        ("failure", None),
        ("success", "univ-x"),
    ]

    completed = _run(tmp_path, "reidentify", token, "--purpose", PURPOSE, "--release-scope", "univ-x", key=key)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == PATIENT_ID
