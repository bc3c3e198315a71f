"""The one Definitions object of the project: assets, resources and the executor."""

import dagster as dg

from medical_assets.defs import parsed, raw
from medical_assets.defs.resources import PipelineConfig, RayResource

defs = dg.Definitions(
    assets=[
        raw.synthetic_hl7_files,
        raw.hl7_landing_manifest,
        parsed.hl7_parsed_tables,
        raw.synthetic_dicom_files,
        raw.dicom_landing_manifest,
        parsed.dicom_parsed_tables,
    ],
    resources={"pipeline": PipelineConfig(), "ray_engine": RayResource()},
    # One process per run, so Ray starts once per run rather than once per step.
    executor=dg.in_process_executor,
)
