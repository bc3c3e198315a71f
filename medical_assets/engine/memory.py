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
import os

import pyarrow as pa

# Below this resident size a worker has little to hand back, and the collection and trim would
# cost a short task more than they return (a DICOM job's tasks end below it).
WORKER_RELEASE_ABOVE = 512 << 20


def release_memory(above_bytes: int = 0) -> None:
    """Python's cycles collected, then Arrow's pool and the C heap trimmed; only when the process's
    resident size is above `above_bytes`."""
    if above_bytes and _resident_bytes() <= above_bytes:
        return
    gc.collect()
    _freeze_imports()
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _freeze_imports() -> None:
    """Once a process: what survived its first full collection (modules and the objects of its
    imports, some 300,000 in a Ray worker) is frozen, so later collections walk only what was made
    since. Walking them at each task's end cost 3.6 s of the workers' time in a 2,000,000-message
    first run. Frozen objects are still freed when their last reference goes; only a cycle among
    them would stay, and what is frozen is what the process held at one moment, once."""
    gc.freeze()


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def _resident_bytes() -> int:
    """This process's resident size (Linux: /proc/self/statm); 0 where unknown, so memory is released."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
