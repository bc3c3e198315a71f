"""The HL7 listener killed mid-stream: a sender that re-sends what was not acknowledged, a SIGKILL, a
restart, and after a pipeline run each of the 20,000 messages in hl7_messages exactly once; and the
sensor, which starts that run when a segment rolls."""

import asyncio
import contextlib
import re
import secrets
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from hl7.mllp import InvalidBlockError, open_hl7_connection

from medical_assets.defs import schedules
from medical_assets.defs.resources import PipelineConfig
from medical_assets.storage import read_table, resolve_location
from medical_assets.synthetic.hl7 import HL7CorpusSettings, render_message
from medical_assets_tests.defs.pipeline import materialize_all
from medical_assets_tests.sources.listeners import Listener, listener_environment, running_listener, start_listener

MESSAGES = 20_000
CONNECTIONS = 4
ACK_TIMEOUT_S = 2.0
STREAM_TIMEOUT_S = 180.0
ATTEMPTS_PER_MESSAGE = 50
BACKOFF_S = (0.05, 1.0)  # first and longest pause before a sender reconnects
KILL_AFTER = MESSAGES // 3
SEGMENT_AGE = ["--segment-age", "1"]
# Original mode (MSH-15/16 empty) answers AA; enhanced mode, as half of the synthetic feed asks, CA.
ACCEPTED, NOT_STORED = (b"AA", b"CA"), (b"AR", b"CR")
_MSA = re.compile(rb"\rMSA\|([A-Z]{2})\|([^|\r]*)")


class ResendingSender:
    """An interface engine's outbound queue over several connections: one message at a time per
    connection, the next only after the ACK of the last, and a message not acknowledged (no ACK in
    time, a lost connection, an AR or CR) sent again after a reconnect with backoff."""

    def __init__(self, messages: list[bytes], control_ids: list[str], port: int):
        self.messages = messages
        self.control_ids = control_ids
        self.port = port  # the test points the sender at a restarted listener by setting it
        self.attempts = [0] * len(messages)
        self.acknowledged = [False] * len(messages)
        self.acknowledged_count = 0
        self.failures: Counter = Counter()
        self.after_send: Callable[[int], None] | None = None  # called with the message's index once it is sent
        self._queue = list(range(len(messages)))[::-1]

    @property
    def resent(self) -> int:
        return sum(self.attempts) - sum(1 for attempts in self.attempts if attempts)

    async def run(self, connections: int, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(self._connection() for _ in range(connections)))

    async def _connection(self) -> None:
        reader = writer = None
        index = None
        backoff = BACKOFF_S[0]
        try:
            while index is not None or self._queue:
                if index is None:
                    index = self._queue.pop()
                if self.attempts[index] >= ATTEMPTS_PER_MESSAGE:
                    raise AssertionError(f"message {self.control_ids[index]} was sent {self.attempts[index]} times without being accepted")
                if writer is None:
                    try:
                        reader, writer = await asyncio.wait_for(open_hl7_connection("127.0.0.1", self.port), ACK_TIMEOUT_S)
                    except (OSError, TimeoutError):
                        self.failures["connect"] += 1
                        await asyncio.sleep(backoff)
                        backoff = min(2 * backoff, BACKOFF_S[1])
                        continue
                self.attempts[index] += 1
                try:
                    writer.writeblock(self.messages[index])
                    await writer.drain()
                    if self.after_send is not None:
                        self.after_send(index)
                    acknowledgement = await asyncio.wait_for(reader.readblock(), ACK_TIMEOUT_S)
                except (OSError, TimeoutError, asyncio.IncompleteReadError, InvalidBlockError) as error:
                    self.failures[type(error).__name__] += 1
                    writer.close()
                    reader = writer = None
                    await asyncio.sleep(backoff)
                    backoff = min(2 * backoff, BACKOFF_S[1])
                    continue
                code, control_id = _MSA.search(acknowledgement).groups()
                assert control_id.decode() == self.control_ids[index], "an ACK for another message"
                if code not in ACCEPTED:
                    assert code in NOT_STORED, f"{code.decode()} for message {self.control_ids[index]}"
                    self.failures[code.decode()] += 1
                    await asyncio.sleep(backoff)
                    continue
                self.acknowledged[index] = True
                self.acknowledged_count += 1
                index = None
                backoff = BACKOFF_S[0]
        finally:
            if writer is not None:
                writer.close()


def synthetic_feed(count: int) -> tuple[list[bytes], list[str]]:
    """`count` distinct messages of the synthetic hospital (ADT, ORU, RDE), each with its own MSH-10."""
    settings = HL7CorpusSettings(total_messages=count)
    messages = [render_message(settings, number).encode() for number in range(count)]
    control_ids = [message.split(b"\r", 1)[0].split(b"|")[9].decode() for message in messages]
    assert len(set(control_ids)) == count
    return messages, control_ids


def records_left_open(landing: Path) -> int:
    """Complete MLLP records in the segments a listener left open."""
    return sum(path.read_bytes().count(b"\x1c\r") for path in open_segments(landing))


def open_segments(landing: Path) -> list[Path]:
    return list((landing / "_mllp" / "mllp" / "open").glob("*.hl7"))


def segment_open(landing: Path) -> bool:
    """Whether the listener is appending to a segment that holds something (one may roll meanwhile)."""
    for path in open_segments(landing):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_size:
                return True
    return False


def rolled_segments(landing: Path) -> list[Path]:
    return list((landing / "mllp" / "mllp").glob("*/*.hl7"))


@dataclass
class Kill:
    """The moment the listener was killed: right after `message` was sent, before it could be acknowledged."""

    message: int
    acknowledged: int
    records_left_open: int


async def stream_through_a_kill(sender: ResendingSender, first: Listener, landing: Path, restart) -> tuple[Listener, Kill]:
    """Stream the feed; SIGKILL the listener just after a message is sent, once a third of the feed is
    acknowledged and a segment is open; restart it, point the sender at it and let the sender finish."""
    kills: list[Kill] = []

    def kill_when_due(index: int) -> None:
        if kills or sender.acknowledged_count < KILL_AFTER:
            return
        if segment_open(landing):
            first.kill()
            kills.append(Kill(index, sender.acknowledged_count, records_left_open(landing)))

    sender.after_send = kill_when_due
    streaming = asyncio.create_task(sender.run(CONNECTIONS, STREAM_TIMEOUT_S))
    try:
        deadline = time.monotonic() + STREAM_TIMEOUT_S
        while not kills and not streaming.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if streaming.done():
            streaming.result()  # the sender's own failure, if that is what ended it
        assert kills, "the feed ended (or the time ran out) before the kill"
        second = await asyncio.to_thread(restart)
        sender.port = second.port
        await streaming
    finally:
        streaming.cancel()
    return second, kills[0]


@pytest.mark.slow
@pytest.mark.long_running
def test_a_listener_killed_mid_stream_loses_and_doubles_nothing(tmp_path, shared_ray):
    landing, dicom, data = tmp_path / "landing", tmp_path / "dicom", tmp_path / "data"
    dicom.mkdir()
    env = listener_environment(tmp_path, MEDICAL_ASSETS_DATA_DIR=str(data), MEDICAL_ASSETS_HL7_SOURCE=str(landing))
    messages, control_ids = synthetic_feed(MESSAGES)
    started = time.monotonic()
    restarted: list[Listener] = []

    def restart() -> Listener:
        restarted.append(start_listener("hl7", SEGMENT_AGE, env, tmp_path, name="second"))
        return restarted[-1]

    with running_listener("hl7", SEGMENT_AGE, env, tmp_path, name="first") as first:
        sender = ResendingSender(messages, control_ids, first.port)
        try:
            second, kill = asyncio.run(stream_through_a_kill(sender, first, landing, restart))
            assert second.stop(signal.SIGTERM) == 0
        finally:
            for listener in restarted:
                if listener.process.poll() is None:
                    listener.kill()
    streamed = time.monotonic() - started

    # Every message acknowledged, and the kill fell in the middle: what was in flight was sent again.
    # (Not necessarily the message sent just before the kill: the listener may have stored and
    # acknowledged it before the signal landed; then a later send on that connection broke instead.)
    assert all(sender.acknowledged) and sender.acknowledged_count == MESSAGES
    assert KILL_AFTER <= kill.acknowledged < MESSAGES
    broken = sum(sender.failures[name] for name in ("IncompleteReadError", "ConnectionResetError", "BrokenPipeError", "TimeoutError"))
    assert broken >= 1 and sender.resent >= broken, (sender.attempts[kill.message], sender.failures)
    # The restarted listener landed what the killed one had left open.
    assert first.process.returncode == -signal.SIGKILL
    recovered = re.search(r"recovered (\d+) messages from (\d+) open segments", second.log())
    assert recovered and int(recovered.group(1)) == kill.records_left_open > 0, (kill, second.log()[-2000:])
    assert not open_segments(landing)

    key = secrets.token_hex(32)
    result = materialize_all(
        data, key, selection=[dg.AssetKey("hl7_landing_manifest"), dg.AssetKey("hl7_messages"), dg.AssetKey("hl7_errors")],
        messages=0, dicom_files=0, hl7_source=str(landing), dicom_source=str(dicom),
    )
    assert result.success
    phi = resolve_location(str(data / "phi"))
    landed = read_table(phi.child("hl7_messages"), columns=["message_control_id"]).column("message_control_id").to_pylist()
    assert len(landed) == MESSAGES
    assert Counter(landed) == Counter(control_ids)  # each control id exactly once
    assert read_table(phi.child("hl7_errors")).num_rows == 0
    duplicates = sum(map(int, re.findall(r"(\d+) duplicates", second.log())))
    print(
        f"streamed {MESSAGES} messages in {streamed:.1f} s through a kill after {kill.acknowledged} ACKs; "
        f"{sender.resent} re-sent, failures {dict(sender.failures)}, {kill.records_left_open} recovered, "
        f"{duplicates} re-sent messages answered as duplicates"
    )


def test_the_sensor_requests_a_run_once_a_segment_rolls(tmp_path):
    landing, dicom, data = tmp_path / "landing", tmp_path / "dicom", tmp_path / "data"
    dicom.mkdir()
    env = listener_environment(tmp_path, MEDICAL_ASSETS_DATA_DIR=str(data), MEDICAL_ASSETS_HL7_SOURCE=str(landing))
    messages, control_ids = synthetic_feed(4)

    def sensor(instance):
        resources = {"pipeline": PipelineConfig(data_dir=str(data), hl7_source=str(landing), dicom_source=str(dicom))}
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            return schedules.new_landing_files(context)

    with dg.instance_for_test() as instance, running_listener("hl7", ["--segment-age", "5"], env, tmp_path) as listener:
        sender = ResendingSender(messages, control_ids, listener.port)
        asyncio.run(sender.run(1, 30))
        assert all(sender.acknowledged) and records_left_open(landing) == len(messages)
        before = sensor(instance)
        assert not rolled_segments(landing), "the segment rolled before the sensor's first evaluation ended"
        assert isinstance(before, dg.SkipReason)

        deadline = time.monotonic() + 15
        while not rolled_segments(landing) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(rolled_segments(landing)) == 1, "no segment rolled within 15 s"
        after = sensor(instance)
        assert isinstance(after, dg.RunRequest) and after.tags["landing/hl7_files"] == "1"
        assert listener.stop(signal.SIGTERM) == 0

