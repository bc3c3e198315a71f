"""Delivery into a landing folder: a listing sees a file whole or not at all, durably when asked, on a disk or an object store."""

import os
import threading

import pyarrow.fs as pafs
import pytest

from medical_assets.sources.folder import deliver, list_landing_files
from medical_assets.storage import Location, resolve_location

HL7 = (".hl7",)


class _ListingAtRename(pafs.LocalFileSystem):
    """A local disk that lists the landing folder at the moment a delivery renames its file into place."""

    def __init__(self, landing_path: str):
        super().__init__()
        self.landing_path = landing_path
        self.seen_at_rename: list[tuple[list[str], list[str]]] = []

    def move(self, src, dest):
        listed = [f.relative_path for f in list_landing_files(Location(self, self.landing_path), HL7)]
        self.seen_at_rename.append((listed, sorted(os.listdir(self.landing_path))))
        return super().move(src, dest)


def test_a_listing_during_a_delivery_never_sees_the_file_being_written(tmp_path):
    filesystem = _ListingAtRename(str(tmp_path))
    landing = Location(filesystem, str(tmp_path))
    deliver(landing, "earlier.hl7", b"MSH|earlier")
    data = b"MSH|^~\\&|" + b"x" * 100_000

    deliver(landing, "feed.hl7", data)

    listed, on_disk = filesystem.seen_at_rename[-1]
    assert listed == ["earlier.hl7"]  # the bytes are all written, under a name the listing skips
    assert "feed.hl7" not in on_disk and any(name.startswith(".feed.hl7") for name in on_disk)
    after = list_landing_files(landing, HL7)
    assert [(f.relative_path, f.size_bytes) for f in after] == [("earlier.hl7", 11), ("feed.hl7", len(data))]
    assert sorted(os.listdir(tmp_path)) == ["earlier.hl7", "feed.hl7"]  # no temporary file left


def test_a_reader_listing_while_files_arrive_sees_each_one_whole(tmp_path):
    landing = resolve_location(str(tmp_path))
    sizes = {f"feed-{index:02d}.hl7": (1 << 20) + index for index in range(16)}
    writer = threading.Thread(target=lambda: [deliver(landing, name, b"x" * size) for name, size in sizes.items()])

    writer.start()
    listings = 0
    while writer.is_alive() or listings == 0:
        for landing_file in list_landing_files(landing, HL7):
            assert landing_file.size_bytes == sizes[landing_file.relative_path]
        listings += 1
    writer.join()

    assert [f.relative_path for f in list_landing_files(landing, HL7)] == sorted(sizes)


def test_a_durable_delivery_syncs_the_bytes_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    landing = resolve_location(str(tmp_path / "landing"))
    target = tmp_path / "landing" / "2024" / "feed.hl7"
    synced = []
    real_fsync = os.fsync

    def recording_fsync(descriptor):
        synced.append((os.path.isdir(f"/proc/self/fd/{descriptor}"), target.exists()))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    delivered = deliver(landing, "2024/feed.hl7", b"MSH|durable", durable=True)

    assert synced == [(False, False), (True, True)]  # the file before it has its name, then its folder
    assert delivered.path == str(target) and target.read_bytes() == b"MSH|durable"
    assert [(f.relative_path, f.size_bytes) for f in list_landing_files(landing, HL7)] == [("2024/feed.hl7", 11)]


def test_a_plain_delivery_does_not_sync(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda descriptor: pytest.fail("fsync without durable=True"))
    deliver(resolve_location(str(tmp_path)), "feed.hl7", b"MSH|fast")
    assert (tmp_path / "feed.hl7").read_bytes() == b"MSH|fast"


class _RecordingObjectStore(pafs.SubTreeFileSystem):
    """A local folder seen as an object store: no rename, and every write recorded."""

    def __init__(self, base_path: str):
        super().__init__(base_path, pafs.LocalFileSystem())
        self.writes: list[str] = []

    def open_output_stream(self, path, *args, **kwargs):
        self.writes.append(path)
        return super().open_output_stream(path, *args, **kwargs)

    def move(self, src, dest):
        pytest.fail("an object store has no rename: a delivery is one PUT")


def test_on_an_object_store_a_delivery_is_one_put(tmp_path):
    store = _RecordingObjectStore(str(tmp_path))
    landing = Location(store, "landing/hl7")
    data = b"MSH|^~\\&|" + b"y" * 5_000

    deliver(landing, "site-a/feed.hl7", data, durable=True)

    assert store.writes == ["landing/hl7/site-a/feed.hl7"]
    assert [(f.relative_path, f.size_bytes) for f in list_landing_files(landing, HL7)] == [("site-a/feed.hl7", len(data))]
    assert (tmp_path / "landing" / "hl7" / "site-a" / "feed.hl7").read_bytes() == data


def test_a_second_delivery_of_a_name_replaces_the_file_whole(tmp_path):
    landing = resolve_location(str(tmp_path))
    deliver(landing, "feed.hl7", b"MSH|first and longer")
    deliver(landing, "feed.hl7", b"MSH|second")
    assert (tmp_path / "feed.hl7").read_bytes() == b"MSH|second"


@pytest.mark.parametrize("name", ["_marker.hl7", ".partial.hl7", "site/_tmp/feed.hl7", "../feed.hl7", "/feed.hl7", "a//b.hl7", ""])
def test_a_name_the_listing_would_skip_is_refused(tmp_path, name):
    with pytest.raises(ValueError, match="cannot deliver"):
        deliver(resolve_location(str(tmp_path / "landing")), name, b"MSH|")
    assert not (tmp_path / "landing").exists() and not (tmp_path / "feed.hl7").exists()
