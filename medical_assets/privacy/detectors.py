"""Pattern detectors for structured identifiers in any text, whoever they belong to.

The leak check's search for known identifiers finds only what the PHI tables parsed: a third
party's phone, an email typed into a note, a date other than the birth date pass it. These
detectors find such values by their shape, as Presidio's pattern recognisers do: a regular
expression, then a validation (a real date, a valid SSN area, octets up to 255) or a context word
where the shape alone is too common (a bare 9 digits is an SSN only next to "SSN"; a 5-digit ZIP
only next to a state or an address word). A finding names the kind, never the value.

`structured_identifier_mask` does the same for a string array of millions of cells: an Arrow
regex keeps the cells that could hold one, and each distinct candidate is checked once in Python.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from datetime import date
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PHONE = "phone"
SSN = "ssn"
EMAIL = "email"
URL = "url"
IP_ADDRESS = "ip_address"
DATE = "date"
ZIP_CODE = "zip_code"
RECORD_NUMBER = "record_number"  # MRN, account, encounter or order number named as such
KINDS = (PHONE, SSN, EMAIL, URL, IP_ADDRESS, DATE, ZIP_CODE, RECORD_NUMBER)

# Not a digit, letter or a dot followed by a digit on either side: "555-123-4567" inside a UID
# (1.2.840.555.123.4567) or a longer number is not a phone.
_START = r"(?<![\w.+-])"
_END = r"(?![\w]|[.-]\d)"

_CONTEXT_SPAN = 40  # characters before a match where its context word must be

_PHONE = re.compile(
    _START + r"(?:\+?1[\s.-]?)?(?:\((?P<area1>\d{3})\)\s?|(?P<area2>\d{3})(?P<sep>[\s.-]))"
    r"(?P<exchange>\d{3})[\s.-]?(?P<line>\d{4})" + _END
)
_PHONE_BARE = re.compile(_START + r"(?:\+?1)?(?P<area>[2-9]\d{2})(?P<exchange>\d{3})(?P<line>\d{4})" + _END)
_PHONE_CONTEXT = re.compile(r"(?i)\b(?:phone|tel|telephone|fax|cell|mobile|call|contact|ph)\b")

_SSN = re.compile(_START + r"(?P<area>\d{3})(?P<sep>[- ])(?P<group>\d{2})(?P=sep)(?P<serial>\d{4})" + _END)
_SSN_BARE = re.compile(_START + r"(?P<area>\d{3})(?P<group>\d{2})(?P<serial>\d{4})" + _END)
_SSN_CONTEXT = re.compile(r"(?i)(?:\bssn\b|\bss#|social\s+security|\bsocial\b)")

_EMAIL = re.compile(r"(?i)(?<![\w.+-])[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,24}\b")
_URL = re.compile(r"(?i)\b(?:https?://|www\.)[^\s<>\"'`]+")

_IPV4 = re.compile(r"(?<![\w.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?![\w]|\.\d)")
_VERSION_CONTEXT = re.compile(r"(?i)(?:\bv|version|ver\.?|release|build|software|firmware)\s*[:=]?\s*$")
_IPV6 = re.compile(r"(?i)(?<![\w:])(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?![\w:])")

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}
_MONTH = "(?P<month_name>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DATE_PATTERNS = [
    # YYYY-MM-DD, YYYY/MM/DD, YYYY.MM.DD (ISO, and a time may follow)
    re.compile(r"(?<![\w.-])(?P<year>\d{4})(?P<sep>[-/.])(?P<month>\d{1,2})(?P=sep)(?P<day>\d{1,2})(?![\d]|[.-]\d)"),
    # YYYYMMDD, and HL7 TS YYYYMMDDHHMM[SS[.S+]][+ZZZZ]
    re.compile(r"(?<![\w.+-])(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})(?P<time>\d{4}(?:\d{2}(?:\.\d{1,4})?)?)?(?:[+-]\d{4})?(?![\w]|[.-]\d)"),
    # MM/DD/YYYY, M/D/YY, MM-DD-YYYY
    re.compile(r"(?<![\w./-])(?P<month>\d{1,2})(?P<sep>[/-])(?P<day>\d{1,2})(?P=sep)(?P<year>\d{4}|\d{2})(?![\w]|[./-]\d)"),
    # DD-Mon-YYYY, 5 Jan 2024
    re.compile(r"(?i)(?<![\w])(?P<day>\d{1,2})[-\s]" + _MONTH + r"[-\s,]\s*(?P<year>\d{4}|\d{2})(?![\w])"),
    # January 5, 2024; Jan. 5th 2024
    re.compile(r"(?i)(?<![\w])" + _MONTH + r"\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<year>\d{4})(?![\w])"),
]

_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|"
    "OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|PR|VI|GU"
)
_ZIP_PLUS_4 = re.compile(r"(?<![\w.-])\d{5}-\d{4}(?![\w]|[.-]\d)")
_ZIP_AFTER_STATE = re.compile(r"(?<![\w])(?:" + _STATES + r")\.?,?\s+\d{5}(?![\w]|[.-]\d)")
_ZIP_WITH_CONTEXT = re.compile(r"(?i)\b(?:zip|zipcode|zip\s+code|postal\s+code|postcode)\b\s*(?:code)?\s*[:#=]?\s*\d{5}(?![\w]|[.-]\d)")

# A number named as a record number: "MRN: 1234567", "Acct# A123456", "account no. 98765-4".
_RECORD_NUMBER = re.compile(
    r"(?i)\b(?:mrn|medical\s+record(?:\s+(?:number|no\.?|#))?|med\s+rec(?:\s+no\.?)?|acct|account(?:\s+(?:number|no\.?))?|"
    r"patient\s+(?:id|number|no\.?)|pid|visit\s+(?:number|no\.?)|encounter\s+(?:id|number|no\.?)|"
    r"chart\s+(?:number|no\.?)|member\s+(?:id|number)|policy\s+(?:number|no\.?)|order\s+(?:number|no\.?))"
    r"\s*(?:#|no\.?|number)?\s*[:#=]?\s*(?P<id>[A-Z]{0,4}[-]?\d[\dA-Z-]{3,19})(?![\w])"
)

# An Arrow (RE2) regex that every cell holding an identifier matches: at least three digits in a
# row, a digit pattern of a short date or an IP, an "@", or a URL's start. Cheaper than the exact
# checks, which run only on the cells it keeps.
CANDIDATE_PATTERN = r"[0-9]{3}|[0-9][/-][0-9]|[0-9]\.[0-9]{1,3}\.[0-9]|[0-9A-Fa-f]?:[0-9A-Fa-f]*:|@|(?i:https?://|www\.)"


def find_structured_identifiers(text: str) -> list[str]:
    """The kinds of structured identifier in `text` (phone, ssn, email, ...), sorted; empty if none."""
    if not text:
        return []
    return list(_kinds(text))


def structured_identifier_mask(values: pa.Array | pa.ChunkedArray) -> pa.BooleanArray:
    """For each cell of a string array, whether it holds a structured identifier (nulls: False)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], values.type)
    values = _as_strings(values)
    if len(values) == 0:
        return pa.array([], pa.bool_())
    candidates = pc.fill_null(pc.match_substring_regex(values, CANDIDATE_PATTERN), False)
    rows = np.flatnonzero(candidates.to_numpy(zero_copy_only=False))
    mask = np.zeros(len(values), dtype=bool)
    if len(rows):
        candidate_texts = values.take(pa.array(rows))
        distinct = pc.unique(candidate_texts)
        found = np.fromiter((bool(_kinds(text)) for text in distinct.to_pylist()), dtype=bool, count=len(distinct))
        if found.any():
            positive = distinct.filter(pa.array(found))
            mask[rows] = pc.is_in(candidate_texts, value_set=positive).to_numpy(zero_copy_only=False)
    return pa.array(mask, pa.bool_())


@lru_cache(maxsize=65_536)  # the same texts recur cell after cell
def _kinds(text: str) -> tuple[str, ...]:
    return tuple(kind for kind, detect in _DETECTORS if detect(text))


def _has_phone(text: str) -> bool:
    for match in _PHONE.finditer(text):
        if (match["area1"] or match["area2"])[0] in "23456789":
            return True
    return any(_context_before(text, match.start(), _PHONE_CONTEXT) for match in _PHONE_BARE.finditer(text))


def _valid_ssn(match: re.Match) -> bool:
    area = match["area"]
    return area != "000" and area != "666" and area[0] != "9" and match["group"] != "00" and match["serial"] != "0000"


def _has_ssn(text: str) -> bool:
    if any(_valid_ssn(match) for match in _SSN.finditer(text)):
        return True
    # Nine digits are any ID or count: an SSN only where the text names one.
    return any(_valid_ssn(m) and _context_before(text, m.start(), _SSN_CONTEXT) for m in _SSN_BARE.finditer(text))


def _has_email(text: str) -> bool:
    return "@" in text and _EMAIL.search(text) is not None


def _has_url(text: str) -> bool:
    return _URL.search(text) is not None


def _has_ip_address(text: str) -> bool:
    for match in _IPV4.finditer(text):
        if all(int(octet) <= 255 and (octet == "0" or not octet.startswith("0")) for octet in match.groups()):
            # "software 1.2.3.4" is a version number, not an address.
            if not _VERSION_CONTEXT.search(text[max(0, match.start() - 20) : match.start()]):
                return True
    return ":" in text and any(_valid_ipv6(match.group()) for match in _IPV6.finditer(text))


def _valid_ipv6(candidate: str) -> bool:
    """Eight groups, or fewer with one "::"; at least one hex letter or 3+ groups of digits, so a
    time (12:30:45) or a ratio (1:2:3) is not taken for an address."""
    if candidate.count("::") > 1:
        return False
    groups = candidate.split(":")
    if "::" in candidate:
        filled = [group for group in groups if group]
        if len(filled) > 7 or len(filled) < 2:
            return False
    elif len(groups) != 8 or not all(groups):
        return False
    return any(re.search(r"[a-fA-F]", group) for group in groups) or len(groups) == 8


def _has_date(text: str) -> bool:
    for pattern in _DATE_PATTERNS:
        for match in pattern.finditer(text):
            if _valid_date(match):
                return True
    return False


def _valid_date(match: re.Match) -> bool:
    parts = match.groupdict()
    year = int(parts["year"])
    if len(parts["year"]) == 2:
        year += 2000 if year < 50 else 1900
    month = _MONTHS[parts["month_name"].lower()] if parts.get("month_name") else int(parts["month"])
    if not 1800 <= year <= 2199:
        return False
    try:
        date(year, month, int(parts["day"]))
    except ValueError:
        return False
    time = parts.get("time")
    if time and not (int(time[:2]) <= 23 and int(time[2:4]) <= 59):
        return False
    return True


def _has_zip_code(text: str) -> bool:
    return any(
        pattern.search(text) is not None for pattern in (_ZIP_PLUS_4, _ZIP_AFTER_STATE, _ZIP_WITH_CONTEXT)
    )


def _has_record_number(text: str) -> bool:
    return _RECORD_NUMBER.search(text) is not None


def _context_before(text: str, position: int, context: re.Pattern) -> bool:
    return context.search(text[max(0, position - _CONTEXT_SPAN) : position]) is not None


_DETECTORS: list[tuple[str, Callable[[str], bool]]] = [
    (DATE, _has_date),
    (EMAIL, _has_email),
    (IP_ADDRESS, _has_ip_address),
    (PHONE, _has_phone),
    (RECORD_NUMBER, _has_record_number),
    (SSN, _has_ssn),
    (URL, _has_url),
    (ZIP_CODE, _has_zip_code),
]


def structured_identifier_kinds(values: pa.Array | pa.ChunkedArray) -> Counter[str]:
    """How many cells of a string array hold each kind of structured identifier (a cell with two
    kinds counts for both). Each distinct candidate text is checked once."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], values.type)
    values = _as_strings(values)
    counts: Counter[str] = Counter()
    if len(values) == 0:
        return counts
    # Distinct texts first: columns repeat their values (a validation issue, a unit), and the
    # candidate pattern over every cell cost more than counting them.
    distinct = pc.value_counts(values.drop_null())
    texts = distinct.field("values")
    candidates = pc.match_substring_regex(texts, CANDIDATE_PATTERN)
    if not pc.any(candidates).as_py():
        return counts
    distinct = distinct.filter(candidates)
    for text, times in zip(distinct.field("values").to_pylist(), distinct.field("counts").to_pylist()):
        for kind in _kinds(text):
            counts[kind] += times
    return counts


def _as_strings(values: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return values
    return values.cast(pa.string())
