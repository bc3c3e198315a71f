"""A night with nothing new: every step after the parse carries its output over (no file rewritten,
every check reported, each asset says from which run); a new file, another key, a table changed by
hand or MEDICAL_ASSETS_RECOMPUTE make the steps compute again, and the result equals a rebuild."""

import secrets
import shutil
from pathlib import Path

import dagster as dg
import pytest
from pydicom.data import get_testdata_file

from medical_assets.defs.carry_over import CARRIED_OVER
from medical_assets.synthetic.hl7 import HL7CorpusSettings, render_message
from medical_assets_tests.defs.pipeline import materialize_all
from medical_assets_tests.published import read_published

pytestmark = pytest.mark.slow

STEPS = ("hl7_deidentified_tables", "dicom_deidentified_export", "analytics_tables", "dashboards")
MESSAGES_PER_FILE = 40


def _write_feed_file(feed: Path, number: int) -> None:
    settings = HL7CorpusSettings(total_messages=10 * MESSAGES_PER_FILE)
    first = number * MESSAGES_PER_FILE
    (feed / f"feed-{number}.hl7").write_text("".join(render_message(settings, n) + "\n" for n in range(first, first + MESSAGES_PER_FILE)))


@pytest.fixture(scope="module")
def feeds(tmp_path_factory):
    """A hospital's HL7 folder (two files) and DICOM folder (two of pydicom's test files)."""
    root = tmp_path_factory.mktemp("feeds")
    (root / "hl7").mkdir()
    (root / "dicom").mkdir()
    for number in range(2):
        _write_feed_file(root / "hl7", number)
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(get_testdata_file(name), root / "dicom" / name)
    return root


def _run(data: Path, key: str, feeds: Path, selection=None, **settings):
    # In memory: a run's log is all these tests read of the instance (sqlite would add ~2 s a run).
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize_all(
            data, key, selection, messages=0, dicom_files=0, instance=instance,
            hl7_source=str(feeds / "hl7"), dicom_source=str(feeds / "dicom"), **settings,
        )
        log = "\n".join(entry.user_message for entry in instance.all_logs(result.run_id))
    assert result.success, log[-3000:]
    return result, log


def _carried_over(result) -> dict[str, str | None]:
    """Per de-identified asset, the run whose output this run carried over (None: made by this run)."""
    carried = {}
    for event in result.get_asset_materialization_events():
        key = event.asset_key.to_user_string()
        if key.startswith("deid/"):
            value = event.materialization.metadata.get(CARRIED_OVER)
            carried[key] = value.value if value is not None else None
    return carried


def _file_versions(data: Path) -> dict[str, int]:
    return {str(path.relative_to(data)): path.stat().st_mtime_ns for path in (data / "deid").rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def history(feeds, tmp_path_factory, shared_ray):
    """One run that computed everything, and its data folder."""
    data = tmp_path_factory.mktemp("history") / "data"
    key = secrets.token_urlsafe(32)
    first, log = _run(data, key, feeds)
    assert all(f"{step}: computed, because no earlier run of this step is recorded" in log for step in STEPS), log
    return data, key, first.run_id


def test_nothing_new_carries_every_step_over_and_rewrites_nothing(history, feeds):
    data, key, first_run = history
    before = _file_versions(data)
    result, log = _run(data, key, feeds)
    assert all(f"{step}: no input, setting or code changed since run {first_run}" in log for step in STEPS), log
    from medical_assets.definitions import defs

    deid_assets = {key.to_user_string() for key in defs.resolve_all_asset_keys() if key.path[0] == "deid"}
    carried = _carried_over(result)
    assert carried.keys() == deid_assets and set(carried.values()) == {first_run}, carried
    # Every leak check reported, passed, and says which run's scan it reports.
    checks = [evaluation for evaluation in result.get_asset_check_evaluations() if evaluation.check_name.startswith("no_identifiers_leaked")]
    assert {check.asset_key.to_user_string() for check in checks} == deid_assets and all(check.passed for check in checks)
    assert {check.metadata["scanned by run"].value for check in checks} == {first_run}
    assert _file_versions(data) == before


def _copy(data: Path, target: Path) -> Path:
    shutil.copytree(data, target, symlinks=True)  # modification times kept: the copy carries over too
    return target


def test_a_new_file_computes_again_and_equals_a_rebuild(history, feeds, tmp_path):
    data, key, _ = history
    data = _copy(data, tmp_path / "nightly")
    _write_feed_file(feeds / "hl7", 2)  # the night's file, in the hospital's folder
    try:
        result, log = _run(data, key, feeds)
        assert "HL7 parse plan: incremental: 1 new or changed files, 0 removed, 2 kept" in log, log
        assert "hl7_deidentified_tables: computed, because phi/hl7_encounters changed" in log, log
        assert all(f"{step}: computed, because" in log for step in STEPS), log
        assert not any(_carried_over(result).values())
        rebuilt, _ = _run(tmp_path / "rebuilt", key, feeds)
    finally:
        (feeds / "hl7" / "feed-2.hl7").unlink()
    assert not any(_carried_over(rebuilt).values())
    nightly, full = read_published(data), read_published(tmp_path / "rebuilt")
    assert nightly.tables.keys() == full.tables.keys() and len(nightly.tables) >= 25
    for table, (schema, rows) in full.tables.items():
        assert nightly.tables[table] == (schema, rows), f"{table} differs from a full rebuild"
    assert nightly.folders["deid/dicom"] == full.folders["deid/dicom"]
    pngs = {name for name in full.folders["deid/reports"] if name.endswith(".png")}
    assert pngs and all(nightly.folders["deid/reports"][name] == full.folders["deid/reports"][name] for name in pngs)


def test_another_key_or_a_requested_recompute_computes_again(history, feeds, tmp_path):
    data, key, _ = history
    data = _copy(data, tmp_path / "data")
    one_step = [dg.AssetKey(["deid", "hl7_messages"])]  # the others decide alike (see the test above)
    _, log = _run(data, key, feeds, selection=one_step, recompute=True)
    assert "hl7_deidentified_tables: computed, because MEDICAL_ASSETS_RECOMPUTE is set" in log, log
    result, log = _run(data, secrets.token_urlsafe(32), feeds, selection=one_step)
    assert "hl7_deidentified_tables: computed, because settings changed: keys" in log, log
    assert not any(_carried_over(result).values())


def test_a_table_changed_by_hand_is_made_again(history, feeds, tmp_path):
    data, key, first_run = history
    data = _copy(data, tmp_path / "data")
    before = read_published(data).tables["deid/hl7_lab_results"]
    next(iter(sorted((data / "deid" / "hl7_lab_results").glob("*.parquet")))).unlink()
    _, log = _run(data, key, feeds, selection=[dg.AssetKey(["deid", "hl7_messages"])])
    assert f"hl7_deidentified_tables: computed, because deid/hl7_lab_results changed since run {first_run} published it" in log, log
    assert read_published(data).tables["deid/hl7_lab_results"] == before
