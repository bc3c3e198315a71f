"""HIPAA Safe Harbor generalisation (45 CFR §164.514(b)(2)) and the date-shift helpers, as small pure functions.

Safe Harbor keeps, of a patient's address, the first three digits of the ZIP code unless the area
they cover holds 20,000 people or fewer; of every date, the year; of ages, those up to 89, older
ones pooled as "90+" (with the birth year, which would give the age away, withheld). Ages are
always computed at the date of the event they describe, never at today's date, so a record gives
the same answer whenever it is processed. The date-shift profile moves every date of a patient by
one keyed offset (`Pseudonymizer.date_offset_days`) instead of cutting it to the year.

HL7 dates come with the precision the sender chose (`YYYY`, `YYYYMM`, `YYYYMMDD`, then a time);
an age from an imprecise birth date is the one the patient has certainly reached, and it counts
as over 89 as soon as the patient may be 90.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import NamedTuple

# Three-digit ZIP areas of 20,000 people or fewer (2000 census, as in HHS's de-identification
# guidance): Safe Harbor requires them written as 000.
RESTRICTED_ZIP3 = frozenset(
    {"036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878", "879", "884", "890"}
    | {"893"}
)
RESTRICTED_ZIP3_REPLACEMENT = "000"
OLDEST_REPORTED_AGE = 89
AGE_OVER_89 = "90+"
# Bands for analytics: children, young adults, adults, middle age, older adults, and Safe Harbor's 90+.
AGE_BANDS = ((0, 17, "0-17"), (18, 29, "18-29"), (30, 44, "30-44"), (45, 64, "45-64"), (65, 89, "65-89"))

_ZIP_CODE = re.compile(r"[0-9]{5}(?:-?[0-9]{4})?")
_WHITESPACE = re.compile(r"\s+")
# HL7 DT/DTM/TS: YYYY[MM[DD[HH[MM[SS[.S...]]]]]][+/-ZZZZ]; [0-9] because \d would accept other scripts' digits.
_HL7_DATE = re.compile(r"([0-9]{4})(?:([0-9]{2})(?:([0-9]{2})(?:[0-9]{2}){0,3}(?:\.[0-9]{1,4})?)?)?(?:[+-][0-9]{4})?")


class HL7Date(NamedTuple):
    """A date as precisely as the sender wrote it: month and day are None when not given."""

    year: int
    month: int | None
    day: int | None


def zip3(zip_code: str | None) -> str | None:
    """The first three digits of a US ZIP (`12345`, `12345-6789`, spaces anywhere), `000` for the
    restricted areas; None for anything that is not a ZIP code."""
    if zip_code is None:
        return None
    compact = _WHITESPACE.sub("", zip_code)
    if not _ZIP_CODE.fullmatch(compact):
        return None
    prefix = compact[:3]
    return RESTRICTED_ZIP3_REPLACEMENT if prefix in RESTRICTED_ZIP3 else prefix


@lru_cache(maxsize=65_536)  # birth dates recur with their patient, in every message
def parse_hl7_date(value: str | None) -> HL7Date | None:
    """The date part of an HL7 DT, DTM or TS string, with its precision; None when it is not one."""
    if not value:
        return None
    match = _HL7_DATE.fullmatch(value.strip())
    if match is None:
        return None
    year, month, day = (int(part) if part else None for part in match.groups())
    try:
        date(year, month or 1, day or 1)
    except ValueError:
        return None
    return HL7Date(year, month, day)


def year_of(value: str | date | datetime | None) -> int | None:
    """The year of an HL7 date/time string or of a date or timestamp: all Safe Harbor keeps of a date."""
    if value is None:
        return None
    if isinstance(value, date):  # datetime is a date too
        return value.year
    parsed = parse_hl7_date(value)
    return parsed.year if parsed else None


def age_range(birth_date: str | None, at: date | datetime | None) -> tuple[int, int] | None:
    """The youngest and oldest the patient can be at `at`, in completed years, given the precision of
    the HL7 birth date; None when a date is missing or invalid, or the birth comes after `at`."""
    span = birth_span(birth_date)
    if span is None or at is None:
        return None
    at = at.date() if isinstance(at, datetime) else at
    earliest, latest = span
    if earliest > at:
        return None
    youngest = _completed_years(latest, at) if latest <= at else 0
    return youngest, _completed_years(earliest, at)


def birth_span(birth_date: str | None) -> tuple[date, date] | None:
    """The first and last day an HL7 birth date can stand for, given its precision; None when it is not a date."""
    birth = parse_hl7_date(birth_date)
    return None if birth is None else _possible_days(birth)


def safe_harbor_age(birth_date: str | None, at: date | datetime | None) -> str | None:
    """The age at `at` as Safe Harbor allows it: `"0"`..`"89"`, or `"90+"` when the patient may be 90 or older."""
    ages = age_range(birth_date, at)
    if ages is None:
        return None
    youngest, oldest = ages
    return AGE_OVER_89 if oldest > OLDEST_REPORTED_AGE else str(youngest)


def age_band(age: int | str | None) -> str | None:
    """The analytics band (`0-17` ... `65-89`, `90+`) of an age in years or of a `safe_harbor_age` string."""
    if age is None:
        return None
    if age == AGE_OVER_89:
        return AGE_OVER_89
    years = int(age)
    if years < 0:
        raise ValueError(f"an age cannot be negative, got {years}")
    for youngest, oldest, band in AGE_BANDS:
        if youngest <= years <= oldest:
            return band
    return AGE_OVER_89


def birth_year(birth_date: str | None, at: date | datetime | None) -> int | None:
    """The birth year, reported only when the age it implies at `at` is known and under 90."""
    age = safe_harbor_age(birth_date, at)
    if age is None or age == AGE_OVER_89:
        return None
    return parse_hl7_date(birth_date).year


def shift_datetime(moment: datetime | date | None, offset_days: int) -> datetime | date | None:
    """`moment` moved by the patient's offset; the time of day is kept."""
    if moment is None:
        return None
    return moment + timedelta(days=offset_days)


def shift_hl7_date(value: str | None, offset_days: int) -> str | None:
    """An HL7 date moved by `offset_days` and written with the precision it came with (`YYYY`,
    `YYYYMM` or `YYYYMMDD`; a time is dropped). An imprecise date moves from the middle of the
    period it names, so a patient's shifted dates keep their order and rough spacing."""
    parsed = parse_hl7_date(value)
    if parsed is None:
        return None
    earliest, latest = _possible_days(parsed)
    middle = earliest + (latest - earliest) // 2
    shifted = middle + timedelta(days=offset_days)
    if parsed.day is not None:
        return shifted.strftime("%Y%m%d")
    if parsed.month is not None:
        return shifted.strftime("%Y%m")
    return shifted.strftime("%Y")


def _possible_days(value: HL7Date) -> tuple[date, date]:
    """The first and last day an imprecise date can stand for."""
    if value.day is not None:
        day = date(value.year, value.month, value.day)
        return day, day
    if value.month is not None:
        last = calendar.monthrange(value.year, value.month)[1]
        return date(value.year, value.month, 1), date(value.year, value.month, last)
    return date(value.year, 1, 1), date(value.year, 12, 31)


def _completed_years(born: date, at: date) -> int:
    """Birthdays passed by `at`; someone born on 29 February has theirs on 1 March in common years."""
    return at.year - born.year - ((at.month, at.day) < (born.month, born.day))
