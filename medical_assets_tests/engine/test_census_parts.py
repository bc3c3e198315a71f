"""The census part by part: each part's rows kept in the PHI zone, its patients apart from the rest,
so that a run reads the few rows of the parts it has seen without a Ray job."""

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medical_assets.engine import census_parts
from medical_assets.engine.tasks import map_tables
from medical_assets.hl7 import parse_hl7_file
from medical_assets.hl7.tables import TABLES
from medical_assets.storage import resolve_location
from medical_assets.synthetic.hl7 import HL7CorpusSettings, file_name, render_file


def _phi_zone(tmp_path, parts: int):
    settings = HL7CorpusSettings(total_messages=60 * 2 * parts, messages_per_file=60)
    files = [(render_file(settings, index), file_name(index)) for index in range(settings.file_count())]
    for part in range(parts):
        parsed = [parse_hl7_file(data, path).tables() for data, path in files[part::parts]]
        for table in TABLES:
            folder = tmp_path / "phi" / table
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(
                pa.concat_tables([p[table] for p in parsed]), str(folder / f"part-{part:05d}.parquet")
            )
    return resolve_location(str(tmp_path / "phi"))


def test_kept_parts_are_read_without_a_job_and_patients_come_back_only_when_asked(shared_ray, tmp_path, monkeypatch):
    phi = _phi_zone(tmp_path, parts=3)
    jobs = []
    monkeypatch.setattr(census_parts, "map_tables", lambda *args, **kwargs: jobs.append(args) or map_tables(*args, **kwargs))

    everything, digests = census_parts.census_by_part(phi, 3, "issuer", patients=None)  # computes and keeps every part
    assert len(jobs) == 1 and sorted(digests) == [f"part-{n:05d}.parquet" for n in range(3)]
    kinds = everything.column("kind")
    patients = everything.filter(pc.equal(kinds, "patient"))
    few = everything.filter(pc.not_equal(kinds, "patient"))
    assert patients.num_rows > 0 and few.num_rows > 0  # every patient of each part; the old patients and evidence
    kept = sorted(path.name for path in (tmp_path / "phi" / "_census" / "parts").iterdir())
    assert len(kept) == 6 and len([name for name in kept if name.endswith(".patients.parquet")]) == 3

    # By default: the same rows but the patients, read here, no job.
    rows, again = census_parts.census_by_part(phi, 3, "issuer")
    assert len(jobs) == 1 and again == digests
    assert sorted(map(repr, rows.to_pylist())) == sorted(map(repr, few.to_pylist()))

    # A damaged kept file is computed again, in a job, not a failure.
    damaged = next(path for path in (tmp_path / "phi" / "_census" / "parts").iterdir() if not path.name.endswith(".patients.parquet"))
    damaged.write_bytes(b"not parquet")
    rows, _ = census_parts.census_by_part(phi, 3, "issuer")
    assert len(jobs) == 2 and sorted(map(repr, rows.to_pylist())) == sorted(map(repr, few.to_pylist()))
    jobs.pop()

    # Asked for two patients: their rows (in whichever parts hold them), in a job that reads the kept files.
    asked = sorted(set(patients.column("patient").to_pylist()))[:2]
    rows, _ = census_parts.census_by_part(phi, 3, "issuer", patients=asked)
    assert len(jobs) == 2
    found = rows.filter(pc.equal(rows.column("kind"), "patient"))
    expected = patients.filter(pc.is_in(patients.column("patient"), value_set=pa.array(asked)))
    assert sorted(map(repr, found.to_pylist())) == sorted(map(repr, expected.to_pylist())) and found.num_rows >= 2

    # A new part: only it is computed, in a job; a part whose patients file is lost is computed again when asked.
    phi = _phi_zone(tmp_path, parts=4)  # rewrites the three parts with other files: all new
    rows, digests = census_parts.census_by_part(phi, 3, "issuer")
    assert len(jobs) == 3 and len(digests) == 4
    for lost in (tmp_path / "phi" / "_census" / "parts").glob("*.patients.parquet"):
        lost.unlink()
        break
    rows, _ = census_parts.census_by_part(phi, 3, "issuer", patients=None)
    assert pc.sum(pc.equal(rows.column("kind"), "patient")).as_py() > 0
    assert len(list((tmp_path / "phi" / "_census" / "parts").glob("*.patients.parquet"))) == 4


def test_looking_for_the_parts_of_a_patient_who_turned_90_reads_the_kept_files_here(shared_ray, tmp_path, monkeypatch):
    """A night in which a patient turns 90 reads every part's kept "patient" rows: in this process,
    however large the parts' tables (whose size decides where a census is computed); a part with
    nothing kept is still computed where its tables' size says."""
    phi = _phi_zone(tmp_path, parts=3)
    everything, _ = census_parts.census_by_part(phi, 3, "issuer", patients=None)
    places = []
    monkeypatch.setattr(census_parts, "map_tables", lambda *args, here=False, **kwargs: places.append(here) or map_tables(*args, here=here, **kwargs))
    monkeypatch.setattr(census_parts, "IN_PROCESS_PARQUET_BYTES", 1)  # every part's tables "too large" for here
    patient = everything.filter(pc.equal(everything.column("kind"), "patient")).column("patient")[0].as_py()
    rows, _ = census_parts.census_by_part(phi, 3, "issuer", patients=[patient])
    assert places == [True] and patient in rows.column("patient").to_pylist()

    next((tmp_path / "phi" / "_census" / "parts").glob("*.patients.parquet")).unlink()  # one part's patients lost
    rows, _ = census_parts.census_by_part(phi, 3, "issuer", patients=[patient])
    assert places == [True, False] and patient in rows.column("patient").to_pylist()
