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
from medical_assets.engine.jobs import TASK_OPTIONS, ProgressReport, cluster_cpus
from medical_assets.engine.progress import progress_counter, run_with_progress
from medical_assets.engine.memory import WORKER_RELEASE_ABOVE, release_memory
from medical_assets.hl7.tables import TABLES as HL7_TABLES
from medical_assets.privacy import vocabulary
from medical_assets.privacy.hl7_deid import (
    DEID_HL7_TABLES,
    census_of_ages,
    deidentify_hl7_tables,
    vocabulary_evidence,
)
from medical_assets.privacy.patients import dicom_census_of_ages, dicom_patient_identity, earliest_years, merge_ages
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


@dataclass(frozen=True)
class Census:
    """What every part group's de-identification must know of all the data (a task sees only its
    own parts): the patients who are 90+ at any HL7 or DICOM event, with the earliest year they
    are; and the vocabulary of every text column (`privacy.vocabulary`)."""

    over_89: dict[str, int | None]
    vocabulary: dict[str, frozenset[str]]


def take_census(phi: Location, min_patients: int, scope: str, hl7_vocabulary: bool = True) -> Census:
    """One Ray job over every PHI part: ages (HL7 messages and DICOM images) and vocabulary
    evidence, combined in the driver. What passes through the driver and the object store is
    PHI (patient identities of old patients; at most min_patients - 1 identities per rare value),
    where PHI rows already travel."""
    hl7_parts = [
        group_part_name(group) for group in phi_part_groups(phi, list(HL7_TABLES), HL7_TABLES) if "hl7_messages" in group
    ]
    dicom_parts = [group["dicom_images"].path for group in phi_part_groups(phi, ["dicom_images"], DICOM_TABLES)]
    items = [{"kind": "hl7", "path": name} for name in hl7_parts]
    items += [{"kind": "dicom_images", "path": path} for path in dicom_parts]
    if not items:
        return Census({}, {})
    found = ray.data.from_items(items, override_num_blocks=min(len(items), cluster_cpus()))
    found = found.map_batches(
        _census_batch,
        fn_kwargs={"phi": phi, "min_patients": min_patients, "scope": scope, "hl7_vocabulary": hl7_vocabulary},
        batch_format="pyarrow",
        batch_size=None,
    )
    found = pa.concat_tables([_CENSUS.empty_table(), *ray.get(found.to_arrow_refs())])
    is_age = pc.equal(found.column("kind"), "age")
    ages = found.filter(is_age)
    over_89 = earliest_years(zip(ages.column("patient").to_pylist(), ages.column("year").to_pylist()))
    evidence = found.filter(pc.invert(is_age)).select(vocabulary.EVIDENCE_SCHEMA.names)
    return Census(over_89, vocabulary.without_identifiers(vocabulary.merge([evidence], min_patients)))


# What the 90+ census reads of hl7_messages.
_AGE_COLUMNS = ["patient_id", "patient_id_issuer", "sending_facility", "patient_birth_date", "message_datetime"]

# What a census task returns: its old patients (kind "age": patient, year) and its vocabulary
# evidence (kind "evidence": column, value, patient; `privacy.vocabulary.evidence`).
_CENSUS = pa.schema(
    [
        pa.field("kind", pa.string()),
        pa.field("column", pa.string()),
        pa.field("value", pa.string()),
        pa.field("patient", pa.string()),
        pa.field("year", pa.int32()),
    ]
)


def _census_batch(batch: pa.Table, phi: Location, min_patients: int, scope: str, hl7_vocabulary: bool) -> pa.Table:
    ages: dict[str, int | None] = {}
    evidence = []
    for kind, path in zip(batch.column("kind").to_pylist(), batch.column("path").to_pylist()):
        if kind == "dicom_images":
            images = pq.read_table(path, filesystem=phi.filesystem)
            ages = merge_ages(ages, dicom_census_of_ages(images, scope))
            evidence.append(_dicom_vocabulary_evidence(images, min_patients, scope))
            continue
        name = path  # an HL7 part name: read that part of every HL7 table
        if not hl7_vocabulary:  # the DICOM export needs only who is 90+
            messages = pq.read_table(phi.child("hl7_messages", name).path, filesystem=phi.filesystem, columns=_AGE_COLUMNS)
            ages = merge_ages(ages, census_of_ages(messages, scope))
            continue
        tables = {
            table: pq.read_table(phi.child(table, name).path, filesystem=phi.filesystem, schema=schema)
            for table, schema in HL7_TABLES.items()
            if table != "hl7_errors" and phi.child(table, name).exists()
        }
        if "hl7_messages" not in tables:
            continue
        ages = merge_ages(ages, census_of_ages(tables["hl7_messages"], scope))
        evidence.append(vocabulary_evidence(tables, min_patients, scope))
    age_rows = pa.table(
        {
            "kind": pa.array(["age"] * len(ages), pa.string()),
            "column": pa.nulls(len(ages), pa.string()),
            "value": pa.nulls(len(ages), pa.string()),
            "patient": pa.array(list(ages), pa.string()),
            "year": pa.array(list(ages.values()), pa.int32()),
        },
        schema=_CENSUS,
    )
    evidence_rows = [
        part.append_column("year", pa.nulls(part.num_rows, pa.int32()))
        .add_column(0, "kind", pa.array(["evidence"] * part.num_rows, pa.string()))
        .select(_CENSUS.names)
        .cast(_CENSUS)
        for part in evidence
    ]
    return pa.concat_tables([age_rows, *evidence_rows])


def _dicom_vocabulary_evidence(images: pa.Table, min_patients: int, scope: str) -> pa.Table:
    columns = {name: images.column(name).to_pylist() for name in ("patient_id", "patient_id_issuer", "institution_name")}
    patients = pa.array(
        [dicom_patient_identity(*row, scope) for row in zip(*columns.values())], pa.string()
    )
    parts = [
        vocabulary.evidence(f"dicom_images.{column}", images.column(column).combine_chunks(), patients, min_patients)
        for column in DICOM_VOCABULARY_COLUMNS
        if column in images.column_names
    ]
    return pa.concat_tables(parts) if parts else vocabulary.EVIDENCE_SCHEMA.empty_table()


def deidentify_hl7(
    phi: Location,
    targets: Mapping[str, Location],
    schemas: Mapping[str, pa.Schema],
    ring: KeyRing,
    profile: str,
    reversible_tokens: bool,
    report: ProgressReport,
    census: Census | None = None,
    min_patients: int = 11,
    scope: str = "issuer",
) -> dict[str, int]:
    """The de-identified HL7 tables, staged under `targets` with `schemas` (which carry the compliance
    metadata). Besides the rows per table, the counts hold `withheld_key(table, column, reason)`
    entries: the values withheld."""
    groups = phi_part_groups(phi, list(HL7_TABLES), HL7_TABLES)
    census = census if census is not None else take_census(phi, min_patients, scope)
    transform = functools.partial(
        _deidentify_hl7_group,
        ring=ring,
        profile=profile,
        reversible_tokens=reversible_tokens,
        census=census,
        min_patients=min_patients,
        scope=scope,
    )
    return run_group_job(groups, HL7_TABLES, transform, targets, schemas, report)


# Counts of withheld values travel beside the rows per table, keyed `withheld<US>table<US>column<US>reason`.
_WITHHELD_PREFIX = "withheld\x1f"


def withheld_key(table: str, column: str, reason: str) -> str:
    return _WITHHELD_PREFIX + "\x1f".join([table, column, reason])


def withheld_counts(counts: Mapping[str, int]) -> list[dict]:
    """The withheld entries of a group job's counts, as rows of the privacy report."""
    rows = []
    for key, values in sorted(counts.items()):
        if key.startswith(_WITHHELD_PREFIX):
            table, column, reason = key.removeprefix(_WITHHELD_PREFIX).split("\x1f")
            rows.append({"table": table, "column": column, "reason": reason, "values": values})
    return rows


def export_dicom(
    phi: Location,
    source_filesystem: pafs.FileSystem,
    deid_files: Location,
    targets: Mapping[str, Location],
    schemas: Mapping[str, pa.Schema],
    key: PseudonymKey,
    profile: str,
    report: ProgressReport,
    census: Census | None = None,
    scope: str = "issuer",
) -> dict[str, int]:
    """De-identified DICOM files under `deid_files`, and the tables of `dicom.export.EXPORT_TABLES`.
    `census` names the patients 90+ at any HL7 or DICOM event (their PatientAge goes) and the vocabulary."""
    groups = phi_part_groups(phi, ["dicom_images", "dicom_thumbnails"], DICOM_TABLES)
    census = census or Census({}, {})
    transform = functools.partial(
        _export_dicom_group, key=key, profile=profile, source_filesystem=source_filesystem, deid_files=deid_files,
        over_89=frozenset(census.over_89), vocabulary=census.vocabulary, scope=scope,
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


# The entry of a transform's output that holds counts of withheld values, not a table.
_WITHHELD_ENTRY = "_withheld"
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
        written = dict(tables.get(_WITHHELD_ENTRY, {}))  # counts a transform reports beside its tables
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
            self.progress.report.remote(number, {**written, "files": 1})
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
    tables: dict[str, pa.Table], ring: KeyRing, profile: str, reversible_tokens: bool, census: Census,
    min_patients: int, scope: str,
) -> dict[str, pa.Table]:
    reversible = ReversibleTokens(ring) if reversible_tokens else None
    withheld: dict[tuple[str, str, str], int] = {}
    output = deidentify_hl7_tables(
        tables, Pseudonymizer(ring.current), profile, reversible, census.over_89, census.vocabulary, min_patients,
        scope, withheld,
    )
    # A part group holds whole files, so each message's child rows are here to validate it against.
    output["hl7_messages"] = with_validation(output["hl7_messages"], tables)
    output[_WITHHELD_ENTRY] = {withheld_key(*key): count for key, count in withheld.items()}
    return output


def _export_dicom_group(
    tables: dict[str, pa.Table], key: PseudonymKey, profile: str, source_filesystem: pafs.FileSystem, deid_files: Location,
    over_89: frozenset[str] = frozenset(), vocabulary: Mapping[str, frozenset[str]] | None = None, scope: str = "issuer",
) -> dict[str, pa.Table]:
    def read_source(path: str) -> bytes:
        return read_whole_file(source_filesystem, path)

    def write_output(relative_path: str, data: bytes) -> None:
        deid_files.child(relative_path).write_bytes_atomically(data)

    return export_deidentified(
        tables["dicom_images"], tables["dicom_thumbnails"], read_source, write_output, Pseudonymizer(key), profile,
        vocabulary=dicom_vocabulary(vocabulary or {}), patients_over_89=over_89, patient_id_scope=scope,
    )


def dicom_vocabulary(vocabulary: Mapping[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    """The census's vocabulary of dicom_images columns, by the DICOM keyword each column reads."""
    return {
        keyword: vocabulary[f"dicom_images.{column}"]
        for column, keyword in DICOM_VOCABULARY_COLUMNS.items()
        if f"dicom_images.{column}" in vocabulary
    }


# PHI dicom_images columns whose values a de-identified DICOM file may keep only as vocabulary.
DICOM_VOCABULARY_COLUMNS = {
    "study_description": "StudyDescription",
    "series_description": "SeriesDescription",
    "body_part_examined": "BodyPartExamined",
    "institution_name": "InstitutionName",
    "manufacturer": "Manufacturer",
    "manufacturer_model_name": "ManufacturerModelName",
}


__all__ = ["DEID_HL7_TABLES", "DICOM_EXPORT_TABLES", "deidentify_hl7", "export_dicom", "phi_part_groups"]
