"""Two materializations of the whole graph started at once on one data folder, from two Dagster
instances (so Dagster's own queue and pools cannot keep them apart): the second waits for the
first, says so in its log, and every output ends exact, never doubled.

The two runs are in-process materializations in two threads of the test's process, on the
session's Ray; the data folder's lock is an `flock` on a file each run opens for itself, so one
process or two makes no difference to it. The second starts once the first holds the lock: the
check that the data folder takes a file names its probe by process, which two threads share."""

import secrets
import threading
import time

import dagster as dg
import pyarrow.parquet as pq
import pytest

from medical_assets.locking import LOCK_FILE
from medical_assets_tests.scaleout.servers import failures, materialize_graph

pytestmark = [pytest.mark.slow, pytest.mark.long_running]

MESSAGES, DICOM_FILES = 600, 2
RUN_TIMEOUT_S = 600


def _materialize_on_an_instance_of_its_own(data, key: str, outcome: dict) -> None:
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            result = materialize_graph(str(data), key, messages=MESSAGES, dicom_files=DICOM_FILES, instance=instance)
            outcome["result"] = result
            outcome["log"] = "\n".join(entry.user_message for entry in instance.all_logs(result.run_id))
    except BaseException as error:  # noqa: BLE001 - reported by the test's thread
        outcome["error"] = error


def test_two_runs_at_once_take_turns_and_leave_exact_outputs(shared_ray, tmp_path):
    data, key = tmp_path / "data", secrets.token_urlsafe(32)
    outcomes = [{}, {}]
    threads = [threading.Thread(target=_materialize_on_an_instance_of_its_own, args=(data, key, outcome)) for outcome in outcomes]
    threads[0].start()
    lock = data / LOCK_FILE
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while threads[0].is_alive() and not (lock.exists() and lock.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.05)  # the holder writes its name into the file once it has the lock
    threads[1].start()
    for thread in threads:
        thread.join(timeout=RUN_TIMEOUT_S)
    assert not any(thread.is_alive() for thread in threads), f"a run did not end within {RUN_TIMEOUT_S} s"
    for outcome in outcomes:
        assert "error" not in outcome, outcome.get("error")
        assert outcome["result"].success, failures(outcome["result"])
    logs = [outcome["log"] for outcome in outcomes]
    waited = [text for text in logs if "waiting for the data folder" in text]
    assert len(waited) == 1, "exactly one run should have waited for the other"
    assert "is writing to it" in waited[0] and "going on" in waited[0]

    assert pq.read_table(data / "phi" / "hl7_messages").num_rows == MESSAGES
    assert pq.read_table(data / "deid" / "hl7_messages").num_rows == MESSAGES
    images = pq.read_table(data / "phi" / "dicom_images").num_rows
    assert images == DICOM_FILES
    exported = pq.read_table(data / "deid" / "dicom_images").num_rows
    assert exported + pq.read_table(data / "phi" / "dicom_deid_excluded").num_rows == images
    for zone in ("phi", "deid", "deid/analytics"):
        assert not (data / zone / ".staging").exists() or not any((data / zone / ".staging").iterdir()), zone
