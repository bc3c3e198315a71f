"""Ray Data datasinks that write several tables from one packed dataset (`multitable`), a folder each."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq
from ray.data.datasource import Datasink, WriteResult

from medical_assets.engine import multitable
from medical_assets.engine.memory import WORKER_RELEASE_ABOVE, release_memory
from medical_assets.storage import Location


class TablesDatasink(Datasink[dict]):
    """A folder per table, made before the first write task; each task returns the rows it wrote
    per table, summed in `totals` once the job has ended."""

    def __init__(self, targets: Mapping[str, Location], schemas: Mapping[str, pa.Schema]):
        self._targets = dict(targets)
        self._schemas = dict(schemas)
        self.totals: Counter = Counter()

    def on_write_start(self, schema=None) -> None:
        for target in self._targets.values():
            target.makedirs()

    def on_write_complete(self, write_result: WriteResult[dict]) -> None:
        for task_rows in write_result.write_returns:
            self.totals.update(task_rows)


class StagedTablesDatasink(TablesDatasink):
    """Each write task streams its blocks into one Parquet file per table, named by task.

    A retried task rewrites the same file names, so retries never double rows; the
    files only become visible to readers when the run publishes its staging folder.
    """

    def __init__(self, targets: Mapping[str, Location], schemas: Mapping[str, pa.Schema], progress=None, first_part: int = 0):
        super().__init__(targets, schemas)
        self._first_part = first_part  # parts kept from an earlier run hold the numbers below it
        self._progress = progress  # a progress.Progress, or None

    def get_name(self) -> str:
        return "StagedTables"

    def write(self, blocks: Iterable[pa.Table], ctx) -> dict:
        writers: dict[str, pq.ParquetWriter] = {}
        try:
            rows = self._write_blocks(blocks, ctx, writers)
        finally:
            for writer in writers.values():
                writer.close()
            writers.clear()
            release_memory(WORKER_RELEASE_ABOVE)  # the worker stays for the next job: it need not keep this task's peak
        return dict(rows)

    def _write_blocks(self, blocks: Iterable[pa.Table], ctx, writers: dict[str, pq.ParquetWriter]) -> Counter:
        rows: Counter = Counter()
        for block in blocks:
            block_rows = Counter(files=block.num_rows)
            for name, schema in self._schemas.items():
                table = multitable.unpack(block, name, schema)
                if table.num_rows == 0:
                    continue
                if name not in writers:
                    target = self._targets[name]
                    writers[name] = pq.ParquetWriter(
                        target.child(f"part-{self._first_part + ctx.task_idx:05d}.parquet").path,
                        schema,
                        filesystem=target.filesystem,
                        compression="zstd",
                    )
                writers[name].write_table(table)
                block_rows[name] = table.num_rows
            rows.update(block_rows)
            if self._progress is not None:
                self._progress.report(ctx.task_idx, dict(rows))
        return rows
