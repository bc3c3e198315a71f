"""The published state of a data folder (every table's rows, every file of the folders of files), for
tests that compare two runs' outputs: a killed and resumed run with an undisturbed one, a run that
carried steps over with a full rebuild."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

ZONES = ("phi", "deid", "deid/analytics")  # folders of published tables, each with its own .staging
NOT_TABLES = {"_audit"}  # phi/_audit: one record per PHI read, appended by every run (killed ones too)
# phi/_census: files of the census (each its own table) and a cache of each part's census, named
# by the parts' digests and holding their names: how the files fell into parts, not the data.
STATE_FOLDERS = {"phi/_census": {"parts"}}


@dataclass
class Published:
    tables: dict[str, tuple[list, list[str]]] = field(default_factory=dict)  # relative path -> (schema, sorted rows)
    folders: dict[str, dict[str, bytes]] = field(default_factory=dict)  # relative path -> {file: bytes}


def table_rows(folder: Path) -> tuple[list, list[str]]:
    """Schema (names and types; schema metadata, which holds the run id and time, left out) and the
    rows as a sorted list of reprs: a multiset, whatever the order of parts and rows."""
    table = pq.read_table(folder)
    schema = [(f.name, str(f.type)) for f in table.schema]
    return schema, sorted(repr(tuple(row.values())) for row in table.to_pylist())


def folder_files(folder: Path) -> dict[str, bytes]:
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root, name)
            files[str(path.relative_to(folder))] = path.read_bytes()
    return files


def published_paths(data: Path) -> tuple[list[str], list[str]]:
    """Table folders (with Parquet parts) and plain folders (DICOM files, reports) of the zones."""
    tables, folders = [], []
    for zone in ZONES:
        root = data / zone
        if not root.is_dir():
            continue
        for entry in sorted(root.iterdir()):
            relative = f"{zone}/{entry.name}"
            if not entry.is_dir() or entry.name.startswith(".") or entry.name in NOT_TABLES or relative in ZONES:
                continue
            if relative in STATE_FOLDERS:
                tables += [f"{relative}/{file.name}" for file in sorted(entry.glob("*.parquet"))]
                continue
            (tables if any(entry.glob("*.parquet")) else folders).append(relative)
    return tables, folders


def read_published(data: Path) -> Published:
    tables, folders = published_paths(data)
    return Published({t: table_rows(data / t) for t in tables}, {f: folder_files(data / f) for f in folders})
