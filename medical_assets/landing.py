"""What the pipeline does with the files that arrived: their manifest, the parse plan, and its ledger."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from importlib.metadata import version

import pyarrow as pa
import pyarrow.fs as pafs

from medical_assets.columns import column
from medical_assets.sources.folder import LandingFile

MANIFEST_SCHEMA = pa.schema(
    [
        column("path", pa.string(), "landing folder", "Full path (or object key) of the file."),
        column("relative_path", pa.string(), "landing folder", "Path below the source folder."),
        column("size_bytes", pa.int64(), "file system", "Size of the file in bytes."),
        column("modified_time", pa.timestamp("us", tz="UTC"), "file system", "Last modification time of the file."),
        column("sha256", pa.string(), "derived", "SHA-256 of the file's bytes, hex."),
    ]
)


def sha256_of(filesystem: pafs.FileSystem, path: str, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with filesystem.open_input_stream(path) as stream:
        while chunk := stream.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_table(files: list[LandingFile], checksums: dict[str, str]) -> pa.Table:
    return pa.table(
        {
            "path": [f.path for f in files],
            "relative_path": [f.relative_path for f in files],
            "size_bytes": [f.size_bytes for f in files],
            "modified_time": [f.modified_time_ns // 1000 if f.modified_time_ns is not None else None for f in files],
            "sha256": [checksums[f.path] for f in files],
        },
        schema=MANIFEST_SCHEMA,
    )


def files_from_manifest(manifest: pa.Table) -> list[LandingFile]:
    return [
        LandingFile(path, relative, size, None)
        for path, relative, size in zip(
            manifest["path"].to_pylist(), manifest["relative_path"].to_pylist(), manifest["size_bytes"].to_pylist()
        )
    ]


def changed_files(current: list[LandingFile], manifest: pa.Table | None) -> list[LandingFile]:
    """Files that are new, or whose size or modification time differ from the manifest's row."""
    if manifest is None or manifest.num_rows == 0:
        return list(current)
    known = {
        relative: (size, None if modified is None else int(modified.timestamp() * 1_000_000))
        for relative, size, modified in zip(
            manifest["relative_path"].to_pylist(), manifest["size_bytes"].to_pylist(), manifest["modified_time"].to_pylist()
        )
    }
    changed = []
    for landing_file in current:
        modified_us = None if landing_file.modified_time_ns is None else landing_file.modified_time_ns // 1000
        if known.get(landing_file.relative_path) != (landing_file.size_bytes, modified_us):
            changed.append(landing_file)
    return changed


def known_checksums(files: list[LandingFile], manifest: pa.Table | None, changed: list[LandingFile]) -> dict[str, str]:
    """The manifest's SHA-256 of each file not in `changed` (see `changed_files`)."""
    if manifest is None:
        return {}
    recorded = dict(zip(manifest["path"].to_pylist(), manifest["sha256"].to_pylist()))
    changed_paths = {f.path for f in changed}
    return {f.path: recorded[f.path] for f in files if f.path not in changed_paths and f.path in recorded}


def run_key_for(kind: str, files: list[LandingFile]) -> str:
    """The same set of file versions always gives the same key, so a sensor requests it once."""
    digest = hashlib.sha256(kind.encode())
    for landing_file in sorted(files, key=lambda f: f.relative_path):
        digest.update(f"\x1f{landing_file.relative_path}\x1e{landing_file.size_bytes}\x1e{landing_file.modified_time_ns}".encode())
    return f"{kind}-{digest.hexdigest()[:24]}"


# The ledger of a parse: which file versions the published PHI tables hold, and what built them.
# It is published with the tables it describes, so the two never disagree.
LEDGER_SCHEMA = pa.schema(
    [
        column("path", pa.string(), "landing manifest", "Full path of a file the published tables hold rows of."),
        column("sha256", pa.string(), "landing manifest", "SHA-256 of the file version parsed."),
        column("build", pa.string(), "derived",
               "Code version and output options of the parse; a new build re-parses everything."),
    ]
)


@dataclass(frozen=True)
class ParsePlan:
    """What a parse run does: parse `parse`, drop the published rows of `drop`, keep the rest."""

    parse: list[LandingFile]  # new or changed files
    drop: frozenset[str]  # paths whose published rows go: changed or no longer in the landing folder
    full: bool  # nothing is kept: a first run, or a new build
    reason: str  # for the run log

    @property
    def unchanged(self) -> bool:
        return not self.full and not self.parse and not self.drop


def plan_parse(manifest: pa.Table, ledger: pa.Table | None, build: str) -> ParsePlan:
    """Compare the landing manifest with the ledger of the published tables.

    A file counts as the same when its path and SHA-256 are: a file touched but not changed is
    not parsed again, and a file changed in place with the same size and time still is.
    """
    files = files_from_manifest(manifest)
    if ledger is not None and ledger.num_rows == 0 and not files and _ledger_build(ledger) == build:
        # An empty landing folder, as at the last parse by this build: the empty tables stay as they are.
        return ParsePlan([], frozenset(), False, "nothing to parse: the landing folder is empty, as at the last parse")
    if ledger is None or ledger.num_rows == 0:
        return ParsePlan(files, frozenset(), True, "first parse: every file")
    builds = set(ledger["build"].to_pylist())
    if builds != {build}:
        return ParsePlan(files, frozenset(), True, "new code version or output options: every file again")
    published = dict(zip(ledger["path"].to_pylist(), ledger["sha256"].to_pylist()))
    current = dict(zip(manifest["path"].to_pylist(), manifest["sha256"].to_pylist()))
    parse = [f for f in files if published.get(f.path) != current[f.path]]
    drop = frozenset(path for path, digest in published.items() if current.get(path) != digest)
    gone = sum(1 for path in published if path not in current)
    reason = f"incremental: {len(parse)} new or changed files, {gone} removed, {len(current) - len(parse)} kept"
    return ParsePlan(parse, drop, False, reason)


def ledger_table(manifest: pa.Table, build: str) -> pa.Table:
    # The build in the schema's metadata too: a ledger of an empty landing folder has no row to hold it.
    return pa.table(
        {
            "path": manifest["path"],
            "sha256": manifest["sha256"],
            "build": pa.array([build] * manifest.num_rows, pa.string()),
        },
        schema=LEDGER_SCHEMA.with_metadata({**(LEDGER_SCHEMA.metadata or {}), _BUILD_KEY: build.encode()}),
    )


_BUILD_KEY = b"medical_assets.build"


def _ledger_build(ledger: pa.Table) -> str | None:
    value = (ledger.schema.metadata or {}).get(_BUILD_KEY)
    return value.decode() if value is not None else None


def code_fingerprint(packages: list[str]) -> str:
    """A digest of the source files of `packages` (and the project's version): it changes with any
    edit of the code, which a version number alone would not show during development."""
    digest = hashlib.sha256(version("medical-assets").encode())
    for package in sorted(packages):
        root = resources.files(package)
        for name in sorted(entry.name for entry in root.iterdir() if entry.name.endswith(".py")):
            digest.update(f"\x1f{package}/{name}\x1e".encode() + root.joinpath(name).read_bytes())
    return digest.hexdigest()[:16]
