"""The previews' counts kept per Parquet file by footer digest (`engine.value_counts`): the same
counts as reading the column whole, a file counted once, a file written again counted again, and
the kept counts holding the table's current files only."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medical_assets.engine import value_counts as counting
from medical_assets.storage import resolve_location


def _write(path, types, stamp: str) -> None:
    table = pa.table({"message_type": pa.array(types, pa.string()), "frame_index": pa.array(range(len(types)), pa.int32())})
    pq.write_table(table.replace_schema_metadata({"medical_assets.run_id": stamp}), path)


@pytest.fixture
def table(tmp_path):
    folder = tmp_path / "deid" / "hl7_messages"
    folder.mkdir(parents=True)
    _write(folder / "part-00000.parquet", ["ADT^A01", "ORU^R01", None, "ADT^A01"], "run-1")
    _write(folder / "part-00001.parquet", ["RDE^O11", "ORU^R01"], "run-1")
    return resolve_location(str(folder))


def test_kept_counts_equal_the_column_read_whole_and_a_file_is_read_once(table, tmp_path, monkeypatch):
    cache = resolve_location(str(tmp_path / "phi" / "_census" / "value_counts"))
    whole = counting.value_counts(table, "message_type")
    assert whole == {"ADT^A01": 2, "ORU^R01": 2, "RDE^O11": 1, "(empty)": 1}
    assert counting.value_counts(table, "message_type", cache) == whole
    assert counting.value_counts(table, "frame_index", cache) == counting.value_counts(table, "frame_index")

    read = []
    read_table = pq.read_table
    monkeypatch.setattr(counting.pq, "read_table", lambda path, **kw: read.append(path) or read_table(path, **kw))
    assert counting.value_counts(table, "message_type", cache) == whole
    assert read == []  # every file counted before

    _write(table.child("part-00001.parquet").path, ["RDE^O11"], "run-2")  # written again: another footer
    (tmp_path / "deid" / "hl7_messages" / "part-00000.parquet").unlink()
    _write(table.child("part-00002.parquet").path, ["ADT^A03"], "run-2")
    assert counting.value_counts(table, "message_type", cache) == {"RDE^O11": 1, "ADT^A03": 1}
    assert sorted(path.rsplit("/", 1)[1] for path in read) == ["part-00001.parquet", "part-00002.parquet"]
    kept = json.loads((tmp_path / "phi" / "_census" / "value_counts" / "deid.hl7_messages.message_type.json").read_text())
    assert sorted(kept.values(), key=json.dumps) == [{"ADT^A03": 1}, {"RDE^O11": 1}]  # the current files only
