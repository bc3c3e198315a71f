"""The Arrow collection and hashing of identifiers (`identifier_arrays`, `IdentifierIndex.hashed_array`)
give what the per-value Python of `collect_identifiers` and `IdentifierIndex.hashed` give, on messy values."""

import random

import numpy as np
import pyarrow as pa
import pytest

from medical_assets.privacy.identifier_arrays import ranked_identifiers
from medical_assets.privacy.identifier_forms import collect_identifiers
from medical_assets.privacy.identifier_index import IdentifierIndex

# ASCII with every kind of whitespace `str.strip` removes (information separators too), signs,
# and non-ASCII: accented letters, a letter whose lower case is longer (İ), the Kelvin sign (its
# lower case is ASCII "k"), a non-ASCII digit (٣), a no-break space (whitespace to Python).
PIECES = ["0", "1", "2", "5", "9", "00", "1234567", "A", "b", "Zz", " ", "\t", "\x1c", "\x1f", "\n", "-", "/", "(", ")",
          ".", "^", ",", "é", "İ", "\u212a", "٣", "\u00a0", "O'", "ß"]


def _messy(rng: random.Random, count: int, digits_only: float = 0.2) -> list[str | None]:
    values = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.05:
            values.append(None)
        elif roll < 0.05 + digits_only:
            values.append(rng.choice(["", " ", "\x1c"]) + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 12))))
        else:
            values.append("".join(rng.choice(PIECES) for _ in range(rng.randint(0, 8))))
    return values


def _dates(rng: random.Random, count: int) -> list[str | None]:
    forms = [
        lambda: f"{rng.randint(1890, 2030)}{rng.randint(0, 13):02d}{rng.randint(0, 32):02d}",
        lambda: f"{rng.randint(1890, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 31):02d}",
        lambda: f" {rng.randint(1900, 2020)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}1230",
        lambda: f"{rng.randint(1900, 2020)}{rng.randint(1, 12):02d}",
        lambda: "٣" * 8,
        lambda: "",
    ]
    return [rng.choice(forms)() if rng.random() > 0.05 else None for _ in range(count)]


def _phones(rng: random.Random, count: int) -> list[str | None]:
    def phone() -> str:
        digits = "".join(rng.choice("0123456789") for _ in range(rng.choice([7, 10, 11, 12])))
        if rng.random() < 0.3:
            digits = "1" + digits[1:]
        return rng.choice(["", "(", " ", "+"]) + "".join(c + rng.choice(["", "", "-", " ", "."]) for c in digits)

    return [phone() if rng.random() > 0.05 else None for _ in range(count)]


def _tables(seed: int, rows: int = 400) -> dict[str, pa.Table]:
    rng = random.Random(seed)
    messages = {
        "patient_id": _messy(rng, rows), "patient_family_name": _messy(rng, rows, 0), "patient_given_name": _messy(rng, rows, 0),
        "patient_middle_name": _messy(rng, rows, 0), "patient_birth_date": _dates(rng, rows), "patient_street": _messy(rng, rows, 0),
        "patient_city": _messy(rng, rows, 0), "patient_phone": _phones(rng, rows), "patient_account_number": _messy(rng, rows),
        "patient_ssn": _phones(rng, rows), "message_control_id": _messy(rng, rows, 0.5),
    }
    # Shared values across columns and tables: the lowest rank must win.
    messages["patient_city"][:50] = messages["patient_street"][:50]
    encounters = {
        "attending_doctor_id": messages["patient_account_number"][:rows // 2],
        "attending_doctor_family_name": _messy(rng, rows // 2, 0), "attending_doctor_given_name": _messy(rng, rows // 2, 0),
        "visit_number": _messy(rng, rows // 2),
    }
    orders = {"placer_order_number": _messy(rng, rows // 4), "filler_order_number": messages["patient_id"][: rows // 4]}
    return {
        "hl7_messages": pa.table(messages),
        "hl7_encounters": pa.table(encounters),
        "hl7_lab_results": pa.table(orders),
        "hl7_pharmacy_orders": pa.table({"placer_order_number": pa.array(range(rows // 4), pa.int64())}),
        "dicom_images": pa.table({"patient_id": _messy(rng, 30), "patient_name": ["^".join(v or "" for v in _messy(rng, 2, 0)) for _ in range(30)],
                                  "patient_birth_date": _dates(rng, 30), "accession_number": _messy(rng, 30)}),
    }


def _lowest_ranks(values: pa.Array, ranks: np.ndarray) -> dict[str, int]:
    lowest: dict[str, int] = {}
    for value, rank in zip(values.to_pylist(), ranks.tolist()):
        lowest[value] = min(rank, lowest.get(value, rank))
    return lowest


@pytest.mark.parametrize("seed", range(12))
def test_arrow_collection_gives_the_ranks_of_the_python_collection(seed):
    tables = _tables(seed)
    expected = collect_identifiers(tables, ranked=True).ranks
    assert expected  # the messy tables do hold identifiers
    assert _lowest_ranks(*ranked_identifiers(tables)) == expected


def test_arrow_collection_makes_every_form_of_a_plain_row():
    tables = {"hl7_messages": pa.table({
        "patient_id": ["00123456"], "patient_birth_date": ["19330417"], "patient_phone": ["(410) 555-0181"],
        "patient_family_name": ["QUARTERMAINE"], "patient_given_name": ["HONORIA"], "message_control_id": ["654321"],
        "patient_ssn": ["123-45-6789"],
    })}
    forms = set(ranked_identifiers(tables)[0].to_pylist())
    assert {"00123456", "123456", "19330417", "1933-04-17", "04/17/1933", "4/17/1933", "4105550181", "14105550181",
            "(410)555-0181", "410-555-0181", "410.555.0181", "410 555 0181", "HONORIA QUARTERMAINE",
            "QUARTERMAINE, HONORIA", "QUARTERMAINE^HONORIA", "123456789", "123 45 6789"} <= forms
    assert "654321" not in forms  # a control id of digits only identifies no one


def _messy_keys(rng: random.Random, count: int) -> list[str]:
    keys = ["----", " ^^ ", "a\nb", "\u212a123", "İstanbul", "\u00a0 x1 \u00a0", "", "  ", "MiXeD Case", "O'NEIL"]
    return keys + ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 9))) for _ in range(count)]


@pytest.mark.parametrize("compiled_from", [0, 10**9])  # the compiled loop, and numpy for a few
@pytest.mark.parametrize("seed", range(6))
def test_hashing_an_array_equals_hashing_the_values_one_by_one(seed, compiled_from, monkeypatch):
    monkeypatch.setattr("medical_assets.privacy.identifier_index._COMPILED_FROM", compiled_from)
    rng = random.Random(seed)
    keys = _messy_keys(rng, 3000)
    codes = np.array([rng.randrange(20) for _ in keys], np.int64)
    index = IdentifierIndex({}, secret=bytes(range(32)))
    # Several batches, so that batch edges and the symbols of each are covered.
    monkeypatch.setattr("medical_assets.privacy.identifier_index._IDENTIFIER_BATCH", 700)
    one_by_one = index.hashed(zip(keys, codes.tolist())).sorted()
    as_array = index.hashed_array(pa.array(keys), codes).sorted()
    for field in ("first", "second", "codes", "shapes"):
        assert np.array_equal(getattr(one_by_one, field), getattr(as_array, field)), field
    assert _lowest_symbols(as_array) == _lowest_symbols(one_by_one)
    assert "----" in _lowest_symbols(as_array) and len(one_by_one.first) > 2000


def _lowest_symbols(hashed) -> dict[str, int]:
    """The code an index assembled from parts keeps for each symbol-only key: the lowest."""
    lowest: dict[str, int] = {}
    for key, code in zip(hashed.symbol_keys, hashed.symbol_codes):
        lowest[key] = min(code, lowest.get(key, code))
    return lowest
