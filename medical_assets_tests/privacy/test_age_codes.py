"""Ages computed in numpy for a whole table (`hl7_patients.age_codes`) equal Safe Harbor's age of
each row (`safe_harbor.safe_harbor_age`), on birth dates of every precision and messy ones."""

import datetime as dt
import random

import pyarrow as pa
import pytest

from medical_assets.privacy import safe_harbor
from medical_assets.privacy.hl7_patients import (
    AGE_CODE_90_PLUS,
    age_bands,
    age_codes,
    age_texts,
    without_ages_of_the_oldest,
)


def _birth_date(rng: random.Random) -> str | None:
    year = rng.randint(1915, 2026)
    return rng.choice([
        None, "", "   ", f"{year}", f"{year}{rng.randint(1, 12):02d}", f"{year}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
        f" {year}0229 ", f"{year}1231235959", f"{year}0230", "19XX0101", f"{year}-03-04", "20240229",
        f"{year}{rng.randint(1, 12):02d}{rng.randint(1, 31):02d}",
    ])


def _moment(rng: random.Random) -> dt.datetime | None:
    if rng.random() < 0.05:
        return None
    # Near birthdays and year ends, where completed years turn.
    day = dt.date(rng.randint(2000, 2026), 1, 1) + dt.timedelta(days=rng.randint(0, 365))
    return dt.datetime.combine(day, dt.time(rng.randint(0, 23), rng.randint(0, 59)))


@pytest.mark.parametrize("seed", range(8))
def test_ages_of_a_table_equal_the_age_of_each_row(seed):
    rng = random.Random(seed)
    births = [_birth_date(rng) for _ in range(3000)]
    moments = [_moment(rng) for _ in range(3000)]
    codes = age_codes(pa.array(births, pa.string()), pa.array(moments, pa.timestamp("us")))
    expected = [safe_harbor.safe_harbor_age(born, at) for born, at in zip(births, moments)]
    assert age_texts(codes).to_pylist() == expected
    assert age_bands(codes).to_pylist() == [safe_harbor.age_band(age) for age in expected]
    assert "90+" in expected and None in expected and "0" in expected


def test_ages_turn_on_the_birthday_and_at_the_edges_of_an_imprecise_birth_date():
    """Messages on the birth day, on birthdays 1, 89 and 90 years on, and the day either side; for
    a month or a year of birth, on the first and last day it can stand for."""
    births, moments = [], []
    for born in ["19320229", "19350301", "19341231", "19350101", "193506", "1935", "20240101", "202402"]:
        first, last = safe_harbor.birth_span(born)
        for anchor_day in (first, last):
            for years in (0, 1, 89, 90):
                try:
                    birthday = anchor_day.replace(year=anchor_day.year + years)
                except ValueError:  # 29 February in a common year
                    birthday = dt.date(anchor_day.year + years, 3, 1)
                for shift in (-1, 0, 1):
                    births.append(born)
                    moments.append(dt.datetime.combine(birthday + dt.timedelta(days=shift), dt.time(12)))
    codes = age_codes(pa.array(births, pa.string()), pa.array(moments, pa.timestamp("us")))
    assert age_texts(codes).to_pylist() == [safe_harbor.safe_harbor_age(born, at) for born, at in zip(births, moments)]


def _reference_oldest(patients, ages, years, over_89):
    """The rule written plainly, row by row."""
    result = []
    for patient, age, year in zip(patients, ages, years):
        if patient in over_89 and age != safe_harbor.AGE_OVER_89:
            first_year = over_89[patient]
            age = safe_harbor.AGE_OVER_89 if first_year is not None and year is not None and year >= first_year else None
        result.append(age)
    return result


@pytest.mark.parametrize("seed", range(4))
def test_a_patient_90_plus_anywhere_keeps_no_number_in_any_row(seed):
    rng = random.Random(seed)
    patients = [rng.choice([None, "GH\x1eMRN1", "GH\x1eMRN2", "MRN3", "MRN4"]) for _ in range(2000)]
    births = [_birth_date(rng) for _ in patients]
    moments = [_moment(rng) for _ in patients]
    years = [None if moment is None else moment.year for moment in moments]
    over_89 = {"GH\x1eMRN1": 2010, "MRN3": None}
    codes = age_codes(pa.array(births, pa.string()), pa.array(moments, pa.timestamp("us")))
    after = without_ages_of_the_oldest(codes, pa.array(patients, pa.string()), pa.array(years, pa.int64()), over_89)
    expected = _reference_oldest(patients, age_texts(codes).to_pylist(), years, over_89)
    assert age_texts(after).to_pylist() == expected
    assert all(age in (None, "90+") for patient, age in zip(patients, expected) if patient in over_89)
    assert (after == AGE_CODE_90_PLUS).any()
