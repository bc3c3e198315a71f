"""HL7 v2 encoding: a message's delimiters (MSH-1, MSH-2), its escape sequences, and the charsets MSH-18 names."""

from __future__ import annotations

# MSH-18 values of HL7 table 0211 that have a Python codec.
CHARSET_CODECS = {
    "ASCII": "ascii",
    "UNICODE": "utf-8",
    "UNICODE UTF-8": "utf-8",
    "8859/1": "latin-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
}

# Undeclared or unknown charsets: UTF-8 first (v2.8's preference), then the Windows and ISO
# Western codepages; latin-1 maps every byte, so decoding never fails.
FALLBACK_CODECS = ("utf-8", "cp1252", "latin-1")

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class Separators:
    """A message's delimiters from MSH-1 and MSH-2; escape, subcomponent and truncation are None when omitted."""

    __slots__ = (
        "field",
        "component",
        "repetition",
        "escape",
        "subcomponent",
        "truncation",
        "encoding_characters",
        "replacements",
        "beyond_components",
    )

    def __init__(self, field: str, encoding_characters: str) -> None:
        self.field = field
        self.encoding_characters = encoding_characters
        self.component = encoding_characters[0]
        self.repetition = encoding_characters[1]
        self.escape = encoding_characters[2] if len(encoding_characters) > 2 else None
        self.subcomponent = encoding_characters[3] if len(encoding_characters) > 3 else None
        self.truncation = encoding_characters[4] if len(encoding_characters) > 4 else None
        # Escape sequences with a fixed meaning; highlighting (H, N) has none in plain text.
        self.replacements = {"F": field, "S": self.component, "R": self.repetition, ".br": "\n", "H": "", "N": ""}
        if self.escape:
            self.replacements["E"] = self.escape
        if self.subcomponent:
            self.replacements["T"] = self.subcomponent
        # The characters that make a value more than components, for `in` tests without None checks:
        # a carriage return stands in for an omitted one, as no segment contains it.
        self.beyond_components = (self.repetition, self.subcomponent or "\r", self.escape or "\r")

    def describe(self) -> str:
        roles = (
            ("field", self.field),
            ("component", self.component),
            ("repetition", self.repetition),
            ("escape", self.escape),
            ("subcomponent", self.subcomponent),
            ("truncation", self.truncation),
        )
        return " ".join(f"{role} {character!r}" for role, character in roles if character)

    def __repr__(self) -> str:
        return f"Separators({self.field!r}, {self.encoding_characters!r})"


def codec_for_charset(charset: str | None) -> str | None:
    """The Python codec of an MSH-18 value, or None when undeclared or unknown (decoding then falls back)."""
    if not charset:
        return None
    return CHARSET_CODECS.get(charset.strip().upper())


def decode(data: bytes, codec: str | None) -> tuple[str, str]:
    """The text of `data` and the codec that decoded it: `codec` first, then the fallbacks; never raises."""
    for candidate in (codec, *FALLBACK_CODECS) if codec else FALLBACK_CODECS:
        try:
            return data.decode(candidate), candidate
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1"), "latin-1"


def unescape(value: str, separators: Separators, codec: str | None = None) -> str:
    r"""Replace the escape sequences of one leaf value: \F\ \S\ \T\ \R\ \E\ \Xhh..\ \.br\ \H\ \N\ \Cxxyy\ \Mxxyyzz\."""
    escape = separators.escape
    if not escape or escape not in value:
        return value
    # Splitting on the escape character alternates text and sequences: text, seq, text, seq, ...
    pieces = value.split(escape)
    last = len(pieces) - 1
    decoded = [pieces[0]]
    position = 1
    while position <= last:
        if position == last:
            decoded.append(escape + pieces[position])  # unterminated: kept as written
            break
        decoded.append(_escape_sequence(pieces[position], separators, codec))
        decoded.append(pieces[position + 1])
        position += 2
    return "".join(decoded)


def _escape_sequence(sequence: str, separators: Separators, codec: str | None) -> str:
    replacement = separators.replacements.get(sequence)
    if replacement is not None:
        return replacement
    kind, digits = sequence[:1], sequence[1:]
    if digits and all(digit in _HEX_DIGITS for digit in digits):
        if kind == "X" and len(digits) % 2 == 0:
            return decode(bytes.fromhex(digits), codec)[0]
        # Switching character sets in-line (ISO 2022 escapes) changes no text that is kept.
        if (kind == "C" and len(digits) == 4) or (kind == "M" and len(digits) in (4, 6)):
            return ""
    return separators.escape + sequence + separators.escape
