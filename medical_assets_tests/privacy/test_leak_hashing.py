"""The hashed identifier index finds exactly what a plain whole-word search finds, keeps no
identifier text, and pickles to about 17 bytes an identifier."""

import pickle
import random
import re
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from medical_assets.privacy import identifier_index
from medical_assets.privacy.identifier_index import fold
from medical_assets.privacy.leak_scanner import Finding, LeakScanner

# Letters, digits and signs of every class the word rule cares about: ASCII, accented, a
# letter whose lower case is longer (İ), a non-ASCII digit (٣), an underscore (no word character).
ALPHABET = "ab1 2-(.)^,_İßΩé٣\t/"


def _reference(identifiers: dict[str, str], text: str) -> Counter:
    """The old scanner's rule, written plainly: every occurrence of a folded identifier whose
    letters or digits at either end are not part of a longer word, first kind given wins; an
    identifier made only of digits is not counted as the digits after the point of a number with
    one point ("0.25"), though it is in a dotted sequence ("1.2.25")."""
    folded = fold(text)
    kinds: dict[str, str] = {}
    for value, kind in identifiers.items():
        key = fold(value.strip())
        if key:
            kinds.setdefault(key, kind)
    found: Counter = Counter()
    for key, kind in kinds.items():
        position = folded.find(key)
        while position >= 0:
            end = position + len(key)
            starts_word = not key[0].isalnum() or position == 0 or not folded[position - 1].isalnum()
            ends_word = not key[-1].isalnum() or end == len(folded) or not folded[end].isalnum()
            fraction = key.isdigit() and re.search(r"(?<![\d.])\d+\.$", folded[:position]) is not None and not re.match(
                r"\.\d", folded[end : end + 2]
            )
            if starts_word and ends_word and not fraction:
                found[kind] += 1
            position = folded.find(key, position + 1)
    return found


def _random_case(rng: random.Random) -> tuple[dict[str, str], list[str]]:
    texts = ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 40))) for _ in range(rng.randint(1, 6))]
    identifiers = {}
    for index in range(rng.randint(1, 12)):
        source = rng.choice(texts) or "ab"
        start = rng.randrange(len(source))
        # Mostly pieces of the texts (so that some match), in another case; some made up.
        value = source[start : start + rng.randint(1, 12)] if rng.random() < 0.8 else "".join(rng.choice(ALPHABET) for _ in range(4))
        if rng.random() < 0.3:
            value = value.upper()
        identifiers[value] = f"kind_{index % 3}"
    return identifiers, texts


def _scanned_counts(scanner: LeakScanner, texts: list[str]) -> Counter:
    findings = scanner.scan_table(pa.table({"c": texts}), "t")
    return Counter({finding.kind: finding.count for finding in findings if finding.where == "t: column c"})


def _plain_hash(text: str, key: int, base: int) -> int:
    """The hash as the index's docstring defines it: sum(mix_k(character_j) * base_k ** j) mod 2**64."""
    mixed = identifier_index._mix(np.array([ord(char) for char in text], np.uint32), key).tolist()
    return sum(value * pow(base, place, 1 << 64) for place, value in enumerate(mixed)) % (1 << 64)


def test_keys_and_slices_of_a_text_hash_as_the_plain_definition_says():
    """Identifiers are hashed key by key (`_key_hashes`), texts by prefix sums (`_PrefixHashes`),
    Latin-1 characters through a table and the others by the mix itself: a hit needs all to agree."""
    rng = random.Random(5)
    alphabet = ALPHABET + "\u4e2d\U0001F600\xff\u0100"
    for _ in range(40):
        keys = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14))) for _ in range(rng.randint(1, 9))]
        codes = identifier_index._code_points("\n".join(keys))
        lengths = np.array([len(key) for key in keys], np.int64)
        starts = identifier_index.joined_cell_starts(lengths)
        for key, base in [(rng.getrandbits(64), rng.getrandbits(64) | 1) for _ in range(2)]:
            expected = [_plain_hash(text, key, base) for text in keys]
            assert identifier_index._key_hashes(codes, starts, lengths, key, base).tolist() == expected
            assert identifier_index._PrefixHashes(codes, key, base).of(starts, starts + lengths).tolist() == expected


@pytest.mark.parametrize("block_chars", [identifier_index._BLOCK_CHARS, 7])
def test_hashed_matching_equals_the_plain_whole_word_search_on_random_texts(monkeypatch, block_chars):
    """Hashes of word runs must find exactly the whole-word occurrences: identifiers that start or
    end with a sign ("(410)..."), span several words, hold non-ASCII letters and digits, or have no
    letter at all; texts cut into pieces (block_chars=7) must lose no match at a cut."""
    monkeypatch.setattr(identifier_index, "_BLOCK_CHARS", block_chars)
    rng = random.Random(18)
    for _ in range(400):
        identifiers, texts = _random_case(rng)
        scanner = LeakScanner(identifiers, patterns=False)
        # One cell at a time, as a table counts them: no match spans two cells.
        expected = sum((_reference(identifiers, text) for text in texts), Counter())
        assert _scanned_counts(scanner, texts) == expected, (identifiers, texts)
        # A whole text (a report, a file name): one search over all of it.
        whole = "|".join(texts)
        assert Counter(scanner._count(whole)) == _reference(identifiers, whole), (identifiers, whole)


def test_a_cell_boundary_never_joins_two_cells_into_one_identifier():
    """Attack on precision: cells are joined by newlines to be searched at once; a family name at the
    end of one cell and a given name at the start of the next must not read as a full name, nor may
    signs of two cells make up an identifier's."""
    scanner = LeakScanner({"NELSON\nCAROL": "patient_name", "-\n(": "odd_identifier", "x-\n(y": "odd_identifier"}, patterns=False)

    assert scanner.scan_table(pa.table({"c": ["seen NELSON", "CAROL called", "x-", "(y"]}), "t") == []
    assert scanner.scan_table(pa.table({"c": ["seen NELSON\nCAROL", "x-\n(y"]}), "t") == [
        Finding("t: column c", "odd_identifier", 2),
        Finding("t: column c", "patient_name", 1),
    ]


def test_multi_word_identifiers_match_only_as_the_same_words_and_signs():
    scanner = LeakScanner(
        {"8043 Walnut St": "patient_street", "(410) 555-0181": "patient_phone", "Nelson, Carol": "patient_name"},
        patterns=False,
    )
    assert scanner.scan_text("lives at 8043 WALNUT ST.") == ["patient_street"]
    assert scanner.scan_text("lives at 8043 WALNUT STREET") == []
    assert scanner.scan_text("lives at 18043 WALNUT ST") == []
    assert scanner.scan_text("call x(410) 555-0181") == ["patient_phone"]
    assert scanner.scan_text("call (410) 555-01810") == []
    assert scanner.scan_text("call (410)  555-0181") == []
    assert scanner.scan_text("NELSON, CAROL") == ["patient_name"]
    assert scanner.scan_text("NELSON,CAROL") == []


def test_the_scanner_keeps_hashes_not_identifier_text():
    """The scanner travels to every worker: it must hold no identifier in clear."""
    identifiers = {"Okonkwo": "patient_family_name", "MRN0048213": "patient_id", "(410)555-0181": "patient_phone"}
    pickled = pickle.dumps(LeakScanner(identifiers))
    for value in identifiers:
        for form in (value, value.lower(), value.upper()):
            assert form.encode() not in pickled
            assert form.encode("utf-32-le") not in pickled


def test_a_scanner_of_a_million_identifiers_pickles_to_about_17_bytes_each():
    """What every worker used to copy: 1.4 GB at 5,000,000 patients. Now two 64-bit hash halves and
    a one-byte kind an identifier, in numpy arrays that Ray's object store shares between workers."""
    count = 1_000_000
    rng = np.random.default_rng(18)
    mrns = rng.choice(9_000_000, count // 2, replace=False) + 1_000_000
    identifiers = {f"{mrn}": "patient_id" for mrn in mrns.tolist()}
    identifiers |= {f"FAMILY{index:07d}": "patient_family_name" for index in range(count - len(identifiers))}
    assert len(identifiers) == count

    scanner = LeakScanner(identifiers, patterns=False)
    size = len(pickle.dumps(scanner, protocol=5))

    assert 16 * count <= size <= 17.2 * count, size / count
    assert scanner.scan_text(f"patient {mrns[17]} seen") == ["patient_id"]
    assert scanner.scan_text("FAMILY0000042 called, FAMILY99999999 did not") == ["patient_family_name"]
    assert scanner.scan_text(f"{mrns[17]}0 FAMILY0000042X") == []


def test_redact_hides_an_identifier_at_any_offset_even_when_its_length_differs_from_the_others():
    scanner = LeakScanner({"NELSON": "patient_family_name", "2895568": "patient_id", "----": "odd_identifier"})
    assert scanner.redact("xNELSONx_2895568000----.html") == "x[redacted]x_[redacted]000[redacted].html"
    assert re.fullmatch(r"\[redacted\]", scanner.redact("nelson"))


def test_hashes_sharing_a_first_half_are_told_apart_by_the_second_and_the_lowest_code_wins():
    """The sort goes by the first half alone; two identifiers whose first halves are equal (about once
    in 10**6 indexes of 10**7) must still come out each once, ordered by both halves."""
    first = [np.array([7, 3, 7, 7], np.uint64), np.array([3, 7], np.uint64)]
    second = [np.array([20, 1, 10, 20], np.uint64), np.array([1, 10], np.uint64)]
    codes = [np.array([5, 4, 6, 2], np.int64), np.array([1, 0], np.int64)]
    got = identifier_index._sorted_distinct(first, second, codes, 8, lowest_code_wins=True)
    assert [a.tolist() for a in got] == [[3, 7, 7], [1, 10, 20], [1, 0, 2]]
    given_first = identifier_index._sorted_distinct(first, second, codes, 8)
    assert [a.tolist() for a in given_first] == [[3, 7, 7], [1, 10, 20], [4, 6, 5]]
    without_ties = identifier_index._sorted_distinct([np.array([9, 2, 9], np.uint64)], [np.array([1, 1, 1], np.uint64)],
                                                     [np.array([3, 2, 1], np.int64)], 8, lowest_code_wins=True)
    assert [a.tolist() for a in without_ties] == [[2, 9], [1, 1], [2, 1]]


@pytest.mark.parametrize("merged", [True, False])
def test_an_index_assembled_from_parts_hashed_apart_finds_what_one_index_of_all_finds(merged):
    secret = b"s" * 32
    parts = [{"Okonkwo": 1, "ACC0012345": 8}, {"ACC0012345": 0, "Lindqvist": 1, "----": 3}]
    hasher = identifier_index.IdentifierIndex({}, secret=secret)
    hashed = [identifier_index.HashedIdentifiers.from_bytes(hasher.hashed(p.items()).sorted().to_bytes()) for p in parts]
    kinds = ["id", "name", "x", "dashes", "y", "z", "w", "v", "account"]
    assembled = LeakScanner(identifier_index.IdentifierIndex.from_hashed(hashed, secret, kinds, merged=merged), patterns=False)
    assert assembled.scan_text("ACC0012345") == ["id"]  # the lowest code of the two parts
    assert assembled.scan_text("seen Okonkwo, Lindqvist ---- ") == ["dashes", "name"]
    left_out = identifier_index.IdentifierIndex.from_hashed(hashed, secret, kinds, left_out=[1], merged=merged)
    assert LeakScanner(left_out, patterns=False).scan_text("Okonkwo ACC0012345") == ["id"]


def test_an_index_left_part_by_part_finds_what_the_merged_index_finds_on_random_texts():
    """A night's check searches each kept part's sorted arrays instead of merging them: the same
    matches, and of a value several parts hold, the same (lowest) kind."""
    rng = random.Random(31)
    secret = b"k" * 32
    hasher = identifier_index.IdentifierIndex({}, secret=secret)
    kinds = [f"kind_{code}" for code in range(6)]
    for _ in range(150):
        identifiers, texts = _random_case(rng)
        values = list(identifiers)
        parts = [{value: rng.randrange(len(kinds)) for value in rng.sample(values, rng.randint(1, len(values)))} for _ in range(3)]
        hashed = [hasher.hashed(part.items()).sorted() for part in parts]
        left_out = [rng.randrange(len(kinds))] if rng.random() < 0.3 else []
        merged, by_part = (
            LeakScanner(identifier_index.IdentifierIndex.from_hashed(hashed, secret, kinds, left_out, merged=m), patterns=False)
            for m in (True, False)
        )
        assert _scanned_counts(by_part, texts) == _scanned_counts(merged, texts), (parts, texts)


@pytest.fixture(params=["presence table", "every part searched"])
def presence(request, monkeypatch):
    """Lookups part by part with the presence table built at once, or never (a night's few rows)."""
    monkeypatch.setattr(identifier_index, "_PRESENCE_PAYS_AFTER", 10**9 if request.param == "presence table" else 0)
    return request.param


def test_a_lookup_part_by_part_tells_shared_first_halves_apart_and_keeps_the_lowest_code(presence):
    def part(first, second, codes):
        return identifier_index.HashedIdentifiers(
            np.array(first, np.uint64), np.array(second, np.uint64), np.array(codes, np.int64), np.zeros((0, 4), np.int64), [], []
        )

    parts = [part([3, 7, 7], [1, 10, 20], [4, 5, 2]), part([7, 9], [20, 1], [1, 3])]
    index = identifier_index.IdentifierIndex.from_hashed(parts, b"s" * 32, [str(code) for code in range(6)], merged=False)
    assert len(index) == 5  # counted part by part: (7, 20) twice
    found = index._lookup(np.array([7, 7, 7, 3, 9, 4], np.uint64), np.array([20, 10, 5, 1, 1, 1], np.uint64))
    assert found.tolist() == [1, 5, -1, 4, 3, -1]
    assert (index._present is not None) == (presence == "presence table")


def test_a_lookup_part_by_part_finds_an_identifier_in_whichever_of_hundreds_of_parts_holds_it(presence):
    """Each part searched only for the words whose leading bits its identifiers have: past the 254th
    part (no owner code of its own) and where parts share leading bits, a part is still searched."""
    def part(first, second, code):
        return identifier_index.HashedIdentifiers(
            np.array(first, np.uint64), np.array(second, np.uint64), np.array([code] * len(first), np.int64),
            np.zeros((0, 4), np.int64), [], [],
        )

    rng = np.random.default_rng(7)
    firsts = rng.integers(1, 2**63, 300, dtype=np.uint64)
    firsts[299] = firsts[3] + np.uint64(1)  # the last part shares leading bits with the fourth
    parts = [part([first], [number], number % 6) for number, first in enumerate(firsts.tolist())]
    index = identifier_index.IdentifierIndex.from_hashed(parts, b"s" * 32, [str(code) for code in range(6)], merged=False)
    asked_first = np.concatenate([firsts, firsts[:10]])
    asked_second = np.concatenate([np.arange(300, dtype=np.uint64), np.arange(10, dtype=np.uint64) + np.uint64(1000)])
    found = index._lookup(asked_first, asked_second)
    assert found[:300].tolist() == [number % 6 for number in range(300)]
    assert found[300:].tolist() == [-1] * 10  # the same first halves with other second halves: none
    assert (index._present is not None) == (presence == "presence table")


def test_the_presence_table_is_built_once_lookups_would_pay_for_it_or_before_the_index_is_shared():
    def part(first):
        return identifier_index.HashedIdentifiers(
            np.array(first, np.uint64), np.arange(len(first), dtype=np.uint64), np.zeros(len(first), np.int64),
            np.zeros((0, 4), np.int64), [], [],
        )

    firsts = np.sort(np.random.default_rng(3).integers(1, 2**63, 4_000, dtype=np.uint64))
    index = identifier_index.IdentifierIndex.from_hashed([part(firsts[:2_000]), part(firsts[2_000:])], b"s" * 32, ["0"], merged=False)
    found = index._lookup(firsts[:400], np.arange(400, dtype=np.uint64))  # 400 pairs x 2 parts x 2 < 4,000 identifiers
    assert index._present is None and found.tolist() == [0] * 400
    found = index._lookup(firsts[:1_200], np.arange(1_200, dtype=np.uint64))  # 1,600 x 2 x 2 > 4,000: worth it now
    assert index._present is not None and found.tolist() == [0] * 1_200
    fresh = identifier_index.IdentifierIndex.from_hashed([part(firsts[:2_000]), part(firsts[2_000:])], b"s" * 32, ["0"], merged=False)
    LeakScanner(fresh).ready_to_share()  # what scan_trees does before the scanner goes to Ray
    assert fresh._present is not None


def test_kept_arrays_are_read_back_aligned_and_as_np_load_reads_them(tmp_path):
    """Unaligned views made np.searchsorted copy a whole part before each search (0.9 ms, not 2 us)."""
    hasher = identifier_index.IdentifierIndex({}, secret=b"k" * 32)
    for count in (1, 7, 1000):  # headers of other lengths before each array
        hashed = hasher.hashed({f"value {n}": n % 5 for n in range(count)}.items()).sorted()
        data = hashed.to_bytes()
        buffer = np.frombuffer(data, np.uint8)
        read = identifier_index.HashedIdentifiers.from_bytes(memoryview(data))
        for name in ("first", "second", "codes", "shapes"):
            view = getattr(read, name)
            assert view.flags.aligned and np.array_equal(view, getattr(hashed, name)), name
            inside = buffer.ctypes.data <= view.ctypes.data < buffer.ctypes.data + len(data)
            assert inside or not view.size, f"{name}: a view into the kept bytes, not a copy"
        (tmp_path / "kept.npz").write_bytes(data)
        with np.load(tmp_path / "kept.npz") as loaded:
            assert np.array_equal(loaded["first"], hashed.first) and loaded["symbol_keys"].tolist() == hashed.symbol_keys


def test_a_process_keeps_the_power_tables_of_a_few_bases_only():
    """Indexes of one process have random keys; a process that makes many (a test run, a long-lived
    server) must not keep a table of powers for every one of them."""
    for _ in range(3 * identifier_index._POWER_TABLES_KEPT):
        index = identifier_index.IdentifierIndex({"ab12cd": "kind"})
        assert [start for start, _, _ in index.whole_word_matches("xx ab12cd yy")] == [3]
    assert len(identifier_index._POWER_TABLES) <= identifier_index._POWER_TABLES_KEPT
    assert identifier_index._mix_table.cache_info().currsize <= identifier_index._POWER_TABLES_KEPT
