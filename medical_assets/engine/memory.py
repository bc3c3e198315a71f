"""Freed memory handed back to the system at the end of a large step.

A Ray worker and Dagster's run process live for the whole run; without this, each keeps the
resident size of its largest step to the end (Arrow's mimalloc pool and glibc's heap keep freed
pages for reuse), and the run's peak becomes the sum of every process's own peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc

import pyarrow as pa


def release_memory() -> None:
    """Python's cycles collected, then Arrow's pool and the C heap trimmed (a few milliseconds)."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
