"""One HL7 v2 file's bytes into the PHI zone's Arrow tables; a message that cannot be read becomes an error row."""

from __future__ import annotations

import math
from dataclasses import dataclass
from operator import itemgetter

import pyarrow as pa

from medical_assets.hl7 import er7, tables

_NUMERIC_VALUE_TYPES = frozenset({"NM", "SN"})
# SN is <comparator> ^ <num1> ^ <separator/suffix> ^ <num2>; with no comparator or "=" and nothing
# after num1 it is a plain number.
_PLAIN_COMPARATORS = frozenset({"", "="})
# Fields read as component 1 only, fetched together in one C call.
_MSH_FIRST_COMPONENTS = itemgetter(3, 4, 5, 6, 7, 10, 11, 12)
_PID_FIRST_COMPONENTS = itemgetter(7, 8, 13, 18, 19)
_OBR_FIRST_COMPONENTS = itemgetter(2, 3, 4)
_OBX_FIRST_COMPONENTS = itemgetter(1, 2, 6, 7, 8, 11, 14)
# Segments shorter than this many elements are padded with empty fields, so the getters never miss.
_MSH_WIDTH = 13
_PID_WIDTH = 20
_OBR_WIDTH = 5
_OBX_WIDTH = 15
_PADDING = ["", "", "", ""]
_NO_PATIENT = (None,) * 14
_BATCH_ROWS = 1024
_ROW_TYPES = {schema: pa.struct(list(schema)) for schema in tables.TABLES.values()}


@dataclass(frozen=True)
class ParsedHL7File:
    """The three tables one file yields; their schemas are those of `tables`, even when empty."""

    messages: pa.Table  # schema tables.HL7_MESSAGES
    lab_results: pa.Table  # schema tables.HL7_LAB_RESULTS
    errors: pa.Table  # schema tables.HL7_ERRORS


def parse_hl7_file(data: bytes, source_file: str) -> ParsedHL7File:
    """Every message of the file as a row of `messages` (its OBX as rows of `lab_results`) or of `errors`.

    Nothing is lost: each message index appears in exactly one of `messages` and `errors`. Content
    before the first MSH is not a message, so its error row has a null message_index and the messages
    keep their indices; a file that is empty or not HL7 at all is one error row, message_index null.
    """
    problem = file_problem(data)
    if problem:
        return _file_error(source_file, problem)
    body = data.rstrip(b"\x00")
    split = er7.split_messages(body)
    if not split.messages:
        return _file_error(source_file, _no_message_reason(body, split))
    messages = _TableBuilder(tables.HL7_MESSAGES)
    lab_results = _TableBuilder(tables.HL7_LAB_RESULTS)
    errors = _TableBuilder(tables.HL7_ERRORS)
    if split.leading_bytes:
        errors.append(
            (
                source_file,
                None,
                split.leading_offset,
                f"{split.leading_bytes} bytes before the first MSH segment are not part of any message",
            )
        )
    for raw in split.messages:
        try:
            message = er7.parse_message(raw)
            message_row = _message_row(message, source_file)
            message_lab_rows = _lab_rows(message, message_row[0], source_file) if "OBX" in message.names else ()
        except er7.ER7Error as error:
            errors.append((source_file, raw.index, raw.byte_offset, str(error)))
        except Exception as error:  # a bug in one message must not cost the file's other messages
            errors.append(
                (
                    source_file,
                    raw.index,
                    raw.byte_offset,
                    f"unexpected {type(error).__name__} while reading the message: a parser bug, "
                    "please report it with the file name and message index",
                )
            )
        else:
            messages.append(message_row)
            if message_lab_rows:
                lab_results.extend(message_lab_rows)
    return ParsedHL7File(messages.table(), lab_results.table(), errors.table())


def file_problem(data: bytes) -> str | None:
    """Why a whole file cannot be HL7 (empty, binary), or None; NUL padding at the end is tolerated."""
    if not data:
        return "file is empty"
    if b"\x00" in data.rstrip(b"\x00") or not data.strip(b"\x00"):
        return "file does not look like HL7: it contains NUL bytes, so it is binary"
    return None


def _message_row(message: er7.Message, source_file: str) -> tuple:
    """The message's row of hl7_messages; ER7Error when its MSH lacks MSH-9, MSH-10 or MSH-12."""
    separators = message.separators
    codec = message.codec
    only_components = message.only_components
    header = message.fields[0]
    last = len(header) - 1  # header[n] is MSH-n
    if last < 10:
        raise er7.ER7Error(
            f"MSH segment is truncated after MSH-{last}: "
            "MSH-9 (message type) and MSH-10 (message control ID) are required"
        )
    if last < _MSH_WIDTH - 1:
        header = header + [""] * (_MSH_WIDTH - 1 - last)
    (
        sending_application,
        sending_facility,
        receiving_application,
        receiving_facility,
        sent,
        control_id,
        processing_id,
        version,
    ) = er7.first_components(_MSH_FIRST_COMPONENTS(header), separators, codec, only_components)
    message_type = _components(header[9], separators, codec, only_components)
    if not header[9]:
        raise er7.ER7Error("MSH-9 (message type) is empty")
    if not message_type[0]:
        raise er7.ER7Error("MSH-9.1 (message code) is empty")
    if not control_id:
        raise er7.ER7Error("MSH-10 (message control ID) is empty")
    if not version:
        raise er7.ER7Error("MSH-12 (version ID) is missing")
    names = message.names
    patient = _patient(message.fields[names.index("PID")], message) if "PID" in names else _NO_PATIENT
    return (
        control_id,
        f"{message_type[0]}^{message_type[1]}" if message_type[1] else message_type[0],
        message_type[2] or None,
        er7.parse_datetime(sent, separators.component),
        sending_application or None,
        sending_facility or None,
        receiving_application or None,
        receiving_facility or None,
        processing_id or None,
        version,
        message.charset,
        *patient,
        len(names),
        source_file,
        message.index,
    )


def _patient(fields: list[str], message: er7.Message) -> tuple:
    """PID columns from patient_id to patient_ssn; the identifier is PID-3's MR repetition, else its first."""
    separators = message.separators
    codec = message.codec
    only_components = message.only_components
    if len(fields) < _PID_WIDTH:
        fields = fields + [""] * (_PID_WIDTH - len(fields))
    birth_date, gender, phone, account, ssn = er7.first_components(
        _PID_FIRST_COMPONENTS(fields), separators, codec, only_components
    )
    identifiers = fields[3]
    identifier = _components(identifiers, separators, codec, only_components)
    if not only_components and identifier[4] != "MR" and separators.repetition in identifiers:
        for repetition in range(2, identifiers.count(separators.repetition) + 2):
            candidate = er7.leaf_components(identifiers, separators, codec, repetition) + _PADDING
            if candidate[4] == "MR":
                identifier = candidate
                break
    name = _components(fields[5], separators, codec, only_components)
    address = _components(fields[11], separators, codec, only_components)
    return (
        identifier[0] or None,
        identifier[4] or None,
        name[0] or None,
        name[1] or None,
        name[2] or None,
        birth_date or None,
        gender or None,
        address[0] or None,
        address[2] or None,
        address[3] or None,
        address[4] or None,
        phone or None,
        account or None,
        ssn or None,
    )


def _lab_rows(message: er7.Message, control_id: str, source_file: str) -> list[tuple]:
    """One row per OBX, carrying OBR-2, OBR-3 and OBR-4 of the OBR it follows (None before any OBR)."""
    separators = message.separators
    codec = message.codec
    only_components = message.only_components
    component = separators.component
    index = message.index
    rows = []
    placer = filler = service = None
    for fields in message.fields:
        name = fields[0]
        if name == "OBR":
            if len(fields) < _OBR_WIDTH:
                fields = fields + [""] * (_OBR_WIDTH - len(fields))
            placer, filler, service = er7.first_components(
                _OBR_FIRST_COMPONENTS(fields), separators, codec, only_components
            )
        elif name == "OBX":
            if len(fields) < _OBX_WIDTH:
                fields = fields + [""] * (_OBX_WIDTH - len(fields))
            set_id, value_type, units, reference_range, abnormal_flag, status, observed = er7.first_components(
                _OBX_FIRST_COMPONENTS(fields), separators, codec, only_components
            )
            observation = _components(fields[3], separators, codec, only_components)
            written = fields[5]
            if only_components or not _beyond_components(written, separators):
                components = written.split(component)
                value = written if component == "^" else "^".join(components)
            else:
                components = er7.whole_components(written, separators, codec)
                value = "^".join(components)
            rows.append(
                (
                    control_id,
                    source_file,
                    index,
                    placer or None,
                    filler or None,
                    service or None,
                    set_id or None,
                    value_type or None,
                    observation[0] or None,
                    observation[1] or None,
                    observation[2] or None,
                    value or None,
                    _numeric_value(components) if value_type in _NUMERIC_VALUE_TYPES else None,
                    units or None,
                    reference_range or None,
                    abnormal_flag or None,
                    status or None,
                    er7.parse_datetime(observed, component),
                )
            )
    return rows


def _components(value: str, separators: er7.Separators, codec: str | None, only_components: bool) -> list[str]:
    """A field's first-repetition components, each its first subcomponent, unescaped; at least five items."""
    if not only_components and _beyond_components(value, separators):
        return er7.leaf_components(value, separators, codec) + _PADDING
    return value.split(separators.component) + _PADDING


def _beyond_components(value: str, separators: er7.Separators) -> bool:
    repetition, subcomponent, escape = separators.beyond_components
    return repetition in value or subcomponent in value or escape in value


def _numeric_value(components: list[str]) -> float | None:
    """OBX-5.1 as a number; for an SN written by the standard (`^182`, `=^182`), its num1 component."""
    number = _number(components[0])
    if number is None and len(components) > 1 and components[0] in _PLAIN_COMPARATORS and not any(components[2:]):
        number = _number(components[1])
    return number


def _number(text: str) -> float | None:
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    # float() also reads "nan", "inf" and "1_000", none of which is an HL7 NM.
    return number if math.isfinite(number) and "_" not in text else None


def _no_message_reason(body: bytes, split: er7.SplitFile) -> str:
    if split.leading_bytes == 0 and split.leading_envelope:
        return "file has a batch envelope (FHS/BHS) but no MSH segment"
    if split.leading_bytes == 0:
        return "file has no content other than whitespace, byte-order mark and MLLP framing"
    return f"file does not look like HL7: no line of its {len(body)} bytes starts with MSH"


def _file_error(source_file: str, reason: str) -> ParsedHL7File:
    errors = _TableBuilder(tables.HL7_ERRORS)
    errors.append((source_file, None, 0, reason))
    return ParsedHL7File(
        _TableBuilder(tables.HL7_MESSAGES).table(), _TableBuilder(tables.HL7_LAB_RESULTS).table(), errors.table()
    )


class _TableBuilder:
    """Row tuples in, an Arrow table of one schema out, converted a batch of rows at a time.

    A batch becomes Arrow columns while its strings are still in the CPU cache, in one conversion of
    the tuples as a struct array: no Python-level transposition, one call instead of one per column.
    """

    __slots__ = ("schema", "row_type", "rows", "batches")

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.row_type = _ROW_TYPES[schema]
        self.rows: list[tuple] = []
        self.batches: list[pa.RecordBatch] = []

    def append(self, row: tuple) -> None:
        self.rows.append(row)
        if len(self.rows) >= _BATCH_ROWS:
            self._flush()

    def extend(self, rows: list[tuple]) -> None:
        self.rows.extend(rows)
        if len(self.rows) >= _BATCH_ROWS:
            self._flush()

    def table(self) -> pa.Table:
        self._flush()
        # Also for no batches at all: a hundred times faster than Schema.empty_table().
        return pa.Table.from_batches(self.batches, schema=self.schema)

    def _flush(self) -> None:
        if self.rows:
            self.batches.append(pa.RecordBatch.from_struct_array(pa.array(self.rows, type=self.row_type)))
            self.rows = []
