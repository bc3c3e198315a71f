"""The HL7 spool's files on the local disk: open segments, their recovery, the roll into landing, the key log."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\r"
KEY_BYTES = 16
SEGMENT_SUFFIX = ".hl7"
SENDERS_SUFFIX = ".senders"
_STEM = re.compile(r"^(\d{8})T\d{6}\.\d{6}Z-(\d{8})$")
_FILE_MODE = 0o600
_FOLDER_MODE = 0o700


@dataclass(frozen=True)
class SpoolPaths:
    """Where one listener keeps its files below a landing folder; `_`-prefixed folders are not landing data."""

    landing: str
    listener: str

    @property
    def private(self) -> str:
        return os.path.join(self.landing, "_mllp", self.listener)

    @property
    def open_folder(self) -> str:
        return os.path.join(self.private, "open")

    @property
    def seen_keys(self) -> str:
        return os.path.join(self.private, "seen.keys")

    @property
    def sequence(self) -> str:
        return os.path.join(self.private, "sequence")

    @property
    def lock(self) -> str:
        return os.path.join(self.private, "lock")

    @property
    def summaries(self) -> str:
        return os.path.join(self.landing, "_mllp", "summaries", self.listener)

    def open_segment(self, stem: str) -> str:
        return os.path.join(self.open_folder, stem + SEGMENT_SUFFIX)

    def senders(self, stem: str) -> str:
        return os.path.join(self.open_folder, stem + SENDERS_SUFFIX)

    def landed(self, stem: str) -> str:
        """The segment's path relative to the landing folder once rolled: mllp/<listener>/<YYYY-MM-DD>/<stem>.hl7."""
        day = _STEM.match(stem).group(1)
        return f"mllp/{self.listener}/{day[:4]}-{day[4:6]}-{day[6:]}/{stem}{SEGMENT_SUFFIX}"


@dataclass
class Segment:
    """What a segment holds, for the dedup keys and the summary; never the messages themselves."""

    stem: str
    opened_at: float
    messages: int = 0
    size: int = 0
    keys: list[bytes] = field(default_factory=list)
    senders: Counter = field(default_factory=Counter)
    first_received: float | None = None
    last_received: float | None = None

    def add(self, key: bytes, sender: str, received: float, record_bytes: int) -> None:
        self.messages += 1
        self.size += record_bytes
        self.keys.append(key)
        self.senders[sender] += 1
        self.first_received = received if self.first_received is None else self.first_received
        self.last_received = received


def segment_stem(received: float, sequence: int) -> str:
    """`<UTC timestamp>-<sequence>`: sorts by time, and the persisted sequence keeps it unique across restarts."""
    moment = datetime.fromtimestamp(received, timezone.utc)
    return f"{moment:%Y%m%dT%H%M%S.%fZ}-{sequence:08d}"


def stem_sequence(stem: str) -> int | None:
    match = _STEM.match(stem)
    return int(match.group(2)) if match else None


def frame(message: bytes) -> bytes:
    return START_BLOCK + message + END_BLOCK


def complete_records(data: bytes) -> tuple[list[bytes], int]:
    """The messages of every complete record from the start of `data`, and where the last one ends."""
    messages: list[bytes] = []
    position = 0
    while position < len(data) and data.startswith(START_BLOCK, position):
        end = data.find(END_BLOCK, position + 1)
        if end == -1:
            break
        messages.append(data[position + 1 : end])
        position = end + len(END_BLOCK)
    return messages, position


class OpenSegment:
    """The segment being appended to, and a side file of (received time, sender) per record for its summary.

    The side file is written before the records and never fsynced: it survives the kill of the process
    (the page cache is the kernel's), and a summary after a power loss counts the rest as unknown."""

    def __init__(self, paths: SpoolPaths, segment: Segment):
        self.segment = segment
        self.path = paths.open_segment(segment.stem)
        self._senders_path = paths.senders(segment.stem)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        self._fd = os.open(self.path, flags, _FILE_MODE)
        self._senders_fd = os.open(self._senders_path, flags, _FILE_MODE)
        self._senders_size = 0
        self.damaged = False
        # The new name must be on the disk before any record in the file is acknowledged.
        sync_folder(paths.open_folder)

    def write(self, records: bytes, senders: bytes) -> None:
        """Append a batch and fsync it; on failure the files are cut back to what was committed before."""
        try:
            write_all(self._senders_fd, senders)
            write_all(self._fd, records)
            os.fsync(self._fd)
        except OSError:
            try:
                os.ftruncate(self._fd, self.segment.size)
                os.ftruncate(self._senders_fd, self._senders_size)
            except OSError:
                self.damaged = True
            raise
        self._senders_size += len(senders)

    def close(self) -> None:
        os.close(self._fd)
        os.close(self._senders_fd)


def read_open_segment(paths: SpoolPaths, stem: str, key_of: Callable[[bytes], bytes]) -> tuple[Segment, int]:
    """A segment a killed process left open, as far as its records are complete, and the bytes of the torn
    tail it had (now cut off the file)."""
    path = paths.open_segment(stem)
    with open(path, "rb") as segment_file:
        data = segment_file.read()
    messages, end = complete_records(data)
    if end < len(data):
        # A record without its end was never acknowledged: the sender still holds it and sends it again.
        with open(path, "r+b") as segment_file:
            segment_file.truncate(end)
            os.fsync(segment_file.fileno())
    entries = _read_senders(paths.senders(stem))
    fallback = os.stat(path).st_mtime
    segment = Segment(stem, opened_at=fallback)
    for index, message in enumerate(messages):
        received, sender = entries[index] if index < len(entries) else (fallback, "unknown")
        segment.add(key_of(message), sender, received, len(message) + len(START_BLOCK) + len(END_BLOCK))
    return segment, len(data) - end


def roll_segment(paths: SpoolPaths, segment: Segment, key_log: KeyLog) -> str:
    """Move a closed segment from open/ into the landing folder, complete, under its final name.

    Each step can be repeated after a failure or a kill: the summary and the keys are written before
    the rename, so a landed segment always has both. Returns the path relative to the landing folder."""
    relative = paths.landed(segment.stem)
    source = paths.open_segment(segment.stem)
    target = os.path.join(paths.landing, relative)
    if os.path.exists(source) and segment.messages == 0:
        os.unlink(source)
    elif os.path.exists(source):
        _fsync_path(source)
        write_durably(os.path.join(paths.summaries, segment.stem + ".json"), _summary(paths, segment, relative))
        key_log.append(segment.keys)
        make_folders_durably(os.path.dirname(target))
        os.rename(source, target)
    if os.path.exists(target):
        sync_folder(os.path.dirname(target))
    sync_folder(paths.open_folder)
    try:
        os.unlink(paths.senders(segment.stem))
    except FileNotFoundError:
        pass
    return relative


class KeyLog:
    """seen.keys: the dedup keys of rolled segments, 16 raw bytes each, compacted to the newest `window`."""

    def __init__(self, path: str, window: int):
        self.path = path
        self.window = window
        self.count = 0
        self._fd: int | None = None

    def load(self) -> list[bytes]:
        """The newest `window` keys, oldest first; a torn last record (a kill mid-append) is cut off."""
        try:
            with open(self.path, "rb") as key_file:
                data = key_file.read()
        except FileNotFoundError:
            data = b""
        whole = len(data) - len(data) % KEY_BYTES
        if whole < len(data):
            with open(self.path, "r+b") as key_file:
                key_file.truncate(whole)
                os.fsync(key_file.fileno())
        self.count = whole // KEY_BYTES
        self._open()
        first = max(0, self.count - self.window) * KEY_BYTES
        return [data[offset : offset + KEY_BYTES] for offset in range(first, whole, KEY_BYTES)]

    def append(self, keys: list[bytes]) -> None:
        if not keys:
            return
        try:
            write_all(self._fd, b"".join(keys))
            os.fsync(self._fd)
        except OSError:
            os.ftruncate(self._fd, self.count * KEY_BYTES)
            raise
        self.count += len(keys)
        if self.count > 2 * self.window:
            self._compact()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _compact(self) -> None:
        keep = min(self.count, self.window)
        with open(self.path, "rb") as key_file:
            key_file.seek((self.count - keep) * KEY_BYTES)
            newest = key_file.read(keep * KEY_BYTES)
        write_durably(self.path, newest)
        self.close()
        self._open()
        self.count = keep

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, _FILE_MODE)


class SequenceCounter:
    """The last segment sequence number handed out, persisted before the segment it names exists."""

    def __init__(self, path: str, at_least: int = 0):
        self.path = path
        try:
            with open(self.path, "rb") as counter_file:
                stored = int(counter_file.read().strip() or 0)
        except FileNotFoundError:
            stored = 0
        self.last = max(stored, at_least)

    def next(self) -> int:
        value = self.last + 1
        write_durably(self.path, str(value).encode())
        self.last = value
        return value


def write_durably(path: str, data: bytes) -> None:
    """Replace a file atomically and durably: a temporary name, fsync, rename, fsync of the folder."""
    folder = os.path.dirname(path)
    temporary = os.path.join(folder, f".{os.path.basename(path)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, _FILE_MODE)
    try:
        write_all(descriptor, data)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.rename(temporary, path)
    sync_folder(folder)


def make_folders_durably(path: str) -> None:
    """Create a folder and its missing parents, each new entry flushed into its parent folder."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    make_folders_durably(parent)
    try:
        os.mkdir(path, _FOLDER_MODE)
    except FileExistsError:
        return
    sync_folder(parent)


def sync_folder(path: str) -> None:
    """Flush a folder's entries: a rename is on the disk only once its folder is."""
    _fsync_path(path, os.O_DIRECTORY)


def write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


def _fsync_path(path: str, flags: int = 0) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC | flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _read_senders(path: str) -> list[tuple[float, str]]:
    try:
        with open(path, "rb") as senders_file:
            lines = senders_file.read().decode("utf-8", "replace").split("\n")
    except FileNotFoundError:
        return []
    entries = []
    for line in lines[:-1]:  # the last piece has no line end: empty, or torn by the kill
        received, _, sender = line.partition("\t")
        try:
            entries.append((float(received), sender))
        except ValueError:
            break
    return entries


def _summary(paths: SpoolPaths, segment: Segment, relative: str) -> bytes:
    return json.dumps(
        {
            "listener": paths.listener,
            "segment": relative,
            "messages": segment.messages,
            "bytes": segment.size,
            "senders": dict(sorted(segment.senders.items())),
            "first_received": _iso(segment.first_received),
            "last_received": _iso(segment.last_received),
        },
        indent=1,
    ).encode()


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="microseconds")
