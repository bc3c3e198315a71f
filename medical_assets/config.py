"""The pipeline's settings, read from the environment variables the README lists (Configuration)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow.fs as pafs

from medical_assets.analytics.suppression import DEFAULT_THRESHOLD
from medical_assets.storage import Location, resolve_location

DATA_DIR_VAR = "MEDICAL_ASSETS_DATA_DIR"
HL7_SOURCE_VAR = "MEDICAL_ASSETS_HL7_SOURCE"
DICOM_SOURCE_VAR = "MEDICAL_ASSETS_DICOM_SOURCE"
SYNTHETIC_HL7_MESSAGES_VAR = "MEDICAL_ASSETS_SYNTHETIC_HL7_MESSAGES"
SYNTHETIC_HL7_PATIENTS_VAR = "MEDICAL_ASSETS_SYNTHETIC_HL7_PATIENTS"
SYNTHETIC_DICOM_FILES_VAR = "MEDICAL_ASSETS_SYNTHETIC_DICOM_FILES"
DICOM_THUMBNAILS_VAR = "MEDICAL_ASSETS_DICOM_THUMBNAILS"
DEID_PROFILE_VAR = "MEDICAL_ASSETS_DEID_PROFILE"
REVERSIBLE_TOKENS_VAR = "MEDICAL_ASSETS_REVERSIBLE_TOKENS"
SUPPRESSION_THRESHOLD_VAR = "MEDICAL_ASSETS_SUPPRESSION_THRESHOLD"
VOCABULARY_THRESHOLD_VAR = "MEDICAL_ASSETS_VOCABULARY_THRESHOLD"
PATIENT_ID_SCOPE_VAR = "MEDICAL_ASSETS_PATIENT_ID_SCOPE"
EXPORT_FORMAT_VAR = "MEDICAL_ASSETS_EXPORT_FORMAT"
MAX_ERROR_RATE_VAR = "MEDICAL_ASSETS_MAX_ERROR_RATE"
LOCK_TIMEOUT_VAR = "MEDICAL_ASSETS_LOCK_TIMEOUT_S"
RECOMPUTE_VAR = "MEDICAL_ASSETS_RECOMPUTE"
RAY_SHIP_CODE_VAR = "MEDICAL_ASSETS_RAY_SHIP_CODE"
IN_PROCESS_JOBS_VAR = "MEDICAL_ASSETS_IN_PROCESS_JOBS"

DEFAULT_DATA_DIR = "./data"
DEFAULT_SYNTHETIC_HL7_MESSAGES = 50_000
DEFAULT_SYNTHETIC_DICOM_FILES = 300
# safe_harbor: HIPAA Safe Harbor (years only). date_shift: full dates shifted per patient, for
# longitudinal research under a data use agreement (not Safe Harbor).
DEID_PROFILES = ("safe_harbor", "date_shift")
DEFAULT_SUPPRESSION_THRESHOLD = DEFAULT_THRESHOLD  # CMS cell-size rule: counts 1 to 10 are not published
# issuer: a patient is the MRN with its assigning authority; shared: the sites share one MRN space.
PATIENT_ID_SCOPES = ("issuer", "shared")
EXPORT_FORMATS = ("parquet", "csv", "jsonl")
DEFAULT_MAX_ERROR_RATE = 0.05
DEFAULT_LOCK_TIMEOUT_S = 3600  # how long a run waits for another run writing to the same data folder


class ConfigurationError(Exception):
    """A setting is wrong; the message names the setting and how to fix it."""


@dataclass(frozen=True)
class PipelineSettings:
    data_dir: Location
    hl7_source: Location
    hl7_source_is_external: bool  # set by the user: never generate synthetic data into it
    synthetic_hl7_messages: int
    dicom_source: Location
    dicom_source_is_external: bool
    synthetic_dicom_files: int
    dicom_thumbnails: bool  # write dicom_thumbnails (64 x 64 tensors) for machine learning
    deid_profile: str = DEID_PROFILES[0]
    reversible_tokens: bool = False  # also write AES-SIV patient tokens that the key holder can open
    suppression_threshold: int = DEFAULT_SUPPRESSION_THRESHOLD
    # A text value leaves the PHI zone only when this many distinct patients have it (None: the
    # suppression threshold, so a value is public on the same terms as a published count).
    vocabulary_threshold: int | None = None
    patient_id_scope: str = PATIENT_ID_SCOPES[0]
    export_format: str = EXPORT_FORMATS[0]  # of the analytics tables
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE  # share of HL7 messages in hl7_errors before a warning
    lock_timeout_s: int = DEFAULT_LOCK_TIMEOUT_S
    synthetic_hl7_patients: int | None = None  # distinct patients of the synthetic HL7 corpus; None: its default pool
    # Compute every step even when nothing it depends on changed since its published output was made.
    recompute: bool = False

    @property
    def vocabulary_min_patients(self) -> int:
        """Distinct patients a text value needs to be published: more than the suppression threshold,
        unless MEDICAL_ASSETS_VOCABULARY_THRESHOLD says otherwise."""
        threshold = self.suppression_threshold + 1 if self.vocabulary_threshold is None else self.vocabulary_threshold
        return max(threshold, 1)

    def zone(self, name: str) -> Location:
        return self.data_dir.child(name)

    def source(self, kind: str) -> Location:
        """The landing folder of `kind` ("hl7", "dicom")."""
        return {"hl7": self.hl7_source, "dicom": self.dicom_source}[kind]

    def source_is_external(self, kind: str) -> bool:
        return {"hl7": self.hl7_source_is_external, "dicom": self.dicom_source_is_external}[kind]

    @property
    def manifests(self) -> Location:
        return self.data_dir.child("manifests")

    @property
    def local_secrets_dir(self) -> str | None:
        """Where a development pseudonym key may be kept: only on a local disk, else None."""
        if isinstance(self.data_dir.filesystem, pafs.LocalFileSystem):
            return os.path.join(self.data_dir.path, "secrets")
        return None


def load_settings(
    env: Mapping[str, str] | None = None,
    *,
    data_dir: str | None = None,
    hl7_source: str | None = None,
    synthetic_hl7_messages: int | None = None,
    dicom_source: str | None = None,
    synthetic_dicom_files: int | None = None,
    dicom_thumbnails: bool | None = None,
    deid_profile: str | None = None,
    reversible_tokens: bool | None = None,
    suppression_threshold: int | None = None,
    vocabulary_threshold: int | None = None,
    patient_id_scope: str | None = None,
    export_format: str | None = None,
    max_error_rate: float | None = None,
    recompute: bool | None = None,
) -> PipelineSettings:
    """Explicit arguments win over the environment, which wins over the defaults."""
    env = os.environ if env is None else env
    data_dir = data_dir or env.get(DATA_DIR_VAR) or DEFAULT_DATA_DIR
    hl7_source = hl7_source or env.get(HL7_SOURCE_VAR)
    dicom_source = dicom_source or env.get(DICOM_SOURCE_VAR)
    if synthetic_hl7_messages is None:
        synthetic_hl7_messages = _count(env, SYNTHETIC_HL7_MESSAGES_VAR, DEFAULT_SYNTHETIC_HL7_MESSAGES)
    if synthetic_dicom_files is None:
        synthetic_dicom_files = _count(env, SYNTHETIC_DICOM_FILES_VAR, DEFAULT_SYNTHETIC_DICOM_FILES)
    if dicom_thumbnails is None:
        dicom_thumbnails = _flag(env, DICOM_THUMBNAILS_VAR, default=True)
    deid_profile = (deid_profile or env.get(DEID_PROFILE_VAR) or DEID_PROFILES[0]).strip().lower()
    if deid_profile not in DEID_PROFILES:
        raise ConfigurationError(f"{DEID_PROFILE_VAR} must be one of {', '.join(DEID_PROFILES)}, got {deid_profile!r}")
    if reversible_tokens is None:
        reversible_tokens = _flag(env, REVERSIBLE_TOKENS_VAR, default=False)
    if suppression_threshold is None:
        suppression_threshold = _count(env, SUPPRESSION_THRESHOLD_VAR, DEFAULT_SUPPRESSION_THRESHOLD)
    if suppression_threshold < 0:
        raise ConfigurationError(f"{SUPPRESSION_THRESHOLD_VAR} must not be negative, got {suppression_threshold}")
    if vocabulary_threshold is None and env.get(VOCABULARY_THRESHOLD_VAR):
        vocabulary_threshold = _count(env, VOCABULARY_THRESHOLD_VAR, DEFAULT_SUPPRESSION_THRESHOLD)
    if vocabulary_threshold is not None and vocabulary_threshold < 1:
        raise ConfigurationError(f"{VOCABULARY_THRESHOLD_VAR} must be at least 1, got {vocabulary_threshold}")
    patient_id_scope = (patient_id_scope or env.get(PATIENT_ID_SCOPE_VAR) or PATIENT_ID_SCOPES[0]).strip().lower()
    if patient_id_scope not in PATIENT_ID_SCOPES:
        raise ConfigurationError(
            f"{PATIENT_ID_SCOPE_VAR} must be one of {', '.join(PATIENT_ID_SCOPES)}, got {patient_id_scope!r}"
        )
    export_format = (export_format or env.get(EXPORT_FORMAT_VAR) or EXPORT_FORMATS[0]).strip().lower()
    if export_format not in EXPORT_FORMATS:
        raise ConfigurationError(f"{EXPORT_FORMAT_VAR} must be one of {', '.join(EXPORT_FORMATS)}, got {export_format!r}")
    if max_error_rate is None:
        max_error_rate = _fraction(env, MAX_ERROR_RATE_VAR, DEFAULT_MAX_ERROR_RATE)
    if synthetic_hl7_messages < 0 or synthetic_dicom_files < 0:
        raise ConfigurationError(f"{SYNTHETIC_HL7_MESSAGES_VAR} and {SYNTHETIC_DICOM_FILES_VAR} must not be negative")
    synthetic_hl7_patients = None  # the generator's default pool
    if env.get(SYNTHETIC_HL7_PATIENTS_VAR, "").strip():
        synthetic_hl7_patients = _count(env, SYNTHETIC_HL7_PATIENTS_VAR, 0)
        if synthetic_hl7_patients < 1:
            raise ConfigurationError(f"{SYNTHETIC_HL7_PATIENTS_VAR} must be at least 1, got {synthetic_hl7_patients}")

    data = resolve_location(data_dir)
    return PipelineSettings(
        data_dir=data,
        hl7_source=resolve_location(hl7_source) if hl7_source else data.child("landing", "hl7"),
        hl7_source_is_external=bool(hl7_source),
        synthetic_hl7_messages=synthetic_hl7_messages,
        dicom_source=resolve_location(dicom_source) if dicom_source else data.child("landing", "dicom"),
        dicom_source_is_external=bool(dicom_source),
        synthetic_dicom_files=synthetic_dicom_files,
        dicom_thumbnails=dicom_thumbnails,
        deid_profile=deid_profile,
        reversible_tokens=reversible_tokens,
        suppression_threshold=suppression_threshold,
        vocabulary_threshold=vocabulary_threshold,
        patient_id_scope=patient_id_scope,
        export_format=export_format,
        max_error_rate=max_error_rate,
        lock_timeout_s=_count(env, LOCK_TIMEOUT_VAR, DEFAULT_LOCK_TIMEOUT_S),
        synthetic_hl7_patients=synthetic_hl7_patients,
        recompute=_flag(env, RECOMPUTE_VAR, default=False) if recompute is None else recompute,
    )


def ray_ship_code(env: Mapping[str, str] | None = None) -> bool:
    """Whether a run that joins a cluster uploads this package to its workers (default yes)."""
    return _flag(os.environ if env is None else env, RAY_SHIP_CODE_VAR, default=True)


def in_process_jobs(env: Mapping[str, str] | None = None) -> bool:
    """Whether jobs on little input run in the run's process rather than in Ray's workers (default yes)."""
    return _flag(os.environ if env is None else env, IN_PROCESS_JOBS_VAR, default=True)


def _flag(env: Mapping[str, str], variable: str, default: bool) -> bool:
    raw = env.get(variable, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{variable} must be 1/0, true/false, yes/no or on/off, got {raw!r}")


def _fraction(env: Mapping[str, str], variable: str, default: float) -> float:
    raw = env.get(variable) or str(default)
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise ConfigurationError(f"{variable} must be a fraction between 0 and 1 (0.05 is 5%), got {raw!r}")
    return value


def _count(env: Mapping[str, str], variable: str, default: int) -> int:
    raw = env.get(variable) or str(default)
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{variable} must be a whole number, got {raw!r}") from None


def require_writable_data_dir(data_dir: Location) -> None:
    """The data folder must take a file: checked before a run touches any output."""
    # Named for this call alone: two runs in one process (threads) must not delete each other's probe.
    probe = data_dir.child(f".write-probe-{os.getpid()}-{uuid.uuid4().hex}")
    try:
        data_dir.makedirs()
        probe.write_bytes_atomically(b"")
        probe.filesystem.delete_file(probe.path)
    except OSError as error:
        raise ConfigurationError(
            f"{DATA_DIR_VAR}: cannot write to {data_dir.uri} ({error}); point it at a folder (or bucket prefix) "
            "this user can write, or fix its permissions or credentials"
        ) from None


def require_readable_source(source: Location, variable: str) -> None:
    """A missing or unreadable source folder is a configuration error, raised before any output is touched."""
    try:
        is_dir = source.is_dir()
    except OSError as error:
        raise ConfigurationError(f"{variable}: cannot read {source.uri} ({error}); check the path and permissions") from None
    if not is_dir:
        raise ConfigurationError(
            f"{variable} points to {source.uri}, which is not an existing folder; create it or fix {variable}"
        )
    if isinstance(source.filesystem, pafs.LocalFileSystem) and not os.access(source.path, os.R_OK | os.X_OK):
        raise ConfigurationError(f"{variable}: {source.uri} is not readable by this user; fix its permissions")
