"""Crash safety: a run SIGKILLed (its whole process group) at any point leaves every table either as
it was before or as the finished run leaves it; the next run completes, and every table ends with
exactly the rows of an undisturbed run.

Every killed run, and the run after the kills, is the users' CI command, `dagster asset materialize
-m medical_assets.definitions --select '*'`, in a subprocess of its own session; the undisturbed
reference run materializes the same Definitions in the test's process. The test watches the data
folder (every 20 ms) and kills the process group when the run reaches a chosen point of a
publication (`medical_assets.storage.TablePublication`): tables being written in
`<zone>/.staging/<run>/`, the commit marker written but nothing swapped yet, part of the tables
swapped in.

The gap between writing the marker and moving the folders is a few milliseconds, too short to
hit by watching. For those points the run gets a `sitecustomize` (through PYTHONPATH, from a
temporary folder) that sleeps before each folder move of one zone's publication: it changes
timing only, never what is written or in which order, and writes one line per move to a log so
that the test knows it was active.

All runs use the same data folder path (the reference is moved aside after its run), because
tokens of source files are keyed on their path; and the same pseudonym key. Each killed run gets a
fresh DAGSTER_HOME; the run after the kills uses the instance of the first killed run, as `make run`
and the daemon would, the next time.

Three product bugs found by this file are fixed: a table missing after a kill in the middle of its
swap (now one atomic exchange, tested at the unit level in test_storage.py), Ray workers outside
the run's process group, which the kill missed, and the `ray` pool slot of a killed run never
freed, so the next run on the same instance waited (both tested here).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from medical_assets.storage import COMMIT_MARKER, EXCHANGING_SUFFIX, STAGING_DIR
from medical_assets_tests.defs.pipeline import materialize_all
from medical_assets_tests.published import ZONES, Published, folder_files, published_paths, read_published, table_rows

pytestmark = [pytest.mark.slow, pytest.mark.long_running]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).with_name("dagster")
HL7_MESSAGES = 600
DICOM_FILES = 4
POLL_S = 0.02
BLOCKED_S = 10  # a run whose step waits this long for a pool slot that no live run holds is stuck
SWAP_DELAY_S = 0.4  # the sitecustomize's sleep before each folder move of the slowed zone
RUN_TIMEOUT_S = 300
# Ray 2.60 starts each worker in a process group of its own, so a kill of the run's group misses
# them; they exit once they find their raylet gone: 1.5-3 s, up to ~36 s when caught starting up
# (measured under load). Past this, a process of a killed run is a leak: the test kills it and fails.
LEAK_S = 90.0

SITECUSTOMIZE = '''\
"""Test hook (medical_assets_tests/reliability/test_crash_safety.py): sleep before each folder move
of one zone's publication, so that a watcher can kill the run between commit and swap."""
import importlib.abc
import importlib.machinery
import os
import sys
import time

_ZONE = os.environ.get("CRASH_TEST_SLOW_ZONE", "").rstrip("/")
_DELAY = float(os.environ.get("CRASH_TEST_SLOW_S", "0") or 0)
_LOG = os.environ.get("CRASH_TEST_SLOW_LOG")


class _SlowSwap(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "medical_assets.storage":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            move_dir = module._move_dir

            def slow_move_dir(fs, source, destination, *args, **kwargs):
                if os.path.dirname(destination) == _ZONE or destination.startswith(_ZONE + "/.staging/"):
                    if _LOG:
                        with open(_LOG, "a") as log:
                            log.write(f"{os.getpid()} {source} -> {destination}\\n")
                    time.sleep(_DELAY)
                return move_dir(fs, source, destination, *args, **kwargs)

            module._move_dir = slow_move_dir
            exchange = module._exchange

            def slow_exchange(first, second):
                # Slowed on both sides, so a watcher can kill the run before and after the exchange.
                if os.path.dirname(second) == _ZONE:
                    if _LOG:
                        with open(_LOG, "a") as log:
                            log.write(f"{os.getpid()} {first} <-> {second}\\n")
                    time.sleep(_DELAY)
                    exchanged = exchange(first, second)
                    time.sleep(_DELAY)
                    return exchanged
                return exchange(first, second)

            module._exchange = slow_exchange

        spec.loader.exec_module = exec_and_patch
        return spec


if _ZONE and _DELAY > 0:
    sys.meta_path.insert(0, _SlowSwap())
'''


# --- what a publication looks like from outside -----------------------------------------------------


@dataclass
class Staging:
    """One `<zone>/.staging/<run>/` folder as the watcher saw it."""

    zone: str
    path: str
    marker_tables: list[str] | None  # the commit marker's tables; None: not committed
    entries: set[str]  # names in the staging folder
    written: bool  # some staged table or folder holds a file
    replaced_without_final: bool  # an old table moved aside, the new one not yet in place
    exchanging: bool = False  # a staged table is being exchanged with the published one

    @property
    def moved(self) -> int:
        return sum(1 for table in self.marker_tables or () if table not in self.entries)


def _scan(data: Path) -> list[Staging]:
    found = []
    for zone in ZONES:
        root = data / zone / STAGING_DIR
        try:
            runs = [entry for entry in os.scandir(root) if entry.is_dir()]
        except FileNotFoundError:
            continue
        for run in runs:
            try:
                entries = set(os.listdir(run.path))
                marker = None
                if COMMIT_MARKER in entries:
                    marker = json.loads(Path(run.path, COMMIT_MARKER).read_bytes())["tables"]
                written = any(
                    _holds_a_file(Path(run.path, name)) for name in entries if not name.startswith((".", "_")) and name != "replaced"
                )
                replaced = set(os.listdir(Path(run.path, "replaced"))) if "replaced" in entries else set()
            except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
                continue  # swapped or deleted while we looked: the next poll sees what is left
            missing = any(not (data / zone / table).exists() for table in replaced)
            exchanging = any(name.endswith(EXCHANGING_SUFFIX) for name in entries)
            found.append(Staging(zone, run.path, marker, entries, written, missing, exchanging))
    return found


def _holds_a_file(folder: Path) -> bool:
    for _, _, files in os.walk(folder):
        if files:
            return True
    return False


@dataclass(frozen=True)
class KillPoint:
    order: int  # position in a run; a point missed is replaced by the next one observed
    name: str
    test: Callable[[Staging], bool]


def _writing(zone):
    return lambda s: s.zone == zone and s.marker_tables is None and s.written


def _committed(zone):
    return lambda s: s.zone == zone and s.marker_tables is not None and s.moved == 0


def _swapping(zone):
    return lambda s: (
        s.zone == zone and s.marker_tables is not None and 0 < s.moved < len(s.marker_tables) and not s.replaced_without_final
    )


def _replacing(zone):
    return lambda s: s.zone == zone and s.marker_tables is not None and (s.replaced_without_final or s.exchanging)


POINTS = [
    KillPoint(0, "phi: tables being written to staging, not committed", _writing("phi")),
    KillPoint(1, "phi: commit marker written, no table swapped yet", _committed("phi")),
    KillPoint(2, "deid: tables being written to staging, not committed", _writing("deid")),
    KillPoint(3, "deid: committed, some tables swapped in and some not", _swapping("deid")),
    KillPoint(4, "deid: committed, a published table being replaced by the new one", _replacing("deid")),
    KillPoint(5, "deid/analytics: tables being written to staging, not committed", _writing("deid/analytics")),
    KillPoint(6, "deid/analytics: commit marker written", lambda s: s.zone == "deid/analytics" and s.marker_tables is not None),
]


def _points_from(order: int) -> list[KillPoint]:
    return [point for point in POINTS if point.order >= order]


def _staging_left(data: Path) -> list[str]:
    return [zone for zone in ZONES if (data / zone / STAGING_DIR).exists()]


# --- runs ----------------------------------------------------------------------------------------


class PoolSlotLeaked(AssertionError):
    """The next run on the same Dagster instance waits forever for the killed run's pool slot."""


@dataclass
class Harness:
    root: Path  # short: Ray's Unix sockets live under TMPDIR (107-byte path limit)
    data: Path  # every run writes here, so that keyed tokens of file paths are comparable
    key: str
    hooks: Path
    runs: int = 0
    killed_homes: list[Path] = field(default_factory=list)  # Dagster instances of killed runs
    outside_group: list[tuple[str, int, list]] = field(default_factory=list)  # per kill: processes the kill missed
    lingering: list[tuple[psutil.Process, float, str]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # what happened, for the report
    # How the first run on the Dagster instance of a killed run ended: "completed", or its failure.
    next_run_on_a_killed_instance: str | AssertionError | None = None

    def fresh(self, name: str) -> Path:
        self.runs += 1
        folder = self.root / f"{self.runs}-{name}"
        folder.mkdir()
        return folder

    def start(self, home: Path, slow_zone: str | None = None, recompute: bool = False) -> tuple[subprocess.Popen, Path, Path]:
        """Start the CLI run; returns the process, its TMPDIR (which marks all its processes) and its log."""
        run_dir = self.fresh("run")
        tmpdir = run_dir / "t"
        tmpdir.mkdir()
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("MEDICAL_ASSETS_", "CRASH_TEST_")) and name not in ("RAY_ADDRESS", "DAGSTER_HOME", "TMPDIR")
        }
        env |= {
            "DAGSTER_HOME": str(home),
            "MEDICAL_ASSETS_DATA_DIR": str(self.data),
            "MEDICAL_ASSETS_SYNTHETIC_HL7_MESSAGES": str(HL7_MESSAGES),
            "MEDICAL_ASSETS_SYNTHETIC_DICOM_FILES": str(DICOM_FILES),
            "MEDICAL_ASSETS_PSEUDONYM_KEY": self.key,
            "TMPDIR": str(tmpdir),
        }
        if recompute:  # every step computes and publishes, though nothing changed since the last run
            env["MEDICAL_ASSETS_RECOMPUTE"] = "1"
        if slow_zone is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.hooks), env.get("PYTHONPATH")]))
            env["CRASH_TEST_SLOW_ZONE"] = str(self.data / slow_zone)
            env["CRASH_TEST_SLOW_S"] = str(SWAP_DELAY_S)
            env["CRASH_TEST_SLOW_LOG"] = str(run_dir / "slow-moves.log")
        log = run_dir / "output.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [str(DAGSTER), "asset", "materialize", "-m", "medical_assets.definitions", "--select", "*"],
                cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return process, tmpdir, log

    def new_home(self) -> Path:
        home = self.fresh("dagster_home")
        shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
        return home

    def run_to_completion(self, home: Path, what: str) -> None:
        """A run on `home` that must succeed. On the instance of a killed run it fails with
        `PoolSlotLeaked` when it waits for a pool slot that no live run holds; its outcome is kept
        in `next_run_on_a_killed_instance` then."""
        started = time.monotonic()
        on_a_killed_instance = home in self.killed_homes
        try:
            self._run_watching_the_pool(home, what)
        except AssertionError as error:
            if on_a_killed_instance:
                self.next_run_on_a_killed_instance = error
            raise
        if on_a_killed_instance:
            self.next_run_on_a_killed_instance = "completed"
        self.log.append(f"{what}: completed in {time.monotonic() - started:.1f} s")

    def _run_watching_the_pool(self, home: Path, what: str) -> None:
        process, tmpdir, log = self.start(home)
        try:
            blocked_since = None
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while process.poll() is None and time.monotonic() < deadline:
                output = log.read_text(errors="replace")
                blocked_at = output.rfind("blocked by limit for pool")
                if blocked_at >= 0 and "STEP_START" not in output[blocked_at:]:
                    blocked_since = blocked_since or time.monotonic()
                    if time.monotonic() - blocked_since > BLOCKED_S:
                        self.log.append(f"  {what}: blocked on the `ray` pool for {BLOCKED_S} s, no step started")
                        raise PoolSlotLeaked(f"{what}: waits for the killed run's pool slot:\n{_tail(log, 5)}")
                else:
                    blocked_since = None
                time.sleep(0.5)
            returncode = process.poll()
        finally:
            self.stop(process, tmpdir, what)
        assert returncode == 0, f"{what}: the run did not succeed ({returncode}):\n{_tail(log)}"

    def run_and_kill(self, target: int, home: Path | None = None, slow_zone: str | None = None, recompute: bool = False) -> KillPoint:
        """Start a run and SIGKILL its process group at the first point at or after `target` that
        the watcher sees (points seen in staging folders left by an earlier run do not count)."""
        points = _points_from(target)
        stale = {staging.path for staging in _scan(self.data)}  # left by a killed run: not this run's
        process, tmpdir, log = self.start(home or self.new_home(), slow_zone, recompute)
        started = time.monotonic()
        hit = None
        try:
            while hit is None and process.poll() is None and time.monotonic() - started < RUN_TIMEOUT_S:
                seen = [staging for staging in _scan(self.data) if staging.path not in stale]
                hit = next((p for p in points if any(p.test(s) for s in seen)), None)
                if hit is None:
                    time.sleep(POLL_S)
            if hit is not None:
                os.killpg(process.pid, signal.SIGKILL)
            returncode = process.wait(timeout=30) if hit is not None else process.poll()
        finally:
            self.stop(process, tmpdir, hit.name if hit else f"run aimed at {POINTS[target].name!r}")
        assert hit is not None, (
            f"the run was never killed: none of {[p.name for p in points]} was seen, and the run "
            f"{'ended with ' + str(returncode) if returncode is not None else 'timed out'}:\n{_tail(log)}"
        )
        assert returncode == -signal.SIGKILL, f"killed at {hit.name!r}, but the run ended with {returncode}"
        note = "" if hit.order == target else f" (aimed at {POINTS[target].name!r}, not seen)"
        self.log.append(f"killed at {time.monotonic() - started:.1f} s: {hit.name}{note}")
        if slow_zone is not None:
            moves = log.parent / "slow-moves.log"
            delayed = len(moves.read_text().splitlines()) if moves.exists() else 0
            self.log.append(f"  slowed-swap hook on {slow_zone}: {delayed} folder moves delayed by {SWAP_DELAY_S} s")
        return hit

    def stop(self, process: subprocess.Popen, tmpdir: Path, what: str) -> None:
        """Kill the run's process group if it still runs, and note every process of the run that is
        still alive then: outside the group, the kill missed it (`assert_no_leaks` waits for it)."""
        killed = process.poll() is None or process.returncode == -signal.SIGKILL
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        killed_at = time.monotonic()
        survivors = []
        for survivor in _processes_of(tmpdir):
            try:
                survivors.append((survivor, os.getpgid(survivor.pid), " ".join(survivor.cmdline())[:100]))
            except (ProcessLookupError, psutil.NoSuchProcess):
                continue
        outside = [(pid.pid, pgid, name) for pid, pgid, name in survivors if pgid != process.pid]
        if killed:
            self.outside_group.append((what, process.pid, outside))
        self.lingering += [(survivor, killed_at, what) for survivor, _, _ in survivors]

    def assert_no_leaks(self) -> None:
        """Every process of a killed run is gone, at the latest LEAK_S after the kill; one that is
        not is killed, and the test fails."""
        leaks, waited = [], []
        for survivor, killed_at, what in self.lingering:
            while _alive(survivor) and time.monotonic() - killed_at < LEAK_S:
                time.sleep(0.2)
            if _alive(survivor):
                leaks.append(f"{survivor.pid} {' '.join(survivor.cmdline())[:100]} (killed at {what!r})")
                survivor.kill()
            else:
                waited.append(what)
        self.lingering.clear()
        for what in sorted(set(waited)):
            self.log.append(f"  kill at {what!r}: {waited.count(what)} processes alive right after it (outside the group), since gone")
        assert not leaks, f"processes of killed runs alive {LEAK_S:.0f} s after the kill:\n" + "\n".join(leaks)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _processes_of(tmpdir: Path) -> list[psutil.Process]:
    """Every live process of one run: it inherited TMPDIR, or names the folder on its command line."""
    marker = str(tmpdir)
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if process.info["status"] == psutil.STATUS_ZOMBIE or process.pid == os.getpid():
                continue
            if process.environ().get("TMPDIR") == marker or any(marker in arg for arg in process.info["cmdline"] or ()):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


# --- comparisons ---------------------------------------------------------------------------------------


class TableMissingAfterKill(AssertionError):
    """A table folder that existed before the killed run was gone after it (neither old nor new)."""


def _check_after_kill(data: Path, reference: Published, before: set[str]) -> tuple[set[str], list[str]]:
    """Every table or folder of the zones is readable, and either as before the run (absent, or
    already the reference's rows) or as the finished run leaves it (the reference's rows).

    Returns what is published now, and what was published before and is missing now (reported
    separately: a `TableMissingAfterKill`)."""
    tables, folders = published_paths(data)
    unexpected = sorted(set(tables + folders) - set(reference.tables) - set(reference.folders))
    assert not unexpected, f"folders a finished run does not leave: {unexpected}"
    for table in tables:
        try:
            schema, rows = table_rows(data / table)
        except Exception as error:  # noqa: BLE001 - any read failure is the finding
            raise AssertionError(f"{table}: not readable after the kill: {type(error).__name__}: {error}") from None
        want_schema, want_rows = reference.tables[table]
        assert schema == want_schema, f"{table}: schema differs from the finished run's"
        assert rows == want_rows, f"{table}: {len(rows)} rows, neither nothing nor the finished run's {len(want_rows)} rows"
    for folder in folders:
        files = folder_files(data / folder)
        assert set(files) == set(reference.folders[folder]), (
            f"{folder}: {len(files)} files, not the finished run's {len(reference.folders[folder])}"
        )
    now = set(tables) | set(folders)
    return now, sorted(before - now)


def _assert_as_reference(data: Path, reference: Published) -> None:
    assert not _staging_left(data), f"staging folders left after a successful run: {_staging_left(data)}"
    final = read_published(data)
    assert sorted(final.tables) == sorted(reference.tables)
    assert sorted(final.folders) == sorted(reference.folders)
    for table, (schema, rows) in reference.tables.items():
        got_schema, got_rows = final.tables[table]
        assert got_schema == schema, f"{table}: schema differs from the undisturbed run's"
        assert len(got_rows) == len(rows), f"{table}: {len(got_rows)} rows, the undisturbed run has {len(rows)}"
        assert got_rows == rows, f"{table}: same row count, different rows than the undisturbed run"
    for folder, files in reference.folders.items():
        assert sorted(final.folders[folder]) == sorted(files), f"{folder}: other files than the undisturbed run's"
        if folder == "deid/dicom":  # de-identified DICOM: deterministic, compared byte for byte
            differing = [name for name in files if final.folders[folder][name] != files[name]]
            assert not differing, f"{folder}: {len(differing)} files differ from the undisturbed run's"
        if folder == "deid/reports":  # PNG figures: the same inputs give the same bytes
            differing = [name for name in files if name.endswith(".png") and final.folders[folder][name] != files[name]]
            assert not differing, f"{folder}: {differing} differ from the undisturbed run's"
        # dashboard.html shows the run's id and time: compared by presence.


# --- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """The runs' shared state."""
    root = Path(tempfile.mkdtemp(prefix="ma-crash-"))
    hooks = root / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    harness = Harness(root=root, data=tmp_path_factory.mktemp("crash") / "data", key=secrets.token_urlsafe(32), hooks=hooks)
    yield harness
    print("\n" + "\n".join(harness.log))
    for tmpdir in root.glob("*-run/t"):  # after a failed test: nothing of ours may outlive the module
        for process in _processes_of(tmpdir):
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def reference(harness, shared_ray) -> tuple[Published, Path]:
    """One undisturbed run of the whole graph, moved aside so that later runs reuse its path. The
    same Definitions, settings and key as the CLI runs', materialized in this process (on the
    session's Ray: the killed runs start their own)."""
    started = time.monotonic()
    result = materialize_all(harness.data, harness.key, messages=HL7_MESSAGES, dicom_files=DICOM_FILES)
    assert result.success, "the reference run failed"
    harness.log.append(f"reference run (in process): completed in {time.monotonic() - started:.1f} s")
    published = read_published(harness.data)
    assert len(published.tables) >= 25 and {"deid/dicom", "deid/reports"} <= set(published.folders), sorted(published.tables)
    assert published.tables["phi/hl7_messages"][1] and len(published.tables["phi/hl7_messages"][1]) == HL7_MESSAGES
    moved = harness.data.parent / "reference"
    harness.data.rename(moved)
    return published, moved


@pytest.fixture
def data_dir(harness):
    if harness.data.exists():
        shutil.rmtree(harness.data)
    yield harness.data
    if harness.data.exists():
        shutil.rmtree(harness.data)


# --- tests -------------------------------------------------------------------------------------------


def test_runs_killed_at_each_point_leave_old_or_new_tables_and_the_next_run_completes(harness, reference, data_dir):
    """From an empty data folder, one run after another, each killed at another point of the
    pipeline (each run first recovers what the last one left); then a run to the end, which must
    give exactly the undisturbed run's rows.

    The last kill aims at the replacement of de-identified tables that the run before published:
    no table may be missing after any kill."""
    published, _ = reference
    before: set[str] = set()
    # Tables written but not committed: the kill aimed at deid/analytics (point 5) leaves that state
    # (the same publication protocol in every zone), so point 0 is left to the tests run alone below.
    # The last kill aims at a replacement: its run must recompute the de-identified tables, which
    # it would otherwise carry over (nothing changed since the run before published them).
    for target, slow_zone, recompute in [(1, "phi", False), (5, None, False), (4, "deid", True)]:
        home = harness.new_home()
        harness.run_and_kill(target, home=home, slow_zone=slow_zone, recompute=recompute)
        harness.killed_homes.append(home)
        now, missing = _check_after_kill(data_dir, published, before)
        assert not missing, f"published before the killed run, gone after it: {missing}"
        before = now
    again, _ = _check_after_kill(data_dir, published, before)  # no late write by a process of a killed run
    assert again == before, "published tables changed after the last run was killed"
    assert any(t.startswith("deid/") for t in before), "the kill points did not reach the de-identified zone"
    # On the Dagster instance of the first killed run: the test below reads how this run ended.
    harness.run_to_completion(harness.killed_homes[0], "run after the kills, on the instance of the first killed run")
    _assert_as_reference(data_dir, published)
    # The synthetic default through the CLI, as `make run` makes it: 600 messages land as two files.
    assert len(list((data_dir / "landing" / "hl7").glob("*.hl7"))) == 2
    harness.assert_no_leaks()


class ProcessesOutsideTheGroup(AssertionError):
    """Processes of the run that a SIGKILL of its process group does not reach."""


def test_killing_the_process_group_of_a_run_kills_all_its_processes(harness, data_dir):
    """Uses the kills above; run alone, kills a run of its own."""
    if not harness.outside_group:
        harness.run_and_kill(0)
    harness.assert_no_leaks()
    missed = [(what, outside) for what, _, outside in harness.outside_group if outside]
    if missed:
        described = "; ".join(f"{what}: {len(outside)} ({', '.join(sorted({n.split()[0] for _, _, n in outside}))})" for what, outside in missed)
        raise ProcessesOutsideTheGroup(f"alive after the kill of their run's process group: {described}")


def test_the_next_run_on_the_same_dagster_instance_completes(harness, data_dir):
    """After a run killed in a step, a new run on the same DAGSTER_HOME (as `make run` and the
    daemon use it) must complete. The run after the kills above is one; run alone, this test kills
    a run of its own and runs the next one on its instance."""
    if harness.next_run_on_a_killed_instance is None:
        home = harness.new_home()
        harness.run_and_kill(0, home=home)
        harness.killed_homes.append(home)
        harness.run_to_completion(home, "next run on the same Dagster instance")
    if isinstance(harness.next_run_on_a_killed_instance, AssertionError):
        raise harness.next_run_on_a_killed_instance
    assert harness.next_run_on_a_killed_instance == "completed"
