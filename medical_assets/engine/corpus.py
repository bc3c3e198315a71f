"""Write a synthetic corpus into a landing folder with a Ray job, once: the same settings keep the same files."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import ray

from medical_assets.engine.tasks import cluster_cpus
from medical_assets.sources.folder import deliver
from medical_assets.sources.synthetic import SyntheticCorpus
from medical_assets.storage import Location

_WRITTEN_SCHEMA = pa.schema([("file", pa.string()), ("bytes", pa.int64())])


@dataclass(frozen=True)
class CorpusResult:
    generated: bool  # False: the same corpus was already there
    files: int
    bytes: int


def generate_synthetic_corpus(corpus: SyntheticCorpus, landing: Location) -> CorpusResult:
    """Render every file in Ray tasks, atomically each; a marker written last says the corpus is complete."""
    marker = landing.child(corpus.marker_name)
    names = [corpus.file_name(index) for index in range(corpus.file_count)]
    if marker.exists() and json.loads(marker.read_bytes()) == corpus.fingerprint() and all(
        landing.child(name).exists() for name in names
    ):
        return CorpusResult(False, len(names), 0)

    landing.makedirs()
    marker.delete()  # until the new corpus is complete
    total_bytes = 0
    if names:
        dataset = ray.data.range(len(names), override_num_blocks=min(len(names), cluster_cpus() * 2)).map_batches(
            _write_files, fn_kwargs={"corpus": corpus, "landing": landing}, batch_format="pyarrow", batch_size=None
        )
        written = pa.concat_tables(ray.get(dataset.to_arrow_refs()))
        total_bytes = sum(written["bytes"].to_pylist())
    _remove_stale_files(corpus, landing, set(names))
    marker.write_bytes_atomically(json.dumps(corpus.fingerprint(), indent=2).encode())
    return CorpusResult(True, len(names), total_bytes)


def _write_files(batch: pa.Table, corpus: SyntheticCorpus, landing: Location) -> pa.Table:
    names, sizes = [], []
    for file_index in batch["id"].to_pylist():
        data = corpus.render_file(corpus.settings, file_index)
        name = corpus.file_name(file_index)
        deliver(landing, name, data)
        names.append(name)
        sizes.append(len(data))
    return pa.table({"file": names, "bytes": sizes}, schema=_WRITTEN_SCHEMA)


def _remove_stale_files(corpus: SyntheticCorpus, landing: Location, keep: set[str]) -> None:
    """Drop files of an earlier, larger corpus; never touch anything else in the folder."""
    for info in landing.filesystem.get_file_info(pafs.FileSelector(landing.path)):
        name = info.base_name
        if info.type == pafs.FileType.File and corpus.is_synthetic_file_name(name) and name not in keep:
            landing.filesystem.delete_file(info.path)
