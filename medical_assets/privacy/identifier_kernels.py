"""The identifiers' hashes and shapes in one compiled pass over their bytes (numba), for ASCII keys.

`IdentifierIndex._hash_spans` computes the same with whole-array numpy steps (a mix, weights by
place, a sum per key, words, three searches), each a pass over arrays of 8 bytes a character: a
part group's 600,000 identifier forms (6 million characters) took 0.28 s; this loop reads each
byte once and takes a few hundredths of a second. Imported only where identifiers are hashed in
bulk (`IdentifierIndex.hashed_array`), as numba's LLVM costs a process about 100 MiB; compiled
once per machine and cached beside this file, as `hl7.kernels` is.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def ascii_key_hashes(data, offsets, mix1, mix2, alnum, base1, base2):
    """For the keys data[offsets[k]:offsets[k + 1]] (ASCII bytes): both hash halves,
    sum(mix(byte_j) * base ** j) modulo 2**64, and the shape (words, signs before the first word,
    signs after the last, length) as `IdentifierIndex._hash_spans` gives them."""
    n = offsets.shape[0] - 1
    first = np.empty(n, np.uint64)
    second = np.empty(n, np.uint64)
    shapes = np.empty((n, 4), np.int64)
    for k in range(n):
        start = offsets[k]
        length = offsets[k + 1] - start
        h1 = np.uint64(0)
        h2 = np.uint64(0)
        p1 = np.uint64(1)
        p2 = np.uint64(1)
        words = 0
        first_alnum = -1
        last_alnum = -1
        previous = False
        for j in range(length):
            byte = data[start + j]
            h1 += mix1[byte] * p1
            h2 += mix2[byte] * p2
            p1 *= base1
            p2 *= base2
            current = alnum[byte]
            if current:
                if not previous:
                    words += 1
                if first_alnum < 0:
                    first_alnum = j
                last_alnum = j
            previous = current
        first[k] = h1
        second[k] = h2
        shapes[k, 0] = words
        shapes[k, 1] = first_alnum if words > 0 else 0
        shapes[k, 2] = length - 1 - last_alnum if words > 0 else 0
        shapes[k, 3] = length
    return first, second, shapes
