"""Ray jobs of the de-identified zone: the census of every PHI part, then the HL7 de-identification
and the DICOM export, a part group per step of a task (see `part_groups`).
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from medical_assets.analytics.validation import with_validation
from medical_assets.dicom.export import export_deidentified
from medical_assets.dicom.tables import TABLES as DICOM_TABLES
from medical_assets.engine.identifier_parts import KeepIdentifiers
from medical_assets.engine.part_groups import (
    WITHHELD_ENTRY,
    PartGroup,
    group_from_paths,
    group_part_name,
    group_paths,
    groups_size_bytes,
    phi_part_groups,
    run_group_job,
)
from medical_assets.engine.progress import ProgressReport
from medical_assets.engine.tasks import IN_PROCESS_PARQUET_BYTES, map_tables, runs_here
from medical_assets.hl7.tables import TABLES as HL7_TABLES
from medical_assets.privacy import vocabulary
from medical_assets.privacy.hl7_deid import deidentify_hl7_tables, vocabulary_evidence
from medical_assets.privacy.hl7_patients import census_of_ages, patient_identities
from medical_assets.privacy.keys import KeyRing, PseudonymKey
from medical_assets.privacy.patients import dicom_census_of_ages, dicom_patient_identity, earliest_years
from medical_assets.privacy.pseudonyms import Pseudonymizer, ReversibleTokens
from medical_assets.storage import Location, read_whole_file


@dataclass(frozen=True)
class Census:
    """What every part group's de-identification must know of all the data (a task sees only its
    own parts): the patients who are 90+ at any HL7 or DICOM event, with the earliest year they
    are; and the vocabulary of every text column (`privacy.vocabulary`)."""

    over_89: dict[str, int | None]
    vocabulary: dict[str, frozenset[str]]


def take_census(phi: Location, min_patients: int, scope: str) -> Census:
    """One Ray job over every PHI part: ages (HL7 messages and DICOM images) and vocabulary
    evidence, combined in the driver. What passes through the driver and the object store is
    PHI (patient identities of old patients; at most min_patients - 1 identities per rare value),
    where PHI rows already travel. (`census_parts.census_by_part` keeps each part's share.)"""
    hl7_groups = [group for group in phi_part_groups(phi, list(HL7_TABLES), HL7_TABLES) if "hl7_messages" in group]
    dicom_groups = phi_part_groups(phi, ["dicom_images"], DICOM_TABLES)
    items = [{"kind": "hl7", "files": group_paths(group)} for group in hl7_groups]
    items += [{"kind": "dicom", "files": group_paths(group)} for group in dicom_groups]
    if not items:
        return Census({}, {})
    found = map_tables(
        items,
        _census_batch,
        {"phi": phi, "min_patients": min_patients, "scope": scope},
        here=runs_here(groups_size_bytes([*hl7_groups, *dicom_groups]), IN_PROCESS_PARQUET_BYTES),
    )
    return census_of(pa.concat_tables([CENSUS_ROWS.empty_table(), *found]), min_patients)


def census_of(rows: pa.Table, min_patients: int) -> Census:
    """The census from the parts' census rows (`part_census_rows`; "patient" rows are not used)."""
    kinds = rows.column("kind")
    ages = rows.filter(pc.equal(kinds, "age"))
    over_89 = earliest_years(zip(ages.column("patient").to_pylist(), ages.column("year").to_pylist()))
    evidence = rows.filter(pc.equal(kinds, "evidence")).select(vocabulary.EVIDENCE_SCHEMA.names)
    return Census(over_89, vocabulary.without_identifiers(vocabulary.merge([evidence], min_patients)))


# What a part's census is: its old patients (kind "age": patient, year), its vocabulary evidence
# (kind "evidence": column, value, patient; `privacy.vocabulary.evidence`) and, for an HL7 part,
# every patient it holds (kind "patient"), which says what a change of the census touches.
CENSUS_ROWS = pa.schema(
    [
        pa.field("kind", pa.string()),
        pa.field("column", pa.string()),
        pa.field("value", pa.string()),
        pa.field("patient", pa.string()),
        pa.field("year", pa.int32()),
    ]
)


def _census_batch(batch: pa.Table, phi: Location, min_patients: int, scope: str) -> pa.Table:
    rows = [
        part_census_rows(group_from_paths(phi, files), kind, min_patients, scope)
        for kind, files in zip(batch.column("kind").to_pylist(), batch.column("files").to_pylist())
    ]
    return pa.concat_tables([CENSUS_ROWS.empty_table(), *rows])


def part_census_rows(group: PartGroup, kind: str, min_patients: int, scope: str) -> pa.Table:
    """The census rows of one part group (`CENSUS_ROWS`): `kind` "hl7" reads its HL7 tables' parts,
    "dicom" its dicom_images part."""
    evidence, patients = [], []
    if kind == "dicom":
        part = group["dicom_images"]
        images = pq.read_table(part.path, filesystem=part.filesystem)
        ages = dicom_census_of_ages(images, scope)
        evidence.append(_dicom_vocabulary_evidence(images, min_patients, scope))
    else:
        tables = {
            table: pq.read_table(group[table].path, filesystem=group[table].filesystem, schema=schema)
            for table, schema in HL7_TABLES.items()
            if table != "hl7_errors" and table in group
        }
        if "hl7_messages" not in tables:
            return CENSUS_ROWS.empty_table()
        ages = census_of_ages(tables["hl7_messages"], scope)
        evidence.append(vocabulary_evidence(tables, min_patients, scope))
        patients.append(_patient_rows(tables["hl7_messages"], scope))
    age_rows = pa.table(
        {
            "kind": pa.array(["age"] * len(ages), pa.string()),
            "column": pa.nulls(len(ages), pa.string()),
            "value": pa.nulls(len(ages), pa.string()),
            "patient": pa.array(list(ages), pa.string()),
            "year": pa.array(list(ages.values()), pa.int32()),
        },
        schema=CENSUS_ROWS,
    )
    evidence_rows = [
        part.append_column("year", pa.nulls(part.num_rows, pa.int32()))
        .add_column(0, "kind", pa.array(["evidence"] * part.num_rows, pa.string()))
        .select(CENSUS_ROWS.names)
        .cast(CENSUS_ROWS)
        for part in evidence
    ]
    return pa.concat_tables([age_rows, *evidence_rows, *patients])


def _patient_rows(messages: pa.Table, scope: str) -> pa.Table:
    """Every distinct patient identity of a part's messages, as "patient" rows."""
    patients = pc.unique(patient_identities(messages, scope)).drop_null().cast(pa.string())
    count = len(patients)
    return pa.table(
        {
            "kind": pa.array(["patient"] * count, pa.string()),
            "column": pa.nulls(count, pa.string()),
            "value": pa.nulls(count, pa.string()),
            "patient": patients,
            "year": pa.nulls(count, pa.int32()),
        },
        schema=CENSUS_ROWS,
    )


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
    parts: Collection[str] | None = None,
    by_part: dict[str, dict[str, int]] | None = None,
    keep_identifiers: KeepIdentifiers | None = None,
) -> dict[str, int]:
    """The de-identified HL7 tables, staged under `targets` with `schemas` (which carry the compliance
    metadata): of every PHI part, or of the part names in `parts`. Besides the rows per table, the
    counts hold `withheld_key(table, column, reason)` entries: the values withheld; `by_part`
    receives them per part. `keep_identifiers`: the parts whose leak-check identifiers the same tasks
    collect and keep, while they hold the tables (`identifier_parts`)."""
    groups = phi_part_groups(phi, list(HL7_TABLES), HL7_TABLES)
    if parts is not None:
        groups = [group for group in groups if group_part_name(group) in parts]
    census = census if census is not None else take_census(phi, min_patients, scope)
    transform = functools.partial(
        _deidentify_hl7_group,
        ring=ring,
        profile=profile,
        reversible_tokens=reversible_tokens,
        census=census,
        min_patients=min_patients,
        scope=scope,
        keep_identifiers=keep_identifiers,
    )
    return run_group_job(groups, HL7_TABLES, transform, targets, schemas, report, by_part=by_part, named=True)


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
    phi: Location, source_filesystem: pafs.FileSystem, deid_files: Location,
    targets: Mapping[str, Location], schemas: Mapping[str, pa.Schema],
    key: PseudonymKey, profile: str, report: ProgressReport, census: Census | None = None, scope: str = "issuer",
    parts: Collection[str] | None = None, by_part: dict[str, dict[str, int]] | None = None,
) -> dict[str, int]:
    """De-identified DICOM files under `deid_files`, and the tables of `dicom.export.EXPORT_TABLES`:
    of every PHI part, or of the part names in `parts` (`by_part` receives the rows per part).
    `census` names the patients 90+ at any HL7 or DICOM event (their PatientAge goes) and the vocabulary."""
    groups = phi_part_groups(phi, ["dicom_images", "dicom_thumbnails"], DICOM_TABLES)
    if parts is not None:
        groups = [group for group in groups if group_part_name(group) in parts]
    census = census or Census({}, {})
    transform = functools.partial(
        _export_dicom_group, key=key, profile=profile, source_filesystem=source_filesystem, deid_files=deid_files,
        over_89=frozenset(census.over_89), vocabulary=census.vocabulary, scope=scope,
    )
    return run_group_job(groups, DICOM_TABLES, transform, targets, schemas, report, by_part=by_part)


def _deidentify_hl7_group(
    tables: dict[str, pa.Table], ring: KeyRing, profile: str, reversible_tokens: bool, census: Census,
    min_patients: int, scope: str, keep_identifiers: KeepIdentifiers | None = None, part_name: str = "",
) -> dict[str, pa.Table]:
    if keep_identifiers is not None:
        keep_identifiers.keep(part_name, tables)
    reversible = ReversibleTokens(ring) if reversible_tokens else None
    withheld: dict[tuple[str, str, str], int] = {}
    output = deidentify_hl7_tables(
        tables, Pseudonymizer(ring.current), profile, reversible, census.over_89, census.vocabulary, min_patients,
        scope, withheld,
    )
    # A part group holds whole files, so each message's child rows are here to validate it against.
    output["hl7_messages"] = with_validation(output["hl7_messages"], tables)
    output[WITHHELD_ENTRY] = {withheld_key(*key): count for key, count in withheld.items()}
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

