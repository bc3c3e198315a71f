"""The Dagster UI for real: `dagster dev` (webserver and daemon) in a subprocess, the lineage page in
headless Chromium, "Materialize all" clicked there, and the run it launches followed to SUCCESS.

Everything runs on 127.0.0.1, in its own session (process group), with its own DAGSTER_HOME and data
folder under pytest's tmp_path, and its own short TMPDIR, where the run's local Ray keeps its session.
"""

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import psutil
import pytest

from medical_assets_tests.browser import artifact_path, headless_chromium
from medical_assets_tests.scaleout.servers import free_port, session_members, stop_group

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).with_name("dagster")

STARTUP_TIMEOUT_S = 120
RUN_TIMEOUT_S = 480
TERMINAL_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}
# Dagster's own toast after "Materialize all": "Launched run d7a00031" (the run id's first 8 digits).
LAUNCHED_TOAST = re.compile(r"Launched run ([0-9a-f]{8})")

ASSET_NODES_QUERY = "{ assetNodes { assetKey { path } groupName } }"
RUNS_QUERY = "{ runsOrError { ... on Runs { results { runId status tags { key value } } } ... on PythonError { message } } }"
TERMINATE_QUERY = """
mutation Terminate($runId: String!) {
  terminateRun(runId: $runId) { __typename ... on PythonError { message } }
}"""
CHECKS_QUERY = """
{ assetNodes { assetKey { path } assetChecksOrError {
    ... on AssetChecks { checks { name executionForLatestMaterialization { runId status } } } } } }"""
MATERIALIZED_QUERY = """
query Materialized($runId: ID!) {
  runOrError(runId: $runId) { ... on Run { assetMaterializations { assetKey { path } } } ... on PythonError { message } }
}"""


@dataclass
class DagsterDev:
    port: int
    url: str
    data_dir: Path
    tmp_dir: Path
    log_path: Path
    process: subprocess.Popen  # `dagster dev`, leader of its own session

    def log_tail(self, chars: int = 6000) -> str:
        """The end of dagster dev's output (synthetic data only, so no PHI) for an assertion message."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"\n--- tail of {self.log_path} ---\n{text[-chars:]}"

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"})
        with _LOOPBACK_OPENER.open(request, timeout=30) as response:
            answer = json.load(response)
        assert not answer.get("errors"), f"GraphQL errors: {answer['errors']}{self.log_tail()}"
        return answer["data"]

    def runs(self) -> list[dict]:
        result = self.graphql(RUNS_QUERY)["runsOrError"]
        assert "results" in result, f"runsOrError: {result}{self.log_tail()}"
        return result["results"]


# A proxy from the environment must not see (or swallow) requests to our loopback webserver.
_LOOPBACK_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def short_tmpdir() -> Iterator[Path]:
    """A TMPDIR short enough for Ray: its socket paths (<TMPDIR>/ma-ray-XXXXXXXX/session_<date>_<pid>/
    sockets/plasma_store) must stay under AF_UNIX's 107 bytes, which pytest's tmp_path overruns."""
    path = Path(tempfile.mkdtemp(prefix="ma-ui-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def dagster_dev(tmp_path: Path, tmp_dir: Path) -> Iterator[DagsterDev]:
    """`dagster dev` on a free loopback port, stopped with its whole process group on exit."""
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    # The project's instance settings: no telemetry, no "join the community" pop-up over the UI.
    shutil.copy(PROJECT_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    port = free_port()
    # A clean environment: nothing of a developer's own Dagster, Ray or pipeline settings leaks in.
    # HOME is the tests' throwaway home (conftest), where Ray keeps its token.
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "LC_ALL") if name in os.environ}
    env.update(
        DAGSTER_HOME=str(dagster_home),
        MEDICAL_ASSETS_DATA_DIR=str(data_dir),
        MEDICAL_ASSETS_SYNTHETIC_HL7_MESSAGES="1000",
        MEDICAL_ASSETS_SYNTHETIC_DICOM_FILES="8",
        TMPDIR=str(tmp_dir),  # Ray's session folder and Dagster's gRPC sockets go here
        RAY_USAGE_STATS_ENABLED="0",
        DAGSTER_DISABLE_TELEMETRY="yes",  # read by dagster's telemetry upload, besides dagster.yaml
    )
    log_path = tmp_path / "dagster_dev.log"
    command = [str(DAGSTER), "dev", "-m", "medical_assets.definitions", "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "wb") as log:
        # Its own session, so the whole group can be stopped by its id; run from the project root,
        # as `make dev` does.
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    dev = DagsterDev(port, f"http://127.0.0.1:{port}", data_dir, tmp_dir, log_path, process)
    try:
        _wait_until_serving(dev)
        yield dev
    finally:
        # SIGTERM to the group (dagster dev treats it as Ctrl-C; it takes ~2-5 s here), then SIGKILL
        # after 30 s: a code server can outlive a SIGTERM for a minute (docs/engine-pitfalls.md).
        stop_group(process, timeout_s=30, first_signal=signal.SIGTERM)


def _wait_until_serving(dev: DagsterDev) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        assert dev.process.poll() is None, f"dagster dev exited with {dev.process.returncode}{dev.log_tail()}"
        try:
            with _LOOPBACK_OPENER.open(f"{dev.url}/server_info", timeout=5) as response:
                if response.status == 200:
                    # The webserver answers before the code location has loaded: wait for the assets too.
                    if dev.graphql(ASSET_NODES_QUERY)["assetNodes"]:
                        return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    pytest.fail(f"dagster dev did not serve {dev.url} within {STARTUP_TIMEOUT_S} s{dev.log_tail()}")


def _is_ray(process: psutil.Process) -> bool:
    """Ray's own processes: raylet, gcs_server, dashboard, workers (renamed `ray::IDLE` and the like)."""
    cmdline = " ".join(process.cmdline())
    return cmdline.startswith("ray::") or f"{os.sep}site-packages{os.sep}ray{os.sep}" in cmdline


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # Ray's gcs_server listens on ::ffff:127.0.0.1
    return address.is_loopback


@dataclass
class SessionWatch:
    """What the processes of dagster dev's session do, sampled while we wait: where they listen
    (ip, port, command) and whether a Ray ran among them (the run's local Ray)."""

    session_id: int
    listening: set[tuple[str, int, str]] = field(default_factory=set)
    saw_ray: bool = False

    def look(self) -> None:
        for member in session_members(self.session_id):
            try:
                self.saw_ray |= _is_ray(member)
                for connection in member.net_connections(kind="inet"):
                    if connection.status == psutil.CONN_LISTEN:
                        self.listening.add((connection.laddr.ip, connection.laddr.port, " ".join(member.cmdline())[:120]))
            except psutil.Error:
                continue  # the process ended while we looked

    def ports(self) -> set[int]:
        return {port for _, port, _ in self.listening}

    def beyond_loopback(self) -> list[tuple[str, int, str]]:
        return sorted(socket for socket in self.listening if not _is_loopback(socket[0]))


def _materialize_all_button(page):
    # Its accessible name starts with the icon's label ("materialization"); match the visible text.
    return page.locator("button", has_text=re.compile(r"^\s*Materialize all\s*$"))


def _open_lineage_page(page, dev: DagsterDev, groups: list[str]) -> None:
    """The global lineage page, every group of the sidebar's asset tree unfolded.

    The graph canvas shows groups collapsed, middle-truncates long names and draws only the nodes in
    view; the sidebar tree of the same page lists every asset by the last part of its key, in full
    (the `title` of each entry), so that is where the names are checked.
    """
    open_nodes = urlencode({f"open-nodes[{i}]": f"global@global:{group}" for i, group in enumerate(groups)})
    page.goto(f"{dev.url}/asset-groups?{open_nodes}")
    _materialize_all_button(page).wait_for(timeout=60_000)


def _click_materialize_all(page) -> str:
    """Click "Materialize all"; return the 8-digit run id from Dagster's "Launched run" toast."""
    _materialize_all_button(page).click()
    launched = page.get_by_text(LAUNCHED_TOAST)
    dialog = page.get_by_role("dialog")
    launched.or_(dialog).first.wait_for(timeout=60_000)
    if not launched.count():
        # A launchpad or confirmation (when assets need config or partitions): launch from it.
        dialog.get_by_role("button", name=re.compile(r"^(Launch|Materialize)")).last.click()
        launched.wait_for(timeout=60_000)
    return LAUNCHED_TOAST.search(launched.first.inner_text()).group(1)


def _wait_for_group_statuses(page, groups: int) -> None:
    """Until the graph has drawn its (collapsed) group nodes and none still says "fetching statuses"."""
    page.wait_for_function(
        """groups => {
            const nodes = [...document.querySelectorAll("foreignObject")].map(node => node.textContent);
            return nodes.length >= groups && !nodes.some(text => text.includes("fetching statuses"));
        }""",
        arg=groups,
        timeout=30_000,
    )


def _wait_for_runs(dev: DagsterDev, ui_run_prefix: str, watch: SessionWatch) -> dict:
    """Poll until the UI's run has finished and no other run is queued or running; return the UI run.

    The sensor `new_landing_files` (or the nightly schedule) may queue a run of its own: queued ones
    are cancelled, started ones are waited for, so that nothing is cut short at shutdown.
    """
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        assert dev.process.poll() is None, f"dagster dev exited with {dev.process.returncode}{dev.log_tail()}"
        watch.look()
        runs = dev.runs()
        ui_runs = [run for run in runs if run["runId"].startswith(ui_run_prefix)]
        assert len(ui_runs) == 1, f"run {ui_run_prefix} from the UI: {ui_runs}{dev.log_tail()}"
        if ui_runs[0]["status"] in TERMINAL_STATUSES:
            for run in runs:
                if run["status"] == "QUEUED":
                    dev.graphql(TERMINATE_QUERY, {"runId": run["runId"]})
            if all(run["status"] in TERMINAL_STATUSES for run in runs):
                return ui_runs[0]
        time.sleep(2)
    pytest.fail(f"runs not finished within {RUN_TIMEOUT_S} s: {dev.runs()}{dev.log_tail()}")


def _ray_processes(session_id: int, timeout_s: float) -> list[str]:
    """Ray processes still alive in our session after `timeout_s` (Ray stops with the run, in ~1-2 s)."""
    deadline = time.monotonic() + timeout_s
    while True:
        alive = []
        for member in session_members(session_id):
            try:
                if _is_ray(member):
                    alive.append(" ".join(member.cmdline())[:160])
            except psutil.Error:
                continue
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.5)


def _processes_mentioning(path: Path) -> list[str]:
    """Live processes whose command line names `path` (our TMPDIR: Dagster's sockets, Ray's session)."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(path) in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(f"{process.info['pid']}: {cmdline[:160]}")
    return found


@pytest.mark.slow
def test_materialize_all_from_the_dagster_ui(tmp_path, short_tmpdir):
    from medical_assets.definitions import defs

    expected_keys = {tuple(key.path) for key in defs.resolve_all_asset_keys()}
    expected_checks = {(tuple(key.asset_key.path), key.name) for key in defs.resolve_asset_graph().asset_check_keys}

    with dagster_dev(tmp_path, short_tmpdir) as dev:
        session_id = dev.process.pid
        watch = SessionWatch(session_id)
        watch.look()

        # The webserver serves exactly the project's assets.
        nodes = dev.graphql(ASSET_NODES_QUERY)["assetNodes"]
        served_keys = {tuple(node["assetKey"]["path"]) for node in nodes}
        assert served_keys == expected_keys, f"missing {expected_keys - served_keys}, extra {served_keys - expected_keys}"
        groups = sorted({node["groupName"] for node in nodes})

        with headless_chromium() as browser:
            # Tall enough that the sidebar tree shows every asset of every group at once.
            page = browser.new_context(viewport={"width": 1600, "height": 1700}).new_page()
            _open_lineage_page(page, dev, groups)
            # Each asset appears by the last part of its key (`imaging` twice: analytics and report).
            for name, count in Counter(key[-1] for key in expected_keys).items():
                entries = page.get_by_title(name, exact=True)
                entries.first.wait_for(timeout=30_000)
                assert entries.count() >= count, f"{name!r} shown {entries.count()} times on the lineage page, expected {count}"

            run_prefix = _click_materialize_all(page)
            run = _wait_for_runs(dev, run_prefix, watch)

            # The graph again, with the run's outcome on every group, for people to look at.
            _open_lineage_page(page, dev, groups)
            _wait_for_group_statuses(page, len(groups))
            page.screenshot(path=str(artifact_path("dagster_asset_graph.png")))

        assert run["status"] == "SUCCESS", f"run {run['runId']} ended {run['status']}{dev.log_tail()}"
        tags = {tag["key"]: tag["value"] for tag in run["tags"]}
        assert tags.get("dagster/from_ui") == "true" and "dagster/sensor_name" not in tags, tags

        # Every asset was materialized by that run, and the zones are on disk.
        result = dev.graphql(MATERIALIZED_QUERY, {"runId": run["runId"]})["runOrError"]
        materialized = {tuple(event["assetKey"]["path"]) for event in result.get("assetMaterializations", [])}
        missing = sorted("/".join(key) for key in expected_keys - materialized)
        assert not missing, f"not materialized by run {run['runId']}: {missing} ({result}){dev.log_tail()}"
        # A run succeeds even when a (non-blocking) check fails: every check, leak checks included, passed.
        checks = {
            (tuple(node["assetKey"]["path"]), check["name"]): check["executionForLatestMaterialization"]
            for node in dev.graphql(CHECKS_QUERY)["assetNodes"]
            for check in node["assetChecksOrError"].get("checks", [])
        }
        assert set(checks) == expected_checks, f"checks served: {sorted(checks)}"
        not_passed = {key: execution for key, execution in checks.items() if (execution or {}).get("status") != "SUCCEEDED"}
        assert not not_passed, f"checks not passed: {not_passed}{dev.log_tail()}"
        assert (dev.data_dir / "deid" / "reports" / "dashboard.html").is_file(), dev.log_tail()
        assert (dev.data_dir / "phi" / "hl7_messages").exists(), dev.log_tail()

        # Every TCP listener was on loopback: the webserver and Ray (code servers use Unix sockets).
        assert dev.port in watch.ports(), f"the webserver's port {dev.port} not among {sorted(watch.listening)}"
        assert not watch.beyond_loopback(), f"listening beyond loopback: {watch.beyond_loopback()}"

        # The run's local Ray stopped with the run, and took its session folder along.
        assert watch.saw_ray, "no Ray process seen during the run: the checks below would prove nothing"
        ray_left = _ray_processes(session_id, timeout_s=20)
        assert not ray_left, f"Ray outlived the run: {ray_left}"
        assert not list(dev.tmp_dir.glob("ma-ray-*")), f"Ray session folders left: {list(dev.tmp_dir.iterdir())}"

    # After the group's shutdown nothing of ours is left: no member of the session, nothing using TMPDIR.
    left = [" ".join(process.cmdline())[:160] for process in session_members(session_id)]
    assert not left, f"still running in dagster dev's session: {left}"
    using_tmpdir = _processes_mentioning(dev.tmp_dir)
    assert not using_tmpdir, f"still running with our TMPDIR: {using_tmpdir}"
