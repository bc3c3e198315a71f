"""A wrong setting fails the run before any step writes, with a message that names the setting and
says how to fix it (and never repeats a secret).

Every setting is tried on the project's Definitions loaded and run in-process, as the CLI loads them
(resources bound from the environment at load time); the CLI itself is run for one of them."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import dagster as dg
import pytest

import medical_assets.definitions

pytestmark = [pytest.mark.slow, pytest.mark.ray_free]  # starts Ray itself, or asserts none runs

REPO = Path(__file__).resolve().parents[2]
BAD_KEY = "tooShortToBeAKey"
ZONES = {"landing", "phi", "deid", "manifests"}
CASES = ["missing HL7 source", "missing DICOM source", "data folder cannot be written", "malformed key", "unreachable Ray", "bad number"]


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


def _settings(data: Path, overrides: dict[str, str]) -> dict[str, str]:
    return {
        "MEDICAL_ASSETS_DATA_DIR": str(data),
        "MEDICAL_ASSETS_SYNTHETIC_HL7_MESSAGES": "500",
        "MEDICAL_ASSETS_SYNTHETIC_DICOM_FILES": "4",
        **overrides,
    }


def _assert_failed_before_any_output(output: str, variable: str, data: Path) -> None:
    assert variable in output, output[-3000:]
    assert BAD_KEY not in output
    written = sorted(p.name for p in data.iterdir()) if data.exists() else []
    assert not ZONES & set(written), f"outputs touched: {written}"


@pytest.mark.parametrize("case", CASES)
def test_a_bad_setting_fails_before_any_output_and_names_itself(tmp_path, monkeypatch, capfd, case):
    """The whole graph of the Definitions as the CLI loads them, run in this process."""
    overrides, variable = _cases(tmp_path)[case]
    data = tmp_path / "data"
    for name, value in _settings(data, overrides).items():
        monkeypatch.setenv(name, value)
    # Loaded again under these variables: the key is bound to its variable at load time.
    defs = dg.load_from_defs_folder(path_within_project=Path(medical_assets.definitions.__file__).parent)
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(raise_on_error=False)

    assert not result.success
    assert not [event.step_key for event in result.all_events if event.is_step_start], "a step started"
    errors = [str(getattr(event.event_specific_data, "error", None) or event.message) for event in result.all_events]
    captured = capfd.readouterr()
    _assert_failed_before_any_output("\n".join(errors) + captured.out + captured.err, variable, data)


def test_the_cli_fails_on_a_bad_setting_before_any_output_and_never_prints_the_key(tmp_path):
    """`dagster asset materialize` in a subprocess, with a malformed key: a non-zero exit, the
    variable named, the secret nowhere in the output."""
    overrides, variable = _cases(tmp_path)["malformed key"]
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    ray_tmp = tempfile.mkdtemp(prefix="ma-cfg-", dir="/tmp")  # short: Ray's socket paths must fit
    env = {**os.environ, "DAGSTER_HOME": str(home), "TMPDIR": ray_tmp, **_settings(data, overrides)}
    env.pop("RAY_ADDRESS", None)
    dagster = Path(sys.executable).with_name("dagster")
    try:
        done = subprocess.run(
            [str(dagster), "asset", "materialize", "-m", "medical_assets.definitions", "--select", "*"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode != 0
    _assert_failed_before_any_output(done.stdout + done.stderr, variable, data)
