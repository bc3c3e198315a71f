"""parse_hl7_file: every column from its HL7 field, and every message in exactly one of messages or errors."""

import random
from datetime import datetime

import pytest

from medical_assets.hl7 import ParsedHL7File, datatypes, message_rows, parse_hl7_file, reader, tables

ORU = (
    "MSH|^~\\&|GHH LAB|ELAB-3|GHH OE|BLDG4|20240215093000||ORU^R01^ORU_R01|CNTRL-3456|P|2.5.1||||||UNICODE UTF-8",
    "PID|1||555-44-4444^^^SSA^SS~PATID1234^^^GHH^MR||EVERYWOMAN^EVE^E^^^^L||19620320|F|||"
    "153 FERNWOOD DR.^^STATESVILLE^OH^35292||(206)3345232|||||AC555444444|444-33-3333",
    "OBX|1|ST|NOTE^Note before any order||free text",
    "OBR|1|845439^GHH OE|1045813^GHH LAB|15545^GLUCOSE",
    "OBX|1|SN|1554-5^GLUCOSE^LN||^182|mg/dl|70-105|H|||F|||20240215073000",
    "OBX|2|NM|2345-7^GLUCOSE FASTING^LN||98.5|mg/dl|70-105|N|||F",
    "OBR|2|845440^GHH OE|1045814^GHH LAB|24331-1^LIPID PANEL",
    "OBX|1|ST|2093-3^CHOLESTEROL^LN||high \\T\\ rising^see note|||A|||P",
    "OBX|2|NM|2571-8^TRIGLYCERIDE^LN||not done||||||X",
)
ADT = (
    "MSH|^~\\&|ADT1|GOOD HEALTH HOSPITAL|LAB|GHH|20240115093000||ADT^A01|MSG00001|P|2.3",
    "EVN|A01|20240115093000",
    "PID|1||4422||EVERYMAN^ADAM^A||19610615|M",
)
BROKEN_NAME = "SECRETNAME"
BROKEN_ID = "SECRET-ID-991"


def _file(*messages: tuple[str, ...]) -> bytes:
    return "".join("\r".join(segments) + "\r" for segments in messages).encode()


def _broken(header: str) -> tuple[str, ...]:
    return (header, f"PID|1||{BROKEN_ID}^^^H^MR||{BROKEN_NAME}^JOHN")


def _assert_schemas(parsed: ParsedHL7File) -> None:
    assert parsed.messages.schema.equals(tables.HL7_MESSAGES, check_metadata=True)
    assert parsed.lab_results.schema.equals(tables.HL7_LAB_RESULTS, check_metadata=True)
    assert parsed.errors.schema.equals(tables.HL7_ERRORS, check_metadata=True)


def _error_texts(parsed: ParsedHL7File) -> list[str]:
    return parsed.errors.column("error").to_pylist()


def test_message_columns_come_from_their_fields():
    parsed = parse_hl7_file(_file(ORU), "feed/oru.hl7")
    _assert_schemas(parsed)
    assert parsed.errors.num_rows == 0
    (row,) = parsed.messages.to_pylist()
    assert row == {
        "message_control_id": "CNTRL-3456",
        "message_type": "ORU^R01",
        "message_structure": "ORU_R01",
        "message_datetime": datetime(2024, 2, 15, 9, 30),
        "sending_application": "GHH LAB",
        "sending_facility": "ELAB-3",
        "receiving_application": "GHH OE",
        "receiving_facility": "BLDG4",
        "processing_id": "P",
        "hl7_version": "2.5.1",
        "character_set": "UNICODE UTF-8",
        "patient_id": "PATID1234",  # the MR repetition, although it comes second
        "patient_id_issuer": "GHH",  # PID-3.4 of that repetition, not the first's SSA
        "patient_id_type": "MR",
        "patient_family_name": "EVERYWOMAN",
        "patient_given_name": "EVE",
        "patient_middle_name": "E",
        "patient_birth_date": "19620320",
        "patient_gender": "F",
        "patient_street": "153 FERNWOOD DR.",
        "patient_city": "STATESVILLE",
        "patient_state": "OH",
        "patient_zip": "35292",
        "patient_phone": "(206)3345232",
        "patient_account_number": "AC555444444",
        "patient_ssn": "444-33-3333",
        "segment_count": 9,
        "source_file": "feed/oru.hl7",
        "message_index": 0,
    }


def test_lab_rows_carry_the_order_they_follow():
    parsed = parse_hl7_file(_file(ORU), "oru.hl7")
    rows = parsed.lab_results.to_pylist()
    assert [(r["placer_order_number"], r["filler_order_number"], r["universal_service_id"]) for r in rows] == [
        (None, None, None),  # OBX before any OBR
        ("845439", "1045813", "15545"),
        ("845439", "1045813", "15545"),
        ("845440", "1045814", "24331-1"),
        ("845440", "1045814", "24331-1"),
    ]
    assert all(r["message_control_id"] == "CNTRL-3456" and r["message_index"] == 0 for r in rows)
    glucose = rows[1]
    assert glucose == {
        "message_control_id": "CNTRL-3456",
        "source_file": "oru.hl7",
        "message_index": 0,
        "placer_order_number": "845439",
        "filler_order_number": "1045813",
        "universal_service_id": "15545",
        "set_id": "1",
        "value_type": "SN",
        "observation_code": "1554-5",
        "observation_name": "GLUCOSE",
        "coding_system": "LN",
        "value": "^182",
        "numeric_value": 182.0,
        "units": "mg/dl",
        "reference_range": "70-105",
        "abnormal_flag": "H",
        "result_status": "F",
        "observation_datetime": datetime(2024, 2, 15, 7, 30),
    }
    assert rows[2]["numeric_value"] == 98.5 and rows[2]["observation_datetime"] is None
    assert rows[3]["value"] == "high & rising^see note"  # unescaped, components joined by ^
    assert rows[3]["numeric_value"] is None  # ST is not numeric
    assert rows[4]["value"] == "not done" and rows[4]["numeric_value"] is None  # NM that does not parse


def test_message_type_without_trigger_event_and_message_without_pid():
    ack = ("MSH|^~\\&|A|B|C|D|20240101||ACK|A1|P|2.4", "MSA|AA|MSG00001")
    (row,) = parse_hl7_file(_file(ack), "ack.hl7").messages.to_pylist()
    assert row["message_type"] == "ACK"
    assert row["message_structure"] is None
    assert row["patient_id"] is None and row["patient_family_name"] is None


def test_other_separators_still_give_caret_joined_values():
    segments = (
        "MSH#$*@!#APP#FAC###20240101120000##ORU$R01#C9#P#2.7",
        "PID#1##ID7$$$H$MR##DOE!X$JANE",
        "OBR#1#P1#F1#GLU",
        "OBX#1#SN#GLU$Glucose$LN##>$5@S@x#mg/dl",
    )
    parsed = parse_hl7_file(_file(segments), "hash.hl7")
    assert parsed.errors.num_rows == 0
    (row,) = parsed.messages.to_pylist()
    assert (row["message_type"], row["patient_id"], row["patient_family_name"]) == ("ORU^R01", "ID7", "DOE")
    (lab,) = parsed.lab_results.to_pylist()
    assert lab["value"] == ">^5$x"
    assert lab["numeric_value"] is None  # a comparator makes it a range, not a number


def _identity(pid_3: str, sending_facility: str = "SENDING_FAC") -> tuple:
    header = f"MSH|^~\\&|APP|{sending_facility}|RCV|RFAC|20240101||ADT^A08|C1|P|2.5"
    data = _file((header, f"PID|1||{pid_3}||DOE^JANE"))
    read = []
    for parse in (parse_hl7_file, reader.parse_general):  # the fast path and its reference
        (row,) = parse(data, "f.hl7").messages.to_pylist()
        read.append((row["patient_id"], row["patient_id_issuer"], row["patient_id_type"]))
    assert read[0] == read[1]
    return read[0]


@pytest.mark.parametrize(
    "pid_3, expected",
    [
        ("12345^^^HOSP_A^MR", ("12345", "HOSP_A", "MR")),
        # The issuer of the MR repetition, never another repetition's.
        ("V1^^^VISITS^VN~12345^^^HOSP_A^MR", ("12345", "HOSP_A", "MR")),
        ("S1^^^SSA^SS~12345^^^^MR", ("12345", None, "MR")),
        # Without MR, the first repetition's.
        ("A1^^^FIRST^PI~A2^^^SECOND^PI", ("A1", "FIRST", "PI")),
        # HD: namespace ID & universal ID & its type; the namespace ID is the issuer.
        ("12345^^^HOSP_A&1.2.840.114350&ISO^MR", ("12345", "HOSP_A", "MR")),
        ("12345^^^&1.2.840.114350&ISO^MR", ("12345", None, "MR")),
        ("12345^^^ST \\T\\ MARY\\S\\S^MR", ("12345", "ST & MARY^S", "MR")),
        ("12345^^^^MR", ("12345", None, "MR")),
        ("12345", ("12345", None, None)),
    ],
)
def test_patient_id_issuer_is_pid_3_4_of_the_identifying_repetition(pid_3, expected):
    assert _identity(pid_3) == expected


def test_patient_id_issuer_is_not_filled_from_the_sending_facility():
    """The PHI column is a faithful copy: falling back to MSH-4 is the de-identification's choice, not the parse's."""
    assert _identity("12345^^^^MR", sending_facility="HOSP_A") == ("12345", None, "MR")
    (row,) = parse_hl7_file(_file(ADT), "adt.hl7").messages.to_pylist()  # a bare PID-3
    assert row["sending_facility"] == "GOOD HEALTH HOSPITAL" and row["patient_id_issuer"] is None


def test_same_mrn_of_two_issuers_stays_two_rows_with_their_issuers():
    """Two hospitals' MRN 12345: the issuer column is what tells them apart downstream."""
    header = "MSH|^~\\&|APP|{}|RCV|RFAC|20240101||ADT^A08|{}|P|2.5"
    data = _file(
        (header.format("HOSP_A", "C1"), "PID|1||12345^^^HOSP_A^MR||DOE^JANE"),
        (header.format("HOSP_B", "C2"), "PID|1||12345^^^HOSP_B^MR||ROE^RICHARD"),
    )
    rows = parse_hl7_file(data, "f.hl7").messages.to_pylist()
    assert [(row["patient_id"], row["patient_id_issuer"]) for row in rows] == [("12345", "HOSP_A"), ("12345", "HOSP_B")]


def test_a_broken_message_between_two_good_ones():
    broken = _broken("MSH|^~\\&|A|B|C|D|20240101||ADT^A01||P|2.5")  # MSH-10 empty
    data = _file(ADT, broken, ORU)
    parsed = parse_hl7_file(data, "mixed.hl7")
    _assert_schemas(parsed)
    assert parsed.messages.column("message_index").to_pylist() == [0, 2]
    (error,) = parsed.errors.to_pylist()
    assert error["message_index"] == 1
    assert error["byte_offset"] == len(_file(ADT))
    assert error["source_file"] == "mixed.hl7"
    assert error["error"] == "MSH-10 (message control ID) is empty"
    assert set(parsed.lab_results.column("message_index").to_pylist()) == {2}


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("MSH|^~\\&|A|B|C|D|20240101", "MSH segment is truncated after MSH-7"),
        ("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1", "MSH-12 (version ID) is missing"),
        ("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|", "MSH-12 (version ID) is missing"),
        ("MSH|^~\\&|A|B|C|D|20240101|||X1|P|2.5", "MSH-9 (message type) is empty"),
        ("MSH|^~\\&|A|B|C|D|20240101||^A01|X1|P|2.5", "MSH-9.1 (message code) is empty"),
        ("MSH|^~\\&|A|B|C|D|20240101||ADT^A01||P|2.5", "MSH-10 (message control ID) is empty"),
        ("MSHX^~\\&XAXB", "MSH-1 (field separator) is a letter or digit"),
        ("MSH|^^\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5", "more than one delimiter"),
        ("MSH|^|A|B|C|D|20240101||ADT^A01|X1|P|2.5", "MSH-2 (encoding characters) has 1 characters"),
        ("MSH", "MSH segment ends before MSH-1"),
    ],
)
def test_unreadable_headers_become_error_rows_without_content(header, reason):
    parsed = parse_hl7_file(_file(ADT, _broken(header), ADT), "f.hl7")
    _assert_schemas(parsed)
    assert parsed.messages.column("message_index").to_pylist() == [0, 2]
    (error,) = parsed.errors.to_pylist()
    assert error["message_index"] == 1
    assert reason in error["error"]
    for secret in (BROKEN_NAME, BROKEN_ID, "JOHN", "20240101", "ADT^A01", "X1"):
        assert secret not in error["error"]


def test_non_ascii_message_with_empty_encoding_characters():
    data = "MSH||A|B|||20240101||ADT^A01|1|P|2.5||||||8859/1\rPID|1||1||MÜLLER\r".encode("latin-1")
    (error,) = _error_texts(parse_hl7_file(data, "f.hl7"))
    assert error.startswith("MSH-2 (encoding characters) has 0 characters")


def test_unexpected_failure_in_one_message_is_reported_by_type_only(monkeypatch):
    original = message_rows._patient

    def failing_on_secret(fields, message):
        if BROKEN_NAME in fields[5]:
            raise ValueError(f"could not handle {fields[5]}")
        return original(fields, message)

    monkeypatch.setattr(message_rows, "_patient", failing_on_secret)
    header = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5"
    parsed = reader.parse_general(_file(ADT, _broken(header), ORU), "f.hl7")
    assert parsed.messages.column("message_index").to_pylist() == [0, 2]
    (error,) = _error_texts(parsed)
    assert error.startswith("unexpected ValueError while reading the message")
    assert BROKEN_NAME not in error and BROKEN_ID not in error


def test_failure_after_some_lab_rows_leaves_none_of_them(monkeypatch):
    monkeypatch.setattr(datatypes, "parse_numeric_value", lambda components: 1 / 0)
    parsed = reader.parse_general(_file(ORU, ADT), "f.hl7")
    assert parsed.messages.column("message_index").to_pylist() == [1]
    assert parsed.lab_results.num_rows == 0
    assert _error_texts(parsed) == [
        "unexpected ZeroDivisionError while reading the message: "
        "a parser bug, please report it with the file name and message index"
    ]


def test_empty_file():
    parsed = parse_hl7_file(b"", "empty.hl7")
    _assert_schemas(parsed)
    assert parsed.messages.num_rows == 0 and parsed.lab_results.num_rows == 0
    assert parsed.errors.to_pylist() == [
        {"source_file": "empty.hl7", "message_index": None, "byte_offset": 0, "error": "file is empty"}
    ]


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00",
        b"MSH|^~\\&|A|B\x00\x00garbage",
        b"\x00\x00\x00\x00",
    ],
)
def test_binary_file_is_one_error_row(data):
    parsed = parse_hl7_file(data, "image.png")
    _assert_schemas(parsed)
    assert parsed.messages.num_rows == 0
    (error,) = parsed.errors.to_pylist()
    assert error["message_index"] is None
    assert error["error"].startswith("file does not look like HL7")


def test_text_without_any_msh_is_one_error_row():
    parsed = parse_hl7_file(b"name,birth_date\nDOE,19700101\n", "notes.csv")
    (error,) = _error_texts(parsed)
    assert error == "file does not look like HL7: no line of its 29 bytes starts with MSH"
    assert "DOE" not in error


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\r\n \r\n\t\r\n", "file has no content other than whitespace"),
        (b"\xef\xbb\xbf\x0b\x1c\r", "file has no content other than whitespace"),
        (b"FHS|^~\\&|X\rBHS|^~\\&|X\rBTS|0\rFTS|1\r", "file has a batch envelope (FHS/BHS) but no MSH segment"),
    ],
)
def test_files_without_messages(data, reason):
    parsed = parse_hl7_file(data, "f.hl7")
    _assert_schemas(parsed)
    (error,) = parsed.errors.to_pylist()
    assert error["message_index"] is None
    assert error["error"].startswith(reason)


def test_trailing_nul_padding_is_tolerated():
    parsed = parse_hl7_file(_file(ADT) + b"\x00" * 16, "padded.hl7")
    assert parsed.errors.num_rows == 0
    assert parsed.messages.column("patient_gender").to_pylist() == ["M"]


def test_text_before_the_first_msh_has_its_own_error_row():
    data = b"Patient DOE called twice\r\n" + _file(ADT, ORU)
    parsed = parse_hl7_file(data, "f.hl7")
    assert parsed.messages.column("message_index").to_pylist() == [0, 1]
    (error,) = parsed.errors.to_pylist()
    assert error == {
        "source_file": "f.hl7",
        "message_index": None,
        "byte_offset": 0,
        "error": "24 bytes before the first MSH segment are not part of any message",
    }


def test_file_without_obx_has_typed_empty_lab_results():
    parsed = parse_hl7_file(_file(ADT, ADT), "adt.hl7")
    _assert_schemas(parsed)
    assert parsed.lab_results.num_rows == 0
    assert parsed.errors.num_rows == 0
    assert parsed.messages.column("message_index").to_pylist() == [0, 1]


def test_mllp_batch_file_with_bom():
    frames = b"".join(b"\x0b" + _file(message) + b"\x1c\r" for message in (ADT, ORU, ADT))
    data = b"\xef\xbb\xbfFHS|^~\\&|S\rBHS|^~\\&|S\r" + frames + b"BTS|3\rFTS|1\r"
    parsed = parse_hl7_file(data, "batch.hl7")
    assert parsed.errors.num_rows == 0
    assert parsed.messages.column("segment_count").to_pylist() == [3, 9, 3]
    assert parsed.lab_results.num_rows == 5


def test_every_message_is_in_exactly_one_table():
    good = [ADT, ORU]
    bad = [
        _broken("MSH|^~\\&|A|B|C|D|20240101"),
        _broken("MSH|^^\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5"),
        _broken("MSH|^~\\&|A|B|C|D|20240101||ADT^A01||P|2.5"),
        ("MSH",),
    ]
    sequence = [good[0], bad[0], good[1], bad[1], bad[2], good[0], bad[3], good[1], good[1]]
    data = b"leading junk\n" + _file(*sequence)
    parsed = parse_hl7_file(data, "mixed.hl7")
    read = parsed.messages.column("message_index").to_pylist()
    failed = [index for index in parsed.errors.column("message_index").to_pylist() if index is not None]
    assert sorted(read + failed) == list(range(len(sequence)))
    assert not set(read) & set(failed)
    assert failed == [1, 3, 4, 6]
    for error in parsed.errors.to_pylist():
        if error["message_index"] is not None:
            assert data[error["byte_offset"] : error["byte_offset"] + 3] == b"MSH"
    assert set(parsed.lab_results.column("message_index").to_pylist()) <= set(read)
    for text in _error_texts(parsed):
        assert BROKEN_NAME not in text and BROKEN_ID not in text


@pytest.mark.parametrize("seed", range(20))
def test_damaged_files_never_raise_and_lose_nothing(seed):
    """Bytes flipped, deleted and duplicated at random: every message still lands in one table."""
    rng = random.Random(seed)
    data = bytearray(_file(ADT, ORU, ADT, ORU))
    for _ in range(rng.randint(1, 30)):
        position = rng.randrange(len(data))
        action = rng.choice(("flip", "delete", "insert"))
        if action == "flip":
            data[position] = rng.randrange(1, 256)
        elif action == "delete":
            del data[position]
        else:
            data[position:position] = rng.choice([b"|", b"^", b"~", b"\\", b"&", b"\r", b"\rMSH", b"\xff"])
    parsed = parse_hl7_file(bytes(data), "damaged.hl7")
    _assert_schemas(parsed)
    read = parsed.messages.column("message_index").to_pylist()
    failed = [index for index in parsed.errors.column("message_index").to_pylist() if index is not None]
    assert sorted(read + failed) == list(range(len(read) + len(failed)))
    assert all(not text.startswith("unexpected") for text in _error_texts(parsed))


def test_many_messages_come_back_in_order():
    data = _file(*[ADT, ORU] * 1500)
    parsed = parse_hl7_file(data, "big.hl7")
    _assert_schemas(parsed)
    assert parsed.messages.column("message_index").to_pylist() == list(range(3000))
    assert parsed.lab_results.num_rows == 1500 * 5
    assert parsed.lab_results.column("message_index").to_pylist() == [i for i in range(1, 3000, 2) for _ in range(5)]


def test_inspect_shows_structure_and_values_only_on_request(tmp_path, capsys):
    from medical_assets.hl7.__main__ import main

    path = tmp_path / "feed.hl7"
    path.write_bytes(b"stray line\n" + _file(ADT, _broken("MSH|^~\\&|A|B|C|D|20240101||ADT^A01||P|2.5")))
    assert main(["inspect", str(path)]) == 0
    structure = capsys.readouterr().out
    assert "10 bytes before the first MSH segment are not part of any message" in structure
    assert "message 0 at byte 11" in structure
    assert "segments: MSH EVN PID" in structure
    assert "parsed: 1 message row, 0 OBX rows" in structure
    assert "error: MSH-10 (message control ID) is empty" in structure
    assert BROKEN_NAME not in structure and "EVERYMAN" not in structure
    assert main(["inspect", str(path), "--values"]) == 0
    assert "PID-5: EVERYMAN^ADAM^A" in capsys.readouterr().out
