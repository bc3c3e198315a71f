"""The MLLP listener's landing spool: each message durable before it is acknowledged, landed in whole files, once.

Messages are appended to an open segment under `<landing>/_mllp/<listener>/open/` (a folder the
landing listing skips) as MLLP-framed records, which the HL7 parser reads like any multi-message
file. Appends that arrive while an fsync is in flight share the next one (group commit), so many
connections cost one fsync per batch, not per message. A segment rolls over by size, by age or at
close: its dedup keys go to `seen.keys`, a JSON summary (counts per sender, never content) goes to
`<landing>/_mllp/summaries/<listener>/`, and the file is renamed into
`<landing>/mllp/<listener>/<YYYY-MM-DD>/`, where the pipeline's sensor finds it complete.

After a kill, `start` keeps every complete record of the segments left open, cuts off a torn tail
(never acknowledged, so the sender sends it again) and rolls them; the keys it loads make a
re-sent message a duplicate, so it lands once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow.fs as pafs

from medical_assets.sources.hl7_spool_files import (
    END_BLOCK,
    SEGMENT_SUFFIX,
    SENDERS_SUFFIX,
    KeyLog,
    OpenSegment,
    Segment,
    SequenceCounter,
    SpoolPaths,
    frame,
    make_folders_durably,
    read_open_segment,
    roll_segment,
    segment_stem,
    stem_sequence,
)
from medical_assets.storage import Location

logger = logging.getLogger(__name__)

_LISTENER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class SpoolError(OSError):
    """A message could not be made durable, or the spool cannot run; the sender must keep the message."""


@dataclass(frozen=True)
class RecoveryReport:
    """What `start` found left open by a predecessor that was killed."""

    segments_recovered: int
    messages_recovered: int
    torn_bytes_dropped: int


def dedup_key(message: bytes) -> bytes:
    """16 bytes of SHA-256 over the message with segment ends made \\r and trailing line ends and blanks removed.

    The same message from the same sender (MSH-3/4), with the same control id (MSH-10), gets the same
    key however the sender ended its lines."""
    normalised = message.replace(b"\r\n", b"\r").replace(b"\n", b"\r").rstrip()
    return hashlib.sha256(normalised).digest()[:16]


class HL7Spool:
    """The durable landing of one listener; its methods are called from one event loop."""

    def __init__(
        self,
        landing: Location,
        listener: str = "mllp",
        *,
        max_segment_bytes: int = 32 * 2**20,
        max_segment_age_s: float = 10.0,
        dedup_window: int = 1_000_000,
        clock: Callable[[], float] = time.time,
        check_interval_s: float | None = None,
    ):
        if not isinstance(landing.filesystem, pafs.LocalFileSystem):
            raise ValueError(
                f"the HL7 listener needs a local landing folder: it fsyncs each message before acknowledging it, "
                f"and {landing.uri} is not on a local disk"
            )
        if not _LISTENER_NAME.match(listener):
            raise ValueError(f"listener name {listener!r}: letters, digits, '.', '_' or '-', not starting with '.' or '_'")
        self.listener = listener
        self._paths = SpoolPaths(landing.path, listener)
        self._max_bytes = max_segment_bytes
        self._max_age = max_segment_age_s
        self._window = dedup_window
        self._clock = clock
        self._check_interval = check_interval_s or max(0.01, min(1.0, max_segment_age_s / 4))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"hl7-spool-{listener}")
        self._seen: set[bytes] = set()
        self._order: deque[bytes] = deque()
        self._pending: list[_Pending] = []
        self._in_flight: dict[bytes, asyncio.Future] = {}
        self._wake = asyncio.Event()
        self._segment: OpenSegment | None = None
        self._unrolled: list[Segment] = []
        self._state = "new"
        self._failure: str | None = None
        self._task: asyncio.Task | None = None
        self._lock_fd: int | None = None
        self._key_log = KeyLog(self._paths.seen_keys, dedup_window)
        self._sequence: SequenceCounter | None = None
        self._stats = {"messages": 0, "duplicates": 0, "segments_rolled": 0, "bytes": 0, "batches": 0}

    @property
    def stats(self) -> dict:
        """Counts since start: messages committed, duplicates refused, segments rolled, message bytes, fsynced batches."""
        return dict(self._stats)

    async def start(self) -> RecoveryReport:
        """Take the listener's lock, recover what a killed predecessor left open, then accept appends."""
        if self._state != "new":
            raise RuntimeError("an HL7Spool starts once")
        loop = asyncio.get_running_loop()
        try:
            report = await loop.run_in_executor(self._executor, self._open_and_recover)
        except BaseException:
            self._release()
            self._executor.shutdown(wait=False)
            self._state = "closed"
            raise
        self._state = "running"
        self._task = loop.create_task(self._commit_loop(), name=f"hl7-spool-{self.listener}")
        if report.segments_recovered:
            logger.info(
                "listener %s recovered %d messages from %d open segments (%d torn bytes dropped)",
                self.listener, report.messages_recovered, report.segments_recovered, report.torn_bytes_dropped,
            )
        return report

    async def append(self, message: bytes, sender: str) -> bool:
        """True once the message is in the open segment and fsynced; False (nothing written) for a duplicate
        of a committed message; SpoolError when it cannot be made durable."""
        if self._state != "running":
            raise SpoolError(f"the spool of listener {self.listener} is not accepting messages ({self._state})")
        if self._failure is not None:
            raise SpoolError(self._failure)
        if END_BLOCK in message:
            raise ValueError("a message cannot contain the MLLP end block (0x1C 0x0D)")
        key = dedup_key(message)
        if key in self._seen:
            self._stats["duplicates"] += 1
            return False
        earlier = self._in_flight.get(key)
        if earlier is not None:
            # The same message is being committed for another connection: a duplicate once that succeeds.
            await asyncio.shield(earlier)
            self._stats["duplicates"] += 1
            return False
        future = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        self._in_flight[key] = future
        self._pending.append(_Pending(frame(message), len(message), key, _clean(sender), self._clock(), future))
        self._wake.set()
        return await asyncio.shield(future)

    async def close(self) -> None:
        """Commit what is pending, roll the open segment into landing, persist its keys, release the lock."""
        if self._task is None:  # never started, or its start failed
            self._state = "closed"
            self._executor.shutdown(wait=False)
            return
        if self._state == "running":
            self._state = "closing"
            self._wake.set()
        await asyncio.shield(self._task)
        if self._unrolled:
            raise SpoolError(
                f"listener {self.listener}: {len(self._unrolled)} segments stay in {self._paths.open_folder}; "
                "the next start lands them"
            )

    def _open_and_recover(self) -> RecoveryReport:
        paths = self._paths
        for folder in (paths.open_folder, paths.summaries, paths.landing):
            make_folders_durably(folder)
        self._lock_fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise SpoolError(
                f"listener {self.listener} is already running on the landing folder {paths.landing} "
                f"(lock {paths.lock} is held by another process); give this one another listener name"
            ) from None
        for key in self._key_log.load():
            self._remember(key)
        names = sorted(os.listdir(paths.open_folder))
        stems = [name[: -len(SEGMENT_SUFFIX)] for name in names if name.endswith(SEGMENT_SUFFIX)]
        strangers = [stem for stem in stems if stem_sequence(stem) is None]
        if strangers:
            logger.warning("listener %s leaves %d files it did not name in its open folder", self.listener, len(strangers))
            stems = [stem for stem in stems if stem not in strangers]
        for name in names:  # a side file whose segment was rolled just before a kill
            if name.endswith(SENDERS_SUFFIX) and name[: -len(SENDERS_SUFFIX)] not in stems:
                os.unlink(os.path.join(paths.open_folder, name))
        self._sequence = SequenceCounter(paths.sequence, max((stem_sequence(s) or 0 for s in stems), default=0))
        recovered = messages = torn = 0
        for stem in stems:
            segment, torn_bytes = read_open_segment(paths, stem, dedup_key)
            torn += torn_bytes
            for key in segment.keys:
                self._remember(key)
            roll_segment(paths, segment, self._key_log)
            if segment.messages:
                recovered += 1
                messages += segment.messages
                self._stats["segments_rolled"] += 1
        return RecoveryReport(recovered, messages, torn)

    async def _commit_loop(self) -> None:
        try:
            while True:
                if self._pending:
                    batch, self._pending = self._pending, []
                    await self._commit(batch)
                elif self._state != "running":
                    break
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._check_interval)
                    self._wake.clear()
                await self._roll_when_due()
            if self._segment is not None:
                await self._roll()
            if self._unrolled:
                await self._retry_rolls()
        except BaseException as error:
            self._failure = f"the spool of listener {self.listener} stopped: {type(error).__name__}"
            logger.exception("spool of listener %s stopped", self.listener)
            self._settle(self._pending, SpoolError(self._failure))
            self._pending = []
            raise
        finally:
            # The loop owns the files: they are released when it ends, even if close() itself is cancelled.
            self._release()
            self._executor.shutdown(wait=False)
            self._state = "closed"

    async def _commit(self, batch: list[_Pending]) -> None:
        """Write the batch in one write, fsync it once, then answer every append in it."""
        if self._failure is not None:
            self._settle(batch, SpoolError(self._failure))
            return
        records = b"".join(pending.record for pending in batch)
        senders = "".join(f"{pending.received:.6f}\t{pending.sender}\n" for pending in batch)
        senders = senders.encode("utf-8", "backslashreplace")
        try:
            if self._segment is None:
                self._segment = await self._run(self._open_segment, batch[0].received)
            await self._run(self._segment.write, records, senders)
        except OSError as error:
            logger.error("listener %s could not make %d messages durable: %s", self.listener, len(batch), error.strerror)
            if self._segment is not None and self._segment.damaged:
                # Its tail could not be cut back: only a restart's recovery can tell what it holds.
                self._failure = f"the open segment of listener {self.listener} is damaged ({error.strerror}); restart"
            self._settle(batch, SpoolError(f"message not stored: {error.strerror or error}"))
            return
        segment = self._segment.segment
        for pending in batch:
            segment.add(pending.key, pending.sender, pending.received, len(pending.record))
            self._remember(pending.key)
        self._stats["messages"] += len(batch)
        self._stats["bytes"] += sum(pending.message_bytes for pending in batch)
        self._stats["batches"] += 1
        self._settle(batch, None)

    async def _roll_when_due(self) -> None:
        if self._segment is not None:
            segment = self._segment.segment
            full = segment.size >= self._max_bytes
            old = segment.messages > 0 and self._clock() - segment.opened_at >= self._max_age
            if full or old:
                await self._roll()
        if self._unrolled:
            await self._retry_rolls()

    async def _roll(self) -> None:
        """Close the open segment (the next append opens another) and land it."""
        open_segment, self._segment = self._segment, None
        await self._run(open_segment.close)
        self._unrolled.append(open_segment.segment)
        await self._retry_rolls()

    async def _retry_rolls(self) -> None:
        while self._unrolled:
            segment = self._unrolled[0]
            try:
                await self._run(roll_segment, self._paths, segment, self._key_log)
            except OSError as error:
                # Its messages are durable in open/; a later tick or the next start lands it.
                logger.error("listener %s could not roll a segment of %d messages: %s", self.listener, segment.messages,
                             error.strerror)
                return
            self._unrolled.pop(0)
            if segment.messages:
                self._stats["segments_rolled"] += 1
                logger.info("listener %s rolled a segment of %d messages, %d bytes", self.listener, segment.messages,
                            segment.size)

    def _open_segment(self, received: float) -> OpenSegment:
        stem = segment_stem(received, self._sequence.next())
        return OpenSegment(self._paths, Segment(stem, opened_at=received))

    def _remember(self, key: bytes) -> None:
        if key in self._seen:
            return
        self._seen.add(key)
        self._order.append(key)
        if len(self._order) > self._window:
            self._seen.discard(self._order.popleft())

    def _settle(self, batch: list[_Pending], error: SpoolError | None) -> None:
        for pending in batch:
            self._in_flight.pop(pending.key, None)
            if pending.future.done():
                continue
            if error is None:
                pending.future.set_result(True)
            else:
                pending.future.set_exception(error)

    async def _run(self, function, *arguments):
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *arguments)

    def _release(self) -> None:
        self._key_log.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None


@dataclass(slots=True)
class _Pending:
    record: bytes
    message_bytes: int
    key: bytes
    sender: str
    received: float
    future: asyncio.Future


def _clean(sender: str) -> str:
    """A sender as one field of a line in the side file."""
    return sender.replace("\t", " ").replace("\n", " ").replace("\r", " ")


def _retrieve(future: asyncio.Future) -> None:
    """Mark a failed append's error as seen even when its connection went away before reading it."""
    if not future.cancelled():
        future.exception()
