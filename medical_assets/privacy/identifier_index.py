"""The identifiers as keyed hashes, and where they occur in a text as whole words.

Memory: the index keeps no identifier text, only a keyed 128-bit hash of each (two sorted numpy
uint64 arrays and a kind code: 17 bytes an identifier). A text is cut into words (runs of letters
and digits); every run of consecutive words that could be an identifier (as many words, as long,
with as many signs before and after as some identifier has) is hashed and looked up with
`np.searchsorted`. Put once into Ray's object store, the arrays are read zero-copy by every worker
of a node: what the check holds grows with the patients, not with the patients times the workers.

Each identifier is kept as a keyed 128-bit polynomial hash of its folded text: two uint64 halves,
each sum(mix_k(character_j) * base_k ** j) modulo 2**64 with a secret odd base and a secret
bijective mix of the code points. Arithmetic modulo 2**64 is numpy's own (uint64 wraps), and an
odd base is invertible, so the hash of any slice of a text comes from two prefix sums.
Collisions: at 10**7 identifiers against 10**8 word runs a run (10**15 pairs), an ideal 64-bit
hash would give a false finding about once in 10**4 runs, and a false finding fails a run. With
128 bits it is about 10**-23 a run; hashing modulo 2**64 loses some bits on specially structured
pairs of texts (about 20 at worst for texts under 64 characters), still far below 10**-10 a run,
and the secret keys keep anyone from choosing a colliding text. A hit is therefore not confirmed
against the identifier's text, which the index does not keep.
"""

from __future__ import annotations

import functools
import hashlib
import io
import secrets
import struct
import zipfile
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_BLOCK_CHARS = 1 << 20  # a text is hashed in pieces of this many characters: bounded memory
_COMPILED_FROM = 50_000  # identifier forms `hashed_array` hashes by the compiled loop (fewer: numpy)
_IDENTIFIER_BATCH = 16_384  # identifiers `hashed` at a time: arrays that stay in the CPU cache (2x quicker than 200,000)
# What `str.strip()` removes among ASCII characters (the information separators too): Arrow's
# `utf8_trim` with these strips an ASCII text as Python does.
ASCII_WHITESPACE = "".join(chr(code) for code in range(128) if chr(code).isspace())
_ASCII_ALNUM = np.array([chr(code).isalnum() for code in range(128)])
_MIX_1, _MIX_2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB  # splitmix64's finaliser


class HashedIdentifiers(NamedTuple):
    """Identifiers folded and hashed (`IdentifierIndex.hashed`): what an index is assembled from,
    and what can be kept beside a part of the tables (`to_bytes`) to assemble a later one."""

    first: np.ndarray  # uint64, one per identifier
    second: np.ndarray  # uint64
    codes: np.ndarray  # int64: the kind, or a rank standing for it
    shapes: np.ndarray  # (words, signs before, signs after, length), distinct rows
    symbol_keys: list[str]  # identifiers without a letter or digit, folded
    symbol_codes: list[int]

    def sorted(self) -> HashedIdentifiers:
        """The same identifiers sorted by hash, each once (the lowest code): quicker to assemble."""
        first, second, codes = _sorted_distinct([self.first], [self.second], [self.codes], 1 << 15, lowest_code_wins=True)
        return self._replace(first=first, second=second, codes=codes.astype(np.int64))

    def without(self, codes: frozenset[int]) -> HashedIdentifiers:
        keep = ~np.isin(self.codes, np.fromiter(codes, np.int64))
        return self._replace(first=self.first[keep], second=self.second[keep], codes=self.codes[keep])

    def to_bytes(self) -> bytes:
        """An uncompressed .npz (`np.load` reads it) whose arrays start on 64-byte boundaries."""
        arrays = {"first": self.first, "second": self.second, "codes": self.codes, "shapes": self.shapes,
                  "symbol_keys": np.array(self.symbol_keys, dtype=str), "symbol_codes": np.array(self.symbol_codes, np.int64)}
        return _aligned_npz(arrays)

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> HashedIdentifiers:
        """What `to_bytes` wrote. The arrays are views into `data`, not copies: a night reads every
        part's arrays (hundreds of MB at millions of patients), and a memory-mapped file read this
        way costs no copy and no fresh memory."""
        arrays = _npz_views(memoryview(data))
        return cls(arrays["first"], arrays["second"], arrays["codes"], arrays["shapes"].reshape(-1, 4),
                   arrays["symbol_keys"].tolist(), arrays["symbol_codes"].tolist())


class IdentifierIndex:
    """The identifiers' hashes (sorted, with their kinds), and what a match can look like: for each
    number of words, of signs before the first word and after the last (the "(" of "(410)555-0181"),
    the lengths identifiers of that shape have. Every big part is a numpy array, so that Ray's object
    store shares one copy with every worker of a node."""

    def __init__(self, identifiers: Mapping[str, str], secret: bytes | None = None):
        """`identifiers`: value -> kind; of values that fold to the same text, the first given wins.
        `secret`: what the hash keys derive from (random when None: an index of one process)."""
        self._keys, self._bases = _hash_keys_of(secret)
        kinds: dict[str, int] = {}
        coded = ((value, kinds.setdefault(kind, len(kinds))) for value, kind in identifiers.items())
        self._assemble([self.hashed(coded)], list(kinds), lowest_code_wins=False)

    @classmethod
    def from_hashed(
        cls, parts: Sequence[HashedIdentifiers], secret: bytes, kind_names: Sequence[str], left_out: Collection[int] = (),
        merged: bool = True,
    ) -> IdentifierIndex:
        """The index of identifiers hashed apart (`hashed`, with the same `secret`): of values that
        fold to the same text, the lowest code wins; codes in `left_out` are not looked for.

        `merged`: the parts' hashes sorted into one array (seconds at millions of identifiers), so
        that a lookup is one binary search; otherwise each part stays an array of its own, ready at
        once, and a lookup searches every part: for a search through little text (a night's new
        rows, the analytics tables, the reports), where assembling would cost more than the search."""
        index = cls.__new__(cls)
        index._keys, index._bases = _hash_keys_of(secret)
        index._assemble(parts, list(kind_names), lowest_code_wins=True, left_out=frozenset(left_out), merged=merged)
        return index

    def hashed(self, identifiers: Iterable[tuple[str, int]]) -> HashedIdentifiers:
        """(value, code) pairs folded and hashed with this index's keys, for `from_hashed`."""
        batches = []
        items = iter(identifiers)
        while batch := list(islice(items, _IDENTIFIER_BATCH)):
            keys, batch_codes = [], []
            for value, code in batch:
                key = fold(str(value).strip())
                if key:
                    keys.append(key)
                    batch_codes.append(code)
            if keys:
                lengths = np.fromiter(map(len, keys), np.int64, len(keys))
                batches.append(self._hashed_batch(_code_points("\n".join(keys)), lengths, np.array(batch_codes, np.int64),
                                                  lambda index, keys=keys: keys[index]))
        return _concatenated(batches)

    def hashed_array(self, values: pa.Array, codes: np.ndarray) -> HashedIdentifiers:
        """As `hashed(zip(values, codes))`, of a string array without nulls: its ASCII values
        (nearly all of a hospital's identifiers) folded by Arrow and hashed from the array's bytes
        by a compiled loop (`identifier_kernels`), with no Python call per value; the others as
        `hashed` does them."""
        values = (values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values).cast(pa.string())
        ascii_mask = pc.string_is_ascii(values).to_numpy(zero_copy_only=False)
        batches = [self.hashed(zip(values.filter(pa.array(~ascii_mask)).to_pylist(), codes[~ascii_mask].tolist()))]
        ascii_values = values.filter(pa.array(ascii_mask))
        ascii_codes = codes[ascii_mask]
        # As `str.strip()` and `fold` leave ASCII text; values left empty are not identifiers.
        folded = pc.ascii_lower(pc.utf8_trim(ascii_values, characters=ASCII_WHITESPACE))
        kept = pc.greater(pc.utf8_length(folded), 0)
        folded, ascii_codes = folded.filter(kept), ascii_codes[kept.to_numpy(zero_copy_only=False)]
        if 0 < len(folded) < _COMPILED_FROM:  # a few (a DICOM part): not worth numba's 100 MiB in this process
            batches.append(self.hashed(zip(folded.to_pylist(), ascii_codes.tolist())))
        elif len(folded):
            from medical_assets.privacy.identifier_kernels import ascii_key_hashes

            offsets = np.frombuffer(folded.buffers()[1], np.int32)[folded.offset : folded.offset + len(folded) + 1]
            data = np.frombuffer(folded.buffers()[2], np.uint8)
            (key_1, key_2), (base_1, base_2) = self._keys, self._bases
            first, second, shapes = ascii_key_hashes(
                data, offsets, _mix_table(key_1), _mix_table(key_2), _ASCII_ALNUM, np.uint64(base_1), np.uint64(base_2)
            )
            # No letter or digit at all ("----"): found by `str.find`, as `_hashed_batch` says.
            symbols = np.flatnonzero(shapes[:, 0] == 0)
            batches.append(HashedIdentifiers(first, second, ascii_codes, _distinct_rows(shapes),
                                             [folded[index].as_py() for index in symbols.tolist()], ascii_codes[symbols].tolist()))
        return _concatenated(batches)

    def _hashed_batch(
        self, codes: np.ndarray, lengths: np.ndarray, batch_codes: np.ndarray, key_at: Callable[[int], str]
    ) -> HashedIdentifiers:
        """The hashes of keys joined by one newline each (`codes`, their code points)."""
        first, second, shape = self._hash_spans(codes, lengths)
        # No letter or digit at all ("----"): too rare to hash by words, found by `str.find`. Each
        # occurrence is listed: the index keeps the first code or the lowest (`_assemble`).
        symbols = np.flatnonzero(shape[:, 0] == 0).tolist()
        return HashedIdentifiers(first, second, batch_codes, _distinct_rows(shape), [key_at(index) for index in symbols],
                                 batch_codes[symbols].tolist())

    def _assemble(
        self, parts: Sequence[HashedIdentifiers], kind_names: list[str], lowest_code_wins: bool,
        left_out: frozenset[int] = frozenset(), merged: bool = True,
    ) -> None:
        self._kind_names = kind_names
        self._merged = merged
        kept = [part.without(left_out) for part in parts] if left_out else list(parts)
        if merged:
            groups = [kept]
        else:
            # Each part sorted and distinct on its own (kept parts come so: `HashedIdentifiers.sorted`).
            groups = [[part] for part in kept if len(part.first)]
        # (first halves, second halves, codes) of each sorted array a lookup searches.
        self._segments = [
            _sorted_distinct(
                [p.first for p in group], [p.second for p in group], [p.codes for p in group], len(kind_names),
                lowest_code_wins, already_sorted=len(group) == 1 and _is_sorted(group[0].first),
            )
            for group in groups
        ]
        self._segments = [segment for segment in self._segments if len(segment[0])]
        # Built on the first lookups that make it worth its cost (`_lookup`), or before the index
        # goes to Ray's workers (`ensure_presence`): a night's few rows never pay for it.
        self._present, self._present_shift = None, np.uint64(0)
        self._looked_up = 0
        symbols: dict[str, int] = {}
        for part in parts:
            for key, code in zip(part.symbol_keys, part.symbol_codes):
                if code in left_out:
                    continue
                if key not in symbols or (lowest_code_wins and code < symbols[key]):
                    symbols[key] = code
        self._symbols = tuple((key, self._kind_names[code]) for key, code in symbols.items())
        # Shapes of left-out identifiers may stay: a shape only says which runs of words to hash.
        self._shapes, self._shape_lengths, self._lengths = _shapes([part.shapes for part in parts if len(part.shapes)])

    @property
    def empty(self) -> bool:
        return not self._segments

    @property
    def merged(self) -> bool:
        """One sorted array; otherwise the parts' arrays as they were kept (`from_hashed`)."""
        return self._merged

    def __len__(self) -> int:
        """The identifiers looked for; unmerged, a value two parts hold counts twice."""
        return sum(len(first) for first, _, _ in self._segments)

    def whole_word_matches(self, folded: str, cell_starts: np.ndarray | None = None) -> Iterator[tuple[int, int, str]]:
        """(start, stop, kind) of every identifier in the folded text whose letters and digits at
        either end are not part of a longer word; with `cell_starts`, within one cell."""
        for key, kind in self._symbols:
            position = folded.find(key)
            while position >= 0:
                if cell_starts is None or _same_cell(cell_starts, position, position + len(key)):
                    yield position, position + len(key), kind
                position = folded.find(key, position + 1)
        if not len(self._shapes):
            return
        longest = self._shape_lengths.shape[1] - 1
        for own_start in range(0, len(folded), _BLOCK_CHARS):
            own_stop = min(own_start + _BLOCK_CHARS, len(folded))
            # One character before (is the first word's start a word's start?) and enough after
            # for the longest identifier and the character after it.
            offset = max(0, own_start - 1)
            piece = folded[offset : min(len(folded), own_stop + longest + 1)]
            yield from self._piece_matches(piece, offset, own_start - offset, own_stop - offset, cell_starts)

    def occurrences(self, folded: str) -> list[tuple[int, int]]:
        """(start, stop) of every identifier in a short folded text, word boundaries or not."""
        codes = _code_points(folded)
        hashes = self._prefix_hashes(codes)
        spans = []
        for length in self._lengths.tolist():
            if length > len(codes):
                break
            starts = np.arange(len(codes) - length + 1)
            found = self._lookup(*(prefix.of(starts, starts + length) for prefix in hashes))
            spans += [(start, start + length) for start in starts[found >= 0].tolist()]
        return spans

    def _piece_matches(
        self, piece: str, offset: int, own_start: int, own_stop: int, cell_starts: np.ndarray | None
    ) -> Iterator[tuple[int, int, str]]:
        """Matches starting in piece[own_start:own_stop], at their place in the whole text."""
        codes = _code_points(piece)
        word_starts, word_stops = _words(_alnum_mask(codes))
        if not len(word_starts):
            return
        # Where the word before each word ends, and where the one after it starts: the signs taken
        # before and after a run of words must hold no letter or digit, or the run would be read as
        # fewer words than it has (and "^1/b" matched in "^1/b3" as a word and three signs).
        previous_stops = np.concatenate(([0], word_stops[:-1]))
        next_starts = np.concatenate((word_starts[1:], [len(piece)]))
        # Every run of words some shape allows, shape after shape, then one lookup for all of them
        # (a lookup searches every part of an unmerged index: once a piece, not once a shape).
        candidate_starts, candidate_stops = [], []
        for words, before, after, lengths in self._shape_rows():
            runs = len(word_starts) - words + 1
            if runs <= 0:
                continue
            starts = word_starts[:runs] - before
            stops = word_stops[words - 1 :] + after
            spans = stops - starts
            keep = (starts >= own_start) & (starts < own_stop) & (stops <= len(piece)) & (spans < len(lengths))
            keep &= (starts >= previous_stops[:runs]) & (stops <= next_starts[words - 1 :])
            index = np.flatnonzero(keep)
            index = index[lengths[spans[index]]]
            if cell_starts is not None:
                # Cells are joined by newlines to be searched at once; no match may span two.
                first_cell = np.searchsorted(cell_starts, starts[index] + offset, side="right")
                index = index[first_cell == np.searchsorted(cell_starts, stops[index] + offset - 1, side="right")]
            if len(index):
                candidate_starts.append(starts[index])
                candidate_stops.append(stops[index])
        if not candidate_starts:
            return
        starts, stops = np.concatenate(candidate_starts), np.concatenate(candidate_stops)
        found = self._lookup(*(prefix.of(starts, stops) for prefix in self._prefix_hashes(codes)))
        hit = found >= 0
        for start, stop, code in zip(starts[hit].tolist(), stops[hit].tolist(), found[hit].tolist()):
            yield start + offset, stop + offset, self._kind_names[code]

    def _shape_rows(self) -> Iterator[tuple[int, int, int, np.ndarray]]:
        """(words, signs before, signs after, which lengths occur) of each shape."""
        for (words, before, after), lengths in zip(self._shapes.tolist(), self._shape_lengths):
            yield words, before, after, lengths

    def _hash_keys(self, keys: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Both hash halves of each key, and its shape: (words, signs before, signs after, length)."""
        return self._hash_spans(_code_points("\n".join(keys)), np.fromiter(map(len, keys), np.int64, len(keys)))

    def _hash_spans(self, codes: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As `_hash_keys`, of keys given as the code points of their newline-joined text and their lengths."""
        starts = joined_cell_starts(lengths)
        stops = starts + lengths
        first, second = (_key_hashes(codes, starts, lengths, key, base) for key, base in zip(self._keys, self._bases))
        # A sentinel word past the end, so that a key without words indexes something.
        word_starts, word_stops = (np.append(ends, len(codes) + 1) for ends in _words(_alnum_mask(codes)))
        first_word = np.searchsorted(word_starts, starts)
        words = np.searchsorted(word_starts, stops) - first_word
        has_words = words > 0
        before = np.where(has_words, word_starts[first_word] - starts, 0)
        after = np.where(has_words, stops - word_stops[np.searchsorted(word_stops, stops, side="right") - 1], 0)
        return first, second, np.stack([words, before, after, lengths], axis=1)

    def _prefix_hashes(self, codes: np.ndarray) -> tuple[_PrefixHashes, _PrefixHashes]:
        return tuple(_PrefixHashes(codes, key, base) for key, base in zip(self._keys, self._bases))

    def ensure_presence(self) -> None:
        """Build the table of `_presence_table` now (an unmerged index of several parts), so that
        the copies of this index in Ray's workers share it rather than each build their own."""
        if self._present is None and len(self._segments) > 1:
            self._present, self._present_shift = _presence_table([first for first, _, _ in self._segments])

    def _lookup(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """The kind code of each (first, second) hash pair, -1 where absent: of the parts that hold
        it (an unmerged index), the lowest code, as merging them would keep."""
        found = np.full(len(first), -1, np.int64)
        if not len(first):
            return found
        if len(self._segments) == 1:
            return _segment_lookup(*self._segments[0], first, second)
        # The presence table costs a pass over every identifier (1 s at 5,000,000 patients); each
        # pair it spares searching every part saves a binary search a part. Built once the pairs
        # looked up would have paid for it.
        self._looked_up += len(first)
        if self._present is None and self._looked_up * len(self._segments) * _PRESENCE_PAYS_AFTER > len(self):
            self.ensure_presence()
        maybe = np.arange(len(first))
        if self._present is not None:
            # Only the pairs whose first half's leading bits some identifier has (about one in five
            # of those that are none) are searched in every part.
            maybe = np.flatnonzero(self._present[first >> self._present_shift])
        # Part by part, in sorted order, so that each binary search starts where the last one ended.
        maybe = maybe[np.argsort(first[maybe])]
        first, second = first[maybe], second[maybe]
        codes_found = np.full(len(maybe), -1, np.int64)
        for segment in self._segments:
            codes = _segment_lookup(*segment, first, second)
            better = (codes >= 0) & ((codes_found < 0) | (codes < codes_found))
            codes_found[better] = codes[better]
        found[maybe] = codes_found
        return found


# The presence table is built once the pairs looked up, times the parts, pass half the identifiers:
# marking an identifier's hash in it costs about as much as two binary searches of a pair.
_PRESENCE_PAYS_AFTER = 2


def _presence_table(firsts: list[np.ndarray]) -> tuple[np.ndarray | None, np.uint64]:
    """For an index of several sorted parts: which values of the leading bits of the first hash half
    some identifier has (a table about four times as long as the identifiers are many, at most
    128 MiB), so that a lookup skips most runs of words before searching each part. None for one part."""
    if len(firsts) <= 1:
        return None, np.uint64(0)
    total = sum(len(first) for first in firsts)
    bits = int(min(27, max(16, np.ceil(np.log2(4 * total)))))
    shift = np.uint64(64 - bits)
    present = np.zeros(1 << bits, bool)
    for first in firsts:
        present[first >> shift] = True
    return present, shift


def _segment_lookup(
    sorted_first: np.ndarray, sorted_second: np.ndarray, kinds: np.ndarray, first: np.ndarray, second: np.ndarray
) -> np.ndarray:
    """The kind code of each (first, second) pair in one sorted array of hashes, -1 where absent."""
    found = np.full(len(first), -1, np.int64)
    position = np.searchsorted(sorted_first, first)
    clipped = np.minimum(position, len(sorted_first) - 1)
    same_first = sorted_first[clipped] == first
    both = same_first & (sorted_second[clipped] == second)
    found[both] = kinds[clipped[both]]
    # Identifiers that share a first half (about one pair in 10**5 runs at 10**7 identifiers)
    # sit next to each other, sorted by the second half.
    for query in np.flatnonzero(same_first & ~both).tolist():
        index = int(position[query]) + 1
        while index < len(sorted_first) and sorted_first[index] == first[query]:
            if sorted_second[index] == second[query]:
                found[query] = kinds[index]
                break
            index += 1
    return found


# Where the arrays of a kept file start. A numpy array viewed at an address that is not a multiple
# of its item size is "unaligned", and np.searchsorted copies the whole array before every search:
# 0.9 ms a search in a part of 1,500,000 identifiers instead of 2 us (2 s of a night's checks at
# 5,000,000 patients). np.savez leaves the data wherever the zip's headers end.
_ARRAY_ALIGNMENT = 64
_PADDING_FIELD = 0x6D61  # a zip "extra" field of our own (readers skip ids they do not know)


def _aligned_npz(arrays: Mapping[str, np.ndarray]) -> bytes:
    """`arrays` as np.savez would store them, each member's local header padded (with an extra
    field) so that its array's data starts on a multiple of _ARRAY_ALIGNMENT."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            npy = io.BytesIO()
            np.lib.format.write_array(npy, np.ascontiguousarray(array), allow_pickle=False)
            member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            npy.seek(0)
            version = np.lib.format.read_magic(npy)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            read_header(npy)  # leaves `npy` where the array's data starts
            data_start = out.tell() + 30 + len(member.filename.encode()) + npy.tell()
            padding = -data_start % _ARRAY_ALIGNMENT
            if padding:
                padding += _ARRAY_ALIGNMENT if padding < 4 else 0  # a field is at least its 4-byte header
                member.extra = struct.pack("<HH", _PADDING_FIELD, padding - 4) + bytes(padding - 4)
            archive.writestr(member, npy.getvalue())
    return out.getvalue()


def _npz_views(data: memoryview) -> dict[str, np.ndarray]:
    """The arrays of an uncompressed .npz (`np.savez`), each a read-only view into `data`."""
    arrays = {}
    with zipfile.ZipFile(pa.BufferReader(pa.py_buffer(data))) as archive:  # io.BytesIO would copy it all
        for member in archive.infolist():
            if member.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"{member.filename}: compressed, not written by to_bytes")
            # The local header's name and extra field may differ in length from the central directory's.
            local = member.header_offset
            name_length, extra_length = struct.unpack("<HH", data[local + 26 : local + 30])
            start = local + 30 + name_length + extra_length
            header = io.BytesIO(data[start : start + min(member.file_size, 1 << 16)])
            version = np.lib.format.read_magic(header)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read_header:
                raise ValueError(f"{member.filename}: .npy version {version}, not written by to_bytes")
            shape, fortran_order, dtype = read_header[version](header)
            if dtype.hasobject or fortran_order:
                raise ValueError(f"{member.filename}: not an array written by to_bytes")
            count = int(np.prod(shape, dtype=np.int64))
            array = np.frombuffer(data, dtype=dtype, count=count, offset=start + header.tell())
            if not array.flags.aligned:  # a file written before `_aligned_npz`: copied once, not at every search
                array = array.copy()
            arrays[member.filename.removesuffix(".npy")] = array.reshape(shape)
    return arrays


def _concatenated(batches: Sequence[HashedIdentifiers]) -> HashedIdentifiers:
    batches = [batch for batch in batches if len(batch.first)]
    return HashedIdentifiers(
        np.concatenate([batch.first for batch in batches]) if batches else np.zeros(0, np.uint64),
        np.concatenate([batch.second for batch in batches]) if batches else np.zeros(0, np.uint64),
        np.concatenate([batch.codes for batch in batches]) if batches else np.zeros(0, np.int64),
        _distinct_rows(np.concatenate([batch.shapes for batch in batches])) if batches else np.zeros((0, 4), np.int64),
        [key for batch in batches for key in batch.symbol_keys], [code for batch in batches for code in batch.symbol_codes],
    )


def _distinct_rows(shapes: np.ndarray) -> np.ndarray:
    """`np.unique(shapes, axis=0)` of (words, before, after, length) rows: packed into one integer
    each when they fit (a sort by rows is ten times slower than a sort of integers)."""
    if not len(shapes):
        return np.zeros((0, 4), np.int64)
    if shapes.min() < 0 or shapes.max() >= 1 << 15:
        return np.unique(shapes, axis=0)
    shapes = shapes.astype(np.int64)
    packed = np.unique((shapes[:, 0] << 45) | (shapes[:, 1] << 30) | (shapes[:, 2] << 15) | shapes[:, 3])
    mask = (1 << 15) - 1
    return np.stack([packed >> 45, (packed >> 30) & mask, (packed >> 15) & mask, packed & mask], axis=1)


def _hash_keys_of(secret: bytes | None) -> tuple[tuple[int, int], tuple[int, int]]:
    """The two hash keys and (odd) bases: from `secret` (an index assembled from parts hashed apart
    needs the same ones every time), or random."""
    if secret is None:
        return tuple(secrets.randbits(64) for _ in range(2)), tuple(secrets.randbits(64) | 1 for _ in range(2))
    words = [int.from_bytes(hashlib.blake2b(secret, digest_size=8, person=f"ma-index-{n}".encode()).digest(), "little")
             for n in range(4)]
    return (words[0], words[1]), (words[2] | 1, words[3] | 1)


def fold(text: str) -> str:
    """Lower case, one character for one, so match offsets stay offsets into the original."""
    folded = text.lower()
    if len(folded) == len(text):
        return folded
    return "".join(char.lower() if len(char.lower()) == 1 else char for char in text)


def joined_cell_starts(lengths: np.ndarray) -> np.ndarray:
    """Each cell's first character in the cells joined by one newline each."""
    starts = np.zeros(len(lengths), np.int64)
    np.cumsum(lengths[:-1] + 1, out=starts[1:])
    return starts


def _same_cell(cell_starts: np.ndarray, start: int, stop: int) -> bool:
    return bool(np.searchsorted(cell_starts, start, side="right") == np.searchsorted(cell_starts, stop - 1, side="right"))


class _PrefixHashes:
    """Prefix sums of one hash half over a text's code points: the hash of any slice in O(1)."""

    def __init__(self, codes: np.ndarray, key: int, base: int):
        self._sums = np.zeros(len(codes) + 1, np.uint64)
        np.cumsum(_mixed(codes, key) * _powers(base, len(codes)), out=self._sums[1:])
        self._inverses = _powers(pow(base, -1, 1 << 64), len(codes) + 1)

    def of(self, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
        """sum(mix(text[start + j]) * base ** j) modulo 2**64 for each slice."""
        return (self._sums[stops] - self._sums[starts]) * self._inverses[starts]


def _key_hashes(codes: np.ndarray, starts: np.ndarray, lengths: np.ndarray, key: int, base: int) -> np.ndarray:
    """What `_PrefixHashes(codes, key, base).of(starts, starts + lengths)` gives, for keys joined
    by one newline each: each character weighted by the power of its place in its own key and the
    weights summed key by key (no prefix sums, inverses or powers as long as the whole text)."""
    if not len(starts):
        return np.zeros(0, np.uint64)
    # Each character's place in its key; a newline's place is its key's length, and it weighs nothing.
    places = np.arange(len(codes)) - np.repeat(starts, lengths + 1)[: len(codes)]
    weighted = np.empty(len(codes) + 1, np.uint64)  # one more: the sum of a last, empty key
    np.multiply(_mixed(codes, key), _powers(base, int(lengths.max()) + 1)[places], out=weighted[:-1])
    weighted[-1] = 0
    weighted[(starts + lengths)[:-1]] = 0
    return np.add.reduceat(weighted, starts)


# base -> base ** j modulo 2**64, the longest made yet, for the last few bases used: an index of
# one process has random keys, and a process may make many (the tests do), so old ones are dropped.
_POWER_TABLES: dict[int, np.ndarray] = {}
_POWER_TABLES_KEPT = 8


def _powers(base: int, count: int) -> np.ndarray:
    """base ** j modulo 2**64 for j < count, from a table kept per base: texts are hashed in blocks
    of at most _BLOCK_CHARS (and a little more), so a process makes it about once, not a block."""
    table = _POWER_TABLES.pop(base, None)
    if table is None or len(table) < count:
        table = np.full(-(-count // 65536) * 65536, base, np.uint64)
        table[0] = 1
        np.cumprod(table, out=table)
    _POWER_TABLES[base] = table  # the most recently used last
    while len(_POWER_TABLES) > _POWER_TABLES_KEPT:
        del _POWER_TABLES[next(iter(_POWER_TABLES))]
    return table[:count]


@functools.lru_cache(maxsize=_POWER_TABLES_KEPT)
def _mix_table(key: int) -> np.ndarray:
    return _mix(np.arange(256, dtype=np.uint32), key)


def _mixed(codes: np.ndarray, key: int) -> np.ndarray:
    """`_mix(codes, key)`: Latin-1 code points (nearly all of a hospital's text) through a table."""
    table = _mix_table(key)
    if not len(codes) or codes.max() < 256:
        return table[codes]
    mixed = table[np.minimum(codes, 255)]
    wide = codes > 255
    mixed[wide] = _mix(codes[wide], key)
    return mixed


def _mix(codes: np.ndarray, key: int) -> np.ndarray:
    """A keyed bijection of the code points onto 64-bit values (splitmix64's finaliser)."""
    mixed = codes.astype(np.uint64) + np.uint64(key)
    mixed ^= mixed >> np.uint64(30)
    mixed *= np.uint64(_MIX_1)
    mixed ^= mixed >> np.uint64(27)
    mixed *= np.uint64(_MIX_2)
    mixed ^= mixed >> np.uint64(31)
    return mixed


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)


def _alnum_mask(codes: np.ndarray) -> np.ndarray:
    """Which code points are letters or digits by `str.isalnum`: what a whole word is made of."""
    mask = np.zeros(len(codes), bool)
    ascii_codes = codes < 128
    mask[ascii_codes] = _ASCII_ALNUM[codes[ascii_codes]]
    if not ascii_codes.all():
        others = ~ascii_codes
        distinct, inverse = np.unique(codes[others], return_inverse=True)
        mask[others] = np.array([chr(code).isalnum() for code in distinct.tolist()], bool)[inverse]
    return mask


def _words(alnum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first character, one past the last) of each maximal run of letters and digits."""
    previous = np.concatenate(([False], alnum[:-1]))
    following = np.concatenate((alnum[1:], [False]))
    return np.flatnonzero(alnum & ~previous), np.flatnonzero(alnum & ~following) + 1


def _sorted_distinct(
    firsts: list[np.ndarray], seconds: list[np.ndarray], codes: list[np.ndarray], kinds: int, lowest_code_wins: bool = False,
    already_sorted: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The hashes sorted, each once, with the kind of its first occurrence (as the identifiers
    were given: the first kind given for a value wins), or of its lowest code. `already_sorted`:
    one array, sorted by its first half (a kept part): no sort, no copy if each hash is there once."""
    if not firsts or not sum(map(len, firsts)):
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0, np.uint8)
    code_type = np.min_scalar_type(max(kinds - 1, 0))
    if already_sorted:
        first, second, code = firsts[0], seconds[0], codes[0]
        if not np.any(first[1:] == first[:-1]):
            return first, second, code.astype(code_type)
    else:
        first, second, code = np.concatenate(firsts), np.concatenate(seconds), np.concatenate(codes)
        # By the first half alone, stable (equal hashes keep the order they were given in): a third of the
        # time of sorting by both halves and the code, less on parts that come sorted (`HashedIdentifiers.sorted`).
        order = np.argsort(first, kind="stable")
        first, second, code = first[order], second[order], code[order]
    same_first = first[1:] == first[:-1]
    if np.any(same_first & (second[1:] != second[:-1])):
        # Two identifiers share a first half (about once in 10**6 indexes of 10**7): order by both.
        order = np.lexsort((second, first))
        first, second, code = first[order], second[order], code[order]
        same_first = (first[1:] == first[:-1]) & (second[1:] == second[:-1])
    starts = np.flatnonzero(np.concatenate(([True], ~same_first)))
    code = np.minimum.reduceat(code, starts) if lowest_code_wins else code[starts]
    return first[starts], second[starts], code.astype(code_type)


def _is_sorted(values: np.ndarray) -> bool:
    return bool(np.all(values[1:] >= values[:-1]))


def _shapes(batches: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From the (words, signs before, signs after, length) of every identifier: the distinct
    (words, before, after) with at least one word, for each a mask of the lengths it occurs with,
    and every distinct length."""
    rows = _distinct_rows(np.concatenate(batches)) if batches else np.zeros((0, 4), np.int64)
    lengths = np.unique(rows[:, 3])
    rows = rows[rows[:, 0] > 0]
    shapes, shape_of_row = np.unique(rows[:, :3], axis=0, return_inverse=True)
    masks = np.zeros((len(shapes), int(rows[:, 3].max()) + 1 if len(rows) else 1), bool)
    masks[shape_of_row.reshape(-1), rows[:, 3]] = True
    return shapes, masks, lengths

