"""The parse plan: which landing files an incremental run parses, and which published rows it drops."""

import pyarrow as pa

from medical_assets.landing import MANIFEST_SCHEMA, code_fingerprint, ledger_table, plan_parse


def _manifest(files: dict[str, str]) -> pa.Table:
    return pa.table(
        {
            "path": list(files),
            "relative_path": [path.rsplit("/", 1)[-1] for path in files],
            "size_bytes": [100] * len(files),
            "modified_time": pa.array([None] * len(files), pa.timestamp("us", tz="UTC")),
            "sha256": list(files.values()),
        },
        schema=MANIFEST_SCHEMA,
    )


def test_a_first_run_parses_everything():
    plan = plan_parse(_manifest({"/in/a.hl7": "1", "/in/b.hl7": "2"}), None, "v1")
    assert plan.full and [f.path for f in plan.parse] == ["/in/a.hl7", "/in/b.hl7"] and not plan.drop


def test_new_changed_and_removed_files_are_planned_by_content():
    ledger = ledger_table(_manifest({"/in/a.hl7": "1", "/in/b.hl7": "2", "/in/c.hl7": "3"}), "v1")
    plan = plan_parse(_manifest({"/in/a.hl7": "1", "/in/b.hl7": "2b", "/in/d.hl7": "4"}), ledger, "v1")
    assert not plan.full
    assert [f.path for f in plan.parse] == ["/in/b.hl7", "/in/d.hl7"]
    assert plan.drop == {"/in/b.hl7", "/in/c.hl7"}
    assert "2 new or changed files, 1 removed, 1 kept" in plan.reason


def test_nothing_to_do_when_nothing_changed():
    manifest = _manifest({"/in/a.hl7": "1"})
    assert plan_parse(manifest, ledger_table(manifest, "v1"), "v1").unchanged


def test_an_empty_landing_folder_as_before_is_left_alone_but_not_after_a_new_build(tmp_path):
    """A site without DICOM: nothing to parse, and the empty tables published last time stay (a new
    version of them each night would make every later step compute again). The ledger keeps its
    build through a Parquet round trip, as the parse publishes it."""
    import pyarrow.parquet as pq

    pq.write_table(ledger_table(_manifest({}), "v1"), tmp_path / "ledger.parquet")
    ledger = pq.read_table(tmp_path / "ledger.parquet")
    plan = plan_parse(_manifest({}), ledger, "v1")
    assert plan.unchanged and "empty" in plan.reason
    assert plan_parse(_manifest({}), ledger, "v2").full
    assert plan_parse(_manifest({"/in/a.dcm": "1"}), ledger, "v1").parse


def test_a_new_build_parses_everything_again():
    manifest = _manifest({"/in/a.hl7": "1"})
    plan = plan_parse(manifest, ledger_table(manifest, "v1"), "v2")
    assert plan.full and len(plan.parse) == 1


def test_the_code_fingerprint_is_stable_and_tells_packages_apart():
    assert code_fingerprint(["medical_assets.hl7"]) == code_fingerprint(["medical_assets.hl7"])
    assert code_fingerprint(["medical_assets.hl7"]) != code_fingerprint(["medical_assets.dicom"])
