"""HL7 v2 ER7 syntax: a file's bytes into messages, segments, fields, repetitions, components and subcomponents."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from medical_assets.hl7.encoding import Separators, codec_for_charset, decode, unescape

# Batch and file envelopes wrap messages; they carry no message content.
ENVELOPE_SEGMENTS = frozenset({"FHS", "BHS", "BTS", "FTS"})

_BYTE_ORDER_MARK = b"\xef\xbb\xbf"
# MLLP start (0x0B) and end (0x1C) bytes and line feeds all become segment ends. A byte-for-byte
# translation keeps every position a position in the file, so byte offsets need no bookkeeping.
_TO_SEGMENT_END = bytes.maketrans(b"\x0b\x1c\n", b"\r\r\r")
_ENVELOPE_PREFIXES = tuple(name.encode() for name in sorted(ENVELOPE_SEGMENTS))
# `|^~\&|` and the like, validated once: the MSH prefix that almost every message shares.
_COMMON_SEPARATORS: dict[str, Separators] = {}
_ENCODING_CHARACTER_ROLES = (
    "component separator",
    "repetition separator",
    "escape character",
    "subcomponent separator",
    "truncation character",
)


class ER7Error(ValueError):
    """A message breaks ER7 syntax; the text says where and why, never what the message holds."""


class RawMessage(NamedTuple):
    """One message's bytes as found in its file, segments ended by carriage returns."""

    index: int  # 0-based position among the file's messages
    byte_offset: int  # where its MSH starts in the file
    data: bytes


@dataclass(frozen=True)
class SplitFile:
    """A file cut at every MSH, and what came before the first one."""

    messages: list[RawMessage]
    leading_offset: int  # where the content before the first MSH starts
    leading_bytes: int  # bytes of it that are neither blank nor batch envelope
    leading_envelope: bool  # FHS or BHS seen before the first MSH


def split_messages(data: bytes) -> SplitFile:
    """Cut a file into messages at each segment that begins with MSH; BOM, MLLP and any line ends are tolerated."""
    start = len(_BYTE_ORDER_MARK) if data.startswith(_BYTE_ORDER_MARK) else 0
    text = data.translate(_TO_SEGMENT_END)
    starts = [start] if text.startswith(b"MSH", start) else []
    position = text.find(b"\rMSH", start)
    while position != -1:
        starts.append(position + 1)
        position = text.find(b"\rMSH", position + 4)
    ends = starts[1:] + [len(text)]
    messages = [RawMessage(index, begin, text[begin:end]) for index, (begin, end) in enumerate(zip(starts, ends))]
    leading_bytes, leading_envelope = _stray_content(text[start : starts[0] if starts else len(text)])
    return SplitFile(messages, start, leading_bytes, leading_envelope)


def parse_message(raw: RawMessage) -> Message:
    """Decode one message in its declared charset and split every segment into fields; ER7Error if it cannot be."""
    data = raw.data
    if data.isascii():
        text = data.decode("ascii")
    else:
        text = decode(data, codec_for_charset(_declared_charset(data)))[0]
    lines = list(filter(None, text.split("\r")))
    separators = read_separators(lines[0])
    field_separator = separators.field
    fields = [line.split(field_separator) for line in lines]
    names = [segment[0] for segment in fields]
    # Segment names are upper case: one C-level pass clears the common case of no blank line and no envelope.
    if not (all(map(str.isupper, names)) and ENVELOPE_SEGMENTS.isdisjoint(names)):
        kept = [position for position, name in enumerate(names) if not name.isspace() and name not in ENVELOPE_SEGMENTS]
        fields, names = [fields[position] for position in kept], [names[position] for position in kept]
    # MSH-1 is the field separator itself, so MSH-n sits at element [n-1] of the split header;
    # inserting MSH-1 lines MSH up with every other segment, where SEG-n is element [n].
    fields[0].insert(1, field_separator)
    header = fields[0]
    charset = Segment(header, separators).get(18) if len(header) > 18 and header[18] else None
    # MSH-2 holds every delimiter, so the search starts after it.
    repetition, subcomponent, escape = separators.beyond_components
    body = text[5 + len(separators.encoding_characters) :]
    only_components = not (repetition in body or subcomponent in body or escape in body)
    codec = codec_for_charset(charset)
    return Message(raw.index, raw.byte_offset, separators, charset, codec, fields, names, only_components)


def read_separators(header: str) -> Separators:
    """The separators an MSH segment declares in MSH-1 and MSH-2; ER7Error when they cannot be used."""
    known = _COMMON_SEPARATORS.get(header[3:9])
    if known is not None:
        return known
    if len(header) < 4:
        raise ER7Error("MSH segment ends before MSH-1 (field separator)")
    field_separator = header[3]
    end = header.find(field_separator, 4)
    return _separators(field_separator, header[4:] if end == -1 else header[4:end])


def leaf_components(value: str, separators: Separators, codec: str | None = None, repetition: int = 1) -> list[str]:
    """The components of one repetition of a field, each cut to its first subcomponent and unescaped."""
    if separators.repetition in value:
        value = _part(value, separators.repetition, repetition)
    elif repetition != 1:
        return []
    components = value.split(separators.component)
    subcomponent = separators.subcomponent
    if subcomponent and subcomponent in value:
        components = [component.partition(subcomponent)[0] for component in components]
    escape = separators.escape
    if escape and escape in value:
        components = [unescape(component, separators, codec) for component in components]
    return components


def first_components(
    values: Sequence[str], separators: Separators, codec: str | None = None, only_components: bool = False
) -> Sequence[str]:
    """Component 1 of each field value's first repetition, cut to its first subcomponent and unescaped.

    `only_components` vouches that the values hold no repetition, subcomponent or escape character
    (`Message.only_components`). Values without any delimiter, the common case, come back as they are.
    """
    joined = "".join(values)
    if not only_components:
        repetition, subcomponent, escape = separators.beyond_components
        if repetition in joined or subcomponent in joined or escape in joined:
            return [leaf_components(value, separators, codec)[0] for value in values]
    component = separators.component
    if component not in joined:
        return values
    return [value.partition(component)[0] for value in values]


def whole_components(value: str, separators: Separators, codec: str | None = None, repetition: int = 1) -> list[str]:
    """The components of one repetition of a field, each unescaped whole (subcomponent separators kept)."""
    if separators.repetition in value:
        value = _part(value, separators.repetition, repetition)
    elif repetition != 1:
        return []
    components = value.split(separators.component)
    escape = separators.escape
    if escape and escape in value:
        components = [unescape(component, separators, codec) for component in components]
    return components


class Message:
    """One parsed message: where it was in its file, its separators and charset, its segments split into fields."""

    __slots__ = ("index", "byte_offset", "separators", "charset", "codec", "fields", "names", "only_components")

    def __init__(
        self,
        index: int,
        byte_offset: int,
        separators: Separators,
        charset: str | None,
        codec: str | None,
        fields: list[list[str]],
        names: list[str],
        only_components: bool = False,
    ) -> None:
        self.index = index
        self.byte_offset = byte_offset
        self.separators = separators
        self.charset = charset  # MSH-18, first repetition, as declared; None when not declared
        self.codec = codec  # the codec that charset names; None when undeclared or unknown
        self.fields = fields  # each segment split on the field separator: fields[i][n] is SEG-n
        self.names = names  # each segment's name, in message order
        # No repetition, subcomponent or escape character after MSH-2: every field is just components.
        self.only_components = only_components

    def segments(self, name: str | None = None) -> list[Segment]:
        """Every segment called `name` (every segment when None), in message order, repeats and Z-segments included."""
        return [
            Segment(fields, self.separators, self.codec)
            for fields in self.fields
            if name is None or fields[0] == name
        ]

    def segment(self, name: str) -> Segment | None:
        """The first segment called `name`, or None."""
        for fields in self.fields:
            if fields[0] == name:
                return Segment(fields, self.separators, self.codec)
        return None

    def get(
        self,
        segment: str,
        field: int,
        repetition: int | None = 1,
        component: int | None = 1,
        subcomponent: int | None = 1,
    ) -> str | None:
        """The unescaped text at SEG-field of the first `segment`, as `Segment.get`; None when absent or empty."""
        for fields in self.fields:
            if fields[0] == segment:
                return Segment(fields, self.separators, self.codec).get(field, repetition, component, subcomponent)
        return None

    def __len__(self) -> int:
        return len(self.fields)

    def __repr__(self) -> str:
        return f"Message(index={self.index}, byte_offset={self.byte_offset}, segments={self.names})"


class Segment:
    """One segment's fields: `fields[n]` is SEG-n (MSH-n too, MSH-1 being the field separator), `fields[0]` the name."""

    __slots__ = ("fields", "separators", "codec")

    def __init__(self, fields: list[str], separators: Separators, codec: str | None = None) -> None:
        self.fields = fields
        self.separators = separators
        self.codec = codec

    @property
    def name(self) -> str:
        return self.fields[0]

    def get(
        self,
        field: int,
        repetition: int | None = 1,
        component: int | None = 1,
        subcomponent: int | None = 1,
    ) -> str | None:
        """The unescaped text at SEG-field.repetition.component.subcomponent, each 1-based; None when absent or empty.

        None at a level stops there: `get(5, 1, None)` is the whole first repetition of SEG-5, unescaped.
        MSH-1 and MSH-2 are returned as written.
        """
        fields = self.fields
        if field >= len(fields):
            return None
        value = fields[field]
        if not value:
            return None
        if field < 3 and fields[0] == "MSH":
            return value
        separators = self.separators
        if repetition is not None:
            value = _part(value, separators.repetition, repetition)
            if component is not None and value:
                value = _part(value, separators.component, component)
                if subcomponent is not None and value:
                    if separators.subcomponent:
                        value = _part(value, separators.subcomponent, subcomponent)
                    elif subcomponent != 1:
                        return None
        if not value:
            return None
        return unescape(value, separators, self.codec) or None

    def repetition_count(self, field: int) -> int:
        """How many repetitions SEG-field has; 0 when it is absent or empty."""
        if field >= len(self.fields) or not self.fields[field]:
            return 0
        return self.fields[field].count(self.separators.repetition) + 1

    def components(self, field: int, repetition: int = 1) -> list[str]:
        """Every component of one repetition of SEG-field, each unescaped whole; [] when absent."""
        if field >= len(self.fields) or not self.fields[field]:
            return []
        return whole_components(self.fields[field], self.separators, self.codec, repetition)

    def __repr__(self) -> str:
        return f"Segment({self.name!r}, {len(self.fields) - 1} fields)"


def _part(value: str, separator: str, number: int) -> str:
    """The 1-based `number`th piece of `value` split on `separator`; '' when there are fewer pieces."""
    if separator not in value:
        return value if number == 1 else ""
    pieces = value.split(separator)
    return pieces[number - 1] if number <= len(pieces) else ""


def _declared_charset(data: bytes) -> str | None:
    """MSH-18, first repetition, read from the bytes: its values are ASCII in every charset."""
    end = data.find(b"\r")
    header = data if end == -1 else data[:end]
    if len(header) < 6:
        return None
    fields = header.split(header[3:4])
    # Split on MSH-1, element [k] is MSH-(k+1): MSH-18 is element [17], MSH-2 element [1].
    if len(fields) < 18 or not fields[17]:
        return None
    declared = fields[17]
    for separator in (fields[1][1:2], fields[1][0:1]):  # repetition, then component
        if separator:
            declared = declared.split(separator)[0]
    return declared.decode("ascii", "replace") or None


@functools.lru_cache(maxsize=64)
def _separators(field_separator: str, encoding_characters: str) -> Separators:
    problem = _describe_unusable(field_separator, "MSH-1 (field separator)")
    if problem:
        raise ER7Error(problem)
    if len(encoding_characters) < 2:
        raise ER7Error(
            f"MSH-2 (encoding characters) has {len(encoding_characters)} characters; "
            "at least 2 (component and repetition separators) are required"
        )
    if len(encoding_characters) > 5:
        raise ER7Error(
            f"MSH-2 (encoding characters) has {len(encoding_characters)} characters where at most 5 are allowed; "
            "check that MSH-1 is the field separator the rest of the header uses"
        )
    for role, character in zip(_ENCODING_CHARACTER_ROLES, encoding_characters):
        problem = _describe_unusable(character, f"MSH-2 {role}")
        if problem:
            raise ER7Error(problem)
    delimiters = field_separator + encoding_characters
    for character in delimiters:
        if delimiters.count(character) > 1:
            raise ER7Error(f"MSH-1/MSH-2 use {character!r} for more than one delimiter")
    separators = Separators(field_separator, encoding_characters)
    if len(encoding_characters) == 4:
        _COMMON_SEPARATORS[field_separator + encoding_characters + field_separator] = separators
    return separators


def _describe_unusable(character: str, role: str) -> str | None:
    """Why `character` cannot delimit, by its class only, so no message content is quoted."""
    if not character.isascii():
        return f"{role} is a non-ASCII character (U+{ord(character):04X})"
    if character.isalnum():
        return f"{role} is a letter or digit"
    if character.isspace():
        return f"{role} is whitespace (0x{ord(character):02X})"
    if not character.isprintable():
        return f"{role} is a control character (0x{ord(character):02X})"
    return None


def _stray_content(leading: bytes) -> tuple[int, bool]:
    """Bytes before the first MSH that are neither blank nor envelope segments, and whether an envelope was seen."""
    stray = 0
    envelope = False
    for line in leading.split(b"\r"):
        if line.startswith(_ENVELOPE_PREFIXES):
            envelope = True
        elif line.strip():
            stray += len(line)
    return stray, envelope
