"""A columnar reader for well-formed files: every message of a file (or of several) at once in vectorised code, or None to decline.

It gives exactly the tables the general reader gives, or declines. It reads only files whose every
message starts `MSH|^~\\&|`, that decode as UTF-8 with no other charset declared, whose segments
are named by three capitals or digits with no batch envelope, and whose every message the general
reader would accept. The delimiters are ASCII, so they are found as bytes: each value is a byte
range located with sorted delimiter positions (numpy), and each column is gathered into an Arrow
array in one step. The few values holding an escape character are unescaped in Python.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medical_assets.hl7 import datatypes, encoding, er7, tables
from medical_assets.hl7.captures import (
    CAPTURES,
    GIVE_AMOUNTS,
    GIVE_STRINGS,
    IDENTIFIER_COMPONENTS,
    MESSAGE_HEADER_STRINGS,
    OBSERVATION_STRINGS,
    VISIT_STRINGS,
)
from medical_assets.hl7.located_file import HEADER, SEPARATORS, LocatedFile, ValueRequest, split_columns

_DECODABLE_AS_UTF8 = frozenset({None, "utf-8", "ascii"})


def read_tables(data: bytes, source_file: str) -> dict[str, pa.Table] | None:
    """The five tables keyed as `tables.TABLES`, exactly as the general reader gives them; None to decline."""
    if not readable(data):
        return None
    read = _read(data, np.zeros(1, np.int32), [source_file])
    return None if read is None else read[0]


def read_files(files: Sequence[tuple[bytes, str]]) -> list[dict[str, pa.Table]] | None:
    """`read_tables` of each (bytes, source_file), read together in one pass; None to decline them all.
    Each file's tables are slices of `read_batch`'s."""
    batch = read_batch(files)
    if batch is None:
        return None
    tables_read, rows = batch
    bounds = {name: np.concatenate(([0], np.cumsum(counts))) for name, counts in rows.items()}
    return [
        {name: table.slice(bounds[name][index], bounds[name][index + 1] - bounds[name][index]) for name, table in tables_read.items()}
        for index in range(len(files))
    ]


def read_batch(files: Sequence[tuple[bytes, str]]) -> tuple[dict[str, pa.Table], dict[str, np.ndarray]] | None:
    """The tables of several files read together in one pass, and how many rows of each table each
    file has (a file's rows are contiguous, in file order); None to decline them all.

    Each call costs a fixed couple of milliseconds of numpy and Arrow set-up, as much as reading a
    file of a few hundred messages: reading a megabyte of files at once pays it once. Every file
    starts with MSH, so joined by a carriage return (a segment end) no message spans two files.
    """
    if not all(readable(data) for data, _ in files):
        return None
    sizes = np.array([len(data) + 1 for data, _ in files], np.int64)
    if sizes.sum() >= 2**31 - 64:
        return None
    file_starts = np.concatenate(([0], np.cumsum(sizes[:-1]))).astype(np.int32)
    read = _read(b"\r".join(data for data, _ in files), file_starts, [source_file for _, source_file in files])
    if read is None:
        return None
    tables_read, file_of_rows = read
    return tables_read, {name: np.bincount(file_of_rows[name], minlength=len(files)) for name in tables_read}


def _read(
    data: bytes, file_starts: np.ndarray, source_files: list[str]
) -> tuple[dict[str, pa.Table], dict[str, np.ndarray]] | None:
    """The tables of readable files joined in `data` at `file_starts`, and each row's file; None to decline."""
    file = LocatedFile.of(data, file_starts, source_files)
    if file is None:
        return None
    every_message = np.arange(file.message_count)
    declared = file.values({"character_set": ValueRequest("MSH", file.positions("MSH"), 18, 1, every_message)})
    charsets = file.strings(declared["character_set"])
    declared_charsets = charsets.to_pylist()
    codecs = {charset: encoding.codec_for_charset(charset) for charset in set(declared_charsets)}
    if not data.isascii() and not _DECODABLE_AS_UTF8.issuperset(codecs.values()):
        return None
    if file.has_escapes:
        file.message_codecs = [codecs[charset] for charset in declared_charsets]
    rows = _Rows(file)
    requests = rows.requests()
    if not file.has_repetitions:  # PID-3 has a single repetition: its values are read as any other
        requests |= {
            ("PID", column): ValueRequest("PID", rows.segments["PID"], 3, component, every_message)
            for column, component in IDENTIFIER_COMPONENTS.items()
        }
    values = file.values(requests)
    for required in ("message_code", "message_control_id", "hl7_version"):
        start, end = values["MSH", required]
        if not (end > start).all():
            return None  # the general reader makes an error row of this message
    values["MSH", "message_type"] = file.message_types(values["MSH", "message_code"], values["MSH", "trigger_event"])
    identifiers = file.medical_record_identifiers(
        rows.segments["PID"],
        every_message,
        None if file.has_repetitions else {column: values["PID", column] for column in IDENTIFIER_COMPONENTS},
    )
    written_values, observation_values = file.first_repetitions(rows.segments["OBX"], 5, rows.numbers["OBX"])
    strings = file.string_columns(_string_ranges(values, rows, identifiers, observation_values))
    timestamps = file.timestamp_columns(_timestamp_ranges(values, rows))
    messages = _messages_table(file, strings, timestamps, charsets)
    read = {
        "hl7_messages": messages,
        "hl7_lab_results": _lab_results_table(file, rows, strings, timestamps, written_values),
        "hl7_pharmacy_orders": _pharmacy_orders_table(file, rows, strings, timestamps),
        "hl7_encounters": _encounters_table(file, rows, strings, timestamps),
        "hl7_errors": tables.HL7_ERRORS.empty_table(),
    }
    file_of_rows = {
        "hl7_messages": file.file_of_message,
        "hl7_lab_results": file.file_of_message[rows.numbers["OBX"]],
        "hl7_pharmacy_orders": file.file_of_message[rows.numbers["RXE"]],
        "hl7_encounters": file.file_of_message[rows.visited_messages],
        "hl7_errors": np.zeros(0, np.int32),
    }
    return read, file_of_rows


class _Rows:
    """Which segment gives each table row its values: the rows' own segments and those around them."""

    def __init__(self, file: LocatedFile) -> None:
        every_message = np.arange(file.message_count)
        observations = file.positions("OBX")
        orders = file.positions("RXE")
        visits = file.first_in_message("PV1")
        self.visited_messages = np.flatnonzero(visits >= 0)
        self.segments = {
            "MSH": file.positions("MSH"),
            "PID": file.first_in_message("PID"),
            "OBX": observations,
            "OBR": file.last_before("OBR", observations),
            "RXE": orders,
            "ORC": file.last_before("ORC", orders),
            "RXR": file.first_after("RXR", orders),
            "TQ1": file.first_after("TQ1", orders),
            "PV1": visits[self.visited_messages],
            "EVN": file.first_in_message("EVN")[self.visited_messages],
        }
        observation_messages = file.message_numbers[observations]
        order_messages = file.message_numbers[orders]
        self.numbers = {
            "MSH": every_message,
            "PID": every_message,
            "OBX": observation_messages,
            "OBR": observation_messages,
            "RXE": order_messages,
            "ORC": order_messages,
            "RXR": order_messages,
            "TQ1": order_messages,
            "PV1": self.visited_messages,
            "EVN": self.visited_messages,
        }

    def requests(self) -> dict[tuple[str, str], ValueRequest]:
        return {
            (segment, column): ValueRequest(segment, self.segments[segment], field, component, self.numbers[segment])
            for segment, captures in CAPTURES.items()
            for column, field, component in captures
        }


def readable(data: bytes) -> bool:
    """Whether the file starts with the usual MSH, has no NUL byte, decodes as UTF-8 and fits int32 positions."""
    if not data.startswith(HEADER) or b"\x00" in data or len(data) >= 2**31 - 64:
        return False
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


def _string_ranges(values: dict, rows: _Rows, identifiers: dict, observation_values: tuple) -> dict:
    """The byte ranges of every string column of every table, keyed (table, column)."""
    ranges = {("hl7_messages", column): values["MSH", column] for column in MESSAGE_HEADER_STRINGS}
    # Rows of the other tables repeat their message's control ID and type.
    for table, numbers in (
        ("hl7_lab_results", rows.numbers["OBX"]),
        ("hl7_pharmacy_orders", rows.numbers["RXE"]),
        ("hl7_encounters", rows.visited_messages),
    ):
        for column in ("message_control_id", "message_type"):
            starts, ends = values["MSH", column]
            ranges[(table, column)] = (starts[numbers], ends[numbers])
    ranges |= {("hl7_messages", column): values["PID", column] for column, _, _ in CAPTURES["PID"]}
    ranges |= {("hl7_messages", column): identifier for column, identifier in identifiers.items()}
    ranges |= {("hl7_lab_results", column): values["OBR", column] for column, _, _ in CAPTURES["OBR"]}
    ranges |= {("hl7_lab_results", column): values["OBX", column] for column in OBSERVATION_STRINGS}
    ranges[("hl7_lab_results", "value")] = observation_values
    ranges |= {("hl7_pharmacy_orders", column): values["ORC", column] for column, _, _ in CAPTURES["ORC"]}
    ranges |= {("hl7_pharmacy_orders", column): values["RXE", column] for column in GIVE_STRINGS + GIVE_AMOUNTS}
    ranges[("hl7_pharmacy_orders", "route")] = values["RXR", "route"]
    ranges[("hl7_pharmacy_orders", "frequency")] = _timed(values, rows, "frequency", "interval")
    # EVN-1, else MSH-9.2.
    trigger_starts, trigger_ends = (part[rows.visited_messages] for part in values["MSH", "trigger_event"])
    event_starts, event_ends = values["EVN", "event_type"]
    recorded = event_ends > event_starts
    ranges[("hl7_encounters", "event_type")] = (
        np.where(recorded, event_starts, trigger_starts),
        np.where(recorded, event_ends, trigger_ends),
    )
    ranges |= {("hl7_encounters", column): values["PV1", column] for column in VISIT_STRINGS}
    return ranges


def _timestamp_ranges(values: dict, rows: _Rows) -> dict:
    """The byte ranges of every timestamp column of every table, keyed (table, column)."""
    return {
        ("hl7_messages", "message_datetime"): values["MSH", "message_datetime"],
        ("hl7_lab_results", "observation_datetime"): values["OBX", "observation_datetime"],
        ("hl7_pharmacy_orders", "start_datetime"): _timed(values, rows, "start", "start"),
        ("hl7_pharmacy_orders", "end_datetime"): _timed(values, rows, "end", "end"),
        ("hl7_encounters", "event_datetime"): values["EVN", "event_datetime"],
        ("hl7_encounters", "admit_datetime"): values["PV1", "admit_datetime"],
        ("hl7_encounters", "discharge_datetime"): values["PV1", "discharge_datetime"],
    }


def _timed(values: dict, rows: _Rows, timing_column: str, give_column: str) -> tuple[np.ndarray, np.ndarray]:
    """TQ1's value when a TQ1 follows the RXE (before the next RXE), else RXE-1's."""
    with_timing = rows.segments["TQ1"] >= 0
    return tuple(
        np.where(with_timing, timing, give)
        for timing, give in zip(values["TQ1", timing_column], values["RXE", give_column])
    )


def _messages_table(file: LocatedFile, strings: dict, timestamps: dict, charsets: pa.StringArray) -> pa.Table:
    columns = _of_table("hl7_messages", strings) | _of_table("hl7_messages", timestamps)
    columns |= {
        "character_set": charsets,
        "segment_count": pa.array(np.bincount(file.message_numbers, minlength=file.message_count).astype(np.int32)),
    }
    columns |= _message_columns(file, np.arange(file.message_count))
    return _table(tables.HL7_MESSAGES, columns)


def _lab_results_table(file: LocatedFile, rows: _Rows, strings: dict, timestamps: dict, written_values: tuple) -> pa.Table:
    numbers = rows.numbers["OBX"]
    columns = _of_table("hl7_lab_results", strings) | _of_table("hl7_lab_results", timestamps)
    columns |= _message_columns(file, numbers)
    columns["numeric_value"] = _numeric_values(file, written_values, columns["value"], columns["value_type"], numbers)
    return _table(tables.HL7_LAB_RESULTS, columns)


def _pharmacy_orders_table(file: LocatedFile, rows: _Rows, strings: dict, timestamps: dict) -> pa.Table:
    columns = _of_table("hl7_pharmacy_orders", strings) | _of_table("hl7_pharmacy_orders", timestamps)
    columns |= _message_columns(file, rows.numbers["RXE"])
    columns |= _numbers({name: columns[name] for name in GIVE_AMOUNTS})
    return _table(tables.HL7_PHARMACY_ORDERS, columns)


def _encounters_table(file: LocatedFile, rows: _Rows, strings: dict, timestamps: dict) -> pa.Table:
    columns = _of_table("hl7_encounters", strings) | _of_table("hl7_encounters", timestamps)
    columns |= _message_columns(file, rows.visited_messages)
    return _table(tables.HL7_ENCOUNTERS, columns)


def _of_table(table: str, columns: dict) -> dict[str, pa.Array]:
    return {column: array for (name, column), array in columns.items() if name == table}


def _message_columns(file: LocatedFile, numbers: np.ndarray) -> dict[str, pa.Array]:
    """The columns a row takes from where its message is: its file, and the message's index in that file."""
    if len(file.source_files) == 1:
        return {
            "source_file": pa.repeat(pa.scalar(file.source_files[0], pa.string()), len(numbers)),
            "message_index": pa.array(numbers.astype(np.int32)),
        }
    files = file.file_of_message[numbers]
    return {
        "source_file": pa.array(file.source_files, pa.string()).take(files),
        "message_index": pa.array((numbers - file.first_messages[files]).astype(np.int32)),
    }


def _numeric_values(
    file: LocatedFile,
    written: tuple[np.ndarray, np.ndarray],
    values: pa.StringArray,
    value_types: pa.StringArray,
    numbers: np.ndarray,
) -> pa.DoubleArray:
    """numeric_value: OBX-5 as a number when OBX-2 is NM or SN, as datatypes.parse_numeric_value reads it."""
    numeric = pc.or_(pc.equal(value_types, "NM"), pc.equal(value_types, "SN"))
    candidates = pc.if_else(numeric, values, pa.scalar(None, pa.string()))
    starts, ends = written
    return _parsed_numbers(
        candidates,
        lambda row: datatypes.parse_numeric_value(
            er7.whole_components(file.text(starts[row], ends[row]), SEPARATORS, file.codec(numbers[row]))
        ),
    )


def _numbers(columns: dict[str, pa.StringArray]) -> dict[str, pa.DoubleArray]:
    """Amounts as datatypes.parse_number reads them, several columns at once."""
    values = pa.concat_arrays(list(columns.values()))
    result = _parsed_numbers(values, lambda row: datatypes.parse_number(values[row].as_py()))
    return split_columns(result, {name: len(column) for name, column in columns.items()})


def _parsed_numbers(values: pa.StringArray, read_in_python) -> pa.DoubleArray:
    """Numbers cast in C++ when every value parses there, as float() would read them; else each read in Python.

    Arrow's cast and float() both round correctly and read the same decimal and exponent forms;
    what float() reads beyond them (whitespace, other digits, "1_000") makes the cast fail.
    """
    try:
        numbers = pc.cast(values, pa.float64())
    except pa.ArrowInvalid:
        rows = np.flatnonzero(values.is_valid().to_numpy(zero_copy_only=False))
        computed = pa.array([read_in_python(row) for row in rows], pa.float64())
        return _replaced(pa.nulls(len(values), pa.float64()), rows, computed)
    # Both read "inf" and "nan", which are not HL7 numbers.
    return pc.if_else(pc.is_finite(numbers), numbers, pa.scalar(None, pa.float64()))


def _replaced(values: pa.Array, rows: np.ndarray, replacements: pa.Array) -> pa.Array:
    mask = np.zeros(len(values), bool)
    mask[rows] = True
    return pc.replace_with_mask(values, pa.array(mask), replacements)


def _table(schema: pa.Schema, columns: dict[str, pa.Array]) -> pa.Table:
    return pa.Table.from_arrays([columns[field.name] for field in schema], schema=schema)
