"""The analytics' kept combination (`phi/_census/analytics/`): the reduction of the part groups the
last run combined (`summaries.reduced`), which a night folds its new groups into.

- `combined.parquet`: the summed tables, packed; in its metadata the summaries' file names in part
  order, the files of the latest row per patient, and the patients by gender and age band.
- `latest-<random>.arrow`: the latest row per patient, as a base and the deltas nights add (flat
  Arrow files, zstd, in record batches of `_BATCH_ROWS`). A patient's current row is in the last
  file that holds them: a night looks up only its own patients and writes their new rows as a
  delta; the history's rows are neither read whole nor written again (at 5,000,000 patients that
  was 0.5 s to read, 0.7 s to write and 0.4 s to count, every night). When the deltas grow past an
  eighth of the base, they are merged into a new base.
- `latest-<random>.arrow.keys`: beside each, a 64-bit key of every row's token, in row order: a
  night finds the rows that may hold its patients there (8 bytes a patient, no decoding) and reads
  only their batches; decoding a 5,000,000-row base's token column for it took 0.65 s a night.
  Written when the tokens are of one length (our keyed tokens); reversible tokens vary, and their
  files are searched by the token column, as before.

PHI: the latest rows and counts are before suppression; owner-only, as the rest of the zone."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medical_assets.analytics.summaries import (
    PATIENT_COUNTS_SCHEMA,
    SUMMARY_SCHEMAS,
    latest_per_patient,
    refolded_counts,
    refreshed_latest,
)
from medical_assets.engine import multitable
from medical_assets.engine.part_groups import prune_cache
from medical_assets.storage import Location, restrict_to_owner, write_table_atomically

COMBINED_FILE = "combined.parquet"
_GROUPS = b"medical_assets.summaries"
_LATEST_FILES = b"medical_assets.latest_files"  # [[file name, rows], ...]: the base, then the deltas
_PATIENT_COUNTS = b"medical_assets.patient_counts"  # [[gender, age band, patients], ...]
SUMMARY_PACKED = multitable.packed_schema(SUMMARY_SCHEMAS)
_LATEST = SUMMARY_SCHEMAS["latest_patients"]
# Deltas are merged into a new base once they hold more rows than this share of the base, and
# at least this many: a night's delta is small, and the merge reads and sorts every row.
_MERGE_SHARE = 8
_MERGE_AT_LEAST = 100_000
_TOKEN_FIELD = _LATEST.get_field_index("patient_token")
_BATCH_ROWS = 16_384  # rows per record batch of a latest file: a night reads the batches of its patients
_KEYS_SUFFIX = ".keys"  # beside a latest file: a 64-bit key of each row's token (`_token_keys`), in row order


@dataclass(frozen=True)
class KeptCombination:
    sums: dict[str, pa.Table]  # the summed tables of `summaries.reduced` (latest_patients empty)
    latest_files: list[tuple[str, int]]  # (file name, rows), base first
    counts: pa.Table  # summaries.patient_counts of every patient's latest row


def combined_groups(folder: Location, names: Sequence[str]) -> int:
    """How many of the groups (by their summaries' names, in part order) the combination kept in
    `folder` holds: all of its groups, when they are the first of `names`; else 0 (a group changed
    or went, a group came before them, another key or code, a file lost: everything is combined again)."""
    kept = folder.child(COMBINED_FILE)
    try:
        metadata = pq.read_schema(kept.path, filesystem=kept.filesystem).metadata or {}
        held = json.loads(metadata[_GROUPS])
        files = json.loads(metadata[_LATEST_FILES])
        json.loads(metadata[_PATIENT_COUNTS])
    except (FileNotFoundError, OSError, KeyError, ValueError, pa.ArrowInvalid):
        return 0
    if not all(folder.child(name).exists() for name, _ in files):
        return 0
    return len(held) if held and held == list(names[: len(held)]) else 0


def unpacked(blocks: list[pa.Table]) -> dict[str, pa.Table]:
    """The summaries of packed blocks (`SUMMARY_PACKED`), concatenated in part order."""
    packed = pa.concat_tables(blocks).sort_by("source_file") if blocks else SUMMARY_PACKED.empty_table()
    return {name: multitable.unpack(packed, name, schema) for name, schema in SUMMARY_SCHEMAS.items()}


def read_kept(folder: Location) -> KeptCombination:
    """The kept combination, without its latest rows."""
    kept = folder.child(COMBINED_FILE)
    small = pq.read_table(kept.path, filesystem=kept.filesystem)  # its schema: SUMMARY_PACKED and our metadata
    metadata = small.schema.metadata
    counts = json.loads(metadata[_PATIENT_COUNTS])
    return KeptCombination(
        unpacked([small]),
        [(name, rows) for name, rows in json.loads(metadata[_LATEST_FILES])],
        pa.Table.from_pylist([dict(zip(PATIENT_COUNTS_SCHEMA.names, row)) for row in counts], schema=PATIENT_COUNTS_SCHEMA),
    )


def fold_latest(folder: Location, kept: KeptCombination, later: pa.Table) -> tuple[pa.Table, pa.Table]:
    """The night's patients' new latest rows (`summaries.refreshed_latest`), and the counts of
    every patient's latest row with them: only the night's patients are looked up in the kept files."""
    night = latest_per_patient(later)
    if night.num_rows == 0:
        return night, kept.counts
    tokens = night.column("patient_token").combine_chunks()
    found = [
        rows for name, count in kept.latest_files if (rows := _rows_of_patients(folder.child(name), tokens, count)).num_rows
    ]
    # A patient's current row is the last file's that holds them: its year is the latest of all
    # their rows, and a tie goes to the later row.
    replaced = latest_per_patient(pa.concat_tables(found)) if found else _LATEST.empty_table()
    refreshed = refreshed_latest(replaced, night)
    return refreshed, refolded_counts(kept.counts, replaced, refreshed)


def write_kept(
    folder: Location,
    sums: Mapping[str, pa.Table],
    groups: Sequence[str],
    counts: pa.Table,
    latest_files: Sequence[tuple[str, int]],
    new_rows: pa.Table,
) -> None:
    """Keep the combination of `groups`: `new_rows` written as the base (no `latest_files` yet) or
    as a delta of them (merged into a new base when the deltas grow), then combined.parquet naming
    the files (atomically: a reader finds the old set or the new), then files no longer named are
    deleted."""
    folder.makedirs()
    files = list(latest_files)
    if new_rows.num_rows or not files:
        files.append((_write_latest(folder, new_rows), new_rows.num_rows))
    if len(files) > 1 and sum(rows for _, rows in files[1:]) > max(_MERGE_AT_LEAST, files[0][1] // _MERGE_SHARE):
        merged = latest_per_patient(pa.concat_tables([_read_latest(folder.child(name).read_bytes()) for name, _ in files]))
        files = [(_write_latest(folder, merged), merged.num_rows)]
    small = {**sums, "latest_patients": _LATEST.empty_table()}
    write_table_atomically(
        multitable.pack("combined", small, SUMMARY_PACKED), folder.child(COMBINED_FILE),
        {_GROUPS: json.dumps(list(groups)), _LATEST_FILES: json.dumps(files),
         _PATIENT_COUNTS: json.dumps([list(row.values()) for row in counts.select(PATIENT_COUNTS_SCHEMA.names).to_pylist()])},
    )
    prune_cache(folder, {COMBINED_FILE, *(name for name, _ in files), *(name + _KEYS_SUFFIX for name, _ in files)})
    restrict_to_owner(folder)  # PHI: owner-only, as the rest of the zone


def _write_latest(folder: Location, rows: pa.Table) -> str:
    name = f"latest-{secrets.token_hex(8)}.arrow"
    sink = pa.BufferOutputStream()
    # zstd: the tokens are random, so lz4 hardly shrinks them and costs more (at 5,000,000 patients
    # lz4 0.98 s to write 173 MiB, zstd 0.38 s to write 97 MiB, read back in half lz4's time).
    rows = rows.cast(_LATEST).combine_chunks()  # one chunk: every batch but the last holds _BATCH_ROWS
    with pa.ipc.new_file(sink, _LATEST, options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(rows, max_chunksize=_BATCH_ROWS)
    folder.child(name).write_bytes_atomically(sink.getvalue())
    keys = _token_keys(rows.column("patient_token").combine_chunks())
    if keys is not None:  # after the file: keys without their file are never read
        folder.child(name + _KEYS_SUFFIX).write_bytes_atomically(keys.tobytes())
    return name


def _read_latest(data: bytes | pa.Buffer, fields: list[int] | None = None) -> pa.Table:
    options = pa.ipc.IpcReadOptions(included_fields=fields) if fields is not None else None
    return pa.ipc.open_file(pa.BufferReader(data), options=options).read_all()


def _rows_of_patients(location: Location, tokens: pa.Array, rows: int) -> pa.Table:
    """The rows of `location` (a latest file of `rows` rows) whose patient is one of `tokens`: the
    batches its keys point to (none when no key matches), else its token column decoded first and
    the rest only when it holds any of them."""
    night = _token_keys(tokens)
    keys = _read_keys(location, rows) if night is not None else None
    if keys is not None:
        batches = np.unique(_rows_matching(keys, night) // _BATCH_ROWS)
        if not len(batches):
            return _LATEST.empty_table()
        with location.filesystem.open_input_file(location.path) as handle:
            reader = pa.ipc.open_file(handle)
            table = pa.Table.from_batches([reader.get_batch(int(number)) for number in batches], _LATEST)
        return table.filter(pc.is_in(table.column("patient_token"), value_set=tokens))
    data = location.read_bytes()
    held = pc.is_in(_read_latest(data, [_TOKEN_FIELD]).column(0), value_set=tokens)
    if not pc.any(held).as_py():
        return _LATEST.empty_table()
    return _read_latest(data).filter(held)


def _read_keys(location: Location, rows: int) -> np.ndarray | None:
    """The keys beside a latest file; None when absent or not one a row (damaged: the file is searched whole)."""
    try:
        data = Location(location.filesystem, location.path + _KEYS_SUFFIX).read_bytes()
    except (FileNotFoundError, OSError):
        return None
    return np.frombuffer(data, np.uint64) if len(data) == 8 * rows else None


_TOP_BITS = np.uint64(24)  # a night's keys marked in a table of 2**24 flags (16 MB) by their top bits


def _rows_matching(keys: np.ndarray, night: np.ndarray) -> np.ndarray:
    """The rows whose key is one of `night` (a few): each row's top bits looked up in a table of the
    night's first, then the few rows it lets through compared whole (`np.isin` over the millions of
    rows sorts them: 0.77 s at 5,000,000 rows, against 0.06 s)."""
    shift = np.uint64(64) - _TOP_BITS
    marked = np.zeros(1 << int(_TOP_BITS), bool)
    marked[night >> shift] = True
    candidates = np.flatnonzero(marked[keys >> shift])
    return candidates[np.isin(keys[candidates], night)]


# FNV-1a's 64-bit offset basis and prime, over the tokens' 8-byte words; then splitmix64's finish.
_FNV_OFFSET, _FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)


def _token_keys(tokens: pa.Array) -> np.ndarray | None:
    """A 64-bit key of each token, when every token is there and of one length in bytes (our keyed
    tokens: 24 characters); None otherwise. Equal tokens have equal keys; a key shared by two tokens
    costs a batch read, never a wrong row (the rows found are compared by token)."""
    if tokens.null_count or not len(tokens) or not (pa.types.is_string(tokens.type) or pa.types.is_large_string(tokens.type)):
        return None
    offset_type = np.int64 if pa.types.is_large_string(tokens.type) else np.int32
    offsets = np.frombuffer(tokens.buffers()[1], offset_type)[tokens.offset : tokens.offset + len(tokens) + 1]
    width = int(offsets[1] - offsets[0])
    if width == 0 or not np.all(np.diff(offsets) == width):
        return None
    data = np.frombuffer(tokens.buffers()[2], np.uint8)[offsets[0] : offsets[-1]].reshape(len(tokens), width)
    if width % 8:  # whole words: the last one zero-filled
        data = np.concatenate([data, np.zeros((len(tokens), 8 - width % 8), np.uint8)], axis=1)
    words = np.ascontiguousarray(data).view(np.uint64)
    keys = np.full(len(tokens), _FNV_OFFSET, np.uint64)
    for column in range(words.shape[1]):
        keys ^= words[:, column]
        keys *= _FNV_PRIME
    keys ^= keys >> np.uint64(30)
    keys *= np.uint64(0xBF58476D1CE4E5B9)
    keys ^= keys >> np.uint64(27)
    return keys
