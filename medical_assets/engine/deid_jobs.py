"""Ray jobs of the de-identified zone.

The parse jobs write every table of a file through the same task, so `part-00003.parquet` of
`hl7_messages` and of `hl7_lab_results` hold the rows of the same files (see `StagedTablesDatasink`).
A de-identification task therefore takes one such group of parts, joins child rows to their
message locally, and never needs a shuffle.
"""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from medical_assets.analytics.validation import with_validation
from medical_assets.dicom.export import EXPORT_TABLES as DICOM_EXPORT_TABLES
from medical_assets.dicom.export import export_deidentified
from medical_assets.dicom.tables import TABLES as DICOM_TABLES
from medical_assets.engine import multitable
from medical_assets.engine.jobs import TASK_OPTIONS, ProgressReport, cluster_cpus
from medical_assets.engine.progress import progress_counter, run_with_progress
from medical_assets.engine.sinks import StagedTablesDatasink
from medical_assets.hl7.tables import TABLES as HL7_TABLES
from medical_assets.privacy.hl7_deid import DEID_HL7_TABLES, deidentify_hl7_tables, patients_over_89
from medical_assets.privacy.keys import KeyRing, PseudonymKey
from medical_assets.privacy.pseudonyms import Pseudonymizer, ReversibleTokens
from medical_assets.storage import Location

PartGroup = dict[str, Location]  # table name -> one part file
GroupTransform = Callable[[dict[str, pa.Table]], Mapping[str, pa.Table]]


def phi_part_groups(zone: Location, tables: Sequence[str], schemas: Mapping[str, pa.Schema]) -> list[PartGroup]:
    """The co-written part files of `tables`, grouped by part name (empty placeholder parts skipped)."""
    groups: dict[str, PartGroup] = {}
    for table in tables:
        folder = zone.child(table)
        selector = pafs.FileSelector(folder.path, allow_not_found=True)
        for info in zone.filesystem.get_file_info(selector):
            name = posixpath.basename(info.path)
            if info.type == pafs.FileType.File and name.startswith("part-") and name[5:-8].isdigit():
                groups.setdefault(name, {})[table] = Location(zone.filesystem, info.path)
    return [groups[name] for name in sorted(groups)]


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
    return run_group_job(groups, HL7_TABLES, transform, targets, schemas, report, slice_messages=HL7_SLICE_MESSAGES)


def _patients_over_89_in(groups: list[PartGroup], filesystem: pafs.FileSystem) -> frozenset[str]:
    """Every patient who is 90+ at a message of any part, found in the workers: Safe Harbor withholds
    their birth date in every message, and a task sees only its own parts. The IDs pass through the
    driver and to the de-identification tasks (Ray's object store), where PHI rows already travel."""
    paths = [group["hl7_messages"].path for group in groups if "hl7_messages" in group]
    if not paths:
        return frozenset()
    found = ray.data.from_items([{"path": path} for path in paths], override_num_blocks=min(len(paths), cluster_cpus()))
    found = found.map_batches(_patients_over_89_batch, fn_kwargs={"filesystem": filesystem}, batch_format="pyarrow", batch_size=None)
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
    groups, input_schemas, transform, targets, schemas, report, first_part: int = 0, slice_messages: int | None = None
) -> dict[str, int]:
    """`transform` of each part group in the workers, its tables staged under `targets` (parts
    numbered from `first_part`); rows per table. With `slice_messages`, a group is transformed a few
    whole source files at a time (see `file_slices`)."""
    if not groups:
        return {"files": 0}
    packed_schema = multitable.packed_schema(schemas)
    datasource = PartGroupsDatasource(groups, input_schemas, transform, packed_schema, slice_messages)
    dataset = ray.data.read_datasource(
        datasource, override_num_blocks=min(len(groups), cluster_cpus()), ray_remote_args=TASK_OPTIONS
    )
    counter = progress_counter()
    sink = StagedTablesDatasink(targets, schemas, counter, first_part)
    run_with_progress(lambda: dataset.write_datasink(sink, ray_remote_args=TASK_OPTIONS), counter, report)
    return dict(sink.totals)


class PartGroupsDatasource(Datasource):
    """Read tasks that each read whole part groups in the worker and yield the transform's tables, packed."""

    def __init__(
        self,
        groups: list[PartGroup],
        input_schemas,
        transform: GroupTransform,
        packed_schema: pa.Schema,
        slice_messages: int | None = None,
    ):
        super().__init__()
        self._groups = groups
        self._slice_messages = slice_messages
        self._input_schemas = dict(input_schemas)
        self._transform = transform
        self._packed_schema = packed_schema

    def get_name(self) -> str:
        return "PhiPartGroups"

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context=None) -> list[ReadTask]:
        count = max(1, min(parallelism, len(self._groups)))
        buckets = [self._groups[index::count] for index in range(count)]
        return [
            ReadTask(
                _make_read_fn(bucket, self._input_schemas, self._transform, self._packed_schema, self._slice_messages),
                BlockMetadata(num_rows=len(bucket), size_bytes=None, input_files=None, exec_stats=None),
                schema=self._packed_schema,
                per_task_row_limit=per_task_row_limit,
            )
            for bucket in buckets
        ]


def _make_read_fn(bucket, input_schemas, transform, packed_schema, slice_messages: int | None):
    def read() -> Iterable[pa.Table]:
        for group in bucket:
            tables = {
                name: _read_part(group[name], schema) if name in group else schema.empty_table()
                for name, schema in input_schemas.items()
            }
            label = posixpath.basename(next(iter(group.values())).path)
            slices = [tables] if slice_messages is None else file_slices(tables, "hl7_messages", slice_messages)
            for tables_slice in slices:
                yield multitable.pack(label, transform(tables_slice), packed_schema)

    return read


# Messages de-identified at once. A part group holds up to 64 MiB of HL7 (250,000 messages); taken
# whole, its rows, their Python values and the output tables held a worker near 1.2 GB.
HL7_SLICE_MESSAGES = 50_000


def file_slices(tables: Mapping[str, pa.Table], counted: str, max_rows: int) -> Iterator[dict[str, pa.Table]]:
    """`tables` (which share a `source_file` column) cut into slices of whole files, in file order,
    each with at most `max_rows` rows of table `counted` unless one file alone has more. Every row
    is in exactly one slice; rows without a file go with the first."""
    files: dict[str, int] = {}  # file -> rows of `counted`, in the order files first appear
    for name, table in tables.items():
        if "source_file" not in table.column_names or table.num_rows == 0:
            continue
        column = table.column("source_file")
        if name == counted:
            for entry in pc.value_counts(column.combine_chunks()).to_pylist():
                if entry["values"] is not None:
                    files[entry["values"]] = files.get(entry["values"], 0) + entry["counts"]
        else:
            for value in pc.unique(column).to_pylist():
                if value is not None:
                    files.setdefault(value, 0)
    cuts: list[list[str]] = [[]]
    rows = 0
    for file_name, file_rows in files.items():
        if cuts[-1] and rows + file_rows > max_rows:
            cuts.append([])
            rows = 0
        cuts[-1].append(file_name)
        rows += file_rows
    if len(cuts) == 1:
        yield dict(tables)
        return
    for index, cut in enumerate(cuts):
        chosen = pa.array(cut, pa.string())
        yield {name: _rows_of_files(table, chosen, with_unfiled=index == 0) for name, table in tables.items()}


def _rows_of_files(table: pa.Table, files: pa.Array, with_unfiled: bool) -> pa.Table:
    if "source_file" not in table.column_names:
        return table if with_unfiled else table.schema.empty_table()
    column = table.column("source_file")
    keep = pc.is_in(column, value_set=files)
    if with_unfiled:
        keep = pc.or_(keep, pc.is_null(column))
    return table.filter(keep)

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
        with source_filesystem.open_input_stream(path) as stream:
            return stream.read()

    def write_output(relative_path: str, data: bytes) -> None:
        deid_files.child(relative_path).write_bytes_atomically(data)

    return export_deidentified(
        tables["dicom_images"], tables["dicom_thumbnails"], read_source, write_output, Pseudonymizer(key), profile
    )


__all__ = ["DEID_HL7_TABLES", "DICOM_EXPORT_TABLES", "deidentify_hl7", "export_dicom", "phi_part_groups"]
