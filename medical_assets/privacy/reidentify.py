"""Re-identification: authorised staff open a reversible token, stating why, and the audit log keeps it.

Every way to open a token goes through here: the command line (`reidentify`, which reads the
key ring as the pipeline does) and Python (`reveal_token`, for a ring already in hand). A plain
`ReversibleTokens(ring).reveal(...)` is refused: the ring hands out a key that opens tokens only
inside these functions. Every attempt leaves an audit record, whether it succeeded, was denied or
failed, and a value is handed out only once its record is written: if the record cannot be
written, nothing is revealed (fail closed).

The key ring is read as the pipeline reads it (`MEDICAL_ASSETS_PSEUDONYM_KEY`, else the local
development key under `<data>/secrets/`), except that no key is ever created here: a new key
could not open any token, so its absence is an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from medical_assets.config import ConfigurationError, load_settings
from medical_assets.privacy.audit import (
    DENIED,
    SUCCESS,
    AuditLog,
    AuditLogError,
    AuditRecord,
    failure,
)
from medical_assets.privacy.keys import (
    LOCAL_KEY_FILE,
    PSEUDONYM_KEY_VAR,
    RELEASE_SCOPE_VAR,
    KeyRing,
    KeySettingError,
    audited_reveal_scope,
    load_key_ring,
)
from medical_assets.privacy.pseudonyms import REVERSIBLE_PREFIX, ReversibleTokens

REIDENTIFY_ACTION = "reidentify"
DEFAULT_DOMAIN = "patient"
PURPOSE_REQUIRED = (
    'a purpose is required (--purpose "why", or purpose="why" from Python); '
    "the refusal was recorded in the audit log and nothing was revealed"
)
_TOKEN_SHAPE = re.compile(rf"^{REVERSIBLE_PREFIX}\.([A-Za-z0-9_-]{{1,40}})\.[A-Za-z0-9_-]+$")


class ReidentificationDenied(Exception):
    """The request lacked what policy requires (a purpose); nothing was revealed."""


class ReidentificationFailed(Exception):
    """The token could not be opened; the message says why and never holds a value."""


def reidentify(
    token: str,
    purpose: str | None,
    domain: str = DEFAULT_DOMAIN,
    env: Mapping[str, str] | None = None,
    release_scope: str | None = None,
) -> str:
    """The value sealed in `token`, with the key ring and audit log of the settings in `env`.

    `release_scope` defaults to `MEDICAL_ASSETS_RELEASE_SCOPE`: a token of a scoped release opens
    only with its scope. Raises ReidentificationDenied for an empty purpose, ReidentificationFailed
    when the key or the token is wrong (both after writing their audit record), and AuditLogError
    when the record cannot be written, in which case nothing is revealed.
    """
    env = os.environ if env is None else env
    settings = load_settings(env)
    if release_scope is None:
        release_scope = env.get(RELEASE_SCOPE_VAR)
    attempt = _Attempt(AuditLog.in_data_dir(settings.data_dir), token, domain, purpose)
    attempt.require_purpose()
    try:
        ring = existing_key_ring(env.get(PSEUDONYM_KEY_VAR), settings.local_secrets_dir, release_scope)
    except ConfigurationError as error:
        attempt.record(failure(str(error)))
        raise ReidentificationFailed(str(error)) from None
    return attempt.open(ring)


def reveal_token(
    ring: KeyRing,
    domain: str,
    token: str,
    *,
    purpose: str | None = None,
    audit: AuditLog | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """The value sealed in `token`, opened with `ring`, after writing its audit record to `audit`
    (default: the audit log of the data folder in `env`'s settings).

    Raises as `reidentify` does: ReidentificationDenied without a purpose, ReidentificationFailed
    for a token the ring does not open, AuditLogError when the record cannot be written.
    """
    if audit is None:
        audit = AuditLog.in_data_dir(load_settings(os.environ if env is None else env).data_dir)
    attempt = _Attempt(audit, token, domain, purpose)
    attempt.require_purpose()
    return attempt.open(ring)


def existing_key_ring(key_setting: str | None, secrets_dir: str | None, release_scope: str | None = None) -> KeyRing:
    """The ring from the setting, else the development key the pipeline made in `secrets_dir`
    (None when the data folder is not on a local disk); never a new key."""
    if key_setting and key_setting.strip():
        return load_key_ring(key_setting, None, release_scope)[0]
    if secrets_dir is None:
        return load_key_ring(None, None)[0]  # raises: it names the variable to set
    key_file = os.path.join(secrets_dir, LOCAL_KEY_FILE)
    if not os.path.isfile(key_file):
        raise KeySettingError(
            f"no pseudonym key: {PSEUDONYM_KEY_VAR} is not set and there is no development key at {key_file}; "
            f"set {PSEUDONYM_KEY_VAR} to the key the pipeline used (a new key could not open any token)"
        )
    return load_key_ring(None, secrets_dir, release_scope)[0]


class _Attempt:
    """One request, and the audit records it leaves."""

    def __init__(self, audit: AuditLog, token: str, domain: str, purpose: str | None):
        self.audit = audit
        self.token_given = token
        self.domain = domain
        self.purpose = (purpose or "").strip()
        shape = _TOKEN_SHAPE.match(token.strip())
        # A token is public, so it may be kept; anything else may be a value typed by mistake.
        self.token = token.strip() if shape else None
        self.key_id = shape.group(1) if shape else None

    def require_purpose(self) -> None:
        if not self.purpose:
            self.record(DENIED)
            raise ReidentificationDenied(PURPOSE_REQUIRED)

    def open(self, ring: KeyRing) -> str:
        """The value, held here until its `success` record is written, then handed out."""
        scope = {"release_scope": ring.release_scope} if ring.release_scope else {}
        try:
            with audited_reveal_scope():
                value = ReversibleTokens(ring).reveal(self.domain, self.token_given)
        except ValueError as error:
            self.record(failure(str(error)), **scope)
            raise ReidentificationFailed(str(error)) from None
        self.record(SUCCESS, key_source=_describe_source(ring), **scope)
        return value

    def record(self, outcome: str, **details: str) -> None:
        record = AuditRecord(
            action=REIDENTIFY_ACTION,
            subject=self.domain,
            purpose=self.purpose,
            outcome=outcome,
            key_id=self.key_id,
            details={"token": self.token if self.token else "(not a reversible token; not recorded)", **details},
        )
        try:
            self.audit.append(record)
        except (OSError, AuditLogError) as error:
            reason = getattr(error, "strerror", None) or type(error).__name__
            raise AuditLogError(
                f"cannot write the audit record to {self.audit.location.uri} ({reason}); nothing was revealed"
            ) from None


def _describe_source(ring: KeyRing) -> str:
    if ring.source == "environment":
        return "environment"
    return "development key" if ring.source.endswith(LOCAL_KEY_FILE) else "given by the caller"
