"""The unattended side: one job for the whole graph, a nightly schedule, and a sensor for new landing files."""

import dagster as dg

from medical_assets.defs.raw import DICOM_MANIFEST, HL7_MANIFEST
from medical_assets.defs.resources import PipelineConfig
from medical_assets.dicom import is_dicom_candidate
from medical_assets.landing import changed_files, run_key_for
from medical_assets.sources.folder import DICOM_EXTENSIONS, HL7_EXTENSIONS, list_landing_files
from medical_assets.storage import read_table

NIGHTLY_CRON = "0 2 * * *"
NIGHTLY_TIMEZONE = "UTC"

full_pipeline_job = dg.define_asset_job(
    "full_pipeline",
    selection=dg.AssetSelection.all(),
    description="Every asset and check: landing manifests, PHI tables, de-identified zone, analytics and reports.",
)

nightly_schedule = dg.ScheduleDefinition(
    name="nightly_full_pipeline",
    job=full_pipeline_job,
    cron_schedule=NIGHTLY_CRON,
    execution_timezone=NIGHTLY_TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="The whole graph every night at 02:00 UTC (needs the daemon: `make dev`).",
)


@dg.sensor(
    job=full_pipeline_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Requests a run when a landing file is new or changed (size or modification time differ from the last "
        "manifest). The run key is derived from those file versions, so the same files never start a second run."
    ),
)
def new_landing_files(context: dg.SensorEvaluationContext, pipeline: PipelineConfig):
    settings = pipeline.settings()
    sources = [
        ("hl7", settings.hl7_source, HL7_EXTENSIONS, None, HL7_MANIFEST),
        ("dicom", settings.dicom_source, DICOM_EXTENSIONS, is_dicom_candidate, DICOM_MANIFEST),
    ]
    changed_by_kind = {}
    for kind, source, extensions, accept, manifest_path in sources:
        if not source.is_dir():
            continue  # a missing source is the run's configuration error to report, not the sensor's
        manifest = settings.manifests.child(*manifest_path)
        known = read_table(manifest) if manifest.exists() else None
        changed = changed_files(list_landing_files(source, extensions, accept_without_extension=accept), known)
        if changed:
            changed_by_kind[kind] = changed
    if not changed_by_kind:
        return dg.SkipReason("no new or changed landing files since the last manifests")
    key = "+".join(run_key_for(kind, files) for kind, files in sorted(changed_by_kind.items()))
    counts = {kind: len(files) for kind, files in changed_by_kind.items()}
    context.log.info(f"new or changed landing files: {counts}")
    return dg.RunRequest(run_key=key, tags={f"landing/{kind}_files": str(n) for kind, n in counts.items()})
