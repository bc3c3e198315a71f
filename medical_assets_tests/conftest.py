"""Test-wide isolation: no test writes to the real home folder, ./data or the user's Dagster instance."""

import os

import pytest

# Before any test imports ray: the engine sets what Ray reads once, at import (loopback only).
import medical_assets.engine  # noqa: F401


@pytest.fixture(scope="session", autouse=True)
def isolated_home(tmp_path_factory):
    """Ray and Dagster look under $HOME (~/.ray, ~/.dagster); point it at a throwaway folder."""
    home = tmp_path_factory.mktemp("home")
    saved = {name: os.environ.get(name) for name in ("HOME", "DAGSTER_HOME")}
    os.environ["HOME"] = str(home)
    os.environ.pop("DAGSTER_HOME", None)
    yield home
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def no_pipeline_environment(monkeypatch):
    """Tests set the pipeline's variables explicitly; a developer's own settings must not leak in."""
    for name in list(os.environ):
        if name.startswith("MEDICAL_ASSETS_") or name == "RAY_ADDRESS":
            monkeypatch.delenv(name)
