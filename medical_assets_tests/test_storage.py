import json

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from medical_assets import storage
from medical_assets.storage import (
    COMMIT_MARKER,
    STAGING_DIR,
    Location,
    TablePublication,
    read_table,
    resolve_location,
    write_table_atomically,
)

SCHEMA = pa.schema([("id", pa.int64())])


def _stage(publication, table, ids):
    write_table_atomically(pa.table({"id": ids}, schema=SCHEMA), publication.staged(table).child("part-00000.parquet"))


@pytest.fixture
def zone(tmp_path):
    return resolve_location(str(tmp_path / "phi"))


def test_commit_publishes_and_replaces_previous_rows(zone):
    first = TablePublication(zone, "run1")
    _stage(first, "t", [1, 2])
    first.commit({"t": SCHEMA})
    assert read_table(zone.child("t"))["id"].to_pylist() == [1, 2]

    second = TablePublication(zone, "run2")
    _stage(second, "t", [3])
    second.commit({"t": SCHEMA})
    assert read_table(zone.child("t"))["id"].to_pylist() == [3]
    assert not zone.child(STAGING_DIR).exists(), "a finished publication leaves no staging folder"


def test_table_without_rows_is_published_with_its_schema(zone):
    publication = TablePublication(zone, "run1")
    publication.commit({"empty": SCHEMA})
    table = read_table(zone.child("empty"))
    assert table.num_rows == 0 and table.schema.equals(SCHEMA)


def test_recover_discards_a_run_that_never_committed(zone):
    done = TablePublication(zone, "run1")
    _stage(done, "t", [1])
    done.commit({"t": SCHEMA})
    crashed = TablePublication(zone, "run2")
    _stage(crashed, "t", [9, 9])

    actions = TablePublication.recover(zone)

    assert actions == ["discarded unfinished run run2"]
    assert read_table(zone.child("t"))["id"].to_pylist() == [1]
    assert not crashed.staging.exists()


def test_recover_rolls_forward_a_run_killed_between_two_table_swaps(zone):
    old = TablePublication(zone, "run1")
    _stage(old, "a", [1])
    _stage(old, "b", [1])
    old.commit({"a": SCHEMA, "b": SCHEMA})

    # The state a kill leaves after the commit marker and the swap of "a" only.
    new = TablePublication(zone, "run2")
    _stage(new, "a", [2])
    _stage(new, "b", [2])
    new.staging.child(COMMIT_MARKER).write_bytes_atomically(json.dumps({"tables": ["a", "b"]}).encode())
    new.staging.child("replaced").makedirs()
    zone.filesystem.move(zone.child("a").path, new.staging.child("replaced", "a").path)
    zone.filesystem.move(new.staged("a").path, zone.child("a").path)

    TablePublication.recover(zone)

    assert read_table(zone.child("a"))["id"].to_pylist() == [2]
    assert read_table(zone.child("b"))["id"].to_pylist() == [2]
    assert not new.staging.exists()


class _Killed(BaseException):
    pass


@pytest.mark.parametrize("killed", ["before the exchange", "after the exchange"])
def test_a_table_is_swapped_in_one_step_and_never_missing(zone, monkeypatch, killed):
    old = TablePublication(zone, "run1")
    _stage(old, "t", [1])
    old.commit({"t": SCHEMA})
    exchange = storage._exchange

    def exchange_then_die(first, second):
        if killed == "after the exchange":
            assert exchange(first, second)
        # Whatever the moment, a reader finds the table, old or new.
        assert read_table(zone.child("t"))["id"].to_pylist() in ([1], [2])
        raise _Killed

    new = TablePublication(zone, "run2")
    _stage(new, "t", [2])
    monkeypatch.setattr(storage, "_exchange", exchange_then_die)
    with pytest.raises(_Killed):
        new.commit({}, folders=["t"])
    expected_now = [2] if killed == "after the exchange" else [1]
    assert read_table(zone.child("t"))["id"].to_pylist() == expected_now

    monkeypatch.setattr(storage, "_exchange", exchange)
    TablePublication.recover(zone)
    assert read_table(zone.child("t"))["id"].to_pylist() == [2]
    assert not zone.child(STAGING_DIR).exists()


def test_object_store_recovery_after_a_kill_while_the_staged_copy_is_deleted(tmp_path, monkeypatch):
    """On an object store a folder of files (not a table: tables are Delta tables there) is copied
    into place, then its staged copy deleted object by object: a kill during that delete must not let
    the recovery publish what is left of it."""
    # Not a LocalFileSystem, so storage takes the object-store path (copy, then delete).
    zone = Location(pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()), "phi")
    old = TablePublication(zone, "run1")
    _stage(old, "t", [0])
    old.commit({}, folders=["t"])
    new = TablePublication(zone, "run2")
    for part in range(3):
        table = pa.table({"id": [part + 1]}, schema=SCHEMA)
        write_table_atomically(table, new.staged("t").child(f"part-{part:05d}.parquet"))

    def killed_after_one_object(fs, path):
        if path == new.staged("t").path:
            fs.delete_file(new.staged("t").child("part-00000.parquet").path)
            raise _Killed
        fs.delete_dir(path)

    monkeypatch.setattr(storage, "_delete_dir", killed_after_one_object)
    with pytest.raises(_Killed):
        new.commit({}, folders=["t"])
    monkeypatch.undo()

    assert TablePublication.recover(zone) == ["completed publication run2"]
    assert sorted(read_table(zone.child("t"))["id"].to_pylist()) == [1, 2, 3]
    assert not zone.child(STAGING_DIR).exists()


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    target = resolve_location(str(tmp_path / "dir" / "file.bin"))
    target.write_bytes_atomically(b"one")
    target.write_bytes_atomically(b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in (tmp_path / "dir").iterdir()] == ["file.bin"]
