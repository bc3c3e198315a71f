"""The leak check's engine: every identifier of the PHI tables, looked for in every output file.

`LeakScanner` finds all of the identifiers (`identifier_forms`) in each text, case-insensitively,
only where a match is a whole word (`identifier_index`), and runs every published text through the
pattern detectors (`detectors`), which find phones, emails, dates... of anyone, parsed or not. A
`Finding` says where and what kind, never the value: it is shown outside the PHI zone.

Precision: a name, town or word (an identifier without digits) is no leak inside an occurrence of
a published vocabulary value (shared by at least k patients, it cannot single one out: "White" in
"White blood cells", "Springfield" in "Springfield General Hospital"), nor in text we wrote
(schema field names, our metadata). A DICOM date in its year-only form (YYYY0101) is no birth date.
"""

from __future__ import annotations

import html
import posixpath
import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import ahocorasick
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pydicom
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from medical_assets.privacy.detectors import find_structured_identifiers, structured_identifier_kinds
from medical_assets.privacy.identifier_index import IdentifierIndex, fold, joined_cell_starts
from medical_assets.privacy.leak_readers import (
    DICOM_SUFFIXES,
    MARKUP_SUFFIXES,
    OWN_METADATA_PREFIXES,
    PNG_SIGNATURE,
    ListedFile,
    cell_texts,
    dicom_file_key,
    dicom_texts,
    distinct_cell_texts,
    is_number_type,
    is_our_stamp,
    listed_dicom_key,
    parquet_file_footer_digest,
    parquet_footer_digest,
    parquet_schema,
    png_text,
    read_parquet_without,
    read_table,
    schema_texts,
    tree_listing,
)
from medical_assets.storage import Location

REDACTED = "[redacted]"
# A pattern detector's kind as a finding names it, apart from the kinds of known identifiers.
PATTERN_SUFFIX = " pattern"
# Columns named so hold dates moved by the date-shift profile, by contract: a date there is the
# profile's output, not a leak (the known birth dates are still searched in them).
SHIFTED_DATE_SUFFIX = "_shifted"
MIN_LIBRARY_TEXT = 8  # characters: shorter library texts are not cut out (LeakScanner)
# Columns that hold a date moved by the patient's secret offset under the date-shift profile (and
# are null under Safe Harbor) without the suffix: the de-identified dicom_images' study_date.
SHIFTED_DATE_COLUMNS = frozenset({"study_date"})


# A Parquet file's distinct cell texts by column, each a list of (texts, how many cells hold each).
# A DICOM file's are kept in the same form under the three names below: its elements' labels and
# texts (in order, one cell each) and its raw text, as `scan_dicom` searches them.
CellTexts = dict[str, list[tuple[pa.Array, np.ndarray]]]
DICOM_ELEMENT_LABELS, DICOM_ELEMENT_TEXTS, DICOM_RAW_TEXT = "\0element labels", "\0element texts", "\0raw bytes"


class CellTextStore(Protocol):
    """Kept `CellTexts` by a Parquet file's footer digest or a DICOM file's `dicom_file_key`
    (`engine.cell_texts.CellTextFolder`)."""

    def get(self, digest: str) -> CellTexts | None: ...

    def has(self, digest: str) -> bool: ...

    def put(self, digest: str, texts: CellTexts) -> None: ...

    def flush(self) -> None:
        """Write what `put` may have held back (a DICOM file's texts go out in bundles)."""

    def bundle_of(self, digest: str) -> str:
        """Where the texts of a key are kept, for a search in that order ("" when it does not matter)."""


@dataclass(frozen=True)
class Finding:
    where: str  # the file, then the column, schema, DICOM element or "raw bytes"
    kind: str  # the identifier's kind, e.g. patient_family_name
    count: int  # occurrences

    def __str__(self) -> str:
        return f"{self.where}: {self.count} x {self.kind}"


class LeakScanner:
    """Finds any of the identifiers in texts, tables, DICOM files and folders."""

    def __init__(
        self,
        identifiers: Mapping[str, str] | IdentifierIndex,
        library_texts: Iterable[str] = (),
        aggregates: bool = False,
        measurements: Collection[str] = (),
        vocabulary: Collection[str] = (),
        patterns: bool = True,
        excused_numbers: Collection[str] = (),
        one_word_kinds_excused: Collection[str] = (),
        token_columns: bool = True,
        cell_texts: CellTextStore | None = None,
    ):
        """`identifiers`: value -> kind, or an IdentifierIndex already built from them (a run's
        checks share one: building it costs time that grows with the patients).
        `excused_numbers`: identifiers made only of digits that are not looked for (numbers a report
        shows: `identifier_forms.numbers_of`); `one_word_kinds_excused`: kinds whose identifiers of one
        word without digits are not looked for (names, where a report's own words match them by
        chance). Either is the same as leaving those identifiers out of `identifiers`, except that a
        word folded equal to two identifiers counts as the kind given first.
        `token_columns=False`: a table's columns of our keyed tokens (`_is_token_column`) are not
        searched, for a file that passed a check searching them for every identifier known then: a
        token's text is our digest of one value, so a later identifier it equalled would be a
        coincidence that tells nothing of that patient, never a leak of them.
        `cell_texts`: where the distinct texts of a Parquet file's columns (all but the token
        columns) are kept by the file's footer digest: a search for a night's few new identifiers
        (`token_columns=False`, `patterns=False`) of files searched before reads those instead of
        the files (`CellTextStore`)."""
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
        self._index = identifiers if isinstance(identifiers, IdentifierIndex) else IdentifierIndex(identifiers)
        self._empty = self._index.empty
        self._excused_numbers = frozenset(excused_numbers)
        self._one_word_kinds_excused = frozenset(one_word_kinds_excused)
        self._vocabulary = _phrase_automaton(vocabulary)
        self._token_columns = token_columns
        self._cell_texts = cell_texts

    def scan_text(self, text: str) -> list[str]:
        """The kinds of identifier in the text, known identifiers and patterns, sorted."""
        return sorted(self._count(text) | self._pattern_count(text))

    def scan_table(
        self, table: pa.Table, where: str, schema: pa.Schema | None = None, texts_out: CellTexts | None = None
    ) -> list[Finding]:
        """Every cell of every column (nested values too), and the schema: names and metadata
        (`schema`: the file's, when only some of its columns were read). `texts_out` receives the
        distinct texts of each column but the token columns (for a `CellTextStore`)."""
        findings = self._findings(f"{where}: schema", self._schema_count(schema or table.schema))
        for index, name in enumerate(table.column_names):
            token_column = _is_token_column(table.schema.field(index))
            if not self._token_columns and token_column:
                continue
            counts: Counter[str] = Counter()
            numbers = self._skips_digit_only(table.schema.field(index))
            for chunk in table.column(index).chunks:
                if not self._empty or (texts_out is not None and not token_column):
                    for texts, occurrences in distinct_cell_texts(chunk):
                        if texts_out is not None and not token_column:
                            texts_out.setdefault(name, []).append((texts, occurrences))
                        counts.update(self._count_cells(texts, occurrences, skip_digit_only=numbers))
                # A column named like our stamp (`_compliance.json` beside a CSV export, read as a
                # table) holds our run id and creation time: not data, so no pattern applies.
                if self._patterns and not name.encode().startswith(OWN_METADATA_PREFIXES) and not _is_token_column(
                    table.schema.field(index)
                ):
                    skip = ("date",) if name.endswith(SHIFTED_DATE_SUFFIX) or name in SHIFTED_DATE_COLUMNS else ()
                    for texts in cell_texts(chunk, text_only=True):
                        counts.update(_pattern_kinds(structured_identifier_kinds(texts), skip))
            findings += self._findings(f"{where}: column {name}", counts)
        return findings

    def _skips_digit_only(self, field: pa.Field) -> bool:
        return (self._aggregates or field.name in self._measurements) and is_number_type(field.type)

    def _scan_kept_texts(self, texts: CellTexts, schema: pa.Schema, where: str) -> list[Finding]:
        """What `scan_table` finds without token columns and patterns, from a file's kept texts."""
        findings = self._findings(f"{where}: schema", self._schema_count(schema))
        for field in schema:
            if _is_token_column(field) or field.name not in texts:
                continue
            counts: Counter[str] = Counter()
            for values, occurrences in texts[field.name]:
                counts.update(self._count_cells(values, occurrences, skip_digit_only=self._skips_digit_only(field)))
            findings += self._findings(f"{where}: column {field.name}", counts)
        return findings

    def _schema_count(self, schema: pa.Schema) -> Counter[str]:
        """Field names and our metadata are text we wrote: only identifiers with digits are looked for
        there (a patient called "Test" or "State" is no leak in a description). Any other metadata
        is data: searched in full, patterns too."""
        ours, theirs = schema_texts(schema)
        counts = self._count("\n".join(ours), skip_words=True)
        counts.update(self._count("\n".join(theirs)))
        counts.update(self._pattern_count("\n".join(theirs)))
        return counts

    def scan_dicom(self, data: bytes, where: str, texts_out: CellTexts | None = None) -> list[Finding]:
        """Every element value, through sequences, private tags and the file meta; then the raw bytes
        as latin-1, for kinds not found in a parsed element (values pydicom could not parse).
        `texts_out` receives the texts searched (for a `CellTextStore`)."""
        parsed, raw = dicom_texts(data)
        blanked: Counter[str] = Counter()  # values left out of the raw bytes' search too
        elements: list[tuple[str, str, str]] = []
        for label, text, vr in parsed:
            if vr in _DATE_VRS and _is_year_only(text, vr):
                # Safe Harbor's year-only date (a newborn of 1 January has it as birth date too).
                blanked[text] += 1
                continue
            if _WRITER_META.get(label.partition(")")[0]) == text:
                # The writing library's own implementation UID and version, not data: at 5,000,000
                # patients pydicom's 1.2.826.0.1.3680043.8.498.1 held somebody's 7-digit ID.
                blanked[text] += 1
                continue
            elements.append((label, text, vr))
        raw_text = raw.decode("latin-1")
        for value, times in blanked.items():
            raw_text = raw_text.replace(value, " " * len(value), times)
        if texts_out is not None:
            ones = np.ones(len(elements), np.int64)
            texts_out[DICOM_ELEMENT_LABELS] = [(pa.array([label for label, _, _ in elements], pa.string()), ones)]
            texts_out[DICOM_ELEMENT_TEXTS] = [(pa.array([text for _, text, _ in elements], pa.string()), ones)]
            texts_out[DICOM_RAW_TEXT] = [(pa.array([raw_text], pa.string()), np.ones(1, np.int64))]
        return self._dicom_findings(where, elements, raw_text)

    def _dicom_findings(self, where: str, elements: list[tuple[str, str, str]], raw_text: str) -> list[Finding]:
        """The findings of `scan_dicom` in the (label, text, VR) of the elements and the raw text."""
        findings: list[Finding] = []
        # All elements in one search: hundreds of short texts, each searched alone, would cost the
        # lookup's fixed price hundreds of times.
        for (label, text, vr), counts in zip(elements, self._count_each([text for _, text, _ in elements])):
            if self._patterns and _has_pattern_text(vr, text):
                counts.update(self._pattern_count(text))
            findings += self._findings(f"{where}: {label}", counts)
        found = {finding.kind for finding in findings}
        raw_counts = Counter({kind: n for kind, n in self._count(raw_text).items() if kind not in found})
        return findings + self._findings(f"{where}: raw bytes", raw_counts)

    def _scan_dicom_file(
        self, location: Location, where: str, relative: str, data: bytes | None, listed: ListedFile | None = None
    ) -> list[Finding]:
        """`scan_dicom` of a file of a tree, whose texts are kept (by `dicom_file_key`, from `listed`
        when given) for a later search, or searched from those kept instead of reading the file."""
        findings = self._findings(f"{where}: file name", self._count(relative))
        key = listed_dicom_key(listed) if listed is not None else dicom_file_key(location)
        if key is not None and self._searches_kept_texts():
            kept = self._cell_texts.get(key)
            if kept is not None and DICOM_RAW_TEXT in kept:
                (labels, _), (texts, _) = kept[DICOM_ELEMENT_LABELS][0], kept[DICOM_ELEMENT_TEXTS][0]
                elements = [(label, text, "") for label, text in zip(labels.to_pylist(), texts.to_pylist())]
                return findings + self._dicom_findings(where, elements, kept[DICOM_RAW_TEXT][0][0][0].as_py())
        texts: CellTexts | None = {} if key is not None else None
        findings += self.scan_dicom(location.read_bytes() if data is None else data, where, texts_out=texts)
        if texts is not None:
            self._cell_texts.put(key, texts)
        return findings

    def scan_file(self, location_or_path: Location | str, data: bytes) -> list[Finding]:
        """The file's content by its kind, and its name."""
        name = location_or_path.uri if isinstance(location_or_path, Location) else str(location_or_path)
        return self._scan_named(name, posixpath.basename(name), data)

    def scan_tree(self, root: Location) -> list[Finding]:
        """Every file under `root` (hidden and staging files too), each named `<root's name>/<path below root>`."""
        findings = [
            finding for listed in tree_listing(root) for finding in self.scan_tree_file(root, listed.path, listed=listed)
        ]
        self.flush_kept_texts()
        return findings

    def scan_tree_file(
        self, root: Location, path: str, data: bytes | None = None, listed: ListedFile | None = None
    ) -> list[Finding]:
        """One file of `tree_listing(root)` (its bytes read here unless given), named as `scan_tree` names it.
        `listed`: the file as the tree's listing gave it, whose time keys a DICOM file's kept texts
        (else the file is asked for it). Texts it keeps may wait for `flush_kept_texts`."""
        relative = path[len(root.path) :].lstrip("/")
        where = posixpath.join(root.name, relative)
        if self._cell_texts is not None and relative.lower().endswith(DICOM_SUFFIXES):
            return self._scan_dicom_file(Location(root.filesystem, path), where, relative, data, listed)
        if data is None:
            location = Location(root.filesystem, path)
            kept = self._kept_texts_of(location) if relative.lower().endswith(".parquet") else None
            if kept is not None:  # the file's kept texts: not read at all
                return self._findings(f"{where}: file name", self._count(relative)) + self._scan_kept_texts(*kept, where)
            data = location.read_bytes()
        return self._scan_named(where, relative, data)

    def bytes_to_read(self, root: Location, path: str, size: int, listed: ListedFile | None = None) -> int:
        """What a search of the file `path` (of `size` bytes) of the tree `root` reads of it: nothing
        when it searches the file's kept texts instead (`listed`: as `scan_tree_file`)."""
        if not self._searches_kept_texts():
            return size
        location = Location(root.filesystem, path)
        if path.lower().endswith(".parquet"):
            key = parquet_file_footer_digest(location)
        elif path.lower().endswith(DICOM_SUFFIXES):
            key = listed_dicom_key(listed) if listed is not None else dicom_file_key(location)
        else:
            return size
        return 0 if key is not None and self._cell_texts.has(key) else size

    def kept_texts_order(self, path: str, listed: ListedFile) -> str:
        """Where a file's kept texts are (a DICOM file's bundle; "" otherwise): files searched in this
        order read each bundle once."""
        if not self._searches_kept_texts() or not path.lower().endswith(DICOM_SUFFIXES):
            return ""
        key = listed_dicom_key(listed)
        return self._cell_texts.bundle_of(key) if key is not None else ""

    def ready_to_share(self) -> None:
        """Build now what lookups would build when worth it (`IdentifierIndex.ensure_presence`), so
        that Ray's workers share one copy rather than each build their own."""
        self._index.ensure_presence()

    def flush_kept_texts(self) -> None:
        """Write the texts kept by the searches so far that the store held back."""
        if self._cell_texts is not None:
            self._cell_texts.flush()

    def _searches_kept_texts(self) -> bool:
        """Whether this scanner may search kept texts instead of files: they hold neither our token
        columns nor what only the pattern detectors would look at."""
        return self._cell_texts is not None and not self._token_columns and not self._patterns

    def _kept_texts_of(self, location: Location) -> tuple[CellTexts, pa.Schema] | None:
        """The kept texts and the schema of a Parquet file, for a search that may use them."""
        if not self._searches_kept_texts():
            return None
        digest = parquet_file_footer_digest(location)
        texts = self._cell_texts.get(digest) if digest is not None else None
        if texts is None:
            return None
        return texts, pq.read_schema(location.path, filesystem=location.filesystem)

    def redact(self, text: str) -> str:
        """The text with every identifier replaced, even inside a longer word: for labels we show."""
        if self._empty or not text:
            return text
        merged: list[list[int]] = []
        for start, stop in sorted(self._index.occurrences(fold(text))):
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
        digest = parquet_footer_digest(data) if suffix == ".parquet" and self._cell_texts is not None else None
        if digest is not None and self._searches_kept_texts():
            kept = self._cell_texts.get(digest)
            if kept is not None:
                return findings + self._scan_kept_texts(kept, parquet_schema(data), where)
        texts: CellTexts | None = {} if digest is not None else None
        if suffix == ".parquet" and not self._token_columns:
            # Our token columns are not searched: not read either (most of a part's bytes).
            read = read_parquet_without(data, _is_token_column)
            if read is not None:
                found = self.scan_table(read[0], where, schema=read[1], texts_out=texts)
                if texts is not None:
                    self._cell_texts.put(digest, texts)
                return findings + found
        table = read_table(data, suffix)
        if table is not None:
            found = self.scan_table(table, where, texts_out=texts if suffix == ".parquet" else None)
            if texts is not None:
                self._cell_texts.put(digest, texts)
            return findings + found
        if suffix in DICOM_SUFFIXES or data[128:132] == b"DICM":
            return findings + self.scan_dicom(data, where)
        if suffix == ".png" or data[:8] == PNG_SIGNATURE:
            text = png_text(data)
            return findings + self._findings(f"{where}: PNG text", self._count(text) + self._pattern_count(text))
        if is_our_stamp(data):
            # Our compliance stamp beside a CSV or JSON Lines export: text we wrote, like our metadata.
            return findings + self._findings(f"{where}: stamp", self._count(data.decode("utf-8", errors="replace"), skip_words=True))
        text = data.decode("utf-8", errors="replace")
        for library in self._library_texts:
            text = text.replace(library, "")
        if suffix in MARKUP_SUFFIXES:
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
        matches = self._matches(fold(text), cell_starts, skip_digit_only, skip_words)
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
        cell_starts = joined_cell_starts(np.fromiter(map(len, texts), np.int64, len(texts)))
        matches = self._matches(fold("\n".join(texts)), cell_starts)
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
            if key.isdigit() and (skip_digit_only or key in self._excused_numbers or _is_a_fraction(folded, start, stop)):
                continue
            # An identifier without digits is a word (name, town, street): only such may be excused.
            is_word = not any(char.isdigit() for char in key)
            if skip_words and is_word:
                continue
            if is_word and kind in self._one_word_kinds_excused and len(key.split()) == 1:
                continue
            if is_word and self._vocabulary is not None:
                if vocabulary_spans is None:
                    vocabulary_spans = _phrase_spans(self._vocabulary, folded)
                if _within(vocabulary_spans, start, stop - 1):
                    continue
            kept.append((start, kind))
        return kept

    def _count_cells(self, texts: pa.Array, occurrences: np.ndarray, skip_digit_only: bool = False) -> Counter[str]:
        """`_count` over cells: `texts` (distinct, from `distinct_cell_texts`), each held by its number
        of `occurrences` cells, so that each is searched once: columns repeat their values
        (facilities, message types, years), and the search is what costs."""
        if self._empty or len(texts) == 0:
            return Counter()
        lengths = pc.utf8_length(texts).to_numpy(zero_copy_only=False).astype(np.int64)
        return self._count("\n".join(texts.to_pylist()), skip_digit_only, (joined_cell_starts(lengths), occurrences))

    def _findings(self, where: str, counts: Mapping[str, int]) -> list[Finding]:
        if not counts:
            return []
        label = self.redact(where)
        return [Finding(label, kind, count) for kind, count in sorted(counts.items())]


def _is_a_fraction(folded: str, start: int, stop: int) -> bool:
    """Whether the digits folded[start:stop] are those after the decimal point of a number with one
    point ("0.3984375", a plotly layout coordinate): a fraction, not an ID written out. With millions
    of patients every six- or seven-digit number is somebody's ID, and reports print such fractions
    by the hundred. An ID printed as a number ("3984375.0") is still found (its digits come before
    the point), and so is one in a dotted sequence ("1.2.826.0.1.3984375", "2.25.3984375.1"): a UID
    built from a patient's ID is a leak."""
    if start < 2 or folded[start - 1] != "." or not folded[start - 2].isdigit():
        return False
    before = start - 2
    while before >= 0 and folded[before].isdigit():
        before -= 1
    if before >= 0 and folded[before] == ".":
        return False
    return not (stop + 1 < len(folded) and folded[stop] == "." and folded[stop + 1].isdigit())


def _is_token_column(field: pa.Field) -> bool:
    """A column of our keyed tokens (declared `tokenise`, or named `*_token`): hex digests we made,
    which no pattern can read as a phone or a date (a digit run inside hex has letters on both
    sides), and which cost most of the pattern scan (a million distinct message tokens). The known
    identifiers are still searched there."""
    declared = (field.metadata or {}).get(b"treatment")
    return declared == b"tokenise" or field.name.endswith("_token")


def _pattern_kinds(counts: Mapping[str, int], skip: Collection[str] = ()) -> Counter[str]:
    return Counter({kind + PATTERN_SUFFIX: n for kind, n in counts.items() if kind not in skip})


def _phrase_automaton(phrases: Iterable[str]) -> ahocorasick.Automaton | None:
    """An automaton of the folded phrases (None if there is none): vocabulary values."""
    automaton = ahocorasick.Automaton()
    for phrase in phrases:
        key = fold(str(phrase).strip())
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


_DATE_VRS = frozenset({"DA", "DT"})
# What pydicom writes into every file meta it saves, as the software that wrote the file (our
# DICOM export writes with pydicom), by the label's start: only these exact values are excused.
_WRITER_META = {
    "file meta (0002,0012": PYDICOM_IMPLEMENTATION_UID,
    "file meta (0002,0013": f"PYDICOM {pydicom.__version__}",
}
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
