"""Transient failures are retried by Dagster, anything else fails the step at once."""

import dagster as dg
import pytest
import ray

from medical_assets.config import ConfigurationError
from medical_assets.defs import resources
from medical_assets.defs.resources import RayResource
from medical_assets.engine.runtime import is_transient


def _chained(outer: Exception, inner: Exception) -> Exception:
    try:
        try:
            raise inner
        except Exception as error:
            raise outer from error
    except Exception as error:
        return error


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ray.exceptions.WorkerCrashedError(), True),
        (ray.exceptions.ObjectStoreFullError(), True),
        (ConnectionResetError("reset by peer"), True),
        (_chained(RuntimeError("write failed"), TimeoutError()), True),
        (ValueError("a bug"), False),
        (FileNotFoundError("no such file"), False),
        (_chained(ConfigurationError("RAY_ADDRESS unreachable"), ConnectionRefusedError()), False),
    ],
)
def test_what_counts_as_transient(error, transient):
    assert is_transient(error) is transient


def _run(failure: Exception, monkeypatch) -> tuple[dg.ExecuteInProcessResult, list[int]]:
    monkeypatch.setattr(resources, "TRANSIENT_RETRY_WAIT_S", 0)
    attempts: list[int] = []

    @dg.asset
    def flaky(ray_engine: RayResource) -> None:
        with ray_engine.transient_failures_retried():
            attempts.append(1)
            if len(attempts) == 1:
                raise failure

    result = dg.materialize([flaky], resources={"ray_engine": RayResource()}, raise_on_error=False)
    return result, attempts


def test_a_lost_worker_is_retried_and_the_step_succeeds(monkeypatch):
    result, attempts = _run(ray.exceptions.WorkerCrashedError(), monkeypatch)
    assert result.success and len(attempts) == 2


def test_a_bug_fails_the_step_without_a_retry(monkeypatch):
    result, attempts = _run(ValueError("a bug"), monkeypatch)
    assert not result.success and len(attempts) == 1
