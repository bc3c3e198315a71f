"""Progress counting across several jobs of one Ray session, and in the next session.

The test starts and stops two Rays of its own: it does not ask for `shared_ray`, so it runs before
the session's shared Ray starts."""

import gc

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray_free]  # starts Ray itself, or asserts none runs


def test_counter_survives_between_jobs_and_restarts_with_a_new_session():
    from medical_assets.engine.progress import progress_counter
    from medical_assets.engine.runtime import RayRuntime

    runtime = RayRuntime(num_cpus=1)
    runtime.ensure_started()
    try:
        first = progress_counter()
        first.report(0, {"files": 3, "hl7_messages": 900})
        first.report(1, {"files": 2})
        assert first.snapshot() == {"files": 5, "hl7_messages": 900}
        first.report(0, {"files": 1, "hl7_messages": 300})  # task 0 retried: it counts from zero again
        assert first.snapshot() == {"files": 3, "hl7_messages": 300}
        del first
        gc.collect()  # the job that used it is over: no handle of the caller is left
        second = progress_counter()
        assert second.snapshot() == {}, "a new job starts from zero"
    finally:
        runtime.stop()

    runtime = RayRuntime(num_cpus=1)
    runtime.ensure_started()
    try:
        assert progress_counter().snapshot() == {}
    finally:
        runtime.stop()


def test_a_job_in_this_process_counts_its_tasks_as_the_actor_would():
    from medical_assets.engine.progress import progress_counter

    here = progress_counter(here=True)
    here.report(0, {"files": 3, "hl7_messages": 900})
    here.report(1, {"files": 2})
    here.report(0, {"files": 1, "hl7_messages": 300})  # task 0 again: it counts from zero
    assert here.snapshot() == {"files": 3, "hl7_messages": 300}
    assert progress_counter(here=True).snapshot() == {}, "each job in this process has its own counter"
