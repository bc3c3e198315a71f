"""Progress of a long Ray job, reported from the workers and logged by the driver while it runs."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import ray

from medical_assets.engine.runtime import require_ray

# Called with the counts done so far and the seconds elapsed.
ProgressReport = Callable[[dict, float], None]


class TaskTotals:
    """What each write task has done so far. A task reports its own running totals, which replace its
    last report: a retried task starts again from zero, so its first attempt is never counted twice."""

    def __init__(self):
        self._by_task: dict[int, dict] = {}

    def report(self, task: int, totals: dict) -> None:
        self._by_task[task] = dict(totals)

    def snapshot(self) -> dict:
        counts: Counter = Counter()
        for totals in self._by_task.values():
            counts.update(totals)
        return dict(counts)

    def reset(self) -> None:
        self._by_task.clear()


ProgressCounter = ray.remote(num_cpus=0)(TaskTotals)  # the same, as an actor the workers report to


class Progress:
    """The counts a job's tasks report (`report`), read by the driver (`snapshot`): kept in this
    process for a job that runs here, or in a `ProgressCounter` actor for one in Ray's workers."""

    def __init__(self, actor=None):
        self._actor = actor
        self._here = TaskTotals() if actor is None else None

    def report(self, task: int, totals: dict) -> None:
        if self._actor is not None:
            self._actor.report.remote(task, totals)
        else:
            self._here.report(task, totals)

    def snapshot(self) -> dict:
        return ray.get(self._actor.snapshot.remote()) if self._actor is not None else self._here.snapshot()


def progress_counter(here: bool = False) -> Progress:
    """This driver's counter, reset: for a job in Ray's workers one actor per Ray connection, since
    each costs a worker process to start; for a job `here`, a new one in this process.

    The actor's handle is kept here: Ray ends an actor once no handle refers to it, and a new job
    must not race that ending.
    """
    if here:
        return Progress()
    require_ray()
    context = ray.get_runtime_context()
    session = (context.get_node_id(), context.get_job_id())  # job ids restart at 1 in a new cluster
    if _counter.get("session") != session:
        _counter.update(session=session, handle=ProgressCounter.remote())
    counter = _counter["handle"]
    ray.get(counter.reset.remote())
    return Progress(counter)


_counter: dict = {}


def run_with_progress(job: Callable[[], object], counter, report: ProgressReport, interval_s: float = 5.0):
    """Run `job` in a thread; every `interval_s` pass the counter's snapshot and the elapsed time to `report`."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = job()
        except BaseException as error:  # re-raised in the caller's thread
            outcome["error"] = error

    started = time.monotonic()
    worker = threading.Thread(target=target, name="ray-job", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(interval_s)
        if worker.is_alive():
            report(counter.snapshot(), time.monotonic() - started)
    report(counter.snapshot(), time.monotonic() - started)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")
