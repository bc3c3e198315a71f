"""Ray jobs of the de-identified zone.

The parse jobs write every table of a file through the same task, so `part-00003.parquet` of
`hl7_messages` and of `hl7_lab_results` hold the rows of the same files (see `StagedTablesDatasink`).
A de-identification task therefore takes one such group of parts, joins child rows to their
message locally, and never needs a shuffle.
"""

from __future__ import annotations

import functools
import posixpath
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from medical_assets.analytics.validation import with_validation
from medical_assets.dicom.export import EXPORT_TABLES as DICOM_EXPORT_TABLES
from medical_assets.dicom.export import export_deidentified
from medical_assets.dicom.tables import TABLES as DICOM_TABLES
from medical_assets.engine.jobs import TASK_OPTIONS, ProgressReport, cluster_cpus
from medical_assets.engine.progress import progress_counter, run_with_progress
from medical_assets.engine.memory import WORKER_RELEASE_ABOVE, release_memory
from medical_assets.hl7.tables import TABLES as HL7_TABLES
from medical_assets.privacy.hl7_deid import DEID_HL7_TABLES, deidentify_hl7_tables, patients_over_89
from medical_assets.privacy.keys import KeyRing, PseudonymKey
from medical_assets.privacy.pseudonyms import Pseudonymizer, ReversibleTokens
from medical_assets.storage import Location, read_whole_file

PartGroup = dict[str, Location]  # table name -> one part file
GroupTransform = Callable[[dict[str, pa.Table]], Mapping[str, pa.Table]]


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
        folder = zone.child(table)
        selector = pafs.FileSelector(folder.path, allow_not_found=True)
        for info in zone.filesystem.get_file_info(selector):
            name = posixpath.basename(info.path)
            if info.type == pafs.FileType.File and name.startswith("part-") and name[5:-8].isdigit():
                groups.setdefault(name, {})[table] = Location(zone.filesystem, info.path)
    return groups


def deidentify_hl7(
    phi: Location,
    targets: Mapping[str, Location],
    schemas: Mapping[str, pa.Schema],
    ring: KeyRing,
    profile: str,
    reversible_tokens: bool,
    report: ProgressReport,
) -> dict[str, int]:
    """The de-identified HL7 tables, staged under `targets` with `schemas` (which carry the compliance metadata)."""
    groups = phi_part_groups(phi, list(HL7_TABLES), HL7_TABLES)
    transform = functools.partial(
        _deidentify_hl7_group,
        ring=ring,
        profile=profile,
        reversible_tokens=reversible_tokens,
        patients_over_89=_patients_over_89_in(groups, phi.filesystem),
    )
    return run_group_job(groups, HL7_TABLES, transform, targets, schemas, report)


def _patients_over_89_in(groups: list[PartGroup], filesystem: pafs.FileSystem) -> frozenset[str]:
    """Every patient who is 90+ at a message of any part, found in the workers: Safe Harbor withholds
    their birth date in every message, and a task sees only its own parts. The IDs pass through the
    driver and to the de-identification tasks (Ray's object store), where PHI rows already travel."""
    paths = [group["hl7_messages"].path for group in groups if "hl7_messages" in group]
    if not paths:
        return frozenset()
    found = ray.data.from_items([{"path": path} for path in paths], override_num_blocks=min(len(paths), cluster_cpus()))
    found = found.map_batches(
        _patients_over_89_batch, fn_kwargs={"filesystem": filesystem}, batch_format="pyarrow", batch_size=None
    )
    tables = ray.get(found.to_arrow_refs())
    return frozenset(value for table in tables for value in table.column("patient_id").to_pylist())


def _patients_over_89_batch(batch: pa.Table, filesystem: pafs.FileSystem) -> pa.Table:
    found: set[str] = set()
    for path in batch.column("path").to_pylist():
        messages = pq.read_table(path, filesystem=filesystem, columns=_AGE_COLUMNS)
        found |= patients_over_89(messages)
    return pa.table({"patient_id": pa.array(sorted(found), pa.string())})


_AGE_COLUMNS = ["patient_id", "patient_birth_date", "message_datetime"]


def export_dicom(
    phi: Location,
    source_filesystem: pafs.FileSystem,
    deid_files: Location,
    targets: Mapping[str, Location],
    schemas: Mapping[str, pa.Schema],
    key: PseudonymKey,
    profile: str,
    report: ProgressReport,
) -> dict[str, int]:
    """De-identified DICOM files under `deid_files`, and the tables of `dicom.export.EXPORT_TABLES`."""
    groups = phi_part_groups(phi, ["dicom_images", "dicom_thumbnails"], DICOM_TABLES)
    transform = functools.partial(
        _export_dicom_group, key=key, profile=profile, source_filesystem=source_filesystem, deid_files=deid_files
    )
    return run_group_job(groups, DICOM_TABLES, transform, targets, schemas, report)


def run_group_job(
    groups, input_schemas, transform, targets, schemas, report, part_names: Sequence[str] | None = None
) -> dict[str, int]:
    """`transform` of each part group in the workers, which write its tables under `targets` (a
    table without rows gets no part); rows per table, and `files`: the groups.

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
    counter = progress_counter()
    names = list(part_names) if part_names is not None else [group_part_name(group) for group in groups]
    datasource = PartGroupsDatasource(groups, input_schemas, transform, targets, schemas, names, counter)
    dataset = ray.data.read_datasource(
        datasource, override_num_blocks=min(len(groups), cluster_cpus()), ray_remote_args=TASK_OPTIONS
    )
    written = run_with_progress(lambda: ray.get(dataset.to_arrow_refs()), counter, report)
    totals: Counter = Counter(files=len(groups))
    for block in written:
        for row in block.to_pylist():
            totals[row["table"]] += row["rows"]
    return dict(totals)


# What a group task returns: the rows it wrote per table.
_WRITTEN = pa.schema([pa.field("group", pa.int64()), pa.field("table", pa.string()), pa.field("rows", pa.int64())])


class PartGroupsDatasource(Datasource):
    """Read tasks that each read whole part groups in the worker, transform them and write the result."""

    def __init__(
        self,
        groups: list[PartGroup],
        input_schemas: Mapping[str, pa.Schema],
        transform: GroupTransform,
        targets: Mapping[str, Location],
        schemas: Mapping[str, pa.Schema],
        part_names: Sequence[str],
        progress=None,
    ):
        super().__init__()
        self._groups = groups
        self._input_schemas = dict(input_schemas)
        self._transform = transform
        self._output = _GroupOutput(dict(targets), dict(schemas), list(part_names), progress)

    def get_name(self) -> str:
        return "PhiPartGroups"

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context=None) -> list[ReadTask]:
        count = max(1, min(parallelism, len(self._groups)))
        numbered = list(enumerate(self._groups))
        buckets = [numbered[index::count] for index in range(count)]
        return [
            ReadTask(
                _make_read_fn(bucket, self._input_schemas, self._transform, self._output),
                BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None),
                schema=_WRITTEN,
                per_task_row_limit=per_task_row_limit,
            )
            for bucket in buckets
        ]


@dataclass(frozen=True)
class _GroupOutput:
    targets: dict[str, Location]
    schemas: dict[str, pa.Schema]  # with the metadata each file must carry
    part_names: list[str]  # by group number
    progress: object  # a ProgressCounter actor handle, or None

    def write(self, number: int, tables: Mapping[str, pa.Table]) -> pa.Table:
        written = {}
        for name, schema in self.schemas.items():
            table = tables[name]
            if table.num_rows:
                target = self.targets[name].child(self.part_names[number])
                pq.write_table(
                    table.select(schema.names).cast(schema), target.path, filesystem=target.filesystem, compression="zstd"
                )
            written[name] = table.num_rows
        if self.progress is not None:
            self.progress.report.remote(number, written)
        return pa.table(
            {"group": [number] * len(written), "table": list(written), "rows": list(written.values())}, schema=_WRITTEN
        )


def _make_read_fn(bucket: list[tuple[int, PartGroup]], input_schemas, transform, output: _GroupOutput):
    def read() -> Iterable[pa.Table]:
        for number, group in bucket:
            tables = {
                name: _read_part(group[name], schema) if name in group else schema.empty_table()
                for name, schema in input_schemas.items()
            }
            written = output.write(number, transform(tables))
            del tables
            # The worker goes on with the next group: it need not keep this one's peak.
            release_memory(WORKER_RELEASE_ABOVE)
            yield written

    return read


def _read_part(part: Location, schema: pa.Schema) -> pa.Table:
    return pq.read_table(part.path, filesystem=part.filesystem, schema=schema)


def _deidentify_hl7_group(
    tables: dict[str, pa.Table], ring: KeyRing, profile: str, reversible_tokens: bool, patients_over_89: frozenset[str]
) -> dict[str, pa.Table]:
    reversible = ReversibleTokens(ring) if reversible_tokens else None
    output = deidentify_hl7_tables(tables, Pseudonymizer(ring.current), profile, reversible, patients_over_89)
    # A part group holds whole files, so each message's child rows are here to validate it against.
    output["hl7_messages"] = with_validation(output["hl7_messages"], tables)
    return output


def _export_dicom_group(
    tables: dict[str, pa.Table], key: PseudonymKey, profile: str, source_filesystem: pafs.FileSystem, deid_files: Location
) -> dict[str, pa.Table]:
    def read_source(path: str) -> bytes:
        return read_whole_file(source_filesystem, path)

    def write_output(relative_path: str, data: bytes) -> None:
        deid_files.child(relative_path).write_bytes_atomically(data)

    return export_deidentified(
        tables["dicom_images"], tables["dicom_thumbnails"], read_source, write_output, Pseudonymizer(key), profile
    )


__all__ = ["DEID_HL7_TABLES", "DICOM_EXPORT_TABLES", "deidentify_hl7", "export_dicom", "phi_part_groups"]
