"""A wrong setting fails the CLI run before any step writes, with a message that names the setting
and says how to fix it (and never repeats a secret)."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BAD_KEY = "tooShortToBeAKey"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the socket is


def _cases(tmp_path: Path) -> dict[str, tuple[dict[str, str], str]]:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return {
        "missing HL7 source": ({"MEDICAL_ASSETS_HL7_SOURCE": str(tmp_path / "no-such-feed")}, "MEDICAL_ASSETS_HL7_SOURCE"),
        "missing DICOM source": ({"MEDICAL_ASSETS_DICOM_SOURCE": str(tmp_path / "no-such-pacs")}, "MEDICAL_ASSETS_DICOM_SOURCE"),
        "data folder cannot be written": ({"MEDICAL_ASSETS_DATA_DIR": str(blocker / "data")}, "MEDICAL_ASSETS_DATA_DIR"),
        "malformed key": ({"MEDICAL_ASSETS_PSEUDONYM_KEY": BAD_KEY}, "MEDICAL_ASSETS_PSEUDONYM_KEY"),
        "unreachable Ray": ({"RAY_ADDRESS": f"127.0.0.1:{_closed_port()}"}, "RAY_ADDRESS"),
        "bad number": ({"MEDICAL_ASSETS_SUPPRESSION_THRESHOLD": "ten"}, "MEDICAL_ASSETS_SUPPRESSION_THRESHOLD"),
    }


@pytest.mark.parametrize(
    "case",
    ["missing HL7 source", "missing DICOM source", "data folder cannot be written", "malformed key", "unreachable Ray", "bad number"],
)
def test_a_bad_setting_fails_before_any_output_and_names_itself(tmp_path, case):
    overrides, variable = _cases(tmp_path)[case]
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    ray_tmp = tempfile.mkdtemp(prefix="ma-cfg-", dir="/tmp")  # short: Ray's socket paths must fit
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "MEDICAL_ASSETS_DATA_DIR": str(data),
        "MEDICAL_ASSETS_SYNTHETIC_HL7_MESSAGES": "500",
        "MEDICAL_ASSETS_SYNTHETIC_DICOM_FILES": "4",
        "TMPDIR": ray_tmp,
        **overrides,
    }
    if "RAY_ADDRESS" not in overrides:
        env.pop("RAY_ADDRESS", None)
    dagster = Path(sys.executable).with_name("dagster")
    try:
        done = subprocess.run(
            [str(dagster), "asset", "materialize", "-m", "medical_assets.definitions", "--select", "*"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert variable in output, output[-3000:]
    assert BAD_KEY not in output
    written = sorted(p.name for p in data.iterdir()) if data.exists() else []
    assert not {"landing", "phi", "deid", "manifests"} & set(written), f"outputs touched: {written}"
