"""Ray jobs of the analytics and reports: each reads its inputs inside a worker, computes there,
and writes there; the driver only sees row counts and file names.

Aggregates need all rows of a table at once (distinct patients, quantiles), so each job is one
task. At the sizes this pipeline targets (millions of rows of narrow, de-identified tables) that
task needs a few hundred MB; a partial-aggregate map step would be the next step beyond.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from medical_assets.engine import multitable
from medical_assets.engine.exports import ExportTablesDatasink
from medical_assets.storage import Location

# What a job reads: name -> (location of a Parquet table, columns or None for all).
Inputs = Mapping[str, tuple[Location, list[str] | None]]
Compute = Callable[[dict[str, pa.Table]], Mapping[str, pa.Table]]


def export_computed_tables(
    inputs: Inputs,
    compute: Compute,
    targets: Mapping[str, Location],
    schemas: Mapping[str, pa.Schema],
    file_format: str,
    stamp: Mapping[str, str],
) -> dict[str, int]:
    """`compute(inputs)` in one worker, its tables written by the export datasink; rows per table."""
    packed_schema = multitable.packed_schema(schemas)
    dataset = ray.data.read_datasource(OneTaskDatasource(dict(inputs), compute, packed_schema), override_num_blocks=1)
    sink = ExportTablesDatasink(targets, schemas, file_format, stamp)
    dataset.write_datasink(sink)
    return dict(sink.totals)


def build_files(inputs: Inputs, build: Callable[[dict[str, pa.Table]], Mapping[str, bytes]], target: Location) -> list[str]:
    """`build(inputs)` in one worker, which writes the files it returns (name -> bytes) under `target`."""
    schema = pa.schema([pa.field("name", pa.string()), pa.field("size_bytes", pa.int64())])

    def build_and_write(tables: dict[str, pa.Table]) -> pa.Table:
        files = build(tables)
        for name, data in files.items():
            target.child(name).write_bytes_atomically(data)
        return pa.table({"name": list(files), "size_bytes": [len(d) for d in files.values()]}, schema=schema)

    dataset = ray.data.read_datasource(OneTaskDatasource(dict(inputs), build_and_write, schema), override_num_blocks=1)
    written = pa.concat_tables(ray.get(dataset.to_arrow_refs()))
    return sorted(written["name"].to_pylist())


class OneTaskDatasource(Datasource):
    """A single read task that reads the inputs in the worker and yields what `compute` makes of them."""

    def __init__(self, inputs: dict, compute: Callable, schema: pa.Schema):
        super().__init__()
        self._inputs = inputs
        self._compute = compute
        self._schema = schema

    def get_name(self) -> str:
        return "ComputeInWorker"

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context=None) -> list[ReadTask]:
        inputs, compute, schema = self._inputs, self._compute, self._schema

        def read() -> Iterable[pa.Table]:
            result = compute({name: _read(location, columns) for name, (location, columns) in inputs.items()})
            if isinstance(result, pa.Table):
                yield result
            else:
                yield multitable.pack("computed", result, schema)

        metadata = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)
        return [ReadTask(read, metadata, schema=schema, per_task_row_limit=per_task_row_limit)]


def _read(location: Location, columns: list[str] | None) -> pa.Table | None:
    """The table, or None when it was never published (a site without DICOM, say)."""
    if location.filesystem.get_file_info(location.path).type == pafs.FileType.NotFound:
        return None
    return pq.read_table(location.path, filesystem=location.filesystem, columns=columns)
