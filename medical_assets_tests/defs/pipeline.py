"""The whole code location through dagster.materialize, with settings of the test's choosing."""

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from medical_assets.config import IN_PROCESS_JOBS_VAR
from medical_assets.defs.resources import PipelineConfig, PrivacyResource, RayResource


@contextmanager
def every_job_in_ray() -> Iterator[None]:
    """MEDICAL_ASSETS_IN_PROCESS_JOBS=0 for the block: every job in Ray's workers, however small its
    input (for module and session fixtures, which cannot use monkeypatch)."""
    saved = os.environ.get(IN_PROCESS_JOBS_VAR)
    os.environ[IN_PROCESS_JOBS_VAR] = "0"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(IN_PROCESS_JOBS_VAR, None)
        else:
            os.environ[IN_PROCESS_JOBS_VAR] = saved


def materialize_all(
    data_dir, key: str, selection=None, messages: int = 400, dicom_files: int = 10, instance: dg.DagsterInstance | None = None,
    **settings,
):
    """Every asset and check of the definitions (or `selection` of them) on a small synthetic corpus
    under `data_dir`, with a real local Ray on 2 CPUs, recorded in `instance` (default: a throwaway
    one); `settings` are further PipelineConfig fields."""
    from medical_assets.definitions import defs

    return dg.materialize(
        [defs.get_assets_def(asset) for asset in defs.resolve_all_asset_keys()] + list(defs.asset_checks or []),
        selection=selection,
        instance=instance,
        resources={
            "pipeline": PipelineConfig(
                data_dir=str(data_dir), synthetic_hl7_messages=messages, synthetic_dicom_files=dicom_files, **settings
            ),
            "ray_engine": RayResource(num_cpus=2),
            "privacy": PrivacyResource(pseudonym_key=key),
        },
        raise_on_error=False,
    )


def materialize_planted_leak(data_dir, key: str, table: str, planted, merged_index: bool = True):
    """An asset that stages `planted` (an Arrow table) as deid/`table` and publishes it through the
    real leak gate: what a de-identification that let an identifier through would do.
    `merged_index=False`: the check searches the index part by part, as a night's checks do."""
    import pyarrow.parquet as pq

    from medical_assets.defs import leak_gate
    from medical_assets.storage import TablePublication

    checks = leak_gate.check_specs("planted_leak_check", [dg.AssetKey("planted")], f"deid/{table}")

    @dg.asset(name="planted", check_specs=checks)
    def planted_asset(context: dg.AssetExecutionContext, pipeline: PipelineConfig, ray_engine: RayResource):
        settings = pipeline.settings()
        ray_engine.ensure_started()
        publication = TablePublication(settings.zone("deid"), run_id=context.run.run_id)
        staged = publication.staged(table)
        staged.makedirs()
        pq.write_table(planted, staged.child("part-99999.parquet").path, filesystem=staged.filesystem)
        yield from leak_gate.publish_if_clean(
            context, settings, publication, "planted_leak_check", [dg.AssetKey("planted")], [table],
            lambda: publication.commit({}, folders=[table]), merged_index=merged_index,
        )
        yield dg.MaterializeResult()

    return dg.materialize(
        [planted_asset],
        resources={
            "pipeline": PipelineConfig(data_dir=str(data_dir)),
            "ray_engine": RayResource(num_cpus=2),
        },
        raise_on_error=False,
    )
