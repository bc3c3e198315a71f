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


def _rows(rng: np.random.Generator, patients: np.ndarray, token: str = "p{:07d}") -> pa.Table:
    """One latest row candidate per patient number given (repeats allowed): years collide often
    (ties go to the later row), some are null, genders and bands change between rows. `token`:
    one length for all (as our keyed tokens), or of varying lengths (as reversible ones)."""
    years = rng.integers(2019, 2023, len(patients))
    return pa.table(
        {
            "patient_token": pa.array([None if n < 0 else token.format(n) for n in patients.tolist()]),
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


@pytest.mark.parametrize(
    ("merge_at_least", "token", "key_bits"),
    [
        (10**9, "p{:07d}", 64),  # never merged
        (300, "p{:07d}", 64),  # merged now and then
        (300, "p{}", 64),  # tokens of varying length: no keys, the token columns searched
        (300, "p{:07d}", 4),  # keys of 4 bits: most tokens share a key with others
    ],
)
def test_nights_of_returning_and_new_patients_equal_one_reduction(tmp_path, monkeypatch, merge_at_least, token, key_bits):
    monkeypatch.setattr(kept_combination, "_MERGE_AT_LEAST", merge_at_least)
    monkeypatch.setattr(kept_combination, "_BATCH_ROWS", 256)  # files of several batches
    token_keys = kept_combination._token_keys
    monkeypatch.setattr(
        kept_combination, "_token_keys",
        lambda tokens: None if (keys := token_keys(tokens)) is None else keys & np.uint64((1 << key_bits) - 1),
    )
    rng = np.random.default_rng(7)
    folder = resolve_location(str(tmp_path / "analytics"))
    history = _rows(rng, rng.integers(-1, 2_000, 5_000), token)  # a first run: 2,000 patients, some rows without a token
    sums = _empty_sums()
    first = summaries.latest_per_patient(history)
    kept_combination.write_kept(folder, sums, ["g0"], summaries.patient_counts(first), [], first)
    everything, merged_once = [history], False
    for night in range(1, 12):
        # Returning patients (among the oldest and the newest), new ones, and a patient twice in a night.
        patients = np.concatenate([rng.integers(0, 2_000 + 100 * night, 120), np.arange(5_000 + 100 * night, 5_060 + 100 * night)])
        rows = _rows(rng, np.concatenate([patients, patients[:5]]), token)
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
        # The folder holds the files named and their keys (tokens of one length), and no other.
        keys = [f"{n}.keys" for n, _ in kept.latest_files] if token == "p{:07d}" else []
        assert sorted(p.name for p in (tmp_path / "analytics").iterdir()) == sorted(
            ["combined.parquet", *(n for n, _ in kept.latest_files), *keys]
        )
    assert merged_once == (merge_at_least == 300)


def test_a_night_reads_the_kept_files_only_for_its_patients_and_writes_one_delta(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    folder = resolve_location(str(tmp_path / "analytics"))
    first = summaries.latest_per_patient(_rows(rng, np.arange(50_000)))
    kept_combination.write_kept(folder, _empty_sums(), ["g0"], summaries.patient_counts(first), [], first)
    base = kept_combination.read_kept(folder).latest_files[0][0]
    base_bytes = (tmp_path / "analytics" / base).read_bytes()
    decoded, batches = [], []
    read_latest = kept_combination._read_latest
    monkeypatch.setattr(kept_combination, "_read_latest", lambda data, fields=None: decoded.append(fields) or read_latest(data, fields))
    get_batch = pa.ipc.RecordBatchFileReader.get_batch
    monkeypatch.setattr(pa.ipc.RecordBatchFileReader, "get_batch", lambda reader, i: batches.append(i) or get_batch(reader, i))

    kept = kept_combination.read_kept(folder)
    new_rows, counts = kept_combination.fold_latest(folder, kept, _rows(rng, np.arange(90_000, 90_050)))  # new patients only
    # Their keys match no row's: nothing of the base decoded, no batch read.
    assert decoded == [] and batches == [] and new_rows.num_rows == 50
    # Three returning patients: the batches that hold them, and no other; their rows as the whole file has them.
    returning = _rows(rng, np.array([7, 20_000, 49_999]))
    found = kept_combination._rows_of_patients(folder.child(base), returning.column("patient_token").combine_chunks(), 50_000)
    assert sorted(batches) == sorted({7 // 16_384, 20_000 // 16_384, 49_999 // 16_384}) and decoded == []
    whole = read_latest(base_bytes)
    assert found.to_pylist() == whole.filter(pa.compute.is_in(whole["patient_token"], returning["patient_token"])).to_pylist()
    kept_combination.write_kept(folder, _empty_sums(), ["g0", "g1"], counts, kept.latest_files, new_rows)
    files = kept_combination.read_kept(folder).latest_files
    assert [name for name, _ in files][0] == base and [rows for _, rows in files] == [50_000, 50]
    assert (tmp_path / "analytics" / base).read_bytes() == base_bytes  # the base is not written again
