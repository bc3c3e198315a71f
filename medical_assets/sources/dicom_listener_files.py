"""Where an instance received by C-STORE lands, and the few attributes of it read to decide that."""

from __future__ import annotations

import hashlib
import re
import zlib
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

RECEIVED_FOLDER = "cstore"
NO_STUDY_FOLDER = "no-study"
UNKNOWN_SENDER = "UNKNOWN"

SOP_CLASS_UID = 0x00080016
STUDY_INSTANCE_UID = 0x0020000D
# Digits separated by single dots: what a UID is, and never a path part such as "." or "..".
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_UID_MAX_LENGTH = 64
_NOT_IN_FOLDER_NAMES = re.compile(r"[^A-Za-z0-9_-]")


class DatasetNotUnderstood(ValueError):
    """The data set of a C-STORE request cannot be read as DICOM; the text says why, without values."""


def landing_path(calling_ae_title: str, study_instance_uid: str | None, sop_instance_uid: str) -> str:
    """`cstore/<sender>/<study>/<instance>.dcm`, below the landing folder.

    The same instance from the same sender always gets the same path, so a sender's retry replaces
    the file instead of adding a second one. A study UID that is missing or not a UID puts the
    instance in the `no-study` folder; an instance UID that is not a UID is replaced by a digest
    of itself, so the file is still kept, under a name that cannot leave its folder.
    """
    study = study_instance_uid if is_uid(study_instance_uid) else NO_STUDY_FOLDER
    if is_uid(sop_instance_uid):
        instance = sop_instance_uid
    else:
        instance = "uid-" + hashlib.sha256(sop_instance_uid.encode("utf-8", "replace")).hexdigest()[:40]
    return f"{RECEIVED_FOLDER}/{sender_folder(calling_ae_title)}/{study}/{instance}.dcm"


def sender_folder(calling_ae_title: str) -> str:
    """The calling AE title as a folder name: letters, digits, `_` and `-`, never starting with `_`,
    which the landing listing would skip."""
    name = _NOT_IN_FOLDER_NAMES.sub("_", calling_ae_title.strip()).lstrip("_")
    return name or UNKNOWN_SENDER


def is_uid(value: str | None) -> bool:
    return value is not None and len(value) <= _UID_MAX_LENGTH and _UID.fullmatch(value) is not None


def study_instance_uid(stream: BytesIO, transfer_syntax: UID) -> str | None:
    """The Study Instance UID (0020,000D) of an encoded data set, as sent, or None when it has none.

    Only the elements up to it are read, and its value is taken as bytes, so pydicom neither
    decodes the rest of the data set nor logs a malformed value. Raises DatasetNotUnderstood when
    those elements cannot be read or the SOP Class UID (0008,0016), which every storage instance
    carries, is not among them: random bytes would otherwise pass for a data set with no study.
    """
    dataset = _leading_elements(stream, transfer_syntax)
    if SOP_CLASS_UID not in dataset:
        raise DatasetNotUnderstood("the data set has no SOP Class UID (0008,0016) where one belongs")
    if STUDY_INSTANCE_UID not in dataset:
        return None
    value = dataset.get_item(STUDY_INSTANCE_UID).value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value or "").strip("\x00 ") or None


def _leading_elements(stream: BytesIO, transfer_syntax: UID) -> Dataset:
    if not stream.getbuffer().nbytes:
        raise DatasetNotUnderstood("the data set is empty")
    try:
        if transfer_syntax == DeflatedExplicitVRLittleEndian:
            source = BytesIO(zlib.decompress(stream.getvalue(), -zlib.MAX_WBITS))
        else:
            source = stream
            source.seek(0)
        return read_dataset(
            source,
            transfer_syntax.is_implicit_VR,
            transfer_syntax.is_little_endian,
            stop_when=lambda tag, vr, length: tag > STUDY_INSTANCE_UID,
        )
    except Exception as error:  # whatever pydicom or zlib met in the bytes, the sender's data is at fault
        raise DatasetNotUnderstood(f"{type(error).__name__} reading the data set's first elements") from None
