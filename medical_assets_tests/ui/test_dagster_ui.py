"""The Dagster UI for real: `dagster dev` (webserver and daemon) in a subprocess, the lineage page in
headless Chromium, one asset selected there and "Materialize selected" clicked, and the run it
launches followed to SUCCESS.

The selected asset's upstream is materialized beforehand in the test's process (on the session's
Ray), into the data folder and the Dagster instance (DAGSTER_HOME) that `dagster dev` serves.

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
from urllib.parse import unquote, urlencode

import dagster as dg
import psutil
import pytest

from medical_assets.defs.resources import PipelineConfig, PrivacyResource, RayResource
from medical_assets_tests.browser import artifact_path, headless_chromium
from medical_assets_tests.scaleout.servers import failures, free_port, session_members, stop_group

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).with_name("dagster")

# The asset selected in the UI: one of the several tables its step publishes together, through a Ray
# job and a leak check.
SELECTED = ("deid", "hl7_messages")
MESSAGES, DICOM_FILES = 200, 2
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
  runOrError(runId: $runId) {
    ... on Run { assetSelection { path } stepStats { stepKey status } assetMaterializations { assetKey { path } } }
    ... on PythonError { message }
  }
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


def _dagster_home(tmp_path: Path) -> Path:
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    # The project's instance settings: no telemetry, no "join the community" pop-up over the UI.
    shutil.copy(PROJECT_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    return dagster_home


def _materialize_in_process(dagster_home: Path, data_dir: Path, selection: dg.AssetSelection) -> None:
    """`selection` of the graph in this process (on the session's Ray), recorded in the instance at
    `dagster_home`, with the settings `dagster dev` gets (no key set: the development key, which
    the first run creates in the data folder and the UI's run reads there)."""
    from medical_assets.definitions import defs

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        result = dg.materialize(
            [defs.get_assets_def(key) for key in defs.resolve_all_asset_keys()] + list(defs.asset_checks or []),
            selection=selection,
            instance=instance,
            resources={
                "pipeline": PipelineConfig(data_dir=str(data_dir), synthetic_hl7_messages=MESSAGES, synthetic_dicom_files=DICOM_FILES),
                "ray_engine": RayResource(num_cpus=2),
                "privacy": PrivacyResource(),
            },
            raise_on_error=False,
        )
    assert result.success, failures(result)


@contextmanager
def dagster_dev(tmp_path: Path, dagster_home: Path, data_dir: Path, tmp_dir: Path) -> Iterator[DagsterDev]:
    """`dagster dev` on a free loopback port, stopped with its whole process group on exit."""
    port = free_port()
    # A clean environment: nothing of a developer's own Dagster, Ray or pipeline settings leaks in.
    # HOME is the tests' throwaway home (conftest), where Ray keeps its token.
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "LC_ALL") if name in os.environ}
    env.update(
        DAGSTER_HOME=str(dagster_home),
        MEDICAL_ASSETS_DATA_DIR=str(data_dir),
        MEDICAL_ASSETS_SYNTHETIC_HL7_MESSAGES=str(MESSAGES),
        MEDICAL_ASSETS_SYNTHETIC_DICOM_FILES=str(DICOM_FILES),
        TMPDIR=str(tmp_dir),  # Ray's session folder and Dagster's gRPC sockets go here
        # The run's jobs in Ray's workers, small as they are: the test watches its Ray (loopback
        # only, stopped with the run), which a run of small jobs would not start.
        MEDICAL_ASSETS_IN_PROCESS_JOBS="0",
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
        # SIGTERM to the group (dagster dev treats it as Ctrl-C), then SIGKILL: a code server can
        # outlive a SIGTERM for a minute, and dagster dev itself at times never ends on it
        # (docs/engine-pitfalls.md). Nothing here needs a graceful end: what is checked after is
        # that nothing of the session is left.
        stop_group(process, timeout_s=10, first_signal=signal.SIGTERM)


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


def _materialize_button(page, label: str):
    # Its accessible name starts with the icon's label ("materialization"); match the visible text.
    return page.locator("button", has_text=re.compile(rf"^\s*{label}\s*$"))


def _open_lineage_page(page, dev: DagsterDev, groups: list[str]) -> None:
    """The global lineage page, every group of the sidebar's asset tree unfolded.

    The graph canvas shows groups collapsed, middle-truncates long names and draws only the nodes in
    view; the sidebar tree of the same page lists every asset by the last part of its key, in full
    (the `title` of each entry), so that is where the names are checked.
    """
    open_nodes = urlencode({f"open-nodes[{i}]": f"global@global:{group}" for i, group in enumerate(groups)})
    page.goto(f"{dev.url}/asset-groups?{open_nodes}")
    _materialize_button(page, "Materialize all").wait_for(timeout=60_000)


def _select_in_the_sidebar(page, key: tuple[str, ...]) -> None:
    """Click the asset's entry in the sidebar tree, which selects its node of the graph (the page's
    path then ends with the key, its slashes escaped)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    path = "/asset-groups/" + "/".join(key)
    entries = page.get_by_title(key[-1], exact=True)
    for index in range(entries.count()):
        entries.nth(index).click()
        try:
            page.wait_for_url(lambda url: unquote(url.split("?")[0]).endswith(path), timeout=5_000)
        except PlaywrightTimeout:
            continue  # the entry of another asset with the same last name
        return
    pytest.fail(f"no entry of the sidebar selects {'/'.join(key)}: {page.url}")


def _click_materialize_selected(page) -> str:
    """Click "Materialize selected"; return the 8-digit run id from Dagster's "Launched run" toast."""
    _materialize_button(page, "Materialize selected").click()
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
        time.sleep(1)
    pytest.fail(f"runs not finished within {RUN_TIMEOUT_S} s: {dev.runs()}{dev.log_tail()}")


def _latest_check_executions(dev: DagsterDev, checks: list[tuple[tuple[str, ...], str]]) -> dict:
    """The latest execution (run id and status) of each (asset key, check name), in one query."""
    fields = "\n".join(
        f"c{index}: assetCheckExecutions(assetKey: {{path: {json.dumps(list(key))}}}, checkName: {json.dumps(name)}, limit: 1)"
        " { runId status }"
        for index, (key, name) in enumerate(checks)
    )
    answer = dev.graphql(f"{{ {fields} }}")
    return {check: (answer[f"c{index}"] or [None])[0] for index, check in enumerate(checks)}


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
@pytest.mark.long_running
def test_one_asset_selected_and_materialized_from_the_dagster_ui(tmp_path, short_tmpdir, shared_ray):
    from medical_assets.definitions import defs

    expected_keys = {tuple(key.path) for key in defs.resolve_all_asset_keys()}
    expected_checks = {(tuple(key.asset_key.path), key.name) for key in defs.resolve_asset_graph().asset_check_keys}
    selected = dg.AssetKey(list(SELECTED))
    # The selected asset's step, and the steps of its checks: what a run of that one asset executes.
    published_together = {tuple(key.path) for key in defs.get_assets_def(selected).keys}
    check_steps = {
        checks_def.node_def.name
        for checks_def in defs.asset_checks or []
        if any(check.asset_key == selected for check in checks_def.check_keys)
    }
    allowed_steps = {defs.get_assets_def(selected).node_def.name} | check_steps

    # What the asset and its checks read (a check compares it with other tables: those too).
    read_by_its_checks = {
        dep.asset_key
        for checks_def in defs.asset_checks or []
        for spec in checks_def.check_specs
        if spec.asset_key == selected
        for dep in spec.additional_deps
    }
    upstream = dg.AssetSelection.assets(selected).upstream(include_self=False) | dg.AssetSelection.assets(*read_by_its_checks).upstream()

    dagster_home, data_dir = _dagster_home(tmp_path), tmp_path / "data"
    # Landing files and their manifests included: the sensor of new landing files, which
    # `dagster dev` starts, finds nothing new and requests no run of its own.
    _materialize_in_process(dagster_home, data_dir, upstream)

    with dagster_dev(tmp_path, dagster_home, data_dir, short_tmpdir) as dev:
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

            _select_in_the_sidebar(page, SELECTED)
            run_prefix = _click_materialize_selected(page)
            run = _wait_for_runs(dev, run_prefix, watch)

            # The graph again, with the latest outcome on every group, for people to look at.
            _open_lineage_page(page, dev, groups)
            _wait_for_group_statuses(page, len(groups))
            page.screenshot(path=str(artifact_path("dagster_asset_graph.png")))

        assert run["status"] == "SUCCESS", f"run {run['runId']} ended {run['status']}{dev.log_tail()}"
        tags = {tag["key"]: tag["value"] for tag in run["tags"]}
        assert tags.get("dagster/from_ui") == "true" and "dagster/sensor_name" not in tags, tags

        # That run selected the one asset and ran its step (and its checks') alone; what it
        # materialized is that asset and the tables its step publishes with it.
        result = dev.graphql(MATERIALIZED_QUERY, {"runId": run["runId"]})["runOrError"]
        assert [tuple(key["path"]) for key in result.get("assetSelection") or []] == [SELECTED], f"{result}{dev.log_tail()}"
        steps = {step["stepKey"]: step["status"] for step in result["stepStats"]}
        assert defs.get_assets_def(selected).node_def.name in steps and set(steps) <= allowed_steps, steps
        assert set(steps.values()) == {"SUCCESS"}, steps
        materialized = {tuple(event["assetKey"]["path"]) for event in result.get("assetMaterializations", [])}
        assert SELECTED in materialized and materialized <= published_together, f"materialized by run {run['runId']}: {materialized}"
        # A run succeeds even when a (non-blocking) check fails: every check that ran, leak checks
        # included, passed; those of the selected asset ran in the UI's run.
        checks = {
            (tuple(node["assetKey"]["path"]), check["name"]): check["executionForLatestMaterialization"]
            for node in dev.graphql(CHECKS_QUERY)["assetNodes"]
            for check in node["assetChecksOrError"].get("checks", [])
        }
        assert set(checks) == expected_checks, f"checks served: {sorted(checks)}"
        latest = _latest_check_executions(dev, sorted(checks))
        not_passed = {key: execution for key, execution in latest.items() if execution and execution["status"] != "SUCCEEDED"}
        assert not not_passed, f"checks not passed: {not_passed}{dev.log_tail()}"
        of_the_selected = {key: execution for key, execution in checks.items() if key[0] == SELECTED}
        assert of_the_selected and all(
            (execution or {}).get("runId") == run["runId"] and execution["status"] == "SUCCEEDED" for execution in of_the_selected.values()
        ), f"checks of {SELECTED} for its latest materialization: {of_the_selected}"
        assert (dev.data_dir / "deid" / "hl7_messages").exists(), dev.log_tail()

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
