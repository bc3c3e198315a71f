"""Asset checks on published tables: their schemas, the error rate, and that the zones agree.

The leak checks are not here: each runs inside its de-identified asset, on the staged output,
before anything is published (`defs.leak_gate`)."""

import dagster as dg
import pyarrow as pa

from medical_assets.defs.deidentified import deid_key
from medical_assets.defs.resources import PipelineConfig
from medical_assets.dicom.tables import DEID_DICOM_IMAGES
from medical_assets.dicom.tables import TABLES as DICOM_TABLES
from medical_assets.engine.file_schemas import file_schemas
from medical_assets.hl7.tables import TABLES as HL7_TABLES
from medical_assets.privacy.hl7_deid_tables import DEID_HL7_TABLES
from medical_assets.storage import count_rows

SCHEMA_CACHE = ("_census", "file_schemas")  # phi/_census/file_schemas/<zone>.<table>.json
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
            description="The published Parquet files have exactly the columns and types of the contract (README: The asset graph; docs/data-contract.md).",
        )
        for zone, table in _CONTRACT_TABLES
    ],
    can_subset=True,
)
def contract_schemas(context: dg.AssetCheckExecutionContext, pipeline: PipelineConfig):
    settings = pipeline.settings()
    schema_cache = settings.zone("phi").child(*SCHEMA_CACHE)
    selected = {key.asset_key for key in context.selected_asset_check_keys}
    for (zone, table), expected in _CONTRACT_TABLES.items():
        if _asset_key_of(zone, table) not in selected:
            continue
        location = settings.zone(zone).child(table)
        if not location.exists():
            yield dg.AssetCheckResult(
                asset_key=_asset_key_of(zone, table), check_name="schema_matches_contract", passed=False,
                metadata={"problem": "table not published"},
            )
            continue
        # Every file's own schema, from its footer (no data read: tables run to gigabytes), read
        # once a file: kept in the PHI zone's cache by the file's name, size and time.
        found = file_schemas(location, schema_cache)
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


def _zones_agree(asset: dg.AssetKey, deps: list, description: str):
    """A blocking check on `asset` that its zone accounts for every record of the PHI zone it came from."""
    return dg.asset_check(name="zones_agree", asset=asset, additional_deps=deps, blocking=True, description=description)


@_zones_agree(
    deid_key("hl7_messages"), ["hl7_messages"],
    "Every parsed message reached the de-identified zone: deid hl7_messages has one row per PHI hl7_messages row.",
)
def hl7_zones_agree(pipeline: PipelineConfig) -> dg.AssetCheckResult:
    settings = pipeline.settings()
    counts = _counts({
        "phi hl7_messages": settings.zone("phi").child("hl7_messages"),
        "deid hl7_messages": settings.zone("deid").child("hl7_messages"),
    })
    passed = None not in counts.values() and counts["phi hl7_messages"] == counts["deid hl7_messages"]
    return dg.AssetCheckResult(passed=passed, metadata=_shown(counts))


@_zones_agree(
    deid_key("dicom_images"), ["dicom_images", "dicom_deid_excluded"],
    "Every readable image is accounted for: each PHI dicom_images row is exported to deid/ or listed in "
    "dicom_deid_excluded with its reason.",
)
def dicom_zones_agree(pipeline: PipelineConfig) -> dg.AssetCheckResult:
    settings = pipeline.settings()
    phi = settings.zone("phi")
    counts = _counts({
        "phi dicom_images": phi.child("dicom_images"),
        "deid dicom_images": settings.zone("deid").child("dicom_images"),
        "dicom_deid_excluded": phi.child("dicom_deid_excluded"),
    })
    passed = None not in counts.values() and counts["phi dicom_images"] == counts["deid dicom_images"] + counts["dicom_deid_excluded"]
    return dg.AssetCheckResult(passed=passed, metadata=_shown(counts))


def _counts(tables: dict) -> dict[str, int | None]:
    """Rows per table; None for a table not published yet (which fails the check, and says so)."""
    return {name: count_rows(location) if location.exists() else None for name, location in tables.items()}


def _shown(counts: dict[str, int | None]) -> dict:
    return {name: "not published" if count is None else count for name, count in counts.items()}
