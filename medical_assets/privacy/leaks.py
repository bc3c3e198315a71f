"""The leak check's engine: every identifier of the PHI tables, looked for in every output file.

`collect_identifiers` gathers the values (and the forms real outputs could give them) from the
PHI zone; `LeakScanner` finds all of them in each text, case-insensitively, only where a match is a
whole word, and runs every published text through the pattern detectors
(`detectors`), which find phones, emails, dates... of anyone, parsed or not. A `Finding` says
where and what kind, never the value: it is shown outside the PHI zone.

Precision: a name, town or word (an identifier without digits) is no leak inside an occurrence of
a published vocabulary value (shared by at least k patients, it cannot single one out: "White" in
"White blood cells", "Springfield" in "Springfield General Hospital"), nor in text we wrote
(schema field names, our metadata). A DICOM date in its year-only form (YYYY0101) is no birth date.

Memory: the scanner keeps no identifier text, only a keyed 128-bit hash of each (two sorted numpy
uint64 arrays and a kind code: 17 bytes an identifier). A text is cut into words (runs of letters
and digits); every run of consecutive words that could be an identifier (as many words, as long,
with as many signs before and after as some identifier has) is hashed and looked up with
`np.searchsorted`. Put once into Ray's object store, the arrays are read zero-copy by every worker
of a node: what the check holds grows with the patients, not with the patients times the workers.
"""

from __future__ import annotations

import html
import json
import posixpath
import re
import secrets
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from io import BytesIO
from itertools import islice

import ahocorasick
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

from medical_assets.privacy.detectors import find_structured_identifiers, structured_identifier_kinds
from medical_assets.storage import Location

DEFAULT_MIN_LENGTH = 4
# A number of four or five digits turns up in any table (counts, years, codes): too common to test.
DEFAULT_MIN_DIGITS = 6
REDACTED = "[redacted]"
# A pattern detector's kind as a finding names it, apart from the kinds of known identifiers.
PATTERN_SUFFIX = " pattern"
# Schema metadata keys our code writes (and pyarrow's own): text we wrote, not data.
# Metadata we write: the compliance stamp, Arrow's own, and each declared column's treatment,
# source field and description (`privacy.declarations`).
OWN_METADATA_PREFIXES = (b"deid.", b"medical_assets.", b"ARROW:", b"description", b"doc", b"treatment", b"source")
# Columns named so hold dates moved by the date-shift profile, by contract: a date there is the
# profile's output, not a leak (the known birth dates are still searched in them).
SHIFTED_DATE_SUFFIX = "_shifted"
MIN_LIBRARY_TEXT = 8  # characters: shorter library texts are not cut out (LeakScanner)
# Columns that hold a date moved by the patient's secret offset under the date-shift profile (and
# are null under Safe Harbor) without the suffix: the de-identified dicom_images' study_date.
SHIFTED_DATE_COLUMNS = frozenset({"study_date"})


@dataclass(frozen=True)
class Finding:
    where: str  # the file, then the column, schema, DICOM element or "raw bytes"
    kind: str  # the identifier's kind, e.g. patient_family_name
    count: int  # occurrences

    def __str__(self) -> str:
        return f"{self.where}: {self.count} x {self.kind}"


class Identifiers(dict[str, str]):
    """Identifier value -> kind, plus how many distinct values of each kind were too short to test."""

    def __init__(self, values: Mapping[str, str] | None = None, skipped: Mapping[str, int] | None = None):
        super().__init__(values or {})
        self.skipped: Counter[str] = Counter(skipped or {})


def collect_identifiers(
    tables: Mapping[str, pa.Table],
    min_length: int = DEFAULT_MIN_LENGTH,
    min_digits: int = DEFAULT_MIN_DIGITS,
) -> Identifiers:
    """The identifiers in the PHI tables (keyed by table name; any may be missing, as may any column).

    A value is kept in every form an output could carry it (dates as YYYYMMDD, YYYY-MM-DD and
    MM/DD/YYYY; phones and SSNs formatted and as digits); forms shorter than `min_length`, or
    made only of digits and shorter than `min_digits`, are dropped, and a value with no form left
    is counted in `skipped` under its kind.
    """
    collector = _Collector(min_length, min_digits)
    for table_name, columns in _IDENTIFIER_COLUMNS.items():
        table = tables.get(table_name)
        if table is None:
            continue
        for column, variants in columns.items():
            values = _distinct_values(table, column)
            if column in _DIGIT_ONLY_NEVER_TESTED:
                values, skipped = _without_digit_only(values)
                if skipped:
                    collector.identifiers.skipped[column] += skipped
            for value in _stripped_sorted(values):
                collector.add(column, variants(value))
        for family, given, kind in _FULL_NAMES.get(table_name, ()):
            for family_name, given_name in _distinct_pairs(table, family, given):
                collector.add(kind, _full_name_variants(family_name, given_name), count_skipped=False)
    return collector.identifiers


# PHI columns that neither leave the PHI zone by a declaration of their name nor are searched for,
# each with the reason. With the declarations and `identifier_columns`, every PHI column is
# classified: a column parsed tomorrow fails a test until someone says which of the three it is.
PHI_COLUMNS_NOT_SEARCHED = {
    "message_datetime": "a date: published as its year; birth dates, the identifying date, are searched",
    "observation_datetime": "a date: published as its year",
    "start_datetime": "a date: published as its year",
    "end_datetime": "a date: published as its year",
    "event_datetime": "a date: published as its year",
    "admit_datetime": "a date: published as its year",
    "discharge_datetime": "a date: published as its year",
    "patient_zip": "published as ZIP3; a 5-digit ZIP is caught by the ZIP detector next to a state or the word ZIP",
    "patient_id_issuer": "an assigning authority: a hospital's name or code, not a person's",
    "institution_name": "a hospital's name, published as vocabulary",
    "source_file": "a file name: published only as a token, and file names are searched by every scan",
    "message_control_id": "searched through hl7_messages, where every message's control id is",
    "room": "a room code (3S-12): short codes would match counts and units by chance; withheld by declaration",
    "bed": "a bed code (A, 2): as the room",
    "patient_age": "an age: published as 090Y at most, and removed for a patient 90+ anywhere",
    "patient_sex": "a code (M, F, O)",
    "study_description": "text: published only as vocabulary",
    "series_description": "text: published only as vocabulary",
    "has_preamble": "a file property",
}


def _is_token_column(field: pa.Field) -> bool:
    """A column of our keyed tokens (declared `tokenise`, or named `*_token`): hex digests we made,
    which no pattern can read as a phone or a date (a digit run inside hex has letters on both
    sides), and which cost most of the pattern scan (a million distinct message tokens). The known
    identifiers are still searched there."""
    declared = (field.metadata or {}).get(b"treatment")
    return declared == b"tokenise" or field.name.endswith("_token")


def _is_our_stamp(data: bytes) -> bool:
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


def identifier_columns(table_name: str) -> list[str]:
    """The columns of a PHI table that `collect_identifiers` reads (none for another table)."""
    columns = dict.fromkeys(_IDENTIFIER_COLUMNS.get(table_name, {}))
    for family, given, _ in _FULL_NAMES.get(table_name, ()):
        columns |= dict.fromkeys([family, given])
    return list(columns)


class LeakScanner:
    """Finds any of the identifiers in texts, tables, DICOM files and folders."""

    def __init__(
        self,
        identifiers: Mapping[str, str],
        library_texts: Iterable[str] = (),
        aggregates: bool = False,
        measurements: Collection[str] = (),
        vocabulary: Collection[str] = (),
        patterns: bool = True,
    ):
        # Third-party code inlined in reports (plotly.js: megabytes of words and numbers) is not
        # data; it is cut out before a report is scanned, so it cannot fake a finding.
        # Cut out whole, longest first, and only texts long enough to be a text: cutting a short
        # one ("5", a version "0.1.0") out of everything would break up other values (a stamp's
        # time, a phone number) and could hide the very identifier the check is for.
        self._library_texts = sorted((text for text in library_texts if len(text) >= MIN_LIBRARY_TEXT), key=len, reverse=True)
        # In aggregate tables (analytics) a number column holds counts and measures: an ID made
        # only of digits cannot be told from a count that equals it, and at a million messages
        # one always does. Row-level tables keep the search, where an ID read as a number leaks.
        self._aggregates = aggregates
        # The same holds for number columns of row-level tables that hold measurements by their
        # contract (file sizes, pixel statistics, lab values): at 5,000,000 messages a 7-digit MRN
        # equalled a DICOM file's size. A number column not named here is still searched for all.
        self._measurements = frozenset(measurements)
        # Whether every published text also goes through the pattern detectors.
        self._patterns = patterns
        self._index = _IdentifierIndex(identifiers)
        self._empty = self._index.empty
        self._vocabulary = _phrase_automaton(vocabulary)

    def scan_text(self, text: str) -> list[str]:
        """The kinds of identifier in the text, known identifiers and patterns, sorted."""
        return sorted(self._count(text) | self._pattern_count(text))

    def scan_table(self, table: pa.Table, where: str) -> list[Finding]:
        """Every cell of every column (nested values too), and the schema: names and metadata."""
        findings = self._findings(f"{where}: schema", self._schema_count(table.schema))
        for index, name in enumerate(table.column_names):
            counts: Counter[str] = Counter()
            numbers = (self._aggregates or name in self._measurements) and _is_number_type(table.schema.field(index).type)
            for chunk in table.column(index).chunks:
                for texts in _cell_texts(chunk):
                    counts.update(self._count_cells(texts, skip_digit_only=numbers))
                # A column named like our stamp (`_compliance.json` beside a CSV export, read as a
                # table) holds our run id and creation time: not data, so no pattern applies.
                if self._patterns and not name.encode().startswith(OWN_METADATA_PREFIXES) and not _is_token_column(
                    table.schema.field(index)
                ):
                    skip = ("date",) if name.endswith(SHIFTED_DATE_SUFFIX) or name in SHIFTED_DATE_COLUMNS else ()
                    for texts in _string_cells(chunk):
                        counts.update(_pattern_kinds(structured_identifier_kinds(texts), skip))
            findings += self._findings(f"{where}: column {name}", counts)
        return findings

    def _schema_count(self, schema: pa.Schema) -> Counter[str]:
        """Field names and our metadata are text we wrote: only identifiers with digits are looked for
        there (a patient called "Test" or "State" is no leak in a description). Any other metadata
        is data: searched in full, patterns too."""
        ours, theirs = _schema_texts(schema)
        counts = self._count("\n".join(ours), skip_words=True)
        counts.update(self._count("\n".join(theirs)))
        counts.update(self._pattern_count("\n".join(theirs)))
        return counts

    def scan_dicom(self, data: bytes, where: str) -> list[Finding]:
        """Every element value, through sequences, private tags and the file meta; then the raw bytes
        as latin-1, for kinds not found in a parsed element (values pydicom could not parse)."""
        dataset = _read_dicom(data)
        findings: list[Finding] = []
        raw = data
        if dataset is not None:
            meta, body = _split_inflated(data, dataset)
            raw = meta + _without_pixel_data(body, dataset)
        year_only: Counter[str] = Counter()
        elements: list[tuple[str, str, str]] = []
        if dataset is not None:
            try:
                for label, text, vr in _element_texts(dataset):
                    if vr in _DATE_VRS and _is_year_only(text, vr):
                        # Safe Harbor's year-only date (a newborn of 1 January has it as birth date too).
                        year_only[text] += 1
                        continue
                    elements.append((label, text, vr))
            except Exception:  # noqa: BLE001, S110 - a damaged item deep in a sequence: the raw bytes cover the rest
                pass
        # All elements in one search: hundreds of short texts, each searched alone, would cost the
        # lookup's fixed price hundreds of times.
        for (label, text, vr), counts in zip(elements, self._count_each([text for _, text, _ in elements])):
            if self._patterns and _has_pattern_text(vr, text):
                counts.update(self._pattern_count(text))
            findings += self._findings(f"{where}: {label}", counts)
        found = {finding.kind for finding in findings}
        raw_text = raw.decode("latin-1")
        for value, times in year_only.items():
            raw_text = raw_text.replace(value, " " * len(value), times)
        raw_counts = Counter({kind: n for kind, n in self._count(raw_text).items() if kind not in found})
        return findings + self._findings(f"{where}: raw bytes", raw_counts)

    def scan_file(self, location_or_path: Location | str, data: bytes) -> list[Finding]:
        """The file's content by its kind, and its name."""
        name = location_or_path.uri if isinstance(location_or_path, Location) else str(location_or_path)
        return self._scan_named(name, posixpath.basename(name), data)

    def scan_tree(self, root: Location) -> list[Finding]:
        """Every file under `root` (hidden and staging files too), each named `<root's name>/<path below root>`."""
        return [finding for path, _ in tree_files(root) for finding in self.scan_tree_file(root, path)]

    def scan_tree_file(self, root: Location, path: str, data: bytes | None = None) -> list[Finding]:
        """One file of `tree_files(root)` (its bytes read here unless given), named as `scan_tree` names it."""
        relative = path[len(root.path) :].lstrip("/")
        if data is None:
            data = Location(root.filesystem, path).read_bytes()
        return self._scan_named(posixpath.join(root.name, relative), relative, data)

    def redact(self, text: str) -> str:
        """The text with every identifier replaced, even inside a longer word: for labels we show."""
        if self._empty or not text:
            return text
        merged: list[list[int]] = []
        for start, stop in sorted(self._index.occurrences(_fold(text))):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], stop)
            else:
                merged.append([start, stop])
        pieces, position = [], 0
        for start, stop in merged:
            pieces += [text[position:start], REDACTED]
            position = stop
        pieces.append(text[position:])
        return "".join(pieces)

    def _scan_named(self, where: str, name: str, data: bytes) -> list[Finding]:
        findings = self._findings(f"{where}: file name", self._count(name))
        suffix = posixpath.splitext(name)[1].lower()
        table = _read_table(data, suffix)
        if table is not None:
            return findings + self.scan_table(table, where)
        if suffix in _DICOM_SUFFIXES or data[128:132] == b"DICM":
            return findings + self.scan_dicom(data, where)
        if suffix == ".png" or data[:8] == _PNG_SIGNATURE:
            text = _png_text(data)
            return findings + self._findings(f"{where}: PNG text", self._count(text) + self._pattern_count(text))
        if _is_our_stamp(data):
            # Our compliance stamp beside a CSV or JSON Lines export: text we wrote, like our metadata.
            return findings + self._findings(f"{where}: stamp", self._count(data.decode("utf-8", errors="replace"), skip_words=True))
        text = data.decode("utf-8", errors="replace")
        for library in self._library_texts:
            text = text.replace(library, "")
        if suffix in _MARKUP_SUFFIXES:
            # Reports escape what they show ("O&#x27;Brien"); look at what a reader would see.
            text = html.unescape(text)
        return findings + self._findings(f"{where}: text", self._count(text) + self._pattern_count(text))

    def _pattern_count(self, text: str) -> Counter[str]:
        """The pattern detectors' kinds in a text, one each (a text is one cell)."""
        if not self._patterns or not text:
            return Counter()
        return Counter({kind + PATTERN_SUFFIX: 1 for kind in find_structured_identifiers(text)})

    def _count(
        self,
        text: str,
        skip_digit_only: bool = False,
        cells: tuple[np.ndarray, np.ndarray] | None = None,
        skip_words: bool = False,
    ) -> Counter[str]:
        """Whole-word matches by kind. With `cells` (each cell's first character in `text`, and how many
        times the cell occurs), a match counts as many times as the cell it is in, and a match lies in
        one cell. A word identifier inside a vocabulary value is not counted, nor any with
        `skip_words` (text we wrote)."""
        found: Counter[str] = Counter()
        if self._empty or not text:
            return found
        cell_starts = None if cells is None else cells[0]
        matches = self._matches(_fold(text), cell_starts, skip_digit_only, skip_words)
        if cells is None:
            found.update(kind for _, kind in matches)
        elif matches:
            occurrences = cells[1]
            starts = np.fromiter((start for start, _ in matches), np.int64, len(matches))
            times = occurrences[np.searchsorted(cell_starts, starts, side="right") - 1]
            for (_, kind), count in zip(matches, times.tolist()):
                found[kind] += count
        return found

    def _count_each(self, texts: list[str]) -> list[Counter[str]]:
        """`_count` of each text, all searched in one pass."""
        counts: list[Counter[str]] = [Counter() for _ in texts]
        if self._empty or not texts:
            return counts
        cell_starts = _cell_starts(np.fromiter(map(len, texts), np.int64, len(texts)))
        matches = self._matches(_fold("\n".join(texts)), cell_starts)
        if matches:
            starts = np.fromiter((start for start, _ in matches), np.int64, len(matches))
            for (_, kind), cell in zip(matches, (np.searchsorted(cell_starts, starts, side="right") - 1).tolist()):
                counts[cell][kind] += 1
        return counts

    def _matches(
        self,
        folded: str,
        cell_starts: np.ndarray | None = None,
        skip_digit_only: bool = False,
        skip_words: bool = False,
    ) -> list[tuple[int, str]]:
        """(start, kind) of every whole-word identifier in the folded text that is not excused."""
        kept = []
        vocabulary_spans = None
        for start, stop, kind in self._index.whole_word_matches(folded, cell_starts):
            key = folded[start:stop]  # equal to the identifier: only its shape is read, never shown
            if skip_digit_only and key.isdigit():
                continue
            # An identifier without digits is a word (name, town, street): only such may be excused.
            is_word = not any(char.isdigit() for char in key)
            if skip_words and is_word:
                continue
            if is_word and self._vocabulary is not None:
                if vocabulary_spans is None:
                    vocabulary_spans = _phrase_spans(self._vocabulary, folded)
                if _within(vocabulary_spans, start, stop - 1):
                    continue
            kept.append((start, kind))
        return kept

    def _count_cells(self, texts: pa.Array, skip_digit_only: bool = False) -> Counter[str]:
        """`_count` over every cell of a string array, each distinct text searched once: columns
        repeat their values (facilities, message types, years), and the search is what costs."""
        if self._empty or len(texts) == 0:
            return Counter()
        distinct = pc.value_counts(texts)
        values = distinct.field("values")
        lengths = pc.utf8_length(values).to_numpy(zero_copy_only=False).astype(np.int64)
        occurrences = distinct.field("counts").to_numpy(zero_copy_only=False)
        return self._count("\n".join(values.to_pylist()), skip_digit_only, (_cell_starts(lengths), occurrences))

    def _findings(self, where: str, counts: Mapping[str, int]) -> list[Finding]:
        if not counts:
            return []
        label = self.redact(where)
        return [Finding(label, kind, count) for kind, count in sorted(counts.items())]


def tree_files(root: Location) -> list[tuple[str, int]]:
    """(path, size) of every file under `root`, hidden and staging files too, sorted by path."""
    selector = pafs.FileSelector(root.path, recursive=True, allow_not_found=True)
    infos = root.filesystem.get_file_info(selector)
    return sorted((info.path, info.size) for info in infos if info.type == pafs.FileType.File)


def _is_number_type(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def without_numbers_of(identifiers: Mapping[str, str], tables: Iterable[pa.Table]) -> dict[str, str]:
    """The identifiers, less those made only of digits that equal a whole number in a number column
    of `tables`: a report drawn from published aggregates shows their counts, and a count may
    equal a numeric ID. The aggregates themselves are checked column by column."""
    numbers: set[str] = set()
    for table in tables:
        for index, field in enumerate(table.schema):
            if not _is_number_type(field.type):
                continue
            for value in table.column(index).to_pylist():
                if value is not None and float(value).is_integer():
                    numbers.add(str(int(value)))
    return {value: kind for value, kind in identifiers.items() if not (value.isdigit() and value in numbers)}


def _as_is(value: str) -> list[str]:
    return [value]


def _identifier_variants(value: str) -> list[str]:
    """An ID as written, and without leading zeros: an output that read it as a number drops them."""
    variants = [value]
    if value.isdigit() and value.lstrip("0"):
        variants.append(value.lstrip("0"))
    return variants


def _control_id_variants(value: str) -> list[str]:
    """MSH-10, unless it is only digits: a feed that numbers its messages (100000, 100001, ...)
    has control IDs that equal any count of the analytics sooner or later. It identifies a message,
    not a person, and leaves the PHI zone only as a keyed token."""
    return [] if value.strip().isdigit() else _identifier_variants(value)


_DATE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})")


def _date_variants(value: str) -> list[str]:
    """A full date in the forms outputs write; a partial one (YYYY, YYYYMM) is not an identifier alone."""
    match = _DATE.match(value)
    if not match or not (1 <= int(match[2]) <= 12 and 1 <= int(match[3]) <= 31):
        return []
    year, month, day = match.groups()
    variants = [value, f"{year}{month}{day}", f"{year}-{month}-{day}", f"{month}/{day}/{year}"]
    variants.append(f"{int(month)}/{int(day)}/{year}")
    return variants


def _phone_variants(value: str) -> list[str]:
    digits = re.sub(r"\D", "", value)
    national = digits[1:] if len(digits) == 11 and digits.startswith("1") else digits
    variants = [value, digits]
    if len(national) == 10:
        area, exchange, line = national[:3], national[3:6], national[6:]
        variants += [
            national,
            "1" + national,
            f"({area}){exchange}-{line}",
            f"({area}) {exchange}-{line}",
            f"{area}-{exchange}-{line}",
            f"{area}.{exchange}.{line}",
            f"{area} {exchange} {line}",
        ]
    elif len(national) == 7:
        variants.append(f"{national[:3]}-{national[3:]}")
    return variants


def _ssn_variants(value: str) -> list[str]:
    digits = re.sub(r"\D", "", value)
    variants = [value, digits]
    if len(digits) == 9:
        variants += [f"{digits[:3]}-{digits[3:5]}-{digits[5:]}", f"{digits[:3]} {digits[3:5]} {digits[5:]}"]
    return variants


def _person_name_variants(value: str) -> list[str]:
    """A DICOM PN (FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX, '=' between alphabets): whole, by component,
    and as people write it."""
    variants = [value]
    for group in value.split("="):
        components = [part.strip() for part in group.split("^")]
        variants.append("^".join(components).rstrip("^"))
        variants += [part for part in components if part]
        if len(components) > 1 and components[0] and components[1]:
            variants += _full_name_variants(components[0], components[1])
    return variants


def _full_name_variants(family: str, given: str) -> list[str]:
    # Together they catch a short name ("Li", "Ann") that is too short to test alone.
    return [f"{given} {family}", f"{family}, {given}", f"{family},{given}", f"{family}^{given}"]


_IDENTIFIER_COLUMNS: dict[str, dict[str, Callable[[str], list[str]]]] = {
    "hl7_messages": {
        "patient_id": _identifier_variants,
        "patient_family_name": _as_is,
        "patient_given_name": _as_is,
        "patient_middle_name": _as_is,
        "patient_birth_date": _date_variants,
        "patient_street": _as_is,
        "patient_city": _as_is,
        "patient_phone": _phone_variants,
        "patient_account_number": _identifier_variants,
        "patient_ssn": _ssn_variants,
        "message_control_id": _control_id_variants,
    },
    "hl7_encounters": {
        "attending_doctor_id": _identifier_variants,
        "attending_doctor_family_name": _as_is,
        "attending_doctor_given_name": _as_is,
        "visit_number": _identifier_variants,
    },
    "hl7_lab_results": {
        "placer_order_number": _identifier_variants,
        "filler_order_number": _identifier_variants,
    },
    "hl7_pharmacy_orders": {
        "placer_order_number": _identifier_variants,
        "filler_order_number": _identifier_variants,
    },
    # Institution name is left out: it names the hospital, not the patient.
    "dicom_images": {
        "patient_id": _identifier_variants,
        "patient_name": _person_name_variants,
        "patient_birth_date": _date_variants,
        "accession_number": _identifier_variants,
        "sop_instance_uid": _as_is,
        "study_instance_uid": _as_is,
        "series_instance_uid": _as_is,
    },
}

_FULL_NAMES = {
    "hl7_messages": [("patient_family_name", "patient_given_name", "patient_name")],
    "hl7_encounters": [("attending_doctor_family_name", "attending_doctor_given_name", "attending_doctor_name")],
}


class _Collector:
    def __init__(self, min_length: int, min_digits: int):
        self.min_length = min_length
        self.min_digits = min_digits
        self.identifiers = Identifiers()

    def add(self, kind: str, variants: Iterable[str], count_skipped: bool = True) -> None:
        testable = [variant for variant in (v.strip() for v in variants) if self._testable(variant)]
        if not testable and count_skipped:
            self.identifiers.skipped[kind] += 1
        for variant in testable:
            self.identifiers.setdefault(variant, kind)

    def _testable(self, variant: str) -> bool:
        if len(variant) < self.min_length:
            return False
        return not variant.isdigit() or len(variant) >= self.min_digits


# Columns whose values made only of digits give no identifier (`_control_id_variants`). They are
# told apart in Arrow: at 2,000,000 messages, every control ID is one, and taking each through
# Python cost 5 s of the run's first leak check.
_DIGIT_ONLY_NEVER_TESTED = frozenset({"message_control_id"})


def _distinct_values(table: pa.Table, column: str) -> pa.Array:
    """The column's distinct non-null values as text (none when the table lacks the column)."""
    if column not in table.column_names:
        return pa.array([], pa.string())
    return pc.unique(_as_text(table.column(column))).drop_null()


def _without_digit_only(values: pa.Array) -> tuple[pa.Array, int]:
    """The distinct `values` less those made only of ASCII digits (spaces around them aside), and
    how many distinct such values there were."""
    trimmed = pc.utf8_trim_whitespace(values)
    digit_only = pc.match_substring_regex(trimmed, "^[0-9]+$")
    found = trimmed.filter(digit_only)
    # `values` are distinct already: only trimming can make two of them equal.
    untouched = len(values) == 0 or pc.all(pc.equal(values, trimmed)).as_py()
    distinct = len(found) if untouched else pc.count_distinct(found).as_py()
    return values.filter(pc.invert(digit_only)), distinct


def _stripped_sorted(values: pa.Array) -> list[str]:
    return sorted({value.strip() for value in values.to_pylist() if value.strip()})


def _distinct_pairs(table: pa.Table, first: str, second: str) -> list[tuple[str, str]]:
    if first not in table.column_names or second not in table.column_names:
        return []
    pairs = pa.table({"a": _as_text(table.column(first)), "b": _as_text(table.column(second))})
    distinct = pairs.drop_null().group_by(["a", "b"]).aggregate([])
    found = zip(distinct.column("a").to_pylist(), distinct.column("b").to_pylist())
    return sorted({(a.strip(), b.strip()) for a, b in found if a.strip() and b.strip()})


def _as_text(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """The column as strings, row for row (nulls kept, so two columns still pair up)."""
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return values
    try:
        return values.cast(pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        texts = [None if value is None else str(value) for value in values.to_pylist()]
        return pa.chunked_array([pa.array(texts, pa.string())], pa.string())


def _cell_texts(array: pa.Array) -> list[pa.Array]:
    """The text of every non-null value in the array, nested values included, as string arrays."""
    kind = array.type
    if isinstance(kind, pa.BaseExtensionType):
        return _cell_texts(array.storage)
    if pa.types.is_dictionary(kind):
        return _cell_texts(array.dictionary_decode())
    if pa.types.is_map(kind):
        return _cell_texts(array.keys) + _cell_texts(array.items)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _cell_texts(array.flatten())
    if pa.types.is_struct(kind):
        return [texts for child in array.flatten() for texts in _cell_texts(child)]
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return [array.drop_null()]
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return [pa.array([value.decode("latin-1") for value in array.drop_null().to_pylist()], pa.string())]
    if pa.types.is_null(kind):
        return []
    if pa.types.is_floating(kind):
        return [_whole_number_texts(array)]
    try:
        return [array.cast(pa.string()).drop_null()]
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return [pa.array([str(value) for value in array.to_pylist() if value is not None], pa.string())]


def _whole_number_texts(array: pa.Array) -> pa.Array:
    """Only the floats that are whole numbers, written as integers: an ID read as a number becomes
    4827691.0, while the digits after the point of a measurement (0.4827691) would match IDs by chance."""
    values = array.drop_null().cast(pa.float64())
    whole = pc.and_(pc.equal(pc.floor(values), values), pc.less(pc.abs(values), 1e15))
    return values.filter(whole).cast(pa.int64()).cast(pa.string())


def _schema_texts(schema: pa.Schema) -> tuple[list[str], list[str]]:
    """(text we wrote: field names and the keys and values of our metadata, any other metadata)."""
    ours, theirs = [], []
    for field in _all_fields(schema):
        ours.append(field.name)
        _split_metadata(field.metadata, ours, theirs)
    _split_metadata(schema.metadata, ours, theirs)
    return ours, theirs


def _split_metadata(metadata: Mapping[bytes, bytes] | None, ours: list[str], theirs: list[str]) -> None:
    for key, value in (metadata or {}).items():
        lines = ours if key.startswith(OWN_METADATA_PREFIXES) else theirs
        lines += [text.decode("utf-8", errors="replace") for text in (key, value)]


def _string_cells(array: pa.Array) -> list[pa.Array]:
    """The string (and binary, read as latin-1) values of the array at any depth, nulls dropped.
    Numbers, dates and timestamps are left out: the pattern detectors look for text, and a
    timestamp column written as text would read as a date by its type, not by a leak."""
    kind = array.type
    if isinstance(kind, pa.BaseExtensionType):
        return _string_cells(array.storage)
    if pa.types.is_dictionary(kind):
        return _string_cells(array.dictionary) if _is_text_type(kind.value_type) else []
    if pa.types.is_map(kind):
        return _string_cells(array.keys) + _string_cells(array.items)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _string_cells(array.flatten())
    if pa.types.is_struct(kind):
        return [texts for child in array.flatten() for texts in _string_cells(child)]
    if _is_text_type(kind):
        return _cell_texts(array)
    return []


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


def _pattern_kinds(counts: Mapping[str, int], skip: Collection[str] = ()) -> Counter[str]:
    return Counter({kind + PATTERN_SUFFIX: n for kind, n in counts.items() if kind not in skip})


def _phrase_automaton(phrases: Iterable[str]) -> ahocorasick.Automaton | None:
    """An automaton of the folded phrases (None if there is none): vocabulary values."""
    automaton = ahocorasick.Automaton()
    for phrase in phrases:
        key = _fold(str(phrase).strip())
        if key and not automaton.exists(key):
            automaton.add_word(key, (len(key), key[0].isalnum(), key[-1].isalnum()))
    if len(automaton) == 0:
        return None
    automaton.make_automaton()
    return automaton


def _phrase_spans(automaton: ahocorasick.Automaton, folded: str) -> tuple[np.ndarray, np.ndarray]:
    """(starts sorted, the farthest end of any span starting at or before each) of the whole-word
    occurrences of the automaton's phrases in a folded text."""
    last = len(folded) - 1
    spans = []
    for end, (length, check_start, check_end) in automaton.iter(folded):
        start = end - length + 1
        if check_start and start > 0 and folded[start - 1].isalnum():
            continue
        if check_end and end < last and folded[end + 1].isalnum():
            continue
        spans.append((start, end))
    if not spans:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    spans.sort()
    starts = np.array([start for start, _ in spans], np.int64)
    farthest = np.maximum.accumulate(np.array([end for _, end in spans], np.int64))
    return starts, farthest


def _within(spans: tuple[np.ndarray, np.ndarray], start: int, end: int) -> bool:
    """Whether [start, end] lies inside one of the spans."""
    starts, farthest = spans
    index = int(np.searchsorted(starts, start, side="right")) - 1
    return index >= 0 and farthest[index] >= end


def _cell_starts(lengths: np.ndarray) -> np.ndarray:
    """Each cell's first character in the cells joined by one newline each."""
    starts = np.zeros(len(lengths), np.int64)
    np.cumsum(lengths[:-1] + 1, out=starts[1:])
    return starts


# --- The identifiers as hashes ---
#
# Each identifier is kept as a keyed 128-bit polynomial hash of its folded text: two uint64 halves,
# each sum(mix_k(character_j) * base_k ** j) modulo 2**64 with a secret odd base and a secret
# bijective mix of the code points. Arithmetic modulo 2**64 is numpy's own (uint64 wraps), and an
# odd base is invertible, so the hash of any slice of a text comes from two prefix sums.
# Collisions: at 10**7 identifiers against 10**8 word runs a run (10**15 pairs), an ideal 64-bit
# hash would give a false finding about once in 10**4 runs, and a false finding fails a run. With
# 128 bits it is about 10**-23 a run; hashing modulo 2**64 loses some bits on specially structured
# pairs of texts (about 20 at worst for texts under 64 characters), still far below 10**-10 a run,
# and the secret keys keep anyone from choosing a colliding text. A hit is therefore not confirmed
# against the identifier's text, which the scanner does not keep.

_BLOCK_CHARS = 1 << 20  # a text is hashed in pieces of this many characters: bounded memory
_IDENTIFIER_BATCH = 200_000  # identifiers folded and hashed at a time while the index is built
_ASCII_ALNUM = np.array([chr(code).isalnum() for code in range(128)])
_MIX_1, _MIX_2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB  # splitmix64's finaliser
_MASK_64 = (1 << 64) - 1


class _IdentifierIndex:
    """The identifiers' hashes (sorted, with their kinds), and what a match can look like: for each
    number of words, of signs before the first word and after the last (the "(" of "(410)555-0181"),
    the lengths identifiers of that shape have. Every big part is a numpy array, so that Ray's object
    store shares one copy with every worker of a node."""

    def __init__(self, identifiers: Mapping[str, str]):
        self._keys = tuple(secrets.randbits(64) for _ in range(2))
        self._bases = tuple(secrets.randbits(64) | 1 for _ in range(2))
        kinds: dict[str, int] = {}
        firsts, seconds, codes, shapes, symbols = [], [], [], [], {}
        items = iter(identifiers.items())
        while batch := list(islice(items, _IDENTIFIER_BATCH)):
            keys, batch_codes = [], []
            for value, kind in batch:
                key = _fold(str(value).strip())
                if key:
                    keys.append(key)
                    batch_codes.append(kinds.setdefault(kind, len(kinds)))
            if not keys:
                continue
            first, second, shape = self._hash_keys(keys)
            firsts.append(first)
            seconds.append(second)
            codes.append(np.array(batch_codes, np.int64))
            shapes.append(np.unique(shape, axis=0))
            for index in np.flatnonzero(shape[:, 0] == 0).tolist():
                # No letter or digit at all ("----"): too rare to hash by words, found by `str.find`.
                symbols.setdefault(keys[index], batch_codes[index])
        self._kind_names = list(kinds)
        self._first, self._second, self._kinds = _sorted_distinct(firsts, seconds, codes, len(kinds))
        self._symbols = tuple((key, self._kind_names[code]) for key, code in symbols.items())
        self._shapes, self._shape_lengths, self._lengths = _shapes(shapes)

    @property
    def empty(self) -> bool:
        return len(self._first) == 0

    def __len__(self) -> int:
        return len(self._first)

    def whole_word_matches(self, folded: str, cell_starts: np.ndarray | None = None) -> Iterator[tuple[int, int, str]]:
        """(start, stop, kind) of every identifier in the folded text whose letters and digits at
        either end are not part of a longer word; with `cell_starts`, within one cell."""
        for key, kind in self._symbols:
            position = folded.find(key)
            while position >= 0:
                if cell_starts is None or _same_cell(cell_starts, position, position + len(key)):
                    yield position, position + len(key), kind
                position = folded.find(key, position + 1)
        if not len(self._shapes):
            return
        longest = self._shape_lengths.shape[1] - 1
        for own_start in range(0, len(folded), _BLOCK_CHARS):
            own_stop = min(own_start + _BLOCK_CHARS, len(folded))
            # One character before (is the first word's start a word's start?) and enough after
            # for the longest identifier and the character after it.
            offset = max(0, own_start - 1)
            piece = folded[offset : min(len(folded), own_stop + longest + 1)]
            yield from self._piece_matches(piece, offset, own_start - offset, own_stop - offset, cell_starts)

    def occurrences(self, folded: str) -> list[tuple[int, int]]:
        """(start, stop) of every identifier in a short folded text, word boundaries or not."""
        codes = _code_points(folded)
        hashes = self._prefix_hashes(codes)
        spans = []
        for length in self._lengths.tolist():
            if length > len(codes):
                break
            starts = np.arange(len(codes) - length + 1)
            found = self._lookup(*(prefix.of(starts, starts + length) for prefix in hashes))
            spans += [(start, start + length) for start in starts[found >= 0].tolist()]
        return spans

    def _piece_matches(
        self, piece: str, offset: int, own_start: int, own_stop: int, cell_starts: np.ndarray | None
    ) -> Iterator[tuple[int, int, str]]:
        """Matches starting in piece[own_start:own_stop], at their place in the whole text."""
        codes = _code_points(piece)
        word_starts, word_stops = _words(_alnum_mask(codes))
        if not len(word_starts):
            return
        # Where the word before each word ends, and where the one after it starts: the signs taken
        # before and after a run of words must hold no letter or digit, or the run would be read as
        # fewer words than it has (and "^1/b" matched in "^1/b3" as a word and three signs).
        previous_stops = np.concatenate(([0], word_stops[:-1]))
        next_starts = np.concatenate((word_starts[1:], [len(piece)]))
        hashes = None
        for words, before, after, lengths in self._shape_rows():
            runs = len(word_starts) - words + 1
            if runs <= 0:
                continue
            starts = word_starts[:runs] - before
            stops = word_stops[words - 1 :] + after
            spans = stops - starts
            keep = (starts >= own_start) & (starts < own_stop) & (stops <= len(piece)) & (spans < len(lengths))
            keep &= (starts >= previous_stops[:runs]) & (stops <= next_starts[words - 1 :])
            index = np.flatnonzero(keep)
            index = index[lengths[spans[index]]]
            if cell_starts is not None:
                # Cells are joined by newlines to be searched at once; no match may span two.
                first_cell = np.searchsorted(cell_starts, starts[index] + offset, side="right")
                index = index[first_cell == np.searchsorted(cell_starts, stops[index] + offset - 1, side="right")]
            if not len(index):
                continue
            if hashes is None:
                hashes = self._prefix_hashes(codes)
            starts, stops = starts[index], stops[index]
            found = self._lookup(*(prefix.of(starts, stops) for prefix in hashes))
            hit = found >= 0
            for start, stop, code in zip(starts[hit].tolist(), stops[hit].tolist(), self._kinds[found[hit]].tolist()):
                yield start + offset, stop + offset, self._kind_names[code]

    def _shape_rows(self) -> Iterator[tuple[int, int, int, np.ndarray]]:
        """(words, signs before, signs after, which lengths occur) of each shape."""
        for (words, before, after), lengths in zip(self._shapes.tolist(), self._shape_lengths):
            yield words, before, after, lengths

    def _hash_keys(self, keys: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Both hash halves of each key, and its shape: (words, signs before, signs after, length)."""
        lengths = np.fromiter(map(len, keys), np.int64, len(keys))
        starts = _cell_starts(lengths)
        stops = starts + lengths
        codes = _code_points("\n".join(keys))
        hashes = self._prefix_hashes(codes)
        first, second = (prefix.of(starts, stops) for prefix in hashes)
        # A sentinel word past the end, so that a key without words indexes something.
        word_starts, word_stops = (np.append(ends, len(codes) + 1) for ends in _words(_alnum_mask(codes)))
        first_word = np.searchsorted(word_starts, starts)
        words = np.searchsorted(word_starts, stops) - first_word
        has_words = words > 0
        before = np.where(has_words, word_starts[first_word] - starts, 0)
        after = np.where(has_words, stops - word_stops[np.searchsorted(word_stops, stops, side="right") - 1], 0)
        return first, second, np.stack([words, before, after, lengths], axis=1)

    def _prefix_hashes(self, codes: np.ndarray) -> tuple[_PrefixHashes, _PrefixHashes]:
        return tuple(_PrefixHashes(codes, key, base) for key, base in zip(self._keys, self._bases))

    def _lookup(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """The index of each (first, second) hash pair in the sorted arrays, -1 where absent."""
        found = np.full(len(first), -1, np.int64)
        if not len(self._first) or not len(first):
            return found
        position = np.searchsorted(self._first, first)
        clipped = np.minimum(position, len(self._first) - 1)
        same_first = self._first[clipped] == first
        both = same_first & (self._second[clipped] == second)
        found[both] = clipped[both]
        # Identifiers that share a first half (about one pair in 10**5 runs at 10**7 identifiers)
        # sit next to each other, sorted by the second half.
        for query in np.flatnonzero(same_first & ~both).tolist():
            index = int(position[query]) + 1
            while index < len(self._first) and self._first[index] == first[query]:
                if self._second[index] == second[query]:
                    found[query] = index
                    break
                index += 1
        return found


def _same_cell(cell_starts: np.ndarray, start: int, stop: int) -> bool:
    return bool(np.searchsorted(cell_starts, start, side="right") == np.searchsorted(cell_starts, stop - 1, side="right"))


class _PrefixHashes:
    """Prefix sums of one hash half over a text's code points: the hash of any slice in O(1)."""

    def __init__(self, codes: np.ndarray, key: int, base: int):
        powers = np.full(len(codes) + 1, base, np.uint64)
        powers[0] = 1
        np.cumprod(powers, out=powers)
        self._sums = np.zeros(len(codes) + 1, np.uint64)
        np.cumsum(_mix(codes, key) * powers[:-1], out=self._sums[1:])
        inverses = np.full(len(codes) + 1, pow(base, -1, 1 << 64), np.uint64)
        inverses[0] = 1
        self._inverses = np.cumprod(inverses, out=inverses)

    def of(self, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
        """sum(mix(text[start + j]) * base ** j) modulo 2**64 for each slice."""
        return (self._sums[stops] - self._sums[starts]) * self._inverses[starts]


def _mix(codes: np.ndarray, key: int) -> np.ndarray:
    """A keyed bijection of the code points onto 64-bit values (splitmix64's finaliser)."""
    mixed = codes.astype(np.uint64) + np.uint64(key)
    mixed ^= mixed >> np.uint64(30)
    mixed *= np.uint64(_MIX_1)
    mixed ^= mixed >> np.uint64(27)
    mixed *= np.uint64(_MIX_2)
    mixed ^= mixed >> np.uint64(31)
    return mixed


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)


def _alnum_mask(codes: np.ndarray) -> np.ndarray:
    """Which code points are letters or digits by `str.isalnum`: what a whole word is made of."""
    mask = np.zeros(len(codes), bool)
    ascii_codes = codes < 128
    mask[ascii_codes] = _ASCII_ALNUM[codes[ascii_codes]]
    if not ascii_codes.all():
        others = ~ascii_codes
        distinct, inverse = np.unique(codes[others], return_inverse=True)
        mask[others] = np.array([chr(code).isalnum() for code in distinct.tolist()], bool)[inverse]
    return mask


def _words(alnum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first character, one past the last) of each maximal run of letters and digits."""
    previous = np.concatenate(([False], alnum[:-1]))
    following = np.concatenate((alnum[1:], [False]))
    return np.flatnonzero(alnum & ~previous), np.flatnonzero(alnum & ~following) + 1


def _sorted_distinct(
    firsts: list[np.ndarray], seconds: list[np.ndarray], codes: list[np.ndarray], kinds: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The hashes sorted, each once, with the kind of its first occurrence (as the identifiers
    were given: the first kind given for a value wins)."""
    if not firsts:
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0, np.uint8)
    first, second, code = np.concatenate(firsts), np.concatenate(seconds), np.concatenate(codes)
    order = np.lexsort((second, first))  # stable: equal pairs keep the order they were given in
    first, second, code = first[order], second[order], code[order]
    keep = np.ones(len(first), bool)
    keep[1:] = (first[1:] != first[:-1]) | (second[1:] != second[:-1])
    return first[keep], second[keep], code[keep].astype(np.min_scalar_type(max(kinds - 1, 0)))


def _shapes(batches: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From the (words, signs before, signs after, length) of every identifier: the distinct
    (words, before, after) with at least one word, for each a mask of the lengths it occurs with,
    and every distinct length."""
    rows = np.unique(np.concatenate(batches), axis=0) if batches else np.zeros((0, 4), np.int64)
    lengths = np.unique(rows[:, 3])
    rows = rows[rows[:, 0] > 0]
    shapes, shape_of_row = np.unique(rows[:, :3], axis=0, return_inverse=True)
    masks = np.zeros((len(shapes), int(rows[:, 3].max()) + 1 if len(rows) else 1), bool)
    masks[shape_of_row.reshape(-1), rows[:, 3]] = True
    return shapes, masks, lengths


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


def _metadata_lines(metadata: Mapping[bytes, bytes] | None) -> list[str]:
    if not metadata:
        return []
    return [text.decode("utf-8", errors="replace") for pair in metadata.items() for text in pair]


def _read_table(data: bytes, suffix: str) -> pa.Table | None:
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


_DICOM_SUFFIXES = (".dcm", ".dicom")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_text(data: bytes) -> str:
    """A PNG's text chunks (tEXt, iTXt, zTXt), where words can hide in an image file. Its pixels
    are compressed: searching them for words finds only chance matches; the labels drawn in them
    come from tables that are scanned themselves. An unreadable PNG is searched byte by byte."""
    try:
        with Image.open(BytesIO(data)) as image:
            image.load()
            return "\n".join(f"{key}: {value}" for key, value in getattr(image, "text", {}).items())
    except Exception:  # noqa: BLE001 - a damaged file is still searched, as bytes
        return data.decode("latin-1")
_MARKUP_SUFFIXES = (".html", ".htm", ".xml", ".svg")
_PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)  # Float, Double Float and Pixel Data


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


_DATE_VRS = frozenset({"DA", "DT"})
# Safe Harbor's DICOM keeps a year as YYYY0101 (DA) or YYYY0101000000 (DT).
_YEAR_ONLY = {"DA": re.compile(r"\d{4}0101"), "DT": re.compile(r"\d{4}0101(?:000000(?:\.0{1,6})?)?(?:[+-]\d{4})?")}
# Text a person or a device could write into. Dates and times are the profile's, checked against
# the known birth dates; UIDs and numbers are digits and dots that the patterns would misread.
_PATTERN_VRS = frozenset({"AE", "AS", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
_UNKNOWN_VRS = frozenset({"UN", "OB"})


def _is_year_only(text: str, vr: str) -> bool:
    values = text.split("\\")
    return bool(text) and all(_YEAR_ONLY[vr].fullmatch(value.strip()) for value in values)


def _has_pattern_text(vr: str, text: str) -> bool:
    """Whether the patterns are run on an element: text VRs, and unknown bytes that read as text
    (a private tag's note), not random bytes where digits line up by chance."""
    if vr in _PATTERN_VRS:
        return True
    return vr in _UNKNOWN_VRS and text.rstrip("\x00 ").isprintable()


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


def _fold(text: str) -> str:
    """Lower case, one character for one, so match offsets stay offsets into the original."""
    folded = text.lower()
    if len(folded) == len(text):
        return folded
    return "".join(char.lower() if len(char.lower()) == 1 else char for char in text)
