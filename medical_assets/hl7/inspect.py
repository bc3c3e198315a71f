"""Describe an HL7 file message by message: where each starts, how it is delimited, and whether it was read."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from medical_assets.hl7 import encoding, er7
from medical_assets.hl7.reader import file_problem, parse_hl7_file


def inspect_file(data: bytes, source_file: str, values: bool = False) -> Iterator[str]:
    """Lines describing the file's structure; field values (PHI) only when `values` is set.

    The verdict for each message comes from `parse_hl7_file` itself, so this tool never disagrees
    with the pipeline about which messages are read and why the others are not.
    """
    parsed = parse_hl7_file(data, source_file)
    errors = list(zip(parsed.errors.column("message_index").to_pylist(), parsed.errors.column("error").to_pylist()))
    file_errors = [reason for index, reason in errors if index is None]
    message_errors = {index: reason for index, reason in errors if index is not None}
    lab_rows = Counter(parsed.lab_results.column("message_index").to_pylist())
    yield (
        f"{source_file}: {len(data)} bytes, {parsed.messages.num_rows} messages read, "
        f"{len(message_errors)} messages in error, {parsed.lab_results.num_rows} OBX rows"
    )
    for reason in file_errors:
        yield f"  file: {reason}"
    if file_problem(data):
        return
    for raw in er7.split_messages(data.rstrip(b"\x00")).messages:
        yield f"message {raw.index} at byte {raw.byte_offset} ({len(raw.data)} bytes)"
        try:
            message = er7.parse_message(raw)
        except er7.ER7Error:
            message = None
        if message is not None:
            yield from _describe(message, raw, values)
        if raw.index in message_errors:
            yield f"  error: {message_errors[raw.index]}"
        else:
            yield f"  parsed: 1 message row, {lab_rows.get(raw.index, 0)} OBX rows"


def _describe(message: er7.Message, raw: er7.RawMessage, values: bool) -> Iterator[str]:
    yield f"  separators: {message.separators.describe()}"
    declared = message.charset or "not declared"
    decoded_as = "ascii (no byte above 0x7F)" if raw.data.isascii() else encoding.decode(raw.data, message.codec)[1]
    yield f"  charset: {declared}; decoded as {decoded_as}"
    message_type = "^".join(part for part in (message.get("MSH", 9, 1, 1), message.get("MSH", 9, 1, 2)) if part)
    yield f"  type: {message_type or '(empty)'}  control id: {message.get('MSH', 10) or '(empty)'}"
    yield f"  version: {message.get('MSH', 12) or '(missing)'}"
    yield "  segments: " + " ".join(name if values or _looks_like_segment_name(name) else "?" for name in message.names)
    if values:
        for segment in message.segments():
            for number, field in enumerate(segment.fields[1:], start=1):
                if field:
                    yield f"    {segment.name}-{number}: {field}"


def _looks_like_segment_name(name: str) -> bool:
    """Segment names are three upper-case letters or digits; anything else may be a stray line of content."""
    return len(name) == 3 and name.isascii() and name.isalnum() and name == name.upper()
