"""`make bench`: every measurement several times, each in a fresh process; results in benchmarks/results.md.

    python -m benchmarks            # the whole plan (settings below, from the environment)
    python -m benchmarks report     # rewrite the results from the last run's JSON (benchmarks/output/)
    python -m benchmarks listeners  # the live intake alone: its section of the results replaced, the rest kept
    python -m benchmarks nightly    # the nightly section alone, into benchmarks/output/nightly-results.md
    python -m benchmarks pipeline   # the whole pipeline against the tutorial's parse alone, into
                                    # benchmarks/output/pipeline-results.md

Settings (environment variables):

- BENCH_SIZES: HL7 corpus sizes in messages, comma-separated (default 50000,500000,1000000;
  add 2000000 for the 2,000,000-message targets). Corpora of the tutorial's four templates are
  generated once into benchmarks/output/ and kept.
- BENCH_COMPONENT_MAX_SIZE (default 1000000): above it, only the whole pipeline and the tutorial's
  parse of the same files are measured, which is what the 2,000,000-message targets compare.
- BENCH_REPEATS (default 3): runs per measurement; the tables show medians (peak memory: the
  largest of the runs).
- BENCH_DICOM_FILES (default 1000): the synthetic DICOM corpus of the pixel-statistics measurement.
- BENCH_MAKE_RUN (default 1): measure the default `make run` graph (0 skips it).
- BENCH_NIGHTLY_SIZES (default 500000,2000000; empty skips): histories for the nightly section, of
  the tutorial's messages with as many distinct patients as messages (a hospital's history has
  nearly as many patients as visits): a full run, then a night with 0.1% new messages from new
  patients, side by side in the same folder.
- BENCH_PIPELINE_SIZES (default 2000000): corpus sizes of `python -m benchmarks pipeline`, which
  runs the whole pipeline from the CLI and the tutorial's parse of the same files, taking turns.
- BENCH_LISTENERS (default 1): measure the live intake (0 skips it; its settings: benchmarks/listeners.py).
- BENCH_SPARK_PYTHON: a Python with pyspark, for the Spark baseline when the project's venv has
  none (Java must be on the PATH).
- BENCH_QUICK=1: a smoke test in a few minutes: sizes 5000,20000, one repeat, 60 DICOM files,
  and `make run` on 5,000 messages and 30 DICOM files. Its numbers evaluate no target, and it
  writes benchmarks/output/results-quick.md, never benchmarks/results.md.

Each measurement runs in its own process (`benchmarks.measure`, `benchmarks/spark.py`, or the
Dagster CLI); the peak memory is that of the whole process tree, Ray's workers included. A run
that fails is recorded with its error and the plan goes on.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

from benchmarks import dicom, listeners, listeners_report, report
from benchmarks.memory import tree_rss
from benchmarks.tutorial import TUTORIAL_PATIENTS, corpus_name, write_corpus

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUTPUT = os.path.join(HERE, "output")
LOGS = os.path.join(OUTPUT, "logs")
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
# A smoke test never replaces the published results.
RESULTS_MD = os.path.join(OUTPUT, "results-quick.md") if QUICK else os.path.join(HERE, "results.md")
RESULTS_JSON = os.path.join(OUTPUT, "results-quick.json" if QUICK else "results.json")


def _setting(name: str, default: str, quick: str | None = None) -> str:
    return os.environ.get(name) or (quick if QUICK and quick is not None else default)


SIZES = sorted(int(s.replace("_", "")) for s in _setting("BENCH_SIZES", "50000,500000,1000000", "5000,20000").split(","))
COMPONENT_MAX_SIZE = int(_setting("BENCH_COMPONENT_MAX_SIZE", "1000000"))
REPEATS = int(_setting("BENCH_REPEATS", "3", "1"))
DICOM_FILES = int(_setting("BENCH_DICOM_FILES", "1000", "60"))
MEASURE_MAKE_RUN = _setting("BENCH_MAKE_RUN", "1") != "0"
NIGHTLY_SIZES = [int(s.replace("_", "")) for s in _setting("BENCH_NIGHTLY_SIZES", "500000,2000000", "5000").split(",") if s.strip()]
NIGHTLY_SHARE = 1000  # a night brings 1/1000 of the history
PIPELINE_SIZES = [int(s.replace("_", "")) for s in _setting("BENCH_PIPELINE_SIZES", "2000000", "20000").split(",") if s.strip()]
MEASURE_LISTENERS = _setting("BENCH_LISTENERS", "1") != "0"
# The default graph of `make run` (config.DEFAULT_SYNTHETIC_*), smaller in quick mode.
MAKE_RUN_SYNTHETIC = None if not QUICK else {"MEDICAL_ASSETS_SYNTHETIC_HL7_MESSAGES": "5000",
                                             "MEDICAL_ASSETS_SYNTHETIC_DICOM_FILES": "30"}

HL7_PLAN = ("tutorial_single_thread", "python_hl7", "hl7apy_sample", "parse_only_single_core",
            "ours_one_process", "ours_ray_job", "spark_local")
INPUT_PLAN = ("deidentify", "validation", "analytics")
# Slow baselines: the smallest corpus only.
SMALLEST_ONLY = ("python_hl7", "hl7apy_sample", "parse_only_single_core")
# Sizes above COMPONENT_MAX_SIZE: the whole pipeline and the tutorial's parse only.
EVERY_SIZE = ("tutorial_single_thread", "pipeline_cli")
SAMPLE_INTERVAL_S = 0.1  # memory samples; the process list is refreshed every TREE_REFRESH_S
TREE_REFRESH_S = 0.5


def main() -> None:
    if sys.argv[1:] == ["report"]:
        with open(RESULTS_JSON) as f:
            report.write(json.load(f), RESULTS_MD)
        return
    if sys.argv[1:] == ["listeners"]:
        return _listeners_only()
    if sys.argv[1:] == ["nightly"]:
        return _nightly_only()
    if sys.argv[1:] == ["pipeline"]:
        return _pipeline_only()
    os.makedirs(LOGS, exist_ok=True)
    results = {
        "machine": _machine(),
        "settings": {"sizes": SIZES, "component_max_size": COMPONENT_MAX_SIZE, "repeats": REPEATS,
                     "dicom_files": DICOM_FILES, "quick": QUICK, "make_run": MAKE_RUN_SYNTHETIC or "default"},
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "load_at_start": os.getloadavg(),
        "prepared": {}, "measurements": [], "not_measured": [],
    }
    bench_started = time.monotonic()
    spark_python, spark_reason = _spark_python()
    if spark_reason:
        results["not_measured"].append({"name": "spark_local", "reason": spark_reason})
    has_hl7apy = importlib.util.find_spec("hl7apy") is not None
    if not has_hl7apy:
        results["not_measured"].append({"name": "hl7apy_sample", "reason": "hl7apy is not installed (`make install` adds it with the test extra)"})
    print(f"benchmarks: sizes {', '.join(f'{s:,}' for s in SIZES)}; {REPEATS} run(s) each; "
          f"{psutil.cpu_count()} cores{'; QUICK mode' if QUICK else ''}", flush=True)

    for size in SIZES:
        corpus = _tutorial_corpus(size)
        unavailable = {"spark_local"} if spark_python is None else set()
        unavailable |= set() if has_hl7apy else {"hl7apy_sample"}
        for name in (n for n in HL7_PLAN if _planned(n, size) and n not in unavailable):
            if name == "spark_local":
                argv = [spark_python, os.path.join(HERE, "spark.py"), corpus]
            else:
                argv = [sys.executable, "-m", "benchmarks.measure", name, corpus]
            _record(results, "hl7", name, size, lambda output, argv=argv, name=name, size=size: _run_measurement(argv + [output], name, size))
        if _planned(INPUT_PLAN[0], size):
            inputs = os.path.join(OUTPUT, f"inputs-{size}")
            prepared = _run_process([sys.executable, "-m", "benchmarks.inputs", corpus, inputs],
                                    log=os.path.join(LOGS, f"inputs-{size}.log"))
            if prepared["returncode"] == 0:
                results["prepared"][str(size)] = {**prepared["json"], "peak_rss": prepared["peak_rss"]}
                for name in INPUT_PLAN:
                    argv = [sys.executable, "-m", "benchmarks.measure", name, inputs]
                    _record(results, "inputs", name, size, lambda output, argv=argv, name=name, size=size: _run_measurement(argv + [output], name, size))
            else:
                results["measurements"].append({"group": "inputs", "name": "prepare", "size": size, "runs": [],
                                                "error": prepared["error"]})
        _record(results, "pipeline", "pipeline_cli", size, lambda output, corpus=corpus, size=size: _pipeline_on_corpus(corpus, output, size))

    dicom_corpus = os.path.join(OUTPUT, f"dicom-{DICOM_FILES}")
    dicom.write_corpus(dicom_corpus, DICOM_FILES)
    results["dicom_corpus"] = {"files": DICOM_FILES, "bytes": sum(os.path.getsize(p) for p in dicom.corpus_files(dicom_corpus))}
    # In turns, loop then Ray, so that the machine's drift (it is shared) hits both alike.
    _record_in_turns(results, "dicom", DICOM_FILES, {
        name: lambda output, name=name: _run_measurement(
            [sys.executable, "-m", "benchmarks.measure", name, dicom_corpus, output], name, DICOM_FILES)
        for name in ("dicom_single_process", "dicom_ray_job")
    })

    if NIGHTLY_SIZES:
        _measure_nightly(results)
    if MEASURE_LISTENERS:
        _measure_listeners(results)
    if MEASURE_MAKE_RUN:
        _measure_make_run(results)
    results["finished"] = dt.datetime.now().isoformat(timespec="seconds")
    results["load_at_end"] = os.getloadavg()
    results["bench_s"] = time.monotonic() - bench_started
    _save(results)
    report.write(results, RESULTS_MD)
    print(f"\n{results['bench_s'] / 60:.1f} min; written to {os.path.relpath(RESULTS_MD, ROOT)}")


def _planned(name: str, size: int) -> bool:
    if name in SMALLEST_ONLY:
        return size == SIZES[0]
    return size <= COMPONENT_MAX_SIZE or name in EVERY_SIZE


def _record(results: dict, group: str, name: str, size: int, run_once) -> None:
    """`run_once(output_folder)` REPEATS times, each in a fresh temp folder; a failure ends the repeats."""
    _record_in_turns(results, group, size, {name: run_once})


def _record_in_turns(
    results: dict, group: str, size: int, runs_once: dict, repeats: int = REPEATS, groups: dict | None = None
) -> None:
    """`_record` of several measurements, taking turns: each one's first run, then each one's second...
    `groups`: the group of a measurement whose group is not `group`."""
    groups = groups or {}
    entries = {name: {"group": groups.get(name, group), "name": name, "size": size, "runs": [], "error": None}
               for name in runs_once}
    results["measurements"].extend(entries.values())
    stopped = set()
    for _ in range(repeats):
        for name in (name for name in runs_once if name not in stopped):
            run = _in_fresh_folder(name, runs_once[name])
            if run.get("error"):
                entries[name]["error"] = run["error"]
                if not run.get("keep"):
                    stopped.add(name)
                    continue
            entries[name]["runs"].append(run)
        _save(results)
    for entry in entries.values():
        print(_summary(entry), flush=True)


def _in_fresh_folder(name: str, run_once) -> dict:
    output = tempfile.mkdtemp(prefix=f"bench-{name}-", dir=os.environ.get("BENCH_TMPDIR"))
    try:
        return run_once(output)
    finally:
        shutil.rmtree(output, ignore_errors=True)


def _summary(entry: dict) -> str:
    runs = [r for r in entry["runs"] if "wall_s" in r]
    text = f"{entry['size']:>10,} {entry['name']:<24}"
    if runs:
        wall = statistics.median(r["wall_s"] for r in runs)
        text += (f" {wall:8.2f} s wall {max(r['peak_rss'] for r in runs) / 2**20:8,.0f} MiB RSS"
                 f" {max(r.get('peak_pss') or 0 for r in runs) / 2**20:6,.0f} MiB PSS")
        step = [r["step_s"] for r in runs if "step_s" in r]
        if step:
            text += f" step {statistics.median(step):.2f} s"
    if entry["error"]:
        text += f"  FAILED: {entry['error'].splitlines()[-1][:160]}"
    return text


def _run_measurement(argv: list[str], name: str, size: int) -> dict:
    log = os.path.join(LOGS, f"{name}-{size}-{int(time.time() * 1000)}.log")
    result = _run_process(argv, log=log)
    if result["returncode"] != 0:
        return {"error": result["error"]}
    os.remove(log)
    return {**result["json"], "wall_s": result["wall_s"], "peak_rss": result["peak_rss"], "peak_pss": result["peak_pss"]}


def _run_process(argv: list[str], env: dict | None = None, log: str | None = None) -> dict:
    """Run `argv` in a new session, sampling the memory of its whole process tree; stdout's last line is JSON."""
    log = log or os.path.join(LOGS, "last.log")
    with tempfile.TemporaryFile() as stdout, open(log, "wb") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=stdout, stderr=stderr, start_new_session=True)
        peak = _watch(process)
        wall_s = time.perf_counter() - started
        stdout.seek(0)
        text = stdout.read().decode(errors="replace")
    result = {"returncode": process.returncode, "wall_s": wall_s, "peak_rss": peak["peak_rss"],
              "peak_pss": peak["peak_pss"], "log": log}
    lines = [line for line in text.strip().splitlines() if line.startswith("{")]
    if process.returncode == 0 and lines:
        result["json"] = json.loads(lines[-1])
    else:
        with open(log, errors="replace") as f:
            tail = f.read()[-3000:]
        result["error"] = f"exit code {process.returncode}; log {log}\n{tail}"
        result["returncode"] = process.returncode or 1
    return result


def _watch(process: subprocess.Popen) -> dict:
    """Peak memory of the process and its descendants until it exits: `peak_rss`, the sum of their
    resident sizes (shared pages counted in each process, as `ps` shows them), sampled every
    SAMPLE_INTERVAL_S; `peak_pss`, the sum of their proportional sizes (shared pages divided
    among the processes sharing them: what the tree costs the machine), sampled every
    TREE_REFRESH_S, since the kernel walks each process's page tables for it; `peak_at`, when
    the RSS peak was seen (epoch seconds). The process list is refreshed every TREE_REFRESH_S
    too (listing children scans every process of the machine). If the bench is interrupted, the
    measured process and its descendants are ended, since they run in a session of their own
    where Ctrl-C does not reach them."""
    root, tree, refreshed = psutil.Process(process.pid), [], 0.0
    peak = {"peak_rss": 0, "peak_pss": 0, "peak_at": time.time()}
    try:
        while process.poll() is None:
            now = time.monotonic()
            if now - refreshed >= TREE_REFRESH_S:
                try:
                    tree = [root] + root.children(recursive=True)
                except psutil.Error:
                    pass
                refreshed = now
                peak["peak_pss"] = max(peak["peak_pss"], sum(_pss(member.pid) for member in tree))
            total = tree_rss(tree)
            if total > peak["peak_rss"]:
                peak["peak_rss"], peak["peak_at"] = total, time.time()
            time.sleep(SAMPLE_INTERVAL_S)
    except BaseException:
        _end(process, tree)
        raise
    return peak


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _end(process: subprocess.Popen, tree: list[psutil.Process]) -> None:
    try:
        tree = [psutil.Process(process.pid)] + psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        pass
    for member in tree:
        try:
            member.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(tree, timeout=10)
    for member in alive:
        try:
            member.kill()
        except psutil.Error:
            pass


# The whole pipeline from the CLI ------------------------------------------------------------------

_STEP = re.compile(r' - (STEP_SUCCESS|STEP_FAILURE) - .*?step "([^"]+)"(?: in ([0-9][0-9.hms]*?)\.?(?:\s|$))?', re.M)
_EVENT = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}) - dagster - \w+ - \S+ - \S+ - \d+ - "
                    r"(?:(\S+) - )?(RUN_START|RUN_SUCCESS|RUN_FAILURE|STEP_START|STEP_FAILURE) - ")
_EXCEPTION = re.compile(r"^(?:[\w.]+\.)?\w*(?:Error|Exception|Failure): ")
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m(?!s))?(?:([0-9.]+)s)?(?:([0-9.]+)ms)?$")


def _pipeline_on_corpus(corpus: str, output: str, size: int) -> dict:
    """`dagster asset materialize --select '*'` on a cold start (new Dagster home, data folder and
    Ray) reading the tutorial corpus, with an empty DICOM landing folder."""
    empty_dicom = os.path.join(output, "dicom-landing")
    os.makedirs(empty_dicom)
    run = _pipeline_run(output, os.path.join(output, "data"), f"pipeline_cli-{size}",
                        {"MEDICAL_ASSETS_HL7_SOURCE": corpus, "MEDICAL_ASSETS_DICOM_SOURCE": empty_dicom})
    return run


def _pipeline_run(workdir: str, data_dir: str, label: str, settings: dict, home: str | None = None) -> dict:
    """One CLI run; the wall time, the peak memory of its process tree, Dagster's step times, rows out."""
    if home is None:
        home = os.path.join(workdir, "dagster_home")
    if not os.path.exists(os.path.join(home, "dagster.yaml")):
        os.makedirs(home, exist_ok=True)
        shutil.copy(os.path.join(ROOT, "dagster.yaml"), home)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDICAL_ASSETS_") and k != "RAY_ADDRESS"}
    env |= {"DAGSTER_HOME": home, "MEDICAL_ASSETS_DATA_DIR": data_dir, **settings}
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    log = os.path.join(LOGS, f"{label}-{int(time.time() * 1000)}.log")
    with open(log, "wb") as out:
        started = time.perf_counter()
        process = subprocess.Popen([dagster, "asset", "materialize", "-m", "medical_assets.definitions", "--select", "*"],
                                   cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        peak = _watch(process)
        wall_s = time.perf_counter() - started
    with open(log, errors="replace") as f:
        text = f.read()
    steps, failed = {}, []
    for status, step, duration in _STEP.findall(text):
        if status == "STEP_SUCCESS" and duration:
            steps[step] = _seconds(duration)
        elif status == "STEP_FAILURE":
            failed.append(step)
    events, starts = {}, []  # run events: first time seen; step starts in order: (time, step)
    for line in text.splitlines():
        match = _EVENT.match(line)
        if match:
            moment = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S %z").timestamp()
            if match.group(3) == "STEP_START":
                starts.append((moment, match.group(2)))
            elif match.group(3) == "STEP_FAILURE":  # no duration in its message: from the log's times
                started_at = next((m for m, step in reversed(starts) if step == match.group(2)), moment)
                steps.setdefault(match.group(2), moment - started_at)
            else:
                events.setdefault(match.group(3), moment)
    end = events.get("RUN_SUCCESS") or events.get("RUN_FAILURE")
    run = {"wall_s": wall_s, **peak, "steps": steps, "ok": process.returncode == 0, "log": log,
           "run_s": end - events["RUN_START"] if end and "RUN_START" in events else None,
           # The step running when the RSS peak was seen (log times have a 1 s resolution).
           "peak_step": next((step for moment, step in reversed(starts) if moment <= peak["peak_at"]), None)}
    run["messages"] = _rows(os.path.join(data_dir, "phi", "hl7_messages"))
    run["images"] = _rows(os.path.join(data_dir, "phi", "dicom_images"))
    if not run["ok"]:
        reason = [line for line in text.splitlines() if _EXCEPTION.match(line) and not line.startswith("Error: ")]
        run["failed_steps"] = failed
        run["error"] = f"failed at {', '.join(failed) or 'start'}: {reason[-1].strip() if reason else 'see ' + log}"
        run["keep"] = True  # a failed run is still a measurement of how far the pipeline got
    else:
        os.remove(log)
    return run


def _seconds(duration: str) -> float:
    """Dagster's `format_duration`: 533ms, 2.1s, 4m52s, 1h4m."""
    hours, minutes, seconds, milliseconds = _DURATION.match(duration).groups()
    return (int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0) + float(milliseconds or 0) / 1000)


def _rows(folder: str) -> int | None:
    if not os.path.isdir(folder):
        return None
    import pyarrow.dataset as ds

    return ds.dataset(folder, format="parquet").count_rows()


def _measure_make_run(results: dict) -> None:
    """The default graph as `make run` runs it: a first run (empty data folder: the synthetic corpora
    are generated), the same command again (incremental: nothing new to parse), and a run where
    the corpora exist but no output does."""
    workdir = tempfile.mkdtemp(prefix="bench-make-run-", dir=os.environ.get("BENCH_TMPDIR"))
    settings = MAKE_RUN_SYNTHETIC or {}
    try:
        for index in range(REPEATS):
            first_dir = os.path.join(workdir, f"first-{index}")
            home = os.path.join(first_dir, "dagster_home")
            data = os.path.join(first_dir, "data")
            _append_run(results, "first_run", lambda first_dir=first_dir, data=data, home=home: _pipeline_run(first_dir, data, "make_run-first", settings, home))
            _append_run(results, "second_run", lambda first_dir=first_dir, data=data, home=home: _pipeline_run(first_dir, data, "make_run-second", settings, home))
            present_dir = os.path.join(workdir, f"present-{index}")
            os.makedirs(os.path.join(present_dir, "data"))
            if os.path.isdir(os.path.join(data, "landing")):
                shutil.copytree(os.path.join(data, "landing"), os.path.join(present_dir, "data", "landing"), copy_function=os.link)
            _append_run(results, "corpus_present", lambda present_dir=present_dir: _pipeline_run(present_dir, os.path.join(present_dir, "data"),
                                                                         "make_run-present", settings))
            shutil.rmtree(first_dir, ignore_errors=True)
            shutil.rmtree(present_dir, ignore_errors=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _measure_nightly(results: dict) -> None:
    """Per history size: the whole pipeline on the history (a first run), then the same folder with
    a night's new files (0.1% more messages, new patients), REPEATS times each in a new folder."""
    for size in NIGHTLY_SIZES:
        corpus = _tutorial_corpus(size, patients=None)
        for _ in range(REPEATS):
            _history_and_night(results, corpus, size)


def _nightly_only() -> None:
    """`python -m benchmarks nightly`: the nightly section alone, written apart from the full plan's results."""
    _section_alone("nightly", NIGHTLY_SIZES, _measure_nightly, report.render_nightly)


def _pipeline_only() -> None:
    """`python -m benchmarks pipeline`: the whole pipeline from the CLI and the tutorial's parse of
    the same files (the tutorial's corpus), taking turns, REPEATS times each, at BENCH_PIPELINE_SIZES;
    written apart from the full plan's results."""
    _section_alone("pipeline", PIPELINE_SIZES, _measure_pipeline_and_tutorial, report.render_pipeline)


def _measure_pipeline_and_tutorial(results: dict) -> None:
    for size in PIPELINE_SIZES:
        corpus = _tutorial_corpus(size)
        tutorial_argv = [sys.executable, "-m", "benchmarks.measure", "tutorial_single_thread", corpus]
        _record_in_turns(results, "pipeline", size, {
            "tutorial_single_thread": lambda output, argv=tutorial_argv, size=size: _run_measurement(
                argv + [output], "tutorial_single_thread", size),
            "pipeline_cli": lambda output, corpus=corpus, size=size: _pipeline_on_corpus(corpus, output, size),
        }, groups={"tutorial_single_thread": "hl7"})


def _section_alone(name: str, sizes: list[int], measure, render) -> None:
    """One section's measurements, into benchmarks/output/<name>-results.json and .md."""
    global RESULTS_JSON
    RESULTS_JSON = os.path.join(OUTPUT, f"{name}-results.json")
    os.makedirs(LOGS, exist_ok=True)
    results = {"machine": _machine(), "settings": {"sizes": sizes, "repeats": REPEATS, "quick": QUICK},
               "started": dt.datetime.now().isoformat(timespec="seconds"), "load_at_start": os.getloadavg(),
               "measurements": [], "not_measured": []}
    measure(results)
    results |= {"finished": dt.datetime.now().isoformat(timespec="seconds"), "load_at_end": os.getloadavg()}
    _save(results)
    path = os.path.join(OUTPUT, f"{name}-results.md")
    with open(path, "w") as out:
        out.write(render(results))
    print(f"written to {os.path.relpath(path, ROOT)}")


def _history_and_night(results: dict, corpus: str, size: int) -> None:
    workdir = tempfile.mkdtemp(prefix=f"bench-nightly-{size}-", dir=os.environ.get("BENCH_TMPDIR"))
    try:
        landing, dicom_landing = os.path.join(workdir, "landing"), os.path.join(workdir, "dicom-landing")
        shutil.copytree(corpus, landing, copy_function=os.link, ignore=shutil.ignore_patterns("_complete"))
        os.makedirs(dicom_landing)
        settings = {"MEDICAL_ASSETS_HL7_SOURCE": landing, "MEDICAL_ASSETS_DICOM_SOURCE": dicom_landing}
        data = os.path.join(workdir, "data")

        def run(label: str) -> dict:
            return _pipeline_run(workdir, data, f"nightly-{label}-{size}", settings)

        _append_run(results, "full_run", lambda: run("full"), group="nightly", size=size)
        night = max(1, size // NIGHTLY_SHARE)
        write_corpus(os.path.join(landing, "night"), size + night, first=size, patients=None)
        _append_run(results, "nightly_run", lambda: run("night"), group="nightly", size=size)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _append_run(results: dict, name: str, run_once, group: str = "make_run", size: int | None = None) -> None:
    size = size if size is not None else (50_000 if not QUICK else 5_000)
    entry = next((m for m in results["measurements"] if m["group"] == group and m["name"] == name and m["size"] == size), None)
    if entry is None:
        entry = {"group": group, "name": name, "size": size, "runs": [], "error": None}
        results["measurements"].append(entry)
    run = run_once()
    if run.get("error"):
        entry["error"] = run["error"]
    entry["runs"].append(run)
    _save(results)
    print(_summary({**entry, "runs": [run]}), flush=True)


def _measure_listeners(results: dict) -> None:
    """The live intake (benchmarks/listeners.py), each measurement in its own process like the others."""
    run = results["listeners_run"] = {"started": dt.datetime.now().isoformat(timespec="seconds"), "load_at_start": os.getloadavg()}
    for name, size, argv, repeats in listeners.plan():
        measure = {name: lambda output, argv=argv, name=name, size=size: _run_measurement(argv + [output], name, size)}
        _record_in_turns(results, "listeners", size, measure, repeats or REPEATS)
    run |= {"finished": dt.datetime.now().isoformat(timespec="seconds"), "load_at_end": os.getloadavg()}


def _listeners_only() -> None:
    """`python -m benchmarks listeners`: the live intake's figures replaced in the JSON and markdown results, the rest kept."""
    os.makedirs(LOGS, exist_ok=True)
    full_run = os.path.exists(RESULTS_JSON)
    results = {"machine": _machine(), "settings": {"sizes": [], "repeats": REPEATS, "quick": QUICK}, "measurements": []}
    if full_run:
        with open(RESULTS_JSON) as f:
            results = json.load(f)
    results["measurements"] = [m for m in results["measurements"] if m["group"] != "listeners"]
    _measure_listeners(results)
    _save(results)
    if not full_run:  # kept apart: `python -m benchmarks report` would render it as the whole of the results
        os.replace(RESULTS_JSON, os.path.join(OUTPUT, "listeners-" + os.path.basename(RESULTS_JSON)))
    listeners_report.write_section(results, RESULTS_MD)


# Corpora and environment ----------------------------------------------------------------------------

def _tutorial_corpus(size: int, patients: int | None = TUTORIAL_PATIENTS) -> str:
    corpus = os.path.join(OUTPUT, corpus_name(size, patients))
    marker = os.path.join(corpus, "_complete")
    if not os.path.exists(marker):
        shutil.rmtree(corpus, ignore_errors=True)
        started = time.perf_counter()
        write_corpus(corpus, size, patients=patients)
        open(marker, "w").close()
        print(f"{size:>10,} corpus written in {time.perf_counter() - started:.1f} s", flush=True)
    return corpus


def _spark_python() -> tuple[str | None, str | None]:
    """The interpreter for the Spark baseline, or why Spark is not measured."""
    if shutil.which("java") is None:
        return None, "no Java on this machine"
    candidates = [os.environ["BENCH_SPARK_PYTHON"]] if os.environ.get("BENCH_SPARK_PYTHON") else [sys.executable]
    for python in candidates:
        probe = subprocess.run([python, "-c", "import pyspark"], capture_output=True)
        if probe.returncode == 0:
            return python, None
    return None, ("Java is present but pyspark is not installed (it is large, so not a project dependency): "
                  "set BENCH_SPARK_PYTHON to a Python that has it")


def _machine() -> dict:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cores": psutil.cpu_count(logical=True), "physical_cores": psutil.cpu_count(logical=False),
            "cpu": model, "memory_bytes": psutil.virtual_memory().total,
            "python": f"{platform.python_implementation()} {platform.python_version()}", "platform": platform.platform()}


def _save(results: dict) -> None:
    with open(RESULTS_JSON + ".tmp", "w") as f:
        json.dump(results, f, indent=1, default=str)
    os.replace(RESULTS_JSON + ".tmp", RESULTS_JSON)


if __name__ == "__main__":
    main()
