"""The code location loads fast and clean: every asset described, and no Ray started at load time."""

import dagster as dg

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
    *(f"deid/reports/{name}" for name in ("dashboard", "utilization", "demographics", "labs", "imaging", "dicom_preview")),
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
        assert node.group_name in {"landing", "phi", "deid", "analytics"}, key
        assert (node.group_name in {"deid", "analytics"}) == (key.path[0] == "deid"), key
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
    assert {"deid/hl7_messages", "deid/dicom_images", "hl7_errors"} <= parents["deid/analytics/data_quality_files"]
    assert "deid/analytics/lab_results" in parents["deid/reports/dashboard"]


def test_the_leak_checks_block_the_deid_zone():
    from medical_assets.definitions import defs

    # The leak checks live in their assets (publish on pass); the others are asset checks of their own.
    specs = {spec.name: spec for checks_def in defs.asset_checks for spec in checks_def.check_specs}
    for asset in defs.assets:
        specs |= {spec.name: spec for spec in asset.check_specs}
    assert {"no_identifiers_leaked_hl7", "no_identifiers_leaked_dicom", "zones_agree"} <= set(specs)
    assert specs["no_identifiers_leaked_hl7"].blocking and specs["no_identifiers_leaked_dicom"].blocking
    assert specs["no_identifiers_leaked_hl7"].asset_key == dg.AssetKey(["deid", "hl7_messages"])


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
