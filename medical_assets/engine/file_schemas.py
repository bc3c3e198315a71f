"""The column names and types of each file of a published table, kept by the file's name, size and
modification time, so that the contract check reads the footers of files it has not seen: it read
every file's footer on every run (0.5-0.7 s of a night at 5,000,000 messages, growing with the
history's files).

One JSON file per table in the PHI zone's cache (`<zone>.<table>.json`: file name -> [size,
modification time in ns, the columns as an Arrow IPC schema in base64]), holding the table's
current files only. A file written again has another time (a new file of a Delta table, another
name), so a kept entry never stands for other bytes. Only names and types are kept: the check
compares nothing else, and our files' metadata (stamps, declarations) would make the cache large.
"""

from __future__ import annotations

import base64
import json
import posixpath

import pyarrow as pa
import pyarrow.parquet as pq

from medical_assets.storage import Location, restrict_to_owner, table_files


def file_schemas(table: Location, cache: Location) -> list[pa.Schema]:
    """The schema (columns and types, no metadata) of each Parquet file of the published `table`,
    in `table_files` order; footers read only for files not kept in `cache` as they are now."""
    files = table_files(table)
    infos = table.filesystem.get_file_info([file.path for file in files]) if files else []
    kept_file = cache.child(f"{posixpath.basename(posixpath.dirname(table.path))}.{table.name}.json")
    kept = _load(kept_file)
    now, schemas = {}, []
    for file, info in zip(files, infos):
        identity = [info.size, info.mtime_ns]
        entry = kept.get(file.name)
        if entry is not None and info.mtime_ns is not None and entry[:2] == identity:
            schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(entry[2])))
        else:
            schema = _columns_of(pq.read_schema(file.path, filesystem=file.filesystem))
        schemas.append(schema)
        if info.mtime_ns is not None:
            now[file.name] = [*identity, base64.b64encode(schema.serialize().to_pybytes()).decode()]
    if now != kept:
        cache.makedirs()
        kept_file.write_bytes_atomically(json.dumps(now).encode())
        restrict_to_owner(cache)
    return schemas


def _columns_of(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(field.name, field.type, field.nullable) for field in schema])


def _load(location: Location) -> dict[str, list]:
    try:
        kept = json.loads(location.read_bytes())
    except (FileNotFoundError, OSError, ValueError):
        return {}
    return kept if isinstance(kept, dict) else {}
