"""What a step's published output was made from, so that a run in which none of it changed carries
the output over instead of computing it again.

A record (`<data>/manifests/steps/<step>.json`) is written after the step's publication committed:
a digest of the code, the settings that shape the output, a digest per folder the step read (every
file's path, size and modification time) and one per folder it published. The next run compares:
any difference (a new landing file parsed, another key, a threshold, an edit of the code, a table
rewritten by hand) is a reason to compute, and the first one found is named in the run's log. The
record holds digests, counts and run ids only, never a value of the data.

On object storage the modification time has a second's precision: two versions of a file with the
same path and size written within one second look the same. Our publications write parts under new
names or at least a second apart; `MEDICAL_ASSETS_RECOMPUTE=1` recomputes every step regardless.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from importlib.metadata import version
from pathlib import Path

import pyarrow.fs as pafs

from medical_assets.storage import Location

RECORDS_FOLDER = "steps"  # under <data>/manifests/


@dataclass(frozen=True)
class StepBasis:
    """What a step's output depends on. `settings` are named values (never a secret: key ids, not
    keys); `inputs` map a name (the zone path) to the folder or file read."""

    settings: Mapping[str, object]
    inputs: Mapping[str, Location]
    code: str = field(default_factory=lambda: package_fingerprint())


@dataclass(frozen=True)
class CarriedOver:
    """The record of the run whose output is carried over: its id and what the step saved then."""

    run_id: str
    details: dict


@dataclass(frozen=True)
class Decision:
    """Whether a step computes: `carried` is the earlier run's record when nothing changed; else
    `reason` says why it computes. `inputs_seen` are the input digests taken before it did."""

    carried: CarriedOver | None
    reason: str
    inputs_seen: dict[str, str]
    # When only inputs changed (same code and settings, the outputs as that run published them):
    # the earlier run's record, from which a step may carry over the parts its new inputs leave as they were.
    previous: CarriedOver | None = None


class StepRecord:
    """The record of one step in `manifests`."""

    def __init__(self, manifests: Location, step: str):
        self.step = step
        self.location = manifests.child(RECORDS_FOLDER, f"{step}.json")

    def decide(self, basis: StepBasis, outputs: Mapping[str, Location], recompute: str = "") -> Decision:
        """Carry over when nothing of `basis` and `outputs` changed since the recorded run (and
        `recompute`, a reason to compute anyway, is empty); else drop the record and say why."""
        inputs_seen = {name: folder_digest(location) for name, location in basis.inputs.items()}
        carried, reason, previous = None, recompute, None
        if not reason:
            carried, reason, previous = self._compare(basis, inputs_seen, outputs)
        if carried is None:
            self.location.delete()  # a run stopped half-way leaves no record behind
        return Decision(carried, reason, inputs_seen, previous)

    def save(self, basis: StepBasis, decision: Decision, outputs: Mapping[str, Location], run_id: str, details: Mapping) -> None:
        """Record what the output just published was made from (call after the commit)."""
        record = {
            "step": self.step,
            "run_id": run_id,
            "code": basis.code,
            "settings": {name: str(value) for name, value in basis.settings.items()},
            "inputs": decision.inputs_seen,
            "outputs": {name: folder_digest(location) for name, location in outputs.items()},
            "details": dict(details),
        }
        self.location.write_bytes_atomically(json.dumps(record, sort_keys=True, indent=1).encode())

    def _compare(
        self, basis: StepBasis, inputs_seen: Mapping[str, str], outputs: Mapping[str, Location]
    ) -> tuple[CarriedOver | None, str, CarriedOver | None]:
        record = self._load()
        if record is None:
            return None, "no earlier run of this step is recorded", None
        if record.get("code") != basis.code:
            return None, "the code changed", None
        settings = {name: str(value) for name, value in basis.settings.items()}
        recorded_settings = record.get("settings", {})
        changed = sorted(name for name in settings.keys() | recorded_settings.keys() if settings.get(name) != recorded_settings.get(name))
        if changed:
            return None, f"settings changed: {', '.join(changed)}", None
        recorded = record.get("outputs", {})
        for name in sorted(outputs.keys() | recorded.keys()):
            if name not in outputs or recorded.get(name) != folder_digest(outputs[name]):
                return None, f"{name} changed since run {record.get('run_id')} published it", None
        earlier = CarriedOver(record["run_id"], record.get("details", {}))
        recorded = record.get("inputs", {})
        for name in sorted(inputs_seen.keys() | recorded.keys()):
            if inputs_seen.get(name) != recorded.get(name):
                return None, f"{name} changed", earlier
        return earlier, "", None

    def _load(self) -> dict | None:
        if not self.location.exists():
            return None
        try:
            return json.loads(self.location.read_bytes())
        except (ValueError, OSError):
            return None  # unreadable: computed again, and rewritten


def folder_digest(location: Location) -> str:
    """A digest of every file under `location` (or of the file itself): relative path, size and
    modification time; "absent" when there is nothing there."""
    info = location.filesystem.get_file_info(location.path)
    if info.type == pafs.FileType.NotFound:
        return "absent"
    if info.type == pafs.FileType.File:
        files = [("", info.size, info.mtime_ns)]
    else:
        selector = pafs.FileSelector(location.path, recursive=True, allow_not_found=True)
        files = sorted(
            (entry.path[len(location.path):], entry.size, entry.mtime_ns)
            for entry in location.filesystem.get_file_info(selector)
            if entry.type == pafs.FileType.File
        )
    digest = hashlib.sha256()
    for path, size, mtime_ns in files:
        digest.update(f"{path}\x1f{size}\x1f{mtime_ns}\x1e".encode())
    return digest.hexdigest()


@functools.cache
def package_fingerprint(package: str = "medical_assets") -> str:
    """A digest of every source file of `package` and its subpackages, and the project's version:
    any edit of our code recomputes every step (a narrower digest could miss a helper it calls)."""
    digest = hashlib.sha256(version("medical-assets").encode())
    root = Path(str(resources.files(package)))
    for path in sorted(root.rglob("*.py")):
        digest.update(f"\x1f{path.relative_to(root).as_posix()}\x1e".encode() + path.read_bytes())
    return digest.hexdigest()[:16]
