"""The fast path's view of a file's bytes: its segments and delimiters located, each value found as a byte range."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyarrow as pa

from medical_assets.hl7 import datatypes, encoding, er7
from medical_assets.hl7.captures import IDENTIFIER_COMPONENTS, MOST_COMPONENTS, MOST_FIELDS

HEADER = b"MSH|^~\\&|"
SEPARATORS = er7.read_separators(HEADER.decode())
# The delimiters (kernels.DELIMITERS) are ASCII, so in UTF-8 text they are found as bytes. Line
# feeds and MLLP framing bytes end segments too, as in er7.split_messages.
_SEGMENT_ENDS = b"\r\n\x0b\x1c"
_ENVELOPE_CODES = frozenset(int.from_bytes(name.encode(), "big") for name in er7.ENVELOPE_SEGMENTS)
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int32)  # February: 29 in leap years
_DIGITS_AND_CAPITALS = np.zeros(256, bool)
_DIGITS_AND_CAPITALS[list(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")] = True


def _kernels():
    """The compiled loops, imported on first use: numba costs a process 0.3 s and 100 MiB (its LLVM),
    which only the processes that parse HL7 (the Ray workers) should pay, not every importer of this package."""
    from medical_assets.hl7 import kernels

    return kernels


class ValueRequest(NamedTuple):
    """A value wanted from each of some segments: SEG-field, component `component`, for rows of some messages."""

    segment: str
    segments: np.ndarray  # positions among the file's segments; -1 where a row has no such segment
    field: int
    component: int
    message_numbers: np.ndarray  # each row's message, for its codec


class LocatedFile:
    """One file's bytes (or several files' joined), its segments and delimiters located, and the escaped values rewritten."""

    @classmethod
    def of(cls, text: bytes, file_starts: np.ndarray, source_files: list[str]) -> LocatedFile | None:
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
        if (ends[codes == _code("MSH")] - headers < len(HEADER)).any():
            return None
        header_bytes = buffer[np.minimum(headers[:, None] + np.arange(len(HEADER)), len(buffer) - 1)]
        if not (header_bytes == np.frombuffer(HEADER, np.uint8)).all():
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
        padding = np.full(MOST_FIELDS + 2, len(buffer), np.int32)
        self._pipes = np.concatenate((pipes, padding))
        self._carets_before_pipes = np.concatenate(
            (carets_before_pipes, np.full(MOST_FIELDS + 2, len(self.carets) - 1, np.int32))
        )
        self._carets = np.concatenate(
            (np.full(1, -1, np.int32), self.carets[:-1], np.full(MOST_COMPONENTS + 2, len(buffer), np.int32))
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
                    encoding.unescape(self.text(starts[row], ends[row]), SEPARATORS, self.codec(numbers[row]))
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
            "^".join(er7.whole_components(self.text(starts[row], ends[row]), SEPARATORS, self.codec(number)))
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
                for column, component in IDENTIFIER_COMPONENTS.items():
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
        return {column: self._component(starts, ends, component) for column, component in IDENTIFIER_COMPONENTS.items()}

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
        return split_columns(self.strings(_concatenated(columns)), _sizes(columns))

    def timestamp_columns(self, columns: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, pa.TimestampArray]:
        """`timestamps` of several columns, parsed in one step."""
        return split_columns(self.timestamps(_concatenated(columns)), _sizes(columns))

    def timestamps(self, ranges: tuple[np.ndarray, np.ndarray]) -> pa.TimestampArray:
        """The values as datatypes.parse_datetime reads them: valid 14-digit times in numpy, any other text in Python."""
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
            moment = datatypes.parse_datetime(self.text(starts[row], ends[row]))
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


def split_columns(values: pa.Array, sizes: dict) -> dict:
    """`values` cut back into the columns it was concatenated from, of these sizes."""
    split = {}
    offset = 0
    for name, size in sizes.items():
        split[name] = values.slice(offset, size)
        offset += size
    return split


def _medical_record_or_first(identifiers: str, codec: str | None) -> list[str]:
    padding = ["", "", "", "", ""]
    for repetition in range(1, identifiers.count("~") + 2):
        candidate = er7.leaf_components(identifiers, SEPARATORS, codec, repetition) + padding
        if candidate[4] == "MR":
            return candidate
    return er7.leaf_components(identifiers, SEPARATORS, codec) + padding


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
