"""Carry the published PHI tables over into a run's staging, without the rows of files that changed.

An incremental parse stages complete tables, like a full one: the parts of the last run that hold
no changed file are copied as they are (bytes, no decoding); the parts that do are rewritten in
Ray workers (in the run's process, when they are small) without those files' rows; the new and changed files are then parsed into parts
numbered after all of these. The parse jobs write every table of a file through the same task,
so a part name stands for the same files in every table, and this keeps it so.
"""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medical_assets.engine.part_groups import PartGroup, phi_part_groups, run_group_job
from medical_assets.engine.progress import ProgressReport
from medical_assets.storage import Location, TablePublication


def carry_over(
    phi: Location,
    schemas: Mapping[str, pa.Schema],
    drop: frozenset[str],
    publication: TablePublication,
    report: ProgressReport,
) -> int:
    """Stage the published parts of `schemas` minus the rows of the `drop` files; returns the
    first free part number, for the parse of the new files."""
    groups = phi_part_groups(phi, list(schemas), schemas)
    numbers = [_part_number(part) for group in groups for part in group.values()]
    first_free = max(numbers, default=-1) + 1
    touched = [group for group in groups if drop and _holds_any(group, drop)]
    for group in groups:
        if not any(group is t for t in touched):
            for table, part in group.items():
                publication.carry(table, part)
    if touched:
        without = functools.partial(_without_files, drop=drop)
        targets = {table: publication.staged(table) for table in schemas}
        names = [f"part-{first_free + index:05d}.parquet" for index in range(len(touched))]
        run_group_job(touched, schemas, without, targets, schemas, report, part_names=names)
        first_free += len(touched)  # at most one write task per group
    return first_free


def _holds_any(group: PartGroup, paths: frozenset[str]) -> bool:
    """Whether a part group holds a row of any of `paths` (only its source_file columns are read)."""
    wanted = pa.array(sorted(paths), pa.string())
    for part in group.values():
        column = pq.read_table(part.path, filesystem=part.filesystem, columns=["source_file"]).column(0)
        if pc.any(pc.is_in(column, value_set=wanted)).as_py():
            return True
    return False


def _without_files(tables: dict[str, pa.Table], drop: frozenset[str]) -> dict[str, pa.Table]:
    wanted = pa.array(sorted(drop), pa.string())
    return {name: table.filter(pc.invert(pc.is_in(table["source_file"], value_set=wanted))) for name, table in tables.items()}


def _part_number(part: Location) -> int:
    return int(posixpath.basename(part.path)[len("part-") : -len(".parquet")])
