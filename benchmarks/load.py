"""Load: the whole graph from the CLI at a hospital's scale, with the peak memory of the process tree.

    python -m benchmarks.load [--messages 5000000] [--dicom-files 10000] [--data DIR]

Generates the synthetic corpora (kept in DIR between runs), runs `dagster asset materialize
--select '*'` once, samples the memory of the whole process tree (Ray's workers included) every
0.2 s, and appends a row with the wall time, each step's time and the peak to
benchmarks/load-results.md. Nothing here is a test: it takes minutes and tens of GB of disk.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

import psutil

from benchmarks.memory import tree_rss

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "load-results.md")
# Dagster writes a step's time as "371ms", "44.74s" or "3m19s".
STEP = re.compile(r'Finished execution of step "([^"]+)" in (?:(\d+)m)?(?:([0-9.]+)(ms|s))?\.')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5_000_000)
    parser.add_argument("--dicom-files", type=int, default=10_000)
    parser.add_argument("--data", default=os.path.join(HERE, "output", "load"))
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="ma-load-home-")
    shutil.copy(os.path.join(REPO, "dagster.yaml"), home)
    env = {
        **os.environ,
        "DAGSTER_HOME": home,
        "MEDICAL_ASSETS_DATA_DIR": args.data,
        "MEDICAL_ASSETS_SYNTHETIC_HL7_MESSAGES": str(args.messages),
        "MEDICAL_ASSETS_SYNTHETIC_DICOM_FILES": str(args.dicom_files),
    }
    log_path = os.path.join(home, "run.log")
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), "dagster"), "asset", "materialize",
             "-m", "medical_assets.definitions", "--select", "*"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        peak = _watch(process)
    seconds = time.monotonic() - started
    text = open(log_path, errors="replace").read()
    steps = {name: _seconds(minutes, value, unit) for name, minutes, value, unit in STEP.findall(text)}
    ok = process.returncode == 0
    _write(args, ok, seconds, peak, steps, os.getloadavg()[0])
    print(f"{'succeeded' if ok else 'FAILED'} in {seconds:,.0f} s, peak {peak / 2**30:.2f} GiB; log: {log_path}")
    if not ok:
        print(text[-5000:])
        sys.exit(1)
    shutil.rmtree(home, ignore_errors=True)


def _watch(process: subprocess.Popen) -> int:
    root, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        peak = max(peak, tree_rss(tree))
        time.sleep(0.2)
    return peak


def _seconds(minutes: str, value: str, unit: str) -> float:
    return 60.0 * int(minutes or 0) + (float(value) * (0.001 if unit == "ms" else 1.0) if value else 0.0)


def _write(args, ok: bool, seconds: float, peak: int, steps: dict[str, float], load: float) -> None:
    new = not os.path.exists(RESULTS)
    with open(RESULTS, "a") as out:
        if new:
            out.write("# Load runs\n\nWritten by `python -m benchmarks.load`: the whole graph from the CLI, one run, "
                      "synthetic corpora kept between runs (a second run finds them). Peak memory is the whole "
                      "process tree, Ray's workers included.\n\n")
        slowest = sorted(steps.items(), key=lambda item: -item[1])[:8]
        out.write(
            f"## {dt.date.today()}: {args.messages:,} messages, {args.dicom_files:,} DICOM files\n\n"
            f"- machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}; "
            f"load average at the end {load:.1f} (above {os.cpu_count()}: other work shared the machine)\n"
            f"- result: {'success' if ok else 'FAILED'} in {seconds:,.0f} s; peak memory {peak / 2**30:.2f} GiB\n"
            f"- slowest steps: " + ", ".join(f"{name} {value:,.1f} s" for name, value in slowest) + "\n\n"
        )


if __name__ == "__main__":
    main()
