"""The audit log as a privacy officer signs it: a hash chain that names the first record deleted,
changed or reordered, `audit --verify` on the command line, and an actor no environment variable sets."""

import json
import multiprocessing
import os
import pwd
import subprocess
import sys
from pathlib import Path

from medical_assets.privacy.audit import ACTOR_VAR, SUCCESS, AuditLog, AuditRecord
from medical_assets.storage import resolve_location

OS_USER = pwd.getpwuid(os.geteuid()).pw_name


def _record(number: int, **overrides) -> AuditRecord:
    values = {"action": "read_phi", "subject": f"hl7_messages part {number}", "purpose": "nightly run", "outcome": SUCCESS}
    return AuditRecord(**{**values, **overrides})


def _log_with(tmp_path: Path, count: int) -> tuple[AuditLog, list[Path]]:
    folder = tmp_path / "data" / "phi" / "_audit"
    log = AuditLog(resolve_location(str(folder)))
    for number in range(1, count + 1):
        log.append(_record(number))
    return log, sorted(folder.glob("*.json"))


def _verify_cli(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items() if not name.startswith("MEDICAL_ASSETS_")}
    env["MEDICAL_ASSETS_DATA_DIR"] = str(tmp_path / "data")
    return subprocess.run(
        [sys.executable, "-m", "medical_assets.privacy", "audit", "--verify", *extra],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _edit(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_an_intact_log_verifies_with_its_count(tmp_path):
    log, _ = _log_with(tmp_path, 4)
    report = log.verify()
    assert report.intact and report.records == 4
    assert [record.sequence for record in log.records()] == [1, 2, 3, 4]

    completed = _verify_cli(tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert "intact: 4 chained records" in completed.stdout
    assert report.head_hash in completed.stdout


def test_an_empty_log_verifies(tmp_path):
    completed = _verify_cli(tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert "intact: 0" in completed.stdout


def test_a_deleted_record_is_named(tmp_path):
    """Attack: someone removes the record of their re-identification. Before, the other records
    still read fine and nothing showed the gap. Now the chain names the missing number."""
    log, files = _log_with(tmp_path, 4)
    files[1].unlink()

    report = log.verify()
    assert (report.intact, report.broken_at) == (False, 2)
    assert "record 2 is missing" in report.problem

    completed = _verify_cli(tmp_path)
    assert completed.returncode == 3
    assert "broken at record 2" in completed.stderr


def test_a_changed_record_is_named(tmp_path):
    """Attack: the purpose of a re-identification is rewritten to look routine."""
    log, files = _log_with(tmp_path, 4)
    _edit(files[2], purpose="routine QA")

    assert (log.verify().broken_at, "changed" in log.verify().problem) == (3, True)
    assert "broken at record 3" in _verify_cli(tmp_path).stderr


def test_a_changed_record_whose_own_hash_was_recomputed_breaks_the_next_link(tmp_path):
    """Attack: whoever knows the scheme rewrites a record and its `record_hash` too; the record
    after it still names the old hash."""
    log, files = _log_with(tmp_path, 4)
    forged = AuditRecord.from_json(files[1].read_text())
    forged = AuditRecord(**{**json.loads(forged.to_json()), "outcome": "denied", "record_hash": None})
    _edit(files[1], outcome="denied", record_hash=forged.computed_hash())

    report = log.verify()
    assert report.broken_at == 3
    assert "does not follow record 2" in report.problem


def test_reordered_records_are_named(tmp_path):
    """Attack: two records swap places (their contents trade files) to change the story's order."""
    log, files = _log_with(tmp_path, 4)
    second, third = files[1].read_text(), files[2].read_text()
    files[1].write_text(third)
    files[2].write_text(second)

    report = log.verify()
    assert report.broken_at == 2
    assert _verify_cli(tmp_path).returncode == 3


def test_renumbered_records_are_named(tmp_path):
    """Attack: records are renumbered in file name and content to close the gap a deletion left."""
    log, files = _log_with(tmp_path, 3)
    files[1].unlink()
    renamed = files[2].with_name("0000000002" + files[2].name[10:])
    files[2].rename(renamed)
    _edit(renamed, sequence=2)

    assert log.verify().broken_at == 2


def test_a_record_planted_in_the_middle_is_named(tmp_path):
    log, files = _log_with(tmp_path, 3)
    files[1].with_name("0000000002-20250101T000000.000000Z-planted.json").write_text(files[1].read_text())
    assert "appears twice" in log.verify().problem


def test_a_cut_off_tail_is_caught_with_the_anchor_noted_at_signing(tmp_path):
    """A chain alone cannot show that its newest records were removed: the anchor can."""
    log, files = _log_with(tmp_path, 3)
    anchor = log.verify().head_hash
    files[-1].unlink()

    assert log.verify().intact  # the limit of a chain alone
    completed = _verify_cli(tmp_path, "--anchor", anchor)
    assert completed.returncode == 3
    assert "anchor is not in the chain" in completed.stderr

    log.append(_record(9))
    assert _verify_cli(tmp_path, "--anchor", log.verify().hashes[1]).returncode == 0


def test_records_from_before_the_chain_are_covered_by_its_first_link(tmp_path):
    folder = tmp_path / "data" / "phi" / "_audit"
    folder.mkdir(parents=True)
    old = folder / "20240101T000000.000000Z-0f.json"
    old.write_text(json.dumps({"time": "2024-01-01T00:00:00Z", "actor": "svc", "host": "h", "action": "read_phi",
                               "subject": "s", "purpose": "p", "outcome": "success"}))  # fmt: skip
    log = AuditLog(resolve_location(str(folder)))
    log.append(_record(1))
    assert (log.verify().intact, log.verify().legacy_records) == (True, 1)
    assert log.records()[0].declared_actor is None

    _edit(old, purpose="something else")
    assert log.verify().broken_at == 1


def _append_many(folder: str, writer: int) -> None:
    log = AuditLog(resolve_location(folder))
    for number in range(8):
        log.append(_record(writer * 100 + number))


def test_writers_in_parallel_processes_keep_one_chain(tmp_path):
    # A run's steps write from several processes at once: none may fork the chain.
    folder = str(tmp_path / "audit")
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_many, args=(folder, writer)) for writer in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    report = AuditLog(resolve_location(folder)).verify()
    assert (report.intact, report.records) == (True, 32), report.problem


def test_the_os_user_is_recorded_whatever_the_environment_claims(tmp_path, monkeypatch):
    """Attack: `MEDICAL_ASSETS_ACTOR=dr.house USER=dr.house LOGNAME=dr.house` before re-identifying,
    so the log blames someone else. Before, the record's actor was the claim. Now the actor is the
    account of the effective uid, and the claim is kept beside it as `declared_actor`."""
    monkeypatch.setenv(ACTOR_VAR, "dr.house")
    monkeypatch.setenv("USER", "dr.house")
    monkeypatch.setenv("LOGNAME", "dr.house")
    log = AuditLog(resolve_location(str(tmp_path)))

    log.append(_record(1))
    log.append(_record(2, actor="dr.house"))  # named by the caller: the writer still is who the OS says

    assert OS_USER != "dr.house"
    for record in log.records():
        assert record.actor == OS_USER
        assert record.declared_actor == "dr.house"
    assert log.verify().intact


def test_a_writer_killed_mid_record_leaves_no_half_record_in_the_chain(tmp_path):
    # What a SIGKILL between writing and linking leaves: a hidden staging file, never a named record.
    log, files = _log_with(tmp_path, 2)
    (files[0].parent / ".staging-0123.json").write_text('{"time": "2025-')
    log.append(_record(3))
    assert (log.verify().intact, log.verify().records) == (True, 3)
