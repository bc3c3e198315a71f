"""Dashboards of `deid/reports/`: one self-contained HTML page (plotly.js inlined, opens offline)
and PNG figures (matplotlib), drawn from the published analytics tables and the exported thumbnails.

Each figure is an asset of its own, whose materialization shows the figure in the Dagster UI
(a PNG embedded in markdown, Dagster's documented way); the HTML asset links to its file.
"""

import base64
import json

import dagster as dg
import pyarrow.compute as pc

from medical_assets.analytics.chart_data import DASHBOARD_FILE, PNG_SIZES
from medical_assets.analytics.privacy_report import printed_counts, privacy_report_markdown, render_privacy_report
from medical_assets.analytics.tables import ANALYTICS_TABLES
from medical_assets.defs import carry_over, groups, leak_gate, versions
from medical_assets.defs.analytics import ANALYTICS_LEAK_CHECK, analytics_key
from medical_assets.defs.carry_over import key_settings
from medical_assets.defs.deidentified import (
    DICOM_LEAK_CHECK,
    HL7_LEAK_CHECK,
    PRIVACY_FOLDER,
    compliance_stamp,
    deid_key,
)
from medical_assets.defs.resources import PipelineConfig, PrivacyResource, RayResource
from medical_assets.defs.selection import selected_results
from medical_assets.defs.specs import publishing_step, table_spec
from medical_assets.defs.staging import recovered_publication, staging
from medical_assets.engine import analytics_jobs
from medical_assets.step_records import StepBasis

REPORTS_FOLDER = "reports"
REPORT_FIGURES = {name.removesuffix(".png"): name for name in PNG_SIZES}
_DESCRIPTIONS = {
    "dashboard": "Interactive dashboard (self-contained HTML, no script from the internet): every analytics table.",
    "utilization": "Messages, admissions, discharges, labs and orders per facility and month (PNG).",
    "demographics": "Patients by gender and age band (PNG).",
    "labs": "Lab volumes, abnormal rates and value distributions (PNG).",
    "imaging_workload": "Imaging workload, pixel statistics and transfer syntaxes per modality (PNG).",
    "dicom_preview": "Exported (de-identified, no burned-in text) images with intensity histograms (PNG).",
}


# What each figure is drawn from (the graph's edges): the dashboard shows every table.
_INPUTS = {
    "dashboard": [*(analytics_key(t) for t in ANALYTICS_TABLES), deid_key("dicom_thumbnails"), deid_key("dicom_images")],
    "utilization": [analytics_key("hospital_utilization")],
    "demographics": [analytics_key("patient_demographics")],
    "labs": [analytics_key("lab_results")],
    "imaging_workload": [analytics_key("imaging"), analytics_key("imaging_transfer_syntaxes")],
    "dicom_preview": [deid_key("dicom_thumbnails"), deid_key("dicom_images")],
}

REPORTS_LEAK_CHECK = "no_identifiers_leaked_reports"
PRIVACY_REPORT_FILE = "privacy.html"


def write_privacy_report(settings, folder, run_id: str, key_id: str) -> dict:
    """`privacy.html` beside the dashboards: what the de-identification withheld and kept out, the
    suppression, and the leak checks' detectors; counts and column names only, never a value.
    Returns the summary it shows, for the asset's metadata."""
    summary = privacy_summary(settings, run_id, key_id)
    folder.child(PRIVACY_REPORT_FILE).write_bytes_atomically(render_privacy_report(summary).encode())
    return summary


def privacy_summary(settings, run_id: str, key_id: str) -> dict:
    steps = {}
    for step in ("hl7", "dicom"):
        location = settings.manifests.child(PRIVACY_FOLDER, f"{step}.json")
        steps[step] = json.loads(location.read_bytes()) if location.exists() else {}
    analytics = settings.zone("deid").child("analytics")
    suppressed = []
    for name, schema in ANALYTICS_TABLES.items():
        table = analytics_jobs.read_input(analytics_jobs.Input(analytics.child(name), None, settings.export_format, schema))
        if table is not None and "suppressed_cells" in table.column_names:
            suppressed.append({"table": name, "cells": int(pc.sum(table["suppressed_cells"]).as_py() or 0)})
    checks = [HL7_LEAK_CHECK, DICOM_LEAK_CHECK, ANALYTICS_LEAK_CHECK, REPORTS_LEAK_CHECK]
    return {
        "run_id": run_id,
        "profile": settings.deid_profile,
        "key_id": key_id,
        "withheld": steps["hl7"].get("withheld", []),
        "excluded_images": steps["dicom"].get("excluded_images", []),
        "suppressed_cells": suppressed,
        # Every published output passed its check: one that fails is never published (publish on pass).
        "leak_checks": [{"check": name, "detectors": leak_gate.DETECTORS, "findings": 0, "passed": True} for name in checks],
        "vocabulary_threshold": settings.vocabulary_min_patients,
        "suppression_threshold": settings.suppression_threshold,
    }


def report_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["deid", REPORTS_FOLDER, name])


@publishing_step(
    "dashboards",
    [
        table_spec(report_key(name), _INPUTS[name], groups.REPORTS, versions.ANALYTICS,
                   {"html" if name == "dashboard" else "png"}, _DESCRIPTIONS[name])
        for name in ["dashboard", *REPORT_FIGURES]
    ],
    REPORTS_LEAK_CHECK,
    "deid/reports/",
)
def dashboards(context: dg.AssetExecutionContext, pipeline: PipelineConfig, ray_engine: RayResource, privacy: PrivacyResource):
    settings = pipeline.settings()
    ring = privacy.key_ring(settings, context.log)
    key = ring.current
    deid = settings.zone("deid")
    stamp = compliance_stamp(
        settings.deid_profile, key.key_id, context.run.run_id, suppression_threshold=str(settings.suppression_threshold)
    )
    publication = recovered_publication(context, deid)
    # Drawn from the analytics and the exported thumbnails; the privacy report from the steps' records.
    inputs = leak_gate.leak_check_inputs(settings) | {
        "deid/analytics": deid.child("analytics"),
        "deid/dicom_thumbnails": deid.child("dicom_thumbnails"),
        "deid/dicom_images": deid.child("dicom_images"),
        "privacy records": settings.manifests.child(PRIVACY_FOLDER),
    }
    basis = StepBasis(
        {**key_settings(ring, settings), "suppression threshold": settings.suppression_threshold, "format": settings.export_format,
         "vocabulary threshold": settings.vocabulary_min_patients},
        inputs,
    )
    outputs = {f"deid/{REPORTS_FOLDER}": deid.child(REPORTS_FOLDER)}
    record, decision = carry_over.decide(context, settings, "dashboards", basis, outputs)
    if decision.carried is not None:
        yield from leak_gate.carried_over_checks(
            context, REPORTS_LEAK_CHECK, [report_key(n) for n in ["dashboard", *REPORT_FIGURES]],
            decision.carried.details["check"], decision.carried.run_id,
        )
        results = _results(settings, decision.carried.details["privacy report"])
        yield from selected_results(context, carry_over.marked(results, decision.carried))
        return
    with staging(context, settings, ray_engine, publication):
        leak_gate.prepare_identifier_index(context.run.run_id, settings, merged=False)  # while the reports are drawn
        files = analytics_jobs.build_reports(
            deid.child("analytics"), settings.export_format, deid, publication.staged(REPORTS_FOLDER),
            stamp, settings.suppression_threshold,
        )
        privacy_report = write_privacy_report(settings, publication.staged(REPORTS_FOLDER), context.run.run_id, key.key_id)
    scan = yield from leak_gate.publish_if_clean(
        context, settings, publication, REPORTS_LEAK_CHECK, [report_key(n) for n in ["dashboard", *REPORT_FIGURES]], [REPORTS_FOLDER],
        lambda: publication.commit({}, folders=[REPORTS_FOLDER]),
        # Library code and the stamp we wrote (run id, creation time, version) are not data.
        library_texts=[leak_gate.plotly_js(), *stamp.values()], drawn_from_analytics=True,
        counts=printed_counts(privacy_report), merged_index=False,
    )
    summary = privacy_report_markdown(privacy_report)
    record.save(basis, decision, outputs, context.run.run_id, {"check": scan, "privacy report": summary})
    context.log.info(f"reports: {', '.join(files)} published")
    yield from selected_results(context, _results(settings, summary))


def _results(settings, privacy_summary: str) -> list[dg.MaterializeResult]:
    folder = settings.zone("deid").child(REPORTS_FOLDER)
    dashboard = folder.child(DASHBOARD_FILE)
    results = [dg.MaterializeResult(
        asset_key=report_key("dashboard"),
        metadata={
            "dagster/uri": dashboard.uri,
            # A browser opens no file:// link from a web page, so the UI shows where the file is (with
            # a copy button) rather than a link that lands elsewhere; the file opens offline.
            "open in a browser": dg.MetadataValue.path(dashboard.uri),
            "size (bytes)": len(dashboard.read_bytes()),
            # Text, not a number: the Plots tab would chart a setting as if it were a measurement.
            "suppression threshold": dg.MetadataValue.text(str(settings.suppression_threshold)),
            "privacy report": dg.MetadataValue.md(privacy_summary),
        },
    )]
    for name, file_name in REPORT_FIGURES.items():
        figure = folder.child(file_name)
        data = figure.read_bytes()
        results.append(dg.MaterializeResult(
            asset_key=report_key(name),
            metadata={
                "dagster/uri": figure.uri,
                "size (bytes)": len(data),
                # Aggregates with small cells suppressed and exported images only: safe to show.
                "figure": dg.MetadataValue.md(f"![{name}](data:image/png;base64,{base64.b64encode(data).decode()})"),
            },
        ))
    return results
