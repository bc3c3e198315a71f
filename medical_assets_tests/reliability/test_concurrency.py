"""Two materializations of the whole graph started at once on one data folder, from two Dagster
instances (so Dagster's own queue and pools cannot keep them apart): the second waits for the
first, says so in its log, and every output ends exact, never doubled."""

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MESSAGES, DICOM_FILES = 600, 2


def _start(tmp_path: Path, name: str, data: Path, key: str) -> tuple[subprocess.Popen, Path, str]:
    home = tmp_path / f"home-{name}"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "MEDICAL_ASSETS_DATA_DIR": str(data),
        "MEDICAL_ASSETS_SYNTHETIC_HL7_MESSAGES": str(MESSAGES),
        "MEDICAL_ASSETS_SYNTHETIC_DICOM_FILES": str(DICOM_FILES),
        "MEDICAL_ASSETS_PSEUDONYM_KEY": key,
        # Short: Ray's socket paths live under TMPDIR and must fit in 107 bytes.
        "TMPDIR": tempfile.mkdtemp(prefix=f"ma-{name}-", dir="/tmp"),
    }
    log = tmp_path / f"{name}.log"
    dagster = Path(sys.executable).with_name("dagster")
    process = subprocess.Popen(
        [str(dagster), "asset", "materialize", "-m", "medical_assets.definitions", "--select", "*"],
        cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    return process, log, env["TMPDIR"]


def test_two_runs_at_once_take_turns_and_leave_exact_outputs(tmp_path):
    data, key = tmp_path / "data", secrets.token_urlsafe(32)
    runs = [_start(tmp_path, name, data, key) for name in ("a", "b")]
    try:
        for process, log, _ in runs:
            assert process.wait(timeout=600) == 0, log.read_text(errors="replace")[-4000:]
    finally:
        for process, _, ray_tmp in runs:
            if process.poll() is None:
                os.killpg(process.pid, 9)
                process.wait()
            shutil.rmtree(ray_tmp, ignore_errors=True)
    logs = [log.read_text(errors="replace") for _, log, _ in runs]
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
