"""The landing folder: how a file is delivered into it whole, and which of its files are data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow.fs as pafs

from medical_assets.storage import Location

HL7_EXTENSIONS = (".hl7", ".txt", ".msg", ".er7")
DICOM_EXTENSIONS = (".dcm", ".dicom")  # and extension-less files with the DICM preamble


@dataclass(frozen=True)
class LandingFolder:
    """Files put into a landing folder by anything outside the pipeline: a mounted share, rsync,
    an archive export. Such a writer should copy under a name starting with `.` or `_` and rename
    the file when complete, as `deliver` does: the listing skips those names."""

    name: str
    kind: str
    description: str
    extensions: tuple[str, ...]


HL7_LANDING_FOLDER = LandingFolder(
    "hl7_landing_folder", "hl7", "HL7 v2 files (ER7) copied into the HL7 landing folder", HL7_EXTENSIONS
)
DICOM_LANDING_FOLDER = LandingFolder(
    "dicom_landing_folder",
    "dicom",
    "DICOM files copied into the DICOM landing folder: .dcm, .dicom, or any name with the DICM preamble",
    DICOM_EXTENSIONS,
)


@dataclass(frozen=True)
class LandingFile:
    path: str
    relative_path: str
    size_bytes: int
    modified_time_ns: int | None


def deliver(landing: Location, relative_path: str, data: bytes, durable: bool = False) -> Location:
    """Put one file into a landing folder whole: a listing sees it complete or not at all.

    On a local disk the bytes go under a hidden temporary name, renamed when written; on an object
    store a single PUT. `durable` flushes the file and its folder entry to the disk before this
    returns, for a sender that is told "received" only once the file would survive a crash.
    """
    parts = relative_path.split("/")
    if any(not part or part.startswith((".", "_")) for part in parts):
        raise ValueError(
            f"cannot deliver {relative_path!r}: a path below the landing folder, with no part starting "
            "with '.' or '_' (the listing skips those)"
        )
    target = landing.child(*parts)
    target.write_bytes_atomically(data, durable=durable)
    return target


def list_landing_files(
    source: Location,
    extensions: tuple[str, ...],
    accept_without_extension: Callable[[str, bytes], bool] | None = None,
    head_bytes: int = 132,
) -> list[LandingFile]:
    """Every file below `source` with one of `extensions`, sorted; hidden and `_`-prefixed names are ours, not data.

    Any other file is taken when `accept_without_extension(name, first bytes)` says so (DICOM
    files often have no extension, or a UID for a name, and only the DICM preamble says what they are).
    """
    selector = pafs.FileSelector(source.path, recursive=True, allow_not_found=False)
    prefix = source.path.rstrip("/") + "/"
    files = []
    for info in source.filesystem.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        relative = info.path[len(prefix) :] if info.path.startswith(prefix) else info.base_name
        if any(part.startswith((".", "_")) for part in relative.split("/")):
            continue
        if not info.base_name.lower().endswith(extensions):
            if accept_without_extension is None:
                continue
            if not accept_without_extension(info.base_name, _head(source, info.path, head_bytes)):
                continue
        files.append(LandingFile(info.path, relative, info.size, info.mtime_ns))
    return sorted(files, key=lambda f: f.relative_path)


def _head(source: Location, path: str, size: int) -> bytes:
    with source.filesystem.open_input_stream(path) as stream:
        return stream.read(size)
