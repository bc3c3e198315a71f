"""The distinct cell texts of published Parquet files, kept for the leak check's search of the files
a night carries over (`privacy.leak_scanner.CellTextStore`).

A night's check searches the parts it carried over for the identifiers that are new since their
own check; their text does not change, so reading them again (2.2 s at 5,000,000 messages of
history, most of a night's HL7 step) finds nothing their kept texts would not. Each file's texts
(every column but our token columns: each distinct value with how many cells hold it) are kept in
`phi/_census/cell_texts/<footer digest>.arrow` by the check that first reads the file; the digest
of a Parquet footer changes whenever the file is written again (our stamp names the run and time).
The texts are de-identified values, kept in the PHI zone's private cache with the rest.

The DICOM export keeps the texts of its files the same way (`DICOM_FOLDER`): their elements' texts
and raw bytes (without pixel data), by `leak_readers.dicom_file_key` (name, size, time: a DICOM file
has no footer to digest). A night with new HL7 patients searches every exported file for them:
without kept texts, it read the whole DICOM history (pixel data and all) every night.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from medical_assets.privacy.leak_readers import DICOM_SUFFIXES, dicom_file_key, parquet_file_footer_digest, tree_files
from medical_assets.privacy.leak_scanner import CellTexts
from medical_assets.storage import Location, restrict_to_owner, table_files

CACHE_FOLDER = ("_census", "cell_texts")  # the HL7 de-identified tables' files
DICOM_FOLDER = ("_census", "dicom_texts")  # the DICOM export's files and tables
_SUFFIX = ".arrow"
_SCHEMA = pa.schema([pa.field("column", pa.string()), pa.field("text", pa.string()), pa.field("occurrences", pa.int64())])


class CellTextFolder:
    """`CellTexts` by footer digest, one Arrow file each (a record batch per column and piece)."""

    def __init__(self, folder: Location):
        self.folder = folder

    def get(self, digest: str) -> CellTexts | None:
        try:
            data = self.folder.child(digest + _SUFFIX).read_bytes()
            reader = pa.ipc.open_file(pa.BufferReader(data))
        except (FileNotFoundError, OSError, pa.ArrowInvalid):
            return None
        texts: CellTexts = {}
        for number in range(reader.num_record_batches):
            batch = reader.get_batch(number)
            if batch.num_rows:
                texts.setdefault(batch.column(0)[0].as_py(), []).append(
                    (batch.column(1), batch.column(2).to_numpy(zero_copy_only=False))
                )
        return texts

    def has(self, digest: str) -> bool:
        return self.folder.child(digest + _SUFFIX).exists()

    def put(self, digest: str, texts: CellTexts) -> None:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, _SCHEMA) as writer:
            for name, pieces in texts.items():
                for values, occurrences in pieces:
                    if len(values):
                        writer.write_batch(pa.record_batch(
                            [pa.array([name] * len(values), pa.string()), values.cast(pa.string()),
                             pa.array(np.asarray(occurrences, np.int64))],
                            schema=_SCHEMA,
                        ))
        self.folder.makedirs()
        self.folder.child(digest + _SUFFIX).write_bytes_atomically(sink.getvalue())

    def prune(self, published: Iterable[Location]) -> None:
        """Keep the texts of the `published` files only (Parquet and DICOM: `published_files`)."""
        keep = {key + _SUFFIX for key in map(_key_of, published) if key is not None}
        if not self.folder.exists():
            return
        for entry in self.folder.filesystem.get_file_info(pafs.FileSelector(self.folder.path)):
            if entry.base_name.endswith(_SUFFIX) and entry.base_name not in keep:
                self.folder.filesystem.delete_file(entry.path)
        restrict_to_owner(self.folder)  # the zone's cache: owner-only, as the rest of it


def published_files(folder: Location) -> list[Location]:
    """The files under a published folder whose texts may be kept: a table's Parquet files (on an
    object store, those of its current version), and DICOM files."""
    dicom = [Location(folder.filesystem, path) for path, _ in tree_files(folder) if path.lower().endswith(DICOM_SUFFIXES)]
    return table_files(folder) + dicom


def _key_of(location: Location) -> str | None:
    if location.name.lower().endswith(DICOM_SUFFIXES):
        return dicom_file_key(location)
    return parquet_file_footer_digest(location)
