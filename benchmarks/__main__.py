"""Run every measurement several times, each in a fresh process, and write benchmarks/results.md."""

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

from benchmarks.tutorial import write_corpus
from benchmarks import dicom
from benchmarks.measure import DICOM_MEASUREMENTS, MEASUREMENTS

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = [int(s) for s in os.environ.get("BENCH_SIZES", "50000,500000").split(",")]
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
DICOM_FILES = int(os.environ.get("BENCH_DICOM_FILES", "1000"))
# python-hl7 is ~10x slower than the rest: measure it on the smallest corpus only; parsing alone too.
SMALL_ONLY = {"python_hl7", "parse_only_single_core"}


def measure(name: str, corpus: str) -> dict:
    """Run one measurement in a fresh process, sampling the memory of its whole process tree (Ray included)."""
    output = tempfile.mkdtemp(prefix=f"bench-{name}-")
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.measure", name, corpus, output],
            cwd=os.path.dirname(HERE), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        root, peak = psutil.Process(process.pid), 0
        while process.poll() is None:
            try:
                tree = [root] + root.children(recursive=True)
                peak = max(peak, sum(_rss(p) for p in tree))
            except psutil.NoSuchProcess:
                pass
            time.sleep(0.05)
        stdout = process.stdout.read().decode()
        if process.returncode != 0:
            raise RuntimeError(f"{name} failed with exit code {process.returncode}")
        return {**json.loads(stdout.strip().splitlines()[-1]), "peak_rss": peak}
    finally:
        shutil.rmtree(output, ignore_errors=True)


def _rss(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0


def main() -> None:
    rows, parse_only = [], []
    for size in SIZES:
        corpus = os.path.join(HERE, "output", f"tutorial-{size}")
        if not os.path.isdir(corpus):
            write_corpus(corpus, size)
        for name in MEASUREMENTS:
            if name in SMALL_ONLY and size != min(SIZES):
                continue
            runs = [measure(name, corpus) for _ in range(REPEATS)]
            if "rates" in runs[0]:
                rates = {parser: statistics.median(r["rates"][parser] for r in runs) for parser in runs[0]["rates"]}
                parse_only.append({"size": size, "messages": runs[0]["messages"], "rates": rates})
                print(f"{size:>9,} {name:<24} " + " ".join(f"{p} {r:,.0f}/s" for p, r in rates.items()), flush=True)
                continue
            seconds = statistics.median(r["seconds"] for r in runs)
            row = {
                "size": size, "name": name, "messages": runs[0]["messages"], "seconds": seconds,
                "rate": runs[0]["messages"] / seconds, "peak_mib": max(r["peak_rss"] for r in runs) / 2**20,
                "job_s": statistics.median(r["job_s"] for r in runs) if "job_s" in runs[0] else None,
            }
            rows.append(row)
            print(f"{size:>9,} {name:<24} {row['messages']:>9,} msgs {seconds:7.2f} s {row['rate']:>10,.0f} msg/s "
                  f"{row['peak_mib']:8.0f} MiB", flush=True)
    write_results(rows, parse_only, measure_dicom())


def measure_dicom() -> list[dict]:
    """Pixel statistics over the synthetic DICOM corpus: a plain pydicom loop against our Ray job."""
    corpus = os.path.join(HERE, "output", f"dicom-{DICOM_FILES}")
    dicom.write_corpus(corpus, DICOM_FILES)
    size_mib = sum(os.path.getsize(p) for p in dicom.corpus_files(corpus)) / 2**20
    rows = []
    for name in DICOM_MEASUREMENTS:
        runs = [measure(name, corpus) for _ in range(REPEATS)]
        row = {"name": name, "files": runs[0]["messages"], "size_mib": size_mib, "peak_mib": max(r["peak_rss"] for r in runs) / 2**20}
        for key in ("seconds", "job_s", "warm_job_s"):
            if key in runs[0]:
                row[key] = statistics.median(r[key] for r in runs)
        rows.append(row)
        print(f"{DICOM_FILES:>9,} {name:<24} " + " ".join(f"{k} {row[k]:.2f}" for k in ("seconds", "job_s", "warm_job_s") if k in row), flush=True)
    return rows


def write_results(rows: list[dict], parse_only: list[dict], dicom_rows: list[dict]) -> None:
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {psutil.cpu_count(logical=True)} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"{platform.python_implementation()} {platform.python_version()}. Median of {REPEATS} runs, each in a fresh "
        "process; peak memory is the whole process tree (Ray's workers included). Corpus: the tutorial's four "
        "templates, 500 messages per file. Written by `make bench`.",
        "",
        "| messages | measurement | rows out | seconds | messages/s | peak memory (MiB) | job alone (s) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        job = f"{r['job_s']:.2f}" if r["job_s"] is not None else ""
        lines.append(f"| {r['size']:,} | {r['name']} | {r['messages']:,} | {r['seconds']:.2f} | {r['rate']:,.0f} | "
                     f"{r['peak_mib']:,.0f} | {job} |")
    lines += [
        "",
        "- `tutorial_single_thread`: the tutorial's Stage 2 loop, then pandas to Parquet.",
        "- `python_hl7`: python-hl7 parsing each message (smallest corpus only).",
        "- `ours_one_process`: our ER7 reader in a plain loop, three Parquet tables.",
        "- `ours_ray_job`: our Ray Data job (datasource, datasink, atomic publication) on a local Ray, "
        "start and stop included; the last column is the job without Ray's start and stop.",
        "- `pipeline_cli`: `dagster asset materialize --select '*'` on the corpus: Dagster, Ray, manifest with "
        "checksums, parse, publication.",
    ]
    if parse_only:
        lines += [
            "",
            "## Parsing alone, one core",
            "",
            "Messages per second, each parser reading the files itself and writing nothing (best of three passes "
            "per run, median of the runs); python-hl7 on its first 2,000 messages.",
            "",
            "| messages | tutorial's parser | python-hl7 | ours | ours, general path | ours / tutorial | ours / python-hl7 |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in parse_only:
            rates = r["rates"]
            lines.append(
                f"| {r['size']:,} | {rates['tutorial_naive']:,.0f} | {rates['python_hl7']:,.0f} | {rates['ours']:,.0f} | "
                f"{rates['ours_general_path']:,.0f} | {rates['ours'] / rates['tutorial_naive']:.2f} | "
                f"{rates['ours'] / rates['python_hl7']:.0f} |"
            )
    if dicom_rows:
        loop = next(r for r in dicom_rows if r["name"] == "dicom_single_process")["seconds"]
        lines += [
            "",
            "## DICOM pixel statistics",
            "",
            f"{dicom_rows[0]['files']:,} synthetic DICOM files ({dicom_rows[0]['size_mib']:,.0f} MiB: CT, MR, CR/DX, US; "
            "uncompressed, deflated, RLE). Files per second over the work alone; the speed-up is against the plain "
            "loop in the same run. `dicom_ray_job` starts Ray, runs the job twice and stops Ray: `first job` includes "
            "Ray Data's one-off start in a fresh session, `second job` is the engine's steady throughput.",
            "",
            "| measurement | whole process (s) | first job (s) | second job (s) | files/s (best) | speed-up | peak memory (MiB) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in dicom_rows:
            work = r.get("warm_job_s", r["seconds"])
            lines.append(
                f"| {r['name']} | {r['seconds']:.2f} | {r.get('job_s', float('nan')):.2f} | "
                f"{r.get('warm_job_s', float('nan')):.2f} | {r['files'] / work:,.0f} | {loop / work:.2f} | {r['peak_mib']:,.0f} |"
            )
    with open(os.path.join(HERE, "results.md"), "w") as out:
        out.write("\n".join(lines) + "\n")
    print(f"\nwritten to {os.path.join(HERE, 'results.md')}")


if __name__ == "__main__":
    main()
