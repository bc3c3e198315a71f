"""HL7 v2 primitive data types read from their text: DTM and TS as datetimes, NM and SN as numbers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

# SN is <comparator> ^ <num1> ^ <separator/suffix> ^ <num2>; with no comparator or "=" and nothing
# after num1 it is a plain number.
_PLAIN_COMPARATORS = frozenset({"", "="})


def parse_datetime(value: str | None, component_separator: str = "^") -> datetime | None:
    """An HL7 DTM/TS `YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]` as naive wall-clock time; None when invalid.

    The offset is checked but not applied: the tables keep the time as the sender wrote it.
    """
    if not value:
        return None
    # A TS may carry its degree of precision as component 2; the time is component 1.
    if component_separator in value:
        value = value.partition(component_separator)[0]
    if not (len(value) == 14 and value.isdigit()):
        return _parse_datetime_with_precision(value)
    try:
        # ISO 8601 basic format, parsed in C: several times faster than slicing into int().
        return datetime.fromisoformat(f"{value[:8]}T{value[8:]}")
    except ValueError:
        return None


def parse_number(text: str) -> float | None:
    """An HL7 NM as a float; None when empty, not a number, or not finite."""
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    # float() also reads "nan", "inf" and "1_000", none of which is an HL7 NM.
    return number if math.isfinite(number) and "_" not in text else None


def parse_numeric_value(components: Sequence[str]) -> float | None:
    """An NM or SN value's number from its components; for an SN written by the standard (`^182`, `=^182`), num1."""
    number = parse_number(components[0])
    if number is None and len(components) > 1 and components[0] in _PLAIN_COMPARATORS and not any(components[2:]):
        number = parse_number(components[1])
    return number


def _parse_datetime_with_precision(value: str) -> datetime | None:
    """`parse_datetime` for anything but the plain 14-digit form: lower precision, fractions, offsets."""
    for sign in "+-":
        position = value.find(sign)
        if position != -1:
            offset = value[position + 1 :]
            if len(offset) != 4 or not (offset.isascii() and offset.isdigit()):
                return None
            value = value[:position]
            break
    whole, dot, fraction = value.partition(".")
    if not (whole.isascii() and whole.isdigit()):
        return None
    # The standard allows four fractional digits; up to six (microseconds) are read too.
    if dot and (len(whole) != 14 or not 1 <= len(fraction) <= 6 or not (fraction.isascii() and fraction.isdigit())):
        return None
    if len(whole) == 4:
        text = f"{whole}0101"
    elif len(whole) == 6:
        text = f"{whole}01"
    elif len(whole) == 8:
        text = whole
    elif len(whole) in (10, 12, 14):
        text = f"{whole[:8]}T{whole[8:]}{dot}{fraction}"
    else:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
