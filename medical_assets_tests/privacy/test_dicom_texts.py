"""A night's search of exported DICOM files through their kept texts (`engine.cell_texts.DICOM_FOLDER`)
finds exactly what reading the files finds, reads none of them, and needs no Ray; a file written
again is read again. The files: pydicom's own test data, and ours with a private element and bytes
pydicom cannot parse."""

import os
import shutil
from io import BytesIO
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from medical_assets.defs import leak_gate
from medical_assets.engine import cell_texts, leak_jobs
from medical_assets.engine.cell_texts import CellTextFolder, published_keys
from medical_assets.privacy import identifier_index
from medical_assets.privacy.leak_readers import dicom_file_key, tree_listing
from medical_assets.privacy.leak_scanner import LeakScanner
from medical_assets.storage import Location, resolve_location

FIRST = {"OKONKWO": "patient_family_name", "MRN0012345": "patient_id"}  # in no file


def _ours(private_name: str, trailing: bytes = b"") -> bytes:
    dataset = Dataset()
    dataset.SOPClassUID, dataset.SOPInstanceUID = CTImageStorage, "2.25.7"
    dataset.PatientName, dataset.PatientID, dataset.Modality = "ANONYMOUS", "Q2WJ5R7K4N", "CT"
    dataset.private_block(0x0011, "ACME 1.0", create=True).add_new(0x10, "LO", private_name)
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = CTImageStorage
    dataset.file_meta.MediaStorageSOPInstanceUID = "2.25.7"
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.preamble = b"\x00" * 128
    buffer = BytesIO()
    dataset.save_as(buffer, implicit_vr=False, little_endian=True)
    return buffer.getvalue() + trailing


@pytest.fixture
def exported(tmp_path):
    root = tmp_path / "deid" / "dicom"
    for number, name in enumerate(["CT_small.dcm", "MR_small.dcm", "rtplan.dcm"]):
        (root / f"study{number}").mkdir(parents=True)
        shutil.copy(get_testdata_file(name), root / f"study{number}" / f"2.25.{number}.dcm")
    (root / "study3").mkdir()
    (root / "study3" / "2.25.3.dcm").write_bytes(_ours("VASQUEZ^ANA"))
    # Bytes after the data set: the name is found only by the raw search.
    (root / "study3" / "2.25.4.dcm").write_bytes(_ours("NOBODY", trailing=b"\x01\x02\x03PHILLIPS^AMY 002895568"))
    return resolve_location(str(root))


def _new_identifiers() -> dict[str, str]:
    """What a night adds: values that are in the files (the test data's patients, our planted ones)."""
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    mr = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    return {
        ct.PatientID: "patient_id", str(ct.PatientName.family_name): "patient_family_name",
        mr.PatientID: "patient_id", "VASQUEZ": "patient_family_name", "PHILLIPS": "patient_family_name",
        "002895568": "patient_id",
    }


def _night(store) -> LeakScanner:
    return LeakScanner(_new_identifiers(), patterns=False, token_columns=False, cell_texts=store)


def _files(root: Location) -> list[Location]:
    return [Location(root.filesystem, os.path.join(folder, name)) for folder, _, names in os.walk(root.path) for name in names]


def test_kept_texts_give_the_findings_of_the_files_without_reading_them_or_starting_ray(exported, tmp_path, monkeypatch):
    store = CellTextFolder(resolve_location(str(tmp_path / "phi" / "_census" / "dicom_texts")))
    assert LeakScanner(FIRST, cell_texts=store).scan_tree(exported) == []  # the export's own check keeps the texts
    # One bundle of five rows, not a file an image.
    bundles = list((tmp_path / "phi" / "_census" / "dicom_texts" / "bundles").glob("*.parquet"))
    assert len(bundles) == 1 and pq.read_metadata(bundles[0]).num_rows == 5
    assert not list((tmp_path / "phi" / "_census" / "dicom_texts").glob("*.arrow"))

    expected = _night(None).scan_tree(exported)
    places = {finding.where.split(": ", 1)[1] for finding in expected}
    assert "raw bytes" in places and "(0011,1010) private" in places and "(0010,0020) PatientID" in places
    assert {finding.kind for finding in expected} == {"patient_id", "patient_family_name"}

    night = _night(store)
    assert all(night.bytes_to_read(exported, file.path, 1 << 20) == 0 for file in _files(exported))
    read_bytes = Location.read_bytes

    def no_export_read(location):
        assert "/deid/" not in location.path, f"{location.path} was read"
        return read_bytes(location)

    def no_ray():
        raise AssertionError("the search of kept texts went to Ray")

    monkeypatch.setattr(Location, "read_bytes", no_export_read)
    monkeypatch.setattr(leak_jobs, "cluster_cpus", no_ray)
    assert night.scan_tree(exported) == expected
    # Sized by what it reads (nothing of the files), the job stays in this process.
    assert leak_jobs.scan_trees(night, [exported], in_process_bytes=1) == expected


def test_a_file_written_again_is_read_again_and_the_cache_keeps_the_published_files_only(exported, tmp_path, monkeypatch):
    store = CellTextFolder(resolve_location(str(tmp_path / "cache")))
    night = _night(store)
    night.scan_tree(exported)  # nothing kept yet: every file read, its texts kept
    rewritten = exported.child("study3", "2.25.3.dcm")
    old_key = dicom_file_key(rewritten)
    data = _ours("NOBODY^ANNE")  # another export of the image without the name, of the same size
    assert len(data) == os.path.getsize(rewritten.path)
    rewritten_stat = os.stat(rewritten.path)
    with open(rewritten.path, "wb") as out:
        out.write(data)
    os.utime(rewritten.path, ns=(rewritten_stat.st_atime_ns, rewritten_stat.st_mtime_ns + 1_000_000))
    assert dicom_file_key(rewritten) != old_key

    read = []
    read_bytes = Location.read_bytes
    monkeypatch.setattr(Location, "read_bytes", lambda location: read.append(location.path) or read_bytes(location))
    found = night.scan_tree(exported)
    assert [path for path in read if "/deid/" in path] == [rewritten.path]
    assert found == _night(None).scan_tree(exported)
    assert not any(finding.where.startswith("dicom/study3/2.25.3.dcm") for finding in found)

    store.prune(published_keys(exported))
    kept = CellTextFolder(store.folder)
    assert all(kept.has(dicom_file_key(file)) for file in _files(exported))
    # The first bundle still holds four published files (and the old texts until it is compacted);
    # the file written again is in the second.
    assert len(list((tmp_path / "cache" / "bundles").glob("*.parquet"))) == 2

    monkeypatch.setattr(cell_texts, "COMPACT_ABOVE", 1)
    store.prune(published_keys(exported))
    kept = CellTextFolder(store.folder)
    assert len(list((tmp_path / "cache" / "bundles").glob("*.parquet"))) == 1
    assert not kept.has(old_key) and all(kept.has(dicom_file_key(file)) for file in _files(exported))
    assert _night(kept).scan_tree(exported) == found

    # A published file gone: its bundle goes once none of its files is published.
    for file in _files(exported):
        os.remove(file.path)
    store.prune(published_keys(exported))
    assert not list((tmp_path / "cache" / "bundles").glob("*.parquet"))


def test_a_full_search_reads_the_files_even_when_their_texts_are_kept(exported, tmp_path, monkeypatch):
    store = CellTextFolder(resolve_location(str(tmp_path / "cache")))
    LeakScanner(FIRST, cell_texts=store).scan_tree(exported)
    read = []
    read_bytes = Location.read_bytes
    monkeypatch.setattr(Location, "read_bytes", lambda location: read.append(location.path) or read_bytes(location))
    full = LeakScanner(_new_identifiers(), cell_texts=store)  # patterns on: the kept texts do not serve
    assert full.bytes_to_read(exported, _files(exported)[0].path, 100) == 100
    assert full.scan_tree(exported) == LeakScanner(_new_identifiers()).scan_tree(exported)
    assert len([path for path in read if "/deid/" in path]) == 5 * 2


class _CountingFilesystem(pafs.FileSystemHandler):
    """The local filesystem, counting the requests made of it (an object store bills each, and
    answers each in milliseconds): a listing of a folder is one, a file's info one per path."""

    def __init__(self):
        self.local = pafs.LocalFileSystem()
        self.requests: list[tuple[str, str]] = []

    def _asked(self, what: str, path: str) -> None:
        self.requests.append((what, path))

    def get_type_name(self):
        return "counting"

    def normalize_path(self, path):
        return self.local.normalize_path(path)

    def equals(self, other):
        return self is other

    def get_file_info(self, paths):
        for path in paths:
            self._asked("info", path)
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector):
        self._asked("list", selector.base_dir)
        return self.local.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.local.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self._asked("delete", path)
        self.local.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise NotImplementedError

    def delete_file(self, path):
        self._asked("delete", path)
        self.local.delete_file(path)

    def move(self, src, dest):
        self._asked("move", dest)
        self.local.move(src, dest)

    def copy_file(self, src, dest):
        self._asked("copy", dest)
        self.local.copy_file(src, dest)

    def open_input_stream(self, path):
        self._asked("read", path)
        return self.local.open_input_stream(path)

    def open_input_file(self, path):
        self._asked("read", path)
        return self.local.open_input_file(path)

    def open_output_stream(self, path, metadata):
        self._asked("write", path)
        return self.local.open_output_stream(path, metadata=metadata)

    def open_append_stream(self, path, metadata):
        raise NotImplementedError


@pytest.mark.parametrize("copies", [1, 6])
def test_a_night_asks_the_store_for_a_few_bundles_not_for_each_image(exported, tmp_path, copies):
    """On an object store each request is billed and takes milliseconds: a night that asked for each
    exported image's info, presence and texts made four requests an image (400,000 at 100,000 images).
    Now the keys come from the tree's listing and the texts from bundles: the same requests for 5 or
    30 images, and none of the images read."""
    for copy in range(1, copies):
        for number in range(5):
            source = next(Path(exported.path).glob(f"study*/2.25.{number}.dcm"))
            target = Path(exported.path) / f"copy{copy}" / f"2.25.{copy}{number}.dcm"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    counting = _CountingFilesystem()
    filesystem = pafs.PyFileSystem(counting)
    root, store = Location(filesystem, exported.path), CellTextFolder(Location(filesystem, str(tmp_path / "phi" / "cache")))
    images = len(_files(exported))
    assert images == 5 * copies
    assert leak_jobs.scan_trees(LeakScanner(FIRST, cell_texts=store), [root]) == []  # the export's check
    assert len(list((tmp_path / "phi" / "cache" / "bundles").glob("*.parquet"))) == 1

    counting.requests.clear()
    night = leak_jobs.scan_trees(_night(CellTextFolder(store.folder)), [root])
    assert night == leak_jobs.scan_trees(_night(None), [exported])  # what reading every image finds
    assert not [path for what, path in counting.requests if what == "read" and "/deid/" in path]
    # The tree listed once; the cache listed, its one bundle's keys and texts read: a few requests, however many images.
    assert [what for what, _ in counting.requests].count("list") <= 3
    assert len(counting.requests) <= 8, counting.requests


def _copied(source: Location, target: Path) -> Location:
    """A copy of a tree whose files have times of their own, as an object store's copy has."""
    shutil.copytree(source.path, target, copy_function=shutil.copy)
    for path in target.rglob("*.dcm"):
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    return resolve_location(str(target))


def test_copies_made_by_a_run_are_searched_through_the_texts_of_their_originals(exported, tmp_path, monkeypatch):
    """An object store's commit copies the staged files out, and a carried file is copied into the
    staging where a hard link fails: each copy has its own time, so keyed by it every night read
    the whole DICOM history."""
    store = CellTextFolder(resolve_location(str(tmp_path / "cache")))
    staged = _copied(exported, tmp_path / "staging" / "run" / "dicom")  # a night stages the published files
    assert LeakScanner(FIRST, cell_texts=store).scan_tree(staged) == []  # the first run's check, of its staging
    published = _copied(staged, tmp_path / "published" / "dicom")  # its commit, by copy
    renamed = leak_gate._same_files({"dicom": leak_gate._dicom_files(staged)}, {"dicom": leak_gate._dicom_files(published)})
    assert len(renamed) == 5
    store.rekey(renamed)
    store.prune(published_keys(published))
    assert all(CellTextFolder(store.folder).has(dicom_file_key(file)) for file in _files(published))

    carried = _copied(published, tmp_path / "staging" / "night" / "dicom")  # the next night's carried copies
    expected = _night(None).scan_tree(carried)
    read = []
    read_bytes = Location.read_bytes
    monkeypatch.setattr(Location, "read_bytes", lambda location: read.append(location.path) or read_bytes(location))
    originals = leak_gate._published_originals([carried], [published], {listed.path for listed in tree_listing(carried)})
    assert len(originals) == 5
    night = _night(CellTextFolder(store.folder))
    assert leak_jobs.scan_trees(night, [carried], listed_as=originals) == expected
    assert not [path for path in read if "/staging/" in path or "/published/" in path]
    # Keyed by the copies' own times, every one of them is read.
    assert leak_jobs.scan_trees(_night(CellTextFolder(store.folder)), [carried]) == expected
    assert len([path for path in read if "/staging/night/" in path]) == 5


def test_carried_files_kept_in_place_are_searched_there_for_the_new_identifiers(exported, tmp_path, monkeypatch):
    """On an object store the carried images stay where they are published (`carry_file`): the
    check of a night searches them there for its new identifiers. One of them holds a new patient's
    name (in a private element), and the check finds it; the staged new image is searched too."""
    from types import SimpleNamespace

    staged = resolve_location(str(tmp_path / "staging" / "run" / "dicom"))
    staged.child("study9").makedirs()
    staged.child("study9", "2.25.9.dcm").write_bytes_atomically(_ours("NOBODY"))
    carried_files = {listed.path for listed in tree_listing(exported)}  # in place, under the published folder
    night = identifier_index.IdentifierIndex({"VASQUEZ": "patient_family_name"})  # in study3/2.25.3.dcm
    monkeypatch.setattr(leak_gate, "_identifier_index", lambda *args: identifier_index.IdentifierIndex(FIRST))
    settings = SimpleNamespace(deid_profile="safe_harbor")
    store = CellTextFolder(resolve_location(str(tmp_path / "cache")))
    findings, _, _ = leak_gate.scan_for_leaks(
        "run-1", settings, [staged], frozenset(), [], False, False, (), leak_gate.CarriedParts(frozenset(carried_files), night),
        False, store, published_roots=[exported],
    )
    assert [(finding.where, finding.kind) for finding in findings] == [
        ("dicom/study3/2.25.3.dcm: (0011,1010) private", "patient_family_name")
    ]
