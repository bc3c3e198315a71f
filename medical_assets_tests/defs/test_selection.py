"""Selection works everywhere: after one full run, every asset key, every group and every kind
materializes alone, in process and from the CLI, with the checks of what was selected."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from medical_assets_tests.defs.pipeline import materialize_all

pytestmark = pytest.mark.slow

MESSAGES, DICOM_FILES = 60, 4


def _asset_keys() -> list[dg.AssetKey]:
    from medical_assets.definitions import defs

    return sorted(defs.resolve_all_asset_keys(), key=lambda key: key.to_user_string())


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_ray):
    data = tmp_path_factory.mktemp("selection") / "data"
    key = secrets.token_hex(32)
    result = materialize_all(data, key, messages=MESSAGES, dicom_files=DICOM_FILES)
    assert result.success
    return data, key


@pytest.mark.parametrize("asset_key", _asset_keys(), ids=lambda key: key.to_user_string())
def test_each_asset_materializes_alone(built, asset_key):
    data, key = built
    result = materialize_all(data, key, selection=[asset_key], messages=MESSAGES, dicom_files=DICOM_FILES)
    assert result.success
    assert _outputs(result) == {asset_key}
    # The checks of the selected asset come along, and pass; no other asset's check runs.
    evaluations = result.get_asset_check_evaluations()
    assert all(evaluation.asset_key == asset_key for evaluation in evaluations)
    assert all(evaluation.passed for evaluation in evaluations)
    if asset_key.path[0] == "deid":
        assert any(evaluation.check_name.startswith("no_identifiers_leaked") for evaluation in evaluations)


@pytest.mark.parametrize("selection", ["group:landing", "group:phi", "group:deid", "group:analytics", "group:reports", "kind:hl7", "kind:dicom"])
def test_each_group_and_kind_materializes_alone(built, selection):
    from medical_assets.definitions import defs

    data, key = built
    result = materialize_all(data, key, selection=selection, messages=MESSAGES, dicom_files=DICOM_FILES)
    assert result.success
    expected = dg.AssetSelection.from_string(selection).resolve(defs.resolve_asset_graph())
    assert expected and _outputs(result) == expected


def _outputs(result) -> set[dg.AssetKey]:
    """The assets the run materialized as its outputs; the rest of a step's set is recorded
    "published with" them."""
    events = result.get_asset_materialization_events()
    return {event.asset_key for event in events if "published with" not in event.materialization.metadata}


def test_a_step_that_publishes_its_set_together_records_every_table_it_wrote(built):
    """One parse writes every HL7 table (they share the part names later steps join on): selecting
    one reports it as the run's output and the others as materialized with it, never silently."""
    data, key = built
    result = materialize_all(data, key, selection=[dg.AssetKey(["deid", "hl7_lab_results"])], messages=MESSAGES, dicom_files=DICOM_FILES)
    assert result.success
    events = {event.asset_key.to_user_string(): event for event in result.get_asset_materialization_events()}
    assert set(events) == {"deid/hl7_messages", "deid/hl7_lab_results", "deid/hl7_pharmacy_orders", "deid/hl7_encounters"}
    assert "published with" in events["deid/hl7_messages"].materialization.metadata
    assert "published with" not in events["deid/hl7_lab_results"].materialization.metadata
    # The catalog describes every column: source and treatment, from the declarations.
    columns = events["deid/hl7_lab_results"].materialization.metadata["dagster/column_schema"].schema.columns
    assert all(column.description for column in columns)
    assert any("Treatment: tokenise" in column.description for column in columns)


def test_one_asset_from_the_cli(built, tmp_path):
    """The user's CI: `dagster asset materialize --select <one key>` in a subprocess."""
    data, key = built
    home = tmp_path / "dagster_home"
    home.mkdir()
    root = Path(__file__).resolve().parents[2]
    (home / "dagster.yaml").write_bytes((root / "dagster.yaml").read_bytes())
    env = {
        **os.environ, "DAGSTER_HOME": str(home), "MEDICAL_ASSETS_DATA_DIR": str(data), "MEDICAL_ASSETS_PSEUDONYM_KEY": key,
        "MEDICAL_ASSETS_SYNTHETIC_HL7_MESSAGES": str(MESSAGES), "MEDICAL_ASSETS_SYNTHETIC_DICOM_FILES": str(DICOM_FILES),
    }
    before = pq.read_table(data / "deid" / "analytics" / "lab_results")
    done = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "asset", "materialize", "-m", "medical_assets.definitions",
         "--select", "deid/analytics/lab_results"],
        cwd=root, env=env, capture_output=True, text=True, timeout=300, start_new_session=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DagsterInvalidSubsetError" not in done.stderr
    after = pq.read_table(data / "deid" / "analytics" / "lab_results")
    assert after.to_pylist() == before.to_pylist()
