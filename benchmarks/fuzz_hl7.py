"""Fuzz the HL7 reader for a long run: bytes into `parse_hl7_file`, which must never raise and must
account for every message it sees.

    cd /work/main && .venv/bin/python -m benchmarks.fuzz_hl7 --seconds 180
    # coverage-guided, with atheris installed (in its own venv: it is not a project dependency)
    /tmp/atheris-venv/bin/python -m benchmarks.fuzz_hl7 --seconds 180 --engine atheris

With atheris importable (and `--engine auto`, the default) libFuzzer drives the harness, with the
reader's modules instrumented for coverage; otherwise a seeded random mutation loop runs the same
harness, keeping an input in its corpus when it yields outcomes not seen before (a crude stand-in
for coverage). Either way a failing input is saved (with its traceback) under --crash-dir and the
run goes on; the last line printed is a JSON summary: executions, executions per second, crashes,
unique crashes, slow inputs.

The harness checks, for every input:
- no exception escapes `parse_hl7_file`;
- the five tables come back with exactly the schemas of `medical_assets.hl7.tables`;
- a non-empty input yields at least one row in hl7_messages or hl7_errors (every message is
  accounted for); when the file as a whole is readable, the message indices of hl7_messages and of
  hl7_errors together are exactly 0..n-1 for the n messages the splitter finds, and the other
  tables only hold rows of read messages; a file that is not HL7 at all is one error row;
- every error row has a reason.
`--differential` also compares the result with `reader.parse_general` (the fast path must read a
file exactly as the general path does), as the suite's hypothesis test does on fewer inputs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field

SOURCE = "fuzz.hl7"
MAX_INPUT_BYTES = 64 << 10


class HarnessFailure(AssertionError):
    """The reader answered, but not as it promises."""


def harness(data: bytes, differential: bool = False) -> tuple:
    """Run the reader on `data` and check its promises; returns a signature of the outcome."""
    from medical_assets.hl7 import er7, parse_hl7_file, reader, tables

    parsed = parse_hl7_file(data, SOURCE)
    result = parsed.tables()
    if list(result) != list(tables.TABLES):
        raise HarnessFailure(f"tables {list(result)}")
    for name, table in result.items():
        if not table.schema.equals(tables.TABLES[name], check_metadata=True):
            raise HarnessFailure(f"{name} has schema {table.schema}")
        if table.num_rows and set(table.column("source_file").to_pylist()) != {SOURCE}:
            raise HarnessFailure(f"{name} has rows of another source_file")
    read = parsed.messages.column("message_index").to_pylist()
    error_indices = parsed.errors.column("message_index").to_pylist()
    if data and not read and not error_indices:
        raise HarnessFailure("a non-empty input gave neither a message nor an error row")
    if not all(text and text.strip() for text in parsed.errors.column("error").to_pylist()):
        raise HarnessFailure("an error row without a reason")
    if reader.file_problem(data):
        if read or error_indices != [None]:
            raise HarnessFailure(f"an unreadable file gave messages {read} and errors {error_indices}")
    else:
        seen = len(er7.split_messages(data.rstrip(b"\x00")).messages)
        failed = [index for index in error_indices if index is not None]
        if sorted(read + failed) != list(range(seen)):
            raise HarnessFailure(f"{seen} messages split, read {sorted(read)}, failed {sorted(failed)}")
        if error_indices.count(None) > 1:
            raise HarnessFailure("more than one file-level error row")
        read_set = set(read)
        for name in ("hl7_lab_results", "hl7_pharmacy_orders", "hl7_encounters"):
            if not set(result[name].column("message_index").to_pylist()) <= read_set:
                raise HarnessFailure(f"{name} holds rows of a message that was not read")
    if differential:
        general = reader.parse_general(data, SOURCE).tables()
        for name, table in result.items():
            if not table.equals(general[name]):
                raise HarnessFailure(f"{name} differs from parse_general's")
    errors = tuple(sorted({re.sub(r"\d+", "#", text)[:80] for text in parsed.errors.column("error").to_pylist()}))
    shape = tuple(min(table.num_rows, 3) for table in result.values())
    return shape, errors


# --- seeds ----------------------------------------------------------------------------------------

FRAMINGS = [("", "\r", ""), ("", "\n", ""), ("", "\r\n", ""), ("\x0b", "\r", "\x1c\r")]
TOKENS = [
    b"|", b"^", b"~", b"\\", b"&", b"#", b"\r", b"\n", b"\r\n", b"\x00", b"\x0b", b"\x1c", b"\rMSH", b"MSH|",
    b"\rMSH|^~\\&|", b"\xef\xbb\xbf", b"\xff", b"\xc3", b"\xc3\xa9", b"\xe2\x82", b"\\X41\\", b"\\XC3A9\\", b"\\T\\",
    b"\\F\\", b"\\S\\", b"\\R\\", b"\\E\\", b"\\H\\", b"\\N\\", b"\\.br\\", b"\\Z12\\", b"\\", b"\rFHS|", b"\rBHS|",
    b"\rBTS|1", b"\rFTS|1", b"\rOBX|1|NM|1^A^LN||", b"\rRXE|", b"\rPV1|1|I|", b"\rPID|1||", b"\rTQ1|", b"\rORC|NW|",
    b"\rEVN|A01|", b" ", b"99999999999999999999", b"-1e309", b"20240229246060.9999+2500", b"NaN", b"\t",
]
CHARSETS = [b"UNICODE UTF-8", b"8859/1", b"8859/15", b"ISO IR192", b"ISO IR100", b"GB 18030", b"KS X 1001",
            b"ISO IR87", b"UNICODE", b"BIG-5", b"ASCII", b"BOGUS", b"", b"\xff\xfe"]


def seed_inputs(seed: int) -> list[bytes]:
    """Synthetic messages in every framing, the test suite's hand-written feeds, and oddities."""
    from medical_assets.synthetic.hl7 import HL7CorpusSettings, render_message

    settings = HL7CorpusSettings(total_messages=16, messages_per_file=16, seed=seed)
    messages = [render_message(settings, number) for number in range(16)]
    seeds = []
    for index, (start, separator, end) in enumerate(FRAMINGS):
        for count in (1, 2, 4):
            chosen = messages[index * 4 : index * 4 + count]
            seeds.append("".join(start + m.replace("\r", separator) + end for m in chosen).encode())
    try:
        from medical_assets_tests import hl7_samples

        seeds += [hl7_samples.clean_feed(), hl7_samples.feed_with_broken_message(), hl7_samples.MESSY_DISCHARGE]
    except ImportError:
        pass
    seeds += [
        b"",
        b"MSH|^~\\&|\r",
        b"MSH|\r",
        b"MSH",
        b"FHS|^~\\&|\rBHS|^~\\&|\r" + messages[0].encode() + b"BTS|1\rFTS|1\r",
        b"\xef\xbb\xbf" + messages[1].encode(),
        messages[2].replace("|2.5", "|2.5|||||||UNICODE UTF-8").encode(),
        b"junk before\r" + messages[3].encode(),
        messages[0].encode() + b"\x00" * 16,
    ]
    return [s[:MAX_INPUT_BYTES] for s in seeds]


# --- the random mutation engine -------------------------------------------------------------------


def mutate(data: bytes, rng: random.Random, corpus: list[bytes]) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3, 4, 8))):
        choice = rng.randrange(13)
        position = rng.randrange(len(buffer) + 1)
        if choice == 0 and buffer:  # one byte changed
            buffer[min(position, len(buffer) - 1)] = rng.randrange(256)
        elif choice == 1:  # a meaningful token inserted
            buffer[position:position] = rng.choice(TOKENS)
        elif choice == 2:  # a stretch deleted
            del buffer[position : position + rng.choice((1, 2, 4, 16, 64, 512))]
        elif choice == 3 and buffer:  # a stretch duplicated
            length = rng.choice((1, 4, 32, 200, 2000))
            buffer[position:position] = buffer[position : position + length]
        elif choice == 4:  # crossover with another corpus entry
            other = rng.choice(corpus)
            cut = rng.randrange(len(other) + 1)
            buffer = buffer[:position] + bytearray(other[cut : cut + rng.choice((16, 256, 4096))]) + buffer[position:]
        elif choice == 5:  # cut short
            del buffer[position:]
        elif choice == 6:  # an encoding character of MSH-2 replaced
            start = buffer.find(b"MSH")
            if start >= 0 and len(buffer) > start + 8:
                buffer[start + rng.randrange(3, 8)] = rng.choice(b"|^~\\&#$@!*%\r\n \x00\xc3")
        elif choice == 7:  # every segment ending rewritten
            old, new = rng.sample([b"\r", b"\n", b"\r\n", b"\x0b", b"\x1c"], 2)
            buffer = bytearray(bytes(buffer).replace(old, new))
        elif choice == 8:  # MLLP framing around everything
            buffer = bytearray(b"\x0b" + bytes(buffer) + b"\x1c\r")
        elif choice == 9:  # MSH-18 (character set) declared
            end = buffer.find(b"\r", buffer.find(b"MSH"))
            if end > 0:
                buffer[end:end] = b"|" * rng.randrange(1, 8) + rng.choice(CHARSETS)
        elif choice == 10:  # bytes that are not UTF-8, or half of a multi-byte character
            lead_bytes = (0x80, 0xA9, 0xC3, 0xE2, 0xF0, 0xFE, 0xFF)
            buffer[position:position] = bytes(rng.choice(lead_bytes) for _ in range(rng.randrange(1, 4)))
        elif choice == 11 and buffer:  # a segment repeated many times
            line_start = buffer.rfind(b"\r", 0, position) + 1
            line_end = buffer.find(b"\r", position)
            line = bytes(buffer[line_start : line_end if line_end > 0 else len(buffer)]) + b"\r"
            buffer[line_start:line_start] = line * rng.choice((2, 10, 100))
        elif choice == 12:  # a field separator moved: fields shift
            index = buffer.find(b"|", position)
            if index >= 0:
                del buffer[index]
                buffer.insert(rng.randrange(len(buffer) + 1), ord("|"))
    return bytes(buffer[:MAX_INPUT_BYTES])


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    executions: int = 0
    crashes: int = 0
    unique_crashes: dict = field(default_factory=dict)  # key -> saved file
    slow_inputs: int = 0
    slowest_ms: float = 0.0
    signatures: set = field(default_factory=set)
    corpus: int = 0


def record_crash(stats: Stats, data: bytes, error: BaseException, crash_dir: str) -> None:
    stats.crashes += 1
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "medical_assets" in f.filename]
    where = f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else "?"
    key = f"{type(error).__name__} at {where}"
    if isinstance(error, HarnessFailure):
        key += f": {str(error)[:80]}"
    if key in stats.unique_crashes:
        return
    os.makedirs(crash_dir, exist_ok=True)
    digest = hashlib.sha1(data).hexdigest()[:16]
    path = os.path.join(crash_dir, f"crash-{digest}.hl7")
    with open(path, "wb") as out:
        out.write(data)
    with open(path + ".txt", "w") as out:
        out.write(key + "\n\n" + "".join(traceback.format_exception(error)))
    stats.unique_crashes[key] = path
    print(f"CRASH {key} -> {path}", flush=True)


def run_once(data: bytes, stats: Stats, args) -> tuple | None:
    started = time.perf_counter()
    try:
        signature = harness(data, args.differential)
    except Exception as error:  # noqa: BLE001 - every failure is a finding
        record_crash(stats, data, error, args.crash_dir)
        signature = None
    except BaseException as error:  # e.g. pyo3's PanicException; KeyboardInterrupt ends the run
        if isinstance(error, KeyboardInterrupt):
            raise
        record_crash(stats, data, error, args.crash_dir)
        signature = None
    elapsed_ms = (time.perf_counter() - started) * 1000
    stats.executions += 1
    if elapsed_ms > args.slow_ms and signature is not None:
        # Time it again: a first call pays for lazy imports and caches, a busy machine for its neighbours.
        started = time.perf_counter()
        harness(data, args.differential)
        elapsed_ms = min(elapsed_ms, (time.perf_counter() - started) * 1000)
    stats.slowest_ms = max(stats.slowest_ms, elapsed_ms)
    if elapsed_ms > args.slow_ms:
        stats.slow_inputs += 1
        os.makedirs(args.crash_dir, exist_ok=True)
        with open(os.path.join(args.crash_dir, f"slow-{hashlib.sha1(data).hexdigest()[:16]}.hl7"), "wb") as out:
            out.write(data)
    return signature


def run_random(args) -> Stats:
    rng = random.Random(args.seed)
    corpus = seed_inputs(args.seed)
    stats = Stats()
    for data in corpus:
        signature = run_once(data, stats, args)
        stats.signatures.add(signature)
    deadline = stats.started + args.seconds
    next_report = time.monotonic() + 30
    while time.monotonic() < deadline and (not args.runs or stats.executions < args.runs):
        data = mutate(rng.choice(corpus), rng, corpus)
        signature = run_once(data, stats, args)
        if signature is not None and signature not in stats.signatures:
            stats.signatures.add(signature)
            if len(corpus) < 5000:
                corpus.append(data)
        if time.monotonic() >= next_report:
            next_report += 30
            elapsed = time.monotonic() - stats.started
            print(f"{elapsed:6.0f} s  {stats.executions:,} execs  {stats.executions / elapsed:,.0f}/s  "
                  f"corpus {len(corpus)}  crashes {stats.crashes}", flush=True)
    stats.corpus = len(corpus)
    return stats


def run_atheris(args) -> None:
    import atheris

    with atheris.instrument_imports(include=["medical_assets.hl7"]):
        import medical_assets.hl7.er7  # noqa: F401
        import medical_assets.hl7.fastpath  # noqa: F401
        import medical_assets.hl7.reader  # noqa: F401
    stats = Stats()
    # libFuzzer's working corpus: the seeds, then every input that reached new code.
    seeds_dir = tempfile.mkdtemp(prefix="fuzz-hl7-seeds-")
    for index, data in enumerate(seed_inputs(args.seed)):
        with open(os.path.join(seeds_dir, f"seed-{index:03d}"), "wb") as out:
            out.write(data)

    deadline = stats.started + args.seconds

    def test_one_input(data: bytes) -> None:
        run_once(data, stats, args)
        if time.monotonic() >= deadline or (args.runs and stats.executions >= args.runs):
            # libFuzzer ends the process with C's exit(), which skips Python's atexit: end it here.
            stats.corpus = len(os.listdir(seeds_dir))
            print_summary(stats, "atheris", args)
            shutil.rmtree(seeds_dir, ignore_errors=True)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1 if stats.crashes else 0)

    libfuzzer_args = [
        sys.argv[0], seeds_dir, f"-max_total_time={int(args.seconds) + 60}", f"-seed={args.seed}",
        f"-max_len={MAX_INPUT_BYTES}", "-timeout=30",
    ]
    atheris.Setup(libfuzzer_args + args.libfuzzer, test_one_input)
    atheris.Fuzz()


def print_summary(stats: Stats, engine: str, args) -> None:
    elapsed = time.monotonic() - stats.started
    summary = {
        "engine": engine,
        "seconds": round(elapsed, 1),
        "executions": stats.executions,
        "executions_per_s": round(stats.executions / max(elapsed, 1e-9), 1),
        "crashes": stats.crashes,
        "unique_crashes": sorted(stats.unique_crashes),
        "slow_inputs": stats.slow_inputs,
        "slowest_ms": round(stats.slowest_ms, 1),
        "corpus": stats.corpus,
        "distinct_outcomes": len(stats.signatures) if engine == "random" else None,
        "differential": args.differential,
        "seed": args.seed,
    }
    print(json.dumps(summary), flush=True)


def atheris_available() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--runs", type=int, default=0, help="stop after this many executions (0: no limit)")
    parser.add_argument("--seed", type=int, default=20240101)
    parser.add_argument("--engine", choices=("auto", "atheris", "random"), default="auto")
    parser.add_argument("--differential", action="store_true", help="also compare with reader.parse_general")
    parser.add_argument("--slow-ms", type=float, default=1000.0, help="save inputs slower than this")
    parser.add_argument("--crash-dir", default=os.path.join(tempfile.gettempdir(), "fuzz_hl7_findings"))
    parser.add_argument("libfuzzer", nargs="*", help="extra libFuzzer flags after --, atheris only")
    args = parser.parse_args(argv)
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if atheris_available() else "random"
    print(f"fuzzing parse_hl7_file with the {engine} engine for {args.seconds:.0f} s; findings go to {args.crash_dir}",
          flush=True)
    if engine == "atheris":
        run_atheris(args)  # does not return
        return 0
    stats = run_random(args)
    print_summary(stats, "random", args)
    return 1 if stats.crashes else 0


if __name__ == "__main__":
    sys.exit(main())
