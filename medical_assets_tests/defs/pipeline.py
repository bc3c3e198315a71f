"""The whole code location through dagster.materialize, with settings of the test's choosing."""

import dagster as dg

from medical_assets.defs.resources import PipelineConfig, PrivacyResource, RayResource


def materialize_all(data_dir, key: str, selection=None, messages: int = 400, dicom_files: int = 10, **settings):
    """Every asset and check of the definitions (or `selection` of them) on a small synthetic corpus
    under `data_dir`, with a real local Ray on 2 CPUs; `settings` are further PipelineConfig fields."""
    from medical_assets.definitions import defs

    return dg.materialize(
        [defs.get_assets_def(asset) for asset in defs.resolve_all_asset_keys()] + list(defs.asset_checks or []),
        selection=selection,
        resources={
            "pipeline": PipelineConfig(
                data_dir=str(data_dir), synthetic_hl7_messages=messages, synthetic_dicom_files=dicom_files, **settings
            ),
            "ray_engine": RayResource(num_cpus=2),
            "privacy": PrivacyResource(pseudonym_key=key),
        },
        raise_on_error=False,
    )
