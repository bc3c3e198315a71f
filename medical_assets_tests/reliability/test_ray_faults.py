"""A Ray worker killed in the middle of a parse job: Ray retries its task, and the tables come out
exactly as from an undisturbed run (every message once, none doubled by the retry, none lost).

The worker to kill is found among this process's descendants by the title Ray gives a busy worker
(`ray::ReadLandingFiles->Write`), and, for the HL7 job, by the staged Parquet files it holds open:
it is killed after it has written and reported its first block, so the retry must overwrite its
half-written part files. Every process is killed by its PID, and only workers of the session's shared
Ray, which this process started (Ray starts others in their place). Further tests feed files that
kill their worker on every attempt: one whose reader is made to, and damaged DICOM files found by
test_dicom_fuzz, through the real DICOM job.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pytest
import ray
from pydicom.data.data_manager import DATA_ROOT

from medical_assets.dicom.tables import TABLES as DICOM_TABLES
from medical_assets.engine import jobs, multitable
from medical_assets.hl7 import parse_hl7_file
from medical_assets.hl7.tables import TABLES as HL7_TABLES
from medical_assets.sources.folder import list_landing_files
from medical_assets.storage import Location, TablePublication, read_table, resolve_location
from medical_assets.synthetic import dicom as synthetic_dicom
from medical_assets.synthetic import hl7 as synthetic_hl7

pytestmark = pytest.mark.slow

# setproctitle: what a Ray worker running the fused read-and-write task of a parse job is called.
TASK_TITLE = "ray::ReadLandingFiles->Write"
# HL7 corpus: 7 distinct files of 2,000 synthetic messages, each message followed by a 2 KB Z-segment
# (the reader skips it cheaply), written 6 times under other names: 42 files of 5.3 MB, 84,000
# messages. A read task yields a block each time it has read 32 MB (datasources.BLOCK_INPUT_BYTES),
# here after every 7 files: each of the two tasks yields three times.
HL7_DISTINCT_FILES, HL7_COPIES, HL7_MESSAGES_PER_FILE = 7, 6, 2_000
HL7_PADDING = "ZPD|" + "PADDING " * 256 + "\r"
# Ray Data then merges what a read task yields into blocks of up to
# DataContext.target_max_block_size (128 MiB) before the fused write sees them, so each task would
# write one block, at its end. A task over large feed files (it takes whole files, whatever
# jobs.HL7_BYTES_PER_TASK says) writes several; so does one here with 8 MiB blocks: the first is
# written a third into the task, and a worker can die after writing and reporting it.
HL7_BLOCK_BYTES = 8 << 20
# DICOM corpus: 20 synthetic files (0.7 MB each) written 20 times: 400 files, two tasks of 200 files.
# A fast machine reads 100 files in under half a second, too short to catch a worker busy; 400 give
# the killer a couple of seconds on any machine.
DICOM_DISTINCT_FILES, DICOM_COPIES = 20, 20
# The tables every HL7 message of the synthetic corpus writes to (it has no errors).
HL7_WRITTEN_TABLES = ("hl7_messages", "hl7_lab_results", "hl7_pharmacy_orders", "hl7_encounters")


# --- finding and killing a busy worker ------------------------------------------------------------


@dataclass
class Kill:
    pid: int
    busy_for_s: float
    open_staged_files: list[str]
    job_running: bool  # the job had not returned when the worker was killed


class BusyWorkerKiller(threading.Thread):
    """Polls this process's descendants; SIGKILLs the first worker running the parse task for which
    `ready(busy_for_s, open_staged_files, held_for_s)` says yes. `held_for_s` is how long the worker
    has held the files of every table in `tables_open` open (0 while it does not)."""

    def __init__(
        self,
        staging: str,
        ready: Callable[[float, list[str], float], bool],
        job_done: threading.Event,
        tables_open: tuple[str, ...] = (),
    ):
        super().__init__(name="worker-killer", daemon=True)
        self.staging = staging
        self.ready = ready
        self.job_done = job_done
        self.tables_open = tables_open
        self.kill: Kill | None = None
        self.error: BaseException | None = None

    def run(self):
        try:
            self._run()
        except BaseException as error:  # reported by the test, not lost in a thread
            self.error = error

    def _run(self):
        busy_since: dict[int, float] = {}
        held_since: dict[int, float] = {}
        while not self.job_done.is_set():
            now = time.monotonic()
            for process in psutil.Process().children(recursive=True):
                if not _is_busy(process):
                    busy_since.pop(process.pid, None)
                    held_since.pop(process.pid, None)
                    continue
                busy_since.setdefault(process.pid, now)
                staged = _open_staged_files(process, self.staging)
                if self.tables_open and all(any(f"/{t}/" in path for path in staged) for t in self.tables_open):
                    held_since.setdefault(process.pid, now)
                else:
                    held_since.pop(process.pid, None)
                held = now - held_since[process.pid] if process.pid in held_since else 0.0
                if self.ready(now - busy_since[process.pid], staged, held) and _is_busy(process):
                    os.kill(process.pid, signal.SIGKILL)
                    self.kill = Kill(process.pid, now - busy_since[process.pid], staged, not self.job_done.is_set())
                    return
            time.sleep(0.02)


def _is_busy(process: psutil.Process) -> bool:
    try:
        cmdline = process.cmdline()
    except psutil.Error:
        return False
    return bool(cmdline) and cmdline[0].startswith(TASK_TITLE)


def _open_staged_files(process: psutil.Process, staging: str) -> list[str]:
    try:
        return sorted(f.path for f in process.open_files() if f.path.startswith(staging))
    except psutil.Error:
        return []


@dataclass
class JobRun:
    counts: dict
    reports: list[dict]
    zone: Location
    staged_parts: dict[str, list[str]]
    kill: Kill | None = None
    seconds: float = 0.0


def _run_job(
    job, files, source, zone: Location, tables, killer_options: dict | None = None, block_bytes: int | None = None
) -> JobRun:
    """Run `job` into a publication of `zone` (with a worker killer when options are given), and commit."""
    context = ray.data.DataContext.get_current()
    saved_block_bytes = context.target_max_block_size
    if block_bytes is not None:
        context.target_max_block_size = block_bytes
    try:
        return _run_job_in_context(job, files, source, zone, tables, killer_options)
    finally:
        context.target_max_block_size = saved_block_bytes


def _run_job_in_context(job, files, source, zone: Location, tables, killer_options: dict | None) -> JobRun:
    publication = TablePublication(zone)
    reports: list[dict] = []
    killer = None
    job_done = threading.Event()
    if killer_options is not None:
        killer = BusyWorkerKiller(staging=publication.staging.path, job_done=job_done, **killer_options)
        killer.start()
    started = time.monotonic()
    try:
        counts = job(files, source.filesystem, publication, lambda c, s: reports.append(dict(c)))
    finally:
        job_done.set()
        if killer is not None:
            killer.join(10)
    seconds = time.monotonic() - started
    staged_parts = {
        name: sorted(os.listdir(publication.staged(name).path)) for name in tables if publication.staged(name).exists()
    }
    publication.commit(tables)
    if killer is not None and killer.error is not None:
        raise killer.error
    return JobRun(counts, reports, zone, staged_parts, killer.kill if killer else None, seconds)


def _sorted_by_every_column(table: pa.Table) -> pa.Table:
    sortable = [name for name in table.column_names if not pa.types.is_nested(table.schema.field(name).type)]
    return table.sort_by([(name, "ascending") for name in sortable])


# --- HL7 ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hl7_landing(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hl7_landing")
    settings = synthetic_hl7.HL7CorpusSettings(
        total_messages=HL7_DISTINCT_FILES * HL7_MESSAGES_PER_FILE, messages_per_file=HL7_MESSAGES_PER_FILE
    )
    for index in range(HL7_DISTINCT_FILES):
        numbers = range(index * HL7_MESSAGES_PER_FILE, (index + 1) * HL7_MESSAGES_PER_FILE)
        body = "".join(synthetic_hl7.render_message(settings, n) + HL7_PADDING for n in numbers).encode()
        for copy in range(HL7_COPIES):
            (folder / f"feed_{copy:02d}_{index:02d}.hl7").write_bytes(body)
    return folder


@pytest.fixture(scope="module")
def hl7_runs(shared_ray, hl7_landing, tmp_path_factory):
    """An undisturbed run, then a run in which a worker is killed after writing its first block."""
    source = resolve_location(str(hl7_landing))
    files = list_landing_files(source, (".hl7",))
    assert len(files) == HL7_DISTINCT_FILES * HL7_COPIES
    root = tmp_path_factory.mktemp("hl7_zones")
    with pytest.MonkeyPatch.context() as patch:
        # Two tasks of 111 MB, as a site whose feed files are large gets (a task takes whole files):
        # each writes several blocks, so a worker can die after writing its first.
        patch.setattr(jobs, "HL7_BYTES_PER_TASK", 1 << 30)
        return _hl7_runs(files, source, root)


def _hl7_runs(files, source, root):
    undisturbed = _run_job(
        jobs.parse_hl7_files, files, source, resolve_location(str(root / "undisturbed")), HL7_TABLES,
        block_bytes=HL7_BLOCK_BYTES,
    )
    # Ready once the worker has held every table's part file open for 0.3 s: its first block is then
    # written and reported to the progress counter, and the rest of its task (two thirds) is not.
    killed = _run_job(
        jobs.parse_hl7_files,
        files,
        source,
        resolve_location(str(root / "killed")),
        HL7_TABLES,
        killer_options={"ready": lambda busy, staged, held: held >= 0.3, "tables_open": HL7_WRITTEN_TABLES},
        block_bytes=HL7_BLOCK_BYTES,
    )
    return files, undisturbed, killed


def test_a_worker_killed_mid_write_is_retried_and_the_tables_equal_an_undisturbed_run(hl7_runs):
    files, undisturbed, killed = hl7_runs
    kill = killed.kill
    assert kill is not None, "no busy worker with open part files was found to kill"
    assert kill.job_running and len(kill.open_staged_files) >= len(HL7_WRITTEN_TABLES), kill
    # The job finished (Ray retried the lost task), with the same totals and the same part files:
    # the retry wrote the part numbers of the task it replaced, not new ones beside them.
    assert killed.counts == undisturbed.counts
    assert killed.counts["files"] == len(files)
    assert killed.counts["hl7_messages"] == len(files) * HL7_MESSAGES_PER_FILE
    assert killed.staged_parts == undisturbed.staged_parts
    for name in HL7_TABLES:
        after_kill = read_table(killed.zone.child(name))
        reference = read_table(undisturbed.zone.child(name))
        assert after_kill.num_rows == reference.num_rows == undisturbed.counts.get(name, 0), name
        assert _sorted_by_every_column(after_kill).equals(_sorted_by_every_column(reference)), name
    # Each message exactly once: no file's messages doubled or missing.
    messages = read_table(killed.zone.child("hl7_messages"), HL7_TABLES["hl7_messages"])
    keys = pa.table({"f": messages["source_file"], "i": messages["message_index"]})
    assert keys.group_by(["f", "i"]).aggregate([]).num_rows == messages.num_rows
    per_file = messages.group_by("source_file").aggregate([("message_index", "count")])
    assert sorted(per_file["source_file"].to_pylist()) == sorted(f.path for f in files)
    assert set(per_file["message_index_count"].to_pylist()) == {HL7_MESSAGES_PER_FILE}


def test_progress_after_a_retry_counts_every_file_once(hl7_runs):
    files, _, killed = hl7_runs
    assert killed.kill is not None
    assert killed.reports[-1]["files"] == len(files), killed.reports[-1]


def test_the_killed_run_takes_longer_but_not_much(hl7_runs):
    """The retry redoes only the lost task; a sanity bound against a retry loop or a restarted job."""
    _, undisturbed, killed = hl7_runs
    assert killed.seconds < undisturbed.seconds + 30


# --- DICOM ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dicom_runs(shared_ray, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dicom_landing")
    settings = synthetic_dicom.DicomCorpusSettings(total_files=DICOM_DISTINCT_FILES)
    bodies = [synthetic_dicom.render_file(settings, index) for index in range(DICOM_DISTINCT_FILES)]
    for copy in range(DICOM_COPIES):
        for index, body in enumerate(bodies):
            (folder / f"image_{copy}_{index:02d}.dcm").write_bytes(body)
    source = resolve_location(str(folder))
    files = list_landing_files(source, (".dcm",))
    root = tmp_path_factory.mktemp("dicom_zones")
    undisturbed = _run_job(
        jobs.parse_dicom_files, files, source, resolve_location(str(root / "undisturbed")), DICOM_TABLES
    )
    # Killed while reading, before its task has any part file open.
    killed = _run_job(
        jobs.parse_dicom_files,
        files,
        source,
        resolve_location(str(root / "killed")),
        DICOM_TABLES,
        killer_options={"ready": lambda busy, staged, held: busy >= 0.1 and not staged},
    )
    return files, undisturbed, killed


def test_a_dicom_worker_killed_mid_read_is_retried_and_the_tables_equal_an_undisturbed_run(dicom_runs):
    files, undisturbed, killed = dicom_runs
    assert killed.kill is not None and killed.kill.job_running, "no busy worker was found to kill"
    assert killed.counts == undisturbed.counts
    assert killed.counts["dicom_images"] == killed.counts["files"] == len(files)
    assert killed.staged_parts == undisturbed.staged_parts
    for name in DICOM_TABLES:
        after_kill = read_table(killed.zone.child(name)).sort_by("source_file")
        reference = read_table(undisturbed.zone.child(name)).sort_by("source_file")
        assert after_kill.num_rows == reference.num_rows, name
        assert after_kill["source_file"].to_pylist() == reference["source_file"].to_pylist(), name
        for column in after_kill.column_names:
            kind = after_kill.schema.field(column).type
            if pa.types.is_floating(kind):
                # numpy's summation order depends on memory alignment: equal to the last bits only.
                got, want = after_kill[column].to_pylist(), reference[column].to_pylist()
                assert [value is None for value in got] == [value is None for value in want], column
                present = [(g, w) for g, w in zip(got, want) if w is not None]
                assert [g for g, _ in present] == pytest.approx([w for _, w in present], rel=1e-9), column
            elif isinstance(kind, pa.FixedShapeTensorType):
                got = after_kill[column].combine_chunks().to_numpy_ndarray()
                want = reference[column].combine_chunks().to_numpy_ndarray()
                assert np.allclose(got, want, rtol=1e-5, atol=1e-6), column
            else:
                assert after_kill[column].equals(reference[column]), column
    assert len(set(read_table(killed.zone.child("dicom_images"))["source_file"].to_pylist())) == len(files)


# --- a file that kills its worker every time ------------------------------------------------------

POISON_NAME = "poison.hl7"
# Attempts of the poisoned task after which the job counts as retrying without end. A product that
# bounds retries (ray_remote_args={"max_retries": n}, n <= 3) fails the job before this.
UNBOUNDED_AFTER_ATTEMPTS = 5


def _crash_on_poison(data: bytes, path: str, control: str) -> pa.Table:
    """The HL7 reader, except that it kills its own worker on POISON_NAME until `control`/disarmed exists,
    as a decoder that segfaults or runs out of memory on one file would. Runs in the Ray workers."""
    if os.path.basename(path) == POISON_NAME and not os.path.exists(os.path.join(control, "disarmed")):
        with open(os.path.join(control, "attempts"), "a") as log:
            log.write(f"{os.getpid()}\n")
        os.kill(os.getpid(), signal.SIGKILL)
    return multitable.pack(path, parse_hl7_file(data, path).tables(), jobs.HL7_PACKED_SCHEMA)


def _attempts(control) -> int:
    try:
        return len((control / "attempts").read_text().splitlines())
    except FileNotFoundError:
        return 0


def test_a_file_that_always_kills_its_worker_fails_the_job_after_a_few_attempts(shared_ray, tmp_path):
    landing, control = tmp_path / "landing", tmp_path / "control"
    landing.mkdir()
    control.mkdir()
    message = b"MSH|^~\\&|LAB|HOSP|EHR|HOSP|20240101120000||ADT^A01|MSG1|P|2.5\rPID|1||MRN1\r"
    (landing / "healthy.hl7").write_bytes(message)
    (landing / POISON_NAME).write_bytes(message)
    source = resolve_location(str(landing))
    files = list_landing_files(source, (".hl7",))
    publication = TablePublication(resolve_location(str(tmp_path / "phi")))
    read_file = functools.partial(_crash_on_poison, control=str(control))
    outcome: dict = {}

    def run():
        try:
            outcome["counts"] = jobs.parse_landing_files(
                files, source.filesystem, publication, HL7_TABLES, read_file, jobs.HL7_PACKED_SCHEMA, lambda c, s: None
            )
        except BaseException as error:
            outcome["error"] = error

    job = threading.Thread(target=run, name="poisoned-job", daemon=True)
    job.start()
    deadline = time.monotonic() + 60
    while job.is_alive() and _attempts(control) < UNBOUNDED_AFTER_ATTEMPTS and time.monotonic() < deadline:
        job.join(0.1)
    attempts_while_armed = _attempts(control)
    # Whatever happened, let the job end: the poisoned file reads normally from now on.
    (control / "disarmed").write_bytes(b"")
    job.join(60)
    assert not job.is_alive(), "the job did not end even after the poison was disarmed"
    publication.abandon()
    assert attempts_while_armed < UNBOUNDED_AFTER_ATTEMPTS, (
        f"{attempts_while_armed} attempts of a task whose worker dies every time, and the job still running"
    )
    assert "error" in outcome, "the job should fail once its retries are used up"


# --- damaged DICOM files that crash a decoder, through the real DICOM job ------------------------------


class WorkerDeathWatch(threading.Thread):
    """Records the PIDs of workers that vanished while running the parse task (last seen busy, then
    gone or a zombie); a worker going idle, or ended by Ray once idle, is not a death."""

    def __init__(self, stop: threading.Event):
        super().__init__(name="worker-death-watch", daemon=True)
        self.stop = stop
        self.deaths: list[int] = []

    def run(self):
        busy: dict[int, psutil.Process] = {}
        while not self.stop.is_set():
            for process in psutil.Process().children(recursive=True):
                if _is_busy(process):
                    busy[process.pid] = process
            for pid, process in list(busy.items()):
                try:
                    alive = process.is_running() and process.status() != psutil.STATUS_ZOMBIE
                except psutil.Error:
                    alive = False
                if not alive:
                    self.deaths.append(pid)
                    del busy[pid]
                elif not _is_busy(process):
                    del busy[pid]
            time.sleep(0.02)


def _test_file(name: str) -> bytes:
    return Path(DATA_ROOT, "test_files", name).read_bytes()


def _run_dicom_job_in_thread(landing: Path, tmp_path: Path):
    source = resolve_location(str(landing))
    files = list_landing_files(source, (".dcm",))
    publication = TablePublication(resolve_location(str(tmp_path / "phi")))
    outcome: dict = {}

    def run():
        try:
            outcome["counts"] = jobs.parse_dicom_files(files, source.filesystem, publication, lambda c, s: None)
        except BaseException as error:
            outcome["error"] = error

    job = threading.Thread(target=run, name="dicom-job", daemon=True)
    job.start()
    return job, outcome, publication


def test_a_damaged_rle_file_is_one_row_and_the_job_succeeds(shared_ray, tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    rle = _test_file("MR_small_RLE.dcm")
    (landing / "damaged_rle.dcm").write_bytes(rle[:2830] + rle[2834:])  # 4 bytes of an RLE segment gone
    (landing / "healthy.dcm").write_bytes(_test_file("CT_small.dcm"))
    job, outcome, publication = _run_dicom_job_in_thread(landing, tmp_path)
    job.join(120)
    assert not job.is_alive()
    publication.abandon()
    assert "error" not in outcome, repr(outcome.get("error"))[:300]
    assert outcome["counts"]["files"] == 2
    assert outcome["counts"].get("dicom_images", 0) + outcome["counts"].get("dicom_errors", 0) == 2


def test_a_damaged_jpeg_file_neither_kills_its_worker_nor_stalls_the_job(shared_ray, tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    jpeg = _test_file("SC_rgb_jpeg_dcmtk.dcm")
    damaged = landing / "damaged_jpeg.dcm"
    damaged.write_bytes(jpeg[:1753] + b"\x7d\x69" + jpeg[1753:])  # 2 bytes spliced into the JPEG stream
    stop = threading.Event()
    watch = WorkerDeathWatch(stop)
    watch.start()
    try:
        job, outcome, publication = _run_dicom_job_in_thread(landing, tmp_path)
        deadline = time.monotonic() + 45
        while job.is_alive() and not watch.deaths and time.monotonic() < deadline:
            job.join(0.1)
        stalled = job.is_alive()
        # Let the job end: the next attempt reads the undamaged file.
        damaged.write_bytes(jpeg)
        job.join(120)
    finally:
        stop.set()
        watch.join(10)
    assert not job.is_alive(), "the job did not end even with the undamaged file in place"
    publication.abandon()
    assert watch.deaths == [], f"worker(s) {watch.deaths} died reading the damaged file; Ray retried the task"
    assert not stalled
    assert "error" not in outcome, repr(outcome.get("error"))[:300]
