"""Every step that reads PHI leaves a record in the PHI zone's append-only, hash-chained audit log, success or not."""

from contextlib import contextmanager

import dagster as dg

from medical_assets.config import PipelineSettings
from medical_assets.privacy.audit import SUCCESS, AuditLog, AuditRecord, failure

PIPELINE_PURPOSE = "scheduled pipeline run: parsing and de-identification"


@contextmanager
def audited_phi_read(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, settings: PipelineSettings, subject: str, key_id: str | None):
    """The record is written by the process that reads: its OS account is the actor, whatever
    MEDICAL_ASSETS_ACTOR declares (kept beside it as the declared actor)."""
    log = AuditLog.in_data_dir(settings.data_dir)

    def record(outcome: str) -> None:
        log.append(
            AuditRecord(
                action="read_phi",
                subject=subject,
                purpose=PIPELINE_PURPOSE,
                outcome=outcome,
                run_id=context.run.run_id,
                key_id=key_id,
            )
        )

    try:
        yield
    except BaseException as error:
        record(failure(type(error).__name__))
        raise
    record(SUCCESS)
