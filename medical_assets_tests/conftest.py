"""Test-wide isolation (no test writes to the real home folder, ./data or the user's Dagster instance),
and the one local Ray the in-process tests of Ray jobs and Dagster runs share."""

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


@pytest.fixture(scope="session")
def shared_ray(isolated_home):
    """A local Ray on 2 CPUs in this process, started at the first test that asks for it and stopped at
    the session's end. A run's RayResource finds Ray already initialised and uses it without stopping
    it, so each run skips Ray's start and meets warm workers."""
    from medical_assets.engine.runtime import RayRuntime

    runtime = RayRuntime(num_cpus=2)
    runtime.ensure_started()
    yield runtime
    runtime.stop()


def pytest_collection_modifyitems(items):
    """Files that need a process without Ray first, then the rest; the long ones first in each group.

    Tests about Ray's start and stop, tests asserting that no Ray runs, and runs whose Ray must start
    in a given environment (marked `ray_free`, per file) must meet their process before the session's
    shared Ray starts there; every other test may share it (`shared_ray`), or need no Ray at all.
    Within each group the `long_running` tests come first, then the other `slow` ones.

    `make test` runs two pytest-xdist workers with `--dist loadfile --no-loadscope-reorder`: a file's
    tests run together on one worker (they share their module's fixtures: a full run, a Ray cluster),
    and files are handed out in this order (not xdist's default, largest file first), so no worker
    starts its shared Ray before a `ray_free` file, and the long ones do not end the run alone."""
    ray_free = {item.path for item in items if _marked(item, "ray_free")}
    sharing = sorted(str(item.path) for item in items if item.path in ray_free and _uses_shared_ray(item))
    if sharing:
        raise pytest.UsageError(f"a ray_free file asks for the shared Ray: {sorted(set(sharing))}")
    items.sort(key=lambda item: (item.path not in ray_free, not _marked(item, "long_running"), not _marked(item, "slow")))
    _check_session_run_sharing(items)


# Files whose tests read the session's full run of the graph (`pipeline_run`, built once per xdist
# worker): one work unit for `--dist loadfile`, so that one worker builds it, not both.
SHARING_THE_SESSION_RUN = ("medical_assets_tests/defs/test_analytics.py", "medical_assets_tests/defs/test_deidentified.py")


def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile`, with the files of SHARING_THE_SESSION_RUN handed out together."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SessionRunSharingScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return SHARING_THE_SESSION_RUN[0] if scope in SHARING_THE_SESSION_RUN else scope

    return SessionRunSharingScheduling(config, log)


def _check_session_run_sharing(items) -> None:
    """A file named in SHARING_THE_SESSION_RUN that no longer reads the session run (renamed,
    rewritten) is an error here, rather than a silent cost."""
    readers = {str(item.path.relative_to(item.config.rootpath)) for item in items if "pipeline_run" in getattr(item, "fixturenames", ())}
    collected = {str(item.path.relative_to(item.config.rootpath)) for item in items}
    stale = [name for name in SHARING_THE_SESSION_RUN if name in collected and name not in readers]
    if stale:
        raise pytest.UsageError(f"SHARING_THE_SESSION_RUN names files that do not read pipeline_run: {stale}")


def _marked(item, name: str) -> bool:
    return item.get_closest_marker(name) is not None


def _uses_shared_ray(item) -> bool:
    return "shared_ray" in getattr(item, "fixturenames", ())
