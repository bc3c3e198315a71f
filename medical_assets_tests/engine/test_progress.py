"""Progress counting across several jobs of one Ray session."""

import gc

import pytest

pytestmark = pytest.mark.slow


def test_counter_survives_between_jobs_and_restarts_with_a_new_session():
    import ray

    from medical_assets.engine.progress import progress_counter
    from medical_assets.engine.runtime import RayRuntime

    runtime = RayRuntime(num_cpus=1)
    runtime.ensure_started()
    try:
        first = progress_counter()
        first.add.remote({"files": 3})
        assert ray.get(first.snapshot.remote()) == {"files": 3}
        del first
        gc.collect()  # the job that used it is over: no handle of the caller is left
        second = progress_counter()
        assert ray.get(second.snapshot.remote()) == {}, "a new job starts from zero"
    finally:
        runtime.stop()

    runtime = RayRuntime(num_cpus=1)
    runtime.ensure_started()
    try:
        assert ray.get(progress_counter().snapshot.remote()) == {}
    finally:
        runtime.stop()
