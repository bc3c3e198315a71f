"""The leak scanner's identifier hashes are shared by the workers of a node, not copied into each."""

import pytest
import ray

pytestmark = pytest.mark.slow


@ray.remote(num_cpus=1)
def _loaded_in_a_worker(refs: list) -> dict:
    import os
    import time

    scanner = ray.get(refs[0])
    time.sleep(1)  # holds its CPU, so that the other task runs in the other worker
    (segment,) = scanner._index._segments  # one merged array of hashes, and the kinds
    arrays = list(segment)
    return {
        "pid": os.getpid(),
        # Ray hands out numpy arrays read from the object store as read-only views of its shared
        # memory: a worker that had unpickled its own copy would get writeable arrays.
        "read_only": [not array.flags.writeable for array in arrays],
        "owns_data": [array.flags.owndata for array in arrays],
        "found": scanner.scan_text("seen: MRN00123457"),
    }


def test_two_workers_read_the_scanner_hashes_zero_copy_from_the_object_store(shared_ray):
    """At 5,000,000 patients each scanning worker unpickled its own 1.4 GB scanner. Now the hashes
    are numpy arrays: put once, every worker of the node maps the same memory."""
    from medical_assets.privacy.leak_scanner import LeakScanner

    scanner = LeakScanner({f"MRN{index:08d}": "patient_id" for index in range(200_000)}, patterns=False)
    ref = ray.put(scanner)

    # Passed in a list so each task fetches the object itself (as the leak job's read tasks do).
    results = ray.get([_loaded_in_a_worker.remote([ref]) for _ in range(2)])

    assert len({result["pid"] for result in results}) == 2, "both tasks ran in one worker"
    for result in results:
        assert result["read_only"] == [True, True, True]
        assert result["owns_data"] == [False, False, False]
        assert result["found"] == ["patient_id"]
