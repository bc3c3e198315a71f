"""Users' CI: `dagster asset materialize` in a subprocess, from the project root, with no other argument."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from medical_assets_tests import hl7_samples

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DAGSTER = Path(sys.executable).with_name("dagster")


def _cli_materialize(tmp_path, **env_overrides):
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), **env_overrides}
    completed = subprocess.run(
        [str(DAGSTER), "asset", "materialize", "-m", "medical_assets.definitions", "--select", "*"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        start_new_session=True,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed


def test_cli_materializes_the_whole_graph_into_the_data_dir(tmp_path):
    data = tmp_path / "data"
    _cli_materialize(
        tmp_path,
        MEDICAL_ASSETS_DATA_DIR=str(data),
        MEDICAL_ASSETS_SYNTHETIC_HL7_MESSAGES="800",
        MEDICAL_ASSETS_SYNTHETIC_DICOM_FILES="6",
    )
    assert pq.read_table(data / "phi" / "hl7_messages").num_rows == 800
    assert len(list((data / "landing" / "hl7").glob("*.hl7"))) == 2
    assert pq.read_table(data / "phi" / "dicom_images").num_rows == 6


def test_cli_honours_the_hl7_source_variable(tmp_path):
    source = tmp_path / "feed"
    source.mkdir()
    (source / "feed.hl7").write_bytes(hl7_samples.feed_with_broken_message())
    data = tmp_path / "data"
    completed = _cli_materialize(
        tmp_path,
        MEDICAL_ASSETS_DATA_DIR=str(data),
        MEDICAL_ASSETS_HL7_SOURCE=str(source),
        MEDICAL_ASSETS_SYNTHETIC_DICOM_FILES="0",
    )
    assert pq.read_table(data / "phi" / "hl7_messages").num_rows == 2
    assert pq.read_table(data / "phi" / "hl7_errors").num_rows == 1
    assert not (data / "landing" / "hl7").exists()
    # No DICOM at all is a quiet night, not an error: the tables exist, empty.
    assert pq.read_table(data / "phi" / "dicom_images").num_rows == 0
    # The run log carries counts, never the patients of the feed.
    for secret in ("DOE", "JANE", "123456", "SECRETNAME", "900-12-3456"):
        assert secret not in completed.stdout + completed.stderr
