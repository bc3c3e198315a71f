"""The columnar fast path gives exactly the general reader's tables, or declines a file it cannot read alike."""

import random

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from benchmarks.tutorial import tutorial_message
from medical_assets.engine import jobs, multitable
from medical_assets.hl7 import datatypes, fastpath, parse_hl7_file, reader, tables
from medical_assets.synthetic.hl7 import HL7CorpusSettings, render_file
from medical_assets_tests.hl7.test_differential import CORPUS
from medical_assets_tests.hl7.test_orders_and_encounters import (
    ADT_A01,
    ADT_A03,
    RDE_TWO_ORDERS,
    RDE_WITH_TQ1,
    RDE_WITHOUT_ORC,
)
from medical_assets_tests.hl7.test_reader import ADT, ORU

EDGE_CASES = {
    "mr repetition last, escapes in names and ids": (
        "MSH|^~\\&|LAB\\T\\CO|NORTH \\F\\ SOUTH|EHR|CLINIC|20240315093015||ORU^R01|CTRL\\E\\42|P|2.6",
        "PID|1||X\\T\\1^^^H^PI~X2^^^H^SS~X3^^^H^MR||O\\S\\BRIEN&O&BRIEN^MARY\\R\\ANN^C||19800229|F",
        "OBX|1|ST|NOTE^REMARK^L||high \\T\\ rising^see \\S\\ note&more~second|\\X6D67\\/dL|< 5|H\\F\\L|||C",
    ),
    "issuers escaped, with subcomponents, absent from the mr repetition": (
        "MSH|^~\\&|A|B|C|D|20240101||ADT^A08|I1|P|2.5",
        "PID|1||A1^^^GEN\\T\\HOSP&1.2&ISO^PI~A2^^^ST\\F\\MARY&2.16&ISO^MR||DOE",
        "MSH|^~\\&|A|B|C|D|20240101||ADT^A08|I2|P|2.5",
        "PID|1||B1^^^SSA^SS~B2^^^&2.16&ISO^MR~B3^^^LATER^MR||ROE",
        "MSH|^~\\&|A|B|C|D|20240101||ADT^A08|I3|P|2.5",
        "PID|1||C1^^^^PI~C2^^^NOT_MR^XX||POE",
    ),
    "mr type escaped": ("MSH|^~\\&|A|B|C|D|20240101||ADT^A08|E2|P|2.5", "PID|1||A1^^^H^\\X4D52\\~A2^^^H^MR||DOE"),
    "no pid, short segments, obx before any obr": (
        "MSH|^~\\&|A|B|C|D|2024||ORU^R01|S1|P|2.4",
        "OBX",
        "OBX|1",
        "OBX|2|NM|GLU||5",
        "OBR|1|P1",
        "OBX|3|SN|GLU||^182",
        "OBX|4|NM|GLU||not a number",
        "OBX|5|SN|GLU||<^5",
        "OBX|6|NM|GLU||1e3|||||||||20240230120000",
        "OBX|7|NM|GLU||inf|||||||||202402",
        "OBX|8|NM|GLU|| 5|||||||||20240101123045.1234",
        "OBX|9|NM|GLU||1_000|||||||||20240101123045+0100",
        "OBX|10|NM|GLU||-0|||||||||20240101123045-05",
        "OBX|11|NM|GLU||+.5|||||||||00000101000000",
        "OBX|12|NM|GLU||=^7|||||||||99991231235959",
        "OBX|13|SN|GLU||\\X35\\|||||||||2024010112",
    ),
    "message type with subcomponents, escaped charset, no trigger": (
        "MSH|^~\\&|A|B|C|D|20240101||ADT&X^A01&Y^ADT_A01|T1|P|2.5|||||UNICODE\\E\\ UTF-8",
        "MSH|^~\\&|A|B|C|D|20240101||ACK|T2|P|2.5",
        "MSH|^~\\&|A|B|C|D|20240101||\\T\\ADT^A\\T\\01|T3|P|2.5",
    ),
    "segments without fields and a z-segment": (
        "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|Z1|P|2.5",
        "EVN",
        "PID",
        "ZPI|custom|data",
        "PV1",
    ),
    "evn with empty event type, pv1 with repetitions": (
        "MSH|^~\\&|A|B|C|D|20240101||ADT^A02|V1|P|2.5",
        "EVN||20240101",
        "PV1|1|I~O|W^1^A~X^2^B||||D1^DOC~D2^DOC2",
        "PV1|2|E",
        "EVN|A99",
    ),
    "orders with timing before the first rxe and after others": (
        "MSH|^~\\&|A|B|C|D|20240101||RDE^O11|R1|P|2.5",
        "TQ1|1||Q1H",
        "RXR|IM",
        "RXE|1^QD^^20240101|X^Y",
        "ORC|NW|2",
        "RXE|1^TID^^2024010108&L|Z^W|1\\E\\2|3.5|mg",
        "TQ1|1||Q2H&x|||||20240102|bad",
        "TQ1|2||Q3H",
        "RXR|PO&x",
        "RXR|IV",
    ),
}


def _file(*messages: tuple[str, ...], separator: str = "\r") -> bytes:
    return "".join(separator.join(segments) + separator for segments in messages).encode()


def _assert_same_as_general(data: bytes, source_file: str = "f.hl7") -> None:
    fast = fastpath.read_tables(data, source_file)
    assert fast is not None, "the fast path declined"
    general = reader.parse_general(data, source_file).tables()
    assert list(fast) == list(tables.TABLES)
    for name, table in general.items():
        assert fast[name].schema.equals(tables.TABLES[name], check_metadata=True), name
        assert fast[name].equals(table), (name, _first_difference(fast[name], table))


def _first_difference(fast, general):
    for column in general.column_names:
        ours, theirs = fast.column(column).to_pylist(), general.column(column).to_pylist()
        if ours != theirs:
            rows = [row for row in range(min(len(ours), len(theirs))) if ours[row] != theirs[row]]
            return column, len(ours), len(theirs), [(ours[row], theirs[row]) for row in rows[:3]]
    return None


@pytest.mark.parametrize("file_index", range(4))
def test_synthetic_files(file_index):
    settings = HL7CorpusSettings(total_messages=1_600, messages_per_file=400, seed=3)
    _assert_same_as_general(render_file(settings, file_index), f"adt_lab_pharm_{file_index:05d}.hl7")


def test_synthetic_corpus_includes_utf8_names_and_mr_choices():
    data = b"".join(render_file(HL7CorpusSettings(total_messages=1_600, messages_per_file=400, seed=3), i) for i in range(4))
    assert not data.isascii()
    fast = fastpath.read_tables(data, "all.hl7")
    assert fast is not None
    names = fast["hl7_messages"].column("patient_family_name").to_pylist()
    assert any(not name.isascii() for name in names)
    assert b"^VN~" in data and b"^MR~" in data  # MR first and MR second both occur


def test_tutorial_corpus_one_message_per_line():
    _assert_same_as_general("".join(tutorial_message(i) + "\n" for i in range(400)).encode(), "tutorial.hl7")


@pytest.mark.parametrize("case", list(EDGE_CASES))
def test_edge_cases(case):
    _assert_same_as_general(_file(EDGE_CASES[case], ADT))


def test_escaped_identifiers_in_files_without_any_repetition():
    data = _file(
        ("MSH|^~\\&|A|B|C|D|20240101||ADT^A08|E3|P|2.5", "PID|1||A\\T\\1^^^H^\\X4D52\\||DOE"),
        ("MSH|^~\\&|A|B|C|D|20240101||ADT^A08|E4|P|2.5", "PID|1||B2^^^H^MR||ROE", "OBX|1|ST|X||\\F\\"),
    )
    assert data.count(b"~") == 2  # MSH-2 only
    _assert_same_as_general(data)


def test_issuers_in_files_without_any_repetition():
    """PID-3 with one repetition is read by the vectorised lookup, not the repetition search: issuers alike."""
    header = "MSH|^~\\&|A|B|C|D|20240101||ADT^A08|{}|P|2.5"
    plain = _file(
        (header.format("P1"), "PID|1||12345^^^HOSP_A&1.2.3&ISO^MR||DOE"),
        (header.format("P2"), "PID|1||12345^^^^MR||ROE"),
        (header.format("P3"), "PID|1||12345||POE"),
    )
    escaped = plain + _file((header.format("P4"), "PID|1||12345^^^ST\\T\\MARY^MR||DOE"))
    for data in (plain, escaped):
        assert data.count(b"~") == data.count(b"MSH")  # MSH-2 only
        _assert_same_as_general(data)
    issuers = fastpath.read_tables(escaped, "f.hl7")["hl7_messages"].column("patient_id_issuer").to_pylist()
    assert issuers == ["HOSP_A", None, None, "ST&MARY"]


def test_hand_written_messages_together_in_several_framings():
    messages = [ORU, ADT, RDE_WITH_TQ1, RDE_TWO_ORDERS, RDE_WITHOUT_ORC, ADT_A01, ADT_A03]
    messages += [segments for segments in CORPUS.values() if segments[0].startswith("MSH|^~\\&|")]
    for separator in ("\r", "\n", "\r\n"):
        _assert_same_as_general(_file(*messages, separator=separator))
    # MLLP frames after a first message without one.
    framed = _file(ORU) + b"".join(b"\x0b" + _file(m) + b"\x1c\r" for m in messages)
    _assert_same_as_general(framed)


def test_parse_hl7_file_takes_the_fast_path(monkeypatch):
    data = _file(ORU, ADT)
    monkeypatch.setattr(reader, "parse_general", lambda data, source_file: pytest.fail("general path used"))
    assert parse_hl7_file(data, "f.hl7").messages.num_rows == 2


DECLINED = [
        _file(("MSH#$*@!#APP#FAC###20240101120000##ORU$R01#C9#P#2.7",)),  # other separators
        _file(ADT) + _file(("MSH|^~\\&#|S|F|||20240101||ADT^A01|X|P|2.7",)),  # a later message's MSH-2 differs
        "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5||||||8859/1\rPID|1||1||MÜLLER\r".encode("latin-1"),
        "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5||||||8859/1\rPID|1||1||MÜLLER\r".encode("utf-8"),
        "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1||1||MÜLLER\r".encode("latin-1"),  # not UTF-8
        _file(ADT, ("MSH|^~\\&|A|B|C|D|20240101||ADT^A01||P|2.5",)),  # MSH-10 empty
        _file(ADT, ("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X|P|",)),  # MSH-12 missing
        _file(ADT, ("MSH|^~\\&|A|B|C|D|20240101||^A01|X|P|2.5",)),  # MSH-9.1 empty
        _file(ADT, ("MSH|^~\\&|A|B|C|D|20240101||\\H\\^A01|X|P|2.5",)),  # MSH-9.1 empty once unescaped
        _file(ADT, ("MSH|^~\\&|A|B",)),  # truncated header
        b"\xef\xbb\xbf" + _file(ADT),  # byte-order mark
        b"\x0b" + _file(ADT) + b"\x1c\r",  # MLLP from the first byte
        b"junk\r" + _file(ADT),
        b"FHS|^~\\&|S\r" + _file(ADT),
        _file(ADT) + b"BTS|1\r",
        _file(ADT) + b"\x00\x00",
        _file(ADT) + b"pid|1\r",  # not a segment name
        _file(ADT) + b"PIDX|1\r",
        _file(ADT) + b"Z\r",
        b"",
]


@pytest.mark.parametrize("data", DECLINED)
def test_declines_what_it_cannot_read_like_the_general_reader(data):
    assert fastpath.read_tables(data, "f.hl7") is None
    parsed = parse_hl7_file(data, "f.hl7")
    general = reader.parse_general(data, "f.hl7")
    for name, table in general.tables().items():
        assert parsed.tables()[name].equals(table), name


def _files_to_read_together() -> list[tuple[bytes, str]]:
    """Clean files of every kind, with files the fast path declines among them and files without a line end."""
    settings = HL7CorpusSettings(total_messages=1_200, messages_per_file=300, seed=5)
    files = [(render_file(settings, index), f"synthetic_{index}.hl7") for index in range(4)]
    files.append(("".join(tutorial_message(i) + "\n" for i in range(300)).encode(), "tutorial.hl7"))
    files += [(_file(EDGE_CASES[case], ADT), f"edge_{number}.hl7") for number, case in enumerate(EDGE_CASES)]
    files.append((_file(ORU, ADT).rstrip(b"\r"), "no_final_segment_end.hl7"))
    files.append((_file(ORU, separator="\r\n"), "crlf.hl7"))
    for number, data in enumerate(DECLINED):
        files.insert(2 * number % len(files), (data, f"declined_{number}.hl7"))
    return files


@pytest.mark.parametrize("batch_bytes", [1, 4_000, 1 << 20])
def test_parse_hl7_files_equals_parse_hl7_file_on_each(monkeypatch, batch_bytes):
    monkeypatch.setattr(reader, "BATCH_BYTES", batch_bytes)
    files = _files_to_read_together()
    together = reader.parse_hl7_files(files)
    assert len(together) == len(files)
    for (data, source_file), parsed in zip(files, together):
        alone = parse_hl7_file(data, source_file)
        for name, table in alone.tables().items():
            assert parsed.tables()[name].schema.equals(tables.TABLES[name], check_metadata=True), name
            assert parsed.tables()[name].equals(table), (source_file, name, _first_difference(parsed.tables()[name], table))


def test_clean_files_are_read_together_by_the_fast_path(monkeypatch):
    clean = [(data, name) for data, name in _files_to_read_together() if fastpath.read_tables(data, name) is not None]
    monkeypatch.setattr(reader, "parse_hl7_file", lambda data, source_file: pytest.fail("read file by file"))
    monkeypatch.setattr(reader, "parse_general", lambda data, source_file: pytest.fail("general path used"))
    together = reader.parse_hl7_files(clean)
    assert [parsed.messages.column("source_file")[0].as_py() for parsed in together] == [name for _, name in clean]


def test_a_batch_with_a_file_the_fast_path_declines_is_read_file_by_file():
    # Readable by the first check, declined later (a segment name in lower case).
    files = [(_file(ORU), "a.hl7"), (_file(ADT) + b"pid|1\r", "b.hl7"), (_file(ADT), "c.hl7")]
    assert fastpath.read_files(files) is None
    together = reader.parse_hl7_files(files)
    for (data, source_file), parsed in zip(files, together):
        for name, table in parse_hl7_file(data, source_file).tables().items():
            assert parsed.tables()[name].equals(table), (source_file, name)


def test_fourteen_digit_times_read_as_parse_datetime_reads_them():
    generator = random.Random(1)
    times = ["20240229120000", "19000229120000", "20000229235959", "00000101000000", "99991231235959", "2024022912000a"]
    for _ in range(5_000):
        year = generator.choice([generator.randint(0, 9999), generator.randint(1896, 2104), 1, 1900, 2000])
        fields = (generator.randint(0, 13), generator.randint(0, 32), generator.randint(0, 25), generator.randint(0, 61), generator.randint(0, 61))
        times.append(f"{year:04d}" + "".join(f"{field:02d}" for field in fields))
    header = "MSH|^~\\&|A|B|C|D|{}||ADT^A01|{}|P|2.5"
    data = _file(*[(header.format(time, number),) for number, time in enumerate(times)])
    read = fastpath.read_tables(data, "f.hl7")["hl7_messages"].column("message_datetime").to_pylist()
    assert read == [datatypes.parse_datetime(time) for time in times]


@pytest.mark.parametrize("batch_bytes", [60_000, 1 << 20])
def test_batches_packed_as_read_equal_the_files_packed_one_by_one_in_file_order(monkeypatch, batch_bytes):
    """The parse's read tasks pack each batch's tables as they are (`pack_batches`): the same rows,
    file by file and in file order, as packing each file's tables, and the batches' values not copied."""
    monkeypatch.setattr(reader, "BATCH_BYTES", batch_bytes)
    # Small clean files first, then an empty one (not even tried by the fast path), then the mix.
    settings = HL7CorpusSettings(total_messages=120, messages_per_file=20, seed=7)
    clean = [(render_file(settings, index), f"clean_{index}.hl7") for index in range(6)]
    files = clean + [(b"", "empty.hl7")] + _files_to_read_together()
    batches = reader.parse_hl7_batches(files)
    assert [name for batch in batches for name in batch.source_files] == [name for _, name in files]
    assert any(len(batch.source_files) > 1 for batch in batches)  # some files were read together

    packed = multitable.pack_batches([(b.source_files, b.tables, b.rows) for b in batches], jobs.HL7_PACKED_SCHEMA)
    one_by_one = multitable.pack_files([name for _, name in files], [parse_hl7_file(*f).tables() for f in files],
                                       jobs.HL7_PACKED_SCHEMA)
    assert packed.schema.equals(jobs.HL7_PACKED_SCHEMA) and packed.num_rows == len(files)
    assert packed.column("hl7_messages").num_chunks == len(batches)
    for name, schema in tables.TABLES.items():
        assert multitable.unpack(packed, name, schema).equals(multitable.unpack(one_by_one, name, schema)), name
    read_together = next(batch for batch in batches if len(batch.source_files) > 1)
    first_column = read_together.tables["hl7_messages"].column(0).chunk(0)
    packed_values = pa.Table.from_struct_array(pc.list_flatten(packed.column("hl7_messages"))).column(0)
    assert any(chunk.buffers()[-1].address == first_column.buffers()[-1].address for chunk in packed_values.chunks)
