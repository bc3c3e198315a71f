"""The distinct cell texts of published Parquet files, kept for the leak check's search of the files
a night carries over (`privacy.leak_scanner.CellTextStore`).

A night's check searches the parts it carried over for the identifiers that are new since their
own check; their text does not change, so reading them again (2.2 s at 5,000,000 messages of
history, most of a night's HL7 step) finds nothing their kept texts would not. Each file's texts
(every column but our token columns: each distinct value with how many cells hold it) are kept in
`phi/_census/cell_texts/<footer digest>.arrow` by the check that first reads the file; the digest
of a Parquet footer changes whenever the file is written again (our stamp names the run and time).
The texts are de-identified values, kept in the PHI zone's private cache with the rest.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from medical_assets.privacy.leak_readers import parquet_file_footer_digest
from medical_assets.privacy.leak_scanner import CellTexts
from medical_assets.storage import Location, restrict_to_owner

CACHE_FOLDER = ("_census", "cell_texts")
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
        """Keep the texts of the `published` Parquet files only."""
        keep = {digest + _SUFFIX for digest in map(parquet_file_footer_digest, published) if digest is not None}
        if not self.folder.exists():
            return
        for entry in self.folder.filesystem.get_file_info(pafs.FileSelector(self.folder.path)):
            if entry.base_name.endswith(_SUFFIX) and entry.base_name not in keep:
                self.folder.filesystem.delete_file(entry.path)
        restrict_to_owner(self.folder)  # the zone's cache: owner-only, as the rest of it
