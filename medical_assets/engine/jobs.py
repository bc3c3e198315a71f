"""The Ray Data jobs behind the HL7 assets: generate the demo corpus, checksum the landing files, parse."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import ray

from medical_assets.engine import multitable
from medical_assets.engine.datasources import LandingFilesDatasource
from medical_assets.engine.progress import ProgressCounter, run_with_progress
from medical_assets.engine.sinks import StagedTablesDatasink
from medical_assets.hl7 import parse_hl7_file
from medical_assets.hl7.tables import TABLES as HL7_TABLES
from medical_assets.landing import LandingFile, sha256_of
from medical_assets.storage import Location, TablePublication
from medical_assets.synthetic import hl7 as synthetic_hl7

SYNTHETIC_MARKER = "_synthetic_corpus.json"
HL7_PACKED_SCHEMA = multitable.packed_schema(HL7_TABLES)
# Enough bytes per read task that Ray's per-task overhead stays small next to parsing.
TARGET_BYTES_PER_TASK = 16 << 20

ProgressReport = Callable[[dict, float], None]


@dataclass(frozen=True)
class CorpusResult:
    generated: bool  # False: the same corpus was already there
    files: int
    messages: int
    bytes: int


def cluster_cpus() -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def read_task_count(total_bytes: int, file_count: int, cpus: int) -> int:
    """At least one task per CPU, more only when files are big; never more tasks than files."""
    by_size = math.ceil(total_bytes / TARGET_BYTES_PER_TASK)
    return max(1, min(file_count, max(cpus, by_size), cpus * 8))


def generate_synthetic_hl7(settings: synthetic_hl7.HL7CorpusSettings, landing: Location) -> CorpusResult:
    """Write the synthetic corpus into `landing`, one Ray task per group of files; skip if already there."""
    marker = landing.child(SYNTHETIC_MARKER)
    expected = {"generator": "medical_assets.synthetic.hl7", **asdict(settings)}
    names = [synthetic_hl7.file_name(index) for index in range(settings.file_count())]
    if marker.exists() and json.loads(marker.read_bytes()) == expected and all(landing.child(n).exists() for n in names):
        return CorpusResult(False, len(names), settings.total_messages, 0)

    landing.makedirs()
    marker.delete()  # the marker means "complete": remove it until the new corpus is
    written = pa.Table.from_pylist([], schema=_WRITTEN_SCHEMA)
    if names:
        dataset = ray.data.range(len(names), override_num_blocks=min(len(names), cluster_cpus() * 2)).map_batches(
            _write_synthetic_files,
            fn_kwargs={"settings": settings, "landing": landing},
            batch_format="pyarrow",
            batch_size=None,
        )
        written = pa.concat_tables(ray.get(dataset.to_arrow_refs()))
    _remove_stale_synthetic_files(landing, set(names))
    marker.write_bytes_atomically(json.dumps(expected, indent=2).encode())
    return CorpusResult(True, written.num_rows, sum(written["messages"].to_pylist()), sum(written["bytes"].to_pylist()))


def checksum_files(files: list[LandingFile], filesystem) -> dict[str, str]:
    """SHA-256 of every file, computed in the workers that read them."""
    if not files:
        return {}
    dataset = ray.data.from_items(
        [{"path": f.path} for f in files],
        override_num_blocks=read_task_count(sum(f.size_bytes for f in files), len(files), cluster_cpus()),
    ).map_batches(_checksum_batch, fn_kwargs={"filesystem": filesystem}, batch_format="pyarrow", batch_size=None)
    table = pa.concat_tables(ray.get(dataset.to_arrow_refs()))
    return dict(zip(table["path"].to_pylist(), table["sha256"].to_pylist()))


def parse_hl7_files(
    files: list[LandingFile], filesystem, publication: TablePublication, report: ProgressReport
) -> dict[str, int]:
    """Parse every file into the staged hl7_messages, hl7_lab_results and hl7_errors tables."""
    if not files:
        return {"files": 0}  # Ray Data refuses to read zero files; the caller publishes empty tables
    datasource = LandingFilesDatasource(files, filesystem, _parse_hl7_packed, HL7_PACKED_SCHEMA)
    total_bytes = sum(f.size_bytes for f in files)
    dataset = ray.data.read_datasource(
        datasource, override_num_blocks=read_task_count(total_bytes, len(files), cluster_cpus())
    )
    counter = ProgressCounter.remote()
    sink = StagedTablesDatasink({name: publication.staged(name) for name in HL7_TABLES}, HL7_TABLES, counter)
    try:
        run_with_progress(lambda: dataset.write_datasink(sink), counter, report)
    finally:
        ray.kill(counter)
    return dict(sink.totals)


def _parse_hl7_packed(data: bytes, path: str) -> pa.Table:
    parsed = parse_hl7_file(data, path)
    tables = {"hl7_messages": parsed.messages, "hl7_lab_results": parsed.lab_results, "hl7_errors": parsed.errors}
    return multitable.pack(path, tables, HL7_PACKED_SCHEMA)


_WRITTEN_SCHEMA = pa.schema([("file", pa.string()), ("messages", pa.int64()), ("bytes", pa.int64())])


def _write_synthetic_files(batch: pa.Table, settings, landing: Location) -> pa.Table:
    rows = []
    for file_index in batch["id"].to_pylist():
        name = synthetic_hl7.file_name(file_index)
        data = synthetic_hl7.render_file(settings, file_index)
        landing.child(name).write_bytes_atomically(data)
        rows.append({"file": name, "messages": settings.messages_in_file(file_index), "bytes": len(data)})
    return pa.Table.from_pylist(rows, schema=_WRITTEN_SCHEMA)


def _remove_stale_synthetic_files(landing: Location, keep: set[str]) -> None:
    """Drop files of an earlier, larger synthetic corpus; never touch anything else in the folder."""
    for info in landing.filesystem.get_file_info(pafs.FileSelector(landing.path)):
        if info.type == pafs.FileType.File and synthetic_hl7.is_synthetic_file_name(info.base_name) and info.base_name not in keep:
            landing.filesystem.delete_file(info.path)


def _checksum_batch(batch: pa.Table, filesystem) -> pa.Table:
    paths = batch["path"].to_pylist()
    return pa.table({"path": paths, "sha256": [sha256_of(filesystem, path) for path in paths]})
