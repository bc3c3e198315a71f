"""Part groups: the part files of several tables that hold the rows of the same files, and the job
that transforms each group in a worker, which writes the result.

The parse jobs write every table of a file through the same task, so `part-00003.parquet` of
`hl7_messages` and of `hl7_lab_results` hold the rows of the same files (see `StagedTablesDatasink`).
A task therefore takes one such group of parts, joins child rows to their message locally, and
never needs a shuffle.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from medical_assets.engine.memory import WORKER_RELEASE_ABOVE, release_memory
from medical_assets.engine.progress import Progress, ProgressReport, progress_counter, run_with_progress
from medical_assets.engine.tasks import IN_PROCESS_PARQUET_BYTES, map_tables, runs_here
from medical_assets.storage import Location, size_bytes, table_files

PartGroup = dict[str, Location]  # table name -> one part file
GroupTransform = Callable[[dict[str, pa.Table]], Mapping[str, pa.Table]]
# The entry of a transform's output that holds counts of withheld values, not a table.
WITHHELD_ENTRY = "_withheld"


def phi_part_groups(zone: Location, tables: Sequence[str], schemas: Mapping[str, pa.Schema]) -> list[PartGroup]:
    """The co-written part files of `tables`, grouped by part name (empty placeholder parts skipped)."""
    groups = part_groups_by_name(zone, tables)
    return [groups[name] for name in sorted(groups)]


def group_part_name(group: PartGroup) -> str:
    """The part file name shared by a group's parts, e.g. `part-00003.parquet`."""
    return posixpath.basename(next(iter(group.values())).path)


def part_groups_by_name(zone: Location, tables: Sequence[str]) -> dict[str, PartGroup]:
    """The part files of `tables` in `zone`, by part name."""
    groups: dict[str, PartGroup] = {}
    for table in tables:
        for part in table_files(zone.child(table)):
            name = part.name
            if name.startswith("part-") and name[5:-8].isdigit():
                groups.setdefault(name, {})[table] = part
    return groups


def group_paths(group: PartGroup) -> str:
    """A part group as text (table -> path), for a task's input rows; `group_from_paths` reads it back.
    Workers get the paths rather than look the parts up: on an object store that means reading a
    Delta log (`storage.table_files`)."""
    return json.dumps({table: part.path for table, part in group.items()}, sort_keys=True)


def group_from_paths(zone: Location, text: str) -> PartGroup:
    return {table: Location(zone.filesystem, path) for table, path in json.loads(text).items()}


def part_digest(group: PartGroup) -> str:
    """A digest of a part group's contents: each part's table, size and Parquet footer (row groups,
    column sizes, statistics, metadata), read with two small reads a file, never the rows. The parse
    carries unchanged parts over byte for byte, so their digest outlives the copy."""
    digest = hashlib.sha256()
    for table in sorted(group):
        part = group[table]
        with part.filesystem.open_input_file(part.path) as handle:
            size = handle.size()
            tail = handle.read_at(8, size - 8) if size >= 12 else b""
            footer_length = int.from_bytes(tail[:4], "little") if tail[4:] == b"PAR1" else 0
            footer = handle.read_at(footer_length, size - 8 - footer_length) if 0 < footer_length <= size - 12 else tail
        digest.update(f"{table}\x1f{size}\x1f".encode() + hashlib.sha256(footer).digest() + b"\x1e")
    return digest.hexdigest()


def kept_file_name(*made_from: str, suffix: str) -> str:
    """The name of a file kept beside the PHI parts (a part's census, identifiers, summary): a digest
    of what it was made from (part name, footer digest, settings, code), so any change is another file."""
    return hashlib.sha256("\x1f".join(made_from).encode()).hexdigest()[:32] + suffix


def prune_cache(cache: Location, keep: set[str]) -> set[str]:
    """Drop the files of a per-part cache whose parts are gone (rewritten by the parse, or removed);
    hidden files (a secret, a write under way) stay. Returns the names of `keep` that are there."""
    selector = pafs.FileSelector(cache.path, allow_not_found=True)
    present = set()
    for info in cache.filesystem.get_file_info(selector):
        name = posixpath.basename(info.path)
        if info.type != pafs.FileType.File or name.startswith("."):
            continue
        if name in keep:
            present.add(name)
        else:
            cache.filesystem.delete_file(info.path)
    return present


def groups_size_bytes(groups: Sequence[PartGroup]) -> int:
    """The bytes of every part of `groups`."""
    return size_bytes([part for group in groups for part in group.values()])


def run_group_job(
    groups: Sequence[PartGroup],
    input_schemas: Mapping[str, pa.Schema],
    transform: GroupTransform,
    targets: Mapping[str, Location],
    schemas: Mapping[str, pa.Schema],
    report: ProgressReport,
    part_names: Sequence[str] | None = None,
    by_part: dict[str, dict[str, int]] | None = None,
    named: bool = False,
) -> dict[str, int]:
    """`transform` of each part group in the workers (in this process when the groups' parts hold
    less than IN_PROCESS_PARQUET_BYTES), which write its tables under `targets` (a table without
    rows gets no part); rows per table, and `files`: the groups. `by_part`, when
    given, receives the same counts per output part name. `named`: the transform is also given
    its group's output part name (`part_name=`).

    A group's output part is named like its input parts (or `part_names`, one per group): so a part
    name stands for the same files in the PHI and the de-identified zone, and the analytics can
    join a de-identified part with the PHI part of the same name.

    The task that transforms a group writes it: carried to a datasink, the tables would be packed
    into one block and unpacked again, two copies of every row (at 250,000 messages a group,
    240 MB more in each worker). A retried task rewrites the same part names, so rows never double.
    """
    if not groups:
        return {"files": 0}
    for target in targets.values():
        target.makedirs()
    here = runs_here(groups_size_bytes(groups), IN_PROCESS_PARQUET_BYTES)
    counter = progress_counter(here)
    names = list(part_names) if part_names is not None else [group_part_name(group) for group in groups]
    output = _GroupOutput(dict(targets), dict(schemas), names, counter)
    written = run_with_progress(
        lambda: map_tables(
            [{"group": number} for number in range(len(groups))],
            _transform_groups,
            {"groups": list(groups), "input_schemas": dict(input_schemas), "transform": transform, "output": output,
             "named": named},
            here=here,
        ),
        counter,
        report,
    )
    totals: Counter = Counter(files=len(groups))
    for block in written:
        for row in block.to_pylist():
            totals[row["table"]] += row["rows"]
            if by_part is not None:
                by_part.setdefault(names[row["group"]], {})[row["table"]] = row["rows"]
    return dict(totals)


# What a group task returns: the rows it wrote per table.
_WRITTEN = pa.schema([pa.field("group", pa.int64()), pa.field("table", pa.string()), pa.field("rows", pa.int64())])


@dataclass(frozen=True)
class _GroupOutput:
    targets: dict[str, Location]
    schemas: dict[str, pa.Schema]  # with the metadata each file must carry
    part_names: list[str]  # by group number
    progress: Progress | None

    def write(self, number: int, tables: Mapping[str, pa.Table]) -> pa.Table:
        written = dict(tables.get(WITHHELD_ENTRY, {}))  # counts a transform reports beside its tables
        for name, schema in self.schemas.items():
            table = tables[name]
            if table.num_rows:
                target = self.targets[name].child(self.part_names[number])
                pq.write_table(
                    table.select(schema.names).cast(schema), target.path, filesystem=target.filesystem, compression="zstd"
                )
            written[name] = table.num_rows
        if self.progress is not None:
            # `files`: this group, done (the progress line counts groups, as the job's totals do).
            self.progress.report(number, {**written, "files": 1})
        return pa.table(
            {"group": [number] * len(written), "table": list(written), "rows": list(written.values())}, schema=_WRITTEN
        )


def _transform_groups(
    batch: pa.Table,
    groups: list[PartGroup],
    input_schemas: dict[str, pa.Schema],
    transform: GroupTransform,
    output: _GroupOutput,
    named: bool,
) -> Iterable[pa.Table]:
    """The groups numbered in `batch`, one after the other: read whole, transformed, written."""
    for number in batch.column("group").to_pylist():
        group = groups[number]
        tables = {
            name: _read_part(group[name], schema) if name in group else schema.empty_table()
            for name, schema in input_schemas.items()
        }
        result = transform(tables, part_name=output.part_names[number]) if named else transform(tables)
        written = output.write(number, result)
        del tables
        # The worker goes on with the next group: it need not keep this one's peak.
        release_memory(WORKER_RELEASE_ABOVE)
        yield written


def _read_part(part: Location, schema: pa.Schema) -> pa.Table:
    return pq.read_table(part.path, filesystem=part.filesystem, schema=schema)
