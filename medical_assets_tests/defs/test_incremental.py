"""Incremental parsing through dagster.materialize: only new or changed files are parsed, the tables
stay complete (each message exactly once), and a full rebuild gives the same rows."""

import os

import dagster as dg
import pyarrow.parquet as pq
import pytest

from medical_assets.defs.resources import PipelineConfig, RayResource
from medical_assets.hl7.tables import TABLES as HL7_TABLES
from medical_assets.synthetic.hl7 import HL7CorpusSettings, render_file
from medical_assets_tests import hl7_samples

pytestmark = pytest.mark.slow

CORPUS = HL7CorpusSettings(total_messages=2_000, messages_per_file=250)


def _parse(data_dir, source) -> dg.ExecuteInProcessResult:
    from medical_assets.definitions import defs

    result = dg.materialize(
        [defs.get_assets_def(key) for key in ("hl7_landing_manifest", "hl7_messages")],
        resources={
            "pipeline": PipelineConfig(data_dir=str(data_dir), hl7_source=str(source)),
            "ray_engine": RayResource(num_cpus=2),
        },
    )
    assert result.success
    return result


def _write(source, index, data=None):
    (source / f"feed_{index:03d}.hl7").write_bytes(data if data is not None else render_file(CORPUS, index))


def _rows(data_dir, table):
    """The table's rows in a canonical order, so runs that wrote different parts compare equal."""
    rows = pq.read_table(os.path.join(data_dir, "phi", table)).to_pylist()
    return sorted(rows, key=lambda row: (row["source_file"], row.get("message_index") or 0, repr(sorted(row.items()))))


def _plan(result):
    events = result.asset_materializations_for_node("hl7_parsed_tables")
    metadata = {e.asset_key.to_user_string(): e.metadata for e in events}["hl7_messages"]
    return metadata["parse plan"].value, metadata["files parsed this run"].value


def _published_parts(data_dir):
    return sorted(os.listdir(os.path.join(data_dir, "phi", "hl7_messages")))


def test_only_new_and_changed_files_are_parsed_and_the_tables_stay_exact(shared_ray, tmp_path):
    source, data = tmp_path / "feed", tmp_path / "data"
    source.mkdir()
    for index in range(6):
        _write(source, index)
    assert _plan(_parse(data, source)) == ("full", 6)
    assert len(_rows(data, "hl7_messages")) == 1_500

    # Nothing new: nothing parsed, nothing rewritten.
    parts = _published_parts(data)
    assert _plan(_parse(data, source)) == ("incremental", 0)
    assert _published_parts(data) == parts

    # Two new files, one file replaced by a feed with a broken message, one file removed.
    _write(source, 6)
    _write(source, 7)
    _write(source, 2, hl7_samples.feed_with_broken_message())
    os.remove(source / "feed_004.hl7")
    assert _plan(_parse(data, source)) == ("incremental", 3)

    incremental = {table: _rows(data, table) for table in HL7_TABLES}
    messages = incremental["hl7_messages"]
    keys = [(row["source_file"], row["message_index"]) for row in messages]
    assert len(keys) == len(set(keys)), "a message is published twice"
    per_file = {}
    for path, _ in keys:
        per_file[os.path.basename(path)] = per_file.get(os.path.basename(path), 0) + 1
    assert per_file["feed_000.hl7"] == per_file["feed_007.hl7"] == 250
    assert "feed_004.hl7" not in per_file
    assert 0 < per_file["feed_002.hl7"] < 250
    assert {os.path.basename(r["source_file"]) for r in incremental["hl7_errors"]} == {"feed_002.hl7"}

    # A full rebuild from the same files gives exactly the same rows in every table.
    rebuilt = tmp_path / "rebuilt"
    assert _plan(_parse(rebuilt, source)) == ("full", 7)
    for table in HL7_TABLES:
        assert _rows(rebuilt, table) == incremental[table], table


def test_a_touched_but_unchanged_file_is_not_parsed_again(shared_ray, tmp_path):
    source, data = tmp_path / "feed", tmp_path / "data"
    source.mkdir()
    _write(source, 0)
    _write(source, 1)
    _parse(data, source)
    os.utime(source / "feed_001.hl7", (1_700_000_000, 1_700_000_000))  # new time, same bytes
    assert _plan(_parse(data, source)) == ("incremental", 0)
    assert len(_rows(data, "hl7_messages")) == 500
