"""The analytics' kept latest rows as a base and nights' deltas (`engine.kept_combination`): after
any run of nights, each patient's current row and the counts by gender and age band are those of
one reduction of every row, whether the deltas were merged or not; a night reads its own patients'
rows only, and writes neither the base nor the earlier deltas again."""

import numpy as np
import pyarrow as pa
import pytest

from medical_assets.analytics import summaries
from medical_assets.engine import kept_combination
from medical_assets.storage import resolve_location

LATEST = summaries.SUMMARY_SCHEMAS["latest_patients"]
GENDERS = ["F", "M", "U", None]
BANDS = ["0-17", "18-44", "45-64", "65-89", "90+", None]


def _rows(rng: np.random.Generator, patients: np.ndarray) -> pa.Table:
    """One latest row candidate per patient number given (repeats allowed): years collide often
    (ties go to the later row), some are null, genders and bands change between rows."""
    years = rng.integers(2019, 2023, len(patients))
    return pa.table(
        {
            "patient_token": pa.array([None if n < 0 else f"p{n:07d}" for n in patients.tolist()]),
            "message_year": pa.array([None if y == 2019 else int(y) for y in years.tolist()], pa.int16()),
            "patient_gender": pa.array([GENDERS[i] for i in rng.integers(0, len(GENDERS), len(patients)).tolist()]),
            "age_band": pa.array([BANDS[i] for i in rng.integers(0, len(BANDS), len(patients)).tolist()]),
        },
        schema=LATEST,
    )


def _empty_sums() -> dict:
    return {name: schema.empty_table() for name, schema in summaries.SUMMARY_SCHEMAS.items() if name != "latest_patients"}


def _current(folder, kept) -> dict:
    """Every patient's current row, from the kept files as a reader of them would take it."""
    tables = [kept_combination._read_latest(folder.child(name).read_bytes()) for name, _ in kept.latest_files]
    return _by_patient(summaries.latest_per_patient(pa.concat_tables(tables)))


def _by_patient(latest: pa.Table) -> dict:
    return {row["patient_token"]: row for row in latest.to_pylist()}


def _counts(table: pa.Table) -> dict:
    return {(row["patient_gender"], row["age_band"]): row["patients"] for row in table.to_pylist()}


@pytest.mark.parametrize("merge_at_least", [10**9, 300])  # never merged; merged now and then
def test_nights_of_returning_and_new_patients_equal_one_reduction(tmp_path, monkeypatch, merge_at_least):
    monkeypatch.setattr(kept_combination, "_MERGE_AT_LEAST", merge_at_least)
    rng = np.random.default_rng(7)
    folder = resolve_location(str(tmp_path / "analytics"))
    history = _rows(rng, rng.integers(-1, 2_000, 5_000))  # a first run: 2,000 patients, some rows without a token
    sums = _empty_sums()
    first = summaries.latest_per_patient(history)
    kept_combination.write_kept(folder, sums, ["g0"], summaries.patient_counts(first), [], first)
    everything, merged_once = [history], False
    for night in range(1, 12):
        # Returning patients (among the oldest and the newest), new ones, and a patient twice in a night.
        patients = np.concatenate([rng.integers(0, 2_000 + 100 * night, 120), np.arange(5_000 + 100 * night, 5_060 + 100 * night)])
        rows = _rows(rng, np.concatenate([patients, patients[:5]]))
        groups = [f"g{n}" for n in range(night + 1)]
        assert kept_combination.combined_groups(folder, groups) == night
        kept = kept_combination.read_kept(folder)
        new_rows, counts = kept_combination.fold_latest(folder, kept, rows)
        kept_combination.write_kept(folder, sums, groups, counts, kept.latest_files, new_rows)
        everything.append(rows)

        whole = summaries.latest_per_patient(pa.concat_tables(everything))
        kept = kept_combination.read_kept(folder)
        assert _current(folder, kept) == _by_patient(whole), night
        assert _counts(kept.counts) == _counts(summaries.patient_counts(whole)), night
        assert summaries.demographics_of_counts(kept.counts).equals(summaries.patient_demographics(whole, True))
        merged_once |= len(kept.latest_files) == 1
        # The folder holds the files named, and no other.
        assert sorted(p.name for p in (tmp_path / "analytics").iterdir()) == sorted(["combined.parquet", *(n for n, _ in kept.latest_files)])
    assert merged_once == (merge_at_least == 300)


def test_a_night_reads_the_kept_files_only_for_its_patients_and_writes_one_delta(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    folder = resolve_location(str(tmp_path / "analytics"))
    first = summaries.latest_per_patient(_rows(rng, np.arange(50_000)))
    kept_combination.write_kept(folder, _empty_sums(), ["g0"], summaries.patient_counts(first), [], first)
    base = kept_combination.read_kept(folder).latest_files[0][0]
    base_bytes = (tmp_path / "analytics" / base).read_bytes()
    decoded = []
    read_latest = kept_combination._read_latest
    monkeypatch.setattr(kept_combination, "_read_latest", lambda data, fields=None: decoded.append(fields) or read_latest(data, fields))

    kept = kept_combination.read_kept(folder)
    new_rows, counts = kept_combination.fold_latest(folder, kept, _rows(rng, np.arange(90_000, 90_050)))  # new patients only
    assert decoded == [[0]] and new_rows.num_rows == 50  # the token column alone, no match: nothing more
    kept_combination.write_kept(folder, _empty_sums(), ["g0", "g1"], counts, kept.latest_files, new_rows)
    files = kept_combination.read_kept(folder).latest_files
    assert [name for name, _ in files][0] == base and [rows for _, rows in files] == [50_000, 50]
    assert (tmp_path / "analytics" / base).read_bytes() == base_bytes  # the base is not written again
