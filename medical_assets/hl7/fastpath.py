"""A columnar reader for well-formed files: every message of a file at once in vectorised code, or None to decline.

It gives exactly the tables the general reader gives, or declines. It reads only files whose every
message starts `MSH|^~\\&|`, that decode as UTF-8 with no other charset declared, whose segments
are named by three capitals or digits with no batch envelope, and whose every message the general
reader would accept. The delimiters are ASCII, so they are found as bytes: each value is a byte
range located with sorted delimiter positions (numpy), and each column is gathered into an Arrow
array in one step. The few values holding an escape character are unescaped in Python.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medical_assets.hl7 import er7, tables

_HEADER = b"MSH|^~\\&|"
_SEPARATORS = er7.read_separators(_HEADER.decode())
_DECODABLE_AS_UTF8 = frozenset({None, "utf-8", "ascii"})
_NUMERIC_VALUE_TYPES = pa.array(["NM", "SN"])
# Numbers that Arrow's cast and Python's float() read alike; anything else goes to er7.parse_number.
_PLAIN_NUMBER = r"^[+-]?(?:\d{1,15}(?:\.\d{0,15})?|\.\d{1,15})$"
_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = np.timedelta64(1, "us")

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
_MESSAGE_HEADER_STRINGS = (
    "message_code",
    "trigger_event",
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
# The delimiters are ASCII, so in UTF-8 text they are found as bytes: each byte's kind, 0 for text.
_SEGMENT_END, _FIELD, _COMPONENT, _REPETITION, _SUBCOMPONENT, _ESCAPE = range(1, 7)
_DELIMITER_KINDS = np.zeros(256, np.uint8)
# Line feeds and MLLP framing bytes end segments too, as in er7.split_messages.
_DELIMITER_BYTES = b"|^\r\n\x0b\x1c~&\\"
_DELIMITER_KINDS[list(_DELIMITER_BYTES)] = [
    _FIELD, _COMPONENT, _SEGMENT_END, _SEGMENT_END, _SEGMENT_END, _SEGMENT_END, _REPETITION, _SUBCOMPONENT, _ESCAPE
]
_ENVELOPE_CODES = frozenset(int.from_bytes(name.encode(), "big") for name in er7.ENVELOPE_SEGMENTS)
_DIGITS_AND_CAPITALS = np.zeros(256, bool)
_DIGITS_AND_CAPITALS[list(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")] = True


def read_tables(data: bytes, source_file: str) -> dict[str, pa.Table] | None:
    """The five tables keyed as `tables.TABLES`, exactly as the general reader gives them; None to decline."""
    text = _text(data)
    if text is None:
        return None
    file = _File.of(text, source_file)
    if file is None:
        return None
    message_rows = np.arange(file.message_count)
    headers = file.positions("MSH")
    charsets = file.leaves("MSH", headers, (("character_set", 18, 1),), message_rows, unescape_with_codec=False)
    charset_values = file.strings(charsets["character_set"])
    codecs = {charset: er7.codec_for_charset(charset) for charset in pc.unique(charset_values).to_pylist()}
    if not data.isascii() and not _DECODABLE_AS_UTF8.issuperset(codecs.values()):
        return None
    file.message_codecs = [codecs[charset] for charset in charset_values.to_pylist()] if file.has_escapes else []
    header = file.leaves("MSH", headers, _CAPTURES["MSH"], message_rows)
    for required in ("message_code", "message_control_id", "hl7_version"):
        start, end = header[required]
        if not (end > start).all():
            return None  # the general reader makes an error row of this message
    messages = _messages_table(file, header, charset_values)
    return {
        "hl7_messages": messages,
        "hl7_lab_results": _lab_results_table(file, messages),
        "hl7_pharmacy_orders": _pharmacy_orders_table(file, messages),
        "hl7_encounters": _encounters_table(file, header, messages),
        "hl7_errors": tables.HL7_ERRORS.empty_table(),
    }


def _text(data: bytes) -> bytes | None:
    """The file's bytes when the fast path may read them: they start with the usual MSH and decode as UTF-8."""
    if not data.startswith(_HEADER) or b"\x00" in data:
        return None
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return data


class _File:
    """One file's bytes, its segments and delimiters located, and the escaped values rewritten."""

    @classmethod
    def of(cls, text: bytes, source_file: str) -> _File | None:
        """None when a segment name is not three capitals or digits followed by `|`, or is a batch envelope."""
        buffer = np.frombuffer(text, np.uint8)
        # Comparisons and one search over booleans: several times faster than a lookup table over the bytes.
        is_delimiter = buffer == _DELIMITER_BYTES[0]
        for byte in _DELIMITER_BYTES[1:]:
            is_delimiter |= buffer == byte
        delimiters = np.flatnonzero(is_delimiter)
        kinds = _DELIMITER_KINDS[buffer[delimiters]]
        ends = np.append(delimiters[kinds == _SEGMENT_END], len(buffer))
        starts = np.concatenate(([0], ends[:-1] + 1))
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
        if not _ENVELOPE_CODES.isdisjoint(np.unique(codes).tolist()):
            return None
        # Every message starts where a segment starts with MSH (er7.split_messages); each must use the usual separators.
        headers = starts[codes == _code("MSH")]
        if (ends[codes == _code("MSH")] - headers < len(_HEADER)).any():
            return None
        header_bytes = buffer[np.minimum(headers[:, None] + np.arange(len(_HEADER)), len(buffer) - 1)]
        if not (header_bytes == np.frombuffer(_HEADER, np.uint8)).all():
            return None
        return cls(buffer, starts, ends, codes, delimiters, kinds, source_file)

    def __init__(
        self,
        buffer: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        codes: np.ndarray,
        delimiters: np.ndarray,
        kinds: np.ndarray,
        source_file: str,
    ) -> None:
        self.source_file = source_file
        self.buffer = buffer
        self.starts = starts
        self.ends = ends
        self.codes = codes
        self.message_numbers = np.cumsum(codes == _code("MSH")) - 1
        self.message_count = int(self.message_numbers[-1]) + 1
        # Each delimiter's positions, ending with one past the end so that every search finds one.
        end = [len(buffer)]
        self.pipes = np.append(delimiters[kinds == _FIELD], end)
        self.carets = np.append(delimiters[kinds == _COMPONENT], end)
        self.tildes = np.append(delimiters[kinds == _REPETITION], end)
        self.ampersands = np.append(delimiters[kinds == _SUBCOMPONENT], end)
        self.backslashes = np.append(delimiters[kinds == _ESCAPE], end)
        # MSH-2 holds one of each per message; when there is no other, no value can hold one.
        self.has_repetitions = len(self.tildes) - 1 > self.message_count
        self.has_subcomponents = len(self.ampersands) - 1 > self.message_count
        self.has_escapes = len(self.backslashes) - 1 > self.message_count
        self.first_pipe = np.searchsorted(self.pipes, starts)
        self.pipe_count = np.searchsorted(self.pipes, ends) - self.first_pipe
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
        numbers, ordinals = np.unique(self.message_numbers[found], return_index=True)
        first[numbers] = found[ordinals]
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

    def leaves(
        self,
        name: str,
        segments: np.ndarray,
        captures: tuple[tuple[str, int, int], ...],
        message_numbers: np.ndarray,
        unescape_with_codec: bool = True,
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The byte range of each captured value in each of `segments` (positions; -1: none, all values empty).

        A value is the component's first subcomponent in the field's first repetition, unescaped:
        ranges with an escape character are rewritten to point at the unescaped text.
        """
        if not (segments >= 0).any():
            empty = np.zeros(len(segments), np.int64)
            return {column: (empty, empty) for column, _, _ in captures}
        # Element e of a segment split on "|" is SEG-e, but MSH-n is element n-1 (MSH-1 is the separator).
        shift = 1 if name == "MSH" else 0
        elements = sorted({field - shift for _, field, _ in captures})
        field_starts, field_ends = self._fields(segments, np.array(elements)[:, None])
        if self.has_repetitions:
            field_ends = np.minimum(field_ends, self.tildes[np.searchsorted(self.tildes, field_starts)])
        first_caret = np.searchsorted(self.carets, field_starts)
        of_field = np.array([elements.index(field - shift) for _, field, _ in captures])
        components = np.array([[component] for _, _, component in captures])
        field_starts, field_ends, first_caret = field_starts[of_field], field_ends[of_field], first_caret[of_field]
        # Component k lies between the (k-1)th and the kth caret after the field's start, within the repetition.
        last = len(self.carets) - 1
        opening = self.carets[np.clip(first_caret + components - 2, 0, last)]
        closing = self.carets[np.minimum(first_caret + components - 1, last)]
        starts = np.where(components == 1, field_starts, np.minimum(opening + 1, field_ends))
        ends = np.maximum(np.minimum(closing, field_ends), starts)
        if self.has_subcomponents:
            ends = np.minimum(ends, self.ampersands[np.searchsorted(self.ampersands, starts)])
        ranges = {column: (starts[index], ends[index]) for index, (column, _, _) in enumerate(captures)}
        if self.has_escapes:
            escaped = self.backslashes[np.searchsorted(self.backslashes, starts)] < ends
            for index, (column, _, _) in enumerate(captures):
                rows = np.flatnonzero(escaped[index])
                if len(rows):
                    codecs = (
                        [self.message_codecs[number] for number in message_numbers[rows]]
                        if unescape_with_codec
                        else [None] * len(rows)
                    )
                    written = [self.text(start, end) for start, end in zip(starts[index][rows], ends[index][rows])]
                    plain = [er7.unescape(value, _SEPARATORS, codec) for value, codec in zip(written, codecs)]
                    ranges[column] = self._rewritten(ranges[column], rows, plain)
        return ranges

    def first_repetitions(
        self, segments: np.ndarray, field: int, message_numbers: np.ndarray
    ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """A field's first repetition whole, as written and with each component unescaped (joined by ^)."""
        field_starts, field_ends = self._fields(segments, np.array([[field]]))
        starts = field_starts[0]
        ends = np.minimum(field_ends[0], self.tildes[np.searchsorted(self.tildes, starts)])
        written = (starts, ends)
        if not self.has_escapes:
            return written, written
        rows = np.flatnonzero(self.backslashes[np.searchsorted(self.backslashes, starts)] < ends)
        if not len(rows):
            return written, written
        plain = [
            "^".join(er7.whole_components(self.text(starts[row], ends[row]), _SEPARATORS, self.message_codecs[number]))
            for row, number in zip(rows, message_numbers[rows])
        ]
        return written, self._rewritten(written, rows, plain)

    def medical_record_identifiers(
        self, segments: np.ndarray, message_numbers: np.ndarray
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """PID-3.1 and PID-3.5 of the repetition whose type is MR, else of the first, as the general reader chooses."""
        field_starts, field_ends = (bounds[0] for bounds in self._fields(segments, np.array([[3]])))
        repetition_count = np.searchsorted(self.tildes, field_ends) - np.searchsorted(self.tildes, field_starts) + 1
        chosen = np.zeros(len(segments), int)  # 0-based repetition; 0 unless a later one is MR
        for repetition in range(int(repetition_count.max(initial=1)) - 1, -1, -1):
            starts, ends = self._repetition(field_starts, field_ends, repetition)
            kind_start, kind_end = self._component(starts, ends, 5)
            medical_record = (kind_end - kind_start == 2) & (repetition < repetition_count)
            medical_record[medical_record] = (self.buffer[kind_start[medical_record]] == ord("M")) & (
                self.buffer[kind_start[medical_record] + 1] == ord("R")
            )
            chosen = np.where(medical_record, repetition, chosen)
        starts, ends = self._repetition(field_starts, field_ends, chosen)
        identifier = self._component(starts, ends, 1)
        identifier_type = self._component(starts, ends, 5)
        ranges = {"patient_id": identifier, "patient_id_type": identifier_type}
        if self.has_escapes:
            # With an escape anywhere in PID-3, repetitions are compared unescaped: read as the general reader does.
            rows = np.flatnonzero(self.backslashes[np.searchsorted(self.backslashes, field_starts)] < field_ends)
            if len(rows):
                read = [
                    _medical_record_or_first(self.text(field_starts[row], field_ends[row]), self.message_codecs[number])
                    for row, number in zip(rows, message_numbers[rows])
                ]
                ranges["patient_id"] = self._rewritten(identifier, rows, [values[0] for values in read])
                ranges["patient_id_type"] = self._rewritten(identifier_type, rows, [values[4] for values in read])
        return ranges

    def strings(self, ranges: tuple[np.ndarray, np.ndarray]) -> pa.StringArray:
        """The values in `ranges` as one Arrow array; empty values are null, as the general reader's `or None`."""
        starts, ends = ranges
        lengths = ends - starts
        offsets = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        present = lengths > 0
        # Source positions of the gathered bytes: +1 within a value, a jump at each value's first byte.
        steps = np.ones(offsets[-1], np.int64)
        value_starts = starts[present]
        steps[offsets[:-1][present]] = value_starts - np.concatenate(([0], ends[present][:-1] - 1))[: len(value_starts)]
        data = self._bytes()[np.cumsum(steps)] if len(steps) else np.zeros(0, np.uint8)
        validity = None if present.all() else pa.py_buffer(np.packbits(present, bitorder="little"))
        return pa.StringArray.from_buffers(
            len(lengths), pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data), validity
        )

    def string_columns(self, columns: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, pa.StringArray]:
        """`strings` of several columns, gathered in one step."""
        return _split(self.strings(_concatenated(columns)), columns)

    def timestamp_columns(self, columns: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, pa.TimestampArray]:
        """`timestamps` of several columns, parsed in one step."""
        return _split(self.timestamps(_concatenated(columns)), columns)

    def timestamps(self, ranges: tuple[np.ndarray, np.ndarray]) -> pa.TimestampArray:
        """The values as er7.parse_datetime reads them: valid 14-digit times in numpy, any other text in Python."""
        starts, ends = ranges
        result = np.zeros(len(starts), "datetime64[us]")
        valid = np.zeros(len(starts), bool)
        whole = np.flatnonzero(ends - starts == 14)
        if len(whole):
            digits = self._bytes()[starts[whole, None] + np.arange(14)].astype(np.int64) - ord("0")
            all_digits = ((digits >= 0) & (digits <= 9)).all(axis=1)
            number = digits @ (10 ** np.arange(13, -1, -1, dtype=np.int64))
            year, month, day = number // 10**10, number // 10**8 % 100, number // 10**6 % 100
            hour, minute, second = number // 10**4 % 100, number // 100 % 100, number % 100
            month_start = (np.clip(year, 1, 9999) - 1970) * 12 + np.clip(month, 1, 12) - 1
            first_day = month_start.astype("datetime64[M]").astype("datetime64[D]")
            days_in_month = ((month_start + 1).astype("datetime64[M]").astype("datetime64[D]") - first_day).astype(int)
            ok = all_digits & (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= days_in_month)
            ok &= (hour < 24) & (minute < 60) & (second < 60)
            seconds = ((day - 1) * 86_400 + hour * 3_600 + minute * 60 + second).astype("timedelta64[s]")
            result[whole[ok]] = (first_day + seconds)[ok]
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

    def _fields(self, segments: np.ndarray, elements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Byte ranges of element `elements[i]` of each of `segments`, shape (len(elements), segments); empty when absent."""
        present = segments >= 0
        segment_ends = np.where(present, self.ends[segments], 0)
        first_pipe = self.first_pipe[segments]
        pipe_count = np.where(present, self.pipe_count[segments], 0)
        last = len(self.pipes) - 1
        starts = np.where(
            elements <= pipe_count, self.pipes[np.minimum(first_pipe + elements - 1, last)] + 1, segment_ends
        )
        ends = np.where(elements < pipe_count, self.pipes[np.minimum(first_pipe + elements, last)], segment_ends)
        return starts, ends

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


def _split(values: pa.Array, columns: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, pa.Array]:
    """`values` cut back into the columns it was concatenated from."""
    split = {}
    offset = 0
    for name, (starts, _) in columns.items():
        split[name] = values.slice(offset, len(starts))
        offset += len(starts)
    return split


def _messages_table(file: _File, header: dict, charsets: pa.StringArray) -> pa.Table:
    message_rows = np.arange(file.message_count)
    patient_segments = file.first_in_message("PID")
    patient = {
        **file.medical_record_identifiers(patient_segments, message_rows),
        **file.leaves("PID", patient_segments, _CAPTURES["PID"], message_rows),
    }
    strings = file.string_columns({name: header[name] for name in _MESSAGE_HEADER_STRINGS} | patient)
    columns = {
        "message_type": pc.binary_join_element_wise(
            strings["message_code"], strings["trigger_event"], "^", null_handling="skip"
        ),
        "message_datetime": file.timestamps(header["message_datetime"]),
        "character_set": charsets,
        **strings,
        "segment_count": pa.array(np.bincount(file.message_numbers, minlength=file.message_count).astype(np.int32)),
        "source_file": pa.repeat(file.source_file, file.message_count),
        "message_index": pa.array(message_rows.astype(np.int32)),
    }
    return _table(tables.HL7_MESSAGES, columns)


def _lab_results_table(file: _File, messages: pa.Table) -> pa.Table:
    positions = file.positions("OBX")
    numbers = file.message_numbers[positions]
    observation = file.leaves("OBX", positions, _CAPTURES["OBX"], numbers)
    order = file.leaves("OBR", file.last_before("OBR", positions), _CAPTURES["OBR"], numbers)
    written, value = file.first_repetitions(positions, 5, numbers)
    timestamp = observation.pop("observation_datetime")
    strings = file.string_columns(order | observation | {"value": value})
    columns = {
        **_message_columns(file, messages, numbers),
        **strings,
        "numeric_value": _numeric_values(file, written, strings["value"], strings["value_type"], numbers),
        "observation_datetime": file.timestamps(timestamp),
    }
    return _table(tables.HL7_LAB_RESULTS, columns)


def _pharmacy_orders_table(file: _File, messages: pa.Table) -> pa.Table:
    positions = file.positions("RXE")
    numbers = file.message_numbers[positions]
    give = file.leaves("RXE", positions, _CAPTURES["RXE"], numbers)
    order_control = file.leaves("ORC", file.last_before("ORC", positions), _CAPTURES["ORC"], numbers)
    route = file.leaves("RXR", file.first_after("RXR", positions), _CAPTURES["RXR"], numbers)
    timing_segments = file.first_after("TQ1", positions)
    timing = file.leaves("TQ1", timing_segments, _CAPTURES["TQ1"], numbers)
    with_timing = timing_segments >= 0

    def timed(timing_column: str, give_column: str) -> tuple[np.ndarray, np.ndarray]:
        """TQ1's value when a TQ1 follows the RXE, else RXE-1's."""
        return tuple(
            np.where(with_timing, timing_part, give_part)
            for timing_part, give_part in zip(timing[timing_column], give[give_column])
        )

    strings = file.string_columns(
        order_control | {name: give[name] for name in _GIVE_STRINGS + _GIVE_AMOUNTS} | route
        | {"frequency": timed("frequency", "interval")}
    )
    columns = {
        **_message_columns(file, messages, numbers),
        **strings,
        **_numbers({name: strings[name] for name in _GIVE_AMOUNTS}),
        **file.timestamp_columns({"start_datetime": timed("start", "start"), "end_datetime": timed("end", "end")}),
    }
    return _table(tables.HL7_PHARMACY_ORDERS, columns)


def _encounters_table(file: _File, header: dict, messages: pa.Table) -> pa.Table:
    visit_segments = file.first_in_message("PV1")
    numbers = np.flatnonzero(visit_segments >= 0)
    visit = file.leaves("PV1", visit_segments[numbers], _CAPTURES["PV1"], numbers)
    event = file.leaves("EVN", file.first_in_message("EVN")[numbers], _CAPTURES["EVN"], numbers)
    # EVN-1, else MSH-9.2.
    event_type_starts, event_type_ends = event["event_type"]
    trigger_starts, trigger_ends = (part[numbers] for part in header["trigger_event"])
    recorded = event_type_ends > event_type_starts
    event_type = (np.where(recorded, event_type_starts, trigger_starts), np.where(recorded, event_type_ends, trigger_ends))
    timestamps = {name: visit.pop(name) for name in ("admit_datetime", "discharge_datetime")}
    columns = {
        **_message_columns(file, messages, numbers),
        **file.string_columns({"event_type": event_type} | visit),
        **file.timestamp_columns({"event_datetime": event["event_datetime"]} | timestamps),
    }
    return _table(tables.HL7_ENCOUNTERS, columns)


def _message_columns(file: _File, messages: pa.Table, numbers: np.ndarray) -> dict[str, pa.Array]:
    """The columns a row of another table repeats from its message."""
    indices = pa.array(numbers)
    return {
        "message_control_id": messages.column("message_control_id").chunk(0).take(indices),
        "message_type": messages.column("message_type").chunk(0).take(indices),
        "source_file": pa.repeat(file.source_file, len(numbers)),
        "message_index": pa.array(numbers.astype(np.int32)),
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
    """numeric_value: OBX-5 as a number when OBX-2 is NM or SN; plain decimals in C++, the rest as the general reader."""
    numeric = pc.fill_null(pc.is_in(value_types, _NUMERIC_VALUE_TYPES), False)
    candidates = pc.if_else(numeric, values, pa.scalar(None, pa.string()))
    plain = pc.fill_null(pc.match_substring_regex(candidates, _PLAIN_NUMBER), False)
    result = pc.cast(pc.if_else(plain, candidates, pa.scalar(None, pa.string())), pa.float64())
    rest = np.flatnonzero(pc.and_(pc.is_valid(candidates), pc.invert(plain)).to_numpy(zero_copy_only=False))
    if not len(rest):
        return result
    starts, ends = written
    computed = [
        er7.parse_numeric_value(
            er7.whole_components(file.text(starts[row], ends[row]), _SEPARATORS, _codec(file, numbers[row]))
        )
        for row in rest
    ]
    return _replaced(result, rest, pa.array(computed, pa.float64()))


def _numbers(columns: dict[str, pa.StringArray]) -> dict[str, pa.DoubleArray]:
    """Amounts as er7.parse_number reads them: plain decimals cast in C++, any other text in Python."""
    values = pa.concat_arrays(list(columns.values()))
    plain = pc.fill_null(pc.match_substring_regex(values, _PLAIN_NUMBER), False)
    result = pc.cast(pc.if_else(plain, values, pa.scalar(None, pa.string())), pa.float64())
    rest = np.flatnonzero(pc.and_(pc.is_valid(values), pc.invert(plain)).to_numpy(zero_copy_only=False))
    if len(rest):
        computed = [er7.parse_number(value) for value in values.take(pa.array(rest)).to_pylist()]
        result = _replaced(result, rest, pa.array(computed, pa.float64()))
    split = {}
    offset = 0
    for name, column in columns.items():
        split[name] = result.slice(offset, len(column))
        offset += len(column)
    return split


def _replaced(values: pa.Array, rows: np.ndarray, replacements: pa.Array) -> pa.Array:
    mask = np.zeros(len(values), bool)
    mask[rows] = True
    return pc.replace_with_mask(values, pa.array(mask), replacements)


def _codec(file: _File, message_number: int) -> str | None:
    return file.message_codecs[message_number] if file.message_codecs else None


def _code(name: str) -> int:
    return int.from_bytes(name.encode(), "big")


def _table(schema: pa.Schema, columns: dict[str, pa.Array]) -> pa.Table:
    return pa.Table.from_arrays([columns[field.name] for field in schema], schema=schema)
