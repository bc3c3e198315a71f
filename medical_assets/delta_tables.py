"""Tables on an object store are Delta Lake tables, so that publishing one is atomic there too.

An object store has no rename: copying a new version over the old one lets a reader see half of
each, and a killed run leave a mix. So a table's files are written under new names
(`<table>/run-<run id>/part-00003.parquet`) and one commit to the table's `_delta_log/` makes them
the table; a reader that reads the table as Delta (DuckDB `delta_scan`, Spark, Trino, Polars,
`deltalake`, our own `storage.table_files`) sees the old version or the new one, never a mix.
Parts the run carried over unchanged stay where they are (the commit keeps them), so a night
copies only what changed. Old versions' files stay for `MEDICAL_ASSETS_DELTA_RETENTION_HOURS`
(default 168: a week of time travel), then the next publication vacuums them. Local disks keep
plain Parquet folders, swapped atomically by `storage.TablePublication`.

Writers are one at a time per data folder (Dagster's queue), so commits need no lock service.
"""

from __future__ import annotations

import json
import os
import posixpath
import time
from collections.abc import Iterable

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from medical_assets.config import ConfigurationError
from medical_assets.storage import Location

DELTA_LOG = "_delta_log"
RETENTION_VAR = "MEDICAL_ASSETS_DELTA_RETENTION_HOURS"
DEFAULT_RETENTION_HOURS = 168
RUN_FOLDER_PREFIX = "run-"
_APP_ID = "medical-assets run "  # + run id: the commit's idempotency key, so a recovery never commits twice
_SCHEMES = {"s3": "s3", "gcs": "gs"}  # pyarrow's filesystem type -> the URI scheme delta-rs reads (Azure: not mapped yet)


def is_object_store(location: Location) -> bool:
    return not isinstance(location.filesystem, pafs.LocalFileSystem)


def current_files(table: Location) -> list[Location] | None:
    """The Parquet files of the table's current version, sorted; None when `table` is not a Delta
    table (nothing published yet, or a folder an older version published as plain Parquet)."""
    delta = _open(table)
    if delta is None:
        return None
    root = table.path.rstrip("/") + "/"
    return sorted((Location(table.filesystem, root + relative) for relative in _relative_files(delta)), key=lambda f: f.path)


def publish(staged: Location, table: Location, run_id: str, kept: Iterable[str] = ()) -> None:
    """Make the Parquet files of the `staged` folder the table's current version, in one commit.

    `kept`: names of staged files that are copies of the table's current file of the same name
    (carried over unchanged): the commit keeps the published file rather than add the copy. Safe
    to call again after an interruption: a commit already made by `run_id` is not made twice."""
    from deltalake import Schema
    from deltalake.transaction import AddAction, CommitProperties, RemoveAction, Transaction, create_table_with_add_actions

    delta = _open(table)
    app_id = _APP_ID + run_id
    if delta is not None and delta.transaction_version(app_id) is not None:
        return  # committed before an interruption
    fs = table.filesystem
    sizes = {
        posixpath.basename(info.path): info.size
        for info in fs.get_file_info(pafs.FileSelector(staged.path, allow_not_found=True))
        if info.type == pafs.FileType.File and info.path.endswith(".parquet")
    }
    names = sorted(sizes)
    if not names:
        raise ValueError(f"nothing staged for {table.uri}")  # commit() stages an empty part for an empty table
    schema = pq.read_schema(staged.child(names[0]).path, filesystem=fs)
    delta_schema = Schema.from_arrow(schema)
    published = {posixpath.basename(path): path for path in _relative_files(delta)} if delta is not None else {}
    same_schema = delta is not None and json.loads(delta.schema().to_json()) == json.loads(delta_schema.to_json())
    keep = {name for name in kept if name in published} if same_schema else set()
    now_ms = int(time.time() * 1000)
    adds = []
    for name in names:
        if name in keep:
            continue
        relative = f"{RUN_FOLDER_PREFIX}{run_id}/{name}"
        fs.copy_file(staged.child(name).path, table.child(relative).path)  # a copy keeps the size
        adds.append(AddAction(relative, sizes[name], {}, now_ms, True, ""))
    properties = CommitProperties(app_transactions=[Transaction(app_id, 0)], custom_metadata={"medical_assets.run_id": run_id})
    uri, options = table_uri(table), storage_options(table)
    if delta is None:
        create_table_with_add_actions(uri, delta_schema, adds, mode="overwrite", storage_options=options, commit_properties=properties)
        _delete_plain_parquet(table)
    elif same_schema:
        removes = [RemoveAction(path, True, now_ms) for name, path in published.items() if name not in keep]
        delta.create_write_transaction([*adds, *removes], mode="append", schema=schema, commit_properties=properties)
    else:  # our code changed the table's columns: a new version with the new schema
        delta.create_write_transaction(adds, mode="overwrite", schema=schema, commit_properties=properties)
    _vacuum(table)


def retention_hours() -> int:
    raw = os.environ.get(RETENTION_VAR, "").strip()
    if not raw:
        return DEFAULT_RETENTION_HOURS
    try:
        hours = int(raw)
    except ValueError:
        hours = -1
    if hours < 0:
        raise ConfigurationError(f"{RETENTION_VAR} must be a whole number of hours (0 or more), not {raw!r}")
    return hours


def table_uri(table: Location) -> str:
    scheme = _SCHEMES.get(table.filesystem.type_name)
    if scheme is None:
        raise ConfigurationError(f"tables on a {table.filesystem.type_name} filesystem cannot be published as Delta tables")
    return f"{scheme}://{table.path.rstrip('/')}"


def storage_options(table: Location) -> dict[str, str]:
    """What delta-rs needs besides the environment's credentials: the endpoint and region that
    pyarrow takes from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL and the filesystem."""
    if table.filesystem.type_name != "s3":
        return {}
    options = {"AWS_S3_ALLOW_UNSAFE_RENAME": "true"}  # one writer at a time: no lock service needed
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    region = getattr(table.filesystem, "region", None) or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        options["AWS_REGION"] = region
    return options


def _open(table: Location):
    from deltalake import DeltaTable

    if not table.child(DELTA_LOG).is_dir():
        return None
    return DeltaTable(table_uri(table), storage_options=storage_options(table))


def _relative_files(delta) -> list[str]:
    root = delta.table_uri.rstrip("/") + "/"
    return [uri[len(root):] if uri.startswith(root) else uri for uri in delta.file_uris()]


def _vacuum(table: Location) -> None:
    """Delete the files of versions older than the retention (and files no version names)."""
    from deltalake import DeltaTable

    hours = retention_hours()
    delta = DeltaTable(table_uri(table), storage_options=storage_options(table))
    delta.vacuum(retention_hours=hours, dry_run=False, enforce_retention_duration=hours >= DEFAULT_RETENTION_HOURS)


def _delete_plain_parquet(table: Location) -> None:
    """Drop the Parquet files an older version of the pipeline published at the table's top level:
    no Delta version names them, and a reader listing the folder would take them for the table."""
    for info in table.filesystem.get_file_info(pafs.FileSelector(table.path, allow_not_found=True)):
        if info.type == pafs.FileType.File and info.path.endswith(".parquet"):
            table.filesystem.delete_file(info.path)
