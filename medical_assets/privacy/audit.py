"""The audit log of PHI access: who read or re-identified what, when, why, and how it ended.

It lives in the PHI zone, `<data>/phi/_audit/`, on a local disk or an object store. Object
stores cannot append to a file, so each record is its own small JSON object, named by its UTC
time and a random UUID, written once and never overwritten; nothing here mutates or deletes a
record. On a local disk the folder is 0700 and each record 0600.

A record says what was touched (asset names, table names, a token domain) and never a PHI value.
"""

from __future__ import annotations

import getpass
import json
import os
import posixpath
import socket
import uuid
from dataclasses import asdict, dataclass, field, fields
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


def failure(reason: str) -> str:
    """The outcome of an attempt that failed, e.g. `failure: no key with id ...`."""
    return FAILURE_PREFIX + " ".join(str(reason).split())


def current_actor() -> str:
    """`MEDICAL_ASSETS_ACTOR` when set (a service acting for a person), else the OS user."""
    declared = os.environ.get(ACTOR_VAR, "").strip()
    if declared:
        return declared
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        # A container user with no passwd entry still has a uid worth recording.
        return f"uid {os.getuid()}"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, kw_only=True)
class AuditRecord:
    time: str = field(default_factory=utc_now)  # UTC, ISO 8601
    actor: str = field(default_factory=current_actor)
    host: str = field(default_factory=socket.gethostname)
    action: str  # read_phi, reidentify, ...
    subject: str  # asset or table names, a token domain: never a PHI value
    purpose: str
    outcome: str  # success, denied or "failure: <reason>"
    run_id: str | None = None
    key_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # counts and other non-PHI facts

    def __post_init__(self) -> None:
        if not self.action.strip():
            raise ValueError("an audit record needs an action")
        if self.outcome not in (SUCCESS, DENIED) and not self.outcome.startswith(FAILURE_PREFIX):
            raise ValueError(f"outcome must be {SUCCESS!r}, {DENIED!r} or 'failure: <reason>', got {self.outcome!r}")
        if _parse_time(self.time).utcoffset() != timedelta(0):
            raise ValueError(f"audit time must be in UTC, got {self.time!r}")

    @property
    def moment(self) -> datetime:
        return _parse_time(self.time)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> AuditRecord:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError("an audit record is a JSON object")
        known = {f.name for f in fields(cls)}
        # Fields added by a later version are ignored rather than fatal: old tools keep reading.
        return cls(**{name: value for name, value in data.items() if name in known})


class AuditLogError(Exception):
    """The audit log cannot be written or read; the message names the file, never a record's content."""


class AuditLog:
    """Create-only records under one folder, usually `<data>/phi/_audit`."""

    def __init__(self, location: Location):
        self.location = location

    @classmethod
    def in_data_dir(cls, data_dir: Location) -> AuditLog:
        return cls(data_dir.child("phi", AUDIT_FOLDER))

    def append(self, record: AuditRecord) -> Location:
        """Write the record as a new object and return where; never replaces an existing one."""
        target = self.location.child(_record_name(record))
        payload = (record.to_json() + "\n").encode("utf-8")
        if isinstance(self.location.filesystem, pafs.LocalFileSystem):
            _create_local(target.path, payload)
        else:
            _create_remote(target, payload)
        return target

    def records(self) -> list[AuditRecord]:
        """Every record, oldest first."""
        records = [self._read(path) for path in self._record_paths()]
        return sorted(records, key=lambda record: record.moment)

    def _record_paths(self) -> list[str]:
        selector = pafs.FileSelector(self.location.path, recursive=True, allow_not_found=True)
        return sorted(
            info.path
            for info in self.location.filesystem.get_file_info(selector)
            if info.type == pafs.FileType.File
            and info.path.endswith(RECORD_SUFFIX)
            and not posixpath.basename(info.path).startswith(".")
        )

    def _read(self, path: str) -> AuditRecord:
        try:
            return AuditRecord.from_json(Location(self.location.filesystem, path).read_bytes())
        except (ValueError, TypeError) as error:
            raise AuditLogError(f"{path} is not a valid audit record ({type(error).__name__})") from None


def _record_name(record: AuditRecord) -> str:
    # The time first, so names sort in time order in any listing; the UUID makes them unique.
    stamp = record.moment.strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{stamp}-{uuid.uuid4().hex}{RECORD_SUFFIX}"


def _create_local(path: str, payload: bytes) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(descriptor, payload)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


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
