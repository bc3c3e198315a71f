"""Which lab values (OBX-5) may leave the PHI zone: numbers and codes, by their type, never free text."""

import pyarrow as pa
import pyarrow.compute as pc

# OBX-2 types whose value cannot carry free text: numbers, and codes (of which only code^text^system
# is kept, since CWE goes on to alternate and original text, what a person typed).
NUMERIC_VALUE_TYPES = pa.array(["NM", "SN", "NA"])
_CODED_VALUE_TYPES = pa.array(["CE", "CWE", "CNE"])
_CODE_VALUE_TYPES = pa.array(["ID", "IS"])
_CODED_COMPONENTS_KEPT = 3
# NM is one decimal number; SN a comparator and a number, or two numbers joined by a separator
# (`<^10`, `^1^:^128`, `^10^-^20`); NA numbers joined by ^. Digits and dashes alone would let an
# SSN (123-45-6789) or a date (2024-03-07) through as a "number".
_NUMBER = r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)"
_NUMERIC_TEXT = (
    rf"^\s*(?:{_NUMBER}"
    rf"|(?:<|>|<=|>=|=|<>)?\^?{_NUMBER}(?:\^(?:-|\+|/|\.|:)\^{_NUMBER})?"
    rf"|{_NUMBER}(?:\^{_NUMBER})+)\s*$"
)
# A number that reads as a calendar date (YYYYMMDD) is a date in a numeric field, not a result.
_DATE_LIKE_NUMBER = r"^\s*(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])\s*$"


def observation_values(value_types: pa.Array, values: pa.Array) -> pa.Array:
    """OBX-5 where its type rules out free text: numbers as written, codes as code^text^system; else null."""
    value_types = pc.utf8_upper(pc.utf8_trim_whitespace(value_types))
    components = pc.split_pattern(values, "^")
    is_numeric = pc.and_(
        pc.and_(pc.is_in(value_types, NUMERIC_VALUE_TYPES), pc.match_substring_regex(values, _NUMERIC_TEXT)),
        pc.invert(pc.match_substring_regex(values, _DATE_LIKE_NUMBER)),
    )
    conditions = pc.make_struct(
        is_numeric.fill_null(False),
        pc.is_in(value_types, _CODED_VALUE_TYPES).fill_null(False),
        pc.is_in(value_types, _CODE_VALUE_TYPES).fill_null(False),
    )
    return pc.case_when(
        conditions,
        values,
        pc.binary_join(pc.list_slice(components, 0, _CODED_COMPONENTS_KEPT), "^"),
        pc.binary_join(pc.list_slice(components, 0, 1), "^"),
    )
