import json
import os

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from medical_assets import storage
from medical_assets.storage import (
    COMMIT_MARKER,
    STAGING_DIR,
    Location,
    TablePublication,
    _delete_files_not_in,
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


def test_object_store_folders_are_merged_and_a_reader_never_misses_a_file(tmp_path, monkeypatch):
    """On an object store a folder of files (DICOM, reports; tables are Delta tables there) is merged:
    the new files are copied over the old, and the files the new version drops are deleted only
    after the tables' commit. A run killed in between is completed by the next; one killed while
    its staging is deleted (after its marker) is discarded, and the published folder is untouched."""
    # Not a LocalFileSystem, so storage takes the object-store path.
    zone = Location(pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()), "deid")

    def stage(run: str, files: dict[str, bytes]) -> TablePublication:
        publication = TablePublication(zone, run)
        for name, data in files.items():
            publication.staged("dicom").child(name).write_bytes_atomically(data)
        return publication

    def published() -> dict[str, bytes]:
        root = zone.child("dicom").path
        infos = zone.filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
        return {i.path[len(root) + 1 :]: zone.filesystem.open_input_stream(i.path).read() for i in infos if i.is_file}

    stage("run1", {"a.dcm": b"1", "s/b.dcm": b"2"}).commit({}, folders=["dicom"])
    assert published() == {"a.dcm": b"1", "s/b.dcm": b"2"}

    def killed(*args):
        raise _Killed

    monkeypatch.setattr(storage, "_delete_files_not_in", killed)
    with pytest.raises(_Killed):
        stage("run2", {"s/b.dcm": b"3", "c.dcm": b"4"}).commit({}, folders=["dicom"])
    monkeypatch.undo()
    assert published() == {"a.dcm": b"1", "s/b.dcm": b"3", "c.dcm": b"4"}  # no file of either version missing
    assert TablePublication.recover(zone) == ["completed publication run2"]
    assert published() == {"s/b.dcm": b"3", "c.dcm": b"4"}
    assert not zone.child(STAGING_DIR).exists()

    third = stage("run3", {"d.dcm": b"5"})
    delete = Location.delete

    def killed_after_one_object(location):
        if location.path == third.staging.path:
            zone.filesystem.delete_file(third.staged("dicom").child("d.dcm").path)
            raise _Killed
        delete(location)

    monkeypatch.setattr(Location, "delete", killed_after_one_object)
    with pytest.raises(_Killed):
        third.commit({}, folders=["dicom"])
    monkeypatch.undo()
    assert TablePublication.recover(zone) == ["discarded unfinished run run3"]
    assert published() == {"d.dcm": b"5"}
    assert not zone.child(STAGING_DIR).exists()


def test_object_store_files_carried_over_stay_in_place_neither_copied_nor_deleted(tmp_path, monkeypatch):
    """A night's DICOM export keeps most published files as they are. On an object store they are
    neither copied into the staging nor back (a request per image, twice), and the commit deletes
    none of them, also when a killed run's commit is completed by the next run."""
    zone = Location(pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()), "deid")
    folder = tmp_path / "deid" / "dicom"
    first = TablePublication(zone, "run1")
    for name in ("a.dcm", "s/b.dcm"):
        first.staged("dicom").child(name).write_bytes_atomically(name.encode())
    first.commit({}, folders=["dicom"])

    def night(run: str) -> TablePublication:
        publication = TablePublication(zone, run)
        for name in ("a.dcm", "s/b.dcm"):  # carried: where it is published
            assert publication.carry_file("dicom", name) == zone.child("dicom", name)
        assert not publication.staged("dicom").exists(), "an object store's carried file was copied"
        publication.staged("dicom").child(f"{run}.dcm").write_bytes_atomically(b"new")
        return publication

    def files() -> dict[str, int]:  # relative path -> inode: a copy over a file makes a new one
        return {p.relative_to(folder).as_posix(): p.stat().st_ino for p in folder.rglob("*.dcm")}

    kept = files()
    night("run2").commit({}, folders=["dicom"])
    assert files() == {**kept, "run2.dcm": files()["run2.dcm"]}

    killed = night("run3")
    monkeypatch.setattr(storage, "_delete_files_not_in", lambda *args, **kwargs: (_ for _ in ()).throw(_Killed()))
    with pytest.raises(_Killed):
        killed.commit({}, folders=["dicom"])
    monkeypatch.setattr(storage, "_delete_files_not_in", _delete_files_not_in)
    assert TablePublication.recover(zone) == ["completed publication run3"]
    assert files() == {**kept, "run3.dcm": files()["run3.dcm"]}  # run2's file dropped, the kept ones untouched
    assert (folder / "s" / "b.dcm").read_bytes() == b"s/b.dcm"


def test_local_files_carried_over_are_hard_links_in_the_staging(tmp_path):
    """On a local disk the commit swaps whole folders: a carried file stands in the staging, as the
    same file (a hard link, no copy)."""
    zone = resolve_location(str(tmp_path / "deid"))
    first = TablePublication(zone, "run1")
    first.staged("dicom").child("s", "b.dcm").write_bytes_atomically(b"kept")
    first.commit({}, folders=["dicom"])
    night = TablePublication(zone, "run2")
    staged = night.carry_file("dicom", "s/b.dcm")
    assert staged == night.staged("dicom").child("s", "b.dcm")
    assert os.stat(staged.path).st_ino == os.stat(zone.child("dicom", "s", "b.dcm").path).st_ino
    night.commit({}, folders=["dicom"])
    assert (tmp_path / "deid" / "dicom" / "s" / "b.dcm").read_bytes() == b"kept"


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    target = resolve_location(str(tmp_path / "dir" / "file.bin"))
    target.write_bytes_atomically(b"one")
    target.write_bytes_atomically(b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in (tmp_path / "dir").iterdir()] == ["file.bin"]


def test_size_bytes_counts_files_and_whole_folders_and_nothing_for_what_is_absent(tmp_path):
    from medical_assets.storage import size_bytes

    (tmp_path / "table" / "nested").mkdir(parents=True)
    (tmp_path / "table" / "part-00000.parquet").write_bytes(b"x" * 10)
    (tmp_path / "table" / "nested" / "more.bin").write_bytes(b"y" * 5)
    (tmp_path / "alone.parquet").write_bytes(b"z" * 7)
    root = resolve_location(str(tmp_path))
    assert size_bytes([root.child("table"), root.child("alone.parquet"), root.child("missing")]) == 22
    assert size_bytes([]) == 0
