"""The distinct cell texts of published Parquet files, kept for the leak check's search of the files
a night carries over (`privacy.leak_scanner.CellTextStore`).

A night's check searches the parts it carried over for the identifiers that are new since their
own check; their text does not change, so reading them again (2.2 s at 5,000,000 messages of
history, most of a night's HL7 step) finds nothing their kept texts would not. Each file's texts
(every column but our token columns: each distinct value with how many cells hold it) are kept in
`phi/_census/cell_texts/<footer digest>.arrow` by the check that first reads the file; the digest
of a Parquet footer changes whenever the file is written again (our stamp names the run and time).
The texts are de-identified values, kept in the PHI zone's private cache with the rest.

The DICOM export keeps the texts of its files too (`DICOM_FOLDER`): their elements' texts and raw
bytes (without pixel data), by `leak_readers.dicom_file_key` (name, size, time: a DICOM file has no
footer to digest). A night with new HL7 patients searches every exported file for them: without kept
texts, it read the whole DICOM history (pixel data and all) every night. Those are as many as the
images, so they are kept in bundles, `bundles/<id>.parquet`, one per search that read new files (a
read task, or the run's process), a row a file: a night asks for each file's key from the folder's
listing and reads a few bundles, where a file a DICOM image cost four requests on an object store
(400,000 a night at 100,000 images). Pruning drops the bundles that hold no published file and,
past `COMPACT_ABOVE` bundles, gathers the live rows into one.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from medical_assets.privacy.leak_readers import (
    DICOM_SUFFIXES,
    ListedFile,
    listed_dicom_key,
    parquet_file_footer_digest,
    tree_listing,
)
from medical_assets.privacy.leak_scanner import DICOM_ELEMENT_LABELS, DICOM_ELEMENT_TEXTS, DICOM_RAW_TEXT, CellTexts
from medical_assets.storage import Location, restrict_to_owner, table_files, write_table_atomically

CACHE_FOLDER = ("_census", "cell_texts")  # the HL7 de-identified tables' files
DICOM_FOLDER = ("_census", "dicom_texts")  # the DICOM export's files and tables
BUNDLES = "bundles"  # DICOM files' texts, a row a file, under the folder
COMPACT_ABOVE = 32  # bundles: more, and pruning rewrites the live rows as one
_SUFFIX = ".arrow"
_SCHEMA = pa.schema([pa.field("column", pa.string()), pa.field("text", pa.string()), pa.field("occurrences", pa.int64())])
_BUNDLE = pa.schema(
    [
        pa.field("key", pa.string()),
        pa.field("labels", pa.list_(pa.string())),
        pa.field("texts", pa.list_(pa.string())),
        pa.field("raw", pa.large_string()),
    ]
)


class CellTextFolder:
    """`CellTexts` by footer digest, one Arrow file each (a record batch per column and piece); a
    DICOM file's (they hold `DICOM_RAW_TEXT`) in bundles, written by `flush`."""

    def __init__(self, folder: Location):
        self.folder = folder
        self._pending: dict[str, CellTexts] = {}  # DICOM files' texts put since the last flush
        self._bundle_of: dict[str, str] | None = None  # key -> bundle file name, read on first use
        self._loaded: tuple[str, dict[str, int], pa.Table] | None = None  # the last bundle read
        self._file_keys: set[str] | None = None  # keys kept one file each, listed on first use

    def __getstate__(self) -> dict:
        # A worker's copy reads the bundles it needs itself; nothing put is pending when shipped.
        return {**self.__dict__, "_pending": {}, "_bundle_of": None, "_loaded": None, "_file_keys": None}

    def get(self, digest: str) -> CellTexts | None:
        if digest in self._pending:
            return self._pending[digest]
        bundle = self._bundles().get(digest)
        if bundle is not None:
            return self._from_bundle(bundle, digest)
        if digest not in self._files():
            return None
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
        """Whether texts are kept for the key: no request a key (the folder is listed once)."""
        return digest in self._pending or digest in self._bundles() or digest in self._files()

    def bundle_of(self, digest: str) -> str:
        """The bundle that holds a key ("" for none): a search in this order reads each bundle once."""
        return self._bundles().get(digest, "")

    def put(self, digest: str, texts: CellTexts) -> None:
        if DICOM_RAW_TEXT in texts:
            self._pending[digest] = texts
            return
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
        self._files().add(digest)

    def flush(self) -> None:
        """Write the DICOM files' texts put since the last flush as one bundle."""
        if not self._pending:
            return
        keys = sorted(self._pending)
        rows = [self._pending[key] for key in keys]
        table = pa.table(
            {
                "key": keys,
                "labels": [texts[DICOM_ELEMENT_LABELS][0][0].to_pylist() for texts in rows],
                "texts": [texts[DICOM_ELEMENT_TEXTS][0][0].to_pylist() for texts in rows],
                "raw": [texts[DICOM_RAW_TEXT][0][0][0].as_py() for texts in rows],
            },
            schema=_BUNDLE,
        )
        name = uuid.uuid4().hex + ".parquet"
        self._write_bundle(table, name)
        if self._bundle_of is not None:
            self._bundle_of.update(dict.fromkeys(keys, name))
        self._pending = {}

    def rekey(self, renamed: Mapping[str, str]) -> None:
        """Keep the texts of each old key of `renamed` under its new key (a file copied, with a time
        of its own): the bundles that hold them are written again."""
        self.flush()
        bundles = sorted({bundle for key, bundle in self._bundles().items() if key in renamed})
        for bundle in bundles:
            table = self._read_bundle(bundle)
            keys = [renamed.get(key, key) for key in table.column("key").to_pylist()]
            self._write_bundle(table.set_column(0, "key", pa.array(keys, pa.string())), uuid.uuid4().hex + ".parquet")
            self._bundle_location(bundle).delete()
        if bundles:
            self._bundle_of, self._loaded = None, None

    def prune(self, keys: Collection[str]) -> None:
        """Keep the texts of the files whose keys are `keys` only (`published_keys`)."""
        self.flush()
        keep = {key + _SUFFIX for key in keys}
        if not self.folder.exists():
            return
        for entry in self.folder.filesystem.get_file_info(pafs.FileSelector(self.folder.path)):
            if entry.type == pafs.FileType.File and entry.base_name.endswith(_SUFFIX) and entry.base_name not in keep:
                self.folder.filesystem.delete_file(entry.path)
        live = set(keys)
        bundles: dict[str, list[str]] = {}
        for key, bundle in self._bundles().items():
            bundles.setdefault(bundle, []).append(key)
        for bundle, held in bundles.items():
            if not live.intersection(held):
                self._bundle_location(bundle).delete()
        standing = [bundle for bundle, held in sorted(bundles.items()) if live.intersection(held)]
        if len(standing) > COMPACT_ABOVE:
            tables = [self._read_bundle(bundle) for bundle in standing]
            table = pa.concat_tables(tables)
            table = table.filter(pc.is_in(table.column("key"), pa.array(sorted(live), pa.string())))
            self._write_bundle(table, uuid.uuid4().hex + ".parquet")
            for bundle in standing:
                self._bundle_location(bundle).delete()
        self._bundle_of, self._loaded, self._file_keys = None, None, None
        restrict_to_owner(self.folder)  # the zone's cache: owner-only, as the rest of it

    def _bundles(self) -> dict[str, str]:
        if self._bundle_of is None:
            self._bundle_of = {}
            selector = pafs.FileSelector(self.folder.child(BUNDLES).path, allow_not_found=True)
            for entry in sorted(self.folder.filesystem.get_file_info(selector), key=lambda entry: entry.path):
                if entry.type != pafs.FileType.File or not entry.base_name.endswith(".parquet"):
                    continue
                try:
                    keys = pq.read_table(entry.path, filesystem=self.folder.filesystem, columns=["key"]).column("key")
                except (OSError, pa.ArrowInvalid):  # damaged: its files are read again
                    continue
                self._bundle_of.update(dict.fromkeys(keys.to_pylist(), entry.base_name))
        return self._bundle_of

    def _files(self) -> set[str]:
        if self._file_keys is None:
            selector = pafs.FileSelector(self.folder.path, allow_not_found=True)
            self._file_keys = {
                entry.base_name.removesuffix(_SUFFIX) for entry in self.folder.filesystem.get_file_info(selector)
                if entry.type == pafs.FileType.File and entry.base_name.endswith(_SUFFIX)
            }
        return self._file_keys

    def _from_bundle(self, bundle: str, key: str) -> CellTexts | None:
        if self._loaded is None or self._loaded[0] != bundle:
            try:
                table = self._read_bundle(bundle)
            except (FileNotFoundError, OSError, pa.ArrowInvalid):
                return None
            self._loaded = (bundle, {k: row for row, k in enumerate(table.column("key").to_pylist())}, table)
        _, rows, table = self._loaded
        row = rows.get(key)
        if row is None:
            return None
        labels, texts = table.column("labels")[row].values, table.column("texts")[row].values
        return {
            DICOM_ELEMENT_LABELS: [(labels, np.ones(len(labels), np.int64))],
            DICOM_ELEMENT_TEXTS: [(texts, np.ones(len(texts), np.int64))],
            DICOM_RAW_TEXT: [(pa.array([table.column("raw")[row].as_py()], pa.large_string()), np.ones(1, np.int64))],
        }

    def _bundle_location(self, name: str) -> Location:
        return self.folder.child(BUNDLES, name)

    def _read_bundle(self, name: str) -> pa.Table:
        location = self._bundle_location(name)
        return pq.read_table(location.path, filesystem=location.filesystem, schema=_BUNDLE)

    def _write_bundle(self, table: pa.Table, name: str) -> None:
        self.folder.child(BUNDLES).makedirs()
        write_table_atomically(table, self._bundle_location(name))


def published_keys(folder: Location, dicom_files: Iterable[ListedFile] | None = None) -> set[str]:
    """The keys of the files under a published folder whose texts may be kept: a table's Parquet
    files (on an object store, those of its current version) by footer digest, and DICOM files by
    `listed_dicom_key`, from the folder's listing (`dicom_files`: those, when already listed)."""
    if dicom_files is None:
        dicom_files = [listed for listed in tree_listing(folder) if listed.path.lower().endswith(DICOM_SUFFIXES)]
    keys = {parquet_file_footer_digest(part) for part in table_files(folder)}
    keys |= {listed_dicom_key(listed) for listed in dicom_files}
    keys.discard(None)
    return keys
