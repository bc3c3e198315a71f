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

from collections.abc import Callable, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import ray

from medical_assets.engine.datasources import LandingFilesDatasource
from medical_assets.engine.memory import WORKER_RELEASE_ABOVE, release_memory
from medical_assets.engine.tasks import cluster_cpus, read_tables, runs_here
from medical_assets.privacy.leak_readers import ListedFile, tree_listing
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
    listed_as: Mapping[str, ListedFile] | None = None,
) -> list[Finding]:
    """What `scanner.scan_tree` finds under each of `roots` (all on one filesystem), in the same
    order; with `keep`, only in the files whose path it accepts. Files whose kept texts the scanner
    searches instead are searched in this process, as are the others when they hold no more than
    `in_process_bytes` (default IN_PROCESS_BYTES) together. `listed_as`: by path, the listing of a
    file whose kept texts stand for this one's (a copy of it made by this run: the original's time)."""
    files: list[tuple[LandingFile, ListedFile]] = []
    owners: dict[str, tuple[int, Location, ListedFile]] = {}
    for root in roots:
        for listed in tree_listing(root):
            if keep is not None and not keep(listed.path):
                continue
            key_listing = (listed_as or {}).get(listed.path, listed)
            owners[listed.path] = (len(files), root, key_listing)
            files.append((LandingFile(listed.path, listed.path[len(root.path) :].lstrip("/"), listed.size, None), key_listing))
    if not files:
        return []
    # Sized by what the scan reads: a night's search of files whose texts were kept reads those instead.
    kept, unkept = [], []
    for file, key_listing in files:
        reads = scanner.bytes_to_read(owners[file.path][1], file.path, file.size_bytes, key_listing)
        (unkept if reads else kept).append((file, key_listing))
    found: dict[int, list[Finding]] = {}
    # Bundle by bundle (`CellTextFolder`): each is read once.
    for file, key_listing in sorted(kept, key=lambda item: (scanner.kept_texts_order(item[0].path, item[1]), item[0].path)):
        index, root, _ = owners[file.path]
        found[index] = scanner.scan_tree_file(root, file.path, listed=key_listing)
    if runs_here(sum(file.size_bytes for file, _ in unkept), IN_PROCESS_BYTES if in_process_bytes is None else in_process_bytes):
        # A few small files (a night's analytics tables, the reports): searched here, in well under
        # the time it takes to put the scanner (the index: hundreds of MB at millions of patients)
        # into the object store and start the tasks.
        for file, key_listing in unkept:
            index, root, _ = owners[file.path]
            found[index] = scanner.scan_tree_file(root, file.path, listed=key_listing)
        scanner.flush_kept_texts()
    else:
        for row in _scan_in_workers(scanner, roots, [file for file, _ in unkept], owners).to_pylist():
            found.setdefault(row["file_index"], []).append(Finding(row["where"], row["kind"], row["count"]))
    return [finding for index in sorted(found) for finding in found[index]]


def _scan_in_workers(
    scanner: LeakScanner, roots: Sequence[Location], files: list[LandingFile], owners: dict[str, tuple[int, Location, ListedFile]]
) -> pa.Table:
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
    scanner.ready_to_share()
    scan = _ScanFiles(ray.put(scanner), {file.path: owners[file.path] for file in files})
    found = pa.concat_tables(
        [_FINDINGS.empty_table(), *read_tables(LandingFilesDatasource(files, roots[0].filesystem, scan, _FINDINGS), tasks)]
    )
    # Stable: a file's findings keep the order the scanner gave them.
    return found.take(pc.sort_indices(found, [("file_index", "ascending")]))


class _ScanFiles:
    """The scan of one read task's files, block by block. Each task unpickles its own copy of this
    object: the scanner is fetched from the object store at the task's first block and dropped
    after its last (`finish_task`), so no worker keeps it into the next job."""

    def __init__(self, scanner_ref: ray.ObjectRef, owners: dict[str, tuple[int, Location, ListedFile]]):
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
            index, root, listed = self._owners[path]
            for finding in self._scanner.scan_tree_file(root, path, data, listed=listed):
                rows.append({"file_index": index, "where": finding.where, "kind": finding.kind, "count": finding.count})
        release_memory(WORKER_RELEASE_ABOVE)  # the texts of the tables scanned are garbage now
        return pa.Table.from_pylist(rows, schema=_FINDINGS)

    def finish_task(self) -> None:
        """Called by the datasource after the task's last block: the texts the task kept are written
        (one bundle), and the worker hands the scanner back."""
        if self._scanner is not None:
            self._scanner.flush_kept_texts()
        self._scanner = None
        release_memory(WORKER_RELEASE_ABOVE)
