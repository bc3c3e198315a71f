"""One whole-graph run of the session, shared by the tests that only read what it wrote."""

import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from medical_assets_tests.defs.pipeline import every_job_in_ray, materialize_all

# Enough messages for most published counts to clear the suppression threshold, and images of two
# modalities (the first study, a CT series, has 12).
MESSAGES, DICOM_FILES = 1_500, 16


@dataclass(frozen=True)
class PipelineRun:
    """A data folder the whole graph was materialized into, under `key`, with the default settings."""

    data: Path
    key: str
    result: dg.ExecuteInProcessResult

    def materialize(self, data: Path, selection=None, **settings) -> dg.ExecuteInProcessResult:
        """The graph, or `selection` of it, into `data` with this run's key and corpus and `settings`."""
        return materialize_all(data, self.key, selection, messages=MESSAGES, dicom_files=DICOM_FILES, **settings)

    def copy(self, target: Path) -> Path:
        """The data folder copied to `target` (modes and times kept), for a test that changes it."""
        shutil.copytree(self.data, target, symlinks=True)
        return target


@pytest.fixture(scope="session")
def pipeline_run(shared_ray, tmp_path_factory) -> PipelineRun:
    """Every job of this run goes to Ray's workers, however small its input: the tests that read it
    check the Ray side of each job (the nights of test_carry_over, among others, run theirs here)."""
    data = tmp_path_factory.mktemp("pipeline_run") / "data"
    key = secrets.token_urlsafe(32)
    with every_job_in_ray():
        return PipelineRun(data, key, materialize_all(data, key, messages=MESSAGES, dicom_files=DICOM_FILES))

