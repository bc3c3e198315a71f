"""Before its first job on a cluster, a run asks every node whether its workers find each module
the tasks import (`runtime.require_worker_modules`); here on the session's local Ray, one node."""

import pytest
import ray

from medical_assets.config import ConfigurationError
from medical_assets.engine import runtime


def test_every_module_the_tasks_import_is_found_and_a_missing_one_names_the_node(shared_ray, monkeypatch):
    assert runtime.missing_on_nodes(runtime.WORKER_MODULES) == {}
    runtime.require_worker_modules()

    monkeypatch.setattr(runtime, "WORKER_MODULES", ("pyarrow", "no_such_module_on_any_node"))
    with pytest.raises(ConfigurationError) as refused:
        runtime.require_worker_modules()
    (node,) = [node for node in ray.nodes() if node["Alive"]]
    assert f"{node['NodeManagerAddress']} ({node['NodeID'][:12]}): no_such_module_on_any_node." in str(refused.value)
    assert "pyarrow" not in str(refused.value)
