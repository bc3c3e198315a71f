"""A night with nothing new: every step after the parse carries its output over (no file rewritten,
every check reported, each asset says from which run); another key, a table changed by hand or
MEDICAL_ASSETS_RECOMPUTE make the steps compute again; nights of new files de-identify only the
parts that changed, and the result equals a rebuild."""

import re
import secrets
import shutil
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medical_assets.defs.carry_over import CARRIED_OVER
from medical_assets.defs.resources import RAY_STARTED
from medical_assets.synthetic.hl7 import HL7CorpusSettings, render_message
from medical_assets_tests.defs.pipeline import every_job_in_ray, materialize_all
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
    with every_job_in_ray():  # the nights' jobs run in their own process: the two must agree
        first, log = _run(data, key, feeds)
    assert RAY_STARTED in log
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


_PLAN = re.compile(r"hl7_deidentified_tables: (\d+) part\(s\) carried over, (\d+) de-identified \((\d+) new part\(s\), (\d+) whose")


def _oru(
    control: str, mrn: str, family: str, born: str, when: str, test: str = "718-7^Hemoglobin^LN",
    facility: str = "REGIONAL_CLINIC", value: str | None = None,
) -> str:
    """A lab result as an interface engine sends it: a patient, a visit, one order, one result (a
    value no other patient has: a result value shared by enough patients is vocabulary too). Sex
    unknown (U): the small history has about ten patients of each sex, so one more F or M would make
    it vocabulary and touch every part, as it should."""
    return "\r".join([
        f"MSH|^~\\&|LAB|{facility}|EMR|SURGERY|{when}||ORU^R01^ORU_R01|{control}|P|2.4",
        f"PID|1||{mrn}^^^^MR||{family}^ALICE^||{born}|U|||12 ELM ST^^BALTIMORE^MD^21201",
        "PV1|1|O",
        f"OBR|1|ORD{control}|LAB{control}|58410-2^CBC panel^LN|||{when}",
        f"OBX|1|NM|{test}||{value or '13.' + mrn}|g/dL|12.0-17.5|N|||F|||{when}",
    ]) + "\r\n"


def _write_new_image(path: Path) -> None:
    """CT_small as another patient's study: new identifiers and UIDs, written by pydicom."""
    image = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    image.PatientID, image.PatientName = "NEW3CT", "NEWCOMER^THIRD"
    image.StudyInstanceUID, image.SeriesInstanceUID = "1.2.826.0.1.3680043.2.1125.3.1", "1.2.826.0.1.3680043.2.1125.3.2"
    image.SOPInstanceUID = image.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.2.1125.3.3"
    image.save_as(path, enforce_file_format=True)


def _plan(log: str) -> dict[str, int]:
    carried, computed, new, touched = map(int, _PLAN.search(log).groups())
    return {"carried": carried, "computed": computed, "new": new, "touched": touched}


def _messages_of_years(data: Path, years: set[int]) -> list[dict]:
    return [row for row in pq.read_table(data / "deid" / "hl7_messages").to_pylist() if row["message_year"] in years]


def test_nights_of_new_files_compute_only_what_changed_and_equal_a_rebuild(history, feeds, tmp_path):
    """Night 1 brings new patients (and an 89-year-old's visit, and one patient's rare test): only
    the new part is de-identified, the history's parts are copied, and the DICOM export is kept.
    Night 2 brings that patient's visit at 90, ten more patients with the rare test (11: vocabulary
    now) and a visit at 94 of the patient of an image (CT_small: MRN 1CT1 of JFK IMAGING CENTER):
    the part of night 1 is de-identified again, and the images exported again. Night 3 brings an
    image of a new patient: only its part is exported. Then the published zone equals a rebuild
    from the same files."""
    data, key, first_run = history
    data = _copy(data, tmp_path / "nightly")
    nights = [feeds / "hl7" / "night-1.hl7", feeds / "hl7" / "night-2.hl7"]
    new_image = feeds / "dicom" / "night-3.dcm"
    rare = "99999-9^Ferritin special^LN"
    try:
        nights[0].write_text(
            _oru("NEW0001", "7700301", "NEWMAN", "19700101", "20250101080000")
            + _oru("OLD0001", "7700123", "ELDER", "19301115", "20200301093000")  # 89 then
            + _oru("RARE0000", "7700200", "FIRST", "19800101", "20240301093000", rare)
        )
        dicom_before = {name: mtime for name, mtime in _file_versions(data).items() if name.startswith("deid/dicom")}
        result, log = _run(data, key, feeds)
        assert "HL7 parse plan: incremental: 1 new or changed files, 0 removed, 2 kept" in log, log
        assert RAY_STARTED not in log, "a night of a few messages runs every job in the run's process"
        assert "hl7_deidentified_tables: computed, because phi/hl7_encounters changed" in log, log
        assert all(f"{step}: computed, because" in log for step in STEPS), log
        # The analytics summarize the new part only, and fold it into the last run's combination.
        assert "analytics: 1 part group(s) summarized and folded into the kept combination of" in log, log
        # The images' export stands: HL7 parts only, no DICOM patient 90+ more; its files are not rewritten.
        assert f"dicom_deidentified_export: the export of run {first_run} carried over: the new data is 1 HL7 part(s)" in log, log
        carried = {asset: run for asset, run in _carried_over(result).items() if run}
        assert carried == {asset: first_run for asset in ("deid/dicom_images", "deid/dicom_thumbnails", "deid/dicom_files")}, carried
        assert {name: mtime for name, mtime in _file_versions(data).items() if name.startswith("deid/dicom")} == dicom_before
        night = _plan(log)
        assert night["new"] == 1 and night["touched"] == 0 and night["carried"] >= 1, night
        # What each part's census, identifiers and analytics summary are is kept, one file a part
        # (the census in two: its patients apart from its few other rows).
        parts = len(list((data / "phi" / "hl7_messages").glob("part-*.parquet")))
        images = len(list((data / "phi" / "dicom_images").glob("part-*.parquet")))
        assert len([f for f in (data / "phi" / "_census" / "summaries").iterdir()]) == parts
        for kept in ("parts", "identifiers"):
            files = [f for f in (data / "phi" / "_census" / kept).iterdir() if not f.name.startswith(".")]
            census_patients = [f for f in files if f.name.endswith(".patients.parquet")]
            assert len(files) - len(census_patients) == parts + images, kept
            assert len(census_patients) == (parts + images if kept == "parts" else 0), kept

        nights[1].write_text(
            _oru("OLD0002", "7700123", "ELDER", "19301115", "20210105093000")
            + "".join(_oru(f"RARE{n:04d}", f"77002{n:02d}", "RARER", "19800102", "20250301093000", rare) for n in range(1, 11))
            + _oru("CT000094", "1CT1", "SCANNED", "19100101", "20040301093000", facility="JFK IMAGING CENTER", value="13.4")
        )
        _, log = _run(data, key, feeds)
        assert (f"dicom_deidentified_export: 0 part(s) carried over, {images} exported (every image: the new data changed "
                "which DICOM patients are 90+)") in log, log
        night = _plan(log)
        assert night["new"] == 1 and night["touched"] >= 1, night
        # Night 1's part was de-identified again: its summary changed, so every group is combined again.
        assert "part group(s) combined (no kept combination of the first ones)" in log, log
        elder = _messages_of_years(data, {2020, 2021})  # the synthetic visits are later
        assert len(elder) == 2 and len({row["patient_token"] for row in elder}) == 1, elder
        # Their visit at 89, in a part copied over last night, no longer shows the age or birth year.
        by_year = {row["message_year"]: (row["birth_year"], row["age_at_message"]) for row in elder}
        assert by_year == {2020: (None, None), 2021: (None, "90+")}, by_year
        # The rare test, withheld in last night's part until now, is published there too.
        names = pq.read_table(data / "deid" / "hl7_lab_results").column("observation_name")
        assert pc.sum(pc.equal(names, "Ferritin special")).as_py() == 11

        # Night 3: an image of a new patient. Only its part is exported; the published images are
        # linked into the new publication as they are.
        published_files = {path: path.stat().st_ino for path in (data / "deid" / "dicom").rglob("*.dcm")}
        _write_new_image(new_image)
        _, log = _run(data, key, feeds)
        assert f"dicom_deidentified_export: {images} part(s) carried over, 1 exported (1 new DICOM part(s))" in log, log
        assert published_files and {path: path.stat().st_ino for path in published_files} == published_files
        assert len(list((data / "deid" / "dicom").rglob("*.dcm"))) == len(published_files) + 1

        with every_job_in_ray():
            rebuilt, _ = _run(tmp_path / "rebuilt", key, feeds)
    finally:
        for path in [*nights, new_image]:
            path.unlink(missing_ok=True)
    assert not any(_carried_over(rebuilt).values())
    nightly, full = read_published(data), read_published(tmp_path / "rebuilt")
    # Nights in the run's process, the rebuild in Ray's workers: the same tables.
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


def test_a_carried_export_is_searched_for_the_new_parts_identifiers(history, feeds, tmp_path, shared_ray):
    """`rescan_published` (what keeps a DICOM export through a night of HL7 files) finds, in files
    kept as they were, a name of an HL7 part read since; and not when that part is not new."""
    from types import SimpleNamespace

    import pyarrow as pa

    from medical_assets.config import load_settings
    from medical_assets.defs.deidentified import DICOM_LEAK_CHECK
    from medical_assets.defs.leak_gate import rescan_published

    data, _, _ = history
    data = _copy(data, tmp_path / "rescanned")
    settings = load_settings({}, data_dir=str(data))
    part = sorted(path.name for path in (data / "phi" / "hl7_messages").glob("part-*.parquet"))[0]
    name = next(n for n in pq.read_table(data / "phi" / "hl7_messages" / part).column("patient_family_name").to_pylist()
                if n and len(n) >= 5)
    published = data / "deid" / "dicom_images"
    pq.write_table(pa.table({"body_part_examined": [f"seen by {name} yesterday"]}), published / "part-99999.parquet")
    context = SimpleNamespace(run=SimpleNamespace(run_id="rescan-test"))  # what the audit record needs of a run
    roots = [settings.zone("deid").child("dicom_images")]
    found = rescan_published(context, settings, DICOM_LEAK_CHECK, roots, [part])
    assert [f.kind for f in found if "part-99999" in f.where] == ["patient_family_name"], found
    assert name not in repr(found)
    assert not rescan_published(context, settings, DICOM_LEAK_CHECK, roots, [])
