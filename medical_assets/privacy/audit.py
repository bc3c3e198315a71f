"""The audit log of PHI access: who read or re-identified what, when, why, and how it ended.

It lives in the PHI zone, `<data>/phi/_audit/`, on a local disk or an object store. Object
stores cannot append to a file, so each record is its own small JSON object, named by its UTC
time and a random UUID, written once and never overwritten; nothing here mutates or deletes a
record. On a local disk the folder is 0700 and each record 0600.

A record says what was touched (asset names, table names, a token domain) and never a PHI value.

Who: `actor` is the operating-system account of the writing process (its effective uid, looked
up in the password database, which no environment variable changes); `declared_actor` is what
`MEDICAL_ASSETS_ACTOR` claims (a service acting for a person), kept beside it, never instead.

Tamper evidence: records form a hash chain. Each carries its number (`sequence`, from 1), the
SHA-256 of the record before it (`previous_hash`) and its own (`record_hash`), over a canonical
JSON serialisation. `verify_chain` (`python -m medical_assets.privacy audit --verify`) names the
first record that was deleted, changed or put out of order. Records written before the chain
existed stay readable; the first chained record's `previous_hash` covers them, so they cannot be
changed afterwards either. A chain cannot show that its newest records were cut off, or that the
whole tail was rewritten: note the head hash `--verify` prints when signing, and pass it back with
`--anchor` next time, or copy it somewhere the writers of `phi/` cannot reach.

The chain is deliberately not keyed (no HMAC with a key derived from the pseudonym key): an
attempt made without any key must still be recorded; an auditor must be able to verify the log
without holding the secret that opens tokens; and the log must stay verifiable after the key is
rotated away. The secret also sits beside the log on a development machine, where a key would add
nothing. An external anchor protects the tail without those costs.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import posixpath
import pwd
import re
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow.fs as pafs

from medical_assets.storage import Location

AUDIT_FOLDER = "_audit"
ACTOR_VAR = "MEDICAL_ASSETS_ACTOR"
SUCCESS = "success"
DENIED = "denied"
FAILURE_PREFIX = "failure: "
RECORD_SUFFIX = ".json"
CHAIN_LOCK_FILE = ".chain.lock"
HASH_FIELDS = ("record_hash",)  # what the record hash does not cover: itself
_CHAINED_NAME = re.compile(r"^(\d{10})-")


def failure(reason: str) -> str:
    """The outcome of an attempt that failed, e.g. `failure: no key with id ...`."""
    return FAILURE_PREFIX + " ".join(str(reason).split())


def os_user() -> str:
    """The account of the process's effective uid. Not `getpass.getuser()`: that reads LOGNAME
    and USER first, which anyone can set to anyone."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        # A container user with no passwd entry still has a uid worth recording.
        return f"uid {uid}"


def declared_actor() -> str | None:
    """What `MEDICAL_ASSETS_ACTOR` claims, if anything: recorded, never trusted as the actor."""
    return os.environ.get(ACTOR_VAR, "").strip() or None


def current_actor() -> str:
    """Kept for callers of earlier versions: the OS user (the declared actor no longer replaces it)."""
    return os_user()


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, kw_only=True)
class AuditRecord:
    time: str = field(default_factory=utc_now)  # UTC, ISO 8601
    actor: str = field(default_factory=os_user)  # the OS account; AuditLog.append sets it again
    declared_actor: str | None = field(default_factory=declared_actor)  # MEDICAL_ASSETS_ACTOR, as claimed
    host: str = field(default_factory=socket.gethostname)
    action: str  # read_phi, reidentify, ...
    subject: str  # asset or table names, a token domain: never a PHI value
    purpose: str  # required, except in the record of a request refused for lacking one
    outcome: str  # success, denied or "failure: <reason>"
    run_id: str | None = None
    key_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # counts and other non-PHI facts
    # The chain, set by AuditLog.append; not part of what a record says, so not compared.
    sequence: int | None = field(default=None, compare=False)
    previous_hash: str | None = field(default=None, compare=False)
    record_hash: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.action.strip():
            raise ValueError("an audit record needs an action")
        if self.outcome not in (SUCCESS, DENIED) and not self.outcome.startswith(FAILURE_PREFIX):
            raise ValueError(f"outcome must be {SUCCESS!r}, {DENIED!r} or 'failure: <reason>', got {self.outcome!r}")
        if not self.purpose.strip() and self.outcome != DENIED:
            raise ValueError("an audit record needs a purpose (only a refusal for lacking one may have none)")
        if _parse_time(self.time).utcoffset() != timedelta(0):
            raise ValueError(f"audit time must be in UTC, got {self.time!r}")

    @property
    def moment(self) -> datetime:
        return _parse_time(self.time)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    def computed_hash(self) -> str:
        """SHA-256 of the canonical serialisation of every field but `record_hash`."""
        return canonical_hash({name: value for name, value in asdict(self).items() if name not in HASH_FIELDS})

    @property
    def is_chained(self) -> bool:
        return self.sequence is not None

    @classmethod
    def from_json(cls, text: str | bytes) -> AuditRecord:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError("an audit record is a JSON object")
        # A record from before `declared_actor` existed declared nothing we know of: not this process's claim.
        data.setdefault("declared_actor", None)
        known = {f.name for f in fields(cls)}
        # Fields added by a later version are ignored rather than fatal: old tools keep reading.
        return cls(**{name: value for name, value in data.items() if name in known})


class AuditLogError(Exception):
    """The audit log cannot be written or read; the message names the file, never a record's content."""


class AuditLog:
    """Create-only, hash-chained records under one folder, usually `<data>/phi/_audit`."""

    def __init__(self, location: Location):
        self.location = location

    @classmethod
    def in_data_dir(cls, data_dir: Location) -> AuditLog:
        return cls(data_dir.child("phi", AUDIT_FOLDER))

    def append(self, record: AuditRecord) -> Location:
        """Write the record as the chain's next link, as a new object, and return where; never
        replaces an existing one. The actor is the OS account of this process, whatever the caller set."""
        with self._chain_lock():
            chained, legacy = self._listing()
            if chained:
                last = self._read(chained[-1])
                sequence, previous = (last.sequence or 0) + 1, last.computed_hash()
            else:
                sequence, previous = 1, legacy_digest([self._raw(path) for path in legacy])
            linked = replace(record, actor=os_user(), sequence=sequence, previous_hash=previous)
            linked = replace(linked, record_hash=linked.computed_hash())
            target = self.location.child(_record_name(linked))
            payload = (linked.to_json() + "\n").encode("utf-8")
            if isinstance(self.location.filesystem, pafs.LocalFileSystem):
                _create_local(target.path, payload)
            else:
                _create_remote(target, payload)
        return target

    def records(self) -> list[AuditRecord]:
        """Every record: those from before the chain by time, then the chain in its order."""
        chained, legacy = self._listing()
        earlier = sorted((self._read(path) for path in legacy), key=lambda record: record.moment)
        return earlier + [self._read(path) for path in chained]

    def verify(self) -> ChainReport:
        return verify_chain(self)

    def _listing(self) -> tuple[list[str], list[str]]:
        """Chained record paths in chain order (their names start with the number), and the rest."""
        chained, legacy = [], []
        for path in self._record_paths():
            (chained if _CHAINED_NAME.match(posixpath.basename(path)) else legacy).append(path)
        chained.sort(key=posixpath.basename)
        return chained, legacy

    def _record_paths(self) -> list[str]:
        selector = pafs.FileSelector(self.location.path, recursive=True, allow_not_found=True)
        return sorted(
            info.path
            for info in self.location.filesystem.get_file_info(selector)
            if info.type == pafs.FileType.File
            and info.path.endswith(RECORD_SUFFIX)
            and not posixpath.basename(info.path).startswith(".")
        )

    def _raw(self, path: str) -> bytes:
        return Location(self.location.filesystem, path).read_bytes()

    def _read(self, path: str) -> AuditRecord:
        try:
            return AuditRecord.from_json(Location(self.location.filesystem, path).read_bytes())
        except (ValueError, TypeError) as error:
            raise AuditLogError(f"{path} is not a valid audit record ({type(error).__name__})") from None

    @contextmanager
    def _chain_lock(self) -> Iterator[None]:
        """One writer at a time finds the last link and adds the next (steps of a run write in
        parallel processes). An flock, released by the system if the holder dies. Object stores
        have no lock: two writers at the same instant both write, and `verify` reports the fork."""
        if not isinstance(self.location.filesystem, pafs.LocalFileSystem):
            yield
            return
        _private_folder(self.location.path)
        descriptor = os.open(os.path.join(self.location.path, CHAIN_LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing releases the lock


@dataclass(frozen=True)
class ChainReport:
    """What `verify_chain` found. `broken_at` is the number of the first bad record (None: intact)."""

    records: int  # chained records checked
    legacy_records: int  # written before the chain; covered by the first link
    head_hash: str | None  # the newest record's hash: note it to detect a cut-off tail later
    broken_at: int | None = None
    problem: str | None = None
    hashes: tuple[str, ...] = ()  # every record's hash, in order, to look up an anchor

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def verify_chain(log: AuditLog) -> ChainReport:
    """Walk the chain from record 1 and stop at the first record that was deleted (a number is
    missing), changed (its content no longer gives its hash), or reordered or replaced (it does not
    name the hash of the record before it)."""
    chained, legacy = log._listing()
    previous = legacy_digest([log._raw(path) for path in legacy])
    hashes: list[str] = []

    def broken(number: int, problem: str) -> ChainReport:
        return ChainReport(len(chained), len(legacy), hashes[-1] if hashes else None, number, problem, tuple(hashes))

    for expected, path in enumerate(chained, start=1):
        try:
            record = log._read(path)
        except AuditLogError:
            return broken(expected, f"record {expected} ({posixpath.basename(path)}) cannot be read")
        name_number = int(_CHAINED_NAME.match(posixpath.basename(path)).group(1))
        if record.sequence != name_number:
            problem = f"its file is numbered {name_number}, its content {record.sequence}: renamed or replaced"
            return broken(expected, f"record {expected} ({posixpath.basename(path)}): {problem}")
        if record.sequence < expected:
            problem = "two writers on an object store took one number, or a record was copied in"
            return broken(expected, f"record {record.sequence} appears twice, found where record {expected} belongs ({problem})")
        if record.sequence > expected:
            gone = expected if record.sequence == expected + 1 else f"{expected} to {record.sequence - 1}"
            return broken(expected, f"record {gone} is missing (deleted): the log jumps to record {record.sequence}")
        actual = record.computed_hash()
        if record.record_hash != actual:
            return broken(expected, f"record {expected} was changed after it was written (its content no longer matches its hash)")
        if record.previous_hash != previous:
            before = "the records from before the chain" if expected == 1 else f"record {expected - 1}"
            return broken(expected, f"record {expected} does not follow {before} (reordered, or an earlier record was replaced)")
        hashes.append(actual)
        previous = actual
    return ChainReport(len(chained), len(legacy), hashes[-1] if hashes else None, hashes=tuple(hashes))


def canonical_hash(data: dict[str, Any]) -> str:
    """SHA-256 of sorted-key, compact, UTF-8 JSON: the same bytes for the same record everywhere."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def legacy_digest(files: list[bytes]) -> str:
    """What the first chained record links to: the files of the records written before the chain
    (none: the hash of an empty list), so that they cannot be changed or removed once it exists.
    Their bytes, not their parsed fields: a field added since would otherwise be filled in anew."""
    ordered = sorted(hashlib.sha256(content).hexdigest() for content in files)
    return canonical_hash({"records before the chain": ordered})


def _record_name(record: AuditRecord) -> str:
    # The number first, so names sort in chain order in any listing; then the time, for people;
    # the UUID keeps two records apart even if two writers on an object store took one number.
    stamp = record.moment.strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{record.sequence:010d}-{stamp}-{uuid.uuid4().hex}{RECORD_SUFFIX}"


def _private_folder(folder: str) -> None:
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)


def _create_local(path: str, payload: bytes) -> None:
    """Whole or not at all: the record is written to a hidden file, then linked to its name. A
    writer killed half-way leaves no half record in the chain (which would stop every later append),
    and a link never replaces an existing name."""
    folder = os.path.dirname(path)
    _private_folder(folder)
    staging = os.path.join(folder, f".staging-{uuid.uuid4().hex}{RECORD_SUFFIX}")
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(descriptor, payload)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.link(staging, path)
    finally:
        os.unlink(staging)


def _create_remote(target: Location, payload: bytes) -> None:
    # Object stores offer no create-only PUT through pyarrow; the UUID in the name is what keeps
    # records apart, and this check keeps our own code from ever replacing one.
    if target.exists():
        raise FileExistsError(f"audit record {target.uri} already exists")
    target.filesystem.create_dir(posixpath.dirname(target.path), recursive=True)
    with target.filesystem.open_output_stream(target.path) as out:
        out.write(payload)


def _parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"audit time must carry its UTC offset, got {value!r}")
    return moment
