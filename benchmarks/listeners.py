"""Live intake for `make bench`: the MLLP listener's messages/s and ACK latency, C-STORE MB/s, and ACK to row.

    python -m benchmarks.listeners mllp_hl7 CONNECTIONS OUTPUT   # one measurement; its JSON is stdout's last line
    python -m benchmarks.listeners cstore_dicom FILES OUTPUT
    python -m benchmarks.listeners ack_to_row MESSAGES OUTPUT

`python -m benchmarks` runs each in a process of its own with a fresh OUTPUT folder, which holds the
landing folder (and for ack_to_row the data folder and a Dagster home). The listeners are the real
ones, started as the console command `medical-assets listen` with its defaults: durable (an ACK or a
C-STORE success only after fsync), HL7 segments rolled at 64 MiB or 60 s. benchmarks/listeners_report.py
renders their part of results.md.

Settings (environment variables): BENCH_HL7_WINDOW_S (default 20; quick mode 5) and
BENCH_HL7_MAX_MESSAGES (default 50000): each connection count is measured over that window or that
many messages, whichever ends first, after a warm-up; BENCH_LISTENER_DICOM_FILES (default 200; quick
30); BENCH_ACK_TO_ROW_LIMIT_S (default 300), how long ACK to row may take before it is given up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import psutil

from benchmarks.listeners_client import START_BLOCK, hl7_templates, run_mllp_load, write_dicom_corpus

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUTPUT = os.path.join(HERE, "output")
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")


def _setting(name: str, default: str, quick: str | None = None) -> str:
    return os.environ.get(name) or (quick if QUICK and quick is not None else default)


CONNECTIONS = (1, 8, 32)
WARMUP_S = 2.0
WINDOW_S = float(_setting("BENCH_HL7_WINDOW_S", "20", "5"))
MAX_MESSAGES = int(_setting("BENCH_HL7_MAX_MESSAGES", "50000"))
DICOM_FILES = int(_setting("BENCH_LISTENER_DICOM_FILES", "200", "30"))
ACK_TO_ROW_MESSAGES = 1000
ACK_TO_ROW_CONNECTIONS = 8
ACK_TO_ROW_LIMIT_S = float(_setting("BENCH_ACK_TO_ROW_LIMIT_S", "300"))
DAEMON_START_LIMIT_S = 240.0  # the daemon loads the definitions, then ticks the sensor once
CALLED_AE = "MEDASSETS"  # `medical-assets listen dicom`'s default AE title
_READY = re.compile(r"listening on (\S+):(\d+)")


def plan() -> list[tuple[str, int, list[str], int | None]]:
    """(measurement, size, command line but its output folder, runs or None for the bench's repeats): each
    connection count, the DICOM corpus, and ACK to row once (not in quick mode: it takes minutes by design)."""
    runs: list[tuple[str, int, int | None]] = [("mllp_hl7", connections, None) for connections in CONNECTIONS]
    runs.append(("cstore_dicom", DICOM_FILES, None))
    if not QUICK:
        runs.append(("ack_to_row", ACK_TO_ROW_MESSAGES, 1))
    return [(name, size, [sys.executable, "-m", "benchmarks.listeners", name, str(size)], repeats) for name, size, repeats in runs]


def measure_hl7(connections: int, output: str) -> dict:
    """Messages/s and ACK latency over `connections` MLLP connections, each with one message in flight."""
    landing = os.path.join(output, "landing")
    fsync_ms = _fsync_probe(output)
    with _Listener("hl7", {"MEDICAL_ASSETS_HL7_SOURCE": landing}, output) as listener:
        cpu = _CpuClock(listener.pid)
        load = asyncio.run(run_mllp_load(
            listener.host, listener.port, connections, hl7_templates(),
            warmup_s=WARMUP_S, window_s=WINDOW_S, max_messages=MAX_MESSAGES, mark=cpu.mark,
        ))
    files, landed = _frames_landed(landing)
    return {**load, "cpu_cores": cpu.cores(), "fsync_ms": fsync_ms, "landed": landed, "landing_files": files, "warmup_s": WARMUP_S,
            "window_limit_s": WINDOW_S, "max_messages": MAX_MESSAGES, **listener.outcome(), "filesystem": _filesystem(output)}


def measure_dicom(files: int, output: str) -> dict:
    """Instances and MB per second from storescu into the storage service, uncompressed files of 1 to 2 MB."""
    from medical_assets.sources.dicom_listener import MAXIMUM_PDU_SIZE

    paths = write_dicom_corpus(os.path.join(OUTPUT, f"listener-dicom-{files}"), files)
    corpus_bytes = 0
    for path in paths:  # read once, so that every run finds the corpus in the page cache alike
        with open(path, "rb") as f:
            corpus_bytes += len(f.read())
    landing = os.path.join(output, "landing")
    with _Listener("dicom", {"MEDICAL_ASSETS_DICOM_SOURCE": landing}, output) as listener:
        sender, argv = _storescu(listener.host, listener.port, os.path.dirname(paths[0]))
        cpu = _CpuClock(listener.pid)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(os.path.join(output, "storescu.log"), "wb") as log:
            cpu.mark("start")
            completed = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, timeout=900)
            cpu.mark("end")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        raise RuntimeError(f"{sender} exited with {completed.returncode}:\n{_tail(os.path.join(output, 'storescu.log'))}")
    stored = [os.path.join(folder, name) for folder, _, names in os.walk(os.path.join(landing, "cstore")) for name in names
              if name.endswith(".dcm")]
    pdv = re.search(r"Max Send PDV: (\d+)", _tail(os.path.join(output, "storescu.log"), None))
    cores, seconds = cpu.cores(), cpu.seconds()
    cores["sender"] = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / seconds
    return {"sender": sender, "instances": files, "bytes": corpus_bytes, "seconds": seconds,
            "instances_per_s": files / seconds, "mb_per_s": corpus_bytes / 1e6 / seconds, "stored": len(stored),
            "stored_bytes": sum(os.path.getsize(p) for p in stored), "listener_max_pdu": MAXIMUM_PDU_SIZE,
            "max_send_pdv": int(pdv.group(1)) if pdv else None,
            "cpu_cores": cores, **listener.outcome(), "filesystem": _filesystem(output)}


def measure_ack_to_row(messages: int, output: str) -> dict:
    """Seconds from a batch's last ACK to its rows in deid/hl7_messages, through the sensor's run.

    The listener and a Dagster daemon run as `make dev` would run them, with the sensor's default
    interval; the batch is sent once the daemon has ticked the sensor a first time (nothing to do
    then: the landing folder is empty)."""
    landing, data, home = (os.path.join(output, name) for name in ("landing", "data", "dagster_home"))
    os.makedirs(home)
    shutil.copy(os.path.join(ROOT, "dagster.yaml"), home)
    settings = {"MEDICAL_ASSETS_HL7_SOURCE": landing, "MEDICAL_ASSETS_DATA_DIR": data,
                "MEDICAL_ASSETS_SYNTHETIC_DICOM_FILES": "0", "DAGSTER_HOME": home}
    deid = os.path.join(data, "deid", "hl7_messages")
    timeline: dict[str, float | None] = {"landed": None, "row": None}
    with _Listener("hl7", settings, output) as listener, _Daemon(settings, output) as daemon:
        daemon.wait_for(lambda: _sensor_ticks(home), DAEMON_START_LIMIT_S, "the sensor's first tick")
        load = asyncio.run(run_mllp_load(listener.host, listener.port, ACK_TO_ROW_CONNECTIONS, hl7_templates(),
                                         warmup_s=0.0, window_s=120.0, max_messages=messages, mark=lambda edge: None))
        timeline["ack"] = time.time()
        expected = load["acknowledged"]
        deadline = time.monotonic() + ACK_TO_ROW_LIMIT_S
        while time.monotonic() < deadline and timeline["row"] is None:
            daemon.check()
            if timeline["landed"] is None and _frames_landed(landing)[1] >= expected:
                timeline["landed"] = time.time()
            if _rows(deid) >= expected:
                timeline["row"] = time.time()
            time.sleep(0.5)
        run = daemon.wait_for(lambda: [r for r in _runs(home) if r["end"]], max(0.0, deadline - time.monotonic()), None)
    ticks = _sensor_ticks(home)
    requested = [t for t in ticks if t["status"] == "SUCCESS"]
    run = (run or _runs(home) or [None])[0]
    timeline |= {"first_tick": ticks[0]["at"] if ticks else None, "requested": requested[0]["at"] if requested else None,
                 "run_start": run and run["start"], "run_end": run and run["end"]}
    return {"messages": expected, "connections": ACK_TO_ROW_CONNECTIONS, "not_accepted": load["not_accepted"],
            "rows": _rows(deid), "timeline": timeline, "run_status": run and run["status"], "limit_s": ACK_TO_ROW_LIMIT_S,
            "sensor_ticks": [tick["at"] for tick in ticks],
            **({} if timeline["row"] else {"error": f"no row within {ACK_TO_ROW_LIMIT_S:.0f} s of the ACK", "keep": True}),
            **listener.outcome(), "filesystem": _filesystem(output)}


def main() -> None:
    name, size, output = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    measure = {"mllp_hl7": measure_hl7, "cstore_dicom": measure_dicom, "ack_to_row": measure_ack_to_row}[name]
    print(json.dumps(measure(size, output)))


class _Listener:
    """`medical-assets listen KIND --port 0` in a session of its own; its address from the line it logs."""

    def __init__(self, kind: str, settings: dict, folder: str):
        self.kind = kind
        self.settings = {"MEDICAL_ASSETS_DATA_DIR": os.path.join(folder, "data"), **settings}
        self.log = os.path.join(folder, f"listen-{kind}.log")
        self.peak_rss = self.returncode = None

    def __enter__(self) -> _Listener:
        command = os.path.join(os.path.dirname(sys.executable), "medical-assets")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([command, "listen", self.kind, "--host", "127.0.0.1", "--port", "0"], cwd=ROOT,
                                            env=_environment(self.settings), stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self.pid = self.process.pid
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.process.poll() is None:
            with open(self.log, errors="replace") as f:
                ready = _READY.search(f.read())
            if ready:
                self.host, self.port = ready.group(1), int(ready.group(2))
                return self
            time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"`medical-assets listen {self.kind}` did not start:\n{_tail(self.log)}")

    def __exit__(self, *_) -> None:
        """SIGTERM, as an operator stops it: it finishes what is in flight and lands its open segment."""
        self.peak_rss = _peak_rss(self.pid)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.process.wait()
        self.returncode = self.process.returncode

    def outcome(self) -> dict:
        return {"listener_peak_rss": self.peak_rss, "listener_exit": self.returncode}


class _Daemon:
    """`dagster-daemon run` on the project's definitions (the sensor and the run queue of `make dev`)."""

    def __init__(self, settings: dict, folder: str):
        self.settings = settings
        self.log = os.path.join(folder, "dagster-daemon.log")

    def __enter__(self) -> _Daemon:
        command = os.path.join(os.path.dirname(sys.executable), "dagster-daemon")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([command, "run", "-m", "medical_assets.definitions"], cwd=ROOT,
                                            env=_environment(self.settings), stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        return self

    def check(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"dagster-daemon exited with {self.process.returncode}:\n{_tail(self.log)}")

    def wait_for(self, found, limit_s: float, what: str | None):
        """`found()` once it is truthy, polled every second for `limit_s`; then an error naming `what`, or None."""
        deadline = time.monotonic() + limit_s
        while True:
            self.check()
            value = found()
            if value or time.monotonic() >= deadline:
                break
            time.sleep(1.0)
        if not value and what:
            raise RuntimeError(f"no {what} within {limit_s:.0f} s:\n{_tail(self.log)}")
        return value

    def __exit__(self, *_) -> None:
        """SIGTERM to its process group (its code server and a run worker in it), then SIGKILL to whatever
        of it, or of the processes it started in sessions of their own (Ray's), is still alive."""
        try:
            family = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.Error:
            family = []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        _, alive = psutil.wait_procs(family, timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for member in alive:
            with contextlib.suppress(psutil.Error):
                member.kill()
        self.process.wait()


class _CpuClock:
    """CPU time of this process (the load generator), of the listener and of the whole machine between two marks."""

    def __init__(self, listener_pid: int):
        self.listener = psutil.Process(listener_pid)
        self.samples: dict[str, tuple] = {}

    def mark(self, edge: str) -> None:
        times = self.listener.cpu_times()
        machine = psutil.cpu_times()
        busy = machine.user + machine.nice + machine.system + machine.irq + machine.softirq + machine.steal
        self.samples[edge] = (time.perf_counter(), time.process_time(), times.user + times.system, busy)

    def seconds(self) -> float:
        return self.samples["end"][0] - self.samples["start"][0]

    def cores(self) -> dict:
        """Cores used on average: the listener, the load generator, and the machine as a whole (every process)."""
        start, end = self.samples["start"], self.samples["end"]
        wall = end[0] - start[0]
        return {name: (end[i] - start[i]) / wall for i, name in ((2, "listener"), (1, "load_generator"), (3, "machine"))}


def _storescu(host: str, port: int, corpus: str) -> tuple[str, list[str]]:
    """dcmtk's storescu when it is on the PATH, else pynetdicom's: its name and its command line."""
    venv_bin = os.path.realpath(os.path.dirname(sys.executable))
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = os.path.join(folder, "storescu")
        if not folder or os.path.realpath(folder) == venv_bin or not os.access(candidate, os.X_OK):
            continue  # the venv's storescu is pynetdicom's
        version = subprocess.run([candidate, "--version"], capture_output=True, text=True).stdout
        match = re.search(r"dcmtk: storescu (v\S+)", version)
        if match:
            # Verbose: it logs the PDV size it sends with (the service's maximum PDU, up to dcmtk's own cap).
            return f"dcmtk storescu {match.group(1)}", [candidate, "-v", "-aet", "BENCH", "-aec", CALLED_AE, "--max-pdu", "131072",
                                                        "+sd", "+sp", "*.dcm", host, str(port), corpus]
    import pynetdicom

    return f"pynetdicom storescu {pynetdicom.__version__} (dcmtk not installed)", [
        sys.executable, "-m", "pynetdicom", "storescu", host, str(port), corpus, "-r", "-cx", "-q",
        "-aet", "BENCH", "-aec", CALLED_AE, "--max-pdu", "0"]


def _fsync_probe(folder: str, appends: int = 200, size: int = 1400) -> dict:
    """Milliseconds of one append and fsync of a message's size on the landing folder's disk: the floor
    under an ACK, which the listener sends only after such an fsync."""
    path, payload, times = os.path.join(folder, "fsync-probe"), b"x" * size, []
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(appends):
            started = time.perf_counter()
            os.write(descriptor, payload)
            os.fsync(descriptor)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(descriptor)
        os.remove(path)
    times.sort()
    return {"median": times[len(times) // 2], "p99": times[int(len(times) * 0.99)]}


def _frames_landed(landing: str) -> tuple[int, int]:
    """Landing files and MLLP-framed messages in them, outside the listener's private `_` folders."""
    files = frames = 0
    for folder, subfolders, names in os.walk(landing):
        subfolders[:] = [name for name in subfolders if not name.startswith(("_", "."))]
        for name in names:
            if not name.startswith(("_", ".")):
                with open(os.path.join(folder, name), "rb") as f:
                    frames += f.read().count(START_BLOCK)
                files += 1
    return files, frames


def _rows(table: str) -> int:
    if not os.path.isdir(table):
        return 0
    import pyarrow.dataset as ds

    try:
        return ds.dataset(table, format="parquet").count_rows()
    except (OSError, ValueError):  # read while the run publishes it
        return 0


def _sensor_ticks(home: str) -> list[dict]:
    """The sensor's ticks from Dagster's SQLite storage: status and time (epoch seconds), oldest first."""
    rows = _query(os.path.join(home, "schedules", "schedules.db"), "SELECT status, tick_body FROM job_ticks WHERE type = 'SENSOR' ORDER BY id")
    return [{"status": status, "at": json.loads(body).get("timestamp")} for status, body in rows]


def _runs(home: str) -> list[dict]:
    rows = _query(os.path.join(home, "history", "runs.db"), "SELECT status, start_time, end_time FROM runs ORDER BY id")
    return [{"status": status, "start": start, "end": end} for status, start, end in rows]


def _query(database: str, sql: str) -> list[tuple]:
    if not os.path.exists(database):
        return []
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
            return connection.execute(sql).fetchall()
    except sqlite3.Error:  # not yet created by the daemon, or being written
        return []


def _environment(settings: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDICAL_ASSETS_") and k not in ("RAY_ADDRESS", "DAGSTER_HOME")}
    return env | settings


def _peak_rss(pid: int) -> int | None:
    """The process's largest resident size so far (the kernel's VmHWM)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return None


def _filesystem(path: str) -> str:
    """The file system the landing folder is on (fsync costs what that device makes it cost)."""
    path = os.path.realpath(path)
    mounts = [p for p in psutil.disk_partitions(all=True) if path == p.mountpoint or path.startswith(p.mountpoint.rstrip("/") + "/")]
    mount = max(mounts, key=lambda p: len(p.mountpoint), default=None)
    return f"{mount.fstype} on {mount.device}" if mount else "unknown"


def _tail(path: str, characters: int | None = 3000) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-characters:] if characters else f.read()
    except OSError:
        return ""


if __name__ == "__main__":
    main()
