"""One measurement in this fresh process: `python -m benchmarks.measure NAME CORPUS OUTPUT` prints JSON."""

import glob
import json
import os
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.dicom import dicom_ray_job, dicom_single_process


def tutorial_single_thread(files, output):
    from benchmarks.tutorial import run_single_thread

    return {"messages": run_single_thread(files, os.path.join(output, "tutorial.parquet"))}


def python_hl7(files, output):
    """python-hl7 as a parser: it needs CR-separated segments, one message per call."""
    import hl7

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


def ours_one_process(files, output):
    """Our parser without Ray: the same code the Ray workers run, in a plain loop."""
    from medical_assets.hl7 import parse_hl7_file

    parsed = []
    for path in files:
        with open(path, "rb") as f:
            parsed.append(parse_hl7_file(f.read(), path))
    messages = pa.concat_tables([p.messages for p in parsed])
    pq.write_table(messages, os.path.join(output, "messages.parquet"))
    pq.write_table(pa.concat_tables([p.lab_results for p in parsed]), os.path.join(output, "labs.parquet"))
    pq.write_table(pa.concat_tables([p.errors for p in parsed]), os.path.join(output, "errors.parquet"))
    return {"messages": messages.num_rows}


def ours_ray_job(files, output):
    """Our parse job on a local Ray, Ray start and stop included; `job_s` is the job alone."""
    from medical_assets.engine import jobs
    from medical_assets.engine.runtime import RayRuntime
    from medical_assets.hl7.tables import TABLES
    from medical_assets.landing import LandingFile
    from medical_assets.storage import TablePublication, resolve_location

    runtime = RayRuntime()
    runtime.ensure_started()
    try:
        zone = resolve_location(output)
        landing = [LandingFile(p, os.path.basename(p), os.path.getsize(p), None) for p in files]
        started = time.perf_counter()
        publication = TablePublication(zone)
        counts = jobs.parse_hl7_files(landing, zone.filesystem, publication, lambda counts, elapsed: None)
        publication.commit(TABLES)
        job_s = time.perf_counter() - started
    finally:
        runtime.stop()
    return {"messages": counts.get("hl7_messages", 0), "job_s": job_s}


def pipeline_cli(files, output):
    """The whole Dagster graph from the CLI, as `make run` does, reading this corpus."""
    corpus = os.path.dirname(files[0])
    home = os.path.join(output, "dagster_home")
    os.makedirs(home)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "dagster.yaml")) as src, open(os.path.join(home, "dagster.yaml"), "w") as dst:
        dst.write(src.read())
    env = {**os.environ, "DAGSTER_HOME": home, "MEDICAL_ASSETS_DATA_DIR": os.path.join(output, "data"),
           "MEDICAL_ASSETS_HL7_SOURCE": corpus}
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    subprocess.run([dagster, "asset", "materialize", "-m", "medical_assets.definitions", "--select", "*"],
                   cwd=root, env=env, check=True, capture_output=True)
    return {"messages": pq.read_table(os.path.join(output, "data", "phi", "hl7_messages")).num_rows}


def parse_only_single_core(files, output, python_hl7_sample=2_000, repeats=3):
    """Parsing alone on one core, messages/s: the tutorial's parser, python-hl7 (on a sample), ours.

    Each reads the files itself, as the tutorial's parser does; nothing is written. Each rate is the
    best of `repeats` passes. python-hl7 parses the first `python_hl7_sample` messages only: its rate
    is that sample's. Ours is `parse_hl7_file` (the fast path on this corpus) and, for reference,
    its general path alone.
    """
    import hl7
    from benchmarks.tutorial import parse_file_single_thread
    from medical_assets.hl7 import parse_hl7_file, reader

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    pa.set_cpu_count(1)

    def ours(parse):
        messages = 0
        for path in files:
            with open(path, "rb") as f:
                messages += parse(f.read(), path).messages.num_rows
        return messages

    def python_hl7_sample_pass():
        parsed = 0
        for path in files:
            with open(path, newline="") as f:
                for line in f.read().split("\n"):
                    if parsed == python_hl7_sample:
                        return parsed
                    if line.strip():
                        hl7.parse(line)
                        parsed += 1
        return parsed

    passes = {
        "tutorial_naive": lambda: sum(len(parse_file_single_thread(path)) for path in files),
        "python_hl7": python_hl7_sample_pass,
        "ours": lambda: ours(parse_hl7_file),
        "ours_general_path": lambda: ours(reader.parse_general),
    }
    rates, messages = {}, {}
    for name, run in passes.items():
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            messages[name] = run()
            best = min(best, time.perf_counter() - started)
        rates[name] = messages[name] / best
    return {"messages": messages["ours"], "rates": rates, "parsed": messages}


MEASUREMENTS = {
    f.__name__: f
    for f in (tutorial_single_thread, python_hl7, ours_one_process, ours_ray_job, pipeline_cli, parse_only_single_core)
}
DICOM_MEASUREMENTS = {f.__name__: f for f in (dicom_single_process, dicom_ray_job)}


if __name__ == "__main__":
    name, corpus, output = sys.argv[1:4]
    measurement = MEASUREMENTS.get(name) or DICOM_MEASUREMENTS[name]
    files = sorted(glob.glob(os.path.join(corpus, "*.dcm" if name in DICOM_MEASUREMENTS else "*.hl7")))
    os.makedirs(output, exist_ok=True)
    started = time.perf_counter()
    result = measurement(files, output)
    result["seconds"] = time.perf_counter() - started
    print(json.dumps(result))
