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
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medical_assets.hl7 import er7, tables

_HEADER = b"MSH|^~\\&|"
_SEPARATORS = er7.read_separators(_HEADER.decode())
_DECODABLE_AS_UTF8 = frozenset({None, "utf-8", "ascii"})

# The values each table takes from a segment: (column, field, component), component being that
# component's first subcomponent in the field's first repetition.
_CAPTURES = {
    "MSH": (
        ("sending_application", 3, 1),
        ("sending_facility", 4, 1),
        ("receiving_application", 5, 1),
        ("receiving_facility", 6, 1),
        ("message_datetime", 7, 1),
        ("message_code", 9, 1),
        ("trigger_event", 9, 2),
        ("message_structure", 9, 3),
        ("message_control_id", 10, 1),
        ("processing_id", 11, 1),
        ("hl7_version", 12, 1),
    ),
    "PID": (
        ("patient_family_name", 5, 1),
        ("patient_given_name", 5, 2),
        ("patient_middle_name", 5, 3),
        ("patient_birth_date", 7, 1),
        ("patient_gender", 8, 1),
        ("patient_street", 11, 1),
        ("patient_city", 11, 3),
        ("patient_state", 11, 4),
        ("patient_zip", 11, 5),
        ("patient_phone", 13, 1),
        ("patient_account_number", 18, 1),
        ("patient_ssn", 19, 1),
    ),
    "OBR": (("placer_order_number", 2, 1), ("filler_order_number", 3, 1), ("universal_service_id", 4, 1)),
    "OBX": (
        ("set_id", 1, 1),
        ("value_type", 2, 1),
        ("observation_code", 3, 1),
        ("observation_name", 3, 2),
        ("coding_system", 3, 3),
        ("units", 6, 1),
        ("reference_range", 7, 1),
        ("abnormal_flag", 8, 1),
        ("result_status", 11, 1),
        ("observation_datetime", 14, 1),
    ),
    "ORC": (("order_control", 1, 1), ("placer_order_number", 2, 1), ("filler_order_number", 3, 1)),
    "RXE": (
        ("interval", 1, 2),
        ("start", 1, 4),
        ("end", 1, 5),
        ("give_code", 2, 1),
        ("give_name", 2, 2),
        ("give_coding_system", 2, 3),
        ("give_amount_minimum", 3, 1),
        ("give_amount_maximum", 4, 1),
        ("give_units", 5, 1),
        ("dosage_form", 6, 1),
        ("dispense_amount", 10, 1),
        ("dispense_units", 11, 1),
    ),
    "RXR": (("route", 1, 1),),
    "TQ1": (("frequency", 3, 1), ("start", 7, 1), ("end", 8, 1)),
    "EVN": (("event_type", 1, 1), ("event_datetime", 2, 1)),
    "PV1": (
        ("patient_class", 2, 1),
        ("point_of_care", 3, 1),
        ("room", 3, 2),
        ("bed", 3, 3),
        ("location_facility", 3, 4),
        ("attending_doctor_id", 7, 1),
        ("attending_doctor_family_name", 7, 2),
        ("attending_doctor_given_name", 7, 3),
        ("hospital_service", 10, 1),
        ("admit_source", 14, 1),
        ("visit_number", 19, 1),
        ("discharge_disposition", 36, 1),
        ("admit_datetime", 44, 1),
        ("discharge_datetime", 45, 1),
    ),
}
# The hl7_messages columns taken from the PID-3 repetition that identifies the patient (MR, else the first).
_IDENTIFIER_COMPONENTS = {"patient_id": 1, "patient_id_issuer": 4, "patient_id_type": 5}
_MESSAGE_HEADER_STRINGS = (
    "message_type",
    "message_control_id",
    "message_structure",
    "sending_application",
    "sending_facility",
    "receiving_application",
    "receiving_facility",
    "processing_id",
    "hl7_version",
)
_GIVE_STRINGS = ("give_code", "give_name", "give_coding_system", "give_units", "dosage_form", "dispense_units")
_GIVE_AMOUNTS = ("give_amount_minimum", "give_amount_maximum", "dispense_amount")
_OBSERVATION_STRINGS = tuple(column for column, _, _ in _CAPTURES["OBX"] if column != "observation_datetime")
_VISIT_STRINGS = tuple(column for column, _, _ in _CAPTURES["PV1"] if not column.endswith("_datetime"))
# The delimiters (kernels.DELIMITERS) are ASCII, so in UTF-8 text they are found as bytes. Line
# feeds and MLLP framing bytes end segments too, as in er7.split_messages.
_SEGMENT_ENDS = b"\r\n\x0b\x1c"
# The highest field and component any capture reads, for the padding of the lookups.
_MOST_FIELDS = max(field for captures in _CAPTURES.values() for _, field, _ in captures)
_MOST_COMPONENTS = max(component for captures in _CAPTURES.values() for _, _, component in captures)
_ENVELOPE_CODES = frozenset(int.from_bytes(name.encode(), "big") for name in er7.ENVELOPE_SEGMENTS)
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int32)  # February: 29 in leap years
_DIGITS_AND_CAPITALS = np.zeros(256, bool)
_DIGITS_AND_CAPITALS[list(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")] = True


def _kernels():
    """The compiled loops, imported on first use: numba costs a process 0.3 s and 100 MiB (its LLVM),
    which only the processes that parse HL7 (the Ray workers) should pay, not every importer of this package."""
    from medical_assets.hl7 import kernels

    return kernels


def read_tables(data: bytes, source_file: str) -> dict[str, pa.Table] | None:
    """The five tables keyed as `tables.TABLES`, exactly as the general reader gives them; None to decline."""
    if not readable(data):
        return None
    read = _read(data, np.zeros(1, np.int32), [source_file])
    return None if read is None else read[0]


def read_files(files: Sequence[tuple[bytes, str]]) -> list[dict[str, pa.Table]] | None:
    """`read_tables` of each (bytes, source_file), read together in one pass; None to decline them all.

    Each call costs a fixed couple of milliseconds of numpy and Arrow set-up, as much as reading a
    file of a few hundred messages: reading a megabyte of files at once pays it once. Every file
    starts with MSH, so joined by a carriage return (a segment end) no message spans two files. Each
    file's tables are slices of the batch's: the rows of one file are contiguous, in file order.
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
    bounds = {name: np.searchsorted(file_of_rows[name], np.arange(len(files) + 1)) for name in tables_read}
    return [
        {name: table.slice(bounds[name][index], bounds[name][index + 1] - bounds[name][index]) for name, table in tables_read.items()}
        for index in range(len(files))
    ]


def _read(
    data: bytes, file_starts: np.ndarray, source_files: list[str]
) -> tuple[dict[str, pa.Table], dict[str, np.ndarray]] | None:
    """The tables of readable files joined in `data` at `file_starts`, and each row's file; None to decline."""
    file = _File.of(data, file_starts, source_files)
    if file is None:
        return None
    every_message = np.arange(file.message_count)
    declared = file.values({"character_set": _Request("MSH", file.positions("MSH"), 18, 1, every_message)})
    charsets = file.strings(declared["character_set"])
    declared_charsets = charsets.to_pylist()
    codecs = {charset: er7.codec_for_charset(charset) for charset in set(declared_charsets)}
    if not data.isascii() and not _DECODABLE_AS_UTF8.issuperset(codecs.values()):
        return None
    if file.has_escapes:
        file.message_codecs = [codecs[charset] for charset in declared_charsets]
    rows = _Rows(file)
    requests = rows.requests()
    if not file.has_repetitions:  # PID-3 has a single repetition: its values are read as any other
        requests |= {
            ("PID", column): _Request("PID", rows.segments["PID"], 3, component, every_message)
            for column, component in _IDENTIFIER_COMPONENTS.items()
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
        None if file.has_repetitions else {column: values["PID", column] for column in _IDENTIFIER_COMPONENTS},
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


class _Request(NamedTuple):
    """A value wanted from each of some segments: SEG-field, component `component`, for rows of some messages."""

    segment: str
    segments: np.ndarray  # positions among the file's segments; -1 where a row has no such segment
    field: int
    component: int
    message_numbers: np.ndarray  # each row's message, for its codec


class _Rows:
    """Which segment gives each table row its values: the rows' own segments and those around them."""

    def __init__(self, file: _File) -> None:
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

    def requests(self) -> dict[tuple[str, str], _Request]:
        return {
            (segment, column): _Request(segment, self.segments[segment], field, component, self.numbers[segment])
            for segment, captures in _CAPTURES.items()
            for column, field, component in captures
        }


def readable(data: bytes) -> bool:
    """Whether the file starts with the usual MSH, has no NUL byte, decodes as UTF-8 and fits int32 positions."""
    if not data.startswith(_HEADER) or b"\x00" in data or len(data) >= 2**31 - 64:
        return False
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


class _File:
    """One file's bytes (or several files' joined), its segments and delimiters located, and the escaped values rewritten."""

    @classmethod
    def of(cls, text: bytes, file_starts: np.ndarray, source_files: list[str]) -> _File | None:
        """None when a segment name is not three capitals or digits followed by `|`, or is a batch envelope."""
        buffer = np.frombuffer(text, np.uint8)
        found, carets_before_pipes = _kernels().locate_delimiters(buffer)
        segment_ends = [found[byte] for byte in _SEGMENT_ENDS if len(found[byte])]
        ends = np.sort(np.concatenate(segment_ends)) if len(segment_ends) > 1 else segment_ends[0]
        ends = np.append(ends, np.int32(len(buffer))) if len(segment_ends) else np.array([len(buffer)], np.int32)
        starts = np.concatenate((np.zeros(1, np.int32), ends[:-1] + 1))
        kept = ends > starts
        starts, ends = starts[kept], ends[kept]
        lengths = ends - starts
        if (lengths < 3).any():
            return None
        first, second, third = buffer[starts], buffer[starts + 1], buffer[starts + 2]
        if not (_DIGITS_AND_CAPITALS[first].all() and _DIGITS_AND_CAPITALS[second].all()):
            return None
        if not _DIGITS_AND_CAPITALS[third].all() or (buffer[starts[lengths > 3] + 3] != ord("|")).any():
            return None
        codes = (first.astype(np.int32) << 16) | (second.astype(np.int32) << 8) | third
        if any((codes == envelope).any() for envelope in _ENVELOPE_CODES):
            return None
        # Every message starts where a segment starts with MSH (er7.split_messages); each must use the usual separators.
        headers = starts[codes == _code("MSH")]
        if (ends[codes == _code("MSH")] - headers < len(_HEADER)).any():
            return None
        header_bytes = buffer[np.minimum(headers[:, None] + np.arange(len(_HEADER)), len(buffer) - 1)]
        if not (header_bytes == np.frombuffer(_HEADER, np.uint8)).all():
            return None
        return cls(buffer, starts, ends, codes, found, carets_before_pipes, file_starts, source_files)

    def __init__(
        self,
        buffer: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        codes: np.ndarray,
        found: dict[int, np.ndarray],
        carets_before_pipes: np.ndarray,
        file_starts: np.ndarray,
        source_files: list[str],
    ) -> None:
        self.buffer = buffer
        self.starts = starts
        self.ends = ends
        self.codes = codes
        self.message_numbers = np.cumsum(codes == _code("MSH")) - 1
        self.message_count = int(self.message_numbers[-1]) + 1
        # Each file starts with MSH, so with a message: the first message of each, and each message's file.
        self.source_files = source_files
        self.first_messages = self.message_numbers[np.searchsorted(starts, file_starts)]
        self.file_of_message = np.repeat(
            np.arange(len(source_files), dtype=np.int32), np.diff(np.append(self.first_messages, self.message_count))
        )
        # Each delimiter's positions, ending with one past the end so that every search finds one.
        end = np.array([len(buffer)], np.int32)
        self.carets = np.append(found[ord("^")], end)
        self.tildes = np.append(found[ord("~")], end)
        self.ampersands = np.append(found[ord("&")], end)
        self.backslashes = np.append(found[ord("\\")], end)
        # MSH-2 holds one of each per message; when there is no other, no value can hold one.
        self.has_repetitions = len(self.tildes) - 1 > self.message_count
        self.has_subcomponents = len(self.ampersands) - 1 > self.message_count
        self.has_escapes = len(self.backslashes) - 1 > self.message_count
        # For `values`, lookups that need no bounds checks: pipes and carets padded past the end (and
        # carets before the start), carets counted before each pipe, and a last, empty segment that
        # a position of -1 (no segment) selects.
        pipes = found[ord("|")]
        padding = np.full(_MOST_FIELDS + 2, len(buffer), np.int32)
        self._pipes = np.concatenate((pipes, padding))
        self._carets_before_pipes = np.concatenate(
            (carets_before_pipes, np.full(_MOST_FIELDS + 2, len(self.carets) - 1, np.int32))
        )
        self._carets = np.concatenate(
            (np.full(1, -1, np.int32), self.carets[:-1], np.full(_MOST_COMPONENTS + 2, len(buffer), np.int32))
        )
        self._first_pipe = np.append(np.searchsorted(pipes, starts), 0)
        self._segment_ends = np.append(ends, 0)
        self.message_codecs: list[str | None] = []
        self._extra = bytearray()  # unescaped values, addressed after the end of the file's bytes
        self._combined: np.ndarray | None = buffer
        self._positions: dict[str, np.ndarray] = {}

    def positions(self, name: str) -> np.ndarray:
        """Where the segments called `name` are among all segments, in file order."""
        if name not in self._positions:
            self._positions[name] = np.flatnonzero(self.codes == _code(name))
        return self._positions[name]

    def first_in_message(self, name: str) -> np.ndarray:
        """For each message, the position of its first `name` segment, else -1."""
        found = self.positions(name)
        first = np.full(self.message_count, -1)
        numbers = self.message_numbers[found]
        # Positions are in file order, so a message's first is where the message number changes.
        leading = np.ones(len(found), bool)
        leading[1:] = numbers[1:] != numbers[:-1]
        first[numbers[leading]] = found[leading]
        return first

    def last_before(self, name: str, positions: np.ndarray) -> np.ndarray:
        """For each segment position, the position of the last `name` segment before it in its message, else -1."""
        found = np.append(-1, self.positions(name))  # -1 first: every position has one before it
        last = found[np.searchsorted(found, positions) - 1]
        same = last >= 0
        same[same] = self.message_numbers[last[same]] == self.message_numbers[positions[same]]
        return np.where(same, last, -1)

    def first_after(self, name: str, positions: np.ndarray) -> np.ndarray:
        """For each segment position, the position of the first `name` segment after it and before the next one."""
        found = self.positions(name)
        first = np.full(len(positions), -1)
        if not len(found) or not len(positions):
            return first
        owner = np.searchsorted(positions, found) - 1  # which of `positions` each `name` segment follows
        kept = owner >= 0
        kept[kept] = self.message_numbers[positions[owner[kept]]] == self.message_numbers[found[kept]]
        owners, ordinals = np.unique(owner[kept], return_index=True)
        first[owners] = found[kept][ordinals]
        return first

    def values(self, requests: dict) -> dict:
        """The byte range of each requested value in each of its segments (empty where the segment is missing).

        A value is a component's first subcomponent in the field's first repetition, unescaped: ranges
        holding an escape character are rewritten to point at the unescaped text. Every request is
        answered by the same few vectorised steps, whatever their number.
        """
        # Values of a segment the files lack are empty, at no cost.
        absent = {key for key, request in requests.items() if not len(self.positions(request.segment))}
        answered = {key: (np.zeros(len(requests[key].segments), np.int32),) * 2 for key in absent}
        keys = [key for key in requests if key not in absent]
        sizes = [len(requests[key].segments) for key in keys]
        segments = np.concatenate([requests[key].segments for key in keys])
        # Element e of a segment split on "|" is SEG-e, but MSH-n is element n-1 (MSH-1 is the separator).
        elements = np.repeat(np.array([requests[key].field - (requests[key].segment == "MSH") for key in keys], np.int32), sizes)
        components = np.repeat(np.array([requests[key].component for key in keys], np.int32), sizes)
        starts, ends = _kernels().value_ranges(
            segments, elements, components, self._first_pipe, self._pipes, self._segment_ends,
            self._carets_before_pipes, self._carets, self.tildes, self.ampersands,
            self.has_repetitions, self.has_subcomponents,
        )
        if self.has_escapes:
            escaped = np.flatnonzero(self.backslashes[np.searchsorted(self.backslashes, starts)] < ends)
            if len(escaped):
                numbers = np.concatenate([requests[key].message_numbers for key in keys])
                plain = [
                    er7.unescape(self.text(starts[row], ends[row]), _SEPARATORS, self.codec(numbers[row]))
                    for row in escaped
                ]
                starts, ends = self._rewritten((starts, ends), escaped, plain)
        bounds = np.cumsum([0] + sizes)
        answered |= {key: (starts[bounds[i] : bounds[i + 1]], ends[bounds[i] : bounds[i + 1]]) for i, key in enumerate(keys)}
        return {key: answered[key] for key in requests}

    def message_types(
        self, codes: tuple[np.ndarray, np.ndarray], triggers: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """MSH-9.1 and MSH-9.2 joined by ^ (MSH-9.1 alone without a trigger event): as written when they are."""
        (code_starts, code_ends), (trigger_starts, trigger_ends) = codes, triggers
        with_trigger = trigger_ends > trigger_starts
        starts, ends = code_starts, np.where(with_trigger, trigger_ends, code_ends)
        # Apart in the file (a subcomponent between them) or unescaped elsewhere: joined here.
        as_written = (code_ends + 1 == trigger_starts) & (trigger_ends <= len(self.buffer))
        joined = np.flatnonzero(with_trigger & ~as_written)
        if not len(joined):
            return starts, ends
        texts = [
            f"{self.text(code_starts[row], code_ends[row])}^{self.text(trigger_starts[row], trigger_ends[row])}"
            for row in joined
        ]
        return self._rewritten((starts, ends), joined, texts)

    def codec(self, message_number: int) -> str | None:
        """The codec for \\X..\\ escapes in a message; none while MSH-18 itself is being read."""
        return self.message_codecs[message_number] if self.message_codecs else None

    def first_repetitions(
        self, segments: np.ndarray, field: int, message_numbers: np.ndarray
    ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """A field's first repetition whole, as written and with each component unescaped (joined by ^)."""
        starts, field_ends, _ = self._fields(segments, field)
        ends = np.minimum(field_ends, self.tildes[np.searchsorted(self.tildes, starts)])
        written = (starts, ends)
        if not self.has_escapes:
            return written, written
        rows = np.flatnonzero(self.backslashes[np.searchsorted(self.backslashes, starts)] < ends)
        if not len(rows):
            return written, written
        plain = [
            "^".join(er7.whole_components(self.text(starts[row], ends[row]), _SEPARATORS, self.codec(number)))
            for row, number in zip(rows, message_numbers[rows])
        ]
        return written, self._rewritten(written, rows, plain)

    def medical_record_identifiers(
        self, segments: np.ndarray, message_numbers: np.ndarray, first_repetition: dict | None
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """PID-3.1, PID-3.4 and PID-3.5 of the repetition whose type is MR, else of the first, as the general reader chooses.

        `first_repetition`: those of the first repetition, read already where no field has two.
        """
        if first_repetition is not None and not self.has_escapes:
            return first_repetition
        field_starts, field_ends, _ = self._fields(segments, 3)
        if first_repetition is not None:
            ranges = dict(first_repetition)
        else:
            ranges = self._chosen_identifiers(field_starts, field_ends)
        if self.has_escapes:
            # With an escape anywhere in PID-3, repetitions are compared unescaped: read as the general reader does.
            rows = np.flatnonzero(self.backslashes[np.searchsorted(self.backslashes, field_starts)] < field_ends)
            if len(rows):
                read = [
                    _medical_record_or_first(self.text(field_starts[row], field_ends[row]), self.codec(number))
                    for row, number in zip(rows, message_numbers[rows])
                ]
                for column, component in _IDENTIFIER_COMPONENTS.items():
                    ranges[column] = self._rewritten(ranges[column], rows, [values[component - 1] for values in read])
        return ranges

    def _chosen_identifiers(
        self, field_starts: np.ndarray, field_ends: np.ndarray
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """PID-3.1, PID-3.4 and PID-3.5 of the repetition whose type is MR, else of the first, in each PID-3 range."""
        repetition_count = np.searchsorted(self.tildes, field_ends) - np.searchsorted(self.tildes, field_starts) + 1
        chosen = np.zeros(len(field_starts), int)  # 0-based repetition; 0 unless a later one is MR
        for repetition in range(int(repetition_count.max(initial=1)) - 1, -1, -1):
            starts, ends = self._repetition(field_starts, field_ends, repetition)
            kind_start, kind_end = self._component(starts, ends, 5)
            medical_record = (kind_end - kind_start == 2) & (repetition < repetition_count)
            medical_record[medical_record] = (self.buffer[kind_start[medical_record]] == ord("M")) & (
                self.buffer[kind_start[medical_record] + 1] == ord("R")
            )
            chosen = np.where(medical_record, repetition, chosen)
        starts, ends = self._repetition(field_starts, field_ends, chosen)
        return {column: self._component(starts, ends, component) for column, component in _IDENTIFIER_COMPONENTS.items()}

    def strings(self, ranges: tuple[np.ndarray, np.ndarray]) -> pa.StringArray:
        """The values in `ranges` as one Arrow array; empty values are null, as the general reader's `or None`."""
        starts, ends = ranges
        gathered = _kernels().gather_strings(self._bytes(), starts, ends)
        if gathered is None:  # the caller catches it and reads the file with the general path
            raise OverflowError("the values exceed the 2 GiB an Arrow string array holds")
        offsets, data = gathered
        present = ends > starts
        validity = None if present.all() else pa.py_buffer(np.packbits(present, bitorder="little"))
        return pa.StringArray.from_buffers(len(starts), pa.py_buffer(offsets), pa.py_buffer(data), validity)

    def string_columns(self, columns: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, pa.StringArray]:
        """`strings` of several columns, gathered in one step."""
        return _split(self.strings(_concatenated(columns)), _sizes(columns))

    def timestamp_columns(self, columns: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, pa.TimestampArray]:
        """`timestamps` of several columns, parsed in one step."""
        return _split(self.timestamps(_concatenated(columns)), _sizes(columns))

    def timestamps(self, ranges: tuple[np.ndarray, np.ndarray]) -> pa.TimestampArray:
        """The values as er7.parse_datetime reads them: valid 14-digit times in numpy, any other text in Python."""
        starts, ends = ranges
        result = np.zeros(len(starts), "datetime64[us]")
        valid = np.zeros(len(starts), bool)
        whole = np.flatnonzero(ends - starts == 14)
        if len(whole):
            data = np.concatenate((self._bytes(), np.zeros(14, np.uint8)))
            # The 14 bytes from each start, gathered as one item each; a byte that is no digit exceeds 9.
            digits = np.ndarray((len(data) - 13,), "V14", data, strides=(1,))[starts[whole]]
            digits = digits.view(np.uint8).reshape(len(whole), 14) - np.uint8(ord("0"))
            all_digits = (digits <= 9).all(axis=1)
            digits = digits.astype(np.int32)

            def number(first: int, count: int) -> np.ndarray:
                value = digits[:, first]
                for column in range(first + 1, first + count):
                    value = value * 10 + digits[:, column]
                return value

            year, month, day = number(0, 4), number(4, 2), number(6, 2)
            hour, minute, second = number(8, 2), number(10, 2), number(12, 2)
            leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
            days_in_month = _DAYS_IN_MONTH[np.clip(month, 1, 12)] + (leap & (month == 2))
            ok = all_digits & (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= days_in_month)
            ok &= (hour < 24) & (minute < 60) & (second < 60)
            seconds = (_days_since_epoch(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
            result[whole[ok]] = (seconds[ok] * 1_000_000).astype("datetime64[us]")
            valid[whole[ok]] = True
        rest = np.flatnonzero(~valid & (ends > starts))
        for row in rest:
            moment = er7.parse_datetime(self.text(starts[row], ends[row]))
            if moment is not None:
                result[row] = np.datetime64(moment, "us")
                valid[row] = True
        validity = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
        return pa.TimestampArray.from_buffers(
            pa.timestamp("us"), len(starts), [validity, pa.py_buffer(result.view(np.int64))]
        )

    def text(self, start: int, end: int) -> str:
        return self._bytes()[start:end].tobytes().decode("utf-8")

    def _fields(self, segments: np.ndarray, elements: np.ndarray | int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Byte ranges of element `elements[i]` of `segments[i]` (broadcast), and the pipe before each.

        Ranges are empty when the element is absent or there is no segment (-1).

        A field that is absent starts after its segment's end, so clamping to the end empties it.
        """
        segment_ends = self._segment_ends[segments]
        opening_pipes = self._first_pipe[segments] + (elements - 1)
        starts = np.minimum(self._pipes[opening_pipes] + 1, segment_ends)
        ends = np.minimum(self._pipes[opening_pipes + 1], segment_ends)
        return starts, ends, opening_pipes

    def _repetition(
        self, field_starts: np.ndarray, field_ends: np.ndarray, repetition: np.ndarray | int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Byte range of the 0-based `repetition` of each field (empty when it has fewer)."""
        last = len(self.tildes) - 1
        first_tilde = np.searchsorted(self.tildes, field_starts)
        before = self.tildes[np.minimum(first_tilde + repetition - 1, last)]
        starts = np.where(repetition == 0, field_starts, np.minimum(before + 1, field_ends))
        ends = np.minimum(field_ends, self.tildes[np.minimum(first_tilde + repetition, last)])
        return starts, np.maximum(starts, ends)

    def _component(self, starts: np.ndarray, ends: np.ndarray, component: int) -> tuple[np.ndarray, np.ndarray]:
        """Byte range of a component's first subcomponent within each repetition range."""
        if component > 1:
            caret = self.carets[np.minimum(np.searchsorted(self.carets, starts) + component - 2, len(self.carets) - 1)]
            starts = np.where(caret < ends, caret + 1, ends)
        component_ends = np.minimum(ends, self.carets[np.searchsorted(self.carets, starts)])
        return starts, np.minimum(component_ends, self.ampersands[np.searchsorted(self.ampersands, starts)])

    def _rewritten(
        self, ranges: tuple[np.ndarray, np.ndarray], rows: np.ndarray, values: list[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """`ranges` with `rows` pointing at `values`, stored after the file's bytes."""
        starts, ends = ranges[0].copy(), ranges[1].copy()
        for row, value in zip(rows, values):
            encoded = value.encode("utf-8")
            starts[row] = len(self.buffer) + len(self._extra)
            self._extra += encoded
            ends[row] = starts[row] + len(encoded)
        self._combined = None
        return starts, ends

    def _bytes(self) -> np.ndarray:
        if self._combined is None:
            self._combined = np.concatenate([self.buffer, np.frombuffer(bytes(self._extra), np.uint8)])
        return self._combined


def _concatenated(columns: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([starts for starts, _ in columns.values()]), np.concatenate([ends for _, ends in columns.values()])


def _sizes(columns: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    return {name: len(starts) for name, (starts, _) in columns.items()}


def _split(values: pa.Array, sizes: dict) -> dict:
    """`values` cut back into the columns it was concatenated from, of these sizes."""
    split = {}
    offset = 0
    for name, size in sizes.items():
        split[name] = values.slice(offset, size)
        offset += size
    return split


def _string_ranges(values: dict, rows: _Rows, identifiers: dict, observation_values: tuple) -> dict:
    """The byte ranges of every string column of every table, keyed (table, column)."""
    ranges = {("hl7_messages", column): values["MSH", column] for column in _MESSAGE_HEADER_STRINGS}
    # Rows of the other tables repeat their message's control ID and type.
    for table, numbers in (
        ("hl7_lab_results", rows.numbers["OBX"]),
        ("hl7_pharmacy_orders", rows.numbers["RXE"]),
        ("hl7_encounters", rows.visited_messages),
    ):
        for column in ("message_control_id", "message_type"):
            starts, ends = values["MSH", column]
            ranges[(table, column)] = (starts[numbers], ends[numbers])
    ranges |= {("hl7_messages", column): values["PID", column] for column, _, _ in _CAPTURES["PID"]}
    ranges |= {("hl7_messages", column): identifier for column, identifier in identifiers.items()}
    ranges |= {("hl7_lab_results", column): values["OBR", column] for column, _, _ in _CAPTURES["OBR"]}
    ranges |= {("hl7_lab_results", column): values["OBX", column] for column in _OBSERVATION_STRINGS}
    ranges[("hl7_lab_results", "value")] = observation_values
    ranges |= {("hl7_pharmacy_orders", column): values["ORC", column] for column, _, _ in _CAPTURES["ORC"]}
    ranges |= {("hl7_pharmacy_orders", column): values["RXE", column] for column in _GIVE_STRINGS + _GIVE_AMOUNTS}
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
    ranges |= {("hl7_encounters", column): values["PV1", column] for column in _VISIT_STRINGS}
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


def _messages_table(file: _File, strings: dict, timestamps: dict, charsets: pa.StringArray) -> pa.Table:
    columns = _of_table("hl7_messages", strings) | _of_table("hl7_messages", timestamps)
    columns |= {
        "character_set": charsets,
        "segment_count": pa.array(np.bincount(file.message_numbers, minlength=file.message_count).astype(np.int32)),
    }
    columns |= _message_columns(file, np.arange(file.message_count))
    return _table(tables.HL7_MESSAGES, columns)


def _lab_results_table(file: _File, rows: _Rows, strings: dict, timestamps: dict, written_values: tuple) -> pa.Table:
    numbers = rows.numbers["OBX"]
    columns = _of_table("hl7_lab_results", strings) | _of_table("hl7_lab_results", timestamps)
    columns |= _message_columns(file, numbers)
    columns["numeric_value"] = _numeric_values(file, written_values, columns["value"], columns["value_type"], numbers)
    return _table(tables.HL7_LAB_RESULTS, columns)


def _pharmacy_orders_table(file: _File, rows: _Rows, strings: dict, timestamps: dict) -> pa.Table:
    columns = _of_table("hl7_pharmacy_orders", strings) | _of_table("hl7_pharmacy_orders", timestamps)
    columns |= _message_columns(file, rows.numbers["RXE"])
    columns |= _numbers({name: columns[name] for name in _GIVE_AMOUNTS})
    return _table(tables.HL7_PHARMACY_ORDERS, columns)


def _encounters_table(file: _File, rows: _Rows, strings: dict, timestamps: dict) -> pa.Table:
    columns = _of_table("hl7_encounters", strings) | _of_table("hl7_encounters", timestamps)
    columns |= _message_columns(file, rows.visited_messages)
    return _table(tables.HL7_ENCOUNTERS, columns)


def _of_table(table: str, columns: dict) -> dict[str, pa.Array]:
    return {column: array for (name, column), array in columns.items() if name == table}


def _message_columns(file: _File, numbers: np.ndarray) -> dict[str, pa.Array]:
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


def _medical_record_or_first(identifiers: str, codec: str | None) -> list[str]:
    padding = ["", "", "", "", ""]
    for repetition in range(1, identifiers.count("~") + 2):
        candidate = er7.leaf_components(identifiers, _SEPARATORS, codec, repetition) + padding
        if candidate[4] == "MR":
            return candidate
    return er7.leaf_components(identifiers, _SEPARATORS, codec) + padding


def _numeric_values(
    file: _File,
    written: tuple[np.ndarray, np.ndarray],
    values: pa.StringArray,
    value_types: pa.StringArray,
    numbers: np.ndarray,
) -> pa.DoubleArray:
    """numeric_value: OBX-5 as a number when OBX-2 is NM or SN, as er7.parse_numeric_value reads it."""
    numeric = pc.or_(pc.equal(value_types, "NM"), pc.equal(value_types, "SN"))
    candidates = pc.if_else(numeric, values, pa.scalar(None, pa.string()))
    starts, ends = written
    return _parsed_numbers(
        candidates,
        lambda row: er7.parse_numeric_value(
            er7.whole_components(file.text(starts[row], ends[row]), _SEPARATORS, file.codec(numbers[row]))
        ),
    )


def _numbers(columns: dict[str, pa.StringArray]) -> dict[str, pa.DoubleArray]:
    """Amounts as er7.parse_number reads them, several columns at once."""
    values = pa.concat_arrays(list(columns.values()))
    result = _parsed_numbers(values, lambda row: er7.parse_number(values[row].as_py()))
    return _split(result, {name: len(column) for name, column in columns.items()})


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


def _days_since_epoch(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days from 1970-01-01 to each date of the proleptic Gregorian calendar (H. Hinnant's days_from_civil)."""
    year = year.astype(np.int64) - (month <= 2)
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * np.where(month > 2, month - 3, month + 9) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def _code(name: str) -> int:
    return int.from_bytes(name.encode(), "big")


def _table(schema: pa.Schema, columns: dict[str, pa.Array]) -> pa.Table:
    return pa.Table.from_arrays([columns[field.name] for field in schema], schema=schema)
