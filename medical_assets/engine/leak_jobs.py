"""The leak check's scan as a Ray Data job: the files under the de-identified folders read and
searched in the workers, side by side (the scan is single-threaded Python: at a million messages,
7 s in one process); the driver sees only the findings, which name a place and a kind, never a value.

The scanner carries the PHI zone's identifiers to the workers (through Ray's object store, spilled
to the run's private session folder if memory runs short): the same workers and store that parse
the landing files and carry every PHI row, so the check widens no one's access."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
import ray

from medical_assets.engine.datasources import LandingFilesDatasource
from medical_assets.engine.jobs import HL7_BYTES_PER_TASK, TASK_OPTIONS, cluster_cpus, read_task_count
from medical_assets.engine.memory import WORKER_RELEASE_ABOVE, release_memory
from medical_assets.landing import LandingFile
from medical_assets.privacy.leaks import Finding, LeakScanner, tree_files
from medical_assets.storage import Location

_FINDINGS = pa.schema(
    [
        pa.field("file_index", pa.int64()),  # the file's place in the order `scan_tree` would visit it
        pa.field("where", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("count", pa.int64()),
    ]
)


def scan_trees(scanner: LeakScanner, roots: Sequence[Location]) -> list[Finding]:
    """What `scanner.scan_tree` finds under each of `roots` (all on one filesystem), in the same order."""
    files: list[LandingFile] = []
    owners: dict[str, tuple[int, Location]] = {}
    for root in roots:
        for path, size in tree_files(root):
            owners[path] = (len(files), root)
            files.append(LandingFile(path, path[len(root.path) :].lstrip("/"), size, None))
    if not files:
        return []
    filesystems = {type(root.filesystem) for root in roots}
    if len(filesystems) != 1:
        raise ValueError(f"the folders to scan are on different filesystems: {sorted(map(str, filesystems))}")
    total_bytes = sum(f.size_bytes for f in files)
    dataset = ray.data.read_datasource(
        LandingFilesDatasource(files, roots[0].filesystem, functools.partial(_scan, scanner=scanner, owners=owners), _FINDINGS),
        # Scanning a Parquet file costs about what parsing its HL7 did: tasks of the same size.
        override_num_blocks=read_task_count(total_bytes, len(files), cluster_cpus(), HL7_BYTES_PER_TASK),
        ray_remote_args=TASK_OPTIONS,
    )
    refs = dataset.to_arrow_refs()
    found = pa.concat_tables([_FINDINGS.empty_table(), *ray.get(refs)])
    # Stable: a file's findings keep the order the scanner gave them.
    found = found.take(pc.sort_indices(found, [("file_index", "ascending")]))
    return [Finding(row["where"], row["kind"], row["count"]) for row in found.to_pylist()]


def _scan(files: list[tuple[bytes, str]], scanner: LeakScanner, owners: dict[str, tuple[int, Location]]) -> pa.Table:
    rows = []
    for data, path in files:
        index, root = owners[path]
        for finding in scanner.scan_tree_file(root, path, data):
            rows.append({"file_index": index, "where": finding.where, "kind": finding.kind, "count": finding.count})
    release_memory(WORKER_RELEASE_ABOVE)  # the texts of the tables scanned are garbage now: the worker need not keep them
    return pa.Table.from_pylist(rows, schema=_FINDINGS)
