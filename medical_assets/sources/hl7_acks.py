"""HL7 v2 acknowledgements: what an MLLP listener reads from a received message's MSH, and the ACK it returns.

Only the MSH segment is read, as bytes decoded one byte to one character (latin-1): the fields
copied into the ACK (sending and receiving application and facility, control id, version) go
back byte for byte in whatever charset the sender used. Errors are described by HL7 table 0357
codes and texts that name fields, never their values.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, replace
from datetime import datetime

from medical_assets.hl7.er7 import ER7Error, read_separators

# Acknowledgement outcomes: with "A" (original mode) or "C" (enhanced mode, commit) in front they
# are the MSA-1 codes AA, AE, AR and CA, CE, CR.
ACCEPTED = "A"
ERROR = "E"
REJECTED = "R"

DEFAULT_SEPARATORS = ("|", "^~\\&")
_LEADING_NOISE = b"\xef\xbb\xbf\r\n\t "
# An ACK's control id: this process's id and start time, then a counter, so that ids do not repeat
# across restarts; 20 characters, the length MSH-10 allows before v2.7.
_CONTROL_ID_PREFIX = f"{os.getpid() % 100000:05d}{int(datetime.now().timestamp()) % 10**7:07d}"
_control_ids = itertools.count(1)


@dataclass(frozen=True)
class Problem:
    """Why a message is not accepted: an HL7 table 0357 code, its name, a text, and where (ERR-2) when known."""

    code: int
    name: str
    text: str
    location: str = ""  # e.g. "MSH^1^10": segment, its sequence, field

    @classmethod
    def required_field_missing(cls, field: int, description: str) -> Problem:
        return cls(101, "Required field missing", f"MSH-{field} ({description}) is empty", f"MSH^1^{field}")


NO_HEADER = Problem(100, "Segment sequence error", "the message does not begin with an MSH segment", "MSH^1")
MESSAGE_TOO_LARGE = Problem(207, "Application internal error", "message too large")
NOT_STORED = Problem(207, "Application internal error", "the message could not be stored; send it again")


@dataclass(frozen=True)
class MessageHeader:
    """A received message's MSH segment, as far as it could be read; `problem` says why it cannot be accepted."""

    field_separator: str
    encoding_characters: str
    fields: tuple[str, ...]  # fields[n] is MSH-n; fields[0] is "MSH", fields[1] the field separator
    problem: Problem | None = None

    def field(self, number: int) -> str:
        return self.fields[number] if number < len(self.fields) else ""

    def component(self, number: int, component: int) -> str:
        parts = self.field(number).split(self.encoding_characters[0])
        return parts[component - 1] if component <= len(parts) else ""

    @property
    def control_id(self) -> str:
        return self.field(10)

    @property
    def trigger_event(self) -> str:
        return self.component(9, 2)

    @property
    def sender(self) -> str:
        """MSH-3 and MSH-4, the sending system's names: a feed's identity for duplicate detection."""
        return f"{self.field(3)}|{self.field(4)}"

    @property
    def enhanced_mode(self) -> bool:
        """MSH-15 or MSH-16 set asks for enhanced acknowledgement: a commit ACK (CA, CE, CR) from us."""
        return bool(self.field(15) or self.field(16))

    def wants_acknowledgement(self, outcome: str) -> bool:
        """Whether MSH-15 asks for a commit acknowledgement of this outcome; original mode always does."""
        if not self.enhanced_mode:
            return True
        condition = self.component(15, 1).upper()
        if condition == "NE":
            return False
        if condition == "ER":
            return outcome != ACCEPTED
        if condition == "SU":
            return outcome == ACCEPTED
        return True  # AL, empty, or a value outside table 0155: acknowledge rather than leave the sender waiting


def read_header(message: bytes) -> MessageHeader:
    """The MSH segment of `message` (segments ended by \\r, \\n or \\r\\n); never raises, see `problem`."""
    data = from_header(message)
    end = len(data)
    for separator in (b"\r", b"\n"):
        found = data.find(separator, 0, end)
        if found != -1:
            end = found
    line = data[:end].decode("latin-1")
    if not line.startswith("MSH") or len(line) < 4:
        return _minimal_header(NO_HEADER)
    try:
        separators = read_separators(line)
    except ER7Error as error:
        text = str(error)
        problem = Problem(102, "Data type error", text, "MSH^1^1" if text.startswith("MSH-1 ") else "MSH^1^2")
        if not _usable_with_default_encoding(line[3]):
            return _minimal_header(problem)
        # The field separator is readable: the ACK can still name the systems, in the default encoding characters.
        return MessageHeader(line[3], DEFAULT_SEPARATORS[1], _fields(line, line[3]), problem)
    header = MessageHeader(separators.field, separators.encoding_characters, _fields(line, separators.field))
    if not header.component(9, 1):
        return replace(header, problem=Problem.required_field_missing(9, "message type"))
    if not header.control_id:
        return replace(header, problem=Problem.required_field_missing(10, "message control id"))
    return header


def acknowledgement(
    header: MessageHeader, outcome: str, problem: Problem | None = None, now: datetime | None = None
) -> bytes | None:
    """The ACK of a message with this header: MSA-1 from `outcome` and the mode, ERR from `problem`.

    None when the sender asked, in MSH-15, for no acknowledgement of this outcome. Segments end
    with \\r; the ACK uses the message's own delimiters."""
    if not header.wants_acknowledgement(outcome):
        return None
    field, encoding = header.field_separator, header.encoding_characters
    component = encoding[0]
    trigger = header.trigger_event
    stamp = (now or datetime.now().astimezone()).strftime("%Y%m%d%H%M%S%z")
    msh = [
        "MSH",
        encoding,
        header.field(5),
        header.field(6),
        header.field(3),
        header.field(4),
        stamp,
        "",
        component.join(("ACK", trigger, "ACK")) if trigger else "ACK",
        next_control_id(),
        header.field(11) or "P",
        header.field(12) or "2.5",
    ]
    if header.field(18):
        msh += ["", "", "", "", "", header.field(18)]  # the charset of the copied names
    msa = ["MSA", ("C" if header.enhanced_mode else "A") + outcome, header.control_id]
    segments = [msh, msa]
    if problem is not None:
        text = _escaped(problem.text, field, encoding)
        msa.append(text)  # MSA-3: where receivers of versions before 2.5 show the reason
        location = problem.location.replace("^", component)
        error_code = component.join((str(problem.code), problem.name, "HL70357"))
        segments.append(["ERR", "", location, error_code, "E", "", "", "", text])  # ERR-2, -3, -4 severity, -8 user message
    return "".join(field.join(segment) + "\r" for segment in segments).encode("latin-1")


def from_header(message: bytes) -> bytes:
    """`message` from its MSH on: a byte order mark or blank lines before it are not part of it."""
    return message.lstrip(_LEADING_NOISE)


def next_control_id() -> str:
    """A new MSH-10 for an ACK: unique in this process and, by its prefix, across restarts."""
    return f"{_CONTROL_ID_PREFIX}{next(_control_ids):08d}"


def _minimal_header(problem: Problem) -> MessageHeader:
    return MessageHeader(*DEFAULT_SEPARATORS, ("MSH", DEFAULT_SEPARATORS[0]), problem)


def _fields(line: str, field_separator: str) -> tuple[str, ...]:
    fields = line.split(field_separator)
    fields.insert(1, field_separator)  # MSH-1 is the separator itself, so fields[n] is MSH-n
    return tuple(fields)


def _usable_with_default_encoding(character: str) -> bool:
    return (
        character.isascii()
        and character.isprintable()
        and not (character.isalnum() or character.isspace())
        and character not in DEFAULT_SEPARATORS[1]
    )


def _escaped(text: str, field: str, encoding: str) -> str:
    """`text` with the message's delimiters written as escape sequences, or as spaces when it declares no escape character."""
    escape = encoding[2] if len(encoding) > 2 else None
    sequences = {field: "F", encoding[0]: "S", encoding[1]: "R"}
    if escape:
        sequences[escape] = "E"
    if len(encoding) > 3:
        sequences[encoding[3]] = "T"
    replacements = {character: f"{escape}{code}{escape}" if escape else " " for character, code in sequences.items()}
    return "".join(replacements.get(character, character) for character in text)
