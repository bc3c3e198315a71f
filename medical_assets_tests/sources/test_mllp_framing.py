"""MLLP framing: frames out of a byte stream however TCP cuts it, and nothing unbounded kept from a stream that is not MLLP."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medical_assets.sources.mllp_framing import HEAD_BYTES, Frame, FrameDecoder, FrameTooLarge, FramingError, encode_frame

ADT = b"MSH|^~\\&|ADT|GH|EMR|CARD|20240305083000||ADT^A01^ADT_A01|CTRL0001|P|2.5\rPID|1||123^^^GH^MR\r"
ORU = b"MSH|^~\\&|LAB|GH|EMR|CARD|20240305091500||ORU^R01^ORU_R01|CTRL0002|P|2.5\nOBX|1|NM|2345-7^Glucose^LN||105\n"


def decode(decoder: FrameDecoder, *reads: bytes) -> list:
    return [event for data in reads for event in decoder.feed(data)]


def test_a_frame_is_the_bytes_between_start_block_and_end_block():
    assert encode_frame(ADT) == b"\x0b" + ADT + b"\x1c\r"
    assert decode(FrameDecoder(1024), encode_frame(ADT)) == [Frame(ADT)]


def test_several_frames_in_one_read_and_stray_bytes_between_them():
    stream = b"\r\n " + encode_frame(ADT) + b"\r\n" + encode_frame(ORU) + b"\n\t " + encode_frame(ADT)
    decoder = FrameDecoder(1024)

    assert decode(decoder, stream) == [Frame(ADT), Frame(ORU), Frame(ADT)]
    assert decoder.ignored_bytes == 3 + 1 + 2 + 1 + 3 + 1  # the CR after each end block is stray too
    assert not decoder.in_frame


def test_a_frame_split_at_every_byte_arrives_whole():
    decoder = FrameDecoder(1024)
    stream = encode_frame(ADT) + encode_frame(ORU)

    events = decode(decoder, *(stream[index : index + 1] for index in range(len(stream))))

    assert events == [Frame(ADT), Frame(ORU)]


@settings(max_examples=200, deadline=None)
@given(
    messages=st.lists(st.sampled_from([ADT, ORU, b"MSH|^~\\&|X|Y|||||ACK|1|P|2.5"]), min_size=1, max_size=5),
    cuts=st.lists(st.integers(0, 600), max_size=8),
)
def test_frames_do_not_depend_on_where_reads_are_cut(messages, cuts):
    stream = b"".join(b"\r\n" + encode_frame(message) for message in messages)
    points = sorted({cut % (len(stream) + 1) for cut in cuts})
    reads = [stream[start:end] for start, end in zip([0, *points], [*points, len(stream)])]

    assert decode(FrameDecoder(1024), *reads) == [Frame(message) for message in messages]


def test_an_end_block_without_its_carriage_return_still_ends_the_frame():
    assert decode(FrameDecoder(1024), b"\x0b" + ADT + b"\x1c" + b"\x0b" + ORU + b"\x1c") == [Frame(ADT), Frame(ORU)]


def test_a_frame_of_exactly_the_limit_is_accepted_and_one_byte_more_is_not():
    message = b"M" * 100
    assert decode(FrameDecoder(100), encode_frame(message)) == [Frame(message)]
    assert decode(FrameDecoder(99), encode_frame(message)) == [FrameTooLarge(message[:99] + b"M", 99)]


def test_an_oversized_frame_is_reported_once_with_its_head_and_skipped_to_its_end():
    decoder = FrameDecoder(max_frame_bytes=4096)
    big = ADT + b"OBX|" + b"x" * 50_000

    reads = [b"\x0b" + big[:1000]] + [big[start : start + 1000] for start in range(1000, len(big), 1000)] + [b"\x1c\r"]
    events = decode(decoder, *reads, encode_frame(ORU))

    assert len(events) == 2
    too_large, after = events
    assert isinstance(too_large, FrameTooLarge) and too_large.limit == 4096
    assert too_large.head == big[: len(too_large.head)] and too_large.head.startswith(ADT)
    assert after == Frame(ORU)  # the stream is back in step after the oversized frame


def test_the_head_of_an_oversized_frame_is_bounded():
    decoder = FrameDecoder(max_frame_bytes=10 * HEAD_BYTES)
    [too_large] = decode(decoder, b"\x0b" + b"y" * (11 * HEAD_BYTES))
    assert too_large.head == b"y" * HEAD_BYTES
    assert decoder.in_frame  # still skipping: no end block yet
    assert decode(decoder, b"y" * HEAD_BYTES, b"\x1c\r") == []
    assert not decoder.in_frame


def test_bytes_without_a_start_block_end_the_stream_once_they_reach_the_limit():
    decoder = FrameDecoder(max_frame_bytes=100)
    assert decode(decoder, b"GET / HTTP/1.1\r\n" * 6) == []  # 96 bytes: not yet

    received = []
    with pytest.raises(FramingError, match="without an MLLP start block"):
        for event in decoder.feed(b"Host: x\r\n" + encode_frame(ORU)):
            received.append(event)
    assert received == []


def test_frames_before_a_run_of_stray_bytes_are_delivered_before_the_error():
    decoder = FrameDecoder(max_frame_bytes=100)
    received = []
    with pytest.raises(FramingError):
        for event in decoder.feed(encode_frame(b"MSH|short") + b"z" * 200):
            received.append(event)
    assert received == [Frame(b"MSH|short")]


def test_a_start_block_inside_a_frame_abandons_the_partial_frame():
    decoder = FrameDecoder(1024)
    events = decode(decoder, b"\x0b" + ADT[:30], b"\x0b" + ORU + b"\x1c\r")
    assert events == [Frame(ORU)]
    assert decoder.abandoned_frames == 1


def test_a_connection_closing_mid_frame_is_visible():
    decoder = FrameDecoder(1024)
    assert decode(decoder, b"\x0b" + ADT[:30]) == []
    assert decoder.in_frame
