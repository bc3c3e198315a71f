"""Nights that add files: the HL7 de-identification computes only the new parts and those whose
patients or vocabulary the new data changed, carries the others over, and after several nights the
published tables equal one full run over the same files, table by table."""

import re
import secrets
import shutil
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from medical_assets.defs import groups
from medical_assets.synthetic.hl7 import HL7CorpusSettings, render_message
from medical_assets_tests.defs.pipeline import materialize_all
from medical_assets_tests.published import read_published

pytestmark = pytest.mark.slow

_PLAN = re.compile(r"hl7_deidentified_tables: (\d+) part\(s\) carried over, (\d+) de-identified \((?:(\d+) new part\(s\), (\d+) whose|every part)")
# A threshold of 2: a text value is published once 3 patients have it, so a night can make one public.
SETTINGS = {"suppression_threshold": 2}


def _oru(control: str, mrn: str, family: str, born: str, when: str, test: str = "718-7^Hemoglobin^LN") -> str:
    """A lab result as an interface engine sends it: a patient, a visit, one order, one result (a
    value no other patient has: a result value shared by enough patients is vocabulary too)."""
    return "\r".join([
        f"MSH|^~\\&|LAB|REGIONAL_CLINIC|EMR|SURGERY|{when}||ORU^R01^ORU_R01|{control}|P|2.4",
        f"PID|1||{mrn}^^^^MR||{family}^ALICE^||{born}|F|||12 ELM ST^^BALTIMORE^MD^21201",
        "PV1|1|O",
        f"OBR|1|ORD{control}|LAB{control}|58410-2^CBC panel^LN|||{when}",
        f"OBX|1|NM|{test}||13.{mrn}|g/dL|12.0-17.5|N|||F|||{when}",
    ]) + "\r\n"


# Everything but the reports, which are drawn from the analytics compared here (and cost seconds a run).
WITHOUT_REPORTS = dg.AssetSelection.all() - dg.AssetSelection.groups(groups.REPORTS)


def _run(data: Path, key: str, landing: Path) -> str:
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize_all(data, key, WITHOUT_REPORTS, messages=0, dicom_files=0, instance=instance,
                                 hl7_source=str(landing), dicom_source=str(landing.parent / "dicom"), **SETTINGS)
        log = "\n".join(entry.user_message for entry in instance.all_logs(result.run_id))
    assert result.success, log[-3000:]
    return log


def _plan(log: str) -> dict[str, int]:
    carried, computed, new, touched = (int(n or 0) for n in _PLAN.search(log).groups())
    return {"carried": carried, "computed": computed, "new": new, "touched": touched}


def test_nights_of_new_files_compute_only_what_changed_and_equal_one_full_run(shared_ray, tmp_path):
    landing, data, key = tmp_path / "hl7", tmp_path / "data", secrets.token_urlsafe(32)
    landing.mkdir()
    (tmp_path / "dicom").mkdir()
    synthetic = HL7CorpusSettings(total_messages=400)
    (landing / "day0-a.hl7").write_text("".join(render_message(synthetic, n) + "\n" for n in range(80)))
    (landing / "day0-b.hl7").write_text(
        _oru("OLD0001", "7700123", "ELDER", "19301115", "20200301093000")  # 89 then
        + _oru("RARE0001", "7700200", "FIRST", "19800101", "20240301093000", "99999-9^Ferritin special^LN")
    )
    first = _plan(_run(data, key, landing))
    assert first["carried"] == 0 and first["computed"] >= 1

    # Night 1: two new patients with the common lab test: only the new part is computed.
    (landing / "day1.hl7").write_text(
        _oru("NEW0001", "7700301", "NEWMAN", "19700101", "20250101080000")
        + _oru("NEW0002", "7700302", "NEWTON", "19710101", "20250101090000")
    )
    night = _plan(_run(data, key, landing))
    assert night["new"] == 1 and night["touched"] == 0 and night["carried"] >= 1, night
    # What each part's census, identifiers and analytics summary are is kept, one file a part.
    parts = len(list((data / "phi" / "hl7_messages").glob("part-*.parquet")))
    for kept in ("parts", "identifiers", "summaries"):
        assert len([f for f in (data / "phi" / "_census" / kept).iterdir() if not f.name.startswith(".")]) == parts, kept

    # Night 2: the old patient's next visit, at 90, and two more patients with the rare test (3
    # patients now: vocabulary). Every part holding the patient or the test is computed again.
    (landing / "day2.hl7").write_text(
        _oru("OLD0002", "7700123", "ELDER", "19301115", "20210105093000")
        + _oru("RARE0002", "7700201", "SECOND", "19800102", "20250301093000", "99999-9^Ferritin special^LN")
        + _oru("RARE0003", "7700202", "THIRD", "19800103", "20250302093000", "99999-9^Ferritin special^LN")
    )
    night = _plan(_run(data, key, landing))
    assert night["new"] == 1 and night["touched"] >= 1, night
    elder = _messages_of_years(data, {2020, 2021})  # the synthetic visits are later
    assert len(elder) == 2 and len({row["patient_token"] for row in elder}) == 1, elder
    # Their visit at 89, in a part carried over last night, no longer shows the age or birth year.
    by_year = {row["message_year"]: (row["birth_year"], row["age_at_message"]) for row in elder}
    assert by_year == {2020: (None, None), 2021: (None, "90+")}, by_year
    # The rare test, withheld in the old part until now, is published there too.
    names = pq.read_table(data / "deid" / "hl7_lab_results").column("observation_name")
    assert pc.sum(pc.equal(names, "Ferritin special")).as_py() == 3

    rebuilt = tmp_path / "rebuilt"
    _run(rebuilt, key, landing)
    nightly, full = read_published(data), read_published(rebuilt)
    assert nightly.tables.keys() == full.tables.keys()
    for table, (schema, rows) in full.tables.items():
        assert nightly.tables[table] == (schema, rows), f"{table} differs from a full run over the same files"
    shutil.rmtree(rebuilt)


def _messages_of_years(data: Path, years: set[int]) -> list[dict]:
    messages = pq.read_table(data / "deid" / "hl7_messages").to_pylist()
    return [row for row in messages if row["message_year"] in years]
