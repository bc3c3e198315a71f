"""Analytics and dashboards through dagster.materialize: real synthetic feeds, real Ray, the published
tables recomputed independently with pandas over the parsed tables of the session's whole-graph run."""

import base64
import json
import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medical_assets.analytics.chart_data import PNG_SIZES
from medical_assets.analytics.tables import ANALYTICS_TABLES
from medical_assets.defs.analytics import analytics_key
from medical_assets.defs.reports import report_key

pytestmark = pytest.mark.slow

THRESHOLD = 10  # the default suppression threshold, which the shared run keeps
COUNT_COLUMNS = {
    name: [f.name for f in schema if f.type == pa.int64()] for name, schema in ANALYTICS_TABLES.items()
}


@pytest.fixture(scope="module")
def run(pipeline_run):
    return pipeline_run.data, pipeline_run.result


def _phi(data, name):
    return pq.read_table(data / "phi" / name).to_pandas()


def _published(data, name):
    return pq.read_table(data / "deid" / "analytics" / name).to_pandas()


def _compare(published: pd.DataFrame, expected: pd.DataFrame, keys: list[str], counts: list[str]):
    """Every published cell equals the recomputed one, or is null where the recomputed one is
    small (1..threshold) or suppressed beside one (complementary suppression, never a zero)."""
    merged = expected.merge(published, on=keys, how="outer", suffixes=("_expected", ""), indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"][keys]
    for count in counts:
        truth, shown = merged[f"{count}_expected"], merged[count]
        assert (shown[shown.notna()] == truth[shown.notna()]).all(), count
        hidden = truth[shown.isna()]
        assert (hidden > 0).all(), f"{count}: a zero was suppressed"
    small = merged[[f"{c}_expected" for c in counts]].isin(range(1, THRESHOLD + 1)).to_numpy()
    assert merged[counts].isna().to_numpy()[small].all(), "a small cell was published"


def test_the_whole_pipeline_materializes_and_every_check_passes(run):
    data, result = run
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert [e.check_name for e in evaluations if not e.passed] == []
    names = {e.check_name for e in evaluations}
    assert {"no_identifiers_leaked_analytics", "no_identifiers_leaked_reports", "zones_agree"} <= names
    for table in ANALYTICS_TABLES:
        assert (data / "deid" / "analytics" / table).is_dir(), table
    assert sorted(os.listdir(data / "deid" / "reports")) == sorted(["dashboard.html", "privacy.html", *PNG_SIZES])


def test_message_types_recomputed_from_the_parsed_messages(run):
    data, _ = run
    messages = _phi(data, "hl7_messages")
    expected = messages.groupby(["message_type", "hl7_version"]).size().rename("messages").reset_index()
    _compare(_published(data, "message_types"), expected, ["message_type", "hl7_version"], ["messages"])


def test_hospital_utilization_recomputed_from_the_parsed_tables(run):
    data, _ = run
    messages = _phi(data, "hl7_messages")
    messages["month"] = messages["message_datetime"].dt.strftime("%Y-%m")
    key = ["source_file", "message_index"]
    places = messages[[*key, "sending_facility", "month"]]
    labs = _phi(data, "hl7_lab_results").merge(places, on=key)
    orders = _phi(data, "hl7_pharmacy_orders").merge(places, on=key)
    group = ["sending_facility", "month"]
    expected = pd.concat(
        [
            messages.groupby(group).size().rename("messages"),
            messages[messages["message_type"] == "ADT^A01"].groupby(group).size().rename("admissions"),
            messages[messages["message_type"] == "ADT^A03"].groupby(group).size().rename("discharges"),
            labs.groupby(group).size().rename("lab_results"),
            orders.groupby(group).size().rename("pharmacy_orders"),
        ],
        axis=1,
    ).fillna(0).astype("int64").reset_index()
    counts = ["messages", "admissions", "discharges", "lab_results", "pharmacy_orders"]
    _compare(_published(data, "hospital_utilization"), expected, group, counts)


def test_lab_results_recomputed_from_the_parsed_results(run):
    data, _ = run
    labs = _phi(data, "hl7_lab_results")
    labs["abnormal"] = labs["abnormal_flag"].fillna("").str.strip().isin(["", "N"]).map({True: 0, False: 1})
    group = ["observation_code", "observation_name", "units"]
    expected = labs.groupby(group, dropna=False).agg(results=("abnormal", "size"), abnormal_results=("abnormal", "sum"))
    published = _published(data, "lab_results")
    _compare(published, expected.reset_index(), group, ["results", "abnormal_results"])


def test_imaging_recomputed_from_the_exported_images(run):
    data, _ = run
    images = _phi(data, "dicom_images")
    exported = pq.read_table(data / "deid" / "dicom_images").num_rows
    excluded = _phi(data, "dicom_deid_excluded")
    images = images[~images["sop_instance_uid"].isin(excluded["sop_instance_uid"])] if len(excluded) else images
    assert len(images) == exported
    expected = images.groupby("modality").agg(studies=("study_instance_uid", "nunique"), images=("sop_instance_uid", "size"))
    _compare(_published(data, "imaging"), expected.reset_index(), ["modality"], ["studies", "images"])


@pytest.mark.parametrize("name", list(ANALYTICS_TABLES))
def test_no_published_count_lies_between_one_and_the_threshold(run, name):
    data, _ = run
    table = _published(data, name)
    for column in COUNT_COLUMNS[name]:
        values = table[column].dropna()
        assert not values.between(1, THRESHOLD).any(), f"{name}.{column}"


def test_every_parquet_file_of_the_deid_zone_carries_the_compliance_metadata(run):
    data, result = run
    files = [os.path.join(d, f) for d, _, fs in os.walk(data / "deid") for f in fs if f.endswith(".parquet")]
    assert len(files) >= len(ANALYTICS_TABLES) + 4
    for path in files:
        metadata = pq.read_schema(path).metadata
        for key in (b"deid.profile", b"deid.key_id", b"deid.standard", b"medical_assets.version", b"medical_assets.created"):
            assert metadata.get(key), (path, key)
        assert metadata[b"medical_assets.run_id"].decode() == result.run_id, path
        if os.path.relpath(path, data / "deid").startswith("analytics"):
            assert metadata[b"deid.suppression_threshold"] == str(THRESHOLD).encode(), path


def test_validation_scores_each_message_and_discharges_are_valid(run):
    data, _ = run
    messages = pq.read_table(data / "deid" / "hl7_messages").to_pandas()
    scores = messages["validation_score"]
    assert scores.notna().all() and scores.between(0, 1).all()
    # The synthetic feed is complete: every type scores 1, ADT^A03 included (the tutorial failed them all).
    discharges = messages[messages["message_type"] == "ADT^A03"]
    assert len(discharges) and (discharges["validation_score"] == 1.0).all()
    assert messages["validation_issues"].map(len).sum() == 0
    quality = _published(data, "data_quality_facilities")
    assert quality["mean_validation_score"].dropna().eq(1.0).all()


def test_dashboards_show_the_real_numbers_and_their_figures_in_dagster(run):
    data, result = run
    page = (data / "deid" / "reports" / "dashboard.html").read_text(encoding="utf-8")
    assert "<script src=" not in page and "<link " not in page  # self-contained
    types = _published(data, "message_types").dropna(subset=["messages"])
    for count in types["messages"].astype(int):
        assert str(count) in page
    materializations = {m.asset_key: m for m in result.get_asset_materialization_events()}
    for name in PNG_SIZES:
        event = materializations[report_key(name.removesuffix(".png"))].materialization
        figure = event.metadata["figure"].value
        prefix = "data:image/png;base64,"
        encoded = figure[figure.index(prefix) + len(prefix) : figure.rindex(")")]
        assert base64.b64decode(encoded) == (data / "deid" / "reports" / name).read_bytes()
    preview = materializations[analytics_key("message_types")].materialization.metadata["preview"].value
    assert "message_type" in preview and "source_file" not in preview


def test_csv_export_is_stamped_beside_its_files_and_feeds_the_dashboards(pipeline_run, tmp_path):
    """The analytics and dashboards again, over a copy of the shared run's zones."""
    data = pipeline_run.copy(tmp_path / "data")
    selection = [*(analytics_key(t) for t in ANALYTICS_TABLES), *(report_key(n.removesuffix(".png")) for n in PNG_SIZES),
                 report_key("dashboard")]
    result = pipeline_run.materialize(data, selection, export_format="csv", suppression_threshold=5)
    assert result.success
    folder = data / "deid" / "analytics" / "message_types"
    assert any(f.endswith(".csv") for f in os.listdir(folder))
    assert not any(f.endswith(".parquet") for f in os.listdir(folder))
    stamp = json.loads((folder / "_compliance.json").read_text())
    assert stamp["deid.suppression_threshold"] == "5" and stamp["deid.key_id"]
    csv = pd.concat(pd.read_csv(folder / f) for f in os.listdir(folder) if f.endswith(".csv"))
    assert not csv["messages"].dropna().between(1, 5).any()
    page = (data / "deid" / "reports" / "dashboard.html").read_text(encoding="utf-8")
    assert "suppressed (1-5)" in page or "1-5" in page
