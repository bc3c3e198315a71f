"""The local Ray we start: loopback only, no files in the home folder or /tmp/ray, stopped completely.

These tests start Ray themselves, or expect it not to be running: none asks for `shared_ray`, so they
run before the session's shared Ray starts."""

import os

import psutil
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray_free]  # starts Ray itself, or asserts none runs


def _ray_processes(driver: psutil.Process) -> list[psutil.Process]:
    return [p for p in driver.children(recursive=True) if p.is_running()]


def test_local_ray_listens_on_loopback_only_and_leaves_nothing_behind(isolated_home, tmp_path):
    from medical_assets.engine.runtime import RayRuntime

    driver = psutil.Process()
    runtime = RayRuntime(num_cpus=1)
    runtime.ensure_started()
    try:
        import ray

        assert ray.get(ray.remote(lambda: os.getpid()).remote()) != os.getpid()
        # Workers allocate Arrow memory from the system allocator, whose freed pages release_memory returns.
        assert ray.get(ray.remote(lambda: __import__("pyarrow").default_memory_pool().backend_name).remote()) == "system"
        processes = _ray_processes(driver)
        assert processes, "a local Ray should run as child processes of the driver"
        pids = {p.pid for p in processes} | {driver.pid}
        listening = [
            c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in pids
        ]
        assert listening, "Ray should have listening sockets"
        addresses = {c.laddr.ip for c in listening}
        assert addresses <= {"127.0.0.1", "::ffff:127.0.0.1"}, f"Ray listens beyond loopback: {addresses}"

        temp_dir = runtime._temp_dir
        assert temp_dir and not temp_dir.startswith("/tmp/ray") and os.path.isdir(temp_dir)
    finally:
        runtime.stop()

    assert not os.path.exists(temp_dir), "the session folder must be removed"
    assert not (isolated_home / ".ray").exists(), "no token or session file may land in the home folder"
    psutil.wait_procs(processes, timeout=15)
    assert not [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_unreachable_ray_address_fails_with_a_message_naming_the_setting():
    from medical_assets.config import ConfigurationError
    from medical_assets.engine.runtime import RayRuntime

    runtime = RayRuntime(address="127.0.0.1:1")
    with pytest.raises(ConfigurationError, match="RAY_ADDRESS"):
        runtime.ensure_started()


def test_a_missing_token_file_fails_with_a_message_instead_of_aborting_the_process(tmp_path, monkeypatch):
    """Ray itself aborts the process (a failed C++ check) on a token path it cannot read."""
    from medical_assets.config import ConfigurationError
    from medical_assets.engine.runtime import RayRuntime

    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match="RAY_AUTH_TOKEN_PATH=.*cannot be read"):
        RayRuntime(address="127.0.0.1:1").ensure_started()
    (tmp_path / "empty").write_text("\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "empty"))
    with pytest.raises(ConfigurationError, match="RAY_AUTH_TOKEN_PATH=.*is empty"):
        RayRuntime(address="127.0.0.1:1").ensure_started()


def test_ray_is_started_by_the_first_job_that_asks_for_it_not_before():
    from medical_assets.engine.runtime import ray_is_paid_for, require_ray, start_on_demand

    started = []
    start_on_demand(lambda: started.append(True))  # what a run's RayResource arms
    try:
        assert not ray_is_paid_for() and not started  # steps start no Ray; a job in this process neither
        require_ray()
        require_ray()
        assert ray_is_paid_for() and len(started) == 2  # each job asks; the run's runtime starts Ray once
        start_on_demand(lambda: started.append(True))  # the next run
        assert not ray_is_paid_for()
    finally:
        start_on_demand(None)
