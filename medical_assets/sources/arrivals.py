"""What the live listeners delivered: counts by listener and by sending system, never content.

The HL7 listener lands its segments as `mllp/<listener>/<day>/<stem>.hl7` and writes beside them,
under `_mllp/summaries/<listener>/<stem>.json`, how many messages each holds and from which
sending application and facility (MSH-3, MSH-4: system names, not patient data). The DICOM
storage service lands instances as `cstore/<calling AE title>/<study>/<instance>.dcm`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from medical_assets.sources.folder import LandingFile
from medical_assets.storage import Location

HL7_FOLDER = "mllp"
HL7_SUMMARIES = ("_mllp", "summaries")
DICOM_FOLDER = "cstore"


@dataclass(frozen=True)
class ListenerSource:
    """A network service that delivers into a landing folder, below `folder`."""

    name: str
    kind: str
    description: str
    folder: str


MLLP_LISTENER = ListenerSource(
    "mllp_listener",
    "hl7",
    "HL7 v2 over MLLP from an interface engine (`medical-assets listen hl7`), acknowledged once fsynced",
    HL7_FOLDER,
)
DICOM_STORAGE_SERVICE = ListenerSource(
    "dicom_storage_service",
    "dicom",
    "DICOM instances pushed by C-STORE from a PACS or router (`medical-assets listen dicom`), confirmed once fsynced",
    DICOM_FOLDER,
)


def hl7_arrivals(source: Location, files: Iterable[LandingFile]) -> dict[str, dict]:
    """Per listener: segment files, messages and messages by sender among `files` (landing files of HL7)."""
    found: dict[str, dict] = {}
    for file in files:
        parts = file.relative_path.split("/")
        if len(parts) != 4 or parts[0] != HL7_FOLDER:
            continue
        listener, stem = parts[1], parts[3].rsplit(".", 1)[0]
        entry = found.setdefault(listener, {"files": 0, "messages": 0, "senders": Counter()})
        entry["files"] += 1
        summary = _summary(source.child(*HL7_SUMMARIES, listener, stem + ".json"))
        if summary is None:
            continue  # landed by hand, or by a listener older than summaries: counted as a file only
        entry["messages"] += int(summary.get("messages", 0))
        entry["senders"].update({str(k): int(v) for k, v in summary.get("senders", {}).items()})
    return {name: {**entry, "senders": dict(sorted(entry["senders"].items()))} for name, entry in sorted(found.items())}


def dicom_arrivals(files: Iterable[LandingFile]) -> dict[str, int]:
    """Instances by calling AE title among `files` (landing files of DICOM) that the storage service received."""
    senders: Counter[str] = Counter()
    for file in files:
        parts = file.relative_path.split("/")
        if len(parts) >= 3 and parts[0] == DICOM_FOLDER:
            senders[parts[1]] += 1
    return dict(sorted(senders.items()))


def _summary(location: Location) -> dict | None:
    try:
        return json.loads(location.read_bytes())
    except (FileNotFoundError, OSError, ValueError):
        return None
