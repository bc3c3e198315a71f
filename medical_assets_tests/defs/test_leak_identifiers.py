"""The leak checks' identifiers are collected once per part and kept hashed, their index built once per
run and version of the PHI tables, never from a stale one, and equal to one of the whole tables."""

import pyarrow as pa

from medical_assets.config import load_settings
from medical_assets.defs import leak_gate
from medical_assets.engine import identifier_parts
from medical_assets.hl7.tables import HL7_MESSAGES
from medical_assets.privacy.identifier_forms import collect_identifiers
from medical_assets.storage import write_table_atomically


def _messages(family_names: list[str]) -> pa.Table:
    rows = [{"patient_family_name": name, "patient_id": f"MRN{index:07d}"} for index, name in enumerate(family_names)]
    return pa.Table.from_pylist(rows, schema=HL7_MESSAGES)


def test_each_part_is_collected_once_and_later_runs_read_its_hashes_back(tmp_path, monkeypatch):
    settings = load_settings({}, data_dir=str(tmp_path))
    phi = settings.zone("phi")
    part = phi.child("hl7_messages", "part-00000.parquet")
    write_table_atomically(_messages(["Okonkwo"]), part)
    reads = []  # one entry per collection of a part's identifiers
    collect = identifier_parts.ranked_identifiers
    monkeypatch.setattr(identifier_parts, "ranked_identifiers", lambda tables, **kw: reads.append(tables) or collect(tables, **kw))

    first = leak_gate._identifier_index("run-1", settings)
    assert leak_gate._identifier_index("run-1", settings) is first
    assert leak_gate.LeakScanner(first).scan_text("seen: Okonkwo") == ["patient_family_name"]
    assert len(reads) == 1

    # Another run (the next night, nothing new): a new index, from the part's kept hashes.
    second = leak_gate._identifier_index("run-2", settings)
    assert second is not first and len(reads) == 1
    assert leak_gate.LeakScanner(second).scan_text("seen: Okonkwo") == ["patient_family_name"]

    # A new part: only it is collected. A rewritten part: collected again, its old hashes dropped.
    write_table_atomically(_messages(["Vasquez-Thornbury"]), phi.child("hl7_messages", "part-00001.parquet"))
    third = leak_gate._identifier_index("run-3", settings)
    assert len(reads) == 2
    assert all(leak_gate.LeakScanner(third).scan_text(name) == ["patient_family_name"] for name in ("Okonkwo", "Vasquez-Thornbury"))
    write_table_atomically(_messages(["Abernathy-Quist"]), part)
    fourth = leak_gate._identifier_index("run-4", settings)
    assert len(reads) == 3
    assert leak_gate.LeakScanner(fourth).scan_text("Okonkwo") == []
    assert len(list((tmp_path / "phi" / "_census" / "identifiers").glob("*.npz"))) == 2


def test_an_index_of_parts_equals_one_of_the_whole_tables_kind_for_kind(tmp_path):
    """A value two columns give (an MRN that is also another patient's account number) keeps the kind
    of the first column in collection order, whichever part holds which."""
    settings = load_settings({}, data_dir=str(tmp_path))
    phi = settings.zone("phi")
    rows = [  # the later column (account number) in the first part, the earlier (patient id) in the second
        [{"patient_id": "MRN0099999", "patient_account_number": "ACC0012345", "patient_family_name": "Lindqvist"}],
        [{"patient_id": "ACC0012345", "patient_family_name": "Lindqvist"}],
    ]
    for number, part_rows in enumerate(rows):
        write_table_atomically(pa.Table.from_pylist(part_rows, schema=HL7_MESSAGES),
                               phi.child("hl7_messages", f"part-{number:05d}.parquet"))
    whole = collect_identifiers({"hl7_messages": pa.Table.from_pylist(rows[0] + rows[1], schema=HL7_MESSAGES)})
    scanner = leak_gate.LeakScanner(leak_gate._identifier_index("run-1", settings), patterns=False)
    expected = leak_gate.LeakScanner(whole, patterns=False)
    for text in ("ACC0012345", "acc0012345 seen", "Lindqvist", "MRN0099999"):
        assert scanner.scan_text(text) == expected.scan_text(text) != [], text
    assert scanner.scan_text("ACC0012345") == ["patient_id"]


def test_one_index_serves_every_check_of_a_run_and_a_scanner_only_checks_that_look_the_same_way(tmp_path):
    settings = load_settings({}, data_dir=str(tmp_path))
    part = settings.zone("phi").child("hl7_messages", "part-00000.parquet")
    write_table_atomically(_messages(["Okonkwo"]), part)
    index = leak_gate._identifier_index("run-1", settings)
    assert leak_gate._identifier_index("run-1", settings) is index  # the HL7, DICOM, analytics and report checks

    hl7 = leak_gate._scanner("run-1", "safe_harbor", index, [], aggregates=False)
    assert leak_gate._scanner("run-1", "safe_harbor", index, [], aggregates=False) is hl7
    assert leak_gate._scanner("run-1", "safe_harbor", index, ["<script>"], aggregates=False) is not hl7
    assert leak_gate._scanner("run-1", "safe_harbor", index, [], aggregates=True) is not hl7

    # The PHI tables change: a new index and scanner, which find the new name.
    write_table_atomically(_messages(["Okonkwo", "Vasquez-Thornbury"]), part)
    changed = leak_gate._identifier_index("run-1", settings)
    assert changed is not index
    scanner = leak_gate._scanner("run-1", "safe_harbor", changed, [], aggregates=False)
    assert scanner is not hl7
    assert scanner.scan_text("seen: Vasquez-Thornbury") == ["patient_family_name"]

    # Another profile looks for other identifiers (date_shift: no birth dates): its own index.
    shifted = load_settings({}, data_dir=str(tmp_path), deid_profile="date_shift")
    assert leak_gate._identifier_index("run-1", shifted) is not changed


def test_the_phi_tables_are_read_one_identifier_column_at_a_time(tmp_path, monkeypatch):
    settings = load_settings({}, data_dir=str(tmp_path))
    write_table_atomically(_messages(["Okonkwo", "Vasquez-Thornbury"]), settings.zone("phi").child("hl7_messages", "part-00000.parquet"))
    columns_read = []
    read_table = identifier_parts.read_table
    monkeypatch.setattr(
        identifier_parts, "read_table", lambda *args, **kwargs: columns_read.append(kwargs["columns"]) or read_table(*args, **kwargs)
    )

    scanner = leak_gate.LeakScanner(leak_gate._identifier_index("run-1", settings), patterns=False)

    assert scanner.scan_text("Vasquez-Thornbury, MRN0000001") == ["patient_family_name", "patient_id"]
    assert columns_read and all(len(columns) == 1 for columns in columns_read)
    assert "patient_gender" not in {column for columns in columns_read for column in columns}


def test_an_index_prepared_while_the_step_works_is_the_one_its_check_uses(tmp_path, monkeypatch):
    """A step starts building the index in a thread before its Ray jobs; its check waits for that
    build instead of making a second one."""
    settings = load_settings({}, data_dir=str(tmp_path))
    write_table_atomically(_messages(["Okonkwo"]), settings.zone("phi").child("hl7_messages", "part-00000.parquet"))
    builds = []
    build = identifier_parts.identifier_index
    monkeypatch.setattr(identifier_parts, "identifier_index", lambda *args, **kw: builds.append(args) or build(*args, **kw))

    leak_gate.prepare_identifier_index("run-7", settings)
    index = leak_gate._identifier_index("run-7", settings)  # at once: waits for the thread if it is building

    assert len(builds) == 1
    assert leak_gate._identifier_index("run-7", settings) is index
    assert leak_gate.LeakScanner(index).scan_text("seen: Okonkwo") == ["patient_family_name"]


def test_a_night_check_uses_the_parts_as_kept_and_a_merged_index_serves_every_check(tmp_path):
    """Merging the parts' arrays costs seconds at millions of patients: a check of a night's few
    files (or of the analytics) asks for the parts as kept, found in the same places; a check of a
    whole output asks for a merged one, which then serves the run's later checks too."""
    settings = load_settings({}, data_dir=str(tmp_path))
    phi = settings.zone("phi")
    write_table_atomically(_messages(["Okonkwo"]), phi.child("hl7_messages", "part-00000.parquet"))
    write_table_atomically(_messages(["Vasquez-Thornbury"]), phi.child("hl7_messages", "part-00001.parquet"))

    by_part = leak_gate._identifier_index("run-1", settings, merged=False)
    assert leak_gate._identifier_index("run-1", settings, merged=False) is by_part
    merged = leak_gate._identifier_index("run-1", settings, merged=True)
    assert merged is not by_part
    assert leak_gate._identifier_index("run-1", settings, merged=False) is merged
    text = "seen: Okonkwo, Vasquez-Thornbury, MRN0000000"
    assert leak_gate.LeakScanner(by_part).scan_text(text) == leak_gate.LeakScanner(merged).scan_text(text) != []
    # The same MRN in both parts: counted once merged, once a part unmerged.
    assert len(by_part) > len(merged)

    assert leak_gate.merge_index_for(parts_searched=1, parts_carried=40) is False  # a night
    assert leak_gate.merge_index_for(parts_searched=12, parts_carried=0) is True  # a first run
    assert leak_gate.merge_index_for(parts_searched=9, parts_carried=31) is True  # a 90+ change touched many


def test_kept_arrays_are_read_in_place_and_a_damaged_file_is_collected_again(tmp_path):
    settings = load_settings({}, data_dir=str(tmp_path))
    phi = settings.zone("phi")
    write_table_atomically(_messages(["Okonkwo"]), phi.child("hl7_messages", "part-00000.parquet"))
    leak_gate._identifier_index("run-1", settings, merged=False)  # collects and keeps the part's arrays
    index = leak_gate._identifier_index("run-2", settings, merged=False)
    first_half = index._segments[0][0]
    assert not first_half.flags.owndata and not first_half.flags.writeable  # a view of the mapped file

    (kept,) = (tmp_path / "phi" / "_census" / "identifiers").glob("*.npz")
    kept.write_bytes(kept.read_bytes()[:100])  # torn by something outside the pipeline
    again = leak_gate._identifier_index("run-3", settings, merged=False)
    assert leak_gate.LeakScanner(again).scan_text("seen: Okonkwo") == ["patient_family_name"]
