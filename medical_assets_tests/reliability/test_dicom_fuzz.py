"""Damaged copies of pydicom's own test files through the DICOM reader of the parse job.

Every input, whatever was done to it, must come out of `jobs._read_dicom_packed` (what each read
task calls for one file) without an exception, as exactly one row of dicom_images or of
dicom_errors; an error row says why in a non-empty text that quotes no patient value, and neither
does an image row's pixel_error. The mutations are seeded, so a failure names a case that can be
replayed: truncations, flipped bytes in the header and in the pixel data, spliced random bytes,
a corrupted transfer syntax UID, an empty file, a bare preamble (963 cases from 15 files).

Some damaged files make a decoder abort the whole process, so the cases run in child processes
that are restarted after a crash. The cases that once crashed the reader or its process are
listed in KNOWN_PANICS and KNOWN_ABORTS and kept as regression tests of their own.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import select
import signal
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.data.data_manager import DATA_ROOT

from medical_assets.dicom.tables import TABLES as DICOM_TABLES
from medical_assets.engine import jobs, multitable

SEED = 20240101
# Small files that between them cover the encodings the reader meets: explicit and implicit VR,
# big endian, deflated, no preamble or no file meta, RLE, JPEG baseline, 12-bit JPEG (GDCM
# fallback), JPEG-LS, JPEG 2000, several frames, colour, no pixel data at all.
SOURCES = (
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "JPEG2000.dcm",
    "JPGExtended.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_rle_32bit_2frame.dcm",
    "image_dfl.dcm",
    "rtdose_1frame.dcm",
    "rtplan.dcm",
    "rtstruct.dcm",
    "ExplVR_BigEndNoMeta.dcm",
)
PIXEL_DATA_TAGS = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")  # (7FE0,0010) little and big endian
TRANSFER_SYNTAX_TAG = b"\x02\x00\x10\x00"  # (0002,0010), file meta is always little endian


@dataclass(frozen=True)
class Case:
    name: str  # replayable: source, mutation and its parameters
    data: bytes
    source: str | None  # the pydicom test file it came from


def _source_bytes(name: str) -> bytes:
    return Path(DATA_ROOT, "test_files", name).read_bytes()


def _pixel_data_offset(data: bytes) -> int | None:
    offsets = [data.rfind(tag) for tag in PIXEL_DATA_TAGS]
    offsets = [offset for offset in offsets if offset > 0]
    return min(offsets) if offsets else None


def _flip(data: bytes, rng: random.Random, low: int, high: int, count: int) -> tuple[bytes, list[int]]:
    mutated = bytearray(data)
    positions = sorted(rng.randrange(low, high) for _ in range(count))
    for position in positions:
        mutated[position] ^= rng.randrange(1, 256)
    return bytes(mutated), positions


def truncations(rng: random.Random) -> Iterator[Case]:
    """Cut at the interesting places (inside the preamble, at the marker, in the file meta, at the
    pixel data element) and at seeded random offsets."""
    for source in SOURCES:
        data = _source_bytes(source)
        cuts = {1, 7, 64, 128, 130, 132, 140, len(data) - 1, len(data) // 2}
        pixel_data = _pixel_data_offset(data)
        if pixel_data:
            cuts |= {pixel_data, pixel_data + 4, pixel_data + 8, pixel_data + 11}
        cuts |= {rng.randrange(1, len(data)) for _ in range(8)}
        for cut in sorted(cut for cut in cuts if 0 < cut < len(data)):
            yield Case(f"{source} cut at {cut}", data[:cut], source)


def header_flips(rng: random.Random) -> Iterator[Case]:
    for source in SOURCES:
        data = _source_bytes(source)
        end = _pixel_data_offset(data) or len(data)
        start = 128 if data[128:132] == b"DICM" else 0
        for count in (1, 1, 1, 2, 2, 3, 4, 6, 8, 12, 16, 32):
            mutated, positions = _flip(data, rng, start, end, count)
            yield Case(f"{source} header bytes flipped at {positions}", mutated, source)


def pixel_flips(rng: random.Random) -> Iterator[Case]:
    for source in SOURCES:
        data = _source_bytes(source)
        start = _pixel_data_offset(data)
        if not start:
            continue
        for count in (1, 2, 4, 8, 32, 64, 256, 1024):
            mutated, positions = _flip(data, rng, start, len(data), count)
            yield Case(f"{source} pixel data bytes flipped at {positions[:8]}… ({count})", mutated, source)


def splices(rng: random.Random) -> Iterator[Case]:
    """Random bytes inserted, a stretch deleted, a stretch replaced, a stretch duplicated."""
    for source in SOURCES:
        data = _source_bytes(source)
        for kind in ("insert", "delete", "replace", "duplicate") * 4:
            position = rng.randrange(0, len(data))
            length = rng.choice((1, 2, 3, 4, 8, 13, 64, 500))
            noise = rng.randbytes(length)
            if kind == "insert":
                mutated = data[:position] + noise + data[position:]
            elif kind == "delete":
                mutated = data[:position] + data[position + length :]
            elif kind == "replace":
                mutated = data[:position] + noise + data[position + length :]
            else:
                mutated = data[: position + length] + data[position : position + length] + data[position + length :]
            yield Case(f"{source} {kind} {length} bytes at {position}", mutated, source)


def transfer_syntax_corruptions(rng: random.Random) -> Iterator[Case]:
    """The file meta's Transfer Syntax UID replaced, at the same length (so the file stays well
    formed): random digits and dots, random bytes, letters, a known UID of another encoding, spaces."""
    for source in SOURCES:
        data = _source_bytes(source)
        at = data.find(TRANSFER_SYNTAX_TAG)
        if at < 0 or data[at + 4 : at + 6] != b"UI":
            continue
        length = int.from_bytes(data[at + 6 : at + 8], "little")
        start, end = at + 8, at + 8 + length
        known = [b"1.2.840.10008.1.2", b"1.2.840.10008.1.2.2", b"1.2.840.10008.1.2.5", b"1.2.840.10008.1.2.4.50",
                 b"1.2.840.10008.1.2.1.99", b"1.2.840.10008.1.2.4.100"]
        variants = {
            "random digits": bytes(rng.choice(b"0123456789.") for _ in range(length)),
            "random bytes": rng.randbytes(length),
            "letters": bytes(rng.choice(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(length)),
            "spaces": b" " * length,
            "nulls": b"\x00" * length,
            "another syntax": rng.choice(known).ljust(length, b"\x00")[:length],
        }
        for label, value in variants.items():
            name = f"{source} transfer syntax UID replaced by {label} {value!r}"
            yield Case(name, data[:start] + value + data[end:], source)


def degenerate_files(rng: random.Random) -> Iterator[Case]:
    yield Case("zero-length file", b"", None)
    yield Case("128 zero bytes (a preamble alone)", bytes(128), None)
    yield Case("a preamble and the DICM marker", bytes(128) + b"DICM", None)
    yield Case("a random preamble and the DICM marker", rng.randbytes(128) + b"DICM", None)
    for source in SOURCES:
        data = _source_bytes(source)
        for length in (128, 132, 136):
            yield Case(f"{source} first {length} bytes", data[:length], source)
        yield Case(f"{source} twice in a row", data + data, source)
        yield Case(f"{source} with 1 KB of noise appended", data + rng.randbytes(1024), source)


MUTATIONS = {
    "truncation": truncations,
    "header flips": header_flips,
    "pixel data flips": pixel_flips,
    "splices": splices,
    "transfer syntax": transfer_syntax_corruptions,
    "degenerate": degenerate_files,
}


def cases(kind: str) -> list[Case]:
    return list(MUTATIONS[kind](random.Random(f"{SEED}:{kind}")))


def _patient_values(data: bytes) -> set[str]:
    """PatientName (whole and each component) and PatientID as pydicom reads them, three characters or more."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(BytesIO(data), force=True, stop_before_pixels=True)
            name = str(dataset.get("PatientName") or "")
            identifier = str(dataset.get("PatientID") or "")
    except Exception:
        return set()
    values = {name, identifier, *re.split(r"[\^=]", name)}
    return {value.strip(" \x00") for value in values if len(value.strip(" \x00")) >= 3}


_PATIENT_VALUES: dict[str, set[str]] = {}


def _quotes(text: str, value: str) -> bool:
    """Whether `value` stands in `text` as a word of its own ("pre" of a name is not in "preamble")."""
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])", text) is not None


def _original_patient_values(source: str | None) -> set[str]:
    if source is None:
        return set()
    if source not in _PATIENT_VALUES:
        _PATIENT_VALUES[source] = _patient_values(_source_bytes(source))
    return _PATIENT_VALUES[source]


def check(case: Case) -> str | None:
    """What is wrong with the reader's answer for `case`, or None."""
    path = f"fuzz/{case.source or 'none'}"
    try:
        packed = jobs._read_dicom_packed([(case.data, path)], with_thumbnail=True)
    except BaseException as error:  # pyo3's PanicException is a BaseException
        return f"raised {type(error).__name__}: {error}"
    if packed.num_rows != 1 or packed["source_file"].to_pylist() != [path]:
        return f"packed {packed.num_rows} rows"
    tables = {name: multitable.unpack(packed, name, schema) for name, schema in DICOM_TABLES.items()}
    images, errors, thumbnails = tables["dicom_images"], tables["dicom_errors"], tables["dicom_thumbnails"]
    if images.num_rows + errors.num_rows != 1:
        return f"{images.num_rows} image rows and {errors.num_rows} error rows"
    if thumbnails.num_rows > images.num_rows:
        return "a thumbnail without an image row"
    table = images if images.num_rows else errors
    if table["source_file"].to_pylist() != [path]:
        return f"source_file {table['source_file'].to_pylist()}"
    if errors.num_rows:
        text = errors["error"][0].as_py()
        if not text or not text.strip():
            return "an error row with an empty reason"
    else:
        text = images["pixel_error"][0].as_py()
    if text:
        patient = _original_patient_values(case.source) | _patient_values(case.data)
        quoted = sorted(value for value in patient if _quotes(text, value))
        if quoted:
            return f"the reason quotes patient values {quoted}: {text!r}"
    return None


# --- running cases where a crash cannot take pytest down --------------------------------------------
# A decoder that aborts (a C++ exception through SWIG) ends the process it runs in, so the cases run
# in a child process; when it dies, the case it was on is the culprit and a new child takes the rest.
# Keys are (mutation kind, index): the child rebuilds the same seeded cases.

CASE_TIMEOUT_S = 60


def child_main(keys_json: str, report_fd: int) -> None:
    """In the child: check each case, writing `start` and `done` lines (JSON) to `report_fd`."""
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    built: dict[str, list[Case]] = {}
    with os.fdopen(report_fd, "w", buffering=1) as report:
        for kind, index in json.loads(keys_json):
            case = built.setdefault(kind, cases(kind))[index]
            report.write(json.dumps(["start", [kind, index]]) + "\n")
            report.flush()
            report.write(json.dumps(["done", [kind, index], check(case)]) + "\n")


def run_cases(keys: list[tuple[str, int]]) -> dict[tuple[str, int], str | None]:
    """The problem `check` finds with each case (kind, index), or how the process running it died.

    The child is a plain `python -c` started here and waited for (or killed) by its PID; its own
    output goes to a temporary file, its reports come through a pipe."""
    results: dict[tuple[str, int], str | None] = {}
    pending = list(keys)
    while pending:
        read_fd, write_fd = os.pipe()
        code = (
            "import sys; from medical_assets_tests.reliability.test_dicom_fuzz import child_main; "
            "child_main(sys.argv[1], int(sys.argv[2]))"
        )
        with tempfile.TemporaryFile() as output:
            child = subprocess.Popen(
                [sys.executable, "-c", code, json.dumps(pending), str(write_fd)],
                pass_fds=(write_fd,), stdin=subprocess.DEVNULL, stdout=output, stderr=output,
            )
            os.close(write_fd)
            current, death = None, None
            try:
                with os.fdopen(read_fd, "r") as reports:
                    while True:
                        ready, _, _ = select.select([reports], [], [], CASE_TIMEOUT_S)
                        if not ready:
                            death = f"no answer within {CASE_TIMEOUT_S} s"
                            break
                        line = reports.readline()
                        if not line:
                            break
                        message = json.loads(line)
                        if message[0] == "start":
                            current = tuple(message[1])
                        else:
                            results[tuple(message[1])] = message[2]
                            current = None
            finally:
                if death is not None:
                    child.kill()
                try:
                    child.wait(30)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
            if current is not None:
                exit_code = child.returncode
                how = f"signal {signal.Signals(-exit_code).name}" if exit_code < 0 else f"exit code {exit_code}"
                results[current] = f"the process died ({death or how}) reading it"
            remaining = [key for key in pending if key not in results]
            if len(remaining) == len(pending):
                output.seek(0)
                tail = output.read()[-2000:].decode(errors="replace")
                raise RuntimeError(f"the case runner made no progress (exit code {child.returncode}):\n{tail}")
            pending = remaining
    return results


@pytest.fixture(autouse=True, scope="module")
def quiet_pydicom():
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


def test_the_sources_are_in_the_pydicom_wheel():
    for name in SOURCES:
        assert Path(DATA_ROOT, "test_files", name).is_file(), name


def test_a_few_hundred_cases():
    assert sum(len(cases(kind)) for kind in MUTATIONS) >= 300


@pytest.fixture(scope="module")
def sweep() -> dict[tuple[str, int], str | None]:
    """Every case of every mutation, run once, in two child processes side by side (two cores)."""
    keys = [(kind, index) for kind in MUTATIONS for index in range(len(cases(kind)))]
    with ThreadPoolExecutor(2) as pool:
        halves = list(pool.map(run_cases, [keys[0::2], keys[1::2]]))
    return {**halves[0], **halves[1]}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", list(MUTATIONS))
def test_every_damaged_file_is_one_row_and_its_reason_names_no_patient(kind, sweep):
    names = [case.name for case in cases(kind)]
    assert all((kind, index) in sweep for index in range(len(names)))
    failures = [
        f"{names[index]}: {problem}"
        for (case_kind, index), problem in sorted(sweep.items())
        if case_kind == kind and problem and names[index] not in KNOWN_PANICS | KNOWN_ABORTS
    ]
    assert failures == [], "\n".join(failures)


# --- fixed product bugs, kept as regression cases ----------------------------------------------
# Cases of the sweep above that once failed, checked by the tests below.

# pylibjpeg-rle's Rust decoder panics on a damaged RLE segment; pyo3 raises PanicException, which
# derives from BaseException, so pixel_statistics' `except Exception` (medical_assets/dicom/pixels.py)
# lets it out of read_dicom_file: in a Ray job the read task fails with an
# application error, which Ray Data does not retry, and the whole DICOM parse fails for one file.
KNOWN_PANICS = {
    "MR_small_RLE.dcm pixel data bytes flipped at [1886, 1941, 1949, 2155, 2181, 2353, 2410, 2655]… (64)",
    "SC_rgb_rle_32bit_2frame.dcm pixel data bytes flipped at [4895, 5754]… (2)",
    "MR_small_RLE.dcm delete 4 bytes at 2830",
    "MR_small_RLE.dcm insert 3 bytes at 4061",
    "MR_small_RLE.dcm replace 13 bytes at 3611",
    "MR_small_RLE.dcm delete 8 bytes at 7008",
    "MR_small_RLE.dcm duplicate 3 bytes at 4255",
    "MR_small_RLE.dcm delete 64 bytes at 5706",
}
# pydicom's GDCM plugin (tried first for JPEG baseline) makes GDCM throw a C++ gdcm::Exception
# ("gdcmJPEGBITSCodec.hxx:782: An invalid logic behavior occurred") that nothing catches: the
# process aborts (SIGABRT) inside dataset.pixel_array (_pixel_array, medical_assets/dicom/pixels.py).
# A Ray worker dies the same way, and Ray Data retries its task without end (see test_ray_faults).
KNOWN_ABORTS = {
    "SC_rgb_jpeg_dcmtk.dcm insert 2 bytes at 1753",
    "SC_rgb_jpeg_dcmtk.dcm duplicate 1 bytes at 1731",
}


def _known_keys(names: set[str]) -> list[tuple[str, int]]:
    keys = [
        (kind, index) for kind in MUTATIONS for index, case in enumerate(cases(kind)) if case.name in names
    ]
    assert len(keys) == len(names), "a known case is no longer generated: update the list"
    return keys


def test_the_known_failures_are_the_only_ones(sweep):
    """No case outside the regression lists fails."""
    names = {kind: [case.name for case in cases(kind)] for kind in MUTATIONS}
    failing = {names[kind][index] for (kind, index), problem in sweep.items() if problem}
    assert failing - (KNOWN_PANICS | KNOWN_ABORTS) == set()


def test_a_damaged_rle_frame_is_a_pixel_error_not_an_escaping_panic(sweep):
    keys = _known_keys(KNOWN_PANICS)
    problems = {cases(kind)[index].name: sweep[(kind, index)] for kind, index in keys}
    assert {name: problem for name, problem in problems.items() if problem} == {}


def test_a_damaged_jpeg_frame_does_not_abort_the_process(sweep):
    keys = _known_keys(KNOWN_ABORTS)
    problems = {cases(kind)[index].name: sweep[(kind, index)] for kind, index in keys}
    assert {name: problem for name, problem in problems.items() if problem} == {}
