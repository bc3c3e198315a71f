"""How the engine's jobs hand their work to Ray tasks (how many tasks, how many attempts each), or,
when their input is small, run the same functions in the run's process."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import pyarrow as pa
import ray
from ray.data import Datasource
from ray.data.datasource import Datasink, WriteResult

from medical_assets.config import in_process_jobs
from medical_assets.engine.runtime import require_ray

# Attempts of a task whose worker died (Ray Data's default is to retry without end, so a file
# that kills its worker every time would hang the job). The same arguments on the read and the
# write keep the two fused in one task.
TASK_RETRIES = 3
TASK_OPTIONS = {"max_retries": TASK_RETRIES}

# A job whose input holds less runs in the run's process: a night's few new files are parsed,
# de-identified and checked there in well under a second each, where handing them to Ray costs
# seconds whatever their size (a local Ray's start 2.6-4 s, the first Ray Data job of a driver
# 2-3 s, the stop 1.4 s; docs/engine-pitfalls.md). MEDICAL_ASSETS_IN_PROCESS_JOBS=0 sends every
# job to Ray's workers. Landing files (HL7 text, DICOM): about 16,000 messages.
IN_PROCESS_INPUT_BYTES = 8 << 20
# Our Parquet parts hold a message in 17 bytes (PHI, zstd) to 56 (de-identified: tokens do not
# compress), and de-identifying one takes 30 us in one process: a 1 MiB input is 20,000 to 60,000
# messages, a second or two. Jobs on parts pass this; jobs that read faster per byte (a checksum,
# a leak scan of carried parts) their own.
IN_PROCESS_PARQUET_BYTES = 1 << 20


def runs_here(input_bytes: int, limit: int = IN_PROCESS_INPUT_BYTES) -> bool:
    """Whether a job on `input_bytes` of input runs in the run's process rather than in Ray's workers."""
    return input_bytes <= limit and in_process_jobs()


def cluster_cpus() -> int:
    require_ray()
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def map_in_workers(
    items: list[dict],
    fn: Callable[..., pa.Table | Iterable[pa.Table]],
    fn_kwargs: Mapping[str, object] | None = None,
    tasks: int | None = None,
) -> ray.data.Dataset:
    """`fn(batch, **fn_kwargs)` in worker tasks, one per block of `items` (each block a pyarrow
    table of consecutive items; `tasks` blocks, by default one per CPU or per item if fewer).
    `fn` returns a table, or yields several."""
    require_ray()
    tasks = tasks if tasks is not None else min(len(items), cluster_cpus())
    dataset = ray.data.from_items(items, override_num_blocks=tasks)
    with _task_options_allowed():
        return dataset.map_batches(
            fn, fn_kwargs=dict(fn_kwargs or {}), batch_format="pyarrow", batch_size=None, **TASK_OPTIONS
        )


def map_tables(
    items: list[dict],
    fn: Callable[..., pa.Table | Iterable[pa.Table]],
    fn_kwargs: Mapping[str, object] | None = None,
    tasks: int | None = None,
    here: bool = False,
) -> list[pa.Table]:
    """What `map_in_workers` computes, as tables: from Ray's workers, or `here`, from `fn` called
    in this process on all of `items` at once."""
    if not items:
        return []
    if here:
        return _as_tables(fn(pa.Table.from_pylist(items), **dict(fn_kwargs or {})))
    return ray.get(map_in_workers(items, fn, fn_kwargs, tasks).to_arrow_refs())


def read_in_workers(datasource: Datasource, tasks: int) -> ray.data.Dataset:
    """What `datasource` reads (a source's files, say `LandingFilesDatasource`), in `tasks` worker tasks."""
    require_ray()
    with _task_options_allowed():
        return ray.data.read_datasource(datasource, override_num_blocks=tasks, ray_remote_args=TASK_OPTIONS)


def read_tables(datasource: Datasource, tasks: int) -> list[pa.Table]:
    """The blocks `datasource` reads in `tasks` worker tasks."""
    return ray.get(read_in_workers(datasource, tasks).to_arrow_refs())


def write_read(datasource: Datasource, tasks: int, sink: Datasink, here: bool = False) -> None:
    """What `datasource` reads written by `sink`, each read task's blocks by one write: fused in
    Ray's workers, or `here`, in this process, task by task (numbered as Ray numbers them)."""
    if not here:
        read_in_workers(datasource, tasks).write_datasink(sink, ray_remote_args=TASK_OPTIONS)
        return
    sink.on_write_start()
    returns = [sink.write(iter(task()), InProcessTask(number)) for number, task in enumerate(datasource.get_read_tasks(tasks))]
    sink.on_write_complete(WriteResult(num_rows=0, size_bytes=0, write_returns=returns))


def write_tables(tables: Iterable[pa.Table], sink: Datasink) -> None:
    """`tables` written by `sink` in this process, as one write task would."""
    sink.on_write_start()
    sink.on_write_complete(WriteResult(num_rows=0, size_bytes=0, write_returns=[sink.write(iter(tables), InProcessTask(0))]))


@dataclass(frozen=True)
class InProcessTask:
    """What our datasinks read of Ray's task context (its number), for a write in the run's process."""

    task_idx: int


def _as_tables(result: pa.Table | Iterable[pa.Table]) -> list[pa.Table]:
    return [result] if isinstance(result, pa.Table) else list(result)


@contextlib.contextmanager
def _task_options_allowed() -> Iterator[None]:
    """Ray 2.60 deprecates `ray_remote_args` in favour of named parameters, but has no named one
    for max_retries yet: its deprecation warning is silenced around the calls that pass
    TASK_OPTIONS, and nowhere else."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`ray_remote_args` is deprecated", category=DeprecationWarning)
        yield
