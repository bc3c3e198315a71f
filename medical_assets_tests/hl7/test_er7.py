"""ER7 syntax on hand-written messages: framing, separators, escapes, charsets, repetitions and dates."""

from datetime import datetime

import pytest

from medical_assets.hl7 import datatypes, encoding, er7

ADT = (
    "MSH|^~\\&|ADT1|GOOD HEALTH HOSPITAL|LAB|GHH|20240115093000||ADT^A01^ADT_A01|MSG00001|P|2.5.1",
    "EVN|A01|20240115093000",
    "PID|1||4422~77^^^HOSP^MR||EVERYMAN^ADAM^A||19610615|M",
    "PV1|1|I|2000^2012^01",
)


def _messages(data: bytes) -> list[er7.Message]:
    return [er7.parse_message(raw) for raw in er7.split_messages(data).messages]


def _file(*messages: tuple[str, ...], separator: str = "\r") -> bytes:
    return "".join(separator.join(segments) + separator for segments in messages).encode()


@pytest.mark.parametrize("separator", ["\r", "\n", "\r\n"])
def test_segment_separators_are_all_accepted(separator):
    data = _file(ADT, ADT, separator=separator)
    split = er7.split_messages(data)
    assert [raw.index for raw in split.messages] == [0, 1]
    assert split.messages[1].byte_offset == data.index(b"MSH", 1)
    for message in _messages(data):
        assert message.names == ["MSH", "EVN", "PID", "PV1"]
        assert message.get("PV1", 3, 1, 2) == "2012"


def test_mixed_line_ends_and_blank_lines_are_ignored():
    data = ("\n\n" + "\r\n".join(ADT[:2]) + "\n\n" + ADT[2] + "\r" + ADT[3] + "\r\n\r\n  \r\n").encode()
    (message,) = _messages(data)
    assert message.names == ["MSH", "EVN", "PID", "PV1"]
    assert er7.split_messages(data).leading_bytes == 0


def test_mllp_frames_are_stripped():
    frame = b"\x0b" + "\r".join(ADT).encode() + b"\r\x1c\r"
    data = frame + frame
    split = er7.split_messages(data)
    assert [raw.byte_offset for raw in split.messages] == [1, len(frame) + 1]
    assert split.leading_bytes == 0
    for message in _messages(data):
        assert message.names == ["MSH", "EVN", "PID", "PV1"]
        assert message.get("PV1", 3, 1, 3) == "01"


def test_batch_envelope_segments_are_dropped():
    data = "\r".join(
        ["FHS|^~\\&|SENDER", "BHS|^~\\&|SENDER", *ADT, *ADT, "BTS|2", "FTS|1"]
    ).encode()
    split = er7.split_messages(data)
    assert split.leading_bytes == 0 and split.leading_envelope
    messages = _messages(data)
    assert [message.names for message in messages] == [["MSH", "EVN", "PID", "PV1"]] * 2


def test_byte_order_mark_is_stripped_and_offsets_stay_file_offsets():
    data = b"\xef\xbb\xbf" + _file(ADT, ADT)
    split = er7.split_messages(data)
    assert [raw.byte_offset for raw in split.messages] == [3, data.index(b"MSH", 4)]
    assert split.leading_bytes == 0
    assert _messages(data)[0].get("MSH", 3) == "ADT1"


def test_text_before_the_first_msh_is_counted():
    data = b"hello\r\n" + _file(ADT)
    split = er7.split_messages(data)
    assert split.leading_bytes == len(b"hello")
    assert split.messages[0].byte_offset == 7


def test_field_numbering_of_msh_and_other_segments():
    (message,) = _messages(_file(ADT))
    assert message.get("MSH", 1) == "|"
    assert message.get("MSH", 2) == "^~\\&"
    assert message.get("MSH", 3) == "ADT1"
    assert message.get("MSH", 9, 1, 2) == "A01"
    assert message.get("MSH", 10) == "MSG00001"
    assert message.get("MSH", 12) == "2.5.1"
    assert message.get("EVN", 1) == "A01"
    assert message.get("PID", 8) == "M"
    assert message.get("PID", 9) is None  # absent
    assert message.get("PID", 2) is None  # empty
    assert message.get("ZZZ", 1) is None  # no such segment


def test_other_encoding_characters():
    segments = (
        "MSH#$*@!#APP#FAC#####ORU$R01$ORU_R01#C3#P#2.7",
        "PID#1##ID1$$$H$MR*ID2$$$H$SS##DOE!SMITH$Q",
        "OBX#1#ST#GLU$Glucose$LN##a@F@b@S@c@T@d@R@e@E@f#mg/dl",
    )
    (message,) = _messages(_file(segments))
    separators = message.separators
    assert (separators.field, separators.component, separators.repetition) == ("#", "$", "*")
    assert (separators.escape, separators.subcomponent) == ("@", "!")
    assert message.get("MSH", 9, 1, 1) == "ORU" and message.get("MSH", 9, 1, 3) == "ORU_R01"
    assert message.get("MSH", 12) == "2.7"
    assert message.get("PID", 3, 2, 5) == "SS"
    assert message.get("PID", 5, 1, 1, 1) == "DOE"
    assert message.get("PID", 5, 1, 1, 2) == "SMITH"
    assert message.get("PID", 5, 1, 2) == "Q"
    assert message.get("OBX", 5) == "a#b$c!d*e@f"


def test_encoding_characters_of_two_to_five_characters():
    two = _messages(_file(("MSH|^~|A|B|||20240101||ADT^A01|1|P|2.1", "PID|1||X\\Y&Z")))[0]
    assert two.separators.escape is None and two.separators.subcomponent is None
    assert two.get("PID", 3) == "X\\Y&Z"  # neither escape nor subcomponent is a delimiter here
    five = _messages(_file(("MSH|^~\\&#|A|B|||20240101||ADT^A01|1|P|2.7", "PID|1||X#")))[0]
    assert five.separators.truncation == "#"
    assert five.get("PID", 3) == "X#"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("MSHA^~\\&|X", "MSH-1 (field separator) is a letter or digit"),
        ("MSH ^~\\& X", "MSH-1 (field separator) is whitespace"),
        ("MSH|^|X", "at least 2"),
        ("MSH||X", "has 0 characters"),
        ("MSH|^^\\&|X", "more than one delimiter"),
        ("MSH|^~\\^|X", "more than one delimiter"),
        ("MSH|^1\\&|X", "MSH-2 repetition separator is a letter or digit"),
        ("MSH|^ \\&|X", "MSH-2 repetition separator is whitespace"),
        ("MSH|^~\\&ABCD|X", "at most 5"),
        ("MSH", "ends before MSH-1"),
    ],
)
def test_unusable_separators_are_rejected(header, reason):
    (raw,) = er7.split_messages(header.encode() + b"\rPID|1\r").messages
    with pytest.raises(er7.ER7Error, match=reason.replace("(", r"\(").replace(")", r"\)")):
        er7.parse_message(raw)


@pytest.mark.parametrize(
    ("escaped", "plain"),
    [
        ("a\\F\\b", "a|b"),
        ("a\\S\\b", "a^b"),
        ("a\\T\\b", "a&b"),
        ("a\\R\\b", "a~b"),
        ("a\\E\\b", "a\\b"),
        ("\\X41\\\\X4243\\", "ABC"),
        ("\\XC3BC\\", "ü"),  # UTF-8 bytes, the default charset
        ("line\\.br\\next", "line\nnext"),
        ("\\H\\bold\\N\\ plain", "bold plain"),
        ("\\C2842\\x\\M244222\\y\\M2442\\", "xy"),
        ("\\Z99\\kept", "\\Z99\\kept"),  # unknown: kept as written
        ("\\XZZ\\kept", "\\XZZ\\kept"),  # not hexadecimal: kept
        ("open\\F", "open\\F"),  # unterminated: kept
        ("\\E\\F\\E\\ literal", "\\F\\ literal"),
        ("no escapes at all", "no escapes at all"),
    ],
)
def test_escape_sequences(escaped, plain):
    separators = er7.read_separators("MSH|^~\\&|")
    assert encoding.unescape(escaped, separators) == plain


def test_escapes_are_decoded_after_splitting():
    (message,) = _messages(_file(("MSH|^~\\&|A|B|||20240101||ORU^R01|1|P|2.5", r"OBX|1|ST|X^Y||1\S\2^3\T\4&5|")))
    assert message.get("OBX", 5, 1, 1) == "1^2"
    assert message.get("OBX", 5, 1, 2) == "3&4"
    assert message.get("OBX", 5, 1, 2, 2) == "5"
    assert message.segment("OBX").components(5) == ["1^2", "3&4&5"]


def test_hex_escape_uses_the_message_charset():
    latin = _file(("MSH|^~\\&|A|B|||20240101||ADT^A01|1|P|2.5||||||8859/1", r"PID|1||1||M\XFC\ller"))
    utf8 = _file(("MSH|^~\\&|A|B|||20240101||ADT^A01|1|P|2.5||||||UNICODE UTF-8", r"PID|1||1||M\XC3BC\ller"))
    assert _messages(latin)[0].get("PID", 5) == _messages(utf8)[0].get("PID", 5) == "Müller"


def test_repetitions_and_the_medical_record_number_need_not_come_first():
    (message,) = _messages(_file(ADT))
    pid = message.segment("PID")
    assert pid.repetition_count(3) == 2
    assert pid.get(3, 1) == "4422"
    assert pid.get(3, 2, 1) == "77"
    assert pid.get(3, 2, 5) == "MR"
    assert pid.get(3, 3) is None
    assert pid.get(3, None) == "4422~77^^^HOSP^MR"  # None: the field unsplit


def test_subcomponents():
    segments = ("MSH|^~\\&|A|B|||20240101||ADT^A01|1|P|2.5", "PID|1||1||VAN DER BERG&VAN DER&BERG^ANNA")
    (message,) = _messages(_file(segments))
    assert message.get("PID", 5, 1, 1, 1) == "VAN DER BERG"
    assert message.get("PID", 5, 1, 1, 3) == "BERG"
    assert message.get("PID", 5, 1, 1, None) == "VAN DER BERG&VAN DER&BERG"
    assert message.get("PID", 5, 1, 1, 4) is None


def test_latin1_declared_in_msh18():
    data = "\r".join(
        ["MSH|^~\\&|A|B|||20240101||ADT^A01|1|P|2.3||||||8859/1", "PID|1||1||Müller^Jürgen"]
    ).encode("latin-1")
    assert b"M\xfcller" in data
    (message,) = _messages(data)
    assert message.charset == "8859/1"
    assert message.codec == "latin-1"
    assert message.get("PID", 5, 1, 1) == "Müller"
    assert message.get("PID", 5, 1, 2) == "Jürgen"


def test_utf8_declared_and_undeclared():
    declared = "\r".join(
        ["MSH|^~\\&|A|B|||20240101||ADT^A01|1|P|2.8||||||UNICODE UTF-8", "PID|1||1||ŁUKASZEWSKA^ZOË"]
    ).encode()
    undeclared = "\r".join(["MSH|^~\\&|A|B|||20240101||ADT^A01|1|P|2.5", "PID|1||1||NGUYỄN^THỊ"]).encode()
    (first,) = _messages(declared)
    (second,) = _messages(undeclared)
    assert first.charset == "UNICODE UTF-8" and first.get("PID", 5) == "ŁUKASZEWSKA"
    assert second.charset is None and second.get("PID", 5, 1, 2) == "THỊ"


def test_undeclared_non_utf8_bytes_fall_back_to_cp1252():
    data = "\r".join(["MSH|^~\\&|A|B|||20240101||ADT^A01|1|P|2.5", "PID|1||1||O’NEIL"]).encode("cp1252")
    (message,) = _messages(data)
    assert message.get("PID", 5) == "O’NEIL"


def test_declared_charset_that_does_not_fit_still_decodes():
    data = "\r".join(["MSH|^~\\&|A|B|||20240101||ADT^A01|1|P|2.5||||||UNICODE UTF-8", "PID|1||1||É"]).encode(
        "latin-1"
    )
    (message,) = _messages(data)
    assert message.get("PID", 5) == "É"


def test_charset_per_message_in_one_file():
    latin = "\r".join(["MSH|^~\\&|A|B|||20240101||ADT^A01|1|P|2.5||||||8859/1", "PID|1||1||GRÜN"]).encode("latin-1")
    utf8 = "\r".join(["MSH|^~\\&|A|B|||20240101||ADT^A01|2|P|2.5||||||UNICODE UTF-8", "PID|1||2||GRÜN"]).encode()
    first, second = _messages(latin + b"\r" + utf8 + b"\r")
    assert first.get("PID", 5) == second.get("PID", 5) == "GRÜN"


def test_z_segments_and_repeated_segments_in_order():
    segments = (
        "MSH|^~\\&|A|B|||20240101||ORU^R01|1|P|2.5",
        "PID|1||1",
        "ZPI|custom^value",
        "OBX|1|NM|A||1",
        "ZPI|second",
        "OBX|2|NM|B||2",
    )
    (message,) = _messages(_file(segments))
    assert message.names == ["MSH", "PID", "ZPI", "OBX", "ZPI", "OBX"]
    assert [segment.get(1) for segment in message.segments("ZPI")] == ["custom", "second"]
    assert [segment.get(5) for segment in message.segments("OBX")] == ["1", "2"]
    assert len(message.segments()) == len(message) == 6


@pytest.mark.parametrize("version", ["2.1", "2.3", "2.3.1", "2.4", "2.5", "2.6", "2.7", "2.7.1", "2.8"])
def test_versions(version):
    (message,) = _messages(_file((f"MSH|^~\\&|A|B|||20240101||ADT^A01|1|P|{version}", "PID|1||1")))
    assert message.get("MSH", 12) == version


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024", datetime(2024, 1, 1)),
        ("202403", datetime(2024, 3, 1)),
        ("20240315", datetime(2024, 3, 15)),
        ("2024031509", datetime(2024, 3, 15, 9)),
        ("202403150930", datetime(2024, 3, 15, 9, 30)),
        ("20240315093015", datetime(2024, 3, 15, 9, 30, 15)),
        ("20240315093015.1", datetime(2024, 3, 15, 9, 30, 15, 100000)),
        ("20240315093015.1234", datetime(2024, 3, 15, 9, 30, 15, 123400)),
        ("20240315093015+0100", datetime(2024, 3, 15, 9, 30, 15)),  # offset ignored: wall clock as sent
        ("20240315093015.12-0500", datetime(2024, 3, 15, 9, 30, 15, 120000)),
        ("202403150930-0500", datetime(2024, 3, 15, 9, 30)),
        ("20240315093015^S", datetime(2024, 3, 15, 9, 30, 15)),  # TS degree of precision
        ("", None),
        (None, None),
        ("20241315", None),  # month 13
        ("20240230", None),  # February 30
        ("2024031", None),  # odd length
        ("20240315093015+01", None),  # short offset
        ("202403150930.5", None),  # fraction without seconds
        ("2024-03-15", None),
        ("tomorrow", None),
    ],
)
def test_parse_datetime(value, expected):
    assert datatypes.parse_datetime(value) == expected


def test_parse_datetime_uses_the_message_component_separator():
    assert datatypes.parse_datetime("20240315093015$S", "$") == datetime(2024, 3, 15, 9, 30, 15)
