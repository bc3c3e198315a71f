"""RAY_ADDRESS: a separate Ray cluster (`ray start --head`, its own processes, token authentication,
loopback only) runs the whole graph's jobs; the run only disconnects from it.

The materialization runs in a child Python process, as `dagster asset materialize` would: Ray reads
RAY_AUTH_MODE when it is imported and caches the token per process, so a process that already ran a
local Ray (this test session) cannot join a cluster with another token.
"""

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap

import psutil
import pyarrow.parquet as pq
import pytest

from medical_assets_tests.scaleout.servers import (
    free_port,
    port_open,
    session_members,
    start_in_own_group,
    stop_group,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.long_running]

MESSAGES, DICOM_FILES = 100, 2
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1"}

# The child process: the whole graph with RayResource() and RAY_ADDRESS from the environment; it
# watches its own children meanwhile, where a local Ray would appear (raylet, gcs_server).
_RUN = textwrap.dedent(
    """
    import json, os, sys, threading
    import psutil
    import medical_assets.engine  # noqa: F401 - before ray, as the definitions module does
    from medical_assets.defs.resources import RayResource
    from medical_assets_tests.scaleout.servers import failures, materialize_graph

    children, done = set(), threading.Event()

    def watch():
        while not done.wait(0.25):
            for child in psutil.Process().children(recursive=True):
                try:
                    children.add(child.name())
                except psutil.Error:
                    pass

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    result = materialize_graph(sys.argv[1], os.environ["TEST_PSEUDONYM_KEY"], int(sys.argv[2]), int(sys.argv[3]), RayResource())
    done.set()
    watcher.join()
    print(json.dumps({"success": result.success, "failures": failures(result), "pid": os.getpid(), "children": sorted(children)}))
    """
)


@pytest.fixture
def ray_cluster():
    """`ray start --head --block` in its own session, its own temp folder and HOME (the token file),
    2 CPUs, no dashboard, every socket on 127.0.0.1; stopped by signalling its session's processes."""
    # Short: Ray puts Unix sockets below it (107-byte limit).
    root = tempfile.mkdtemp(prefix="ma-rc-")
    home, temp = os.path.join(root, "home"), os.path.join(root, "ray")
    os.makedirs(os.path.join(home, ".ray"), mode=0o700)
    token_path = os.path.join(home, ".ray", "auth_token")
    descriptor = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(descriptor, secrets.token_hex(32).encode())
    os.close(descriptor)
    port, log = free_port(), os.path.join(root, "ray-start.log")
    env = {name: value for name, value in os.environ.items() if not name.startswith("RAY_")}
    env.update(
        HOME=home,
        RAY_AUTH_MODE="token",  # `ray start` leaves authentication off unless told
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # every Ray socket on 127.0.0.1 (docs/engine-pitfalls.md)
        RAY_USAGE_STATS_ENABLED="0",
        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",  # SIGTERM stops it at once instead of draining for 30 s
    )
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    command = [
        ray, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
        "--ray-client-server-port", str(free_port()), "--num-cpus", "2", "--include-dashboard", "false",
        "--temp-dir", temp, "--disable-usage-stats",
    ]
    cluster = start_in_own_group(command, log, env=env)
    try:
        wait_for(lambda: port_open(port) and "Ray runtime started" in _read(log), 90, "ray start", log)
        yield {"address": f"127.0.0.1:{port}", "process": cluster, "token_path": token_path, "home": home, "temp": temp, "log": log}
    finally:
        try:
            descendants = psutil.Process(cluster.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        # Never `ray stop`: it stops every Ray on the machine. Ray workers take a process group of
        # their own, in the same session: stop_group stops the whole session.
        stop_group(cluster)
        # Anything that left the session as well is still ours: stop it by its own id.
        escaped = psutil.wait_procs(descendants, timeout=5)[1]
        for process in escaped:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        shutil.rmtree(root, ignore_errors=True)
        assert not session_members(cluster.pid) and not escaped, f"cluster processes survived: {escaped}"


def _read(path: str) -> str:
    with open(path, errors="replace") as file:
        return file.read()


def _session_logs(temp: str) -> list[str]:
    return os.listdir(os.path.join(temp, "session_latest", "logs"))


def test_the_whole_graph_runs_on_the_cluster_in_ray_address_and_leaves_it_running(ray_cluster, isolated_home, tmp_path):
    members = session_members(ray_cluster["process"].pid)
    names = {p.name() for p in members}
    assert {"gcs_server", "raylet"} <= names, names
    listening = {c.laddr.ip for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in {p.pid for p in members}}
    assert listening and listening <= LOOPBACK, f"the cluster listens beyond loopback: {listening}"

    data = tmp_path / "data"
    env = {name: value for name, value in os.environ.items() if not name.startswith(("RAY_", "MEDICAL_ASSETS_"))}
    env.update(
        HOME=str(isolated_home),  # not the cluster's: the token reaches the client only through the variables
        RAY_ADDRESS=ray_cluster["address"],
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=ray_cluster["token_path"],
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        RAY_USAGE_STATS_ENABLED="0",
        TEST_PSEUDONYM_KEY=secrets.token_urlsafe(32),
    )
    run = subprocess.run(
        [sys.executable, "-c", _RUN, str(data), str(MESSAGES), str(DICOM_FILES)],
        check=False, env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 0, run.stderr[-6000:]
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    assert outcome["success"], outcome["failures"]

    # The run's jobs ran on the cluster: its driver is registered in the cluster's session
    # (python-core-driver-<job id>_<pid>.log), and the run started no Ray of its own.
    drivers = [name for name in _session_logs(ray_cluster["temp"]) if name.startswith("python-core-driver-")]
    assert any(name.endswith(f"_{outcome['pid']}.log") for name in drivers), drivers
    assert not {"raylet", "gcs_server"} & set(outcome["children"]), outcome["children"]

    # The tables are complete.
    def rows(zone, table):
        return pq.read_table(data / zone / table).num_rows

    assert rows("phi", "hl7_messages") == MESSAGES and rows("deid", "hl7_messages") == MESSAGES
    assert rows("phi", "dicom_images") == DICOM_FILES
    assert rows("deid", "dicom_images") + rows("phi", "dicom_deid_excluded") == DICOM_FILES

    # The run only disconnected: the cluster is still up, with the same processes.
    assert port_open(int(ray_cluster["address"].rsplit(":", 1)[1]))
    still = {p.name() for p in session_members(ray_cluster["process"].pid)}
    assert {"gcs_server", "raylet"} <= still, still
    assert ray_cluster["process"].poll() is None
    assert not (isolated_home / ".ray").exists(), "the client must not write a token of its own"
