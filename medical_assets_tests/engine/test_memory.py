"""Freed memory goes back to the system: a worker or the run's process must not keep a step's peak."""

import gc

import numpy as np
import psutil
import pyarrow as pa

from medical_assets.engine.memory import release_memory


def test_freed_arrow_and_heap_memory_is_returned_to_the_system():
    process = psutil.Process()
    before = process.memory_info().rss
    # Many small Arrow arrays (Arrow's mimalloc pool keeps their pages once freed) and strings
    # too long for Python's small-object allocator (glibc's heap keeps those): some 500 MiB.
    arrays = [pa.array(np.arange(1024, dtype=np.int64) + i) for i in range(50_000)]
    strings = ["x" * 600 + str(i) for i in range(200_000)]
    assert process.memory_info().rss - before > 300 << 20
    del arrays, strings
    gc.collect()

    release_memory()

    assert process.memory_info().rss - before < 100 << 20


def test_a_small_process_is_left_alone(monkeypatch):
    collections = []
    monkeypatch.setattr("gc.collect", lambda *args: collections.append(args))
    resident = psutil.Process().memory_info().rss

    release_memory(above_bytes=resident + (256 << 20))
    assert collections == []

    release_memory(above_bytes=resident // 2)
    assert len(collections) == 1
