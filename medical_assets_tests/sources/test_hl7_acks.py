"""HL7 acknowledgements: the MSH read from a received message, and the ACK built from it, checked with python-hl7's parser."""

from datetime import datetime, timedelta, timezone

import hl7
import pytest

from medical_assets.sources.hl7_acks import (
    ACCEPTED,
    ERROR,
    MESSAGE_TOO_LARGE,
    NOT_STORED,
    REJECTED,
    acknowledgement,
    from_header,
    next_control_id,
    read_header,
)
from medical_assets_tests.hl7_samples import MESSY_DISCHARGE

ADMISSION = (
    b"MSH|^~\\&|ADT|GENERAL_HOSPITAL|EMR|CARDIOLOGY|20240305083000||ADT^A01^ADT_A01|CTRL0001|P|2.5\r"
    b"EVN|A01|20240305083000\rPID|1||123456^^^GH^MR||DOE^JANE\r"
)
NOW = datetime(2024, 3, 5, 8, 30, 1, tzinfo=timezone(timedelta(hours=1)))


def parsed(ack: bytes) -> hl7.Message:
    assert ack.endswith(b"\r") and b"\n" not in ack
    return hl7.parse(ack.decode("latin-1"))


def field(message: hl7.Message, segment: str, number: int) -> str:
    return str(message.segment(segment)[number])


def with_msh(header: str, rest: bytes = b"\rPID|1\r") -> bytes:
    return header.encode() + rest


def test_an_accepted_message_gets_aa_with_the_systems_swapped_and_its_control_id():
    ack = parsed(acknowledgement(read_header(ADMISSION), ACCEPTED, now=NOW))

    assert [field(ack, "MSH", n) for n in (3, 4, 5, 6)] == ["EMR", "CARDIOLOGY", "ADT", "GENERAL_HOSPITAL"]
    assert field(ack, "MSH", 7) == "20240305083001+0100"
    assert field(ack, "MSH", 9) == "ACK^A01^ACK"
    assert field(ack, "MSH", 10) not in ("", "CTRL0001")
    assert (field(ack, "MSH", 11), field(ack, "MSH", 12)) == ("P", "2.5")
    assert (field(ack, "MSA", 1), field(ack, "MSA", 2)) == ("AA", "CTRL0001")
    assert [str(segment[0]) for segment in ack] == ["MSH", "MSA"]


def test_the_ack_uses_the_message_own_delimiters():
    message = MESSY_DISCHARGE.strip(b"\x0b\x1c\r")  # '#' fields, '$' components, \n segment ends
    header = read_header(message)
    ack = acknowledgement(header, ACCEPTED)

    assert ack.startswith(b"MSH#$~\\@#EMR#ONCOLOGY#ADT#MEDICAL_CENTER#")
    assert b"##ACK$A03$ACK#" in ack
    assert ack.endswith(b"\rMSA#AA#CTRL0003\r")
    assert header.sender == "ADT|MEDICAL_CENTER"  # joined with "|" whatever the message's field separator


@pytest.mark.parametrize("ending", [b"\r", b"\n", b"\r\n"])
def test_the_header_ends_at_any_segment_end(ending):
    header = read_header(ADMISSION.replace(b"\r", ending))
    assert header.problem is None
    assert (header.control_id, header.field(12), header.trigger_event) == ("CTRL0001", "2.5", "A01")


def test_a_byte_order_mark_and_blank_lines_before_the_msh_are_not_part_of_the_message():
    assert from_header(b"\xef\xbb\xbf\r\n" + ADMISSION) == ADMISSION
    assert read_header(b"\r\n\r\n" + ADMISSION).control_id == "CTRL0001"


def test_the_sender_is_msh3_and_msh4_and_non_ascii_names_go_back_byte_for_byte():
    message = with_msh("MSH|^~\\&|LAB^1.2.3^ISO|HÔPITAL|EMR|CARD|20240305||ORU^R01|9|P|2.5.1||||||UNICODE UTF-8")
    header = read_header(message)
    ack = acknowledgement(header, ACCEPTED)

    assert header.sender == "LAB^1.2.3^ISO|HÔPITAL".encode().decode("latin-1")
    assert b"|EMR|CARD|LAB^1.2.3^ISO|" + "HÔPITAL".encode() + b"|" in ack
    assert ack.split(b"\r")[0].endswith(b"|P|2.5.1||||||UNICODE UTF-8")


@pytest.mark.parametrize(
    ("msh15_16", "outcome", "expected"),
    [
        ("|AL|NE", ACCEPTED, "CA"),
        ("||AL", ACCEPTED, "CA"),  # MSH-16 alone asks for enhanced mode; MSH-15 empty means always
        ("|AL|AL", REJECTED, "CR"),
        ("|ER|NE", ERROR, "CE"),
        ("|SU|NE", ACCEPTED, "CA"),
        ("|NE|AL", ACCEPTED, None),
        ("|NE|AL", REJECTED, None),
        ("|ER|AL", ACCEPTED, None),
        ("|SU|AL", REJECTED, None),
        ("||", ACCEPTED, "AA"),
        ("||", REJECTED, "AR"),
    ],
)
def test_enhanced_mode_commit_acks_follow_msh15(msh15_16, outcome, expected):
    message = with_msh(f"MSH|^~\\&|ADT|GH|EMR|CARD|20240305||ADT^A01|77|P|2.5||{msh15_16}")
    ack = acknowledgement(read_header(message), outcome, NOT_STORED if outcome != ACCEPTED else None)
    if expected is None:
        assert ack is None
    else:
        assert field(parsed(ack), "MSA", 1) == expected
        assert field(parsed(ack), "MSA", 2) == "77"


def test_a_message_without_a_control_id_gets_ae_with_an_err_segment():
    header = read_header(with_msh("MSH|^~\\&|ADT|GH|EMR|CARD|20240305||ADT^A01||P|2.5"))
    ack = parsed(acknowledgement(header, ERROR, header.problem))

    assert (field(ack, "MSA", 1), field(ack, "MSA", 2)) == ("AE", "")
    assert field(ack, "MSH", 5) == "ADT"
    assert field(ack, "ERR", 2) == "MSH^1^10"
    assert field(ack, "ERR", 3) == "101^Required field missing^HL70357"
    assert field(ack, "ERR", 4) == "E"
    assert "MSH-10" in field(ack, "ERR", 8)


def test_a_message_without_a_message_type_is_an_error_too():
    header = read_header(with_msh("MSH|^~\\&|ADT|GH|EMR|CARD|20240305|||5|P|2.5"))
    assert header.problem.code == 101 and header.problem.location == "MSH^1^9"
    assert field(parsed(acknowledgement(header, ERROR, header.problem)), "MSH", 9) == "ACK"


def test_a_message_that_does_not_begin_with_msh_gets_a_minimal_ae():
    header = read_header(b"PID|1||123456^^^GH^MR||DOE^JANE\rMSH|^~\\&|ADT\r")
    ack = acknowledgement(header, ERROR, header.problem)

    assert ack.startswith(b"MSH|^~\\&|||||")
    assert field(parsed(ack), "ERR", 3) == "100^Segment sequence error^HL70357"
    assert b"DOE" not in ack and b"123456" not in ack  # nothing of the message is echoed


@pytest.mark.parametrize("header_line", ["MSHX^~\\&|ADT|GH", "MSH", "MSH |^~\\&", ""])
def test_without_a_usable_field_separator_the_ack_is_minimal_with_default_delimiters(header_line):
    header = read_header(with_msh(header_line))
    ack = acknowledgement(header, ERROR, header.problem)
    assert ack.startswith(b"MSH|^~\\&|||||")
    assert field(parsed(ack), "MSA", 1) == "AE"


def test_with_a_readable_field_separator_but_bad_encoding_characters_the_systems_are_still_named():
    header = read_header(with_msh("MSH|^|ADT|GH|EMR|CARD|20240305||ADT^A01|CTRL9|P|2.5"))
    ack = parsed(acknowledgement(header, ERROR, header.problem))
    assert header.problem.code == 102
    assert (field(ack, "MSH", 5), field(ack, "MSA", 2), field(ack, "MSA", 1)) == ("ADT", "CTRL9", "AE")


def test_error_texts_are_escaped_in_the_message_delimiters():
    header = read_header(with_msh("MSH|^~|ADT|GH|EMR|CARD|20240305||ADT^A01|1|P|2.5"))  # no escape character
    too_large = acknowledgement(header, REJECTED, MESSAGE_TOO_LARGE)
    assert too_large.split(b"\r")[2].endswith(b"|message too large")

    clash = read_header(with_msh("MSH|^~\\&|||||||"))  # separators fine, fields empty
    ack = acknowledgement(clash, ERROR, type(MESSAGE_TOO_LARGE)(207, "Application internal error", "a|b^c"))
    assert b"|a\\F\\b\\S\\c" in ack


def test_storage_failure_and_oversized_frames_are_rejected_with_ar():
    header = read_header(ADMISSION)
    for problem in (NOT_STORED, MESSAGE_TOO_LARGE):
        ack = parsed(acknowledgement(header, REJECTED, problem))
        assert (field(ack, "MSA", 1), field(ack, "MSA", 2)) == ("AR", "CTRL0001")
        assert field(ack, "ERR", 3).startswith("207^")


def test_ack_control_ids_are_unique_and_fit_msh10():
    ids = [next_control_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(value) <= 20 and value.isdigit() for value in ids)
