"""The contract check's schemas kept per file by name, size and time (`engine.file_schemas`): the
columns and types each file's footer gives, a footer read once, a file written again read again,
and the kept entries holding the table's current files only."""

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medical_assets.engine import file_schemas as schemas
from medical_assets.storage import resolve_location


def _write(path, columns: dict, stamp: str) -> None:
    table = pa.table(columns)
    pq.write_table(table.replace_schema_metadata({"medical_assets.run_id": stamp}), path)


@pytest.fixture
def table(tmp_path):
    folder = tmp_path / "deid" / "hl7_messages"
    folder.mkdir(parents=True)
    _write(folder / "part-00000.parquet", {"message_type": ["ADT^A01"], "age": pa.array([4], pa.int16())}, "run-1")
    _write(folder / "part-00001.parquet", {"message_type": ["ORU^R01"], "tags": pa.array([["a"]], pa.list_(pa.string()))}, "run-1")
    return resolve_location(str(folder))


def _footers(table) -> list[pa.Schema]:
    names = sorted(os.listdir(table.path))
    return [pq.read_schema(os.path.join(table.path, name)) for name in names]


def _types(schemas_found):
    return [[(field.name, field.type) for field in schema] for schema in schemas_found]


def test_kept_schemas_are_the_footers_columns_and_a_footer_is_read_once(table, tmp_path, monkeypatch):
    cache = resolve_location(str(tmp_path / "phi" / "_census" / "file_schemas"))
    first = schemas.file_schemas(table, cache)
    assert _types(first) == _types(_footers(table))
    assert all(schema.metadata is None for schema in first)  # names and types only

    read = []
    read_schema = pq.read_schema
    monkeypatch.setattr(schemas.pq, "read_schema", lambda path, **kw: read.append(path) or read_schema(path, **kw))
    again = schemas.file_schemas(table, cache)
    assert _types(again) == _types(first)
    assert read == []  # every file seen before

    # A file written again is read again, only it: of the same size (its time tells), or not.
    part = os.path.join(table.path, "part-00001.parquet")
    size = os.path.getsize(part)
    _write(part, {"message_type": ["ORU^R01"], "tags": pa.array([["b"]], pa.list_(pa.string()))}, "run-2")
    assert os.path.getsize(part) == size
    stat = os.stat(part)
    os.utime(part, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert _types(schemas.file_schemas(table, cache)) == _types(first)
    assert read == [part]
    _write(part, {"message_type": ["ORU^R01"], "tags": pa.array([7], pa.int64())}, "run-3")
    changed = schemas.file_schemas(table, cache)
    assert read == [part, part]
    assert _types(changed) == _types(_footers(table))
    assert changed[1].field("tags").type == pa.int64()


def test_the_kept_schemas_hold_the_current_files_only(table, tmp_path):
    cache = resolve_location(str(tmp_path / "phi" / "_census" / "file_schemas"))
    schemas.file_schemas(table, cache)
    os.remove(os.path.join(table.path, "part-00000.parquet"))
    assert len(schemas.file_schemas(table, cache)) == 1
    kept = json.loads((tmp_path / "phi" / "_census" / "file_schemas" / "deid.hl7_messages.json").read_text())
    assert list(kept) == ["part-00001.parquet"]


def test_a_damaged_cache_is_read_as_empty(table, tmp_path):
    cache = resolve_location(str(tmp_path / "phi" / "_census" / "file_schemas"))
    os.makedirs(cache.path)
    (tmp_path / "phi" / "_census" / "file_schemas" / "deid.hl7_messages.json").write_text("{not json")
    assert _types(schemas.file_schemas(table, cache)) == _types(_footers(table))
