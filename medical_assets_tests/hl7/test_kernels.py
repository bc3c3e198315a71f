"""The compiled loops against plain Python on the same bytes."""

import numpy as np

from medical_assets.hl7 import kernels


def test_locate_delimiters_finds_each_byte_in_order_and_counts_carets_before_pipes():
    text = b"MSH|^~\\&|A^B&C|D~E\rPID|1||X^Y^Z\n\x0bOBX|\x1c"
    found, carets_before_pipes = kernels.locate_delimiters(np.frombuffer(text, np.uint8))
    for byte in kernels.DELIMITERS:
        assert found[byte].tolist() == [i for i, b in enumerate(text) if b == byte], bytes([byte])
        assert found[byte].dtype == np.int32
    pipes = found[ord("|")]
    assert carets_before_pipes.tolist() == [text[:pipe].count(b"^") for pipe in pipes]


def test_locate_delimiters_on_text_without_any():
    found, carets_before_pipes = kernels.locate_delimiters(np.frombuffer(b"plain text", np.uint8))
    assert all(len(positions) == 0 for positions in found.values()) and len(carets_before_pipes) == 0


def test_gather_strings_copies_ranges_in_their_order_and_empties_inverted_ones():
    data = np.frombuffer(b"0123456789", np.uint8)
    starts = np.array([5, 0, 3, 9, 7], np.int32)
    ends = np.array([8, 2, 3, 10, 2], np.int32)  # the last two: one byte, then an inverted range
    offsets, copied = kernels.gather_strings(data, starts, ends)
    values = [copied[offsets[i] : offsets[i + 1]].tobytes() for i in range(len(starts))]
    assert values == [b"567", b"01", b"", b"9", b""]
    assert offsets.dtype == np.int32


def test_value_ranges_reads_fields_and_components_as_the_standard_numbers_them():
    from medical_assets.hl7.located_file import LocatedFile, ValueRequest

    text = b"MSH|^~\\&|APP|FAC\rPID|1||ID1^^^H^MR||DOE^JANE||19800101"
    file = LocatedFile.of(text, np.zeros(1, np.int32), ["f.hl7"])
    pid = file.positions("PID")
    requests = {
        ("PID", name): ValueRequest("PID", pid, field, component, np.zeros(1, np.int64))
        for name, field, component in (
            ("id", 3, 1), ("kind", 3, 5), ("family", 5, 1), ("given", 5, 2), ("none", 5, 3), ("birth", 7, 1), ("past", 30, 1)
        )
    }
    values = file.values(requests)
    read = {name: text[start[0] : end[0]] for (_, name), (start, end) in values.items()}
    assert read == {
        "id": b"ID1", "kind": b"MR", "family": b"DOE", "given": b"JANE", "none": b"", "birth": b"19800101", "past": b""
    }
