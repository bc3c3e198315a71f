"""A Ray cluster of two nodes on this machine for the scale-out tests, and the whole graph run on it
from a separate process, as `dagster asset materialize` with RAY_ADDRESS would run it.

The nodes' Python has every dependency of this one but not medical_assets, so our code reaches
their workers only through the job's runtime_env. The run is a child process: Ray reads
RAY_AUTH_MODE when it is imported and caches the token per process, so a process that already ran
a local Ray (this test session) cannot join a cluster with another token.
"""

from __future__ import annotations

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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import psutil

from medical_assets_tests.scaleout.servers import free_port, session_members, start_in_own_group, stop_group, wait_for

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
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    print(json.dumps({"success": result.success, "failures": failures(result), "pid": os.getpid(), "run_id": result.run_id,
                      "children": sorted(children), "checks": checks}))
    """
)


def node_python(folder: str) -> str:
    """A Python for the nodes with every dependency of this one but not medical_assets: a venv whose
    only site entry is this environment's site-packages as a plain path, so its .pth files (the
    editable install of medical_assets among them) are not run."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--clear", folder], check=True)
    site = glob.glob(os.path.join(folder, "lib", "python3*", "site-packages"))[0]
    with open(os.path.join(site, "dependencies.pth"), "w") as pth:
        pth.write(sysconfig.get_paths()["purelib"] + "\n")
    python = os.path.join(folder, "bin", "python")
    probe = subprocess.run([python, "-c", "import ray, pydicom, pyarrow; import medical_assets"], cwd=folder, capture_output=True, text=True)
    assert "No module named 'medical_assets'" in probe.stderr, probe.stderr[-2000:]
    return python


@contextmanager
def two_node_cluster(python: str, aws: Mapping[str, str]) -> Iterator[dict]:
    """Two nodes (ray_two_nodes.py) in their own session, with their own HOME (the token file) and
    temp folders, 1 CPU each, the object-store credentials in their environment as a node's
    instance role would give them. Stopped by signalling the session's processes."""
    # Short: Ray puts Unix sockets below it (107-byte limit).
    root = tempfile.mkdtemp(prefix="ma-rc-")
    home, head_temp, second_temp = (os.path.join(root, name) for name in ("home", "head", "second"))
    os.makedirs(os.path.join(home, ".ray"), mode=0o700)
    token_path = os.path.join(home, ".ray", "auth_token")
    descriptor = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(descriptor, secrets.token_hex(32).encode())
    os.close(descriptor)
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
    cluster = start_in_own_group([python, launcher, str(port), head_temp, second_temp], log, env=env, cwd=root)
    try:
        wait_for(lambda: '"second"' in _read(log), 120, "the two-node cluster", log)
        nodes = json.loads(next(line for line in _read(log).splitlines() if line.startswith("{")))
        yield {**nodes, "process": cluster, "token_path": token_path, "temps": (head_temp, second_temp)}
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


def run_graph_on(cluster: Mapping, aws: Mapping[str, str], data_dir: str, key: str, messages: int, dicom_files: int,
                 cwd: str, home: str) -> dict:
    """The whole graph from a child process with RAY_ADDRESS; what it reported (success, failures,
    its pid, run id, check results, and the names of its child processes)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("RAY_", "AWS_", "MEDICAL_ASSETS_"))}
    env.update(
        aws,
        HOME=home,  # not the cluster's: the token reaches the client only through the variables
        RAY_ADDRESS=cluster["address"],
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=cluster["token_path"],
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        RAY_USAGE_STATS_ENABLED="0",
        TEST_PSEUDONYM_KEY=key,
        # Every job on the cluster, however small its input: the test shows tasks on both nodes.
        MEDICAL_ASSETS_IN_PROCESS_JOBS="0",
    )
    run = subprocess.run(
        [sys.executable, "-c", _RUN, data_dir, str(messages), str(dicom_files)],
        check=False, env=env, cwd=cwd, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 0, run.stderr[-6000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def session_logs(temp: str) -> list[str]:
    return os.listdir(os.path.join(temp, "session_latest", "logs"))


def tasks_run(temp: str) -> set[str]:
    """The names of the tasks a node's workers ran: Ray prints ':task_name:<name>' into a worker's
    stdout log as each task starts."""
    names = set()
    for path in glob.glob(os.path.join(temp, "session_latest", "logs", "worker-*.out")):
        names |= {line[len(":task_name:") :].strip() for line in _read(path).splitlines() if line.startswith(":task_name:")}
    return names


def shipped_code(temp: str) -> bool:
    """Whether the node unpacked medical_assets from a job's runtime_env into its temp folder."""
    pattern = os.path.join(temp, "session_*", "runtime_resources", "py_modules_files", "*", "medical_assets", "__init__.py")
    return bool(glob.glob(pattern))


def _read(path: str) -> str:
    with open(path, errors="replace") as file:
        return file.read()
