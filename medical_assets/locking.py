"""One writer per data folder: a run holds `<data>/.medical_assets.lock` while it writes.

Dagster's run queue and pools already keep runs of one Dagster instance apart; this lock also
covers two instances (two `dagster asset materialize` in two CI jobs, a notebook) writing to the
same local data folder. It is an `flock`, so the system releases it when the holder dies, even by
SIGKILL: a killed run never leaves a stale lock. Object stores have no such lock; there the
Dagster instance (one queue, shared through PostgreSQL) is what keeps writers apart.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import time
from collections.abc import Callable

import pyarrow.fs as pafs

from medical_assets.config import ConfigurationError
from medical_assets.storage import Location

LOCK_FILE = ".medical_assets.lock"
_POLL_S = 1.0


class DataFolderBusy(ConfigurationError):
    """Another run kept the data folder for longer than this run would wait."""


class DataFolderLock:
    def __init__(self, data_dir: Location, holder: str, timeout_s: float, notify: Callable[[str], None] = print):
        self._data_dir = data_dir
        self._holder = holder
        self._timeout_s = timeout_s
        self._notify = notify
        self._file = None

    @property
    def supported(self) -> bool:
        return isinstance(self._data_dir.filesystem, pafs.LocalFileSystem)

    def acquire(self) -> None:
        if not self.supported or self._file is not None:
            return
        os.makedirs(self._data_dir.path, exist_ok=True)
        path = os.path.join(self._data_dir.path, LOCK_FILE)
        handle = open(path, "a+")  # noqa: SIM115 - held open for as long as the lock
        started = time.monotonic()
        told = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                other = _holder_of(handle)
                waited = time.monotonic() - started
                if waited >= self._timeout_s:
                    handle.close()
                    raise DataFolderBusy(
                        f"the data folder {self._data_dir.uri} is still in use by {other} after {waited:,.0f} s; "
                        "wait for that run to end, or raise MEDICAL_ASSETS_LOCK_TIMEOUT_S"
                    ) from None
                if not told:
                    self._notify(f"waiting for the data folder {self._data_dir.uri}: {other} is writing to it")
                    told = True
                time.sleep(_POLL_S)
        handle.seek(0)
        handle.truncate()
        started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        handle.write(json.dumps({"holder": self._holder, "pid": os.getpid(), "since": started_at}))
        handle.flush()
        self._file = handle
        if told:
            self._notify(f"the data folder is free after {time.monotonic() - started:,.0f} s; going on")

    def release(self) -> None:
        if self._file is None:
            return
        self._file.seek(0)
        self._file.truncate()
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None

    def __enter__(self) -> DataFolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _holder_of(handle) -> str:
    handle.seek(0)
    try:
        info = json.loads(handle.read() or "{}")
    except json.JSONDecodeError:
        info = {}
    if not info:
        return "another process"
    return f"{info.get('holder', 'another run')} (pid {info.get('pid', '?')}, since {info.get('since', '?')})"
