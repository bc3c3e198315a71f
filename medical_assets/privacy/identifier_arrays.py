"""The ranked identifiers of `identifier_forms.collect_identifiers`, computed column by column in Arrow.

A de-identification task collects the identifiers of the part group it holds (250,000 messages:
about 600,000 identifiers with the forms of each), and one Python call per value and form cost
a second a group. Here the forms of ASCII values are made by Arrow's string kernels, whose
semantics equal Python's on ASCII (digits, case, and the whitespace `str.strip` removes, named
below); other values, and columns whose forms have no Arrow version (DICOM person names), take
`collect_identifiers`' own per-value functions. The result is the same mapping as
`collect_identifiers(tables, ranked=True).ranks` (tests hold the two equal on messy values).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medical_assets.privacy.identifier_forms import (
    _DIGIT_ONLY_NEVER_TESTED,
    _FULL_NAMES,
    _IDENTIFIER_COLUMNS,
    _RANKS,
    DEFAULT_MIN_DIGITS,
    DEFAULT_MIN_LENGTH,
    _as_is,
    _as_text,
    _control_id_variants,
    _date_variants,
    _distinct_values,
    _full_name_variants,
    _identifier_variants,
    _phone_variants,
    _ssn_variants,
)
from medical_assets.privacy.identifier_index import ASCII_WHITESPACE

_DIGITS = "^[0-9]+$"


def ranked_identifiers(
    tables: Mapping[str, pa.Table], min_length: int = DEFAULT_MIN_LENGTH, min_digits: int = DEFAULT_MIN_DIGITS
) -> tuple[pa.Array, np.ndarray]:
    """Every identifier form of the tables, with the rank of the column that gave it: a form may
    come more than once, and its lowest rank is the one `collect_identifiers(tables, min_length,
    min_digits, ranked=True).ranks` holds (hashing keeps the lowest: `HashedIdentifiers.sorted`)."""
    forms: list[pa.Array] = []
    ranks: list[np.ndarray] = []
    python_pairs: list[tuple[str, int]] = []

    def found(values: pa.Array, rank: int) -> None:
        forms.append(values)
        ranks.append(np.full(len(values), rank, np.int64))

    for table_name, columns in _IDENTIFIER_COLUMNS.items():
        table = tables.get(table_name)
        if table is None:
            continue
        for column, variants in columns.items():
            rank = _RANKS[(table_name, column)]
            values = _distinct_values(table, column)
            arrow_forms = _ARROW_FORMS.get(variants)
            ascii_values, other_values = _split_ascii(values) if arrow_forms else (None, values)
            if ascii_values is not None and len(ascii_values):
                stripped = _stripped(ascii_values)
                if column in _DIGIT_ONLY_NEVER_TESTED or variants is _control_id_variants:
                    stripped = stripped.filter(pc.invert(pc.match_substring_regex(stripped, _DIGITS)))
                for form in arrow_forms(stripped):
                    found(form, rank)
            for value in other_values.to_pylist():
                value = value.strip()
                if value:
                    python_pairs += [(form.strip(), rank) for form in variants(value)]
        for family, given, kind in _FULL_NAMES.get(table_name, ()):
            if family not in table.column_names or given not in table.column_names:
                continue
            rank = _RANKS[(table_name, kind)]
            pairs = pa.table({"a": _as_text(table.column(family)), "b": _as_text(table.column(given))})
            pairs = pairs.drop_null().group_by(["a", "b"]).aggregate([])
            ascii_rows = pc.and_(pc.string_is_ascii(pairs.column("a")), pc.string_is_ascii(pairs.column("b")))
            both = pairs.filter(ascii_rows)
            family_names, given_names = (_stripped(both.column(name), drop_empty=False) for name in ("a", "b"))
            named = pc.and_(pc.greater(pc.utf8_length(family_names), 0), pc.greater(pc.utf8_length(given_names), 0))
            family_names, given_names = family_names.filter(named), given_names.filter(named)
            for form in _full_name_forms(family_names, given_names):
                found(form, rank)
            others = pairs.filter(pc.invert(ascii_rows))
            for a, b in zip(others.column("a").to_pylist(), others.column("b").to_pylist()):
                if a.strip() and b.strip():
                    python_pairs += [(form.strip(), rank) for form in _full_name_variants(a.strip(), b.strip())]

    arrow_table = pa.table({
        "value": pa.concat_arrays([pa.array([], pa.string()), *(_plain(form) for form in forms)]),
        "rank": np.concatenate([np.zeros(0, np.int64), *ranks]),
    })
    arrow_table = arrow_table.filter(_testable(arrow_table.column("value"), min_length, min_digits))
    python_rows = [(form, rank) for form, rank in python_pairs if _python_testable(form, min_length, min_digits)]
    values = pa.concat_arrays([
        arrow_table.column("value").combine_chunks(), pa.array([form for form, _ in python_rows], pa.string())
    ])
    ranks = np.concatenate([arrow_table.column("rank").to_numpy(), np.array([rank for _, rank in python_rows], np.int64)])
    return values, ranks


def _split_ascii(values: pa.Array) -> tuple[pa.Array, pa.Array]:
    ascii_mask = pc.string_is_ascii(values)
    return values.filter(ascii_mask), values.filter(pc.invert(ascii_mask))


def _stripped(values: pa.Array | pa.ChunkedArray, drop_empty: bool = True) -> pa.Array:
    """ASCII values as `str.strip()` leaves them (empty ones dropped, unless told not to)."""
    stripped = pc.utf8_trim(values, characters=ASCII_WHITESPACE)
    if isinstance(stripped, pa.ChunkedArray):
        stripped = stripped.combine_chunks()
    return stripped.filter(pc.greater(pc.utf8_length(stripped), 0)) if drop_empty else stripped


def _plain(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    return values.cast(pa.string())


def _testable(values: pa.Array, min_length: int, min_digits: int) -> pa.Array:
    lengths = pc.utf8_length(values)
    digit_only = pc.match_substring_regex(values, _DIGITS)
    return pc.and_(pc.greater_equal(lengths, min_length), pc.or_(pc.invert(digit_only), pc.greater_equal(lengths, min_digits)))


def _python_testable(form: str, min_length: int, min_digits: int) -> bool:
    return len(form) >= min_length and (not form.isdigit() or len(form) >= min_digits)


def _join(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


# The forms of each identifier function of `identifier_forms`, for stripped, non-empty ASCII values.

def _as_is_forms(values: pa.Array) -> list[pa.Array]:
    return [values]


def _identifier_forms(values: pa.Array) -> list[pa.Array]:
    digits = values.filter(pc.match_substring_regex(values, _DIGITS))
    without_zeros = pc.utf8_ltrim(digits, characters="0")
    return [values, without_zeros.filter(pc.greater(pc.utf8_length(without_zeros), 0))]


def _date_forms(values: pa.Array) -> list[pa.Array]:
    parts = pc.extract_regex(values, r"^(?P<year>[0-9]{4})-?(?P<month>[0-9]{2})-?(?P<day>[0-9]{2})")
    dated = pc.is_valid(parts)
    values, parts = values.filter(dated), parts.filter(dated)
    year, month, day = (parts.field(name) for name in ("year", "month", "day"))
    month_number, day_number = pc.cast(month, pa.int32()), pc.cast(day, pa.int32())
    valid = pc.and_(pc.and_(pc.greater_equal(month_number, 1), pc.less_equal(month_number, 12)),
                    pc.and_(pc.greater_equal(day_number, 1), pc.less_equal(day_number, 31)))
    values, year, month, day = (array.filter(valid) for array in (values, year, month, day))
    month_number, day_number = (pc.cast(pc.cast(array, pa.int32()), pa.string()) for array in (month, day))
    return [values, _join(year, month, day), _join(year, "-", month, "-", day), _join(month, "/", day, "/", year),
            _join(month_number, "/", day_number, "/", year)]


def _digits_of(values: pa.Array) -> pa.Array:
    return pc.replace_substring_regex(values, "[^0-9]", "")


def _phone_forms(values: pa.Array) -> list[pa.Array]:
    digits = _digits_of(values)
    lengths = pc.utf8_length(digits)
    trunk = pc.and_(pc.equal(lengths, 11), pc.starts_with(digits, "1"))
    national = pc.if_else(trunk, pc.utf8_slice_codeunits(digits, 1), digits)
    national_lengths = pc.utf8_length(national)
    ten = national.filter(pc.equal(national_lengths, 10))
    area, exchange, line = (pc.utf8_slice_codeunits(ten, start, stop) for start, stop in ((0, 3), (3, 6), (6, 10)))
    seven = national.filter(pc.equal(national_lengths, 7))
    return [
        values, digits, ten, _join("1", ten), _join("(", area, ")", exchange, "-", line),
        _join("(", area, ") ", exchange, "-", line), _join(area, "-", exchange, "-", line),
        _join(area, ".", exchange, ".", line), _join(area, " ", exchange, " ", line),
        _join(pc.utf8_slice_codeunits(seven, 0, 3), "-", pc.utf8_slice_codeunits(seven, 3, 7)),
    ]


def _ssn_forms(values: pa.Array) -> list[pa.Array]:
    digits = _digits_of(values)
    nine = digits.filter(pc.equal(pc.utf8_length(digits), 9))
    first, second, third = (pc.utf8_slice_codeunits(nine, start, stop) for start, stop in ((0, 3), (3, 5), (5, 9)))
    return [values, digits, _join(first, "-", second, "-", third), _join(first, " ", second, " ", third)]


def _control_id_forms(values: pa.Array) -> list[pa.Array]:
    # Digit-only control ids are filtered out before (they give no identifier at all).
    return _identifier_forms(values)


def _full_name_forms(family: pa.Array, given: pa.Array) -> list[pa.Array]:
    return [_join(given, " ", family), _join(family, ", ", given), _join(family, ",", given), _join(family, "^", given)]


_ARROW_FORMS: dict[Callable[[str], list[str]], Callable[[pa.Array], list[pa.Array]]] = {
    _as_is: _as_is_forms,
    _identifier_variants: _identifier_forms,
    _control_id_variants: _control_id_forms,
    _date_variants: _date_forms,
    _phone_variants: _phone_forms,
    _ssn_variants: _ssn_forms,
}
