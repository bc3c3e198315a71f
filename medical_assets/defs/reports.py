"""Dashboards of `deid/reports/`: one self-contained HTML page (plotly.js inlined, opens offline)
and PNG figures (matplotlib), drawn from the published analytics tables and the exported thumbnails.

Each figure is an asset of its own, whose materialization shows the figure in the Dagster UI
(a PNG embedded in markdown, Dagster's documented way); the HTML asset links to its file.
"""

import base64

import dagster as dg

from medical_assets.analytics.figures import DASHBOARD_FILE, PNG_SIZES
from medical_assets.analytics.tables import ANALYTICS_TABLES
from medical_assets.defs import groups
from medical_assets.defs.analytics import analytics_key
from medical_assets.defs.deidentified import compliance_stamp, deid_key, recovered_publication
from medical_assets.defs.resources import PipelineConfig, PrivacyResource, RayResource
from medical_assets.engine import analytics_jobs

REPORTS_FOLDER = "reports"
REPORT_FIGURES = {name.removesuffix(".png"): name for name in PNG_SIZES}
_DESCRIPTIONS = {
    "dashboard": "Interactive dashboard (self-contained HTML, no script from the internet): every analytics table.",
    "utilization": "Messages, admissions, discharges, labs and orders per facility and month (PNG).",
    "demographics": "Patients by gender and age band (PNG).",
    "labs": "Lab volumes, abnormal rates and value distributions (PNG).",
    "imaging": "Imaging workload, pixel statistics and transfer syntaxes per modality (PNG).",
    "dicom_preview": "Exported (de-identified, no burned-in text) images with intensity histograms (PNG).",
}


def report_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["deid", REPORTS_FOLDER, name])


@dg.multi_asset(
    name="dashboards",
    specs=[
        dg.AssetSpec(
            report_key(name),
            deps=[*(analytics_key(t) for t in ANALYTICS_TABLES), deid_key("dicom_thumbnails"), deid_key("dicom_images")],
            group_name=groups.ANALYTICS,
            kinds={"ray", "html" if name == "dashboard" else "png"},
            description=_DESCRIPTIONS[name],
            tags={"zone": "deid"},
        )
        for name in ["dashboard", *REPORT_FIGURES]
    ],
    pool=groups.RAY_POOL,
)
def dashboards(context: dg.AssetExecutionContext, pipeline: PipelineConfig, ray_engine: RayResource, privacy: PrivacyResource):
    settings = pipeline.settings()
    key = privacy.key_ring(settings, context.log).current
    deid = settings.zone("deid")
    stamp = compliance_stamp(
        settings.deid_profile, key.key_id, context.run.run_id, suppression_threshold=str(settings.suppression_threshold)
    )
    publication = recovered_publication(context, deid)
    with ray_engine.transient_failures_retried():
        try:
            ray_engine.ensure_started()
            files = analytics_jobs.build_reports(
                deid.child("analytics"), settings.export_format, deid, publication.staged(REPORTS_FOLDER),
                stamp, settings.suppression_threshold,
            )
            publication.commit({}, folders=[REPORTS_FOLDER])
        except BaseException:
            publication.abandon()
            raise
    folder = deid.child(REPORTS_FOLDER)
    context.log.info(f"reports: {', '.join(files)} published")
    dashboard = folder.child(DASHBOARD_FILE)
    yield dg.MaterializeResult(
        asset_key=report_key("dashboard"),
        metadata={
            "dagster/uri": dashboard.uri,
            "open": dg.MetadataValue.url(dashboard.uri),
            "size (bytes)": len(dashboard.read_bytes()),
            "suppression threshold": settings.suppression_threshold,
        },
    )
    for name, file_name in REPORT_FIGURES.items():
        figure = folder.child(file_name)
        data = figure.read_bytes()
        yield dg.MaterializeResult(
            asset_key=report_key(name),
            metadata={
                "dagster/uri": figure.uri,
                "size (bytes)": len(data),
                # Aggregates with small cells suppressed and exported images only: safe to show.
                "figure": dg.MetadataValue.md(f"![{name}](data:image/png;base64,{base64.b64encode(data).decode()})"),
            },
        )
