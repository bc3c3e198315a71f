"""The Safe Harbor rules one at a time: ZIP3, years, ages at the event, the 90+ band, date shifts."""

from datetime import date, datetime

import pytest

from medical_assets.privacy import safe_harbor
from medical_assets.privacy.safe_harbor import (
    HL7Date,
    age_band,
    age_range,
    birth_year,
    parse_hl7_date,
    safe_harbor_age,
    shift_datetime,
    shift_hl7_date,
    year_of,
    zip3,
)

# HHS's list (2000 census): the three-digit ZIP areas of 20,000 people or fewer.
RESTRICTED = [
    "036",
    "059",
    "063",
    "102",
    "203",
    "556",
    "692",
    "790",
    "821",
    "823",
    "830",
    "831",
    "878",
    "879",
    "884",
    "890",
    "893",
]


@pytest.mark.parametrize(
    "written, expected",
    [
        ("02115", "021"),
        ("02115-4321", "021"),
        ("021154321", "021"),
        (" 02115 ", "021"),
        ("02115 - 4321", "021"),
        ("10001", "100"),
        ("99950", "999"),
    ],
)
def test_zip3_keeps_the_first_three_digits_of_any_us_zip_form(written, expected):
    assert zip3(written) == expected


@pytest.mark.parametrize("prefix", RESTRICTED)
def test_every_restricted_prefix_becomes_000(prefix):
    assert zip3(f"{prefix}01") == "000"
    assert zip3(f"{prefix}99-1234") == "000"


def test_the_restricted_list_is_exactly_hhs_seventeen():
    assert sorted(safe_harbor.RESTRICTED_ZIP3) == RESTRICTED


@pytest.mark.parametrize("neighbour", ["035", "037", "058", "101", "103", "555", "557", "789", "822", "894"])
def test_prefixes_next_to_restricted_ones_are_kept(neighbour):
    assert zip3(f"{neighbour}42") == neighbour


@pytest.mark.parametrize(
    "not_a_zip",
    [None, "", "   ", "0211", "021156", "02115-43", "ABCDE", "K1A 0B1", "SW1A 1AA", "1 MAIN ST", "٠٢١١٥", "02115-"],
)
def test_anything_that_is_not_a_us_zip_gives_none(not_a_zip):
    assert zip3(not_a_zip) is None


@pytest.mark.parametrize(
    "written, expected",
    [
        ("1980", HL7Date(1980, None, None)),
        ("198006", HL7Date(1980, 6, None)),
        ("19800615", HL7Date(1980, 6, 15)),
        ("198006151230", HL7Date(1980, 6, 15)),
        ("19800615123045.1234-0500", HL7Date(1980, 6, 15)),
        ("19800615+0100", HL7Date(1980, 6, 15)),
        ("20000229", HL7Date(2000, 2, 29)),
    ],
)
def test_hl7_dates_keep_the_precision_the_sender_chose(written, expected):
    assert parse_hl7_date(written) == expected


@pytest.mark.parametrize(
    "invalid", [None, "", "80", "19801", "198013", "19800230", "19010229", "1980-06-15", "15/06/1980", "abcd"]
)
def test_invalid_hl7_dates_give_none(invalid):
    assert parse_hl7_date(invalid) is None


@pytest.mark.parametrize(
    "value, expected",
    [
        ("20250310083000", 2025),
        ("2025", 2025),
        ("202503", 2025),
        (datetime(2019, 12, 31, 23, 59), 2019),
        (date(1931, 1, 1), 1931),
        ("not a date", None),
        (None, None),
    ],
)
def test_year_of_keeps_only_the_year(value, expected):
    assert year_of(value) == expected


@pytest.mark.parametrize(
    "born, at, expected",
    [
        ("19800615", date(2010, 6, 14), "29"),
        ("19800615", date(2010, 6, 15), "30"),
        ("19800615", datetime(2010, 6, 15, 0, 0, 1), "30"),
        ("19800615", date(1980, 6, 15), "0"),
        ("20000229", date(2023, 2, 28), "22"),
        ("20000229", date(2023, 3, 1), "23"),
        ("20000229", date(2024, 2, 29), "24"),
    ],
)
def test_age_is_completed_years_at_the_event(born, at, expected):
    assert safe_harbor_age(born, at) == expected


def test_age_depends_on_the_event_date_only_never_on_today():
    # Events long before and long after the day the tests run: an age from today would get both wrong.
    assert safe_harbor_age("19000101", date(1950, 1, 1)) == "50"
    assert safe_harbor_age("19000101", date(1989, 12, 31)) == "89"
    assert safe_harbor_age("20500101", date(2080, 6, 1)) == "30"
    assert safe_harbor_age("20500101", date(2140, 1, 1)) == "90+"


def test_a_patient_born_1930_seen_in_2025_is_90_plus_with_the_birth_year_withheld():
    seen = datetime(2025, 3, 10, 8, 30)
    assert safe_harbor_age("19300115", seen) == "90+"
    assert age_band(safe_harbor_age("19300115", seen)) == "90+"
    assert birth_year("19300115", seen) is None


def test_ninety_is_the_first_pooled_age():
    assert safe_harbor_age("19351201", date(2025, 11, 30)) == "89"
    assert birth_year("19351201", date(2025, 11, 30)) == 1935
    assert safe_harbor_age("19351201", date(2025, 12, 1)) == "90+"
    assert birth_year("19351201", date(2025, 12, 1)) is None


@pytest.mark.parametrize(
    "born, at, ages",
    [
        ("1980", date(2010, 6, 1), (29, 30)),
        ("1980", date(1980, 6, 1), (0, 0)),
        ("198006", date(2010, 6, 10), (29, 30)),
        ("198006", date(2010, 7, 1), (30, 30)),
        ("198006", date(2010, 5, 31), (29, 29)),
    ],
)
def test_an_imprecise_birth_date_gives_the_range_of_possible_ages(born, at, ages):
    assert age_range(born, at) == ages


def test_an_imprecise_age_is_the_one_certainly_reached_but_90_plus_as_soon_as_possible():
    assert safe_harbor_age("1980", date(2010, 6, 1)) == "29"
    # Born some time in 1935: at 2025-06-01 the patient is 89 or 90, so Safe Harbor pools them.
    assert safe_harbor_age("1935", date(2025, 6, 1)) == "90+"
    assert safe_harbor_age("193512", date(2025, 12, 15)) == "90+"
    assert safe_harbor_age("193512", date(2025, 11, 30)) == "89"


@pytest.mark.parametrize(
    "born, at",
    [(None, date(2020, 1, 1)), ("19800615", None), ("garbage", date(2020, 1, 1)), ("20200102", date(2020, 1, 1))],
)
def test_no_age_without_two_valid_dates_in_order(born, at):
    assert age_range(born, at) is None
    assert safe_harbor_age(born, at) is None
    assert birth_year(born, at) is None


@pytest.mark.parametrize(
    "age, band",
    [
        (0, "0-17"),
        (17, "0-17"),
        (18, "18-29"),
        (29, "18-29"),
        (30, "30-44"),
        (44, "30-44"),
        (45, "45-64"),
        (64, "45-64"),
        (65, "65-89"),
        (89, "65-89"),
        (90, "90+"),
        (117, "90+"),
        ("45", "45-64"),
        ("90+", "90+"),
        (None, None),
    ],
)
def test_age_bands(age, band):
    assert age_band(age) == band


def test_a_negative_age_is_a_bug_not_a_band():
    with pytest.raises(ValueError, match="negative"):
        age_band(-1)


def test_shift_datetime_moves_whole_days_and_keeps_the_time():
    assert shift_datetime(datetime(2024, 3, 1, 8, 30, 15), 10) == datetime(2024, 3, 11, 8, 30, 15)
    assert shift_datetime(datetime(2024, 3, 1, 8, 30), -1) == datetime(2024, 2, 29, 8, 30)
    assert shift_datetime(None, 10) is None


@pytest.mark.parametrize(
    "written, offset, expected",
    [
        ("19800102", -3, "19791230"),
        ("19800102", 365, "19810101"),
        ("198001021230", 1, "19800103"),
        ("198001", 20, "198002"),  # from the middle of January
        ("198001", -20, "197912"),
        ("1980", 100, "1980"),  # from 1 July
        ("1980", 200, "1981"),
        ("not a date", 5, None),
        (None, 5, None),
    ],
)
def test_shift_hl7_date_keeps_the_precision(written, offset, expected):
    assert shift_hl7_date(written, offset) == expected


def test_shifted_dates_keep_their_intervals():
    first, second = "20240110", "20240305"
    for offset in (-365, -1, 1, 17, 365):
        moved_first, moved_second = (datetime.strptime(shift_hl7_date(d, offset), "%Y%m%d") for d in (first, second))
        assert (moved_second - moved_first).days == (date(2024, 3, 5) - date(2024, 1, 10)).days
