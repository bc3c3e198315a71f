"""Per-message validation of parsed HL7: the segments and fields each message type requires, and a score.

The tutorial's validator listed three message types but not ADT^A03, so every discharge failed;
it read a segment count its parser never set, so no message scored above 0.75; and it took its
parser's 'unknown' placeholder for a present value. Here each message type has a rule, a list of
required items (`RULES`), and each item is looked for where the parsed PHI tables keep it:

- MSH-7, MSH-9 (code and trigger event), MSH-10, MSH-12, PID-3, PID-5 (family or given name),
  PID-7 and PID-8: columns of `hl7_messages`;
- PV1: the message has a row in `hl7_encounters`; PV1-2, PV1-44, PV1-45 and EVN-2 are its columns
  (the parser records EVN only with a PV1);
- OBX: rows in `hl7_lab_results`, each with OBX-3 and the OBR-4 of the OBR it follows;
- RXE: rows in `hl7_pharmacy_orders`, each with RXE-2 and the ORC-1 of the ORC it follows.

An item that lives on a child row (EVN-2, PV1-n, OBR-4, OBX-3, ORC-1, RXE-2) cannot be seen when
the message has no such row: it is then not assessed (the missing segment is the issue), rather
than failed a second time. The score is satisfied / assessed items, in [0, 1]; the issues name
each failed item ("PV1 missing", "PID-7 empty"), never a value. Where the tables cannot tell a
missing segment from an empty field, the field is named: "EVN-2 empty" for an EVN absent or
without EVN-2, "OBR-4 empty" for an OBX with no OBR before it or one without OBR-4, and
"ORC-1 empty" likewise.

PID-7 and PID-8 are optional in the standard; they are required here because the analytics need
them. An unknown message type gets the MSH items alone; an ADT event without a rule of its own
gets the generic ADT rule, without PV1 for the events whose v2.5 structure has no required PV1
(merges, links, identifier changes).

Keys: the PHI tables join their child rows to a message on (source_file, message_index). Output
rows carry the de-identified keys instead: the caller's token functions turn MSH-10 and the file
name into the tokens the de-identified tables hold (`message_token`, `source_file_token`), so the
validation table joins the `deid/` zone without exposing either.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medical_assets.analytics.tables import MESSAGE_VALIDATION
from medical_assets.hl7 import tables as phi_tables

_MSH = ("MSH-7", "MSH-9", "MSH-10", "MSH-12")
_PATIENT = ("PID-3", "PID-5", "PID-7", "PID-8")
_VISIT = ("EVN-2", "PV1", "PV1-2")

# Required items per message type (MSH-9.1^MSH-9.2 as parsed).
RULES: dict[str, tuple[str, ...]] = {
    "ADT^A01": (*_MSH, *_PATIENT, *_VISIT, "PV1-44"),  # an admission says when
    "ADT^A03": (*_MSH, *_PATIENT, *_VISIT, "PV1-45"),  # a discharge says when
    "ORU^R01": (*_MSH, *_PATIENT, "OBR-4", "OBX", "OBX-3"),
    "RDE^O11": (*_MSH, *_PATIENT, "ORC-1", "RXE", "RXE-2"),
}
GENERIC_ADT_RULE = (*_MSH, *_PATIENT, *_VISIT)
UNKNOWN_TYPE_RULE = _MSH
# ADT events whose v2.5 message structure has no required PV1.
ADT_EVENTS_WITHOUT_VISIT = frozenset(
    [
        "A24",
        "A30",
        "A34",
        "A35",
        "A36",
        "A37",
        "A39",
        "A40",
        "A41",
        "A42",
        "A43",
        "A44",
        "A46",
        "A47",
        "A48",
        "A49",
        "A60",
    ]
)

_MESSAGE_KEY = ["source_file", "message_index"]
# Child items: table -> {item: column}; the item None stands for the segment itself (a row exists).
_CHILD_ITEMS = {
    "hl7_encounters": {
        "PV1": None,
        "EVN-2": "event_datetime",
        "PV1-2": "patient_class",
        "PV1-44": "admit_datetime",
        "PV1-45": "discharge_datetime",
    },
    "hl7_lab_results": {"OBX": None, "OBX-3": "observation_code", "OBR-4": "universal_service_id"},
    "hl7_pharmacy_orders": {"RXE": None, "RXE-2": "give_code", "ORC-1": "order_control"},
}
# Message items: item -> the hl7_messages columns of which one must be present.
_MESSAGE_ITEMS = {
    "MSH-7": ("message_datetime",),
    "MSH-10": ("message_control_id",),
    "MSH-12": ("hl7_version",),
    "PID-3": ("patient_id",),
    "PID-5": ("patient_family_name", "patient_given_name"),
    "PID-7": ("patient_birth_date",),
    "PID-8": ("patient_gender",),
}
_ITEMS = ["MSH-9", *_MESSAGE_ITEMS, *(item for items in _CHILD_ITEMS.values() for item in items)]
# The parser rejects a message without MSH-9.1, so an MSH-9 that fails lacks its trigger event.
_ISSUES = {"MSH-9": "MSH-9.2 empty"}


def rule_for(message_type: str | None) -> tuple[str, ...]:
    """The items a message of this type must have."""
    if not isinstance(message_type, str):
        return UNKNOWN_TYPE_RULE
    if message_type in RULES:
        return RULES[message_type]
    code, _, event = message_type.partition("^")
    if code == "ADT" and event:
        return (*_MSH, *_PATIENT, "EVN-2") if event in ADT_EVENTS_WITHOUT_VISIT else GENERIC_ADT_RULE
    return UNKNOWN_TYPE_RULE


def issue_text(item: str) -> str:
    """How a failed item reads: a segment is missing, a field is empty."""
    if item in _ISSUES:
        return _ISSUES[item]
    return f"{item} empty" if "-" in item else f"{item} missing"


def validate_messages(
    phi: Mapping[str, pa.Table],
    message_token: Callable[[str | None], str | None],
    source_file_token: Callable[[str | None], str | None],
) -> pa.Table:
    """One `MESSAGE_VALIDATION` row per row of PHI `hl7_messages`, in its order.

    `phi`: the PHI HL7 tables (hl7_messages, and hl7_encounters, hl7_lab_results,
    hl7_pharmacy_orders; an absent one counts as empty). `message_token` and `source_file_token`:
    the functions that made the de-identified tables' tokens of MSH-10 and of the file name.
    """
    messages = _table(phi, "hl7_messages", _MESSAGE_COLUMNS)
    scores, issues = _score(messages, phi)
    return pa.Table.from_arrays(
        [
            _per_distinct(messages.column("message_control_id"), message_token),
            _per_distinct(messages.column("source_file"), source_file_token),
            messages.column("message_index").cast(pa.int32()).combine_chunks(),
            scores,
            issues,
        ],
        schema=MESSAGE_VALIDATION,
    )


def with_validation(deid_messages: pa.Table, phi: Mapping[str, pa.Table]) -> pa.Table:
    """De-identified `hl7_messages` made from `phi["hl7_messages"]` (row for row, as
    `privacy.hl7_deid` makes it), with its `validation_score` and `validation_issues` filled in."""
    messages = _table(phi, "hl7_messages", _MESSAGE_COLUMNS)
    if messages.num_rows != deid_messages.num_rows:
        raise ValueError(f"{deid_messages.num_rows} de-identified messages for {messages.num_rows} parsed ones")
    scores, issues = _score(messages, phi)
    for name, column in (("validation_score", scores), ("validation_issues", issues)):
        index = deid_messages.schema.get_field_index(name)
        deid_messages = deid_messages.set_column(index, deid_messages.schema.field(index), column)
    return deid_messages


_MESSAGE_COLUMNS = ["message_type", *_MESSAGE_KEY, *dict.fromkeys(c for names in _MESSAGE_ITEMS.values() for c in names)]
# What `str.strip()` removes: a text of only these is blank.
_WHITESPACE = "".join(chr(code) for code in range(0x3001) if chr(code).isspace())


def _score(messages: pa.Table, phi: Mapping[str, pa.Table]) -> tuple[pa.Array, pa.Array]:
    """Each message's score (satisfied / assessed required items) and its failed items."""
    status = _item_status(messages, phi)
    required = _required(messages.column("message_type"))
    assessed = required & ~np.isnan(status)
    failed = assessed & (status == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = (assessed.sum(axis=1) - failed.sum(axis=1)) / assessed.sum(axis=1)
    return pa.array(scores, pa.float64()), _issues(failed)


def _item_status(messages: pa.Table, phi: Mapping[str, pa.Table]) -> np.ndarray:
    """Messages x `_ITEMS`: 1.0 present, 0.0 absent, NaN not assessable (no child row to look in)."""
    has_event = pc.fill_null(pc.match_substring(messages.column("message_type"), "^"), False)
    status = {"MSH-9": _numpy(has_event)}
    for item, columns in _MESSAGE_ITEMS.items():
        status[item] = np.logical_or.reduce([_present(messages.column(column)) for column in columns])
    for table, items in _CHILD_ITEMS.items():
        children = _table(phi, table, [*_MESSAGE_KEY, *filter(None, items.values())])
        status.update(_child_status(messages, children, items))
    # Filled item by item, each a contiguous row, and handed out transposed (a view): writing the
    # columns of a messages x items array one by one strides through all of it for each item.
    by_item = np.empty((len(_ITEMS), messages.num_rows))
    for row, item in enumerate(_ITEMS):
        by_item[row] = status[item]
    return by_item.T


def _child_status(messages: pa.Table, children: pa.Table, items: dict[str, str | None]) -> dict:
    """Per message: the segment 1.0 when it has rows, else 0.0; each field 1.0 when every row has it,
    0.0 when one lacks it, NaN without rows."""
    segment = next(item for item, column in items.items() if column is None)
    fields = {item: column for item, column in items.items() if column is not None}
    message_keys, child_keys = _keys(messages, children)
    distinct, child_group = np.unique(child_keys, return_inverse=True)
    place = np.minimum(np.searchsorted(distinct, message_keys), max(len(distinct) - 1, 0))
    has_rows = distinct[place] == message_keys if len(distinct) else np.zeros(len(message_keys), bool)
    status = {segment: has_rows.astype(float)}
    for item, column in fields.items():
        # A message's field is present when no row of it lacks it.
        lacking = np.bincount(child_group.reshape(-1), weights=(~_present(children.column(column))).astype(float), minlength=len(distinct))
        every = (lacking == 0).astype(float)
        status[item] = np.where(has_rows, every[place] if len(distinct) else 0.0, np.nan)
    return status


def _keys(messages: pa.Table, children: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(source_file, message_index) of each message and child row as one integer, with one code
    for each file name across both (a null as a value of its own, as a join on it would pair them)."""
    files = pa.chunked_array([*messages.column("source_file").chunks, *children.column("source_file").chunks], pa.string())
    codes = _numpy(pc.dictionary_encode(files, null_encoding="encode").combine_chunks().indices).astype(np.int64)
    indexes = np.concatenate([
        _numpy(pc.fill_null(table.column("message_index").cast(pa.int64()), -1)) for table in (messages, children)
    ])
    keys = (codes << 33) | (indexes & ((1 << 33) - 1))
    return keys[: messages.num_rows], keys[messages.num_rows :]


def _required(message_types: pa.ChunkedArray) -> np.ndarray:
    """Messages x `_ITEMS`: whether the message's rule requires the item (one rule lookup per distinct type)."""
    encoded = pc.dictionary_encode(message_types, null_encoding="encode").combine_chunks()
    distinct = encoded.dictionary.to_pylist()
    vectors = np.array([[item in rule_for(value) for item in _ITEMS] for value in distinct], dtype=bool)
    return vectors[_numpy(encoded.indices)] if distinct else np.zeros((0, len(_ITEMS)), dtype=bool)


def _issues(failed: np.ndarray) -> pa.Array:
    """Each message's failed items as texts, in `_ITEMS` order; built in Arrow (a list per message
    in Python took 0.2 s for 250,000 messages)."""
    texts = pa.array([issue_text(item) for item in _ITEMS], pa.string())
    _, columns = np.nonzero(failed)  # row by row, each row's columns in order
    offsets = np.zeros(len(failed) + 1, np.int32)
    np.cumsum(failed.sum(axis=1), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), texts.take(pa.array(columns, pa.int64())))


def _present(values: pa.ChunkedArray) -> np.ndarray:
    """Non-null, and for text not blank (as `str.strip()` sees blank)."""
    present = pc.is_valid(values)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        present = pc.and_(present, pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim(values, _WHITESPACE)), 0), False))
    return _numpy(present)


def _numpy(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.to_numpy(zero_copy_only=False)


def _per_distinct(values: pa.ChunkedArray, token: Callable[[str | None], str | None]) -> pa.Array:
    """`token` of each value, called once per distinct value."""
    encoded = pc.dictionary_encode(values, null_encoding="encode").combine_chunks()
    tokens = pa.array([token(value) for value in encoded.dictionary.to_pylist()], pa.string())
    return tokens.take(encoded.indices)


def _table(phi: Mapping[str, pa.Table], name: str, columns: list[str]) -> pa.Table:
    table = phi.get(name)
    if table is None:
        table = phi_tables.TABLES[name].empty_table()
    return table.select(columns)
