"""How a step stages its output: publications recovered from interrupted runs and abandoned when the
step fails, inside a Ray step whose read of the PHI zone is audited."""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import dagster as dg

from medical_assets.config import PipelineSettings
from medical_assets.defs.audit import audited_phi_read
from medical_assets.defs.resources import RayResource
from medical_assets.storage import Location, TablePublication


def recovered_publication(context: dg.AssetExecutionContext, zone: Location) -> TablePublication:
    """A publication into `zone`, after finishing or undoing what an interrupted run left there."""
    for action in TablePublication.recover(zone):
        context.log.warning(f"{zone.name} zone: {action} left by an interrupted run")
    return TablePublication(zone, run_id=context.run.run_id)


@contextmanager
def staging(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    ray_engine: RayResource,
    *publications: TablePublication,
    phi_read: str | None = None,
    key_id: str | None = None,
) -> Iterator[None]:
    """Stage into `publications`: the PHI read audited (when `phi_read` says what is read), the
    transient failures of Ray jobs retried (Ray starts at the first job that needs its workers), and
    every publication abandoned if anything fails before the step commits."""
    with ExitStack() as stack:
        if phi_read:
            stack.enter_context(audited_phi_read(context, settings, phi_read, key_id))
        stack.enter_context(ray_engine.transient_failures_retried())
        try:
            yield
        except BaseException:
            for publication in publications:
                publication.abandon()
            raise
