"""PHI-zone assets: the HL7 and DICOM tables, each set read from its landing manifest by one Ray job."""

import dagster as dg

from medical_assets.defs import groups, versions
from medical_assets.defs.metadata import count_preview, preview_cache, table_metadata
from medical_assets.defs.raw import DICOM_MANIFEST, HL7_MANIFEST, dicom_landing_manifest, hl7_landing_manifest
from medical_assets.defs.resources import PipelineConfig, RayResource
from medical_assets.defs.selection import selected_results
from medical_assets.defs.specs import publishing_step, table_spec
from medical_assets.defs.staging import staging
from medical_assets.dicom.tables import TABLES as DICOM_TABLES
from medical_assets.engine import incremental, jobs
from medical_assets.hl7.tables import TABLES as HL7_TABLES
from medical_assets.landing import LEDGER_SCHEMA, code_fingerprint, ledger_table, plan_parse
from medical_assets.storage import TablePublication, count_rows, read_table, restrict_to_owner, write_table_atomically

_DESCRIPTIONS = {
    "hl7_messages": "One row per parsed HL7 message: header, patient identity and demographics (PHI).",
    "hl7_lab_results": "One row per OBX observation with its OBR order context (PHI).",
    "hl7_pharmacy_orders": "One row per RXE pharmacy order with its ORC, route and timing (PHI).",
    "hl7_encounters": "One row per message with a PV1 visit: class, location, doctor, service, admit and discharge (PHI).",
    "hl7_errors": "One row per HL7 message or file that could not be parsed, with a reason a person can act on.",
    "dicom_images": "One row per readable DICOM file: header attributes and pixel statistics of the stored values (PHI).",
    "dicom_thumbnails": (
        "One 64 x 64 normalised greyscale thumbnail (an Arrow tensor) per decoded image, for machine learning; "
        "PHI: burned-in text may show. Off with MEDICAL_ASSETS_DICOM_THUMBNAILS=0."
    ),
    "dicom_errors": "One row per file that is not readable DICOM, with the reason.",
}
# Columns whose value counts describe a table without describing a patient.
_PREVIEW_COLUMN = {
    "hl7_messages": "message_type",
    "hl7_lab_results": "observation_name",
    "hl7_pharmacy_orders": "give_name",
    "hl7_encounters": "event_type",
    "hl7_errors": "error",
    "dicom_images": "modality",
    "dicom_thumbnails": "frame_index",
    "dicom_errors": "error",
}


def _parsed_tables_asset(name: str, kind: str, tables: dict, manifest_asset, manifest_path: tuple, parse_files):
    @publishing_step(
        name,
        [
            table_spec(dg.AssetKey(table), [manifest_asset], groups.PHI,
                       {"hl7": versions.HL7_PARSE, "dicom": versions.DICOM_PARSE}[kind], {"parquet", kind}, _DESCRIPTIONS[table])
            for table in tables
        ],
    )
    def parsed_tables(context: dg.AssetExecutionContext, pipeline: PipelineConfig, ray_engine: RayResource):
        settings = pipeline.settings()
        phi = settings.zone("phi")
        for action in TablePublication.recover(phi):
            context.log.warning(f"PHI zone: {action} left by an interrupted run")
        manifest = read_table(settings.manifests.child(*manifest_path))
        ledger_location = phi.child(f"{kind}_parse_ledger")
        build = parse_build(kind, settings)
        plan = plan_parse(manifest, read_table(ledger_location) if ledger_location.exists() else None, build)
        files = plan.parse
        context.log.info(f"{kind.upper()} parse plan: {plan.reason}")

        def report(counts: dict, elapsed_s: float) -> None:
            done = counts.get("files", 0)
            rows = ", ".join(f"{counts.get(table, 0):,} {table}" for table in tables)
            context.log.info(
                f"{kind.upper()} read: {done:,}/{len(files):,} files ({done / max(elapsed_s, 1e-9):,.1f} files/s); {rows}"
            )

        restrict_to_owner(phi)  # before the first PHI byte is written
        if not plan.unchanged:
            publication = TablePublication(phi, run_id=context.run.run_id)
            with staging(context, settings, ray_engine, publication, phi_read=f"{kind.upper()} landing files to the PHI zone"):
                first_part = 0
                if not plan.full:  # keep what the last run parsed, minus the changed files
                    first_part = incremental.carry_over(phi, tables, plan.drop, publication, report)
                parse_files(files, settings, publication, report, first_part)
                write_table_atomically(ledger_table(manifest, build), publication.staged(ledger_location.name).child("part-00000.parquet"))
                publication.commit({**tables, ledger_location.name: LEDGER_SCHEMA})
            restrict_to_owner(phi)

        yield from selected_results(context, [
            dg.MaterializeResult(
                asset_key=table,
                metadata={
                    **table_metadata(phi.child(table), schema, count_rows(phi.child(table))),
                    "preview": count_preview(phi.child(table), _PREVIEW_COLUMN[table], cache=preview_cache(settings)),
                    "files parsed this run": len(files),
                    "parse plan": "full" if plan.full else "incremental",
                },
            )
            for table, schema in tables.items()
        ])

    return parsed_tables


def parse_build(kind: str, settings) -> str:
    """What the published tables depend on besides the files: the code that parses them and the
    output options. When it changes, the next run parses every file again."""
    packages = {"hl7": ["medical_assets.hl7"], "dicom": ["medical_assets.dicom"]}[kind]
    options = f"thumbnails={int(settings.dicom_thumbnails)}" if kind == "dicom" else ""
    return f"{code_fingerprint(packages)};{options}"


def _parse_hl7(files, settings, publication, report, first_part):
    return jobs.parse_hl7_files(files, settings.hl7_source.filesystem, publication, report, first_part)


def _parse_dicom(files, settings, publication, report, first_part):
    return jobs.parse_dicom_files(
        files, settings.dicom_source.filesystem, publication, report,
        with_thumbnails=settings.dicom_thumbnails, first_part=first_part,
    )


hl7_parsed_tables = _parsed_tables_asset(
    "hl7_parsed_tables", "hl7", HL7_TABLES, hl7_landing_manifest, HL7_MANIFEST, _parse_hl7
)
dicom_parsed_tables = _parsed_tables_asset(
    "dicom_parsed_tables", "dicom", DICOM_TABLES, dicom_landing_manifest, DICOM_MANIFEST, _parse_dicom
)
