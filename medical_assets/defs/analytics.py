"""Analytics tables of `deid/analytics/<table>/`: aggregates of the de-identified tables, small
cells suppressed, stamped with the compliance metadata, in the configured export format.

The PHI zone is read for two things the de-identified tables cannot answer (a message's month,
parse errors), so the step leaves an audit record like every other PHI read.
"""

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from medical_assets.analytics.tables import ANALYTICS_TABLES
from medical_assets.defs import carry_over, groups, leak_gate, versions
from medical_assets.defs.carry_over import key_settings
from medical_assets.defs.deidentified import compliance_stamp
from medical_assets.defs.metadata import column_schema
from medical_assets.defs.resources import PipelineConfig, PrivacyResource, RayResource
from medical_assets.defs.selection import selected_results
from medical_assets.defs.specs import publishing_step, table_spec
from medical_assets.defs.staging import recovered_publication, staging
from medical_assets.engine import analytics_jobs
from medical_assets.engine.analytics_jobs import Input
from medical_assets.privacy.hl7_deid_tables import DEID_HL7_TABLES
from medical_assets.step_records import StepBasis

ANALYTICS_FOLDER = "analytics"
_DESCRIPTIONS = {
    "hospital_utilization": "Messages, admissions (A01), discharges (A03), lab results and pharmacy orders per facility and month.",
    "patient_demographics": "Distinct patients by gender and age band (at each patient's latest message).",
    "message_types": "Messages per message type and HL7 version, with each one's share.",
    "lab_results": "Per test: results, abnormal rate, and the distribution of numeric values.",
    "pharmacy": "Orders per medication and route, medications ranked by orders.",
    "imaging": "Studies, images and frames per modality, with pixel statistics.",
    "imaging_transfer_syntaxes": "Images per modality and transfer syntax.",
    "data_quality_files": "Per source file (as a token): parsed messages, parse errors, error rate, mean validation score.",
    "data_quality_facilities": "Per sending facility: parsed messages, parse errors, error rate, mean validation score.",
}
_PREVIEW_ROWS = 10

# What each table is computed from (the graph's edges). The utilization reads the PHI messages for
# MSH-7's month; the data quality tables read the PHI parse errors.
_INPUTS = {
    "hospital_utilization": ["deid/hl7_messages", "deid/hl7_lab_results", "deid/hl7_pharmacy_orders", "hl7_messages"],
    "patient_demographics": ["deid/hl7_messages"],
    "message_types": ["deid/hl7_messages"],
    "lab_results": ["deid/hl7_lab_results"],
    "pharmacy": ["deid/hl7_pharmacy_orders"],
    "imaging": ["deid/dicom_images"],
    "imaging_transfer_syntaxes": ["deid/dicom_images"],
    "data_quality_files": ["deid/hl7_messages", "hl7_errors"],
    "data_quality_facilities": ["deid/hl7_messages", "hl7_errors"],
}


ANALYTICS_LEAK_CHECK = "no_identifiers_leaked_analytics"


def analytics_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["deid", ANALYTICS_FOLDER, table])


@publishing_step(
    "analytics_tables",
    [
        table_spec(
            analytics_key(table), [dg.AssetKey.from_user_string(name) for name in _INPUTS[table]], groups.ANALYTICS,
            versions.ANALYTICS, {"parquet"},
            _DESCRIPTIONS[table] + " Counts from 1 to the suppression threshold are null (suppressed).",
        )
        for table in ANALYTICS_TABLES
    ],
    ANALYTICS_LEAK_CHECK, "deid/analytics/",
)
def analytics_tables(
    context: dg.AssetExecutionContext, pipeline: PipelineConfig, ray_engine: RayResource, privacy: PrivacyResource
):
    settings = pipeline.settings()
    ring = privacy.key_ring(settings, context.log)
    key = ring.current
    folder = settings.zone("deid").child(ANALYTICS_FOLDER)
    stamp = compliance_stamp(
        settings.deid_profile, key.key_id, context.run.run_id, suppression_threshold=str(settings.suppression_threshold)
    )
    publication = recovered_publication(context, folder)
    deid, phi = settings.zone("deid"), settings.zone("phi")
    # Every de-identified table (not only those read today: one more read must not go unnoticed),
    # the PHI tables it reads, and what its leak check reads.
    inputs = leak_gate.leak_check_inputs(settings) | {"phi/hl7_errors": phi.child("hl7_errors")} | {
        f"deid/{table}": deid.child(table) for table in (*DEID_HL7_TABLES, "dicom_images", "dicom_thumbnails")
    }
    basis = StepBasis(
        {**key_settings(ring, settings), "suppression threshold": settings.suppression_threshold, "format": settings.export_format},
        inputs,
    )
    outputs = {f"deid/analytics/{table}": folder.child(table) for table in ANALYTICS_TABLES}
    record, decision = carry_over.decide(context, settings, "analytics_tables", basis, outputs)
    if decision.carried is not None:
        yield from leak_gate.carried_over_checks(
            context, ANALYTICS_LEAK_CHECK, [analytics_key(t) for t in ANALYTICS_TABLES], decision.carried.details["check"],
            decision.carried.run_id,
        )
        results = _results(settings, decision.carried.details["counts"], key.key_id)
        yield from selected_results(context, carry_over.marked(results, decision.carried))
        return
    with staging(context, settings, ray_engine, publication, phi_read="analytics (message months, parse errors)", key_id=key.key_id):
        # Part by part: the tables are aggregates, a small search for the index's size.
        leak_gate.prepare_identifier_index(context.run.run_id, settings, merged=False)  # while the Ray job below runs
        counts = analytics_jobs.publish_analytics(
            settings.zone("deid"), settings.zone("phi"), {t: publication.staged(t) for t in ANALYTICS_TABLES},
            settings.export_format, stamp, key, settings.suppression_threshold, context.log.info,
        )
    tables = dict(ANALYTICS_TABLES) if settings.export_format == "parquet" else {}
    scan = yield from leak_gate.publish_if_clean(
        context, settings, publication, ANALYTICS_LEAK_CHECK, [analytics_key(t) for t in ANALYTICS_TABLES],
        list(ANALYTICS_TABLES),
        # Parquet exports are tables (Delta tables on an object store); CSV and JSON Lines exports are
        # folders of files, with no Parquet part to check for.
        lambda: publication.commit(tables, folders=[name for name in ANALYTICS_TABLES if name not in tables]),
        # The stamp we wrote beside a CSV or JSON Lines export (run id, creation time) is not data.
        library_texts=list(stamp.values()), aggregates=True, merged_index=False,
    )
    record.save(basis, decision, outputs, context.run.run_id, {"counts": counts, "check": scan})
    context.log.info(f"analytics: {len(counts)} tables published as {settings.export_format}")
    yield from selected_results(context, _results(settings, counts, key.key_id))


def _results(settings, counts, key_id) -> list[dg.MaterializeResult]:
    folder = settings.zone("deid").child(ANALYTICS_FOLDER)
    results = []
    for table, schema in ANALYTICS_TABLES.items():
        location = folder.child(table)
        published = analytics_jobs.read_input(Input(location, None, settings.export_format, schema))
        results.append(dg.MaterializeResult(
            asset_key=analytics_key(table),
            metadata={
                "dagster/row_count": counts.get(table, 0),
                "dagster/column_schema": column_schema(schema),
                "dagster/uri": location.uri,
                "format": settings.export_format,
                "suppression threshold": dg.MetadataValue.text(str(settings.suppression_threshold)),
                "suppressed cells": int(pc.sum(published["suppressed_cells"]).as_py() or 0) if published is not None else 0,
                "de-identification profile": settings.deid_profile,
                "key id": key_id,
                # Aggregates with small cells already suppressed: safe to show.
                "preview": dg.MetadataValue.md(markdown_preview(published, _PREVIEW_ROWS)),
            },
        ))
    return results


def markdown_preview(table: pa.Table | None, limit: int) -> str:
    if table is None or table.num_rows == 0:
        return "(no rows)"
    rows = table.slice(0, limit).to_pylist()
    lines = ["| " + " | ".join(table.column_names) + " |", "|" + " --- |" * len(table.column_names)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in table.column_names) + " |" for row in rows]
    more = f"{table.num_rows - limit:,} more rows; " if table.num_rows > limit else ""
    lines.append(f"\n({more}a null count is a suppressed cell)")
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:,.3g}"
    return str(value).replace("|", "\\|")
