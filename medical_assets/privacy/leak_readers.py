"""The texts the leak check searches in an output file: a table's cells and schema, a DICOM file's
elements and raw bytes, a PNG's text chunks; and the files under a folder."""

from __future__ import annotations

import hashlib
import json
import posixpath
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from io import BytesIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pydicom
from PIL import Image
from pydicom.datadict import keyword_for_tag
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian as DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN

from medical_assets.storage import Location

# Schema metadata keys our code writes (and pyarrow's own): text we wrote, not data.
# Metadata we write: the compliance stamp, Arrow's own, and each declared column's treatment,
# source field and description (`privacy.declarations`).
OWN_METADATA_PREFIXES = (b"deid.", b"medical_assets.", b"ARROW:", b"description", b"doc", b"treatment", b"source")
DICOM_SUFFIXES = (".dcm", ".dicom")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MARKUP_SUFFIXES = (".html", ".htm", ".xml", ".svg")
_PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)  # Float, Double Float and Pixel Data


@dataclass(frozen=True)
class ListedFile:
    """A file as its folder's listing gives it: one request for a thousand files on an object store,
    where asking for each file's size and time is a request a file."""

    path: str
    size: int
    mtime_ns: int | None  # None where the filesystem tells no time


def tree_listing(root: Location) -> list[ListedFile]:
    """Every file under `root`, hidden and staging files too, sorted by path."""
    selector = pafs.FileSelector(root.path, recursive=True, allow_not_found=True)
    infos = root.filesystem.get_file_info(selector)
    return sorted(
        (ListedFile(info.path, info.size, info.mtime_ns) for info in infos if info.type == pafs.FileType.File),
        key=lambda listed: listed.path,
    )


def read_table(data: bytes, suffix: str) -> pa.Table | None:
    """A Parquet, CSV or JSON Lines file as a table, so that its number columns are known as such;
    None for another kind of file, or one that does not parse (then it is scanned as text).

    CSV and JSON Lines carry no schema: a column whose every value reads as a number counts as one.
    """
    try:
        if suffix == ".parquet":
            return pq.read_table(pa.BufferReader(data))
        if suffix == ".csv":
            return pacsv.read_csv(pa.BufferReader(data))
        if suffix == ".jsonl":
            return pajson.read_json(pa.BufferReader(data))
    except (pa.ArrowException, OSError):
        pass
    return None


def parquet_footer_digest(data: bytes) -> str | None:
    """A digest of a Parquet file's footer (its schema, row groups, statistics and our stamp with
    the run and the time it was written): the same bytes give the same digest, and a file written
    again another. None when the bytes do not end as Parquet does."""
    if len(data) < 12 or data[-4:] != b"PAR1":
        return None
    length = int.from_bytes(data[-8:-4], "little")
    if length + 8 > len(data):
        return None
    return hashlib.sha256(data[-8 - length :]).hexdigest()[:32]


def parquet_file_footer_digest(location: Location) -> str | None:
    """`parquet_footer_digest` of a file, from its last bytes only (None when it cannot be read)."""
    try:
        with location.filesystem.open_input_file(location.path) as stream:
            size = stream.size()
            stream.seek(size - min(size, _FOOTER_TAIL))
            data = stream.read(min(size, _FOOTER_TAIL))
            if len(data) >= 8 and data[-4:] == b"PAR1":
                length = int.from_bytes(data[-8:-4], "little")
                if len(data) < 8 + length <= size:  # a footer larger than the tail: read it whole
                    stream.seek(size - 8 - length)
                    data = stream.read(8 + length)
    except (FileNotFoundError, OSError):
        return None
    return parquet_footer_digest(data)


_FOOTER_TAIL = 1 << 16  # bytes read from a file's end to find its footer


def dicom_file_key(location: Location) -> str | None:
    """A key for the kept texts of a published DICOM file: its name, size and modification time.
    A DICOM file has no footer that says what it holds, and reading it to digest it is what the
    kept texts spare; the exported files are written once under a new UID's name, and one written
    again has a new time. None when the file is not there or its filesystem tells no time.
    (`listed_dicom_key` gives the same key from a folder's listing, without a request a file.)"""
    try:
        info = location.filesystem.get_file_info(location.path)
    except OSError:
        return None
    if info.type != pafs.FileType.File:
        return None
    return listed_dicom_key(ListedFile(location.path, info.size, info.mtime_ns))


def listed_dicom_key(listed: ListedFile) -> str | None:
    """`dicom_file_key` of a file as its folder's listing gives it."""
    if listed.mtime_ns is None:
        return None
    name = posixpath.basename(listed.path)
    return hashlib.sha256(f"{name}\0{listed.size}\0{listed.mtime_ns}".encode()).hexdigest()[:32]


def parquet_schema(data: bytes) -> pa.Schema:
    """The Arrow schema of a Parquet file, from its footer alone."""
    return pq.ParquetFile(pa.BufferReader(data)).schema_arrow


def read_parquet_without(data: bytes, skip: Callable[[pa.Field], bool]) -> tuple[pa.Table, pa.Schema] | None:
    """A Parquet file's columns but those `skip` accepts, and the file's whole schema; None when the
    bytes are not Parquet (then the file is read as `read_table` reads it)."""
    try:
        schema = pq.ParquetFile(pa.BufferReader(data)).schema_arrow
        read = [field for field in schema if not skip(field)]
        # Text columns as dictionaries, as Parquet stores them: a column of a few distinct values is
        # then not spelled out once per row (`distinct_cell_texts` counts the dictionary's values).
        as_dictionaries = [field.name for field in read if _is_text_type(field.type)]
        parquet = pq.ParquetFile(pa.BufferReader(data), read_dictionary=as_dictionaries)
        return parquet.read(columns=[field.name for field in read]), schema
    except (pa.ArrowException, OSError):
        return None


def cell_texts(array: pa.Array, text_only: bool = False) -> list[pa.Array]:
    """The text of every non-null value in the array, nested values included, as string arrays.

    With `text_only`, only its string (and binary, read as latin-1) values, a dictionary's distinct
    values once: numbers, dates and timestamps are left out, as the pattern detectors look for text,
    and a timestamp column written as text would read as a date by its type, not by a leak."""
    kind = array.type
    if isinstance(kind, pa.BaseExtensionType):
        return cell_texts(array.storage, text_only)
    if pa.types.is_dictionary(kind):
        if text_only:
            return cell_texts(array.dictionary, text_only) if _is_text_type(kind.value_type) else []
        return cell_texts(array.dictionary_decode())
    if pa.types.is_map(kind):
        return cell_texts(array.keys, text_only) + cell_texts(array.items, text_only)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return cell_texts(array.flatten(), text_only)
    if pa.types.is_struct(kind):
        return [texts for child in array.flatten() for texts in cell_texts(child, text_only)]
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return [array.drop_null()]
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return [pa.array([value.decode("latin-1") for value in array.drop_null().to_pylist()], pa.string())]
    if text_only or pa.types.is_null(kind):
        return []
    if pa.types.is_floating(kind):
        return [_whole_number_texts(array)]
    try:
        return [array.cast(pa.string()).drop_null()]
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return [pa.array([str(value) for value in array.to_pylist() if value is not None], pa.string())]


def distinct_cell_texts(array: pa.Array) -> list[tuple[pa.Array, np.ndarray]]:
    """The texts of `cell_texts(array)`, each distinct value once, with how many cells hold it. The
    values are counted before they are written out as text: a column repeats its years, dates and
    codes, and turning every cell into text would cost more than the search."""
    kind = array.type
    if isinstance(kind, pa.BaseExtensionType):
        return distinct_cell_texts(array.storage)
    if pa.types.is_map(kind):
        return distinct_cell_texts(array.keys) + distinct_cell_texts(array.items)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return distinct_cell_texts(array.flatten())
    if pa.types.is_struct(kind):
        return [texts for child in array.flatten() for texts in distinct_cell_texts(child)]
    if pa.types.is_null(kind) or len(array) == array.null_count:
        return []
    try:
        distinct = pc.value_counts(array)
    except pa.ArrowNotImplementedError:  # a type Arrow cannot count: its texts, counted as texts
        return [_counted(texts) for texts in cell_texts(array)]
    values, counts = distinct.field("values"), distinct.field("counts").to_numpy(zero_copy_only=False)
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    known = values.is_valid()
    values, counts = values.filter(known), counts[known.to_numpy(zero_copy_only=False)]
    if pa.types.is_floating(values.type):
        whole = _whole_numbers(values)
        values, counts = values.filter(whole), counts[whole.to_numpy(zero_copy_only=False)]
    return [(texts, counts) for texts in cell_texts(values)]


def _counted(texts: pa.Array) -> tuple[pa.Array, np.ndarray]:
    distinct = pc.value_counts(texts)
    return distinct.field("values"), distinct.field("counts").to_numpy(zero_copy_only=False)


def schema_texts(schema: pa.Schema) -> tuple[list[str], list[str]]:
    """(text we wrote: field names and the keys and values of our metadata, any other metadata)."""
    ours, theirs = [], []
    for field in _all_fields(schema):
        ours.append(field.name)
        _split_metadata(field.metadata, ours, theirs)
    _split_metadata(schema.metadata, ours, theirs)
    return ours, theirs


def is_number_type(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def is_our_stamp(data: bytes) -> bool:
    """A JSON object whose every key is one of our metadata keys (`_compliance.json`)."""
    if not data.lstrip().startswith(b"{") or len(data) > 65_536:
        return False
    try:
        stamp = json.loads(data)
    except ValueError:
        return False
    return (
        isinstance(stamp, dict)
        and bool(stamp)
        and all(key.encode().startswith(OWN_METADATA_PREFIXES) for key in stamp)
        and all(isinstance(value, str) for value in stamp.values())
    )


def png_text(data: bytes) -> str:
    """A PNG's text chunks (tEXt, iTXt, zTXt), where words can hide in an image file. Its pixels
    are compressed: searching them for words finds only chance matches; the labels drawn in them
    come from tables that are scanned themselves. An unreadable PNG is searched byte by byte."""
    try:
        with Image.open(BytesIO(data)) as image:
            image.load()
            return "\n".join(f"{key}: {value}" for key, value in getattr(image, "text", {}).items())
    except Exception:  # noqa: BLE001 - a damaged file is still searched, as bytes
        return data.decode("latin-1")


def dicom_texts(data: bytes) -> tuple[list[tuple[str, str, str]], bytes]:
    """(label, text, VR) of every element pydicom can read, through sequences, private tags and the
    file meta; and the bytes to search raw, for values pydicom could not parse: the file meta and
    the data set, inflated if deflated, its pixel data cut out (the whole file if it does not parse)."""
    dataset = _read_dicom(data)
    if dataset is None:
        return [], data
    meta, body = _split_inflated(data, dataset)
    raw = meta + _without_pixel_data(body, dataset)
    elements: list[tuple[str, str, str]] = []
    try:
        for element in _element_texts(dataset):
            elements.append(element)
    except Exception:  # noqa: BLE001, S110 - a damaged item deep in a sequence: the raw bytes cover the rest
        pass
    return elements, raw


def _whole_number_texts(array: pa.Array) -> pa.Array:
    """Only the floats that are whole numbers, written as integers: an ID read as a number becomes
    4827691.0, while the digits after the point of a measurement (0.4827691) would match IDs by chance."""
    values = array.drop_null()
    return values.filter(_whole_numbers(values)).cast(pa.float64()).cast(pa.int64()).cast(pa.string())


def _whole_numbers(values: pa.Array) -> pa.Array:
    """Where the floats are whole numbers small enough to be an ID (NaN and infinities are not)."""
    values = values.cast(pa.float64())
    return pc.fill_null(pc.and_(pc.equal(pc.floor(values), values), pc.less(pc.abs(values), 1e15)), False)


def _is_text_type(kind: pa.DataType) -> bool:
    return any(
        check(kind)
        for check in (
            pa.types.is_string,
            pa.types.is_large_string,
            pa.types.is_binary,
            pa.types.is_large_binary,
            pa.types.is_fixed_size_binary,
        )
    )


def _split_metadata(metadata: Mapping[bytes, bytes] | None, ours: list[str], theirs: list[str]) -> None:
    for key, value in (metadata or {}).items():
        lines = ours if key.startswith(OWN_METADATA_PREFIXES) else theirs
        lines += [text.decode("utf-8", errors="replace") for text in (key, value)]


def _all_fields(fields: Iterable[pa.Field]) -> Iterator[pa.Field]:
    for field in fields:
        yield field
        kind = field.type
        if pa.types.is_struct(kind):
            yield from _all_fields(kind.field(i) for i in range(kind.num_fields))
        elif pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
            yield from _all_fields([kind.value_field])
        elif pa.types.is_map(kind):
            yield from _all_fields([kind.key_field, kind.item_field])


def _read_dicom(data: bytes) -> pydicom.Dataset | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(BytesIO(data), force=True)
    except Exception:  # noqa: BLE001 - whatever pydicom trips on, the raw byte scan still covers the file
        return None


def _split_inflated(data: bytes, dataset: pydicom.Dataset) -> tuple[bytes, bytes]:
    """(file meta, data set) of a deflated file, the data set inflated: its compressed stream is
    random-looking bytes in which short names turn up by chance (seen: "DIAZ" in a synthetic CT),
    and hides what a raw scan is for. Offsets in the inflated data set match pydicom's `value_tell`.
    Any other file is returned whole, as the data set."""
    file_meta = getattr(dataset, "file_meta", None)
    if getattr(file_meta, "TransferSyntaxUID", None) != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN or data[128:132] != b"DICM":
        return b"", data
    meta_end = 144 + int.from_bytes(data[140:144], "little")  # after (0002,0000) File Meta Group Length
    try:
        return data[:meta_end], zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[meta_end:])
    except zlib.error:
        return data[:meta_end], b""  # an unreadable stream: pydicom could not have parsed its elements


def _without_pixel_data(data: bytes, dataset: pydicom.Dataset) -> bytes:
    """The file with its pixel bytes cut out, one NUL byte in their place: dark 8-bit images are runs
    of ASCII digits, which would match numeric IDs by chance, and megabytes of pixels would make the
    raw scan most of the check's time. Done before the elements are read, while their file offsets are known."""
    spans = []
    for tag in _PIXEL_TAGS:
        element = dataset.get_item(tag) if tag in dataset else None
        offset = getattr(element, "value_tell", None)
        value = getattr(element, "value", None)
        # Only where the bytes really are there: a deflated file's offsets point into the inflated stream.
        if offset is None or not isinstance(value, bytes) or data[offset : offset + len(value)] != value:
            continue
        spans.append((offset, offset + len(value)))
    if not spans:
        return data
    pieces, position = [], 0
    for start, stop in sorted(spans):
        pieces += [data[position:start], b"\x00"]
        position = max(position, stop)
    pieces.append(data[position:])
    return b"".join(pieces)


def _element_texts(dataset: pydicom.Dataset, prefix: str = "") -> Iterator[tuple[str, str, str]]:
    """(label, text, VR) for every element, the file meta first, then the data set through its sequences."""
    file_meta = getattr(dataset, "file_meta", None)
    if file_meta is not None and not prefix:
        yield from _element_texts(file_meta, "file meta ")
    for tag in list(dataset.keys()):
        label = f"{prefix}{_tag_label(tag)}"
        if tag in _PIXEL_TAGS:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                element = dataset[tag]
        except Exception:  # noqa: BLE001 - a value pydicom cannot convert: its stored bytes are still worth reading
            raw = dataset.get_item(tag)
            yield label, _value_text(getattr(raw, "value", None)), str(getattr(raw, "VR", None) or "UN")
            continue
        if element.VR == "SQ":
            for index, item in enumerate(element.value or []):
                yield from _element_texts(item, f"{label}[{index}] > ")
        else:
            yield label, _value_text(element.value), str(element.VR)


def _tag_label(tag: int) -> str:
    tag = Tag(tag)
    keyword = "private" if tag.is_private else (keyword_for_tag(tag) or "unknown")
    return f"({tag.group:04X},{tag.element:04X}) {keyword}"


def _value_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join(_value_text(item) for item in value)
    return str(value)
