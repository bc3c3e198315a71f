"""The leak checks' identifiers are collected, and their index built, once per run and version of the PHI
tables, never from a stale one."""

import pyarrow as pa

from medical_assets.config import load_settings
from medical_assets.defs import leak_gate
from medical_assets.hl7.tables import HL7_MESSAGES
from medical_assets.storage import resolve_location, write_table_atomically


def _messages(family_names: list[str]) -> pa.Table:
    rows = [{"patient_family_name": name, "patient_id": f"MRN{index:07d}"} for index, name in enumerate(family_names)]
    return pa.Table.from_pylist(rows, schema=HL7_MESSAGES)


def test_identifiers_are_read_once_per_run_and_version_of_the_phi_tables(tmp_path, monkeypatch):
    phi = resolve_location(str(tmp_path / "phi"))
    part = phi.child("hl7_messages", "part-00000.parquet")
    write_table_atomically(_messages(["Okonkwo"]), part)
    reads = []  # one entry per collection of the identifiers
    collect = leak_gate.collect_identifiers
    monkeypatch.setattr(leak_gate, "collect_identifiers", lambda tables: reads.append(tables) or collect(tables))

    first = leak_gate._phi_identifiers("run-1", phi)
    again = leak_gate._phi_identifiers("run-1", phi)

    assert first["Okonkwo"] == "patient_family_name" and again is first
    assert len(reads) == 1

    # A new version of the table (a re-run's publication): read again, the new name is in.
    write_table_atomically(_messages(["Okonkwo", "Vasquez-Thornbury"]), part)
    changed = leak_gate._phi_identifiers("run-1", phi)

    assert changed["Vasquez-Thornbury"] == "patient_family_name"
    assert len(reads) == 2

    # Another run reads afresh, whatever the files look like.
    leak_gate._phi_identifiers("run-2", phi)
    assert len(reads) == 3


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
    phi = resolve_location(str(tmp_path / "phi"))
    write_table_atomically(_messages(["Okonkwo", "Vasquez-Thornbury"]), phi.child("hl7_messages", "part-00000.parquet"))
    columns_read = []
    read_table = leak_gate.read_table
    monkeypatch.setattr(
        leak_gate, "read_table", lambda *args, **kwargs: columns_read.append(kwargs["columns"]) or read_table(*args, **kwargs)
    )

    identifiers = leak_gate._phi_identifiers("run-1", phi)

    assert identifiers["Vasquez-Thornbury"] == "patient_family_name"
    assert identifiers["MRN0000001"] == "patient_id"
    assert columns_read and all(len(columns) == 1 for columns in columns_read)
    assert "patient_gender" not in {column for columns in columns_read for column in columns}


def test_an_index_prepared_while_the_step_works_is_the_one_its_check_uses(tmp_path, monkeypatch):
    """A step starts building the index in a thread before its Ray jobs; its check waits for that
    build instead of making a second one."""
    settings = load_settings({}, data_dir=str(tmp_path))
    write_table_atomically(_messages(["Okonkwo"]), settings.zone("phi").child("hl7_messages", "part-00000.parquet"))
    builds = []
    index_class = leak_gate.IdentifierIndex
    monkeypatch.setattr(leak_gate, "IdentifierIndex", lambda identifiers: builds.append(len(identifiers)) or index_class(identifiers))

    leak_gate.prepare_identifier_index("run-7", settings)
    index = leak_gate._identifier_index("run-7", settings)  # at once: waits for the thread if it is building

    assert len(builds) == 1
    assert leak_gate._identifier_index("run-7", settings) is index
    assert leak_gate.LeakScanner(index).scan_text("seen: Okonkwo") == ["patient_family_name"]
