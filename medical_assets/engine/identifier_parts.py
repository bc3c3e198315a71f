"""The leak checks' identifiers part by part, hashed and kept in the PHI zone, so that a night collects
and hashes only the parts it has not seen.

Each PHI part group (the HL7 tables' parts of one name; each part of dicom_images) has its
identifiers collected (`identifier_forms.collect_identifiers`, ranked by the column that gave
them) and hashed with keys derived from a secret of the PHI zone, and the arrays are kept under
`phi/_census/identifiers/`, named by a digest of the part's Parquet footers, the secret and our
code. An index is assembled from the arrays of every part: of a value several parts give, the
lowest rank wins, which is the kind a collection over the whole tables gives it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Sequence

import pyarrow as pa
import pyarrow.dataset as pads

from medical_assets.engine.census_parts import part_digest, prune_cache
from medical_assets.engine.part_groups import PartGroup, group_part_name, phi_part_groups
from medical_assets.privacy.identifier_forms import RANKED_KINDS, collect_identifiers, identifier_columns
from medical_assets.privacy.identifier_index import HashedIdentifiers, IdentifierIndex
from medical_assets.step_records import package_fingerprint
from medical_assets.storage import Location, read_table, restrict_to_owner

CACHE_FOLDER = ("_census", "identifiers")  # phi/_census/identifiers/<digest>.npz
_SECRET_FILE = ".index-secret"  # 32 random bytes: the hash keys of the kept arrays derive from it
# PHI tables the identifiers come from, HL7 part groups first (absent ones are skipped).
HL7_SOURCES = ("hl7_messages", "hl7_encounters", "hl7_lab_results", "hl7_pharmacy_orders")
DICOM_SOURCE = "dicom_images"


def identifier_index(phi: Location, left_out_kinds: Collection[str] = (), hl7_parts: Collection[str] | None = None) -> IdentifierIndex:
    """The index of every identifier of the PHI zone (or of the HL7 part groups `hl7_parts` and every
    DICOM part), without the kinds `left_out_kinds`. Parts seen before are read back; the others
    are collected, hashed and kept."""
    secret = _secret(phi)
    cache = phi.child(*CACHE_FOLDER)
    salt = hashlib.sha256(secret + package_fingerprint().encode()).hexdigest()[:16]
    wanted, parts = set(), []
    for kind, group in _part_groups(phi):
        name = group_part_name(group)
        cache_name = hashlib.sha256(f"{kind}\x1f{name}\x1f{part_digest(group)}\x1f{salt}".encode()).hexdigest()[:32] + ".npz"
        wanted.add(cache_name)
        if hl7_parts is None or kind == DICOM_SOURCE or name in hl7_parts:
            parts.append(_hashed_part(cache.child(cache_name), group, secret))
    if hl7_parts is None:
        prune_cache(cache, wanted)
    restrict_to_owner(cache)  # the arrays are PHI: owner-only, as the rest of the zone
    left_out = [rank for rank, kind in enumerate(RANKED_KINDS) if kind in left_out_kinds]
    return IdentifierIndex.from_hashed(parts, secret, RANKED_KINDS, left_out)


def _part_groups(phi: Location) -> list[tuple[str, PartGroup]]:
    groups = [("hl7", group) for group in phi_part_groups(phi, list(HL7_SOURCES), {})]
    return groups + [(DICOM_SOURCE, group) for group in phi_part_groups(phi, [DICOM_SOURCE], {})]


def _hashed_part(cached: Location, group: PartGroup, secret: bytes) -> HashedIdentifiers:
    try:
        return HashedIdentifiers.from_bytes(cached.read_bytes())
    except (FileNotFoundError, OSError, ValueError, KeyError):
        pass
    tables = {table: PartColumns(part, table) for table, part in group.items()}
    identifiers = collect_identifiers(tables, ranked=True)
    hashed = IdentifierIndex(identifiers={}, secret=secret).hashed(identifiers.ranks.items()).sorted()
    cached.write_bytes_atomically(hashed.to_bytes())
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
        present = set(pads.dataset(location.path, filesystem=location.filesystem, format="parquet").schema.names)
        self.column_names = [name for name in identifier_columns(table or location.name) if name in present]

    def column(self, name: str) -> pa.ChunkedArray:
        return pa.chunked_array(
            [chunk for location in self._locations for chunk in read_table(location, columns=[name]).column(0).chunks]
        )
