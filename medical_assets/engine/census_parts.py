"""The census part by part, kept in the PHI zone, so that a night reads only the parts it has not seen.

A part's contribution to the census (its patients 90+, its vocabulary evidence) and its footprint
(every patient and every text value it holds) depend only on the part's bytes and on the census
settings. Each is computed once, in a worker, and kept under `phi/_census/parts/`, named by a
digest of the part's Parquet footers, the settings and our code; the next run reads it back
instead of the part. The footprint says which de-identified parts a change of the census touches
(`parts_touched`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medical_assets.engine.deid_jobs import CENSUS_ROWS, Census, census_of, part_census_rows
from medical_assets.engine.part_groups import (
    group_from_paths,
    group_part_name,
    group_paths,
    groups_size_bytes,
    kept_file_name,
    part_digest,
    phi_part_groups,
    prune_cache,
)
from medical_assets.engine.tasks import IN_PROCESS_PARQUET_BYTES, map_tables, runs_here
from medical_assets.hl7.tables import TABLES as HL7_TABLES
from medical_assets.step_records import package_fingerprint
from medical_assets.storage import (
    Location,
    TablePublication,
    restrict_to_owner,
    size_bytes,
    table_files,
    write_table_atomically,
)

CACHE_FOLDER = ("_census", "parts")  # phi/_census/parts/<digest>.parquet and <digest>.patients.parquet

# A part's census rows: "age" (patient, year), "evidence" (column, value, patient) as
# `privacy.vocabulary.evidence` gives it, and "patient" (every patient identity the part holds).
# Kept census files that together hold less are read back in the run's process: a night in which a
# patient turns 90 reads every part's kept "patient" rows (8 to 15 bytes a patient) to find the
# parts that hold them, at 100 MB a second or more, where starting Ray for it cost 6 s of a night.
KEPT_READ_IN_PROCESS_BYTES = 256 << 20
PART_CENSUS = pa.schema([pa.field("part", pa.string()), *CENSUS_ROWS])


def census_by_part(
    phi: Location, min_patients: int, scope: str, patients: Collection[str] | None = ()
) -> tuple[pa.Table, dict[str, str]]:
    """Every part's census rows (`PART_CENSUS`; `part` is "hl7:<name>" or "dicom:<name>"), and the
    digest of each HL7 part group by name. Parts seen before are read from the cache, the others
    computed in workers, which add them to it; the cache keeps only the current parts. Of the
    "patient" rows (every patient of every part: as many as the history has patients), only those
    of `patients` come back (None: all). Without them, the kept parts' rows are few (the patients
    90+ and the vocabulary evidence): this process reads them itself, and a Ray job runs only for
    the parts not seen before."""
    hl7_groups = [g for g in phi_part_groups(phi, list(HL7_TABLES), HL7_TABLES) if "hl7_messages" in g]
    dicom_groups = phi_part_groups(phi, ["dicom_images"], {})
    salt = f"{min_patients}\x1f{scope}\x1f{package_fingerprint()}"
    items, digests, groups_by_cache = [], {}, {}
    for kind, groups in (("hl7", hl7_groups), ("dicom", dicom_groups)):
        for group in groups:
            name = group_part_name(group)
            digest = part_digest(group)
            if kind == "hl7":
                digests[name] = digest
            cache_name = kept_file_name(kind, name, digest, salt, suffix=".parquet")
            items.append({"kind": kind, "name": name, "cache": cache_name, "files": group_paths(group)})
            groups_by_cache[cache_name] = group
    cache = phi.child(*CACHE_FOLDER)
    kept = prune_cache(cache, {name for item in items for name in (item["cache"], _patients_file(item["cache"]))})
    rows = [PART_CENSUS.empty_table()]
    if patients is not None and not patients:
        unread = []
        for item in items:
            try:
                if item["cache"] not in kept:
                    raise FileNotFoundError(item["cache"])
                rows.append(_read_kept(cache.child(item["cache"])))
            except (FileNotFoundError, OSError, pa.ArrowInvalid):  # not kept, or damaged: computed again
                unread.append(item)
        items = unread
    if items:
        wanted = None if patients is None else sorted(patients)
        # A part whose census is kept is only read back (its kept files: a night looking for the
        # parts that hold a patient who turned 90), a part not seen before is computed from its tables.
        computed = [groups_by_cache[item["cache"]] for item in items if not _both_kept(item["cache"], kept)]
        read_back = [cache.child(name) for item in items if _both_kept(item["cache"], kept)
                     for name in (item["cache"], _patients_file(item["cache"]))]
        here = runs_here(groups_size_bytes(computed), IN_PROCESS_PARQUET_BYTES) and runs_here(
            size_bytes(read_back), KEPT_READ_IN_PROCESS_BYTES
        )
        rows += map_tables(
            items, _part_census_batch, {"phi": phi, "min_patients": min_patients, "scope": scope, "patients": wanted},
            here=here,
        )
    restrict_to_owner(cache)  # PHI: owner-only, as the rest of the zone
    return pa.concat_tables(rows), digests


def _both_kept(cache_name: str, kept: set[str]) -> bool:
    return cache_name in kept and _patients_file(cache_name) in kept


def _patients_file(cache_name: str) -> str:
    """A part's kept "patient" rows, beside its other census rows (`cache_name`), apart: those are
    as many as its patients, the others few."""
    return cache_name.removesuffix(".parquet") + ".patients.parquet"


def _read_kept(location: Location) -> pa.Table:
    return pq.read_table(location.path, filesystem=location.filesystem, schema=PART_CENSUS)


def _part_census_batch(batch: pa.Table, phi: Location, min_patients: int, scope: str, patients: list[str] | None) -> pa.Table:
    tables = []
    for kind, name, cache_name, files in zip(*(batch.column(c).to_pylist() for c in ("kind", "name", "cache", "files"))):
        kept, kept_patients = phi.child(*CACHE_FOLDER, cache_name), phi.child(*CACHE_FOLDER, _patients_file(cache_name))
        try:
            rows = _read_kept(kept)
            if patients is None or patients:
                rows = pa.concat_tables([rows, _read_kept(kept_patients)])
        except (FileNotFoundError, OSError, pa.ArrowInvalid):
            rows = part_census_rows(group_from_paths(phi, files), kind, min_patients, scope)
            rows = rows.append_column("part", pa.array([f"{kind}:{name}"] * rows.num_rows, pa.string()))
            rows = rows.select(PART_CENSUS.names).cast(PART_CENSUS)
            is_patient = pc.equal(rows.column("kind"), "patient")
            # The patients first: the other file's presence says the part's census is kept whole.
            write_table_atomically(rows.filter(is_patient), kept_patients)
            write_table_atomically(rows.filter(pc.invert(is_patient)), kept)
        if patients is not None:
            wanted = pc.is_in(rows.column("patient"), value_set=pa.array(patients, pa.string()))
            rows = rows.filter(pc.or_(pc.not_equal(rows.column("kind"), "patient"), pc.fill_null(wanted, False)))
        tables.append(rows)
    return pa.concat_tables([PART_CENSUS.empty_table(), *tables])


# The census the published de-identified parts were made with: phi/_census/published.parquet.
PUBLISHED_FILE = ("_census", "published.parquet")
_PUBLISHED = CENSUS_ROWS  # kind "age" (patient, year) or "vocabulary" (column, value)


def save_published_census(phi: Location, census: Census) -> None:
    """Keep the census the staged parts were made with, for the next run's `parts_touched`."""
    patients = list(census.over_89)
    words = [(column, value) for column, values in sorted(census.vocabulary.items()) for value in sorted(values)]
    table = pa.table(
        {
            "kind": ["age"] * len(patients) + ["vocabulary"] * len(words),
            "column": [None] * len(patients) + [column for column, _ in words],
            "value": [None] * len(patients) + [value for _, value in words],
            "patient": patients + [None] * len(words),
            "year": list(census.over_89.values()) + [None] * len(words),
        },
        schema=_PUBLISHED,
    )
    write_table_atomically(table, phi.child(*PUBLISHED_FILE))


def load_published_census(phi: Location) -> Census | None:
    location = phi.child(*PUBLISHED_FILE)
    if not location.exists():
        return None
    table = pq.read_table(location.path, filesystem=location.filesystem, schema=_PUBLISHED)
    ages = table.filter(pc.equal(table.column("kind"), "age"))
    words = table.filter(pc.equal(table.column("kind"), "vocabulary"))
    vocabulary: dict[str, set[str]] = {}
    for column, value in zip(words.column("column").to_pylist(), words.column("value").to_pylist()):
        vocabulary.setdefault(column, set()).add(value)
    over_89 = dict(zip(ages.column("patient").to_pylist(), ages.column("year").to_pylist()))
    return Census(over_89, {column: frozenset(values) for column, values in vocabulary.items()})


_ABSENT = object()


def patients_changed(before: Census, after: Census) -> set[str]:
    """The patients whose 90+ status or year differs from `before` to `after`."""
    return {
        patient for patient in before.over_89.keys() | after.over_89.keys()
        if before.over_89.get(patient, _ABSENT) != after.over_89.get(patient, _ABSENT)
    }


def parts_touched(rows: pa.Table, before: Census, after: Census) -> set[str]:
    """The HL7 parts whose de-identification a change of the census from `before` to `after` alters:
    those holding a patient whose 90+ status or year changed, or a value that entered or left a
    column's vocabulary (`rows`: every part's census rows, `census_by_part`, with the "patient"
    rows of at least the `patients_changed`)."""
    patients = sorted(patients_changed(before, after))
    words = [
        f"{column}\x1f{value}"
        for column in before.vocabulary.keys() | after.vocabulary.keys()
        for value in before.vocabulary.get(column, frozenset()) ^ after.vocabulary.get(column, frozenset())
    ]
    kinds = rows.column("kind")
    touched = []
    if patients:
        holds = pc.and_(pc.equal(kinds, "patient"), pc.is_in(rows.column("patient"), pa.array(patients, pa.string())))
        touched += rows.filter(holds).column("part").to_pylist()
    if words:
        keys = pc.binary_join_element_wise(rows.column("column"), rows.column("value"), "\x1f")
        holds = pc.and_(pc.equal(kinds, "evidence"), pc.is_in(keys, pa.array(words, pa.string())))
        touched += rows.filter(holds).column("part").to_pylist()
    return {part.removeprefix("hl7:") for part in touched if part.startswith("hl7:")}


@dataclass(frozen=True)
class PartPlan:
    """Which HL7 parts a run de-identifies and which it carries over from the last publication."""

    census: Census
    digests: dict[str, str]  # HL7 part name -> digest of its PHI parts
    carried: list[str]
    computed: list[str]
    why: str  # for the run's log: why these parts are computed


def plan_hl7_parts(phi: Location, min_patients: int, scope: str, earlier: Mapping[str, Mapping] | None) -> PartPlan:
    """The census, and the parts to de-identify. `earlier`: each part the last publication holds,
    with the digest of its PHI parts then (None: no publication to build on). A part is carried over
    when its PHI parts are those it was made from and no change of the census touches it; any part
    of the last publication changed or gone, or a value that left the vocabulary, computes all."""
    rows, digests = census_by_part(phi, min_patients, scope)
    census = census_of(rows, min_patients)
    everything = sorted(digests)
    if earlier is None:
        return PartPlan(census, digests, [], everything, "every part: no earlier publication to build on")
    before = load_published_census(phi)
    changed = sorted(name for name, part in earlier.items() if digests.get(name) != part.get("digest"))
    if before is None or changed:
        why = "every part: " + (f"{len(changed)} part(s) of the last publication changed or are gone" if changed
                                else "the census of the last publication is not kept")
        return PartPlan(census, digests, [], everything, why)
    if any(values - census.vocabulary.get(column, frozenset()) for column, values in before.vocabulary.items()):
        return PartPlan(census, digests, [], everything, "every part: a value left the vocabulary")
    changed = patients_changed(before, census)
    if changed:  # which parts hold them: their "patient" rows, read again from the kept census
        rows, _ = census_by_part(phi, min_patients, scope, patients=changed)
    touched = parts_touched(rows, before, census) & set(earlier)
    carried = sorted(set(earlier) - touched)
    new = [name for name in everything if name not in earlier]
    computed = sorted([*new, *touched])
    why = f"{len(new)} new part(s), {len(touched)} whose patients' 90+ status or vocabulary the new data changed"
    return PartPlan(census, digests, carried, computed, why)


def stage_carried(zone: Location, publication: TablePublication, tables: Iterable[str], names: Iterable[str]) -> set[str]:
    """Copy the published part files `names` of `tables` into the publication's staging, as they are;
    returns the staged paths."""
    staged = set()
    wanted = set(names)
    for table in tables:
        publication.staged(table).makedirs()
        for part in table_files(zone.child(table)):
            if part.name in wanted:  # a table with no row for the part has no file
                staged.add(publication.carry(table, part).path)
    return staged
