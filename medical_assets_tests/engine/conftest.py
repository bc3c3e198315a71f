"""One local Ray per test module of the engine's jobs (a start costs seconds), stopped at its end."""

import pytest


@pytest.fixture(scope="module")
def ray_runtime():
    from medical_assets.engine.runtime import RayRuntime

    runtime = RayRuntime(num_cpus=2)
    runtime.ensure_started()
    yield runtime
    runtime.stop()
