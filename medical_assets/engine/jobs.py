"""The Ray Data jobs behind the assets: generate demo corpora, checksum landing files, parse them into tables."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from medical_assets import hl7
from medical_assets.dicom import read_dicom_file
from medical_assets.dicom.tables import TABLES as DICOM_TABLES
from medical_assets.engine import multitable
from medical_assets.engine.corpus import CorpusResult, generate_synthetic_corpus
from medical_assets.engine.datasources import BLOCK_INPUT_BYTES, FileReader, LandingFilesDatasource
from medical_assets.engine.progress import ProgressReport, progress_counter, run_with_progress
from medical_assets.engine.sinks import StagedTablesDatasink
from medical_assets.engine.tasks import cluster_cpus, map_tables, runs_here, write_read
from medical_assets.hl7.tables import TABLES as HL7_TABLES
from medical_assets.landing import sha256_of
from medical_assets.sources.folder import LandingFile
from medical_assets.sources.synthetic import SYNTHETIC_DICOM, SYNTHETIC_HL7
from medical_assets.storage import Location, TablePublication
from medical_assets.synthetic import dicom as synthetic_dicom
from medical_assets.synthetic import hl7 as synthetic_hl7

HL7_PACKED_SCHEMA = multitable.packed_schema(HL7_TABLES)
DICOM_PACKED_SCHEMA = multitable.packed_schema(DICOM_TABLES)
# Every Ray Data task has a fixed overhead that a small file's work does not repay, so tasks are
# big: up to this many input bytes each (benchmarks/results.md has the figures).
MAX_BYTES_PER_TASK = 1 << 30
# HL7 tasks are smaller: a parse task's part file is what one de-identification step holds whole
# (a worker holds many times its input at its peak), so the part size, not the corpus, must bound a
# worker's memory. Smaller parts save memory but cost speed (more tasks, each with Ray Data's overhead).
HL7_BYTES_PER_TASK = 64 << 20
# A DICOM file becomes one small row (and a small thumbnail), so a block may cover more input
# than an HL7 one: fewer blocks, each of which costs Ray Data and the sink a little.
DICOM_BLOCK_INPUT_BYTES = 128 << 20


def read_task_count(total_bytes: int, file_count: int, cpus: int, max_bytes_per_task: int = MAX_BYTES_PER_TASK) -> int:
    """A multiple of the CPU count, so that every round of tasks keeps every CPU busy; one task per
    CPU unless that makes tasks larger than `max_bytes_per_task`; never more tasks than files."""
    rounds = max(1, math.ceil(total_bytes / (cpus * max_bytes_per_task)))
    return max(1, min(file_count, cpus * rounds))


def generate_synthetic_hl7(settings: synthetic_hl7.HL7CorpusSettings, landing: Location) -> CorpusResult:
    return generate_synthetic_corpus(SYNTHETIC_HL7.corpus(settings), landing)


def generate_synthetic_dicom(settings: synthetic_dicom.DicomCorpusSettings, landing: Location) -> CorpusResult:
    return generate_synthetic_corpus(SYNTHETIC_DICOM.corpus(settings), landing)


# New files that together hold less are hashed in the run's process, on a thread a core: SHA-256
# runs at about 1 GB/s a core (CPUs hash it in hardware) and hashlib releases the GIL, so 530 MB
# of landing files (2,000,000 messages) hash in 0.3 s here, where a Ray job took 2.6 s of the
# run's first step (the start of Ray included). A larger first run goes to every node's workers.
IN_PROCESS_CHECKSUM_BYTES = 2 << 30


def checksum_files(files: list[LandingFile], filesystem) -> dict[str, str]:
    """SHA-256 of every file: in this process's threads, or, for more than IN_PROCESS_CHECKSUM_BYTES
    in all, in the workers that read them."""
    if not files:
        return {}
    total_bytes = sum(f.size_bytes for f in files)
    if runs_here(total_bytes, IN_PROCESS_CHECKSUM_BYTES):
        threads = min(len(files), os.cpu_count() or 1)
        with ThreadPoolExecutor(threads, thread_name_prefix="checksum") as pool:
            return dict(zip((f.path for f in files), pool.map(lambda f: sha256_of(filesystem, f.path), files)))
    table = pa.concat_tables(
        map_tables(
            [{"path": f.path} for f in files],
            _checksum_batch,
            {"filesystem": filesystem},
            read_task_count(total_bytes, len(files), cluster_cpus()),
        )
    )
    return dict(zip(table["path"].to_pylist(), table["sha256"].to_pylist()))


def parse_hl7_files(
    files: list[LandingFile], filesystem, publication: TablePublication, report: ProgressReport, first_part: int = 0
) -> dict[str, int]:
    """Parse HL7 files into the staged HL7 tables of `publication`."""
    return parse_landing_files(
        files, filesystem, publication, HL7_TABLES, _parse_hl7_packed, HL7_PACKED_SCHEMA, report, first_part,
        max_bytes_per_task=HL7_BYTES_PER_TASK,
    )


def parse_dicom_files(
    files: list[LandingFile], filesystem, publication: TablePublication, report: ProgressReport,
    with_thumbnails: bool = True, first_part: int = 0,
) -> dict[str, int]:
    """Read DICOM headers, pixel statistics and thumbnails into the staged DICOM tables of `publication`."""
    read_file = functools.partial(_read_dicom_packed, with_thumbnail=with_thumbnails)
    return parse_landing_files(
        files, filesystem, publication, DICOM_TABLES, read_file, DICOM_PACKED_SCHEMA, report, first_part,
        block_input_bytes=DICOM_BLOCK_INPUT_BYTES,
    )


def parse_landing_files(
    files: list[LandingFile],
    filesystem,
    publication: TablePublication,
    schemas: Mapping[str, pa.Schema],
    read_file: FileReader,
    packed_schema: pa.Schema,
    report: ProgressReport,
    first_part: int = 0,
    max_bytes_per_task: int = MAX_BYTES_PER_TASK,
    block_input_bytes: int = BLOCK_INPUT_BYTES,
) -> dict[str, int]:
    """Read every file in the workers into one packed dataset, and stream it into staged tables
    (part files numbered from `first_part`, one per task of at most `max_bytes_per_task` input bytes).

    Returns rows written per table, and `files`. The caller commits (or abandons) the publication.
    """
    if not files:
        return {"files": 0}  # Ray Data refuses to read zero files; the caller publishes empty tables
    datasource = LandingFilesDatasource(files, filesystem, read_file, packed_schema, block_input_bytes)
    total_bytes = sum(f.size_bytes for f in files)
    here = runs_here(total_bytes)  # a night's few files: one part, written here
    tasks = 1 if here else read_task_count(total_bytes, len(files), cluster_cpus(), max_bytes_per_task)
    counter = progress_counter(here)
    sink = StagedTablesDatasink({name: publication.staged(name) for name in schemas}, schemas, counter, first_part)
    run_with_progress(lambda: write_read(datasource, tasks, sink, here), counter, report)
    return dict(sink.totals)


def _parse_hl7_packed(files: list[tuple[bytes, str]]) -> pa.Table:
    batches = hl7.parse_hl7_batches(files)
    return multitable.pack_batches([(batch.source_files, batch.tables, batch.rows) for batch in batches], HL7_PACKED_SCHEMA)


def _read_dicom_packed(files: list[tuple[bytes, str]], with_thumbnail: bool) -> pa.Table:
    read = [read_dicom_file(data, path, with_thumbnail).tables() for data, path in files]
    return multitable.pack_files([path for _, path in files], read, DICOM_PACKED_SCHEMA)


def _checksum_batch(batch: pa.Table, filesystem) -> pa.Table:
    paths = batch["path"].to_pylist()
    return pa.table({"path": paths, "sha256": [sha256_of(filesystem, path) for path in paths]})
