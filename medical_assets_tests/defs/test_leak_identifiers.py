"""The leak checks' identifiers are collected once per run and version of the PHI tables, never from a stale one."""

import pyarrow as pa

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


def test_a_scanner_is_shared_only_by_checks_that_look_for_the_same_identifiers_the_same_way(tmp_path):
    phi = resolve_location(str(tmp_path / "phi"))
    part = phi.child("hl7_messages", "part-00000.parquet")
    write_table_atomically(_messages(["Okonkwo"]), part)
    identifiers = leak_gate._phi_identifiers("run-1", phi)

    hl7 = leak_gate._scanner("run-1", "safe_harbor", identifiers, [], aggregates=False)
    assert leak_gate._scanner("run-1", "safe_harbor", identifiers, [], aggregates=False) is hl7
    assert leak_gate._scanner("run-1", "safe_harbor", identifiers, ["<script>"], aggregates=False) is not hl7
    assert leak_gate._scanner("run-1", "safe_harbor", identifiers, [], aggregates=True) is not hl7

    # The PHI tables change: the scanner built for them is not reused, and finds the new name.
    write_table_atomically(_messages(["Okonkwo", "Vasquez-Thornbury"]), part)
    changed = leak_gate._phi_identifiers("run-1", phi)
    scanner = leak_gate._scanner("run-1", "safe_harbor", changed, [], aggregates=False)
    assert scanner is not hl7
    assert scanner.scan_text("seen: Vasquez-Thornbury") == ["patient_family_name"]


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
