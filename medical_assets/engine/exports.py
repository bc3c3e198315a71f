"""The export datasink of the de-identified zone: tables as Parquet (default), CSV or JSON Lines,
every file stamped with the compliance metadata.

Parquet carries the stamp in its schema metadata. CSV and JSON Lines have no such place, so each
table folder gets a `_compliance.json` beside its files (written by the driver once the job ends).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from ray.data.datasource import WriteResult

from medical_assets.config import EXPORT_FORMATS
from medical_assets.engine import multitable
from medical_assets.engine.memory import WORKER_RELEASE_ABOVE, release_memory
from medical_assets.engine.sinks import TablesDatasink
from medical_assets.storage import Location

COMPLIANCE_FILE = "_compliance.json"


class ExportTablesDatasink(TablesDatasink):
    """Each write task writes its rows of every table into one file per table, named by task, in
    `file_format`. A retried task rewrites the same names, so retries never double rows."""

    def __init__(
        self,
        targets: Mapping[str, Location],
        schemas: Mapping[str, pa.Schema],
        file_format: str,
        stamp: Mapping[str, str],
    ):
        if file_format not in EXPORT_FORMATS:
            raise ValueError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {file_format!r}")
        self._format = file_format
        self._stamp = dict(stamp)
        encoded = {key.encode(): value.encode() for key, value in self._stamp.items()}
        super().__init__(
            targets, {name: schema.with_metadata({**(schema.metadata or {}), **encoded}) for name, schema in schemas.items()}
        )

    def get_name(self) -> str:
        return "ExportTables"

    def write(self, blocks: Iterable[pa.Table], ctx) -> dict:
        tables: dict[str, list[pa.Table]] = {name: [] for name in self._schemas}
        for block in blocks:
            for name, schema in self._schemas.items():
                tables[name].append(multitable.unpack(block, name, schema))
        rows = {}
        for name, parts in tables.items():
            table = pa.concat_tables(parts) if parts else self._schemas[name].empty_table()
            if table.num_rows:
                self._write_file(self._targets[name].child(f"part-{ctx.task_idx:05d}.{self._format}"), table)
            rows[name] = table.num_rows
        del tables
        release_memory(WORKER_RELEASE_ABOVE)  # the analytics task's inputs are gone: the worker need not keep their peak
        return rows

    def on_write_complete(self, write_result: WriteResult[dict]) -> None:
        super().on_write_complete(write_result)
        for name, target in self._targets.items():
            if self.totals.get(name, 0) == 0:  # an empty table still says what it would hold
                self._write_file(target.child(f"part-empty.{self._format}"), self._schemas[name].empty_table())
            if self._format != "parquet":
                target.child(COMPLIANCE_FILE).write_bytes_atomically(json.dumps(self._stamp, indent=2).encode())

    def _write_file(self, location: Location, table: pa.Table) -> None:
        with location.filesystem.open_output_stream(location.path) as stream:
            if self._format == "parquet":
                pq.write_table(table, stream, compression="zstd")
            elif self._format == "csv":
                pacsv.write_csv(_flat(table), stream)
            else:
                stream.write(_json_lines(table))


def _flat(table: pa.Table) -> pa.Table:
    """CSV has no lists: list columns become JSON text."""
    columns = []
    for column in table.columns:
        if pa.types.is_list(column.type) or pa.types.is_struct(column.type):
            column = pa.array([None if v is None else json.dumps(v) for v in column.to_pylist()], pa.string())
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def _json_lines(table: pa.Table) -> bytes:
    return "".join(json.dumps(row, default=str) + "\n" for row in table.to_pylist()).encode()
