"""The one Definitions object of the project: assets, checks, resources and the executor."""

import os

import dagster as dg

from medical_assets.defs import analytics, checks, deidentified, parsed, raw, reports, schedules
from medical_assets.defs.resources import PipelineConfig, PrivacyResource, RayResource
from medical_assets.privacy.keys import PSEUDONYM_KEY_VAR

# The secret reaches the resource as an EnvVar, so Dagster shows the variable's name, never its
# value. Unset, the resource falls back to a development key (and warns on every run).
_privacy = PrivacyResource(pseudonym_key=dg.EnvVar(PSEUDONYM_KEY_VAR)) if os.environ.get(PSEUDONYM_KEY_VAR) else PrivacyResource()

defs = dg.Definitions(
    assets=[
        raw.synthetic_hl7_files,
        raw.hl7_landing_manifest,
        parsed.hl7_parsed_tables,
        raw.synthetic_dicom_files,
        raw.dicom_landing_manifest,
        parsed.dicom_parsed_tables,
        deidentified.hl7_deidentified_tables,
        deidentified.dicom_deidentified_export,
        analytics.analytics_tables,
        reports.dashboards,
    ],
    asset_checks=[
        checks.contract_schemas,
        checks.hl7_error_rate,
        checks.zones_agree,
    ],
    jobs=[schedules.full_pipeline_job],
    schedules=[schedules.nightly_schedule],
    sensors=[schedules.new_landing_files],
    resources={"pipeline": PipelineConfig(), "ray_engine": RayResource(), "privacy": _privacy},
    # One process per run, so Ray starts once per run rather than once per step.
    executor=dg.in_process_executor,
)
