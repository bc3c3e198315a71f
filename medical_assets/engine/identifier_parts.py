"""The leak checks' identifiers part by part, hashed and kept in the PHI zone, so that a night collects
and hashes only the parts it has not seen.

Each PHI part group (the HL7 tables' parts of one name; each part of dicom_images) has its
identifiers collected (the forms `identifier_forms.collect_identifiers` names, made in Arrow by
`identifier_arrays`, ranked by the column that gave them) and hashed with keys derived from a secret of the PHI zone, and the arrays are kept under
`phi/_census/identifiers/`, named by a digest of the part's Parquet footers, the secret and our
code. An index is assembled from the arrays of every part: of a value several parts give, the
lowest rank wins, which is the kind a collection over the whole tables gives it.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zipfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs

from medical_assets.engine.part_groups import (
    PartGroup,
    group_part_name,
    kept_file_name,
    part_digest,
    phi_part_groups,
    prune_cache,
)
from medical_assets.privacy.identifier_arrays import ranked_identifiers
from medical_assets.privacy.identifier_forms import RANKED_KINDS, identifier_columns
from medical_assets.privacy.identifier_index import HashedIdentifiers, IdentifierIndex
from medical_assets.step_records import package_fingerprint
from medical_assets.storage import Location, open_dataset, read_table, restrict_to_owner

CACHE_FOLDER = ("_census", "identifiers")  # phi/_census/identifiers/<digest>.npz
_SECRET_FILE = ".index-secret"  # 32 random bytes: the hash keys of the kept arrays derive from it
# PHI tables the identifiers come from, HL7 part groups first (absent ones are skipped).
HL7_SOURCES = ("hl7_messages", "hl7_encounters", "hl7_lab_results", "hl7_pharmacy_orders")
DICOM_SOURCE = "dicom_images"


def identifier_index(
    phi: Location, left_out_kinds: Collection[str] = (), hl7_parts: Collection[str] | None = None, merged: bool = True
) -> IdentifierIndex:
    """The index of every identifier of the PHI zone (or of the HL7 part groups `hl7_parts` and every
    DICOM part), without the kinds `left_out_kinds`; `merged` or part by part
    (`IdentifierIndex.from_hashed`). Parts seen before are read back; the others are collected,
    hashed and kept."""
    secret = _secret(phi)
    wanted, parts = set(), []
    for kind, group in _part_groups(phi):
        kept = _kept_location(phi, kind, group, secret)
        wanted.add(kept.name)
        if hl7_parts is None or kind == DICOM_SOURCE or group_part_name(group) in hl7_parts:
            parts.append(_hashed_part(kept, group, secret))
    cache = phi.child(*CACHE_FOLDER)
    if hl7_parts is None:
        prune_cache(cache, wanted)
    restrict_to_owner(cache)  # the arrays are PHI: owner-only, as the rest of the zone
    left_out = [rank for rank, kind in enumerate(RANKED_KINDS) if kind in left_out_kinds]
    return IdentifierIndex.from_hashed(parts, secret, RANKED_KINDS, left_out, merged=merged)


@dataclass(frozen=True)
class KeepIdentifiers:
    """Where to keep the hashed identifiers of HL7 part groups that a job reads whole anyway (the
    de-identification): by part name, the kept file to write; and the secret to hash with."""

    secret: bytes
    kept: dict[str, Location]

    def keep(self, part_name: str, tables: Mapping[str, pa.Table]) -> None:
        """Collect, hash and keep the identifiers of one part group's tables, if asked for."""
        if part_name in self.kept:
            _keep(self.kept[part_name], {t: tables[t] for t in HL7_SOURCES if t in tables}, self.secret)


def identifiers_to_keep(phi: Location, part_names: Collection[str]) -> KeepIdentifiers:
    """The HL7 part groups among `part_names` whose identifiers are not kept yet."""
    secret = _secret(phi)
    kept = {}
    for kind, group in _part_groups(phi):
        name = group_part_name(group)
        if kind == "hl7" and name in part_names:
            location = _kept_location(phi, kind, group, secret)
            if not location.exists():
                kept[name] = location
    return KeepIdentifiers(secret, kept)


def _kept_location(phi: Location, kind: str, group: PartGroup, secret: bytes) -> Location:
    """Named by the part group's footer digest, the secret and our code: any change, another file."""
    salt = hashlib.sha256(secret + package_fingerprint().encode()).hexdigest()[:16]
    name = group_part_name(group)
    return phi.child(*CACHE_FOLDER, kept_file_name(kind, name, part_digest(group), salt, suffix=".npz"))


def _part_groups(phi: Location) -> list[tuple[str, PartGroup]]:
    groups = [("hl7", group) for group in phi_part_groups(phi, list(HL7_SOURCES), {})]
    return groups + [(DICOM_SOURCE, group) for group in phi_part_groups(phi, [DICOM_SOURCE], {})]


def _hashed_part(kept: Location, group: PartGroup, secret: bytes) -> HashedIdentifiers:
    try:
        return HashedIdentifiers.from_bytes(_mapped(kept))
    except (FileNotFoundError, OSError, ValueError, KeyError, zipfile.BadZipFile, struct.error):
        pass
    return _keep(kept, {table: PartColumns(part, table) for table, part in group.items()}, secret)


def _mapped(location: Location) -> bytes | memoryview:
    """A local file memory-mapped (its pages are the page cache's: no copy, no fresh memory, which
    at millions of patients cost a second of page faults a run), another file read whole. Kept
    files are replaced by a rename, never rewritten in place, so a mapping never sees a torn one."""
    if isinstance(location.filesystem, pafs.LocalFileSystem):
        return memoryview(pa.memory_map(location.path, "r").read_buffer())
    return location.read_bytes()


def _keep(kept: Location, tables: Mapping, secret: bytes) -> HashedIdentifiers:
    hashed = IdentifierIndex(identifiers={}, secret=secret).hashed_array(*ranked_identifiers(tables)).sorted()
    kept.write_bytes_atomically(hashed.to_bytes())
    return hashed


def _secret(phi: Location) -> bytes:
    """The PHI zone's index secret, made on first use (readable by its owner only)."""
    location = phi.child(*CACHE_FOLDER, _SECRET_FILE)
    try:
        secret = location.read_bytes()
        if len(secret) == 32:
            return secret
    except (FileNotFoundError, OSError):
        pass
    location.write_bytes_atomically(os.urandom(32))
    restrict_to_owner(phi.child(*CACHE_FOLDER))
    return location.read_bytes()  # as written: another process may have made it first


class PartColumns:
    """A PHI table (or one part of it, or some of its parts) as `collect_identifiers` reads it: its
    identifier columns, each read from Parquet when asked for and dropped after, so the process
    holds one column (two for names) and the identifiers found, never every column at once."""

    def __init__(self, location: Location, table: str | None = None, parts: Sequence[Location] = ()):
        self._locations = list(parts) or [location]
        present = set(open_dataset(location).schema.names)
        self.column_names = [name for name in identifier_columns(table or location.name) if name in present]

    def column(self, name: str) -> pa.ChunkedArray:
        return pa.chunked_array(
            [chunk for location in self._locations for chunk in read_table(location, columns=[name]).column(0).chunks]
        )
