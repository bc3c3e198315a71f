"""A night's search of carried-over Parquet files through their kept cell texts (`engine.cell_texts`)
finds exactly what reading the files finds, and reads no file whose texts are kept."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medical_assets.engine.cell_texts import CellTextFolder, published_keys
from medical_assets.privacy import leak_scanner
from medical_assets.privacy.leak_readers import parquet_file_footer_digest
from medical_assets.privacy.leak_scanner import LeakScanner
from medical_assets.storage import Location, resolve_location

# What the first check looked for, and what a night adds (among them values already in the files).
FIRST = {"OKONKWO": "patient_family_name", "MRN0012345": "patient_id"}
NEW = {"Vasquez": "patient_family_name", "7745120": "patient_id", "3S-12": "visit_number", "Amoxicillin": "patient_city"}


def _part(path, rows: int = 300) -> None:
    table = pa.table({
        "message_token": pa.array([f"{n:024x}" for n in range(rows)]),  # our token column: not searched at night
        "patient_token": pa.array(["7745120" if n == 5 else f"{n:024x}" for n in range(rows)]),
        "give_name": pa.array(["Amoxicillin 500 MG" if n % 3 else "Vasquez blend" for n in range(rows)]),
        "room_note": pa.array([None if n % 7 else "seen in 3S-12" for n in range(rows)]),
        "numeric_value": pa.array([7745120.0 if n == 9 else n / 4 for n in range(rows)]),
        "message_index": pa.array(range(rows), pa.int32()),
        "issues": pa.array([["PID-7 empty"] if n % 5 == 0 else [] for n in range(rows)], pa.list_(pa.string())),
    })
    table = table.replace_schema_metadata({"medical_assets.run_id": "run-1"})
    pq.write_table(table, path, row_group_size=100)


@pytest.fixture
def published(tmp_path):
    root = tmp_path / "deid" / "hl7_pharmacy_orders"
    root.mkdir(parents=True)
    for number in range(3):
        _part(root / f"part-{number:05d}.parquet", rows=300 + number)
    return resolve_location(str(root))


def _night_scanner(store) -> LeakScanner:
    return LeakScanner(NEW, measurements=["numeric_value"], patterns=False, token_columns=False, cell_texts=store)


def test_kept_texts_give_the_findings_of_the_files_and_no_file_is_read(published, tmp_path, monkeypatch):
    store = CellTextFolder(resolve_location(str(tmp_path / "phi" / "_census" / "cell_texts")))
    # The first check reads every column, token columns too, and keeps the files' texts.
    first = LeakScanner(FIRST, measurements=["numeric_value"], cell_texts=store)
    assert first.scan_tree(published) == []
    assert len(list((tmp_path / "phi" / "_census" / "cell_texts").glob("*.arrow"))) == 3

    expected = _night_scanner(None).scan_tree(published)
    assert {finding.kind for finding in expected} == {"patient_family_name", "visit_number", "patient_city"}
    read_bytes = Location.read_bytes

    def no_part_read(location):
        assert "/deid/" not in location.path, f"{location.path} was read"
        return read_bytes(location)

    monkeypatch.setattr(Location, "read_bytes", no_part_read)
    assert _night_scanner(store).scan_tree(published) == expected


def test_a_file_written_again_is_read_again_and_its_texts_kept_anew(published, tmp_path):
    store = CellTextFolder(resolve_location(str(tmp_path / "cache")))
    night = _night_scanner(store)
    night.scan_tree(published)  # no texts kept yet: read, and kept
    part = published.child("part-00001.parquet")
    old_digest = parquet_file_footer_digest(part)
    _part(part.path, rows=40)  # rewritten: another footer
    assert parquet_file_footer_digest(part) != old_digest
    assert night.scan_tree(published) == _night_scanner(None).scan_tree(published)
    store.prune(published_keys(published))
    kept = sorted(p.stem for p in (tmp_path / "cache").glob("*.arrow"))
    assert old_digest not in kept and parquet_file_footer_digest(part) in kept and len(kept) == 3


def test_only_a_search_without_tokens_and_patterns_uses_kept_texts(published, tmp_path, monkeypatch):
    store = CellTextFolder(resolve_location(str(tmp_path / "cache")))
    LeakScanner(FIRST, cell_texts=store).scan_tree(published)
    used = []
    monkeypatch.setattr(leak_scanner.LeakScanner, "_scan_kept_texts", lambda self, *args: used.append(args) or [])
    LeakScanner(NEW, cell_texts=store).scan_tree(published)  # a full search: tokens and patterns
    LeakScanner(NEW, patterns=False, token_columns=True, cell_texts=store).scan_tree(published)
    assert used == []
    _night_scanner(store).scan_tree(published)
    assert len(used) == 3
