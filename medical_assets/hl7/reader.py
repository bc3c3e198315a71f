"""One HL7 v2 file's bytes into the PHI zone's Arrow tables; a message that cannot be read becomes an error row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from medical_assets.hl7 import er7, fastpath, message_rows, tables

_BATCH_ROWS = 1024
# Input bytes the fast path reads in one call: enough to spread its fixed cost per call, few
# enough to stay in the CPU cache (measured on the tutorial corpus: 1 MiB beat 256 KiB to 4 MiB by 10-25%).
BATCH_BYTES = 1 << 20
_ROW_TYPES = {schema: pa.struct(list(schema)) for schema in tables.TABLES.values()}


@dataclass(frozen=True)
class ParsedHL7File:
    """The five tables one file yields; their schemas are those of `tables`, even when empty."""

    messages: pa.Table  # schema tables.HL7_MESSAGES
    lab_results: pa.Table  # schema tables.HL7_LAB_RESULTS
    pharmacy_orders: pa.Table  # schema tables.HL7_PHARMACY_ORDERS
    encounters: pa.Table  # schema tables.HL7_ENCOUNTERS
    errors: pa.Table  # schema tables.HL7_ERRORS

    def tables(self) -> dict[str, pa.Table]:
        """The tables keyed by their names in `tables.TABLES`, in its order."""
        return {
            "hl7_messages": self.messages,
            "hl7_lab_results": self.lab_results,
            "hl7_pharmacy_orders": self.pharmacy_orders,
            "hl7_encounters": self.encounters,
            "hl7_errors": self.errors,
        }


def parse_hl7_file(data: bytes, source_file: str) -> ParsedHL7File:
    """Every message of the file as a row of `messages` (its OBX, RXE and PV1 as rows of the others) or of `errors`.

    Nothing is lost: each message index appears in exactly one of `messages` and `errors`. Content
    before the first MSH is not a message, so its error row has a null message_index and the messages
    keep their indices; a file that is empty or not HL7 at all is one error row, message_index null.
    A file the columnar fast path can read exactly as `parse_general` would is read by it.
    """
    try:
        fast = fastpath.read_tables(data, source_file)
    except Exception:  # a fast-path bug must never cost a file: the general path reads it instead
        fast = None
    if fast is not None:
        return ParsedHL7File(*fast.values())
    return parse_general(data, source_file)


def parse_hl7_files(files: Sequence[tuple[bytes, str]]) -> list[ParsedHL7File]:
    """`parse_hl7_file` of each (bytes, source_file), in order; faster than one call per file."""
    return [parsed for batch in parse_hl7_batches(files) for parsed in batch.files()]


@dataclass(frozen=True)
class ParsedBatch:
    """Consecutive files read together: each table holds their rows in file order, and
    `rows[name][i]` is how many of them are the i-th file's. Tables keyed as `ParsedHL7File.tables`."""

    source_files: list[str]
    tables: dict[str, pa.Table]
    rows: dict[str, np.ndarray]

    def files(self) -> list[ParsedHL7File]:
        """Each file's tables (slices of the batch's)."""
        bounds = {name: np.concatenate(([0], np.cumsum(counts))).tolist() for name, counts in self.rows.items()}

        def of_file(i: int, name: str) -> pa.Table:
            return self.tables[name].slice(bounds[name][i], bounds[name][i + 1] - bounds[name][i])

        return [
            ParsedHL7File(
                messages=of_file(i, "hl7_messages"), lab_results=of_file(i, "hl7_lab_results"),
                pharmacy_orders=of_file(i, "hl7_pharmacy_orders"), encounters=of_file(i, "hl7_encounters"),
                errors=of_file(i, "hl7_errors"),
            )
            for i in range(len(self.source_files))
        ]


def parse_hl7_batches(files: Sequence[tuple[bytes, str]]) -> list[ParsedBatch]:
    """`parse_hl7_files`, with the files' tables left as read: a batch's tables are one piece each.

    Consecutive files the fast path can read are read together, about BATCH_BYTES at a time, which
    spreads its fixed cost per call over many files; a batch it declines is read file by file, so
    every file gets exactly the tables `parse_hl7_file` gives it. The batches keep the files' order.
    """
    batches: list[ParsedBatch] = []
    batch: list[int] = []
    batch_bytes = 0
    for index, (data, source_file) in enumerate(files):
        if not fastpath.readable(data):
            batches += _parse_batch(files, batch)
            batch, batch_bytes = [], 0
            batches.append(_one_file(parse_general(data, source_file), source_file))
            continue
        batch.append(index)
        batch_bytes += len(data)
        if batch_bytes >= BATCH_BYTES:
            batches += _parse_batch(files, batch)
            batch, batch_bytes = [], 0
    return batches + _parse_batch(files, batch)


def _parse_batch(files: Sequence[tuple[bytes, str]], batch: list[int]) -> list[ParsedBatch]:
    try:
        fast = fastpath.read_batch([files[index] for index in batch]) if len(batch) > 1 else None
    except Exception:  # as in parse_hl7_file: each file is read again on its own
        fast = None
    if fast is None:
        return [_one_file(parse_hl7_file(*files[index]), files[index][1]) for index in batch]
    tables_read, rows = fast
    return [ParsedBatch([files[index][1] for index in batch], tables_read, rows)]


def _one_file(parsed: ParsedHL7File, source_file: str) -> ParsedBatch:
    tables_read = parsed.tables()
    return ParsedBatch([source_file], tables_read, {name: np.array([table.num_rows]) for name, table in tables_read.items()})


def parse_general(data: bytes, source_file: str) -> ParsedHL7File:
    """`parse_hl7_file` message by message in Python: any framing, charset and damage; the fast path's reference."""
    problem = file_problem(data)
    if problem:
        return _file_error(source_file, problem)
    body = data.rstrip(b"\x00")
    split = er7.split_messages(body)
    if not split.messages:
        return _file_error(source_file, _no_message_reason(body, split))
    messages = _TableBuilder(tables.HL7_MESSAGES)
    lab_results = _TableBuilder(tables.HL7_LAB_RESULTS)
    pharmacy_orders = _TableBuilder(tables.HL7_PHARMACY_ORDERS)
    encounters = _TableBuilder(tables.HL7_ENCOUNTERS)
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
            message_row = message_rows.message_row(message, source_file)
            names = message.names
            message_lab_rows = message_rows.lab_rows(message, message_row[0], source_file) if "OBX" in names else ()
            message_pharmacy_rows = message_rows.pharmacy_rows(message, message_row, source_file) if "RXE" in names else ()
            encounter_row = message_rows.encounter_row(message, message_row, source_file) if "PV1" in names else None
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
            if message_pharmacy_rows:
                pharmacy_orders.extend(message_pharmacy_rows)
            if encounter_row is not None:
                encounters.append(encounter_row)
    return ParsedHL7File(
        messages.table(), lab_results.table(), pharmacy_orders.table(), encounters.table(), errors.table()
    )


def file_problem(data: bytes) -> str | None:
    """Why a whole file cannot be HL7 (empty, binary), or None; NUL padding at the end is tolerated."""
    if not data:
        return "file is empty"
    if b"\x00" in data.rstrip(b"\x00") or not data.strip(b"\x00"):
        return "file does not look like HL7: it contains NUL bytes, so it is binary"
    return None


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
        _TableBuilder(tables.HL7_MESSAGES).table(),
        _TableBuilder(tables.HL7_LAB_RESULTS).table(),
        _TableBuilder(tables.HL7_PHARMACY_ORDERS).table(),
        _TableBuilder(tables.HL7_ENCOUNTERS).table(),
        errors.table(),
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
