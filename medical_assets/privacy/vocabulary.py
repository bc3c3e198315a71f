"""Text leaves the PHI zone only as vocabulary: a value that enough distinct patients share.

A hospital's real vocabulary (test names, units, reference ranges, facility and unit names,
colours of urine, coded results) recurs across many patients; a comment typed once ("Called
Dr Smith at 617-555-0142 re Jane Doe"), a name in a field meant for a code, a number holding an
SSN, recur for one. So a text value of a column declared `CODE` or `VOCABULARY` is published
only when at least `min_patients` distinct patients have it in that column across the whole
data (default: the suppression threshold plus one, so a value is public on the same terms as a
count), and when it holds no structured identifier (phone, SSN, email, URL, date...) whoever it
belongs to. Everything else is replaced by `WITHHELD`, and the number of values withheld per
column is reported.

The census is exact across parts without holding every (value, patient) pair: a part reports
a value as common once it alone has `min_patients` patients, and otherwise lists its few
patients, at most `min_patients - 1` per value (`evidence`); the combination (`merge`) unites
those lists. What travels is bounded by the distinct values times the threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from medical_assets.privacy.detectors import structured_identifier_mask

WITHHELD = "[withheld]"  # what a withheld text value becomes: readable, and never a real value

EVIDENCE_SCHEMA = pa.schema(
    [
        pa.field("column", pa.string()),  # "<table>.<column>"
        pa.field("value", pa.string()),
        pa.field("patient", pa.string()),  # null: the part alone saw the value for min_patients patients
    ]
)

Vocabulary = Mapping[str, frozenset[str]]  # "<table>.<column>" -> the values that may be published


def column_key(table: str, column: str) -> str:
    return f"{table}.{column}"


def evidence(column: str, values: pa.Array, patients: pa.Array, min_patients: int) -> pa.Table:
    """What one part knows of `column`'s values: common ones once (patient null), the others with
    each of their distinct patients. Rows without a value or a patient say nothing."""
    pairs = pa.table({"value": values, "patient": patients}).filter(
        pc.and_(pc.is_valid(values), pc.is_valid(patients))
    )
    if pairs.num_rows == 0:
        return EVIDENCE_SCHEMA.empty_table()
    distinct = pairs.group_by(["value", "patient"]).aggregate([])
    counts = distinct.group_by("value").aggregate([("patient", "count")])
    common = counts.filter(pc.greater_equal(counts.column("patient_count"), min_patients)).column("value")
    rare = distinct.filter(pc.invert(pc.is_in(distinct.column("value"), value_set=common)))
    return pa.concat_tables(
        [
            _evidence_rows(column, common.combine_chunks(), pa.nulls(len(common), pa.string())),
            _evidence_rows(column, rare.column("value").combine_chunks(), rare.column("patient").combine_chunks()),
        ]
    )


def merge(parts: Iterable[pa.Table], min_patients: int) -> dict[str, frozenset[str]]:
    """The vocabulary of every column from the evidence of every part."""
    tables = [table.select(EVIDENCE_SCHEMA.names).cast(EVIDENCE_SCHEMA) for table in parts]
    if not tables:
        return {}
    all_evidence = pa.concat_tables(tables)
    common = all_evidence.filter(pc.is_null(all_evidence.column("patient")))
    rare = all_evidence.filter(pc.is_valid(all_evidence.column("patient")))
    counts = rare.group_by(["column", "value"]).aggregate([("patient", "count_distinct")])
    enough = counts.filter(pc.greater_equal(counts.column("patient_count_distinct"), min_patients))
    vocabulary: dict[str, set[str]] = {}
    for source in (common, enough):
        for column, value in zip(source.column("column").to_pylist(), source.column("value").to_pylist()):
            vocabulary.setdefault(column, set()).add(value)
    return {column: frozenset(values) for column, values in vocabulary.items()}


def without_identifiers(vocabulary: Vocabulary) -> dict[str, frozenset[str]]:
    """The vocabulary less every value that holds a structured identifier (a hospital's own phone
    number in a common comment is still a phone number): checked once per distinct value."""

    cleaned = {}
    for column, values in vocabulary.items():
        ordered = pa.array(sorted(values), pa.string())
        flagged = pc.fill_null(structured_identifier_mask(ordered), False)
        cleaned[column] = frozenset(ordered.filter(pc.invert(flagged)).to_pylist())
    return cleaned


def published(values: pa.Array, allowed: Iterable[str]) -> tuple[pa.Array, int]:
    """`values` with everything outside `allowed` replaced by WITHHELD; and how many non-null
    values were withheld."""
    allowed = pa.array(sorted(allowed), pa.string())
    keep = pc.fill_null(pc.is_in(values, value_set=allowed), False)
    present = pc.is_valid(values)
    withhold = pc.and_(present, pc.invert(keep))
    withheld_count = pc.sum(withhold.cast(pa.int64())).as_py() or 0
    return pc.if_else(withhold, pa.scalar(WITHHELD, pa.string()), values), withheld_count


def _evidence_rows(column: str, values: pa.Array, patients: pa.Array) -> pa.Table:
    return pa.table(
        {"column": pa.array([column] * len(values), pa.string()), "value": values.cast(pa.string()), "patient": patients},
        schema=EVIDENCE_SCHEMA,
    )
