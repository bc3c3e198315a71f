"""Publishing a table on object storage: the pipeline's publication (staged by workers, then one
Delta Lake commit through `storage.TablePublication`) against a bare Delta commit of files written
in place, measured on an S3-compatible server (moto on 127.0.0.1), with a Delta reader running
throughout and runs killed mid-publication. (Before tables on object storage became Delta tables,
"ours" here was our copy protocol: the README keeps its figures.)

    python -m benchmarks.table_formats [parts] [rows_per_part] [kills]

Writes benchmarks/output/table-formats-results.md. For each format:
- the time to publish a new version of a table of `parts` Parquet files over the old one (the
  files are written first, as Ray workers write them; the time is the publication itself);
- what a reader that reads the table in a loop during publication saw: the old version, the new
  one, or neither (the table missing, or a mix of files);
- `kills` runs killed (SIGKILL) at a random moment of publication: what a reader finds right after
  the kill, before any recovery, and after our next run's recovery.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(HERE, "output", "table-formats-results.md")
BUCKET = "medical-assets-formats"


def _version(number: int, parts: int, rows: int) -> list[pa.Table]:
    """`parts` tables of `rows` rows (the last one `number` rows longer, so versions differ in size)."""
    tables = []
    for part in range(parts):
        count = rows + (number if part == parts - 1 else 0)
        tables.append(
            pa.table(
                {
                    "version": pa.array([number] * count, pa.int32()),
                    "patient_token": pa.array([f"tok-{number}-{part}-{i:07d}" for i in range(count)]),
                    "value": pa.array(range(count), pa.float64()),
                }
            )
        )
    return tables


def _rows(number: int, parts: int, rows: int) -> int:
    return parts * rows + number


def _s3(endpoint: str) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(endpoint_override=endpoint, region="us-east-1", access_key="testing", secret_key="testing")


def _delta_options(endpoint: str) -> dict[str, str]:
    # One writer at a time (Dagster's run queue): no lock service; moto has no conditional PUT.
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
    }


# -- the two ways to publish, each run in a child process so that it can be killed -----------------


def publish_pipeline(endpoint: str, root: str, number: int, parts: int, rows: int) -> None:
    """As the pipeline publishes (medical_assets.storage.TablePublication): stage, mark committed,
    then on an object store copy the staged parts under the table and make one Delta commit."""
    from medical_assets.storage import Location, TablePublication

    zone = Location(_s3(endpoint), root)
    publication = TablePublication(zone, run_id=f"run{number}")
    staged = publication.staged("table")
    for index, table in enumerate(_version(number, parts, rows)):
        pq.write_table(table, f"{staged.path}/part-{index:05d}.parquet", filesystem=zone.filesystem)
    print("committing", flush=True)
    started = time.monotonic()
    publication.commit({"table": _version(number, 1, 1)[0].schema})
    print(f"published {time.monotonic() - started:.4f}", flush=True)


def publish_delta(endpoint: str, root: str, number: int, parts: int, rows: int) -> None:
    """Delta Lake: the files written under the table's folder with new names, then one commit that
    adds them and removes the old version's files (an overwrite)."""
    from deltalake import DeltaTable, Schema
    from deltalake.transaction import AddAction, create_table_with_add_actions

    fs, uri = _s3(endpoint), f"s3://{root}/table"
    actions = []
    for table in _version(number, parts, rows):
        name = f"part-{uuid.uuid4().hex}.parquet"
        pq.write_table(table, f"{root}/table/{name}", filesystem=fs)
        size = fs.get_file_info(f"{root}/table/{name}").size
        actions.append(AddAction(name, size, {}, int(time.time() * 1000), True, json.dumps({"numRecords": table.num_rows})))
    print("committing", flush=True)
    started = time.monotonic()
    options = _delta_options(endpoint)
    schema = _version(number, 1, 1)[0].schema
    try:
        existing = DeltaTable(uri, storage_options=options)
    except Exception:  # no table yet (deltalake raises TableNotFoundError)
        create_table_with_add_actions(uri, Schema.from_arrow(schema), actions, mode="overwrite", storage_options=options)
    else:
        existing.create_write_transaction(actions, mode="overwrite", schema=schema)
    print(f"published {time.monotonic() - started:.4f}", flush=True)


PUBLISHERS = {"pipeline": publish_pipeline, "delta": publish_delta}


def read_delta(endpoint: str, root: str) -> int | str:
    from deltalake import DeltaTable

    try:
        return DeltaTable(f"s3://{root}/table", storage_options=_delta_options(endpoint)).to_pyarrow_table().num_rows
    except Exception as error:  # noqa: BLE001 - anything a reader could meet is an outcome here
        return f"error: {type(error).__name__}"


READERS = {"pipeline": read_delta, "delta": read_delta}  # tables on an object store are read as Delta


def _classify(seen: int | str, old: int, new: int) -> str:
    if seen == old:
        return "old"
    if seen == new:
        return "new"
    return "missing" if isinstance(seen, str) else "mixed"


def _child(fmt: str, endpoint: str, root: str, number: int, parts: int, rows: int) -> subprocess.Popen:
    code = f"from benchmarks.table_formats import PUBLISHERS; PUBLISHERS[{fmt!r}]({endpoint!r}, {root!r}, {number}, {parts}, {rows})"
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=os.path.dirname(HERE), stdout=subprocess.PIPE, text=True, start_new_session=True
    )


def _publish(fmt: str, endpoint: str, root: str, number: int, parts: int, rows: int, watched: bool) -> dict:
    """Publish version `number` over `number - 1`, with a reader looping meanwhile if `watched`; the
    publication's seconds (measured inside the publishing process) and what the reader saw."""
    old, new = _rows(number - 1, parts, rows), _rows(number, parts, rows)
    child = _child(fmt, endpoint, root, number, parts, rows)
    assert child.stdout.readline().strip() == "committing"
    seen: dict[str, int] = {}
    done = threading.Event()

    def watch():
        while not done.is_set():
            outcome = _classify(READERS[fmt](endpoint, root), old, new)
            seen[outcome] = seen.get(outcome, 0) + 1

    reader = threading.Thread(target=watch)
    if watched:
        reader.start()
    finished = child.stdout.readline().split()
    child.wait()
    done.set()
    if watched:
        reader.join()
    after = _classify(READERS[fmt](endpoint, root), old, new)
    seconds = float(finished[1]) if finished else float("nan")
    return {"seconds": seconds, "seen": seen, "after": after, "returncode": child.returncode}


def _killed(fmt: str, endpoint: str, root: str, number: int, parts: int, rows: int, within_s: float, rng: random.Random) -> dict:
    """Publish version `number`, SIGKILL it at a random moment of the publication, then read."""
    from medical_assets.storage import Location, TablePublication

    old, new = _rows(number - 1, parts, rows), _rows(number, parts, rows)
    child = _child(fmt, endpoint, root, number, parts, rows)
    assert child.stdout.readline().strip() == "committing"
    time.sleep(rng.uniform(0, within_s))  # within the publication's usual time, measured alone
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    outcome = {"right_after": _classify(READERS[fmt](endpoint, root), old, new)}
    if fmt == "pipeline":
        TablePublication.recover(Location(_s3(endpoint), root))  # what our next run does first
        outcome["after_recovery"] = _classify(READERS[fmt](endpoint, root), old, new)
    return outcome


def _objects(endpoint: str, root: str) -> int:
    selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    return sum(info.type == pafs.FileType.File for info in _s3(endpoint).get_file_info(selector))


def measure(endpoint: str, parts: int, rows: int, kills: int) -> dict:
    rng = random.Random(20)
    results = {}
    for fmt in PUBLISHERS:
        root = f"{BUCKET}/{fmt}"
        number = 1
        assert _publish(fmt, endpoint, root, number, parts, rows, watched=False)["returncode"] == 0
        timings, seen = [], {}
        for _ in range(3):  # alone: the publication's own time, and the window the kills fall in
            number += 1
            quiet = _publish(fmt, endpoint, root, number, parts, rows, watched=False)
            assert quiet["returncode"] == 0 and quiet["after"] == "new", quiet
            timings.append(quiet["seconds"])
        for _ in range(3):  # with a reader looping (which slows the server down: times not reported)
            number += 1
            watched = _publish(fmt, endpoint, root, number, parts, rows, watched=True)
            assert watched["returncode"] == 0 and watched["after"] == "new", watched
            for outcome, count in watched["seen"].items():
                seen[outcome] = seen.get(outcome, 0) + count
        publish_s = sorted(timings)[1]
        kill_outcomes = []
        for _ in range(kills):
            number += 1
            kill_outcomes.append(_killed(fmt, endpoint, root, number, parts, rows, publish_s, rng))
            number += 1  # the next version is published over whatever the kill left (a new run)
            assert _publish(fmt, endpoint, root, number, parts, rows, watched=False)["returncode"] == 0
        results[fmt] = {"publish_s": publish_s, "seen": seen, "kills": kill_outcomes, "objects": _objects(endpoint, root)}
    return results


def render(results: dict, parts: int, rows: int, kills: int) -> str:
    def counts(items: list[dict], key: str) -> str:
        tally: dict[str, int] = {}
        for item in items:
            if key in item:
                tally[item[key]] = tally.get(item[key], 0) + 1
        return ", ".join(f"{name} {count}" for name, count in sorted(tally.items())) or "-"

    lines = [
        "# Publishing a table on object storage: the pipeline's publication against a bare Delta Lake commit",
        "",
        f"S3-compatible server (moto) on 127.0.0.1; a table of {parts} Parquet files of {rows:,} rows; "
        f"`python -m benchmarks.table_formats {parts} {rows} {kills}`.",
        "",
        "| format | publish a new version (median of 3) | a reader looping during 3 publications saw | "
        f"right after a kill ({kills} kills) | after our next run's recovery | objects left in the bucket |",
        "| --- | ---: | --- | --- | --- | ---: |",
    ]
    for fmt, result in results.items():
        seen = ", ".join(f"{name} {count}" for name, count in sorted(result["seen"].items()))
        lines.append(
            f"| {fmt} | {result['publish_s']:.2f} s | {seen} | {counts(result['kills'], 'right_after')} | "
            f"{counts(result['kills'], 'after_recovery')} | {result['objects']} |"
        )
    lines += [
        "",
        "old / new: the reader got the whole old or the whole new version; missing: the read failed "
        "(no table); mixed: a row count of neither version (files of both, or part of one).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    from medical_assets_tests.scaleout.servers import s3_server

    parts = int(sys.argv[1]) if len(sys.argv) > 1 else 32
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    kills = int(sys.argv[3]) if len(sys.argv) > 3 else 6
    with tempfile.TemporaryDirectory() as folder, s3_server(folder, BUCKET) as variables:
        os.environ.update(variables)  # as a run finds them: the publishing children inherit them
        results = measure(variables["AWS_ENDPOINT_URL_S3"], parts, rows, kills)
    text = render(results, parts, rows, kills)
    os.makedirs(os.path.dirname(OUTPUT), exist_ok=True)
    with open(OUTPUT, "w") as output:
        output.write(text)
    print(text)


if __name__ == "__main__":
    main()
