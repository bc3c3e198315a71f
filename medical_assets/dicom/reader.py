"""One DICOM file's bytes into the PHI zone's Arrow tables: a row of dicom_images, or of dicom_errors."""

from __future__ import annotations

import math
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
from pydicom.encaps import generate_frames
from pydicom.multival import MultiValue
from pydicom.pixels import get_decoder
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGExtended12Bit,
)

from medical_assets.dicom import tables
from medical_assets.dicom.thumbnails import thumbnail

try:
    import gdcm
except ImportError:  # the 12-bit JPEG fallback is then unavailable and says so in pixel_error
    gdcm = None

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
            row, pixels = _image_row(dataset, pixel_problem, data, source_file)
        except Exception as error:  # a bug reading one attribute must not lose the file
            return _error_result(source_file, f"unexpected {type(error).__name__} while reading the attributes")
    thumbnails = tables.DICOM_THUMBNAILS.empty_table()
    if with_thumbnail and pixels is not None:
        thumbnails = _thumbnail_table(row, pixels)
    return ParsedDicomFile(
        pa.Table.from_pylist([row], schema=tables.DICOM_IMAGES), tables.DICOM_ERRORS.empty_table(), thumbnails
    )


def is_dicom_candidate(name: str, head: bytes) -> bool:
    """True for the files the contract calls DICOM: `.dcm` and `.dicom` names, and names without
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


_PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})  # float, double float, integer
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
    if tag in _PIXEL_DATA_TAGS:
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


def _image_row(
    dataset: Dataset, pixel_problem: str | None, data: bytes, source_file: str
) -> tuple[dict, np.ndarray | None]:
    """The row of dicom_images, and the decoded pixels when they decoded."""
    file_meta = dataset.file_meta
    transfer_syntax = _transfer_syntax(dataset)
    has_pixel_data = pixel_problem is not None or any(tag in dataset for tag in _PIXEL_DATA_TAGS)
    number_of_frames = _integer(dataset, "NumberOfFrames")
    if number_of_frames is None and has_pixel_data and "NumberOfFrames" not in dataset:
        number_of_frames = 1  # DICOM: an image without Number of Frames has one
    statistics, pixel_error, pixels = (None, None, None, None), None, None
    if has_pixel_data:
        statistics, pixel_error, pixels = _pixel_statistics(dataset, transfer_syntax, pixel_problem)
    elif all(keyword in dataset for keyword in _IMAGE_PIXEL_KEYWORDS):
        # What a file cut just before its pixel data looks like; structured reports and plans
        # have none of these.
        pixel_error = (
            "no pixel data although Rows, Columns and Bits Allocated describe an image; the file may be truncated"
        )
    if pixel_error:
        pixel_error = _without_patient(pixel_error, dataset)
    pixel_mean, pixel_std, pixel_min, pixel_max = statistics
    row = {
        "source_file": source_file,
        "sop_instance_uid": _text(dataset, "SOPInstanceUID") or _text(file_meta, "MediaStorageSOPInstanceUID"),
        "sop_class_uid": _text(dataset, "SOPClassUID") or _text(file_meta, "MediaStorageSOPClassUID"),
        "study_instance_uid": _text(dataset, "StudyInstanceUID"),
        "series_instance_uid": _text(dataset, "SeriesInstanceUID"),
        "series_number": _integer(dataset, "SeriesNumber"),
        "instance_number": _integer(dataset, "InstanceNumber"),
        "patient_id": _text(dataset, "PatientID"),
        "patient_id_issuer": _text(dataset, "IssuerOfPatientID"),
        "patient_name": _text(dataset, "PatientName"),
        "patient_birth_date": _text(dataset, "PatientBirthDate"),
        "patient_age": _text(dataset, "PatientAge"),
        "patient_sex": _text(dataset, "PatientSex"),
        "accession_number": _text(dataset, "AccessionNumber"),
        "modality": _text(dataset, "Modality"),
        "study_date": _text(dataset, "StudyDate"),
        "study_description": _text(dataset, "StudyDescription"),
        "series_description": _text(dataset, "SeriesDescription"),
        "body_part_examined": _text(dataset, "BodyPartExamined"),
        "institution_name": _text(dataset, "InstitutionName"),
        "manufacturer": _text(dataset, "Manufacturer"),
        "manufacturer_model_name": _text(dataset, "ManufacturerModelName"),
        "rows": _integer(dataset, "Rows"),
        "columns": _integer(dataset, "Columns"),
        "number_of_frames": number_of_frames,
        "samples_per_pixel": _integer(dataset, "SamplesPerPixel"),
        "photometric_interpretation": _text(dataset, "PhotometricInterpretation"),
        "bits_allocated": _integer(dataset, "BitsAllocated"),
        "bits_stored": _integer(dataset, "BitsStored"),
        "pixel_representation": _integer(dataset, "PixelRepresentation"),
        "pixel_spacing": _decimals(dataset, "PixelSpacing"),
        "slice_thickness": _decimal(dataset, "SliceThickness"),
        "window_center": _decimal(dataset, "WindowCenter"),
        "window_width": _decimal(dataset, "WindowWidth"),
        "rescale_slope": _decimal(dataset, "RescaleSlope"),
        "rescale_intercept": _decimal(dataset, "RescaleIntercept"),
        "burned_in_annotation": _text(dataset, "BurnedInAnnotation"),
        "transfer_syntax_uid": str(transfer_syntax) if transfer_syntax else None,
        "file_size_bytes": len(data),
        "has_preamble": data[128:132] == b"DICM",
        "has_pixel_data": has_pixel_data,
        "pixel_mean": pixel_mean,
        "pixel_std": pixel_std,
        "pixel_min": pixel_min,
        "pixel_max": pixel_max,
        "pixel_error": pixel_error,
    }
    return row, pixels if pixel_error is None else None


_IMAGE_PIXEL_KEYWORDS = ("Rows", "Columns", "BitsAllocated")
_SYNTAX_OF_ENCODING = {
    (True, True): ImplicitVRLittleEndian,
    (False, True): ExplicitVRLittleEndian,
    (False, False): ExplicitVRBigEndian,
}


def _transfer_syntax(dataset: Dataset) -> UID | None:
    """The file meta's Transfer Syntax UID; without one, the syntax the data set was read in.

    A file written without file meta (or without that element) is still uncompressed data in
    the encoding pydicom recognised, so naming it lets the pixel data decode; the inferred UID
    is also set on the data set for that purpose.
    """
    transfer_syntax = _text(dataset.file_meta, "TransferSyntaxUID")
    if transfer_syntax:
        return UID(transfer_syntax)
    inferred = _SYNTAX_OF_ENCODING.get(dataset.original_encoding)
    if inferred:
        dataset.file_meta.TransferSyntaxUID = inferred
    return inferred


def _pixel_statistics(
    dataset: Dataset, transfer_syntax: UID | None, pixel_problem: str | None
) -> tuple[tuple[float | None, ...], str | None, np.ndarray | None]:
    """(mean, std, min, max) of the stored pixel values, None and the pixels; or four Nones, the reason and None."""
    nothing = (None, None, None, None)
    if pixel_problem:
        return nothing, pixel_problem, None
    frames = dataset.get("NumberOfFrames")
    if frames is not None and _integer(dataset, "NumberOfFrames") is None:
        shown = str(frames)[:16]
        reason = f"Number of Frames (0028,0008) is not a whole number ({shown!r}), so frames cannot be located"
        return nothing, reason, None
    if transfer_syntax is None:
        return nothing, "the file names no transfer syntax, so the pixel data's encoding is unknown", None
    try:
        pixels = _pixel_array(dataset, transfer_syntax)
    except Exception as error:
        return nothing, _decode_failure(error, transfer_syntax), None
    except BaseException as error:
        # A decoder written in Rust (pylibjpeg-rle) panics on some damaged frames; its
        # PanicException derives from BaseException. It is the file's fault, not the run's.
        if type(error).__name__ != "PanicException":
            raise
        return nothing, f"the {transfer_syntax.name} decoder failed on damaged pixel data (panic)", None
    if pixels.ndim == 0 or pixels.size == 0:
        return nothing, "pixel data holds no samples", None
    try:
        return _statistics(pixels), None, pixels
    except Exception as error:  # e.g. an array pydicom returned in a dtype numpy cannot reduce
        return nothing, f"{type(error).__name__}: could not compute statistics over the decoded pixels", None


def _pixel_array(dataset: Dataset, transfer_syntax: UID) -> np.ndarray:
    try:
        return _decode(dataset, transfer_syntax)
    except Exception as error:
        if not _is_12_bit_jpeg_extended(dataset, transfer_syntax):
            raise
        try:
            return _decode_12_bit_jpeg_with_gdcm(dataset)
        except Exception as fallback_error:
            error.add_note(f"GDCM fallback: {type(fallback_error).__name__}: {fallback_error}")
            raise error from fallback_error


def _decode(dataset: Dataset, transfer_syntax: UID) -> np.ndarray:
    """The pixels, by the first plugin that decodes them. GDCM is left out whenever another plugin
    can decode the transfer syntax: on some damaged streams it aborts the whole process (an
    uncaught C++ exception), which no `except` can turn into an error row."""
    plugins = _plugins_without_gdcm(transfer_syntax)
    if not plugins:
        return dataset.pixel_array
    failures = []
    for plugin in plugins:
        try:
            dataset.pixel_array_options(decoding_plugin=plugin)
            return dataset.pixel_array
        except Exception as error:  # the next plugin may read what this one cannot
            # pydicom already says "<plugin>: <reason>" after its own preamble; keep that part.
            text = str(error).split(_PYDICOM_PLUGIN_FAILURES, 1)[-1].strip()
            failures.append(text if text.startswith(f"{plugin}:") else f"{plugin}: {text}")
    # Worded as pydicom words the same failure when it tries the plugins itself.
    raise RuntimeError(f"{_PYDICOM_PLUGIN_FAILURES}\n  " + "\n  ".join(failures))


_PYDICOM_PLUGIN_FAILURES = "Unable to decode as exceptions were raised by all available plugins:"


def _plugins_without_gdcm(transfer_syntax: UID) -> tuple[str, ...]:
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError:  # no decoder at all: pixel_array says why
        return ()
    if decoder is None or not transfer_syntax.is_compressed:
        return ()
    plugins = [plugin for plugin in decoder.available_plugins if plugin != "gdcm"]
    # pydicom's own decoders (RLE) are pure Python: 5 to 10 times slower than pylibjpeg-rle's,
    # and lossless alike, so they are the last resort.
    return tuple(sorted(plugins, key=lambda plugin: plugin == "pydicom"))


def _is_12_bit_jpeg_extended(dataset: Dataset, transfer_syntax: UID) -> bool:
    return (
        transfer_syntax == JPEGExtended12Bit
        and gdcm is not None
        and _integer(dataset, "SamplesPerPixel") == 1
        and (_integer(dataset, "BitsStored") or 0) > 8
    )


def _decode_12_bit_jpeg_with_gdcm(dataset: Dataset) -> np.ndarray:
    """The frames of a 12-bit JPEG Extended (1.2.840.10008.1.2.4.51) image, decoded by GDCM's own JPEG codec.

    pydicom's GDCM plugin refuses 12-bit JPEG Extended and Pillow cannot decode it; the other
    decoder pydicom knows, pylibjpeg-libjpeg, is GPL. GDCM itself decodes it (its ImageReader
    does, value for value as pydicom's reference data for JPGExtended.dcm), so the codestream is
    handed to gdcm.Image here: the same codec as gdcm.ImageReader, without writing a temporary
    file. libjpeg prints "Unsupported JPEG data precision 12" to stderr before GDCM retries
    with its 12-bit decoder; the values are right.
    """
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    bits_stored = int(dataset.BitsStored)
    signed = _integer(dataset, "PixelRepresentation") == 1
    frame_count = _integer(dataset, "NumberOfFrames") or 1
    pixels = np.empty((frame_count, rows, columns), dtype=np.int16 if signed else np.uint16)
    pixel_format = gdcm.PixelFormat(1, 16, bits_stored, bits_stored - 1, int(signed))
    photometric = gdcm.PhotometricInterpretation(
        gdcm.PhotometricInterpretation.GetPIType(str(dataset.PhotometricInterpretation))
    )
    transfer_syntax = gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(str(JPEGExtended12Bit)))
    frames = generate_frames(dataset.PixelData, number_of_frames=frame_count)
    for index, codestream in zip(range(frame_count), frames, strict=True):
        fragment = gdcm.Fragment()
        fragment.SetByteStringValue(codestream)
        fragments = gdcm.SequenceOfFragments.New()
        fragments.AddFragment(fragment)
        element = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
        element.SetValue(fragments.__ref__())
        image = gdcm.Image()
        image.SetNumberOfDimensions(2)
        image.SetDimensions((columns, rows, 1))
        image.SetDataElement(element)
        image.SetPhotometricInterpretation(photometric)
        image.SetTransferSyntax(transfer_syntax)
        image.SetPixelFormat(pixel_format)
        decoded = image.GetBuffer()  # SWIG hands char* over as str; surrogateescape restores the bytes
        if decoded is None:
            raise ValueError(f"GDCM could not decode frame {index + 1}")
        frame = np.frombuffer(decoded.encode("utf-8", "surrogateescape"), dtype=pixels.dtype, count=rows * columns)
        pixels[index] = frame.reshape(rows, columns)
    if signed:
        # Sign-extend from bits_stored whether or not GDCM already did: shifting twice is idempotent.
        shift = 16 - bits_stored
        np.left_shift(pixels, shift, out=pixels)
        np.right_shift(pixels, shift, out=pixels)
    return pixels[0] if frame_count == 1 else pixels


def _decode_failure(error: Exception, transfer_syntax: UID) -> str:
    """A pixel_error naming the exception and what to do about it."""
    syntax = f"{transfer_syntax} ({transfer_syntax.name})" if transfer_syntax.is_valid else repr(str(transfer_syntax))
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError:
        return f"{type(error).__name__}: pydicom has no pixel data decoder for transfer syntax {syntax}"
    if not decoder.is_available:
        return (
            f"{type(error).__name__}: no decoder for transfer syntax {syntax} is installed; reinstall the "
            f"project's dependencies (pydicom's plugins for it: {'; '.join(decoder.missing_dependencies)})"
        )
    reason = "; ".join([str(error), *getattr(error, "__notes__", ())])
    if transfer_syntax == JPEGExtended12Bit and gdcm is None:
        reason += "; 12-bit JPEG Extended also needs python-gdcm"
    return f"{type(error).__name__}: could not decode {transfer_syntax.name} pixel data: {_one_line(reason)}"


# The deviations from the mean are formed this many samples at a time, in one reused float64
# buffer (1 MiB): it stays in the CPU's cache, where a fresh array per block cost page faults
# and a trip to memory (measured: the pass took 2.7 times as long).
_BLOCK_SAMPLES = 1 << 17


def _statistics(pixels: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, population standard deviation, minimum and maximum, in float64.

    The mean sums in float64 without converting the array; the deviations from it, the second
    pass, are formed a block at a time. Their squares are summed by einsum, not np.dot: BLAS
    starts threads that spin on the other cores, which slowed a plain loop over files by 8%.
    """
    mean = float(pixels.mean(dtype=np.float64))
    samples = pixels.reshape(-1)  # a view: pydicom's pixel_array is contiguous
    buffer = np.empty(min(_BLOCK_SAMPLES, samples.size), np.float64)
    squared_deviations = 0.0
    for start in range(0, samples.size, _BLOCK_SAMPLES):
        deviations = buffer[: min(_BLOCK_SAMPLES, samples.size - start)]
        np.subtract(samples[start : start + _BLOCK_SAMPLES], mean, out=deviations, dtype=np.float64)
        squared_deviations += float(np.einsum("i,i->", deviations, deviations))
    standard_deviation = math.sqrt(squared_deviations / pixels.size)
    return mean, standard_deviation, float(pixels.min()), float(pixels.max())


def _text(dataset: Dataset, keyword: str) -> str | None:
    """The element's value as the file has it, padding removed; several values joined by backslashes."""
    try:
        value = dataset.get(keyword)
        if value is None or isinstance(value, bytes | bytearray):
            return None
        if isinstance(value, MultiValue | list | tuple):
            text = "\\".join(str(item) for item in value)
        else:
            text = str(value)
    except Exception:
        return None
    text = text.strip(" \x00")
    return text or None


def _first_value(dataset: Dataset, keyword: str):
    value = dataset.get(keyword)
    if isinstance(value, str | bytes | bytearray) or value is None:
        return value
    try:
        return value[0] if len(value) else None
    except TypeError:
        return value


_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def _integer(dataset: Dataset, keyword: str) -> int | None:
    """The element's first value as an int32, or None when absent or not a whole number."""
    try:
        value = _first_value(dataset, keyword)
        if value is None or isinstance(value, bytes | bytearray) or value == "":
            return None
        number = int(value) if not isinstance(value, float) or value.is_integer() else None
    except Exception:
        return None
    if number is None or not _INT32_MIN <= number <= _INT32_MAX:
        return None
    return number


def _decimal(dataset: Dataset, keyword: str) -> float | None:
    """The element's first value as a float64, or None when absent or not a finite number."""
    try:
        value = _first_value(dataset, keyword)
        if value is None or isinstance(value, bytes | bytearray) or value == "":
            return None
        number = float(value)
    except Exception:
        return None
    return number if math.isfinite(number) else None


def _decimals(dataset: Dataset, keyword: str) -> list[float] | None:
    """Every value as float64, or None when absent or when any value is not a finite number."""
    try:
        value = dataset.get(keyword)
        if value is None or isinstance(value, bytes | bytearray) or value == "":
            return None
        items = [value] if isinstance(value, str) or not hasattr(value, "__len__") else list(value)
        numbers = [float(item) for item in items]
    except Exception:
        return None
    if not numbers or not all(math.isfinite(number) for number in numbers):
        return None
    return numbers


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
    message = _without_values(str(error))
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


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def _without_values(message: str) -> str:
    """pydicom's message with every quoted value replaced, so that no patient data reaches an error row."""
    return _one_line(_QUOTED.sub("'…'", message))


def _one_line(message: str, limit: int = 400) -> str:
    """The message on one line, its lines joined by semicolons (pydicom lists each plugin's failure on its own)."""
    lines = [" ".join(line.split()) for line in message.splitlines()]
    text = ""
    for line in filter(None, lines):
        text += ("" if not text else " " if text.endswith(":") else "; ") + line
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _without_patient(message: str, dataset: Dataset) -> str:
    """The message with the patient's name and ID (and each name component) blanked out.

    Values of one or two characters are left alone: blanking them would garble the numbers.
    """
    name = _text(dataset, "PatientName") or ""
    identifiers = {_text(dataset, "PatientID") or "", name, *re.split(r"[\^=]", name)}
    for identifier in sorted(identifiers, key=len, reverse=True):
        if len(identifier) > 2:
            message = message.replace(identifier, "…")
    return message


def _tag_text(tag: int) -> str:
    return f"{tag >> 16:04X},{tag & 0xFFFF:04X}"
