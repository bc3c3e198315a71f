"""A DICOM image's pixel data decoded, and the statistics of its stored values."""

from __future__ import annotations

import math

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels import get_decoder
from pydicom.uid import UID, JPEGExtended12Bit

from medical_assets.dicom.error_text import one_line
from medical_assets.dicom.values import integer

try:
    import gdcm
except ImportError:  # the 12-bit JPEG fallback is then unavailable and says so in pixel_error
    gdcm = None

PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})  # float, double float, integer


def pixel_statistics(
    dataset: Dataset, transfer_syntax: UID | None, pixel_problem: str | None
) -> tuple[tuple[float | None, ...], str | None, np.ndarray | None]:
    """(mean, std, min, max) of the stored pixel values, None and the pixels; or four Nones, the reason and None."""
    nothing = (None, None, None, None)
    if pixel_problem:
        return nothing, pixel_problem, None
    frames = dataset.get("NumberOfFrames")
    if frames is not None and integer(dataset, "NumberOfFrames") is None:
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
    # pydicom's own decoders (RLE) are pure Python, much slower than pylibjpeg-rle's and lossless
    # alike, so they are the last resort.
    return tuple(sorted(plugins, key=lambda plugin: plugin == "pydicom"))


def _is_12_bit_jpeg_extended(dataset: Dataset, transfer_syntax: UID) -> bool:
    return (
        transfer_syntax == JPEGExtended12Bit
        and gdcm is not None
        and integer(dataset, "SamplesPerPixel") == 1
        and (integer(dataset, "BitsStored") or 0) > 8
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
    signed = integer(dataset, "PixelRepresentation") == 1
    frame_count = integer(dataset, "NumberOfFrames") or 1
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
    return f"{type(error).__name__}: could not decode {transfer_syntax.name} pixel data: {one_line(reason)}"


# The deviations from the mean are formed this many samples at a time, in one reused float64
# buffer (1 MiB): it stays in the CPU's cache, where a fresh array per block costs page faults
# and a trip to memory.
_BLOCK_SAMPLES = 1 << 17


def _statistics(pixels: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, population standard deviation, minimum and maximum, in float64.

    The mean sums in float64 without converting the array; the deviations from it, the second
    pass, are formed a block at a time. Their squares are summed by einsum, not np.dot: BLAS
    starts threads that spin on the other cores, which slows a plain loop over files.
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
