"""Publish on pass: an output reaches deid/ only after its leak check has scanned it in staging.

Each de-identified asset stages its output (`storage.TablePublication`), then `publish_if_clean`
scans the staged folders for identifiers of the PHI zone and for structured identifiers of anyone
(`privacy.leak_scanner`, `privacy.detectors`). Clean: the publication commits, and the check passes. Not
clean: nothing is published (the previous version stays in deid/, readable as before), the
rejected output moves to `phi/quarantine/<check>/<run>/` for a person to inspect, the check fails
with the quarantine's place in its metadata, and the step fails, so nothing downstream runs.

Findings name the file and column or tag and the kind of identifier, never the value.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from medical_assets.analytics.tables import ANALYTICS_TABLES
from medical_assets.config import PipelineSettings
from medical_assets.defs.audit import audited_phi_read
from medical_assets.dicom.tables import DEID_DICOM_IMAGES
from medical_assets.engine import identifier_parts, leak_jobs
from medical_assets.engine.analytics_jobs import Input, read_input
from medical_assets.engine.cell_texts import CellTextFolder, published_keys
from medical_assets.engine.memory import release_memory
from medical_assets.privacy.detectors import KINDS as detector_kinds
from medical_assets.privacy.hl7_deid_tables import DEID_HL7_TABLES
from medical_assets.privacy.identifier_forms import numbers_of
from medical_assets.privacy.identifier_index import IdentifierIndex
from medical_assets.privacy.leak_readers import DICOM_SUFFIXES, ListedFile, listed_dicom_key, tree_listing
from medical_assets.privacy.leak_scanner import Finding, LeakScanner
from medical_assets.step_records import folder_digest
from medical_assets.storage import Location, TablePublication, copy_tree, restrict_to_owner, table_files, write_table_atomically

QUARANTINE = "quarantine"  # phi/quarantine/<check>/<run>/: outputs a leak check rejected
# phi/_census/vocabulary.parquet: the vocabulary the last de-identification published, for the later
# steps' leak checks. Values shared by many patients, but drawn from the PHI zone: kept there.
VOCABULARY_FILE = ("_census", "vocabulary.parquet")
DETECTORS = ["known PHI identifiers (names, IDs, phones, SSNs, addresses, birth dates, UIDs)", *detector_kinds]

# The number columns of the de-identified contract: counts, positions, sizes, years and measurements.
# None holds an identifier (identifiers leave the PHI zone only as tokens), and a digit-only MRN can
# equal any of them by chance, so the leak checks do not look for digit-only identifiers there.
MEASUREMENT_COLUMNS = frozenset(
    field.name
    for schema in [*DEID_HL7_TABLES.values(), DEID_DICOM_IMAGES]
    for field in schema
    if pa.types.is_integer(field.type) or pa.types.is_floating(field.type)
)

# PHI tables the identifiers come from (absent ones are skipped: a site may have no DICOM).
_IDENTIFIER_SOURCES = ("hl7_messages", "hl7_encounters", "hl7_lab_results", "hl7_pharmacy_orders", "dicom_images")


def check_specs(name: str, assets: Iterable[dg.AssetKey], scanned: str) -> list[dg.AssetCheckSpec]:
    """One leak check per asset of a step: the step's output is scanned once, as a whole, and each
    asset's check reports that scan, so selecting any one asset brings its check along."""
    return [
        dg.AssetCheckSpec(
            name,
            asset=asset,
            blocking=True,
            description=(
                f"Runs before {scanned} is published: fails if an identifier of the PHI zone (names, IDs, phone numbers, "
                "SSNs, street lines, birth dates, original DICOM UIDs) or a structured identifier of anyone (phone, SSN, "
                "email, URL, IP, written dates, ZIP codes, record numbers) is in the staged output: Parquet values and "
                "metadata, DICOM elements, any other file. On failure nothing is published and the output waits in "
                "phi/quarantine/. Findings name the file and column or tag, never the value."
            ),
        )
        for asset in assets
    ]


# A full collection costs a few hundred milliseconds in a process holding Dagster and Ray; worth it
# only after a scan large enough to have raised the peak (a million identifiers are ~100 MB).
RELEASE_AFTER_IDENTIFIERS = 100_000


def publish_if_clean(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    publication: TablePublication,
    check_name: str,
    assets: Sequence[dg.AssetKey],
    staged: Sequence[str],
    commit: Callable[[], None],
    library_texts: Iterable[str] = (),
    drawn_from_analytics: bool = False,
    aggregates: bool = False,
    counts: Iterable[int] = (),
    carried: CarriedParts | None = None,
    merged_index: bool = True,
    keep_cell_texts: Sequence[str] = (),
) -> Generator[dg.AssetCheckResult, None, dict]:
    """Scan `staged` (folder names of `publication`), then commit or quarantine; yields the result of
    each selected check of `assets`. The scan and the commit happen whatever was selected. Returns
    what the scan found (counts and places, never a value), for the step's record. `carried`: staged
    files copied unchanged from a published output, searched only for the identifiers new since.
    `keep_cell_texts`: a folder of the PHI zone (`engine.cell_texts`) where the texts of the files
    (Parquet, DICOM) are kept for a later night's search of them; only those of the files published stay."""
    vocabulary = load_vocabulary(settings)
    cell_texts = CellTextFolder(settings.zone("phi").child(*keep_cell_texts)) if keep_cell_texts else None
    with audited_phi_read(context, settings, f"leak check {check_name}", None):
        findings, identifier_count, index_merged = scan_for_leaks(
            context.run.run_id, settings, [publication.staged(name) for name in staged], vocabulary,
            list(library_texts), drawn_from_analytics, aggregates, counts, carried, merged_index, cell_texts,
            published_roots=[publication.zone.child(name) for name in staged],
        )
    if index_merged and identifier_count >= RELEASE_AFTER_IDENTIFIERS:
        # The identifiers are gone: the run's process need not keep their peak. (Unmerged, the
        # index's arrays are the kept files, mapped: nothing of the heap to hand back.)
        release_memory()
    scan = {
        "identifiers checked": identifier_count,
        **({} if index_merged else {"identifiers counted": _COUNTED_PER_PART}),
        "vocabulary values": len(vocabulary),
        "de-identification profile": settings.deid_profile,
        "findings": len(findings),
        "where": _findings_table(findings) if findings else "no identifier found",
    }
    metadata = check_metadata(scan)
    selected = [asset for asset in assets if dg.AssetCheckKey(asset, check_name) in context.selected_asset_check_keys]
    if not findings:
        staged_dicom = {name: _dicom_files(publication.staged(name)) for name in staged} if cell_texts is not None else {}
        commit()
        if cell_texts is not None:
            published = {name: publication.zone.child(name) for name in staged}
            published_dicom = {name: _dicom_files(root) for name, root in published.items()}
            # On an object store the commit copies each staged file, and a copy has a time of its own.
            cell_texts.rekey(_same_files(staged_dicom, published_dicom))
            cell_texts.prune(
                {key for name, root in published.items() for key in published_keys(root, published_dicom[name].values())}
            )
        for asset in selected:
            yield dg.AssetCheckResult(check_name=check_name, asset_key=asset, passed=True, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata)
        return scan
    quarantine = quarantine_staged(settings, publication, check_name, staged)
    metadata["quarantine"] = quarantine.uri
    for asset in selected:
        yield dg.AssetCheckResult(check_name=check_name, asset_key=asset, passed=False, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata)
    raise dg.Failure(
        description=(
            f"{check_name}: {len(findings)} finding(s) in the staged output, so nothing was published: deid/ keeps its "
            f"previous version, and the rejected output is in {quarantine.uri} (PHI zone). First findings (place and "
            f"kind, never the value): {'; '.join(f'{f.where}: {f.kind}' for f in findings[:5])}"
        ),
        metadata={"quarantine": quarantine.uri, "findings": len(findings)},
    )


_COUNTED_PER_PART = "once per PHI part that holds them (a night's check searches the index part by part)"


def check_metadata(scan: Mapping) -> dict:
    """The metadata of a leak check's result in the UI, from what the scan found."""
    return {
        "identifiers checked": scan["identifiers checked"],
        **({"identifiers counted": scan["identifiers counted"]} if "identifiers counted" in scan else {}),
        "vocabulary values": scan["vocabulary values"],
        "detectors": dg.MetadataValue.md(", ".join(DETECTORS)),
        "de-identification profile": scan["de-identification profile"],
        "findings": scan["findings"],
        "where": dg.MetadataValue.md(scan["where"]),
    }


def carried_over_checks(
    context: dg.AssetExecutionContext, check_name: str, assets: Sequence[dg.AssetKey], scan: Mapping, run_id: str,
    extra: Mapping | None = None,
) -> Iterator[dg.AssetCheckResult]:
    """The results of a step's selected leak checks when its output is carried over: the scan of
    the run that published it, on the files that are still there unchanged (and `extra` metadata)."""
    metadata = {**check_metadata(scan), "scanned by run": dg.MetadataValue.text(run_id), **(extra or {})}
    for asset in assets:
        if dg.AssetCheckKey(asset, check_name) in context.selected_asset_check_keys:
            yield dg.AssetCheckResult(check_name=check_name, asset_key=asset, passed=True, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata)


def leak_check_inputs(settings: PipelineSettings, vocabulary: bool = True) -> dict[str, Location]:
    """What a leak check reads besides the output it scans: the PHI tables its identifiers come
    from, and the published vocabulary (which the HL7 step writes itself)."""
    phi = settings.zone("phi")
    inputs = {f"phi/{table}": phi.child(table) for table in _IDENTIFIER_SOURCES}
    if vocabulary:
        inputs["phi/" + "/".join(VOCABULARY_FILE)] = phi.child(*VOCABULARY_FILE)
    return inputs


def quarantine_staged(settings: PipelineSettings, publication: TablePublication, check_name: str, staged: Sequence[str]) -> Location:
    """Move the staged folders out of deid/ into phi/quarantine/<check>/<run>/, and drop the staging."""
    target = settings.zone("phi").child(QUARANTINE, check_name, publication.run_id)
    target.makedirs()
    for name in staged:
        source = publication.staged(name)
        if not source.exists():
            continue
        if _renames(source):
            source.filesystem.move(source.path, target.child(name).path)
        else:
            copy_tree(source, target.child(name))  # object stores have no rename; the staging is deleted after
    publication.abandon()
    restrict_to_owner(settings.zone("phi"))  # the rejected output is PHI now
    return target


def scan_for_leaks(
    run_id: str,
    settings: PipelineSettings,
    roots: Sequence[Location],
    vocabulary: frozenset[str],
    library_texts: list[str],
    drawn_from_analytics: bool,
    aggregates: bool,
    counts: Iterable[int] = (),
    carried: CarriedParts | None = None,
    merged_index: bool = True,
    cell_texts: CellTextFolder | None = None,
    published_roots: Sequence[Location] | None = None,
) -> tuple[list[Finding], int, bool]:
    """The findings under `roots`, how many identifiers were looked for, and whether the index that
    held them was merged (otherwise a value several parts hold is counted once per part).
    `published_roots`: where each of `roots` is published, whose files the `carried` ones copy."""
    index = _identifier_index(run_id, settings, merged_index)
    if carried is not None and carried.files:
        scanner = _scanner(run_id, settings.deid_profile, index, library_texts, aggregates, vocabulary, cell_texts)
        findings = leak_jobs.scan_trees(scanner, list(roots), keep=lambda path: path not in carried.files)
        # The carried files passed a check that looked for every other identifier, with the same
        # detectors and no more vocabulary than now: only the new identifiers can be found in them,
        # and not in our tokens (most of the text: a digest of a value checked then).
        new_identifiers = LeakScanner(
            carried.identifiers, library_texts, aggregates=aggregates,
            measurements=MEASUREMENT_COLUMNS, vocabulary=vocabulary, patterns=False, token_columns=False,
            cell_texts=cell_texts,
        )
        if not carried.identifiers.empty:  # nothing new to look for (no new part, no DICOM): no scan
            # Carried files stand in the staging, or in place where the publication keeps them there
            # (an object store's DICOM files: `TablePublication.carry_file`).
            in_place = [root for root in published_roots or ()
                        if any(path.startswith(root.path.rstrip("/") + "/") for path in carried.files)]
            findings += leak_jobs.scan_trees(
                new_identifiers, [*roots, *in_place], keep=lambda path: path in carried.files,
                in_process_bytes=leak_jobs.RESCAN_IN_PROCESS_BYTES,
                listed_as=None if cell_texts is None or published_roots is None
                else _published_originals(roots, published_roots, carried.files),
            )
        return findings, len(index), index.merged
    if drawn_from_analytics:
        analytics = _published_analytics(settings)
        # The reports print the analytics tables' stamp (run id, creation time): ours, not data.
        library_texts = [*library_texts, *_stamp_values(settings, analytics)]
        # `counts`: numbers the step printed itself (a privacy report's rows withheld), not data; and
        # every label a report draws comes from the published analytics, whose own check searched each
        # cell for every name; the rest of a report is our own words ("Results per test", plotly's
        # "normal"), which one-word names (TEST, NORMAL) match by chance. Full names, IDs and every
        # structured identifier are still searched.
        scanner = LeakScanner(
            index, library_texts, aggregates=aggregates, vocabulary=vocabulary,
            excused_numbers=numbers_of(analytics, counts), one_word_kinds_excused=_ONE_WORD_NAME_KINDS,
        )
        with _index_lock:  # the run's last check: the cached index grows with the patients
            _scanner_cache.clear()
            _index_cache.clear()
    else:
        scanner = _scanner(run_id, settings.deid_profile, index, library_texts, aggregates, vocabulary, cell_texts)
    return leak_jobs.scan_trees(scanner, list(roots)), len(index), index.merged


def _dicom_files(root: Location) -> dict[str, ListedFile]:
    """The DICOM files under `root`, by their path below it."""
    return {
        listed.path[len(root.path) :].lstrip("/"): listed
        for listed in tree_listing(root) if listed.path.lower().endswith(DICOM_SUFFIXES)
    }


def _same_files(
    staged: Mapping[str, Mapping[str, ListedFile]], published: Mapping[str, Mapping[str, ListedFile]]
) -> dict[str, str]:
    """Old key -> new key of the DICOM files the commit published by a copy (by folder, then path
    below it: same place and size, another time): their texts, kept under the staged file's key,
    are the published file's."""
    renamed = {}
    for folder, files in staged.items():
        for relative, before in files.items():
            after = published.get(folder, {}).get(relative)
            if after is not None and after.size == before.size:
                old, new = listed_dicom_key(before), listed_dicom_key(after)
                if old is not None and new is not None and old != new:
                    renamed[old] = new
    return renamed


def _published_originals(
    roots: Sequence[Location], published_roots: Sequence[Location], carried: Collection[str]
) -> dict[str, ListedFile]:
    """The published file each carried staged file is a copy of, by the staged path, as the published
    folder's listing gives it (`published_roots`: where each of `roots` is published): its kept texts
    are the copy's. A copy has a time of its own: where a carried file is copied into the staging
    (a local disk whose hard links fail; object stores once did), keyed by that time a night found
    none of the texts kept and read every carried file whole."""
    originals = {}
    for root, published in zip(roots, published_roots, strict=True):
        by_relative = {listed.path[len(published.path) :]: listed for listed in tree_listing(published)}
        for path in carried:
            if path.startswith(root.path + "/") and path[len(root.path) :] in by_relative:
                originals[path] = by_relative[path[len(root.path) :]]
    return originals


_ONE_WORD_NAME_KINDS = frozenset(
    {"patient_family_name", "patient_given_name", "patient_middle_name",
     "attending_doctor_family_name", "attending_doctor_given_name"}
)


def save_vocabulary(settings: PipelineSettings, vocabulary: dict[str, frozenset[str]]) -> None:
    """The vocabulary a de-identification published, for the leak checks of later steps: a known
    identifier inside a value shared by many patients (a town in the hospital's name) singles no one out."""
    rows = [(column, value) for column, values in sorted(vocabulary.items()) for value in sorted(values)]
    table = pa.table({"column": [c for c, _ in rows], "value": [v for _, v in rows]}, schema=_VOCABULARY_SCHEMA)
    write_table_atomically(table, settings.zone("phi").child(*VOCABULARY_FILE))


def load_vocabulary(settings: PipelineSettings) -> frozenset[str]:
    location = settings.zone("phi").child(*VOCABULARY_FILE)
    if not location.exists():
        return frozenset()
    table = pq.read_table(location.path, filesystem=location.filesystem, schema=_VOCABULARY_SCHEMA)
    return frozenset(table.column("value").to_pylist())


_VOCABULARY_SCHEMA = pa.schema([pa.field("column", pa.string()), pa.field("value", pa.string())])


# The identifiers' index as the run's first check built it, for its other checks (HL7, DICOM,
# analytics, reports): even assembled from the parts' kept arrays, it costs time and memory that
# grow with the patients. One entry, keyed by the run, every PHI file's path, size and time, and the
# profile (which decides what is looked for), so another run or a rewritten table is read afresh.
_index_cache: dict[tuple, IdentifierIndex] = {}
_index_lock = threading.Lock()  # a check waits for the index that `prepare_identifier_index` is building
_MERGED = "merged"  # the cached index's form is part of its key's last element


def _identifier_index(run_id: str, settings: PipelineSettings, merged: bool = True) -> IdentifierIndex:
    """The run's index of every identifier; `merged` for a check that searches a whole output, part
    by part for one that searches a night's few new files or the small analytics outputs, where
    merging the parts would cost more than the search (`IdentifierIndex.from_hashed`). A merged
    index serves both."""
    phi = settings.zone("phi")
    with _index_lock:
        key = (run_id, phi.uri, tuple(folder_digest(phi.child(t)) for t in _IDENTIFIER_SOURCES), settings.deid_profile)
        for form in ((_MERGED,) if merged else (_MERGED, "parts")):
            if (*key, form) in _index_cache:
                return _index_cache[(*key, form)]
        _index_cache.clear()
        index = identifier_parts.identifier_index(phi, _left_out_kinds(settings.deid_profile), merged=merged)
        _index_cache[(*key, _MERGED if merged else "parts")] = index
        return index


def merge_index_for(parts_searched: int, parts_carried: int) -> bool:
    """Whether a check that searches the new output of `parts_searched` part groups, beside
    `parts_carried` carried over, should merge the index: a lookup in an index left part by part
    searches every part, so that is worth it only for a night's few parts."""
    return parts_carried == 0 or parts_searched > _PARTS_SEARCHED_UNMERGED


_PARTS_SEARCHED_UNMERGED = 2


def _left_out_kinds(profile: str) -> frozenset[str]:
    if profile == "date_shift":
        # Shifted dates are meant to look like dates, and one will often equal another
        # patient's real birth date: the shift, not this check, protects them.
        return frozenset({"patient_birth_date"})
    return frozenset()


@dataclass(frozen=True)
class CarriedParts:
    """Staged files copied unchanged from an output that passed its check (`files`: their paths),
    and the identifiers that check could not have looked for: an index of the PHI parts read since."""

    files: frozenset[str]
    identifiers: IdentifierIndex


def carried_parts(settings: PipelineSettings, files: Collection[str], hl7_parts_read: Collection[str]) -> CarriedParts:
    """`files` carried over, to be searched for the identifiers of the HL7 part groups read since
    their check and of every DICOM image: a superset of those new since. A value another part gives
    an earlier rank keeps that rank in the whole index; here it may have a later one, so it can only
    be looked for where the whole index would not (a birth date a date shift leaves out): a stricter
    check, never a weaker one."""
    with _index_lock:
        index = identifier_parts.identifier_index(
            settings.zone("phi"), _left_out_kinds(settings.deid_profile), hl7_parts=frozenset(hl7_parts_read)
        )
    return CarriedParts(frozenset(files), index)


def rescan_published(
    context: dg.AssetExecutionContext, settings: PipelineSettings, check_name: str, roots: Sequence[Location],
    hl7_parts_read: Collection[str],
    cell_texts: Sequence[str] = (),
) -> list[Finding]:
    """Published output kept as it is, searched for what its check could not have looked for: the
    identifiers of the HL7 part groups read since (and of every DICOM image, as `carried_parts`),
    with the vocabulary as it is now and without the pattern detectors (content-only: unchanged).
    `cell_texts`: the PHI zone's folder where the files' texts are kept (`publish_if_clean`)."""
    vocabulary = load_vocabulary(settings)
    with audited_phi_read(context, settings, f"leak check {check_name} of the output carried over", None):
        index = carried_parts(settings, (), hl7_parts_read).identifiers
        if index.empty:
            return []
        scanner = LeakScanner(
            index, [], measurements=MEASUREMENT_COLUMNS, vocabulary=vocabulary, patterns=False, token_columns=False,
            cell_texts=CellTextFolder(settings.zone("phi").child(*cell_texts)) if cell_texts else None,
        )
        return leak_jobs.scan_trees(scanner, [root for root in roots if root.exists()])


def prepare_identifier_index(run_id: str, settings: PipelineSettings, merged: bool = True) -> None:
    """Start building the run's identifier index in a thread of this process, to overlap the Ray
    jobs before the step's leak check: their work is in Ray's workers while this process mostly
    waits, and the index depends only on the PHI tables the step reads. The check then finds it
    built, or waits for it. A failure here is left to the check, which builds it again and reports."""

    def build() -> None:
        try:
            _identifier_index(run_id, settings, merged)
        except Exception:  # noqa: BLE001 - the check builds the index again and reports its error
            pass

    threading.Thread(target=build, name="identifier-index", daemon=True).start()


# The last scanner built, for the next check that looks for the same identifiers the same way (the
# HL7 and DICOM checks).
_scanner_cache: dict[tuple, LeakScanner] = {}


def _scanner(run_id, profile, index, library_texts, aggregates, vocabulary=frozenset(), cell_texts=None) -> LeakScanner:
    # The index by identity: the cached scanner holds it, so no other index can take its id.
    key = (run_id, id(index), profile, tuple(hash(t) for t in library_texts), aggregates, hash(vocabulary),
           None if cell_texts is None else cell_texts.folder.uri)
    if key not in _scanner_cache:
        _scanner_cache.clear()
        _scanner_cache[key] = LeakScanner(
            index, library_texts, aggregates=aggregates, measurements=MEASUREMENT_COLUMNS, vocabulary=vocabulary,
            cell_texts=cell_texts,
        )
    return _scanner_cache[key]


def _published_analytics(settings: PipelineSettings) -> list[pa.Table]:
    """The analytics tables as published (in the configured export format), for the numbers they show."""
    analytics = settings.zone("deid").child("analytics")
    inputs = [
        Input(analytics.child(name), None, settings.export_format, schema) for name, schema in ANALYTICS_TABLES.items()
    ]
    return [table for table in map(read_input, inputs) if table is not None]


def _stamp_values(settings: PipelineSettings, tables: list[pa.Table]) -> list[str]:
    """The values of the compliance stamps the published analytics carry (Parquet metadata, or
    `_compliance.json` beside a CSV or JSON Lines export)."""
    values = set()
    for table in tables:
        for key, value in (table.schema.metadata or {}).items():
            if key.startswith((b"deid.", b"medical_assets.")):
                values.add(value.decode("utf-8", errors="replace"))
    analytics = settings.zone("deid").child("analytics")
    for name in ANALYTICS_TABLES:
        folder = analytics.child(name)
        stamp = folder.child("_compliance.json")
        if stamp.exists():
            values |= {str(value) for value in json.loads(stamp.read_bytes()).values()}
        for part in table_files(folder):
            metadata = pq.read_schema(part.path, filesystem=folder.filesystem).metadata or {}
            values |= {v.decode("utf-8", errors="replace") for k, v in metadata.items()
                       if k.startswith((b"deid.", b"medical_assets."))}
    return sorted(value for value in values if value)


def _findings_table(findings: list[Finding]) -> str:
    lines = ["| where | identifier kind | occurrences |", "| --- | --- | ---: |"]
    lines += [f"| {f.where} | {f.kind} | {f.count:,} |" for f in findings[:50]]
    return "\n".join(lines)


def _renames(location: Location) -> bool:
    return isinstance(location.filesystem, pafs.LocalFileSystem)


def plotly_js() -> str:
    """The plotly.js bundle the dashboard inlines: library code, cut out before the scan."""
    import plotly.offline  # here: a second to import, needed by this check only

    return plotly.offline.get_plotlyjs()
