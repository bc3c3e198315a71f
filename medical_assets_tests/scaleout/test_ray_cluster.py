"""RAY_ADDRESS: a Ray cluster of two nodes on this machine (its own processes, token
authentication, loopback only) runs the whole graph's jobs on both nodes, with the data folder on
an S3-compatible server and our code reaching the workers through Ray's runtime_env only: the
nodes' Python has every dependency but not medical_assets. The run only disconnects from it. (A
node without a module the tasks need: engine/test_worker_modules.py.)

The materialization runs in a child Python process, as `dagster asset materialize` would: Ray reads
RAY_AUTH_MODE when it is imported and caches the token per process, so a process that already ran a
local Ray (this test session) cannot join a cluster with another token.
"""

import glob
import json
import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap

import psutil
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from medical_assets_tests.scaleout.servers import (
    free_port,
    port_open,
    s3_server,
    session_members,
    start_in_own_group,
    stop_group,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.long_running]

MESSAGES, DICOM_FILES = 100, 2
BUCKET, PREFIX = "medical-assets-cluster", "site-b/data"
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


@pytest.fixture(scope="module")
def node_python(tmp_path_factory):
    """A Python for the cluster's nodes with every dependency of this one but not medical_assets: a
    venv whose only site entry is this environment's site-packages as a plain path, so its .pth
    files (the editable install of medical_assets among them) are not run."""
    venv = tmp_path_factory.mktemp("node-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--clear", str(venv)], check=True)
    site = glob.glob(str(venv / "lib" / "python3*" / "site-packages"))[0]
    with open(os.path.join(site, "dependencies.pth"), "w") as pth:
        pth.write(sysconfig.get_paths()["purelib"] + "\n")
    python = str(venv / "bin" / "python")
    probe = subprocess.run(
        [python, "-c", "import ray, pydicom, pyarrow; import medical_assets"], cwd=str(venv), capture_output=True, text=True
    )
    assert "No module named 'medical_assets'" in probe.stderr, probe.stderr[-2000:]
    return python


@pytest.fixture
def ray_cluster(node_python, tmp_path_factory):
    """Two nodes (ray_two_nodes.py) in their own session, with their own HOME (the token file) and
    temp folders, 1 CPU each, the object-store credentials in their environment as a node's
    instance role would give them; and the S3 server. Stopped by signalling the session's processes."""
    # Short: Ray puts Unix sockets below it (107-byte limit).
    root = tempfile.mkdtemp(prefix="ma-rc-")
    home, head_temp, second_temp = (os.path.join(root, name) for name in ("home", "head", "second"))
    os.makedirs(os.path.join(home, ".ray"), mode=0o700)
    token_path = os.path.join(home, ".ray", "auth_token")
    descriptor = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(descriptor, secrets.token_hex(32).encode())
    os.close(descriptor)
    with s3_server(str(tmp_path_factory.mktemp("moto")), BUCKET) as aws:
        port, log = free_port(), os.path.join(root, "cluster.log")
        env = {name: value for name, value in os.environ.items() if not name.startswith(("RAY_", "AWS_", "MEDICAL_ASSETS_", "PYTHON"))}
        env.update(
            aws,
            HOME=home,
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN_PATH=token_path,
            RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # every Ray socket on 127.0.0.1 (docs/engine-pitfalls.md)
            RAY_USAGE_STATS_ENABLED="0",
            RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",  # SIGTERM stops it at once instead of draining for 30 s
            RAY_TMPDIR=root,
        )
        launcher = os.path.join(os.path.dirname(__file__), "ray_two_nodes.py")
        cluster = start_in_own_group([node_python, launcher, str(port), head_temp, second_temp], log, env=env, cwd=root)
        try:
            wait_for(lambda: '"second"' in _read(log), 120, "the two-node cluster", log)
            nodes = json.loads(next(line for line in _read(log).splitlines() if line.startswith("{")))
            yield {**nodes, "process": cluster, "token_path": token_path, "temps": (head_temp, second_temp), "aws": aws}
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


def _tasks_run(temp: str) -> set[str]:
    """The names of the tasks a node's workers ran: Ray prints ':task_name:<name>' into a worker's
    stdout log as each task starts."""
    names = set()
    for path in glob.glob(os.path.join(temp, "session_latest", "logs", "worker-*.out")):
        names |= {line[len(":task_name:") :].strip() for line in _read(path).splitlines() if line.startswith(":task_name:")}
    return names


def test_the_whole_graph_runs_on_both_nodes_of_a_cluster_with_its_data_on_s3(ray_cluster, isolated_home, tmp_path):
    members = session_members(ray_cluster["process"].pid)
    names = [p.name() for p in members]
    assert names.count("raylet") == 2 and "gcs_server" in names, names
    listening = {c.laddr.ip for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in {p.pid for p in members}}
    assert listening and listening <= LOOPBACK, f"the cluster listens beyond loopback: {listening}"

    env = {name: value for name, value in os.environ.items() if not name.startswith(("RAY_", "AWS_", "MEDICAL_ASSETS_"))}
    env.update(
        ray_cluster["aws"],
        HOME=str(isolated_home),  # not the cluster's: the token reaches the client only through the variables
        RAY_ADDRESS=ray_cluster["address"],
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=ray_cluster["token_path"],
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        RAY_USAGE_STATS_ENABLED="0",
        TEST_PSEUDONYM_KEY=secrets.token_urlsafe(32),
    )
    data_dir = f"s3://{BUCKET}/{PREFIX}"
    run = subprocess.run(
        [sys.executable, "-c", _RUN, data_dir, str(MESSAGES), str(DICOM_FILES)],
        check=False, env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 0, run.stderr[-6000:]
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    assert outcome["success"], outcome["failures"]

    # The run's jobs ran on the cluster: its driver is registered in the cluster's session
    # (python-core-driver-<job id>_<pid>.log), and the run started no Ray of its own.
    head_temp, second_temp = ray_cluster["temps"]
    drivers = [name for name in _session_logs(head_temp) if name.startswith("python-core-driver-")]
    assert any(name.endswith(f"_{outcome['pid']}.log") for name in drivers), drivers
    assert not {"raylet", "gcs_server"} & set(outcome["children"]), outcome["children"]

    # On both nodes: each node's workers ran tasks of the pipeline's jobs, with medical_assets
    # unpacked from the job's runtime_env into that node's own temp folder.
    for temp in (head_temp, second_temp):
        ours = {name for name in _tasks_run(temp) if name.startswith(("ReadLandingFiles", "MapBatches("))}
        assert ours, f"no task of the pipeline ran on the node of {temp}: {_tasks_run(temp)}"
        assert glob.glob(os.path.join(temp, "session_*", "runtime_resources", "py_modules_files", "*", "medical_assets", "__init__.py"))

    # The tables are complete, in the bucket.
    s3 = pafs.S3FileSystem(endpoint_override=ray_cluster["aws"]["AWS_ENDPOINT_URL_S3"], region="us-east-1",
                           access_key="testing", secret_key="testing")

    def rows(zone, table):
        return pq.read_table(f"{BUCKET}/{PREFIX}/{zone}/{table}", filesystem=s3).num_rows

    assert rows("phi", "hl7_messages") == MESSAGES and rows("deid", "hl7_messages") == MESSAGES
    assert rows("phi", "dicom_images") == DICOM_FILES
    assert rows("deid", "dicom_images") + rows("phi", "dicom_deid_excluded") == DICOM_FILES
    assert not (tmp_path / "data").exists() and not os.listdir(tmp_path), "nothing may be written to a local folder"

    # The run only disconnected: the cluster is still up, with the same processes.
    assert port_open(int(ray_cluster["address"].rsplit(":", 1)[1]))
    still = [p.name() for p in session_members(ray_cluster["process"].pid)]
    assert still.count("raylet") == 2 and "gcs_server" in still, still
    assert ray_cluster["process"].poll() is None
    assert not (isolated_home / ".ray").exists(), "the client must not write a token of its own"
