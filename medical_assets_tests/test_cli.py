"""Users' CI: `dagster asset materialize` in a subprocess, from the project root, with nothing set but
the data folder and a hospital's HL7 folder.

The synthetic default through the CLI (`make run`'s command) is the crash-safety test's last run
(reliability/test_crash_safety.py): that one is compared table by table with an undisturbed run."""

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from medical_assets_tests import hl7_samples

pytestmark = [pytest.mark.slow, pytest.mark.long_running]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DAGSTER = Path(sys.executable).with_name("dagster")
RUN_TIMEOUT_S = 600


@dataclass
class CliRun:
    data: Path
    process: subprocess.Popen
    log: Path
    tmpdir: str  # the run's TMPDIR, where its local Ray keeps its session

    def wait(self) -> str:
        """The run's output, once it has ended with success."""
        try:
            returncode = self.process.wait(timeout=RUN_TIMEOUT_S)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        output = self.log.read_text(errors="replace")
        assert returncode == 0, output[-4000:]
        return output


def _start_cli_materialize(folder: Path, **env_overrides) -> CliRun:
    folder.mkdir()
    dagster_home = folder / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    data = folder / "data"
    # Short: Ray's socket paths live under TMPDIR and must fit in 107 bytes.
    tmpdir = tempfile.mkdtemp(prefix="ma-cli-", dir="/tmp")
    # Set up before the tests' own clean-up of the environment runs: a developer's settings are dropped here.
    env = {name: value for name, value in os.environ.items() if not name.startswith("MEDICAL_ASSETS_") and name != "RAY_ADDRESS"}
    env |= {"DAGSTER_HOME": str(dagster_home), "MEDICAL_ASSETS_DATA_DIR": str(data), "TMPDIR": tmpdir, **env_overrides}
    log = folder / "output.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(DAGSTER), "asset", "materialize", "-m", "medical_assets.definitions", "--select", "*"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return CliRun(data, process, log, tmpdir)


@pytest.fixture(scope="module")
def hl7_source_run(tmp_path_factory):
    """The whole graph from the CLI on an HL7 feed of the test's own, with no DICOM at all."""
    root = tmp_path_factory.mktemp("cli")
    source = root / "feed"
    source.mkdir()
    (source / "feed.hl7").write_bytes(hl7_samples.feed_with_broken_message())
    run = _start_cli_materialize(root / "hl7-source", MEDICAL_ASSETS_HL7_SOURCE=str(source), MEDICAL_ASSETS_SYNTHETIC_DICOM_FILES="0")
    yield run
    if run.process.poll() is None:
        os.killpg(run.process.pid, 9)
        run.process.wait()
    shutil.rmtree(run.tmpdir, ignore_errors=True)


def test_cli_honours_the_hl7_source_variable_and_materializes_the_whole_graph(hl7_source_run):
    run = hl7_source_run
    output = run.wait()
    assert pq.read_table(run.data / "phi" / "hl7_messages").num_rows == 2
    assert pq.read_table(run.data / "phi" / "hl7_errors").num_rows == 1
    assert not (run.data / "landing" / "hl7").exists()
    # No DICOM at all is a quiet night, not an error: the tables exist, empty.
    assert pq.read_table(run.data / "phi" / "dicom_images").num_rows == 0
    # Every step ran to its published output: the de-identified tables, the analytics and the reports.
    assert pq.read_table(run.data / "deid" / "hl7_messages").num_rows == 2
    assert pq.read_table(run.data / "deid" / "analytics" / "hospital_utilization").num_rows > 0
    assert (run.data / "deid" / "reports" / "dashboard.html").is_file()
    # The run log carries counts, never the patients of the feed.
    for secret in ("DOE", "JANE", "123456", "SECRETNAME", "900-12-3456"):
        assert secret not in output
