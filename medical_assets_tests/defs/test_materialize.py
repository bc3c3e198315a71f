"""The whole graph through dagster.materialize: real Ray, real files, real Parquet."""

import os

import dagster as dg
import pyarrow.parquet as pq
import pytest

from medical_assets.defs.resources import PipelineConfig, RayResource
from medical_assets_tests import hl7_samples

pytestmark = pytest.mark.slow


def _materialize(data_dir, hl7_source=None, messages=1_000, raise_on_error=True):
    from medical_assets.definitions import defs

    assets = [defs.get_assets_def(key) for key in ("synthetic_hl7_files", "hl7_landing_manifest", "hl7_messages")]
    return dg.materialize(
        assets,
        resources={
            "pipeline": PipelineConfig(
                data_dir=str(data_dir), hl7_source=str(hl7_source) if hl7_source else None, synthetic_hl7_messages=messages
            ),
            "ray_engine": RayResource(num_cpus=2),
        },
        raise_on_error=raise_on_error,
    )


def _rows(data_dir, table):
    return pq.read_table(os.path.join(data_dir, "phi", table))


def test_synthetic_corpus_end_to_end_and_rerun_is_idempotent(shared_ray, tmp_path):
    data = tmp_path / "data"
    result = _materialize(data, messages=1_234)
    assert result.success
    messages = _rows(data, "hl7_messages")
    assert messages.num_rows == 1_234
    assert _rows(data, "hl7_errors").num_rows == 0
    assert set(messages["message_type"].to_pylist()) == {"ADT^A01", "ORU^R01", "RDE^O11", "ADT^A03"}
    assert _rows(data, "hl7_lab_results").num_rows >= 2 * messages.column("message_type").to_pylist().count("ORU^R01")

    events = result.asset_materializations_for_node("hl7_parsed_tables")
    counts = {e.asset_key.to_user_string(): e.metadata["dagster/row_count"].value for e in events}
    assert counts["hl7_messages"] == 1_234

    landing_before = sorted((data / "landing" / "hl7").iterdir())
    assert _materialize(data, messages=1_234).success
    assert _rows(data, "hl7_messages").num_rows == 1_234
    assert sorted((data / "landing" / "hl7").iterdir()) == landing_before
    assert not (data / "phi" / ".staging").exists()


def test_external_source_with_a_broken_message_and_an_empty_file(shared_ray, tmp_path):
    source = tmp_path / "feed"
    (source / "nested").mkdir(parents=True)
    (source / "clean.hl7").write_bytes(hl7_samples.clean_feed())
    (source / "nested" / "mixed.txt").write_bytes(hl7_samples.feed_with_broken_message())
    (source / "messy.er7").write_bytes(hl7_samples.MESSY_DISCHARGE)
    (source / "empty.msg").write_bytes(b"")
    (source / "notes.pdf").write_bytes(b"%PDF-1.4 not HL7")  # not an HL7 extension: ignored
    data = tmp_path / "data"

    assert _materialize(data, hl7_source=source).success

    assert not (data / "landing").exists(), "nothing synthetic may be generated when the source is set"
    messages = _rows(data, "hl7_messages")
    errors = _rows(data, "hl7_errors")
    assert messages.num_rows == 5
    assert sorted(messages["message_control_id"].to_pylist()) == ["CTRL0001", "CTRL0001", "CTRL0002", "CTRL0002", "CTRL0003"]
    assert errors.num_rows == 2  # the broken message and the empty file
    assert {os.path.basename(p) for p in errors["source_file"].to_pylist()} == {"mixed.txt", "empty.msg"}
    broken = [e for e in errors.to_pylist() if e["source_file"].endswith("mixed.txt")][0]
    assert broken["message_index"] == 1
    assert "SECRET" not in broken["error"] and "999999" not in broken["error"]
    labs = _rows(data, "hl7_lab_results")
    assert labs.num_rows == 4 and set(labs["placer_order_number"].to_pylist()) == {"PL1"}


def test_empty_source_gives_empty_tables_with_their_schema(shared_ray, tmp_path):
    from medical_assets.hl7.tables import TABLES

    source = tmp_path / "quiet-night"
    source.mkdir()
    data = tmp_path / "data"
    assert _materialize(data, hl7_source=source).success
    for name, schema in TABLES.items():
        table = _rows(data, name)
        assert table.num_rows == 0
        assert table.schema.remove_metadata().equals(schema)


def test_missing_source_fails_before_touching_outputs(tmp_path):
    data = tmp_path / "data"
    result = _materialize(data, hl7_source=tmp_path / "no-such-folder", raise_on_error=False)
    assert not result.success
    # The run fails as its resources start, before any step runs.
    failure = [e for e in result.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE"][0]
    assert "MEDICAL_ASSETS_HL7_SOURCE" in str(failure.event_specific_data.error.message)
    assert not [e for e in result.all_events if e.event_type_value == "STEP_START"]
    assert not (data / "phi").exists()
    assert not (data / "manifests").exists()
