"""Properties of parse_hl7_file on damaged input: it never raises, loses no message, and keeps its schemas.

Whatever the input, the tables are also those of the general reader: the fast path reads a file
exactly as the general path would, or leaves it to it.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medical_assets.hl7 import ParsedHL7File, er7, fastpath, parse_hl7_file, reader, tables
from medical_assets.hl7.reader import file_problem
from medical_assets.synthetic.hl7 import HL7CorpusSettings, render_message
from medical_assets_tests.hl7.test_orders_and_encounters import ADT_A01, ADT_A03, RDE_TWO_ORDERS, RDE_WITH_TQ1
from medical_assets_tests.hl7.test_reader import ADT, ORU

_SYNTHETIC = HL7CorpusSettings(total_messages=8, messages_per_file=8, seed=11)
MESSAGES = [
    "\r".join(segments) + "\r" for segments in (ORU, ADT, RDE_WITH_TQ1, RDE_TWO_ORDERS, ADT_A01, ADT_A03)
] + [render_message(_SYNTHETIC, number) for number in range(8)]
# How feeds end segments and frame messages.
FRAMINGS = [("", "\r", ""), ("", "\n", ""), ("", "\r\n", ""), ("\x0b", "\r", "\x1c\r")]
# Bytes that mean something to the splitter or the ER7 syntax, and some that mean nothing.
SPECIAL_BYTES = [
    b"|", b"^", b"~", b"\\", b"&", b"#", b"\r", b"\n", b"\r\n", b"\x00", b"\x0b", b"\x1c", b"\rMSH", b"MSH|",
    b"\rMSH|^~\\&|", b"\xef\xbb\xbf", b"\xff", b"\xc3", b"\\X41\\", b"\\T", b"\rFHS|", b" ",
]

_mutation = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.floats(0, 1, exclude_max=True), st.integers(1, 12)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.sampled_from(SPECIAL_BYTES)),
)


@st.composite
def feeds(draw) -> tuple[bytes, int]:
    """A file of known messages in one framing, and how many messages it holds."""
    chosen = draw(st.lists(st.sampled_from(MESSAGES), min_size=1, max_size=6))
    start, separator, end = draw(st.sampled_from(FRAMINGS))
    text = "".join(start + message.replace("\r", separator) + end for message in chosen)
    return text.encode("utf-8"), len(chosen)


@st.composite
def damaged_feeds(draw) -> bytes:
    data = bytearray(draw(feeds())[0])
    for kind, where, what in draw(st.lists(_mutation, max_size=25)):
        position = int(where * len(data))
        if kind == "flip" and position < len(data):
            data[position] = what
        elif kind == "delete":
            del data[position : position + what]
        elif kind == "insert":
            data[position:position] = what
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def _assert_consistent(parsed: ParsedHL7File, data: bytes) -> None:
    """Schemas exact; every message the splitter sees in exactly one of messages and errors, rows only for read ones."""
    general = reader.parse_general(data, "any.hl7").tables()
    for name, table in parsed.tables().items():
        assert table.drop_columns("source_file").equals(general[name].drop_columns("source_file")), name
    assert list(parsed.tables()) == list(tables.TABLES)
    for name, table in parsed.tables().items():
        assert table.schema.equals(tables.TABLES[name], check_metadata=True), name
    read = parsed.messages.column("message_index").to_pylist()
    error_indices = parsed.errors.column("message_index").to_pylist()
    failed = [index for index in error_indices if index is not None]
    if file_problem(data):
        assert read == [] and error_indices == [None]
        return
    seen = len(er7.split_messages(data.rstrip(b"\x00")).messages)
    assert sorted(read + failed) == list(range(seen))
    if seen == 0:
        assert error_indices == [None]
    assert error_indices.count(None) <= 1
    read_set = set(read)
    for name in ("hl7_lab_results", "hl7_pharmacy_orders", "hl7_encounters"):
        assert set(parsed.tables()[name].column("message_index").to_pylist()) <= read_set, name
    encounter_indices = parsed.encounters.column("message_index").to_pylist()
    assert len(encounter_indices) == len(set(encounter_indices))


@settings(max_examples=60, deadline=None)
@given(feeds())
def test_intact_feeds_are_read_whole(feed):
    data, count = feed
    parsed = parse_hl7_file(data, "feed.hl7")
    _assert_consistent(parsed, data)
    assert parsed.errors.num_rows == 0
    assert parsed.messages.column("message_index").to_pylist() == list(range(count))
    if not data.startswith(b"\x0b"):
        assert fastpath.read_tables(data, "feed.hl7") is not None  # so the comparison above covered it


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_feeds())
def test_damaged_feeds_never_raise_and_lose_no_message(data):
    _assert_consistent(parse_hl7_file(data, "damaged.hl7"), data)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_raise(data):
    _assert_consistent(parse_hl7_file(data, "random.bin"), data)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(SPECIAL_BYTES + [b"MSH", b"PID", b"OBX", b"RXE", b"PV1", b"A", b"1"]), max_size=60))
def test_separator_soup_never_raises(pieces):
    data = b"".join(pieces)
    _assert_consistent(parse_hl7_file(data, "soup.hl7"), data)
