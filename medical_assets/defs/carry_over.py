"""A step carries its published output over when nothing it depends on changed since the run that
made it (`medical_assets.step_records`): its checks report that run's scan, its assets the tables
as they are. The run's log says so, or why the step computes."""

import dagster as dg

from medical_assets.config import RECOMPUTE_VAR, PipelineSettings
from medical_assets.privacy.keys import KeyRing, derived_key_id
from medical_assets.step_records import CarriedOver, Decision, StepBasis, StepRecord
from medical_assets.storage import Location

CARRIED_OVER = "carried over from run"  # metadata of an asset whose step carried its output over


def decide(
    context: dg.AssetExecutionContext, settings: PipelineSettings, step: str, basis: StepBasis, outputs: dict[str, Location]
) -> tuple[StepRecord, Decision]:
    record = StepRecord(settings.manifests, step)
    decision = record.decide(basis, outputs, recompute=f"{RECOMPUTE_VAR} is set" if settings.recompute else "")
    if decision.carried is not None:
        context.log.info(
            f"{step}: no input, setting or code changed since run {decision.carried.run_id} published its output: carried over"
        )
    else:
        context.log.info(f"{step}: computed, because {decision.reason}")
    return record, decision


def key_settings(ring: KeyRing, settings: PipelineSettings) -> dict[str, object]:
    """The settings every de-identified output depends on: the keys, each by its id and by the
    public digest of its secret (a user may keep an id and change the secret), and the profile."""
    return {
        "keys": ",".join(f"{key.key_id}={derived_key_id(key.secret)}" for key in ring.keys),
        "release scope": ring.current.release_scope or "",
        "profile": settings.deid_profile,
    }


def marked(results: list[dg.MaterializeResult], carried: CarriedOver) -> list[dg.MaterializeResult]:
    """`results` saying which run made the output they carry over (the tables' own stamps say so too)."""
    return [
        dg.MaterializeResult(
            asset_key=result.asset_key, metadata={**(result.metadata or {}), CARRIED_OVER: dg.MetadataValue.text(carried.run_id)}
        )
        for result in results
    ]
