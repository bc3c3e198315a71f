"""A step's record: carried over only when code, settings, every input and every output are as the
recorded run left them; each kind of change is named as the reason to compute."""

import json
import os
import sys
from pathlib import Path

import pytest

from medical_assets import step_records
from medical_assets.step_records import StepBasis, StepRecord
from medical_assets.storage import resolve_location

SETTINGS = {"profile": "safe_harbor", "suppression threshold": 10}


@pytest.fixture
def data(tmp_path):
    for relative, content in {
        "phi/hl7_messages/part-00000.parquet": b"a" * 10,
        "phi/hl7_messages/part-00001.parquet": b"b" * 20,
        "phi/_census/vocabulary.parquet": b"v",
        "deid/hl7_messages/part-00000.parquet": b"x" * 5,
    }.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return resolve_location(str(tmp_path))


def _basis(data, settings=SETTINGS, code="c1"):
    inputs = {"phi/hl7_messages": data.child("phi", "hl7_messages"), "phi/vocabulary": data.child("phi", "_census", "vocabulary.parquet")}
    return StepBasis(settings, inputs, code=code)


def _outputs(data):
    return {"deid/hl7_messages": data.child("deid", "hl7_messages")}


def _recorded(data):
    """A record as a step leaves it after publishing; returns it."""
    record = StepRecord(data.child("manifests"), "step")
    decision = record.decide(_basis(data), _outputs(data))
    assert decision.carried is None and decision.reason == "no earlier run of this step is recorded"
    record.save(_basis(data), decision, _outputs(data), "run-1", {"counts": {"hl7_messages": 3}})
    return record


def test_unchanged_carries_over_with_what_the_run_saved(data):
    record = _recorded(data)
    decision = record.decide(_basis(data), _outputs(data))
    assert decision.carried is not None and decision.reason == ""
    assert decision.carried.run_id == "run-1" and decision.carried.details == {"counts": {"hl7_messages": 3}}


def _touch_later(path):
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


CHANGES = {
    "a part added to an input": (lambda root: (root / "phi/hl7_messages/part-00002.parquet").write_bytes(b"c"), "phi/hl7_messages changed"),
    "an input rewritten, same size": (lambda root: _touch_later(root / "phi/hl7_messages/part-00000.parquet"), "phi/hl7_messages changed"),
    "an input file gone": (lambda root: (root / "phi/_census/vocabulary.parquet").unlink(), "phi/vocabulary changed"),
    "an output part deleted": (
        lambda root: (root / "deid/hl7_messages/part-00000.parquet").unlink(), "deid/hl7_messages changed since run run-1 published it"
    ),
    "an output part written by hand": (
        lambda root: (root / "deid/hl7_messages/part-00009.parquet").write_bytes(b"y"), "deid/hl7_messages changed since run run-1"
    ),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_changed_file_is_named_and_the_record_dropped(data, change):
    record = _recorded(data)
    alter, reason = CHANGES[change]
    alter(Path(data.path))
    decision = record.decide(_basis(data), _outputs(data))
    assert decision.carried is None and decision.reason.startswith(reason), decision.reason
    # Dropped before the step computes: a run stopped half-way leaves no record that could match.
    assert not record.location.exists()


def test_changed_settings_and_code_are_named(data):
    record = _recorded(data)
    decision = record.decide(_basis(data, {**SETTINGS, "suppression threshold": 5}), _outputs(data))
    assert decision.reason == "settings changed: suppression threshold"
    record = _recorded(data)
    assert record.decide(_basis(data, {"profile": "safe_harbor"}), _outputs(data)).reason == "settings changed: suppression threshold"
    record = _recorded(data)
    assert record.decide(_basis(data, code="c2"), _outputs(data)).reason == "the code changed"


def test_a_requested_recompute_wins(data):
    record = _recorded(data)
    decision = record.decide(_basis(data), _outputs(data), recompute="MEDICAL_ASSETS_RECOMPUTE is set")
    assert decision.carried is None and decision.reason == "MEDICAL_ASSETS_RECOMPUTE is set"
    assert not record.location.exists()


def test_an_unreadable_record_means_compute(data):
    record = _recorded(data)
    record.location.write_bytes_atomically(b"{not json")
    assert record.decide(_basis(data), _outputs(data)).reason == "no earlier run of this step is recorded"


def test_the_inputs_are_those_seen_before_the_step_ran(data, tmp_path):
    """A record claims the input versions the step read, not those found when it finished."""
    record = StepRecord(data.child("manifests"), "step")
    decision = record.decide(_basis(data), _outputs(data))
    (tmp_path / "phi/hl7_messages/part-00002.parquet").write_bytes(b"arrived while the step ran")
    record.save(_basis(data), decision, _outputs(data), "run-1", {})
    assert record.decide(_basis(data), _outputs(data)).reason == "phi/hl7_messages changed"


def test_the_record_holds_names_digests_and_counts_only(data, tmp_path):
    record = _recorded(data)
    text = record.location.read_bytes().decode()
    saved = json.loads(text)
    assert set(saved) == {"step", "run_id", "code", "settings", "inputs", "outputs", "details"}
    assert str(tmp_path) not in text and "part-0000" not in text
    assert all(len(digest) == 64 for digest in [*saved["inputs"].values(), *saved["outputs"].values()])


def test_the_code_fingerprint_follows_every_source_file_of_the_package(tmp_path, monkeypatch):
    package = tmp_path / "fingerprinted"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "helper.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = step_records.package_fingerprint("fingerprinted")
    step_records.package_fingerprint.cache_clear()
    assert step_records.package_fingerprint("fingerprinted") == first
    (package / "sub" / "helper.py").write_text("X = 2\n")  # a helper deep in a subpackage
    step_records.package_fingerprint.cache_clear()
    assert step_records.package_fingerprint("fingerprinted") != first
    step_records.package_fingerprint.cache_clear()
    sys.modules.pop("fingerprinted", None)
