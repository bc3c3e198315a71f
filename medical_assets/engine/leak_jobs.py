"""The leak check's scan as a Ray Data job: the files under the de-identified folders read and
searched in the workers, side by side (the scan is single-threaded Python: at a million messages,
7 s in one process); the driver sees only the findings, which name a place and a kind, never a value.
Files that together hold a few MB (a night's new part, the analytics tables, the reports), and the
carried parts a night searches for its few new identifiers, are searched in the run's process
instead: the same scanner, without shipping it, and no Ray to start.

The scanner carries the PHI zone's identifiers to the workers (through Ray's object store, spilled
to the run's private session folder if memory runs short): the same workers and store that parse
the landing files and carry every PHI row, so the check widens no one's access."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import ray

from medical_assets.engine.datasources import LandingFilesDatasource
from medical_assets.engine.memory import WORKER_RELEASE_ABOVE, release_memory
from medical_assets.engine.tasks import cluster_cpus, read_tables, runs_here
from medical_assets.privacy.leak_readers import tree_files
from medical_assets.privacy.leak_scanner import Finding, LeakScanner
from medical_assets.sources.folder import LandingFile
from medical_assets.storage import Location

IN_PROCESS_BYTES = 8 << 20  # files that together hold less are scanned in the run's process
# A scan that skips our token columns and looks for few identifiers (a night's new ones, in the
# parts it carried over) reads about 100 MB a second in one process: 2,000,000 messages of history
# in 1 s, where Ray's start, first job and stop would cost 8 s before its workers' share.
RESCAN_IN_PROCESS_BYTES = 512 << 20

_FINDINGS = pa.schema(
    [
        pa.field("file_index", pa.int64()),  # the file's place in the order `scan_tree` would visit it
        pa.field("where", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("count", pa.int64()),
    ]
)


def scan_trees(
    scanner: LeakScanner,
    roots: Sequence[Location],
    keep: Callable[[str], bool] | None = None,
    in_process_bytes: int | None = None,
) -> list[Finding]:
    """What `scanner.scan_tree` finds under each of `roots` (all on one filesystem), in the same
    order; with `keep`, only in the files whose path it accepts. Files that hold no more than
    `in_process_bytes` (default IN_PROCESS_BYTES) together are searched in this process."""
    files: list[LandingFile] = []
    owners: dict[str, tuple[int, Location]] = {}
    for root in roots:
        for path, size in tree_files(root):
            if keep is not None and not keep(path):
                continue
            owners[path] = (len(files), root)
            files.append(LandingFile(path, path[len(root.path) :].lstrip("/"), size, None))
    if not files:
        return []
    # Sized by what the scan reads: a night's search of files whose texts were kept reads those instead.
    reads = sum(scanner.bytes_to_read(owners[file.path][1], file.path, file.size_bytes) for file in files)
    if runs_here(reads, IN_PROCESS_BYTES if in_process_bytes is None else in_process_bytes):
        # A few small files (a night's analytics tables, the reports): searched here, in well under
        # the time it takes to put the scanner (the index: hundreds of MB at millions of patients)
        # into the object store and start the tasks.
        return [finding for file in files for finding in scanner.scan_tree_file(owners[file.path][1], file.path)]
    filesystems = {type(root.filesystem) for root in roots}
    if len(filesystems) != 1:
        raise ValueError(f"the folders to scan are on different filesystems: {sorted(map(str, filesystems))}")
    # The scanner goes to the object store once. Captured in the read function it was serialized
    # into every read task (with millions of diverse patients, hundreds of MiB per task, and the run's
    # process ran out of memory). One task per CPU: each worker loads the
    # scanner once, streams its share of the files through it, and drops it when the task ends.
    # The scanner's identifiers are numpy arrays of hashes (17 bytes an identifier): Ray stores them
    # out of band and every worker of a node maps that one copy, read-only, instead of unpickling its own.
    tasks = cluster_cpus()  # Ray started, before the scanner goes into its object store
    scan = _ScanFiles(ray.put(scanner), owners)
    found = pa.concat_tables(
        [_FINDINGS.empty_table(), *read_tables(LandingFilesDatasource(files, roots[0].filesystem, scan, _FINDINGS), tasks)]
    )
    # Stable: a file's findings keep the order the scanner gave them.
    found = found.take(pc.sort_indices(found, [("file_index", "ascending")]))
    return [Finding(row["where"], row["kind"], row["count"]) for row in found.to_pylist()]


class _ScanFiles:
    """The scan of one read task's files, block by block. Each task unpickles its own copy of this
    object: the scanner is fetched from the object store at the task's first block and dropped
    after its last (`finish_task`), so no worker keeps it into the next job."""

    def __init__(self, scanner_ref: ray.ObjectRef, owners: dict[str, tuple[int, Location]]):
        self._scanner_ref = scanner_ref
        self._owners = owners
        self._scanner: LeakScanner | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_scanner": None}

    def __call__(self, files: list[tuple[bytes, str]]) -> pa.Table:
        if self._scanner is None:
            self._scanner = ray.get(self._scanner_ref)
        rows = []
        for data, path in files:
            index, root = self._owners[path]
            for finding in self._scanner.scan_tree_file(root, path, data):
                rows.append({"file_index": index, "where": finding.where, "kind": finding.kind, "count": finding.count})
        release_memory(WORKER_RELEASE_ABOVE)  # the texts of the tables scanned are garbage now
        return pa.Table.from_pylist(rows, schema=_FINDINGS)

    def finish_task(self) -> None:
        """Called by the datasource after the task's last block: the worker hands the scanner back."""
        self._scanner = None
        release_memory(WORKER_RELEASE_ABOVE)
