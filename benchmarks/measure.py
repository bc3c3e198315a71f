"""One measurement in this fresh process: `python -m benchmarks.measure NAME SOURCE OUTPUT` prints JSON.

SOURCE is a corpus folder (HL7 or DICOM files) or, for the measurements of `INPUT_MEASUREMENTS`,
a folder of prepared tables (`benchmarks.inputs`). Each measurement returns at least `messages`
(rows it produced or consumed); `step_s` when the measured step is only part of the process's
work (the rest being Ray's start, loading prepared inputs, ...). The parent (`benchmarks.__main__`)
adds the wall time of the whole process and the peak memory of its process tree.
"""

import functools
import glob
import json
import os
import sys
import time

import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.dicom import dicom_ray_job, dicom_single_process

# Slow pure-Python parsers are timed on the corpus's first messages only.
HL7APY_SAMPLE = int(os.environ.get("BENCH_HL7APY_SAMPLE", "500"))  # 40 to 100 messages/s on 2 cores
PYTHON_HL7_SAMPLE = 2_000
# python-hl7's full run and the one-core parse comparison read at most the first 100 files
# (50,000 messages), whatever the corpus: the rates hold, the time stays bounded.
BASELINE_MAX_FILES = 100


def tutorial_single_thread(files, output):
    """The tutorial's Stage 2 loop over every file, then pandas to Parquet."""
    from benchmarks.tutorial import run_single_thread

    return {"messages": run_single_thread(files, os.path.join(output, "tutorial.parquet"))}


def python_hl7(files, output):
    """python-hl7 as a parser: it needs CR-separated segments, one message per call (the first
    BASELINE_MAX_FILES files)."""
    import hl7

    files = files[:BASELINE_MAX_FILES]
    columns = {"message_control_id": [], "message_type": [], "patient_id": [], "family_name": [], "observations": []}
    for path in files:
        with open(path, newline="") as f:
            for line in f.read().split("\n"):
                if not line.strip():
                    continue
                message = hl7.parse(line)
                pid = message.segment("PID")
                columns["message_control_id"].append(str(message.segment("MSH")[10]))
                columns["message_type"].append(str(message.segment("MSH")[9]))
                columns["patient_id"].append(str(pid[3]))
                columns["family_name"].append(str(pid[5][0][0]) if len(pid) > 5 else None)
                columns["observations"].append(sum(1 for s in message if str(s[0]) == "OBX"))
    pq.write_table(pa.table(columns), os.path.join(output, "python_hl7.parquet"))
    return {"messages": len(columns["message_control_id"])}


def hl7apy_sample(files, output):
    """hl7apy (pure Python, builds the standard's full tree) on the corpus's first HL7APY_SAMPLE
    messages, the same fields as python_hl7's, written to Parquet."""
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_message

    columns = {"message_control_id": [], "message_type": [], "patient_id": [], "family_name": [], "observations": []}
    sample = _first_messages(files, HL7APY_SAMPLE)
    started = time.perf_counter()
    for line in sample:
        message = parse_message(line, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=False)
        pid = message.pid
        columns["message_control_id"].append(message.msh.msh_10.value)
        columns["message_type"].append(message.msh.msh_9.value)
        columns["patient_id"].append(pid.pid_3.value)
        columns["family_name"].append(pid.pid_5.pid_5_1.value)
        columns["observations"].append(sum(1 for segment in message.children if segment.name == "OBX"))
    pq.write_table(pa.table(columns), os.path.join(output, "hl7apy.parquet"))
    return {"messages": len(sample), "step_s": time.perf_counter() - started}


def ours_one_process(files, output):
    """Our parser without Ray: the same call the Ray read tasks make, on every file at once, all
    five tables written."""
    from medical_assets.hl7 import parse_hl7_files

    parsed = [p.tables() for p in parse_hl7_files(_read_all(files))]
    for name in parsed[0]:
        pq.write_table(pa.concat_tables([p[name] for p in parsed]), os.path.join(output, f"{name}.parquet"))
    return {"messages": sum(p["hl7_messages"].num_rows for p in parsed)}


def _read_all(files):
    """Every file's (bytes, path), as a read task gathers its group before parsing it."""
    contents = []
    for path in files:
        with open(path, "rb") as f:
            contents.append((f.read(), path))
    return contents


def ours_ray_job(files, output):
    """Our parse job on a local Ray (datasource, datasink, atomic publication), run twice on one Ray.

    `job_s` is the first run (Ray Data's one-off start in a fresh session included), `warm_job_s`
    the second (the engine's steady throughput); neither includes Ray's start and stop, which
    the process's wall time does.
    """
    from medical_assets.config import IN_PROCESS_JOBS_VAR
    from medical_assets.engine import jobs
    from medical_assets.engine.runtime import RayRuntime
    from medical_assets.hl7.tables import TABLES
    from medical_assets.sources.folder import LandingFile
    from medical_assets.storage import TablePublication, resolve_location

    # The Ray job is what is measured, however small the input (BENCH_QUICK's would run in this process).
    os.environ[IN_PROCESS_JOBS_VAR] = "0"
    runtime = RayRuntime()
    runtime.ensure_started()
    try:
        landing = [LandingFile(p, os.path.basename(p), os.path.getsize(p), None) for p in files]
        timings = []
        for run in range(2):
            zone = resolve_location(os.path.join(output, f"run-{run}"))
            started = time.perf_counter()
            publication = TablePublication(zone)
            counts = jobs.parse_hl7_files(landing, zone.filesystem, publication, lambda counts, elapsed: None)
            publication.commit(TABLES)
            timings.append(time.perf_counter() - started)
    finally:
        runtime.stop()
    return {"messages": counts.get("hl7_messages", 0), "job_s": timings[0], "warm_job_s": timings[1]}


def parse_only_single_core(files, output, repeats=3):
    """Parsing alone on one core, messages/s: the tutorial's parser, python-hl7 (on a sample), ours.

    Each reads the files itself, as the tutorial's parser does; nothing is written. Each rate is the
    best of `repeats` passes, taken in turns. python-hl7 parses the first messages only: its rate is
    that sample's (hl7apy, far slower still, has its own measurement, `hl7apy_sample`). Ours is
    `parse_hl7_files` on every file, the call each Ray read task makes on its group of files (the
    fast path on this corpus), and, for reference, the general path alone.
    """
    import hl7

    from benchmarks.tutorial import parse_file_single_thread
    from medical_assets.hl7 import parse_hl7_files, reader

    files = files[:BASELINE_MAX_FILES]
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    pa.set_cpu_count(1)

    def ours():
        return sum(parsed.messages.num_rows for parsed in parse_hl7_files(_read_all(files)))

    def ours_general_path():
        messages = 0
        for path in files:
            with open(path, "rb") as f:
                messages += reader.parse_general(f.read(), path).messages.num_rows
        return messages

    def sample_pass(parse, size):
        sample = _first_messages(files, size)
        for line in sample:
            parse(line)
        return len(sample)

    passes = {
        "tutorial_naive": lambda: sum(len(parse_file_single_thread(path)) for path in files),
        "python_hl7": lambda: sample_pass(hl7.parse, PYTHON_HL7_SAMPLE),
        "ours": ours,
        "ours_general_path": ours_general_path,
    }
    # Passes take turns, so that a burst of load from elsewhere on the machine hits every parser alike.
    best, messages = dict.fromkeys(passes, float("inf")), {}
    for _ in range(repeats):
        for name, run in passes.items():
            started = time.perf_counter()
            messages[name] = run()
            best[name] = min(best[name], time.perf_counter() - started)
    rates = {name: messages[name] / best[name] for name in passes}
    return {"messages": messages["ours"], "rates": rates, "parsed": messages}


def deidentify(inputs, output):
    """`deidentify_hl7_tables` (Safe Harbor) over the prepared PHI tables, in one process, with a random key."""
    from medical_assets.privacy.hl7_deid import deidentify_hl7_tables

    phi, load_s = _timed(lambda: _read_zone(inputs, "phi"))
    pseudonymizer = _random_pseudonymizer()
    inputs_rss = _rss()
    deid, step_s = _timed(lambda: deidentify_hl7_tables(phi, pseudonymizer))
    return {
        "messages": phi["hl7_messages"].num_rows, "rows": sum(t.num_rows for t in phi.values()),
        "rows_out": sum(t.num_rows for t in deid.values()), "load_s": load_s, "step_s": step_s, "inputs_rss": inputs_rss,
    }


def validation(inputs, output):
    """`validate_messages` over the prepared PHI tables, in one process; the tokens with a random key.

    `scores_only_s` is what the pipeline runs inside each de-identification task instead
    (`with_validation`: the same scores, no tokens), timed afterwards in the same process.
    """
    from medical_assets.analytics.validation import validate_messages, with_validation
    from medical_assets.privacy.hl7_deid import MESSAGE_DOMAIN, SOURCE_FILE_DOMAIN

    phi, load_s = _timed(lambda: _read_zone(inputs, "phi"))
    deid_messages = pq.read_table(os.path.join(inputs, "deid", "hl7_messages.parquet"))
    pseudonymizer = _random_pseudonymizer()
    inputs_rss = _rss()
    table, step_s = _timed(lambda: validate_messages(
        phi,
        functools.partial(pseudonymizer.token, MESSAGE_DOMAIN),
        functools.partial(pseudonymizer.token, SOURCE_FILE_DOMAIN),
    ))
    _, scores_only_s = _timed(lambda: with_validation(deid_messages, phi))
    return {
        "messages": table.num_rows, "rows": sum(t.num_rows for t in phi.values()),
        "load_s": load_s, "step_s": step_s, "scores_only_s": scores_only_s, "inputs_rss": inputs_rss,
    }


def analytics(inputs, output):
    """`publish_all` (every analytics table, small cells suppressed) over the columns of the prepared
    de-identified and PHI tables the pipeline's analytics job reads, in one process."""
    from medical_assets.analytics.aggregates import publish_all
    from medical_assets.analytics.suppression import DEFAULT_THRESHOLD
    from medical_assets.engine.analytics_jobs import ANALYTICS_DEID_INPUTS, ANALYTICS_PHI_INPUTS
    from medical_assets.privacy.hl7_deid import SOURCE_FILE_DOMAIN
    from medical_assets.privacy.keys import parse_key_ring
    from medical_assets.privacy.pseudonyms import Pseudonymizer

    def load():
        deid = {
            name: pq.read_table(path, columns=columns)
            for name, columns in ANALYTICS_DEID_INPUTS.items()
            if os.path.exists(path := os.path.join(inputs, "deid", f"{name}.parquet"))
        }
        phi = {
            name: pq.read_table(os.path.join(inputs, "phi", f"{name}.parquet"), columns=columns)
            for name, columns in ANALYTICS_PHI_INPUTS.items()
        }
        return deid, phi

    (deid, phi), load_s = _timed(load)
    with open(os.path.join(inputs, "key.txt")) as f:  # the key that made the de-identified tokens
        key = parse_key_ring(f.read().strip()).current
    source_file_token = functools.partial(Pseudonymizer(key).token, SOURCE_FILE_DOMAIN)
    inputs_rss = _rss()
    published, step_s = _timed(lambda: publish_all(deid, phi, source_file_token, DEFAULT_THRESHOLD))
    return {
        "messages": deid["hl7_messages"].num_rows, "rows": sum(t.num_rows for t in deid.values()),
        "rows_out": sum(t.num_rows for t in published.values()), "load_s": load_s, "step_s": step_s,
        "inputs_rss": inputs_rss,
    }


def _first_messages(files, count):
    """The corpus's first `count` messages, one per line (segments separated by CR)."""
    sample = []
    for path in files:
        with open(path, newline="") as f:
            for line in f.read().split("\n"):
                if len(sample) == count:
                    return sample
                if line.strip():
                    sample.append(line)
    return sample


def _read_zone(inputs, zone):
    folder = os.path.join(inputs, zone)
    return {name[: -len(".parquet")]: pq.read_table(os.path.join(folder, name)) for name in sorted(os.listdir(folder))}


def _random_pseudonymizer():
    from medical_assets.privacy.keys import parse_key_ring
    from medical_assets.privacy.pseudonyms import Pseudonymizer

    return Pseudonymizer(parse_key_ring(os.urandom(32).hex()).current)


def _timed(work):
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def _rss():
    return psutil.Process().memory_info().rss


HL7_MEASUREMENTS = {
    f.__name__: f
    for f in (tutorial_single_thread, python_hl7, hl7apy_sample, ours_one_process, ours_ray_job, parse_only_single_core)
}
INPUT_MEASUREMENTS = {f.__name__: f for f in (deidentify, validation, analytics)}
DICOM_MEASUREMENTS = {f.__name__: f for f in (dicom_single_process, dicom_ray_job)}


def main(name: str, source: str, output: str) -> None:
    os.makedirs(output, exist_ok=True)
    if name in INPUT_MEASUREMENTS:
        measurement, argument = INPUT_MEASUREMENTS[name], source
    elif name in DICOM_MEASUREMENTS:
        measurement, argument = DICOM_MEASUREMENTS[name], sorted(glob.glob(os.path.join(source, "*.dcm")))
    else:
        measurement, argument = HL7_MEASUREMENTS[name], sorted(glob.glob(os.path.join(source, "*.hl7")))
    result, seconds = _timed(lambda: measurement(argument, output))
    result["seconds"] = seconds
    print(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:4])
