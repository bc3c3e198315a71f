"""The code location loads fast and clean: every asset described, and no Ray started at load time."""

import os

import dagster as dg
import pytest

pytestmark = pytest.mark.ray_free  # asserts that loading the definitions starts no Ray

EXPECTED_ASSETS = {
    "synthetic_hl7_files",
    "hl7_landing_manifest",
    "hl7_messages",
    "hl7_lab_results",
    "hl7_pharmacy_orders",
    "hl7_encounters",
    "hl7_errors",
    "synthetic_dicom_files",
    "dicom_landing_manifest",
    "dicom_images",
    "dicom_thumbnails",
    "dicom_errors",
    "dicom_deid_excluded",
    "deid/hl7_messages",
    "deid/hl7_lab_results",
    "deid/hl7_pharmacy_orders",
    "deid/hl7_encounters",
    "deid/dicom_images",
    "deid/dicom_thumbnails",
    "deid/dicom_files",
    *(f"deid/analytics/{table}" for table in (
        "hospital_utilization", "patient_demographics", "message_types", "lab_results", "pharmacy", "imaging",
        "imaging_transfer_syntaxes", "data_quality_files", "data_quality_facilities",
    )),
    *(f"deid/reports/{name}" for name in ("dashboard", "utilization", "demographics", "labs", "imaging_workload", "dicom_preview")),
}


def test_definitions_load_without_starting_ray():
    import ray

    from medical_assets.definitions import defs

    assert not ray.is_initialized()
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == EXPECTED_ASSETS
    dg.Definitions.validate_loadable(defs)
    assert not ray.is_initialized()


def test_every_asset_explains_itself_in_the_ui():
    from medical_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, key
        assert node.group_name in {"landing", "phi", "deid", "analytics", "reports"}, key
        assert (node.group_name in {"deid", "analytics", "reports"}) == (key.path[0] == "deid"), key
        assert node.owners == ["team:medical-assets"], key
        assert node.tags.get("zone") == ("deid" if key.path[0] == "deid" else node.tags.get("zone")), key
        assert "ray" in node.kinds, key


def test_lineage_runs_landing_to_phi():
    from medical_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    parents = {key.to_user_string(): {p.to_user_string() for p in graph.get(key).parent_keys} for key in graph.get_all_asset_keys()}
    assert parents["hl7_landing_manifest"] == {"synthetic_hl7_files"}
    assert parents["hl7_messages"] == {"hl7_landing_manifest"}
    assert parents["dicom_landing_manifest"] == {"synthetic_dicom_files"}
    assert parents["dicom_images"] == parents["dicom_errors"] == parents["dicom_thumbnails"] == {"dicom_landing_manifest"}
    # The PHI tables of the other kind too: the census of 90+ patients spans HL7 and DICOM.
    assert parents["deid/hl7_lab_results"] == {"hl7_lab_results", "hl7_messages", "dicom_images"}
    assert "hl7_messages" in parents["deid/dicom_images"]
    assert parents["deid/dicom_files"] == parents["dicom_deid_excluded"] == {"dicom_images"}
    # Each analytics table and figure draws its edges from what it is computed from, not from everything.
    assert parents["deid/analytics/data_quality_files"] == {"deid/hl7_messages", "hl7_errors"}
    assert parents["deid/analytics/imaging"] == {"deid/dicom_images"}
    assert parents["deid/reports/labs"] == {"deid/analytics/lab_results"}
    assert "deid/analytics/lab_results" in parents["deid/reports/dashboard"]


def test_the_analytics_edges_cover_every_table_the_job_reads():
    from medical_assets.definitions import defs
    from medical_assets.engine.analytics_jobs import ANALYTICS_DEID_INPUTS, ANALYTICS_PHI_INPUTS

    graph = defs.resolve_asset_graph()
    analytics = [key for key in graph.get_all_asset_keys() if key.path[:2] == ["deid", "analytics"]]
    drawn = {parent.to_user_string() for key in analytics for parent in graph.get(key).parent_keys}
    read = {f"deid/{table}" for table in ANALYTICS_DEID_INPUTS} | set(ANALYTICS_PHI_INPUTS)
    assert drawn == read


def test_our_assets_carry_the_code_version_of_the_packages_that_make_them():
    from medical_assets.definitions import defs
    from medical_assets.defs import versions

    graph = defs.resolve_asset_graph()
    code_versions = {key.to_user_string(): graph.get(key).code_version for key in graph.get_all_asset_keys()}
    assert code_versions["hl7_messages"] == versions.HL7_PARSE
    assert code_versions["deid/dicom_images"] == versions.DICOM_DEID
    assert code_versions["deid/reports/labs"] == versions.ANALYTICS
    assert versions.HL7_PARSE != versions.DICOM_PARSE
    # The manifests list what is there: no code of ours decides their content.
    assert code_versions["hl7_landing_manifest"] is None


def test_the_leak_checks_block_the_deid_zone():
    from medical_assets.definitions import defs

    # The leak checks live in their assets (publish on pass), one per published asset, so that
    # selecting any one asset brings its check along; the others are asset checks of their own.
    graph = defs.resolve_asset_graph()
    specs = [spec for asset in defs.assets for spec in asset.check_specs]
    leak_checks = {spec.asset_key.to_user_string(): spec for spec in specs if spec.name.startswith("no_identifiers_leaked")}
    published = {key.to_user_string() for key in graph.get_all_asset_keys() if key.path[0] == "deid"}
    assert set(leak_checks) == published
    assert all(spec.blocking for spec in leak_checks.values())
    assert leak_checks["deid/hl7_lab_results"].name == "no_identifiers_leaked_hl7"
    assert leak_checks["deid/dicom_files"].name == "no_identifiers_leaked_dicom"
    others = {spec.name for checks_def in defs.asset_checks for spec in checks_def.check_specs}
    assert {"zones_agree", "schema_matches_contract", "hl7_error_rate"} <= others


def test_schema_differences_name_each_problem():
    import pyarrow as pa

    from medical_assets.defs.checks import schema_differences

    expected = pa.schema([("a", pa.string()), ("b", pa.int32())])
    assert schema_differences(expected, expected.with_metadata({b"x": b"y"})) == []
    found = pa.schema([("a", pa.large_string()), ("c", pa.int32())])
    assert schema_differences(expected, found) == [
        "missing column `b`",
        "unexpected column `c`",
        "`a` is large_string, the contract says string",
    ]


def test_one_code_location_for_dg_and_dagster():
    """`dg` reads [tool.dg]; `dagster dev` and the webserver read workspace.yaml: the same module."""
    import tomllib
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert "dagster" not in project["tool"], "a [tool.dagster] block would be a third place naming the code location"
    root_module = project["tool"]["dg"]["project"]["root_module"]
    workspace = yaml.safe_load((root / "workspace.yaml").read_text())
    assert workspace["load_from"] == [{"python_module": f"{root_module}.definitions"}]


@pytest.mark.slow
def test_an_asset_scaffolded_by_dg_is_loaded(tmp_path):
    """`dg scaffold defs dagster.asset` writes into the defs folder, and the code location loads it
    with nothing listed by hand; typed in a new user's shell (no DAGSTER_HOME)."""
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    shutil.copy(root / "pyproject.toml", tmp_path)
    shutil.copytree(root / "medical_assets", tmp_path / "medical_assets", ignore=shutil.ignore_patterns("__pycache__"))
    dg_cli = Path(sys.executable).with_name("dg")
    env = {name: value for name, value in os.environ.items() if name != "DAGSTER_HOME"}
    env["PYTHONPATH"] = str(tmp_path)  # this copy, not the installed package

    def run(*args: str) -> str:
        done = subprocess.run([str(dg_cli), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    run("scaffold", "defs", "dagster.asset", "scaffolded_asset.py")
    assert (tmp_path / "medical_assets" / "defs" / "scaffolded_asset.py").exists()
    listed = {asset["asset_key"] for asset in json.loads(run("list", "defs", "--json"))["assets"]}
    assert listed == EXPECTED_ASSETS | {"scaffolded_asset"}
