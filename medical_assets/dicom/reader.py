"""One DICOM file's bytes into the PHI zone's Arrow tables: a row of dicom_images, or of dicom_errors."""

from __future__ import annotations

import re
import struct
import warnings
import zlib
from dataclasses import dataclass
from io import BytesIO

import numpy as np
import pyarrow as pa
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian

from medical_assets.dicom import tables
from medical_assets.dicom.error_text import without_values
from medical_assets.dicom.header import image_row
from medical_assets.dicom.pixels import PIXEL_DATA_TAGS
from medical_assets.dicom.thumbnails import thumbnail

DICOM_EXTENSIONS = (".dcm", ".dicom")
# The DICM marker sits after the 128-byte preamble, so this much of a file tells whether it has one.
HEAD_BYTES = 132


@dataclass(frozen=True)
class ParsedDicomFile:
    images: pa.Table  # schema tables.DICOM_IMAGES: one row, or none
    errors: pa.Table  # schema tables.DICOM_ERRORS: one row, or none
    thumbnails: pa.Table  # schema tables.DICOM_THUMBNAILS: one row when asked for and decoded, or none

    def tables(self) -> dict[str, pa.Table]:
        """The tables keyed as `tables.TABLES`."""
        return {"dicom_images": self.images, "dicom_thumbnails": self.thumbnails, "dicom_errors": self.errors}


def read_dicom_file(data: bytes, source_file: str, with_thumbnail: bool = False) -> ParsedDicomFile:
    """The file as one row of `images`, or, when it cannot be read as DICOM, one row of `errors`.

    Nothing raises for bad data: a file that is empty, not DICOM, or cut short before its pixel
    data is an error row; a file whose pixel data alone is cut short or cannot be decoded is an
    image row with null statistics and `pixel_error` saying why; an attribute with an invalid
    value is null. Pixel statistics are over every frame and sample of pydicom's `pixel_array`,
    the stored values before any rescale. Error texts never quote the file's values.
    """
    problem = file_problem(data)
    if problem:
        return _error_result(source_file, problem)
    # pydicom warns about every odd value it meets; the row records what matters.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dataset, pixel_problem = _read_dataset(data)
        except _UnreadableFile as error:
            return _error_result(source_file, str(error))
        except Exception as error:
            return _error_result(source_file, _parse_failure(error))
        try:
            row, pixels = image_row(dataset, pixel_problem, data, source_file)
        except Exception as error:  # a bug reading one attribute must not lose the file
            return _error_result(source_file, f"unexpected {type(error).__name__} while reading the attributes")
    thumbnails = tables.DICOM_THUMBNAILS.empty_table()
    if with_thumbnail and pixels is not None:
        thumbnails = _thumbnail_table(row, pixels)
    return ParsedDicomFile(
        pa.Table.from_pylist([row], schema=tables.DICOM_IMAGES), tables.DICOM_ERRORS.empty_table(), thumbnails
    )


def is_dicom_candidate(name: str, head: bytes) -> bool:
    """True for the files the pipeline reads as DICOM: `.dcm` and `.dicom` names, and names without
    an extension whose first 132 bytes (`head`) carry the `DICM` marker after the preamble.

    A name whose last dot is followed by digits only, such as a SOP Instance UID, counts as
    having no extension: archives often name files that way.
    """
    base_name = re.split(r"[\\/]", name)[-1]
    if base_name.lower().endswith(DICOM_EXTENSIONS):
        return True
    stem, dot, extension = base_name.rpartition(".")
    has_extension = bool(dot) and bool(stem) and not extension.isdigit()
    return not has_extension and head[128:132] == b"DICM"


def file_problem(data: bytes) -> str | None:
    """Why the bytes cannot be a DICOM file (empty, another format), or None when they may be one.

    A file may be DICOM when the `DICM` marker follows its 128-byte preamble, or, for a file
    written without preamble, when it starts with an element of group 0002 (file meta) or
    0008 (identification) in either byte order. Anything else would make pydicom, which is
    told to read whatever it gets, produce a data set out of noise.
    """
    if not data:
        return "file is empty"
    if data[128:132] == b"DICM" or _starts_with_dicom_element(data):
        return None
    if len(data) < 8:
        return f"not a DICOM file: {len(data)} bytes are too few for a data element or the DICM marker"
    if len(data) < HEAD_BYTES and not data.strip(b"\x00"):
        return f"file is truncated: it ends inside the 128-byte preamble, after {len(data)} bytes"
    kind = _other_format(data)
    looks_like = f"; it looks like {kind}" if kind else ""
    return (
        "not a DICOM file: no 'DICM' marker at byte 128 and it does not start with "
        f"a group 0002 or 0008 element{looks_like}"
    )


class _UnreadableFile(Exception):
    """The file is DICOM-like but cannot give a row; the message is safe to store."""


_UNDEFINED_LENGTH = 0xFFFFFFFF
# An element header is 8 bytes, or 12 for an explicit VR with a 4-byte length.
_LONGEST_ELEMENT_HEADER = 12


def _read_dataset(data: bytes) -> tuple[Dataset, str | None]:
    """The file's data set, and why its pixel data is cut short (None when it is not).

    pydicom reads a cut file without complaint: a value shorter than its length stays short, a
    header cut off ends the data set silently, and an undefined-length element without its
    delimiter drops every element with only a warning. Each case is looked for here.
    """
    dataset, ran_out = _dcmread(data, stop_before_pixels=False)
    if ran_out:
        # The whole data set was dropped: reading up to the pixel data tells a cut in the pixel
        # data, whose header is intact, from a cut earlier on.
        header, header_ran_out = _dcmread(data, stop_before_pixels=True)
        if header_ran_out or not len(header):
            raise _UnreadableFile(
                "file is truncated: it ends inside an element of undefined length, before its delimiter"
            )
        return header, "pixel data truncated: the file ends before the end of the encapsulated pixel data"
    if not len(dataset):
        if dataset.file_meta and _cut_element(dataset.file_meta, len(data), deflated=False):
            raise _UnreadableFile("file is truncated inside its file meta information (group 0002)")
        raise _UnreadableFile("file holds no data elements after its file meta information")
    deflated = dataset.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian
    cut = _cut_element(dataset, len(data), deflated)
    if cut is None:
        return dataset, None
    tag, declared, found = cut
    if tag in PIXEL_DATA_TAGS:
        return dataset, f"pixel data truncated: expected {declared} bytes, found {found}"
    if declared is None:
        raise _UnreadableFile(f"file is truncated: it ends inside the header of the element after ({_tag_text(tag)})")
    raise _UnreadableFile(
        f"file is truncated: element ({_tag_text(tag)}) declares {declared} bytes but the file holds {found}"
    )


def _dcmread(data: bytes, stop_before_pixels: bool) -> tuple[Dataset, bool]:
    """The data set pydicom reads, and whether it ran out of data inside an undefined-length element."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = pydicom.dcmread(BytesIO(data), force=True, stop_before_pixels=stop_before_pixels)
    ran_out = any("End of file reached" in str(warning.message) for warning in caught)
    return dataset, ran_out


def _cut_element(dataset: Dataset, file_size: int, deflated: bool) -> tuple[int, int | None, int] | None:
    """The last element when the file ends inside it, as (tag, declared length, bytes found).

    When the file ends inside the header after the last complete element, the declared length
    is None and the tag is the complete element's. Elements are taken in file order; an
    undefined-length sequence at the end cannot be measured and is left to pydicom's own check.
    A deflated data set is measured inflated, so only a short value is looked for there.
    """
    last = max(dataset.elements(), key=_value_offset, default=None)
    if not isinstance(last, RawDataElement) or last.value is None:
        return None
    if last.length == _UNDEFINED_LENGTH:
        end = last.value_tell + len(last.value) + 8  # the value, then the sequence delimiter item
    elif len(last.value) < last.length:
        return last.tag, last.length, len(last.value)
    else:
        end = last.value_tell + last.length
    if not deflated and 0 < file_size - end < _LONGEST_ELEMENT_HEADER:
        return last.tag, None, file_size - end
    return None


def _value_offset(element) -> int:
    if isinstance(element, RawDataElement):
        return element.value_tell
    return element.file_tell or -1


def _error_result(source_file: str, error: str) -> ParsedDicomFile:
    errors = pa.Table.from_pylist([{"source_file": source_file, "error": error}], schema=tables.DICOM_ERRORS)
    return ParsedDicomFile(tables.DICOM_IMAGES.empty_table(), errors, tables.DICOM_THUMBNAILS.empty_table())


def _thumbnail_table(row: dict, pixels: np.ndarray) -> pa.Table:
    """One row of dicom_thumbnails; a thumbnail that fails is simply absent (the image row still stands)."""
    try:
        image = thumbnail(pixels, row["samples_per_pixel"], row["number_of_frames"])
    except Exception:
        return tables.DICOM_THUMBNAILS.empty_table()
    frames = row["number_of_frames"] or 1
    return pa.table(
        {
            "source_file": [row["source_file"]],
            "sop_instance_uid": [row["sop_instance_uid"]],
            "frame_index": pa.array([frames // 2 if frames > 1 else 0], pa.int32()),
            "thumbnail": pa.ExtensionArray.from_storage(
                tables.DICOM_THUMBNAILS.field("thumbnail").type,
                pa.FixedSizeListArray.from_arrays(pa.array(image.ravel()), image.size),
            ),
        },
        schema=tables.DICOM_THUMBNAILS,
    )


def _parse_failure(error: Exception) -> str:
    """An error row for an exception from pydicom's parser, in the words of the likely cause."""
    message = without_values(str(error))
    if isinstance(error, zlib.error):
        return f"deflated data set is truncated or corrupt: zlib says {message}"
    if isinstance(error, struct.error | EOFError):
        return f"file is truncated: it ends inside a data element header ({type(error).__name__}: {message})"
    if isinstance(error, OSError) and "No tag to read" in message:
        return f"file is truncated: it ends inside a sequence ({message})"
    if "(0002," in message:
        return f"file meta information (group 0002) is truncated or corrupt: {type(error).__name__}: {message}"
    return f"could not parse the DICOM data set: {type(error).__name__}: {message}"


def _starts_with_dicom_element(data: bytes) -> bool:
    """True when the data starts like an element of group 0002 or 0008, little or big endian.

    The group alone would accept about one binary file in 16,000, so the bytes after the tag
    must also read as an explicit VR (two capital letters) or as an implicit VR length that
    fits in the file.
    """
    if len(data) < 8 or data[:2] not in (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08"):
        return False
    if data[4:6].isalpha() and data[4:6].isupper():
        return True
    byte_order = "little" if data[1] == 0 else "big"
    return int.from_bytes(data[4:8], byte_order) <= len(data) - 8


_FORMAT_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
)


def _other_format(data: bytes) -> str | None:
    """What the file seems to be instead, from its first bytes, so the error says where it came from."""
    for signature, kind in _FORMAT_SIGNATURES:
        if data.startswith(signature):
            return kind
    if data[36:40] == b"acsp":
        return "an ICC colour profile"
    head = data[:4096]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if all(character.isprintable() or character in "\r\n\t" for character in text):
        return "text"
    return None


def _tag_text(tag: int) -> str:
    return f"{tag >> 16:04X},{tag & 0xFFFF:04X}"
