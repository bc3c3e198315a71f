"""How the engine's jobs hand their work to Ray tasks: how many tasks, and how many attempts each."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping

import pyarrow as pa
import ray
from ray.data import Datasource

# Attempts of a task whose worker died (Ray Data's default is to retry without end, so a file
# that kills its worker every time would hang the job). The same arguments on the read and the
# write keep the two fused in one task.
TASK_RETRIES = 3
TASK_OPTIONS = {"max_retries": TASK_RETRIES}


def cluster_cpus() -> int:
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
    tasks = tasks if tasks is not None else min(len(items), cluster_cpus())
    dataset = ray.data.from_items(items, override_num_blocks=tasks)
    with _task_options_allowed():
        return dataset.map_batches(
            fn, fn_kwargs=dict(fn_kwargs or {}), batch_format="pyarrow", batch_size=None, **TASK_OPTIONS
        )


def read_in_workers(datasource: Datasource, tasks: int) -> ray.data.Dataset:
    """What `datasource` reads (a source's files, say `LandingFilesDatasource`), in `tasks` worker tasks."""
    with _task_options_allowed():
        return ray.data.read_datasource(datasource, override_num_blocks=tasks, ray_remote_args=TASK_OPTIONS)


@contextlib.contextmanager
def _task_options_allowed() -> Iterator[None]:
    """Ray 2.60 deprecates `ray_remote_args` in favour of named parameters, but has no named one
    for max_retries yet: its deprecation warning is silenced around the calls that pass
    TASK_OPTIONS, and nowhere else."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`ray_remote_args` is deprecated", category=DeprecationWarning)
        yield
