"""Resources: the pipeline's settings and the Ray engine, both resolved when a run starts."""

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field, PrivateAttr

from medical_assets.config import (
    DICOM_SOURCE_VAR,
    HL7_SOURCE_VAR,
    IN_PROCESS_JOBS_VAR,
    ConfigurationError,
    PipelineSettings,
    load_settings,
    ray_ship_code,
    require_readable_source,
    require_writable_data_dir,
)
from medical_assets.engine.runtime import RayRuntime, is_transient, start_on_demand
from medical_assets.locking import DataFolderLock
from medical_assets.privacy.keys import PSEUDONYM_KEY_VAR, RELEASE_SCOPE_VAR, KeyRing, load_key_ring, parse_key_ring

# Step retries after a transient failure, and the wait before each.
TRANSIENT_RETRIES = 2
TRANSIENT_RETRY_WAIT_S = 10


@contextmanager
def configuration_failure():
    """A wrong setting fails the step with its own message on top, and is not retried."""
    try:
        yield
    except ConfigurationError as error:
        raise dg.Failure(description=str(error), allow_retries=False) from None


class PipelineConfig(dg.ConfigurableResource):
    """Where data lives. Unset fields fall back to the environment variables of the README."""

    data_dir: str | None = Field(default=None, description="Root of every zone; default MEDICAL_ASSETS_DATA_DIR or ./data")
    hl7_source: str | None = Field(default=None, description="HL7 landing folder; default MEDICAL_ASSETS_HL7_SOURCE")
    synthetic_hl7_messages: int | None = Field(
        default=None, description="Size of the synthetic HL7 corpus; default MEDICAL_ASSETS_SYNTHETIC_HL7_MESSAGES or 50,000"
    )
    dicom_source: str | None = Field(default=None, description="DICOM landing folder; default MEDICAL_ASSETS_DICOM_SOURCE")
    synthetic_dicom_files: int | None = Field(
        default=None, description="Size of the synthetic DICOM corpus; default MEDICAL_ASSETS_SYNTHETIC_DICOM_FILES or 300"
    )

    dicom_thumbnails: bool | None = Field(
        default=None, description="Write 64 x 64 thumbnails to dicom_thumbnails; default MEDICAL_ASSETS_DICOM_THUMBNAILS or on"
    )
    deid_profile: str | None = Field(
        default=None, description="safe_harbor (default) or date_shift; default MEDICAL_ASSETS_DEID_PROFILE"
    )

    reversible_tokens: bool | None = Field(
        default=None,
        description="Also write patient tokens the key holder can open (AES-SIV); default MEDICAL_ASSETS_REVERSIBLE_TOKENS or off",
    )

    suppression_threshold: int | None = Field(
        default=None, description="Published counts from 1 to this are suppressed; default MEDICAL_ASSETS_SUPPRESSION_THRESHOLD or 10"
    )
    export_format: str | None = Field(
        default=None, description="parquet (default), csv or jsonl for the analytics tables; default MEDICAL_ASSETS_EXPORT_FORMAT"
    )
    max_error_rate: float | None = Field(
        default=None, description="Share of HL7 messages in hl7_errors above which a check warns; default MEDICAL_ASSETS_MAX_ERROR_RATE or 0.05"
    )
    recompute: bool | None = Field(
        default=None,
        description="Compute every step even if nothing it depends on changed since its output was made; default MEDICAL_ASSETS_RECOMPUTE or off",
    )

    _lock: DataFolderLock | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # A run writes to the data folder from its first step to its last: it holds the folder's
        # lock for that long (sensors and schedules, which only read, never take it).
        if context.run is None:
            return
        settings = self.settings()
        with configuration_failure():  # every setting checked before a step writes anything
            require_writable_data_dir(settings.data_dir)
            if settings.hl7_source_is_external:
                require_readable_source(settings.hl7_source, HL7_SOURCE_VAR)
            if settings.dicom_source_is_external:
                require_readable_source(settings.dicom_source, DICOM_SOURCE_VAR)
        holder = f"run {context.run.run_id}"
        self._lock = DataFolderLock(settings.data_dir, holder, settings.lock_timeout_s, notify=context.log.warning)
        with configuration_failure():
            self._lock.acquire()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def settings(self) -> PipelineSettings:
        with configuration_failure():
            return load_settings(
                data_dir=self.data_dir,
                hl7_source=self.hl7_source,
                synthetic_hl7_messages=self.synthetic_hl7_messages,
                dicom_source=self.dicom_source,
                synthetic_dicom_files=self.synthetic_dicom_files,
                dicom_thumbnails=self.dicom_thumbnails,
                deid_profile=self.deid_profile,
                reversible_tokens=self.reversible_tokens,
                suppression_threshold=self.suppression_threshold,
                export_format=self.export_format,
                max_error_rate=self.max_error_rate,
                recompute=self.recompute,
            )

    def readable_source(self, kind: str) -> PipelineSettings:
        """The settings, once the `kind` ("hl7", "dicom") source folder is known to exist and be readable."""
        settings = self.settings()
        with configuration_failure():
            require_readable_source(settings.source(kind), {"hl7": HL7_SOURCE_VAR, "dicom": DICOM_SOURCE_VAR}[kind])
        return settings


class PrivacyResource(dg.ConfigurableResource):
    """The pseudonym key ring. Definitions bind `pseudonym_key` to dg.EnvVar(MEDICAL_ASSETS_PSEUDONYM_KEY)
    when that variable is set, so the UI shows the variable's name, never the secret. Unset, a
    development key is created once under <data>/secrets/ (owner-only) and every run warns."""

    pseudonym_key: str | None = Field(
        default=None, description=f"The pseudonym secret or key ring; bind it to the {PSEUDONYM_KEY_VAR} variable"
    )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if context.run is not None and self.pseudonym_key is not None:
            with configuration_failure():  # a malformed key fails the run before its first step
                parse_key_ring(self.pseudonym_key)

    def key_ring(self, settings: PipelineSettings, log) -> KeyRing:
        with configuration_failure():
            # A release scope makes every token specific to one recipient or release (off by default).
            scope = os.environ.get(RELEASE_SCOPE_VAR) or None
            ring, development_key = load_key_ring(self.pseudonym_key, settings.local_secrets_dir, release_scope=scope)
        if development_key:
            log.warning(
                f"{PSEUDONYM_KEY_VAR} is not set: using the development key in {ring.source}. Tokens made with it "
                f"do not match a production key's; set {PSEUDONYM_KEY_VAR} for real data."
            )
        return ring


# What the run's log says when a job first needs Ray's workers; a run without it never started Ray.
RAY_STARTED = "Ray started (or joined) for this run"


class RayResource(dg.ConfigurableResource):
    """Ray for one run: started at the first asset that needs it, stopped when the run ends.

    With RAY_ADDRESS (or `address`) set it joins that cluster and leaves it running;
    otherwise it starts a private local Ray bound to 127.0.0.1.
    """

    address: str | None = Field(default=None, description="Ray cluster to join; default RAY_ADDRESS, else a local Ray")
    num_cpus: int | None = Field(default=None, description="CPUs of a local Ray; default all")
    ship_code: bool | None = Field(
        default=None,
        description="On a cluster, upload this package to the workers with each run (Ray runtime_env); "
        "default MEDICAL_ASSETS_RAY_SHIP_CODE or on. Off: the nodes' image must hold this very version",
    )

    _runtime: RayRuntime | None = PrivateAttr(default=None)
    _needed: bool = PrivateAttr(default=False)  # a job of this run asked for Ray's workers
    _log: object = PrivateAttr(default=None)  # the run's log

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        with configuration_failure():
            ship_code = ray_ship_code() if self.ship_code is None else self.ship_code
        self._runtime = RayRuntime(
            address=self.address or os.environ.get("RAY_ADDRESS") or None, num_cpus=self.num_cpus, ship_code=ship_code
        )
        if context.run is not None:
            with configuration_failure():  # an unreachable cluster fails the run before its first step
                self._runtime.check_address()
        self._log = context.log
        start_on_demand(self.ensure_started)  # by the first job that hands work to Ray's workers

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        start_on_demand(None)
        if self._runtime is not None:
            self._runtime.stop()

    @contextmanager
    def transient_failures_retried(self) -> Iterator[None]:
        """Ray jobs inside fail the step with a retry request when the failure is transient (a lost
        worker or node, a full object store, a dropped connection): the step runs again, up to
        TRANSIENT_RETRIES times. Any other failure fails the step at once."""
        try:
            yield
        except Exception as error:
            if is_transient(error):
                raise dg.RetryRequested(max_retries=TRANSIENT_RETRIES, seconds_to_wait=TRANSIENT_RETRY_WAIT_S) from error
            raise

    def ensure_started(self) -> None:
        if self._runtime is None:
            raise RuntimeError("RayResource used outside a Dagster run")
        if not self._needed and self._log is not None:
            self._log.info(
                f"{RAY_STARTED}: a job's input is too large for the run's own process "
                f"({IN_PROCESS_JOBS_VAR}=0 sends every job to Ray)"
            )
        self._needed = True
        with configuration_failure():
            self._runtime.ensure_started()


@dg.definitions
def resources() -> dg.Definitions:
    """The resources every asset names, and the executor. The secret reaches the privacy resource as
    an EnvVar, so Dagster shows the variable's name, never its value; unset, the resource falls back
    to a development key (and warns on every run)."""
    privacy = PrivacyResource(pseudonym_key=dg.EnvVar(PSEUDONYM_KEY_VAR)) if os.environ.get(PSEUDONYM_KEY_VAR) else PrivacyResource()
    return dg.Definitions(
        resources={"pipeline": PipelineConfig(), "ray_engine": RayResource(), "privacy": privacy},
        # One process per run, so Ray starts once per run rather than once per step.
        executor=dg.in_process_executor,
    )
