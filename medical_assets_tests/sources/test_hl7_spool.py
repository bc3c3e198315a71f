"""The HL7 spool: durable appends with group commit, whole landing files, duplicates landed once, recovery after a kill."""

import asyncio
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medical_assets.hl7 import parse_hl7_file
from medical_assets.sources.folder import HL7_EXTENSIONS, list_landing_files
from medical_assets.sources.hl7_spool import HL7Spool, SpoolError, dedup_key
from medical_assets.storage import resolve_location
from medical_assets_tests.hl7_samples import ADMISSION, LAB_RESULT, MESSY_DISCHARGE

MESSY = MESSY_DISCHARGE[1:-2]  # as the MLLP server hands it over: without its framing
NOON = 1_709_640_000.0  # 2024-03-05 12:00:00 UTC


def message(number: int, sender: str = "LAB") -> bytes:
    return (
        f"MSH|^~\\&|{sender}|GENERAL_HOSPITAL|EMR|CARDIOLOGY|20240305091500||ORU^R01^ORU_R01|CTRL{number:05d}|P|2.5\r"
        "PID|1||123456^^^GH^MR||DOE^JANE^Q||19800102|F\r"
        "OBX|1|NM|2345-7^Glucose^LN||105|mg/dL|70-99|H|||F\r"
    ).encode()


def framed(data: bytes) -> bytes:
    return b"\x0b" + data + b"\x1c\r"


def landed(tmp_path: Path, listener: str = "mllp") -> list[Path]:
    return sorted((tmp_path / "mllp" / listener).glob("*/*.hl7"))


def open_files(tmp_path: Path, listener: str = "mllp") -> list[str]:
    return sorted(os.listdir(tmp_path / "_mllp" / listener / "open"))


def spool_at(tmp_path: Path, **options) -> HL7Spool:
    return HL7Spool(resolve_location(str(tmp_path)), **options)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, timeout=60))


def test_a_closed_segment_is_an_ordinary_landing_file_that_our_parser_reads(tmp_path):
    messages = [ADMISSION.encode(), LAB_RESULT.encode(), MESSY]

    async def scenario():
        spool = spool_at(tmp_path, clock=lambda: NOON)
        await spool.start()
        results = [await spool.append(data, "127.0.0.1") for data in messages]
        assert landed(tmp_path) == []  # nothing lands before the roll
        await spool.close()
        return results, spool.stats

    results, stats = run(scenario())

    assert results == [True, True, True]
    [segment] = landed(tmp_path)
    assert segment.parent.name == "2024-03-05"
    assert segment.read_bytes() == b"".join(framed(data) for data in messages)  # byte for byte as received
    parsed = parse_hl7_file(segment.read_bytes(), str(segment))
    assert parsed.messages.column("message_control_id").to_pylist() == ["CTRL0001", "CTRL0002", "CTRL0003"]
    assert parsed.errors.num_rows == 0
    listed = list_landing_files(resolve_location(str(tmp_path)), HL7_EXTENSIONS)
    assert [f.relative_path for f in listed] == [str(segment.relative_to(tmp_path))]  # the spool's own files are skipped
    assert open_files(tmp_path) == []
    assert stats["messages"] == 3 and stats["segments_rolled"] == 1
    assert stats["bytes"] == sum(len(data) for data in messages)


def test_concurrent_appends_share_fsyncs_and_each_returns_only_once_its_bytes_are_synced(tmp_path, monkeypatch):
    synced_segments: list[bytes] = []
    real_fsync = os.fsync

    def recording_fsync(descriptor):
        path = os.readlink(f"/proc/self/fd/{descriptor}")
        real_fsync(descriptor)
        if "/open/" in path and path.endswith(".hl7"):
            time.sleep(0.002)  # a slower disk: appends pile up behind the fsync in flight
            synced_segments.append(Path(path).read_bytes())

    monkeypatch.setattr(os, "fsync", recording_fsync)
    appenders, each = 8, 25

    async def appender(spool, first):
        for number in range(first, first + each):
            assert await spool.append(message(number), f"peer-{first}")
            assert any(framed(message(number)) in content for content in synced_segments)

    async def scenario():
        spool = spool_at(tmp_path)
        await spool.start()
        await asyncio.gather(*(appender(spool, index * each) for index in range(appenders)))
        stats, fsyncs = spool.stats, len(synced_segments)
        await spool.close()
        return stats, fsyncs

    stats, fsyncs = run(scenario())

    total = appenders * each
    assert stats["messages"] == total
    assert fsyncs == stats["batches"] < total / 4
    [segment] = landed(tmp_path)
    parsed = parse_hl7_file(segment.read_bytes(), "segment.hl7")
    assert sorted(parsed.messages.column("message_control_id").to_pylist()) == [f"CTRL{n:05d}" for n in range(total)]


def test_segments_roll_over_by_size_into_files_that_sort_in_arrival_order(tmp_path):
    async def scenario():
        spool = spool_at(tmp_path, max_segment_bytes=1000)
        await spool.start()
        for number in range(20):
            await spool.append(message(number), "peer")
        rolled_before_close = len(landed(tmp_path))
        await spool.close()
        return rolled_before_close

    rolled_before_close = run(scenario())

    files = landed(tmp_path)
    record = len(framed(message(0)))
    assert record == 192  # six records pass 1000 bytes; the last two roll at close
    assert rolled_before_close == 3 and len(files) == 4
    assert [path.stat().st_size for path in files] == [6 * record, 6 * record, 6 * record, 2 * record]
    assert b"".join(path.read_bytes() for path in files) == b"".join(framed(message(n)) for n in range(20))


def test_an_idle_spool_rolls_a_segment_once_it_is_old_enough(tmp_path):
    now = [NOON]

    async def scenario():
        spool = spool_at(tmp_path, max_segment_age_s=10, clock=lambda: now[0], check_interval_s=0.01)
        await spool.start()
        await spool.append(message(1), "peer")
        await asyncio.sleep(0.1)
        young = landed(tmp_path)
        now[0] += 11
        for _ in range(200):  # up to 2 s
            if landed(tmp_path):
                break
            await asyncio.sleep(0.01)
        old = landed(tmp_path)
        await spool.close()
        return young, old

    young, old = run(scenario())

    assert young == []
    assert [path.read_bytes() for path in old] == [framed(message(1))]
    assert landed(tmp_path) == old  # close had nothing left to roll
    assert open_files(tmp_path) == []


def test_duplicates_are_refused_within_the_window_whatever_their_line_ends(tmp_path):
    first, second, third = message(1), message(2), message(3)

    async def scenario():
        spool = spool_at(tmp_path, dedup_window=2)
        await spool.start()
        results = [
            await spool.append(first, "peer"),
            await spool.append(first, "peer"),
            await spool.append(first.replace(b"\r", b"\r\n") + b"\r\n", "peer"),  # same message, other line ends
            await asyncio.gather(spool.append(second, "peer"), spool.append(second, "peer")),  # both at once
            await spool.append(third, "peer"),
            await spool.append(first, "peer"),  # two newer messages pushed it out of the window
        ]
        stats = spool.stats
        await spool.close()
        return results, stats

    results, stats = run(scenario())

    assert results == [True, False, False, [True, False], True, True]
    assert stats["duplicates"] == 3 and stats["messages"] == 4
    assert dedup_key(first) == dedup_key(first.replace(b"\r", b"\n") + b"\n \n") != dedup_key(second)
    assert len(dedup_key(first)) == 16


def test_a_message_sent_again_after_a_restart_is_refused(tmp_path):
    async def session(messages):
        spool = spool_at(tmp_path)
        await spool.start()
        results = [await spool.append(data, "peer") for data in messages]
        await spool.close()
        return results

    assert run(session([message(1), message(2)])) == [True, True]
    # A kill in the middle of a key record leaves a torn one behind; it is ignored.
    with open(tmp_path / "_mllp" / "mllp" / "seen.keys", "ab") as keys:
        keys.write(b"\x01" * 7)
    assert run(session([message(2), message(3), message(1)])) == [False, True, False]
    assert (tmp_path / "_mllp" / "mllp" / "seen.keys").stat().st_size == 3 * 16
    files = landed(tmp_path)
    assert b"".join(path.read_bytes() for path in files) == b"".join(framed(message(n)) for n in (1, 2, 3))


def test_the_key_log_is_compacted_to_the_window(tmp_path):
    async def scenario():
        spool = spool_at(tmp_path, dedup_window=3, max_segment_bytes=1)  # every message rolls its segment
        await spool.start()
        sizes = []
        for number in range(10):
            await spool.append(message(number), "peer")
            sizes.append((tmp_path / "_mllp" / "mllp" / "seen.keys").stat().st_size)
        await spool.close()
        return sizes

    sizes = run(scenario())

    assert max(sizes) <= 2 * 3 * 16
    # Past six keys the log kept the newest three (of messages 4 to 6), then grew again.
    keys = (tmp_path / "_mllp" / "mllp" / "seen.keys").read_bytes()
    assert keys == b"".join(dedup_key(message(number)) for number in range(4, 10))
    assert len(landed(tmp_path)) == 10

    async def restarted():
        spool = spool_at(tmp_path, dedup_window=3)
        await spool.start()
        results = [await spool.append(message(number), "peer") for number in (9, 8, 7, 0)]
        await spool.close()
        return results

    assert run(restarted()) == [False, False, False, True]  # the newest keys survived compaction


_KILLED_WRITER = """
import asyncio, os, signal, sys
from medical_assets.sources.hl7_spool import HL7Spool
from medical_assets.storage import resolve_location
from medical_assets_tests.sources.test_hl7_spool import message

async def main():
    spool = HL7Spool(resolve_location(sys.argv[1]))
    await spool.start()
    for number in range(5):
        await spool.append(message(number), "LAB|H\\xd4PITAL" if number < 3 else "peer-b")
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def test_after_a_kill_complete_records_land_the_torn_tail_is_dropped_and_resends_land_once(tmp_path):
    root = Path(__file__).resolve().parents[2]
    killed = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(tmp_path)], cwd=root, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    [left_open] = [name for name in open_files(tmp_path) if name.endswith(".hl7")]
    torn = b"\x0b" + message(5)[:40]  # a record the killed writer never finished, so never acknowledged
    with open(tmp_path / "_mllp" / "mllp" / "open" / left_open, "ab") as segment:
        segment.write(torn)

    async def restarted():
        spool = spool_at(tmp_path)
        report = await spool.start()
        after_recovery = landed(tmp_path)
        results = [await spool.append(message(number), "peer-b") for number in (3, 4, 5)]  # the sender re-sends
        await spool.close()
        return report, after_recovery, results

    report, after_recovery, results = run(restarted())

    assert (report.segments_recovered, report.messages_recovered, report.torn_bytes_dropped) == (1, 5, len(torn))
    assert [path.name for path in after_recovery] == [left_open]
    assert after_recovery[0].read_bytes() == b"".join(framed(message(n)) for n in range(5))
    assert results == [False, False, True]
    assert open_files(tmp_path) == []
    summary = json.loads((tmp_path / "_mllp" / "summaries" / "mllp" / left_open.replace(".hl7", ".json")).read_bytes())
    assert summary["messages"] == 5 and summary["senders"] == {"LAB|H\xd4PITAL": 3, "peer-b": 2}
    every = b"".join(path.read_bytes() for path in landed(tmp_path))
    parsed = parse_hl7_file(every, "all.hl7")
    assert parsed.messages.column("message_control_id").to_pylist() == [f"CTRL{n:05d}" for n in range(6)]


def test_segment_names_are_unique_and_sorted_across_restarts_even_with_a_stopped_clock(tmp_path):
    for number in range(3):
        async def session(number=number):
            spool = spool_at(tmp_path, clock=lambda: NOON)
            await spool.start()
            await spool.append(message(number), "peer")
            await spool.close()

        run(session())

    files = landed(tmp_path)
    assert len({path.name for path in files}) == 3
    assert [path.read_bytes() for path in files] == [framed(message(n)) for n in range(3)]
    assert all(path.name.startswith("20240305T120000.000000Z-") for path in files)


def test_the_summary_of_a_segment_counts_messages_per_sender_without_content(tmp_path):
    now = [NOON]

    async def scenario():
        spool = spool_at(tmp_path, clock=lambda: now[0])
        await spool.start()
        for number, sender in enumerate(["10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.2"]):
            now[0] = NOON + number
            await spool.append(message(number), sender)
        await spool.close()

    run(scenario())

    [segment] = landed(tmp_path)
    [summary_file] = (tmp_path / "_mllp" / "summaries" / "mllp").glob("*.json")
    assert summary_file.stem == segment.stem
    summary = json.loads(summary_file.read_bytes())
    assert summary == {
        "listener": "mllp",
        "segment": str(segment.relative_to(tmp_path)),
        "messages": 5,
        "bytes": segment.stat().st_size,
        "senders": {"10.0.0.1": 3, "10.0.0.2": 2},
        "first_received": "2024-03-05T12:00:00.000000+00:00",
        "last_received": "2024-03-05T12:00:04.000000+00:00",
    }
    assert b"DOE" not in summary_file.read_bytes()


def test_a_failed_fsync_refuses_the_batch_and_leaves_none_of_its_bytes(tmp_path, monkeypatch):
    real_fsync = os.fsync
    failures = iter([True])

    def failing_once(descriptor):
        if os.readlink(f"/proc/self/fd/{descriptor}").endswith(".hl7") and next(failures, False):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(descriptor)

    async def scenario():
        spool = spool_at(tmp_path)
        await spool.start()
        assert await spool.append(message(1), "peer")
        monkeypatch.setattr(os, "fsync", failing_once)
        with pytest.raises(SpoolError):
            await spool.append(message(2), "peer")
        results = [await spool.append(message(2), "peer"), await spool.append(message(3), "peer")]
        await spool.close()
        return results

    assert run(scenario()) == [True, True]
    [segment] = landed(tmp_path)
    assert segment.read_bytes() == b"".join(framed(message(n)) for n in (1, 2, 3))


def test_a_second_spool_on_the_same_listener_is_refused_another_listener_is_not(tmp_path):
    async def scenario():
        first = spool_at(tmp_path)
        await first.start()
        try:
            with pytest.raises(SpoolError, match=r"listener mllp .*" + re.escape(str(tmp_path))):
                await spool_at(tmp_path).start()
            other = spool_at(tmp_path, listener="adt-feed")
            await other.start()
            assert await other.append(message(1), "peer")
            await other.close()
        finally:
            await first.close()
        again = spool_at(tmp_path)  # the lock goes with its holder
        await again.start()
        await again.close()

    run(scenario())

    assert [path.read_bytes() for path in landed(tmp_path, "adt-feed")] == [framed(message(1))]


def test_the_spool_needs_a_local_landing_folder():
    with pytest.raises(ValueError, match="local landing folder"):
        HL7Spool(resolve_location("mock:///landing"))


def test_a_message_holding_the_mllp_end_block_is_refused_before_anything_is_written(tmp_path):
    async def scenario():
        spool = spool_at(tmp_path)
        await spool.start()
        with pytest.raises(ValueError, match="end block"):
            await spool.append(message(1) + b"\x1c\rMSH|^~\\&|", "peer")
        await spool.close()

    run(scenario())

    assert landed(tmp_path) == [] and open_files(tmp_path) == []
