"""A night's search of exported DICOM files through their kept texts (`engine.cell_texts.DICOM_FOLDER`)
finds exactly what reading the files finds, reads none of them, and needs no Ray; a file written
again is read again. The files: pydicom's own test data, and ours with a private element and bytes
pydicom cannot parse."""

import os
import shutil
from io import BytesIO

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from medical_assets.engine import leak_jobs
from medical_assets.engine.cell_texts import CellTextFolder, published_files
from medical_assets.privacy.leak_readers import dicom_file_key
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
    assert len(list((tmp_path / "phi" / "_census" / "dicom_texts").glob("*.arrow"))) == 5

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

    store.prune(published_files(exported))
    kept = {path.stem for path in (tmp_path / "cache").glob("*.arrow")}
    assert old_key not in kept and dicom_file_key(rewritten) in kept and len(kept) == 5


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
