"""The data-folder lock: one writer at a time, a clear word to the one that waits, no stale lock."""

import os
import signal
import subprocess
import sys
import textwrap

import pyarrow.fs as pafs
import pytest

from medical_assets.locking import DataFolderBusy, DataFolderLock
from medical_assets.storage import Location, resolve_location


def test_a_second_writer_waits_then_says_who_holds_the_folder(tmp_path):
    data = resolve_location(str(tmp_path / "data"))
    heard: list[str] = []
    with DataFolderLock(data, "run first", timeout_s=60):
        second = DataFolderLock(data, "run second", timeout_s=1.5, notify=heard.append)
        with pytest.raises(DataFolderBusy, match=r"run first \(pid \d+, since .*\).*MEDICAL_ASSETS_LOCK_TIMEOUT_S"):
            second.acquire()
    assert len(heard) == 1 and "run first" in heard[0] and "waiting" in heard[0]
    with DataFolderLock(data, "run third", timeout_s=1):  # free again once released
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from medical_assets.locking import DataFolderLock
            from medical_assets.storage import Location, resolve_location
            lock = DataFolderLock(resolve_location({str(tmp_path / "data")!r}), "run killed", 60)
            lock.acquire()
            print("held", flush=True)
            time.sleep(600)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DataFolderBusy, match="run killed"):
            DataFolderLock(resolve_location(str(tmp_path / "data")), "run waiting", timeout_s=1).acquire()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        with DataFolderLock(resolve_location(str(tmp_path / "data")), "run next", timeout_s=5):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_object_stores_have_no_lock_and_say_so():
    s3 = pafs.S3FileSystem(region="us-east-1", anonymous=True)  # never contacted
    lock = DataFolderLock(Location(s3, "bucket/data"), "run", timeout_s=1)
    assert not lock.supported
    lock.acquire()  # a no-op: the Dagster instance keeps writers apart there
    lock.release()
