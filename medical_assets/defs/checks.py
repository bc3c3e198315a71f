"""Asset checks. The leak check blocks: if any identifier seen in the PHI zone appears in the
de-identified zone, the run fails before anything downstream reads the leak."""

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from medical_assets.analytics.tables import ANALYTICS_TABLES
from medical_assets.defs.analytics import ANALYTICS_FOLDER, analytics_key
from medical_assets.defs.audit import audited_phi_read
from medical_assets.defs.deidentified import DEID_FILES, deid_key
from medical_assets.defs.reports import REPORT_FIGURES, REPORTS_FOLDER, report_key
from medical_assets.defs.resources import PipelineConfig, RayResource
from medical_assets.engine import leak_jobs
from medical_assets.engine.analytics_jobs import Input, read_input
from medical_assets.engine.memory import release_memory
from medical_assets.privacy.leaks import (
    Finding,
    Identifiers,
    LeakScanner,
    collect_identifiers,
    identifier_columns,
    without_numbers_of,
)
from medical_assets.dicom.deidentify import DEID_DICOM_IMAGES
from medical_assets.dicom.tables import TABLES as DICOM_TABLES
from medical_assets.hl7.tables import TABLES as HL7_TABLES
from medical_assets.privacy.hl7_deid import DEID_HL7_TABLES
from medical_assets.storage import Location, count_rows, read_table

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


def _leak_check(
    name: str,
    asset: dg.AssetKey,
    scanned: list[str],
    also_after: list[dg.AssetKey],
    library_texts=(),
    drawn_from_analytics: bool = False,
    aggregates: bool = False,
):
    @dg.asset_check(
        name=name,
        asset=asset,
        additional_deps=also_after,
        blocking=True,
        description=(
            "Fails if any identifier of the PHI zone (names, IDs, phone numbers, SSNs, street lines, birth dates, "
            f"original DICOM UIDs) appears anywhere in deid/{{{', '.join(scanned)}}}: Parquet values and metadata, "
            "DICOM elements, any other file. Findings name the file and column or tag, never the value."
        ),
    )
    def leak_check(
        context: dg.AssetCheckExecutionContext, pipeline: PipelineConfig, ray_engine: RayResource
    ) -> dg.AssetCheckResult:
        settings = pipeline.settings()
        with audited_phi_read(context, settings, f"leak check of deid/{asset.path[-1]}", None):
            ray_engine.ensure_started()
            with ray_engine.transient_failures_retried():
                findings, identifier_count = _scan_for_leaks(
                    context.run.run_id, settings, scanned, [t() for t in library_texts], drawn_from_analytics, aggregates
                )
        release_memory()  # the identifiers are gone: the run's process need not keep their peak
        lines = ["| where | identifier kind | occurrences |", "| --- | --- | ---: |"]
        lines += [f"| {f.where} | {f.kind} | {f.count:,} |" for f in findings[:50]]
        return dg.AssetCheckResult(
            passed=not findings,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "identifiers checked": identifier_count,
                "de-identification profile": settings.deid_profile,
                "findings": len(findings),
                "where": dg.MetadataValue.md("\n".join(lines) if findings else "no identifier found"),
            },
        )

    return leak_check


def _scan_for_leaks(
    run_id: str, settings, scanned: list[str], library_texts: list[str], drawn_from_analytics: bool, aggregates: bool
) -> tuple[list[Finding], int]:
    """The findings in deid/{scanned}, and how many identifiers were looked for."""
    identifiers = _phi_identifiers(run_id, settings.zone("phi"))
    if settings.deid_profile == "date_shift":
        # Shifted dates are meant to look like dates, and one will often equal another
        # patient's real birth date: the shift, not this check, protects them.
        identifiers = {value: kind for value, kind in identifiers.items() if kind != "patient_birth_date"}
    if drawn_from_analytics:
        identifiers = without_numbers_of(identifiers, _published_analytics(settings))
        _scanner_cache.clear()  # the run's last check: at 5,000,000 messages the cached scanner is 1.7 GB
        scanner = LeakScanner(identifiers, library_texts, aggregates=aggregates)
    else:
        scanner = _scanner(run_id, settings.deid_profile, identifiers, library_texts, aggregates)
    deid = settings.zone("deid")
    return leak_jobs.scan_trees(scanner, [deid.child(folder) for folder in scanned]), len(identifiers)


# The identifiers of the PHI tables as a run's first leak check found them: the run's four checks read
# the same tables (at a million messages, 2.5 s each). One entry, keyed by the run and every file's
# path, size and time, so another run or a rewritten table is read afresh.
_identifier_cache: dict[tuple, Identifiers] = {}


def _phi_identifiers(run_id: str, phi: Location) -> Identifiers:
    key = (run_id, phi.uri, tuple(_file_versions(phi.child(t)) for t in _IDENTIFIER_SOURCES))
    if key not in _identifier_cache:
        _identifier_cache.clear()
        tables = {t: _ColumnsOnDemand(phi.child(t)) for t in _IDENTIFIER_SOURCES if phi.child(t).exists()}
        _identifier_cache[key] = collect_identifiers(tables)
    return _identifier_cache[key]


class _ColumnsOnDemand:
    """A PHI table as `collect_identifiers` reads it: its identifier columns, each read from Parquet
    when asked for and dropped after, so the run's process holds one column (two for names) and the
    identifiers found. At 5,000,000 messages the collection's peak fell from 1.7 GB to 1.0 GB."""

    def __init__(self, location: Location):
        self._location = location
        present = set(pads.dataset(location.path, filesystem=location.filesystem, format="parquet").schema.names)
        self.column_names = [name for name in identifier_columns(location.name) if name in present]

    def column(self, name: str) -> pa.ChunkedArray:
        return read_table(self._location, columns=[name]).column(0)


# The last scanner built, for the next check that looks for the same identifiers the same way (the
# HL7 and DICOM checks): at 2,000,000 messages, building one took 0.6 s of the run's process.
_scanner_cache: dict[tuple, LeakScanner] = {}


def _scanner(run_id: str, profile: str, identifiers, library_texts: list[str], aggregates: bool) -> LeakScanner:
    key = (run_id, next(iter(_identifier_cache), None), profile, tuple(hash(t) for t in library_texts), aggregates)
    if key not in _scanner_cache:
        _scanner_cache.clear()
        _scanner_cache[key] = LeakScanner(identifiers, library_texts, aggregates=aggregates, measurements=MEASUREMENT_COLUMNS)
    return _scanner_cache[key]


def _file_versions(folder: Location) -> tuple:
    selector = pafs.FileSelector(folder.path, recursive=True, allow_not_found=True)
    infos = folder.filesystem.get_file_info(selector)
    return tuple(sorted((info.path, info.size, info.mtime_ns) for info in infos if info.type == pafs.FileType.File))


def _published_analytics(settings) -> list[pa.Table]:
    """The analytics tables as published (in the configured export format), for the numbers they show."""
    analytics = settings.zone("deid").child(ANALYTICS_FOLDER)
    inputs = [
        Input(analytics.child(name), None, settings.export_format, schema) for name, schema in ANALYTICS_TABLES.items()
    ]
    return [table for table in map(read_input, inputs) if table is not None]


def plotly_js() -> str:
    """The plotly.js bundle the dashboard inlines: library code, cut out before the scan."""
    import plotly.offline  # here: a second to import, needed by this check only

    return plotly.offline.get_plotlyjs()


hl7_deid_leak_check = _leak_check(
    "no_identifiers_leaked_hl7",
    deid_key("hl7_messages"),
    ["hl7_messages", "hl7_lab_results", "hl7_pharmacy_orders", "hl7_encounters"],
    [deid_key(t) for t in ("hl7_lab_results", "hl7_pharmacy_orders", "hl7_encounters")],
)
dicom_deid_leak_check = _leak_check(
    "no_identifiers_leaked_dicom",
    deid_key("dicom_images"),
    ["dicom_images", "dicom_thumbnails", DEID_FILES],
    [deid_key("dicom_thumbnails"), deid_key("dicom_files")],
)
_FIRST_ANALYTICS, *_OTHER_ANALYTICS = ANALYTICS_TABLES
analytics_leak_check = _leak_check(
    "no_identifiers_leaked_analytics",
    analytics_key(_FIRST_ANALYTICS),
    [ANALYTICS_FOLDER],
    [analytics_key(t) for t in _OTHER_ANALYTICS],
    aggregates=True,
)
reports_leak_check = _leak_check(
    "no_identifiers_leaked_reports",
    report_key("dashboard"),
    [REPORTS_FOLDER],
    [report_key(name) for name in REPORT_FIGURES],
    library_texts=[plotly_js],
    drawn_from_analytics=True,
)


# Contract tables and the schema each must have, per zone.
_CONTRACT_TABLES = {
    **{("phi", name): schema for name, schema in HL7_TABLES.items()},
    **{("phi", name): schema for name, schema in DICOM_TABLES.items()},
    **{("deid", name): schema for name, schema in DEID_HL7_TABLES.items()},
    ("deid", "dicom_images"): DEID_DICOM_IMAGES,
}


def _asset_key_of(zone: str, table: str) -> dg.AssetKey:
    return deid_key(table) if zone == "deid" else dg.AssetKey(table)


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            "schema_matches_contract",
            asset=_asset_key_of(zone, table),
            description="The published Parquet files have exactly the columns and types of the contract (DESIGN.md, Contract 3).",
        )
        for zone, table in _CONTRACT_TABLES
    ]
)
def contract_schemas(context: dg.AssetCheckExecutionContext, pipeline: PipelineConfig):
    settings = pipeline.settings()
    for (zone, table), expected in _CONTRACT_TABLES.items():
        location = settings.zone(zone).child(table)
        if not location.exists():
            yield dg.AssetCheckResult(
                asset_key=_asset_key_of(zone, table), check_name="schema_matches_contract", passed=False,
                metadata={"problem": "table not published"},
            )
            continue
        # Every file's own schema, from its footer (no data read: tables run to gigabytes).
        found = [fragment.physical_schema for fragment in pads.dataset(
            location.path, filesystem=location.filesystem, format="parquet"
        ).get_fragments()]  # fmt: skip
        problems = list(dict.fromkeys(p for schema in found for p in schema_differences(expected, schema)))
        if not found:
            problems = ["no Parquet file in the table's folder"]
        yield dg.AssetCheckResult(
            asset_key=_asset_key_of(zone, table),
            check_name="schema_matches_contract",
            passed=not problems,
            metadata={"problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none")},
        )


def schema_differences(expected: pa.Schema, found: pa.Schema) -> list[str]:
    """Column by column, what differs (names and types only: schema metadata is free to vary)."""
    problems = [f"missing column `{f.name}`" for f in expected if f.name not in found.names]
    problems += [f"unexpected column `{f.name}`" for f in found if f.name not in expected.names]
    problems += [
        f"`{f.name}` is {found.field(f.name).type}, the contract says {f.type}"
        for f in expected
        if f.name in found.names and not found.field(f.name).type.equals(f.type)
    ]
    return problems


@dg.asset_check(
    asset="hl7_messages",
    additional_deps=["hl7_errors"],
    description=(
        "The share of HL7 messages (and unreadable files) that landed in hl7_errors stays under "
        "MEDICAL_ASSETS_MAX_ERROR_RATE (default 5%). A warning, not a stop: the good messages are still good."
    ),
)
def hl7_error_rate(pipeline: PipelineConfig) -> dg.AssetCheckResult:
    settings = pipeline.settings()
    phi = settings.zone("phi")
    messages = count_rows(phi.child("hl7_messages"))
    errors = count_rows(phi.child("hl7_errors"))
    rate = errors / (messages + errors) if messages + errors else 0.0
    return dg.AssetCheckResult(
        passed=rate <= settings.max_error_rate,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"error rate": rate, "threshold": settings.max_error_rate, "messages": messages, "errors": errors},
    )


@dg.asset_check(
    asset=deid_key("hl7_messages"),
    additional_deps=["hl7_messages", deid_key("dicom_images"), "dicom_images", "dicom_deid_excluded"],
    blocking=True,
    description=(
        "Every parsed record reached the de-identified zone or is explained: deid hl7_messages has one row per "
        "PHI hl7_messages row; every PHI dicom_images row is exported or listed in dicom_deid_excluded."
    ),
)
def zones_agree(pipeline: PipelineConfig) -> dg.AssetCheckResult:
    settings = pipeline.settings()
    phi, deid = settings.zone("phi"), settings.zone("deid")
    counts = {
        "phi hl7_messages": count_rows(phi.child("hl7_messages")),
        "deid hl7_messages": count_rows(deid.child("hl7_messages")),
        "phi dicom_images": count_rows(phi.child("dicom_images")),
        "deid dicom_images": count_rows(deid.child("dicom_images")),
        "dicom_deid_excluded": count_rows(phi.child("dicom_deid_excluded")),
    }
    passed = (
        counts["phi hl7_messages"] == counts["deid hl7_messages"]
        and counts["phi dicom_images"] == counts["deid dicom_images"] + counts["dicom_deid_excluded"]
    )
    return dg.AssetCheckResult(passed=passed, metadata=counts)
