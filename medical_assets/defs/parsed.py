"""PHI-zone assets: HL7 messages, lab results and quarantined errors, parsed by one Ray job."""

import dagster as dg

from medical_assets.defs import groups
from medical_assets.defs.metadata import count_preview, table_metadata
from medical_assets.defs.raw import hl7_landing_manifest
from medical_assets.defs.resources import PipelineConfig, RayResource
from medical_assets.engine import jobs
from medical_assets.hl7.tables import TABLES as HL7_TABLES
from medical_assets.landing import files_from_manifest
from medical_assets.storage import TablePublication, read_table

_DESCRIPTIONS = {
    "hl7_messages": "One row per parsed HL7 message: header, patient identity and demographics (PHI).",
    "hl7_lab_results": "One row per OBX observation with its OBR order context (PHI).",
    "hl7_errors": "One row per HL7 message or file that could not be parsed, with a reason a person can act on.",
}
# Columns whose value counts describe a table without describing a patient.
_PREVIEW_COLUMN = {"hl7_messages": "message_type", "hl7_lab_results": "observation_name", "hl7_errors": "error"}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            name,
            deps=[hl7_landing_manifest],
            group_name=groups.PHI,
            kinds={"ray", "parquet", "hl7"},
            description=_DESCRIPTIONS[name],
            tags={"zone": "phi"},
        )
        for name in HL7_TABLES
    ],
    pool=groups.RAY_POOL,
)
def hl7_parsed_tables(context: dg.AssetExecutionContext, pipeline: PipelineConfig, ray_engine: RayResource):
    settings = pipeline.settings()
    phi = settings.zone("phi")
    for action in TablePublication.recover(phi):
        context.log.warning(f"PHI zone: {action} left by an interrupted run")

    manifest = read_table(settings.manifests.child("hl7_landing", "manifest.parquet"))
    files = files_from_manifest(manifest)
    total_files = len(files)

    def report(counts: dict, elapsed_s: float) -> None:
        messages = counts.get("hl7_messages", 0) + counts.get("hl7_errors", 0)
        context.log.info(
            f"HL7 parse: {counts.get('files', 0):,}/{total_files:,} files, {messages:,} messages "
            f"({messages / max(elapsed_s, 1e-9):,.0f}/s), {counts.get('hl7_errors', 0):,} quarantined"
        )

    publication = TablePublication(phi, run_id=context.run.run_id)
    try:
        if files:
            ray_engine.ensure_started()
        counts = jobs.parse_hl7_files(files, settings.hl7_source.filesystem, publication, report)
        publication.commit(HL7_TABLES)
    except BaseException:
        publication.abandon()
        raise

    for name, schema in HL7_TABLES.items():
        location = phi.child(name)
        yield dg.MaterializeResult(
            asset_key=name,
            metadata={
                **table_metadata(location, schema, counts.get(name, 0)),
                "preview": count_preview(location, _PREVIEW_COLUMN[name]),
            },
        )
