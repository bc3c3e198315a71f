"""The identifiers the leak check looks for: each PHI value in every form an output could give it.

`collect_identifiers` reads them from the columns `identifier_columns` names; `numbers_of` gives
the numbers a report shows, whose equal identifiers its check excuses.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from medical_assets.privacy.leak_readers import is_number_type

DEFAULT_MIN_LENGTH = 4
# A number of four or five digits turns up in any table (counts, years, codes): too common to test.
DEFAULT_MIN_DIGITS = 6


class Identifiers(dict[str, str]):
    """Identifier value -> kind, plus how many distinct values of each kind were too short to test."""

    def __init__(self, values: Mapping[str, str] | None = None, skipped: Mapping[str, int] | None = None):
        super().__init__(values or {})
        self.skipped: Counter[str] = Counter(skipped or {})
        # With `collect_identifiers(..., ranked=True)`: each value's rank, the place in `RANKED_KINDS`
        # of the column that gave it its kind (the first in collection order).
        self.ranks: dict[str, int] = {}


def collect_identifiers(
    tables: Mapping[str, pa.Table],
    min_length: int = DEFAULT_MIN_LENGTH,
    min_digits: int = DEFAULT_MIN_DIGITS,
    ranked: bool = False,
) -> Identifiers:
    """The identifiers in the PHI tables (keyed by table name; any may be missing, as may any column).

    A value is kept in every form an output could carry it (dates as YYYYMMDD, YYYY-MM-DD and
    MM/DD/YYYY; phones and SSNs formatted and as digits); forms shorter than `min_length`, or
    made only of digits and shorter than `min_digits`, are dropped, and a value with no form left
    is counted in `skipped` under its kind. `ranked`: also each value's rank (`Identifiers.ranks`),
    so that the identifiers of several parts of the tables, collected apart, combine to those of
    the whole: the lowest rank of a value wins, as the first column to give it does here.
    """
    collector = _Collector(min_length, min_digits, ranked)
    for table_name, columns in _IDENTIFIER_COLUMNS.items():
        table = tables.get(table_name)
        if table is None:
            continue
        for column, variants in columns.items():
            collector.rank = _RANKS[(table_name, column)]
            values = _distinct_values(table, column)
            if column in _DIGIT_ONLY_NEVER_TESTED:
                values, skipped = _without_digit_only(values)
                if skipped:
                    collector.identifiers.skipped[column] += skipped
            for value in _stripped_sorted(values):
                collector.add(column, variants(value))
        for family, given, kind in _FULL_NAMES.get(table_name, ()):
            collector.rank = _RANKS[(table_name, kind)]
            for family_name, given_name in _distinct_pairs(table, family, given):
                collector.add(kind, _full_name_variants(family_name, given_name), count_skipped=False)
    return collector.identifiers


def identifier_columns(table_name: str) -> list[str]:
    """The columns of a PHI table that `collect_identifiers` reads (none for another table)."""
    columns = dict.fromkeys(_IDENTIFIER_COLUMNS.get(table_name, {}))
    for family, given, _ in _FULL_NAMES.get(table_name, ()):
        columns |= dict.fromkeys([family, given])
    return list(columns)


# PHI columns that neither leave the PHI zone by a declaration of their name nor are searched for,
# each with the reason. With the declarations and `identifier_columns`, every PHI column is
# classified: a column parsed tomorrow fails a test until someone says which of the three it is.
PHI_COLUMNS_NOT_SEARCHED = {
    "message_datetime": "a date: published as its year; birth dates, the identifying date, are searched",
    "observation_datetime": "a date: published as its year",
    "start_datetime": "a date: published as its year",
    "end_datetime": "a date: published as its year",
    "event_datetime": "a date: published as its year",
    "admit_datetime": "a date: published as its year",
    "discharge_datetime": "a date: published as its year",
    "patient_zip": "published as ZIP3; a 5-digit ZIP is caught by the ZIP detector next to a state or the word ZIP",
    "patient_id_issuer": "an assigning authority: a hospital's name or code, not a person's",
    "institution_name": "a hospital's name, published as vocabulary",
    "source_file": "a file name: published only as a token, and file names are searched by every scan",
    "message_control_id": "searched through hl7_messages, where every message's control id is",
    "room": "a room code (3S-12): short codes would match counts and units by chance; withheld by declaration",
    "bed": "a bed code (A, 2): as the room",
    "patient_age": "an age: published as 090Y at most, and removed for a patient 90+ anywhere",
    "patient_sex": "a code (M, F, O)",
    "study_description": "text: published only as vocabulary",
    "series_description": "text: published only as vocabulary",
    "has_preamble": "a file property",
}


def numbers_of(tables: Iterable[pa.Table], counts: Iterable[int] = ()) -> frozenset[str]:
    """Every whole number in a number column of `tables`, and `counts`, as digits: the identifiers
    made only of digits that a report's check excuses. A report drawn from published aggregates
    shows their counts (and counts of its own, such as the rows a privacy report says were
    withheld), and a count may equal a numeric ID without saying anything of that patient. The
    aggregates themselves are checked column by column."""
    numbers: set[str] = {str(count) for count in counts}
    for table in tables:
        for index, field in enumerate(table.schema):
            if not is_number_type(field.type):
                continue
            for value in table.column(index).to_pylist():
                if value is not None and float(value).is_integer():
                    numbers.add(str(int(value)))
    return frozenset(numbers)


def _as_is(value: str) -> list[str]:
    return [value]


def _identifier_variants(value: str) -> list[str]:
    """An ID as written, and without leading zeros: an output that read it as a number drops them."""
    variants = [value]
    if value.isdigit() and value.lstrip("0"):
        variants.append(value.lstrip("0"))
    return variants


def _control_id_variants(value: str) -> list[str]:
    """MSH-10, unless it is only digits: a feed that numbers its messages (100000, 100001, ...)
    has control IDs that equal any count of the analytics sooner or later. It identifies a message,
    not a person, and leaves the PHI zone only as a keyed token."""
    return [] if value.strip().isdigit() else _identifier_variants(value)


_DATE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})")


def _date_variants(value: str) -> list[str]:
    """A full date in the forms outputs write; a partial one (YYYY, YYYYMM) is not an identifier alone."""
    match = _DATE.match(value)
    if not match or not (1 <= int(match[2]) <= 12 and 1 <= int(match[3]) <= 31):
        return []
    year, month, day = match.groups()
    variants = [value, f"{year}{month}{day}", f"{year}-{month}-{day}", f"{month}/{day}/{year}"]
    variants.append(f"{int(month)}/{int(day)}/{year}")
    return variants


def _phone_variants(value: str) -> list[str]:
    digits = re.sub(r"\D", "", value)
    national = digits[1:] if len(digits) == 11 and digits.startswith("1") else digits
    variants = [value, digits]
    if len(national) == 10:
        area, exchange, line = national[:3], national[3:6], national[6:]
        variants += [
            national,
            "1" + national,
            f"({area}){exchange}-{line}",
            f"({area}) {exchange}-{line}",
            f"{area}-{exchange}-{line}",
            f"{area}.{exchange}.{line}",
            f"{area} {exchange} {line}",
        ]
    elif len(national) == 7:
        variants.append(f"{national[:3]}-{national[3:]}")
    return variants


def _ssn_variants(value: str) -> list[str]:
    digits = re.sub(r"\D", "", value)
    variants = [value, digits]
    if len(digits) == 9:
        variants += [f"{digits[:3]}-{digits[3:5]}-{digits[5:]}", f"{digits[:3]} {digits[3:5]} {digits[5:]}"]
    return variants


def _person_name_variants(value: str) -> list[str]:
    """A DICOM PN (FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX, '=' between alphabets): whole, by component,
    and as people write it."""
    variants = [value]
    for group in value.split("="):
        components = [part.strip() for part in group.split("^")]
        variants.append("^".join(components).rstrip("^"))
        variants += [part for part in components if part]
        if len(components) > 1 and components[0] and components[1]:
            variants += _full_name_variants(components[0], components[1])
    return variants


def _full_name_variants(family: str, given: str) -> list[str]:
    # Together they catch a short name ("Li", "Ann") that is too short to test alone.
    return [f"{given} {family}", f"{family}, {given}", f"{family},{given}", f"{family}^{given}"]


_IDENTIFIER_COLUMNS: dict[str, dict[str, Callable[[str], list[str]]]] = {
    "hl7_messages": {
        "patient_id": _identifier_variants,
        "patient_family_name": _as_is,
        "patient_given_name": _as_is,
        "patient_middle_name": _as_is,
        "patient_birth_date": _date_variants,
        "patient_street": _as_is,
        "patient_city": _as_is,
        "patient_phone": _phone_variants,
        "patient_account_number": _identifier_variants,
        "patient_ssn": _ssn_variants,
        "message_control_id": _control_id_variants,
    },
    "hl7_encounters": {
        "attending_doctor_id": _identifier_variants,
        "attending_doctor_family_name": _as_is,
        "attending_doctor_given_name": _as_is,
        "visit_number": _identifier_variants,
    },
    "hl7_lab_results": {
        "placer_order_number": _identifier_variants,
        "filler_order_number": _identifier_variants,
    },
    "hl7_pharmacy_orders": {
        "placer_order_number": _identifier_variants,
        "filler_order_number": _identifier_variants,
    },
    # Institution name is left out: it names the hospital, not the patient.
    "dicom_images": {
        "patient_id": _identifier_variants,
        "patient_name": _person_name_variants,
        "patient_birth_date": _date_variants,
        "accession_number": _identifier_variants,
        "sop_instance_uid": _as_is,
        "study_instance_uid": _as_is,
        "series_instance_uid": _as_is,
    },
}

_FULL_NAMES = {
    "hl7_messages": [("patient_family_name", "patient_given_name", "patient_name")],
    "hl7_encounters": [("attending_doctor_family_name", "attending_doctor_given_name", "attending_doctor_name")],
}


# The order in which `collect_identifiers` reads its columns (and full names), as (table, kind):
# a value's rank is the place of the first that gives it.
_COLLECTION_ORDER = [
    (table, kind)
    for table, columns in _IDENTIFIER_COLUMNS.items()
    for kind in [*columns, *(name for _, _, name in _FULL_NAMES.get(table, ()))]
]
_RANKS = {entry: rank for rank, entry in enumerate(_COLLECTION_ORDER)}
RANKED_KINDS = [kind for _, kind in _COLLECTION_ORDER]  # rank -> kind


class _Collector:
    def __init__(self, min_length: int, min_digits: int, ranked: bool = False):
        self.min_length = min_length
        self.min_digits = min_digits
        self.identifiers = Identifiers()
        self.ranked = ranked
        self.rank = 0

    def add(self, kind: str, variants: Iterable[str], count_skipped: bool = True) -> None:
        testable = [variant for variant in (v.strip() for v in variants) if self._testable(variant)]
        if not testable and count_skipped:
            self.identifiers.skipped[kind] += 1
        for variant in testable:
            if variant not in self.identifiers:
                self.identifiers[variant] = kind
                if self.ranked:
                    self.identifiers.ranks[variant] = self.rank

    def _testable(self, variant: str) -> bool:
        if len(variant) < self.min_length:
            return False
        return not variant.isdigit() or len(variant) >= self.min_digits


# Columns whose values made only of digits give no identifier (`_control_id_variants`). They are
# told apart in Arrow: at 2,000,000 messages, every control ID is one, and taking each through
# Python cost 5 s of the run's first leak check.
_DIGIT_ONLY_NEVER_TESTED = frozenset({"message_control_id"})


def _distinct_values(table: pa.Table, column: str) -> pa.Array:
    """The column's distinct non-null values as text (none when the table lacks the column)."""
    if column not in table.column_names:
        return pa.array([], pa.string())
    return pc.unique(_as_text(table.column(column))).drop_null()


def _without_digit_only(values: pa.Array) -> tuple[pa.Array, int]:
    """The distinct `values` less those made only of ASCII digits (spaces around them aside), and
    how many distinct such values there were."""
    trimmed = pc.utf8_trim_whitespace(values)
    digit_only = pc.match_substring_regex(trimmed, "^[0-9]+$")
    found = trimmed.filter(digit_only)
    # `values` are distinct already: only trimming can make two of them equal.
    untouched = len(values) == 0 or pc.all(pc.equal(values, trimmed)).as_py()
    distinct = len(found) if untouched else pc.count_distinct(found).as_py()
    return values.filter(pc.invert(digit_only)), distinct


def _stripped_sorted(values: pa.Array) -> list[str]:
    return sorted({value.strip() for value in values.to_pylist() if value.strip()})


def _distinct_pairs(table: pa.Table, first: str, second: str) -> list[tuple[str, str]]:
    if first not in table.column_names or second not in table.column_names:
        return []
    pairs = pa.table({"a": _as_text(table.column(first)), "b": _as_text(table.column(second))})
    distinct = pairs.drop_null().group_by(["a", "b"]).aggregate([])
    found = zip(distinct.column("a").to_pylist(), distinct.column("b").to_pylist())
    return sorted({(a.strip(), b.strip()) for a, b in found if a.strip() and b.strip()})


def _as_text(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """The column as strings, row for row (nulls kept, so two columns still pair up)."""
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return values
    try:
        return values.cast(pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        texts = [None if value is None else str(value) for value in values.to_pylist()]
        return pa.chunked_array([pa.array(texts, pa.string())], pa.string())
