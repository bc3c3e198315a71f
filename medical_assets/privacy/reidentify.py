"""Re-identification: authorised staff open a reversible token, stating why, and the audit log keeps it.

The key ring is read as the pipeline reads it (`MEDICAL_ASSETS_PSEUDONYM_KEY`, else the local
development key under `<data>/secrets/`), except that no key is ever created here: a new key
could not open any token, so its absence is an error. Every attempt leaves an audit record,
whether it succeeded, was denied or failed; a value is only handed out once its record is written.
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
    KeyRing,
    KeySettingError,
    load_key_ring,
)
from medical_assets.privacy.pseudonyms import REVERSIBLE_PREFIX, ReversibleTokens

REIDENTIFY_ACTION = "reidentify"
DEFAULT_DOMAIN = "patient"
_TOKEN_SHAPE = re.compile(rf"^{REVERSIBLE_PREFIX}\.([A-Za-z0-9_-]{{1,40}})\.[A-Za-z0-9_-]+$")


class ReidentificationDenied(Exception):
    """The request lacked what policy requires (a purpose); nothing was revealed."""


class ReidentificationFailed(Exception):
    """The token could not be opened; the message says why and never holds a value."""


def reidentify(token: str, purpose: str, domain: str = DEFAULT_DOMAIN, env: Mapping[str, str] | None = None) -> str:
    """The value sealed in `token`, after writing a `success` audit record.

    Raises ReidentificationDenied for an empty purpose, ReidentificationFailed when the key or
    the token is wrong (both after writing their audit record), and AuditLogError when the
    record cannot be written, in which case nothing is revealed.
    """
    env = os.environ if env is None else env
    settings = load_settings(env)
    attempt = _Attempt(AuditLog.in_data_dir(settings.data_dir), token, domain, purpose.strip())
    if not attempt.purpose:
        attempt.record(DENIED)
        raise ReidentificationDenied('a purpose is required (--purpose "why"); the refusal was recorded in the audit log')
    try:
        ring = existing_key_ring(env.get(PSEUDONYM_KEY_VAR), settings.local_secrets_dir)
        value = ReversibleTokens(ring).reveal(domain, token)
    except (ConfigurationError, ValueError) as error:
        attempt.record(failure(str(error)))
        raise ReidentificationFailed(str(error)) from None
    attempt.record(SUCCESS, key_source=_describe_source(ring))
    return value


def existing_key_ring(key_setting: str | None, secrets_dir: str | None) -> KeyRing:
    """The ring from the setting, else the development key the pipeline made in `secrets_dir`
    (None when the data folder is not on a local disk); never a new key."""
    if key_setting and key_setting.strip():
        return load_key_ring(key_setting, None)[0]
    if secrets_dir is None:
        return load_key_ring(None, None)[0]  # raises: it names the variable to set
    key_file = os.path.join(secrets_dir, LOCAL_KEY_FILE)
    if not os.path.isfile(key_file):
        raise KeySettingError(
            f"no pseudonym key: {PSEUDONYM_KEY_VAR} is not set and there is no development key at {key_file}; "
            f"set {PSEUDONYM_KEY_VAR} to the key the pipeline used (a new key could not open any token)"
        )
    return load_key_ring(None, secrets_dir)[0]


class _Attempt:
    """One request, and the audit records it leaves."""

    def __init__(self, audit: AuditLog, token: str, domain: str, purpose: str):
        self.audit = audit
        self.domain = domain
        self.purpose = purpose
        shape = _TOKEN_SHAPE.match(token.strip())
        # A token is public, so it may be kept; anything else may be a value typed by mistake.
        self.token = token.strip() if shape else None
        self.key_id = shape.group(1) if shape else None

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
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise AuditLogError(
                f"cannot write the audit record to {self.audit.location.uri} ({reason}); nothing was revealed"
            ) from None


def _describe_source(ring: KeyRing) -> str:
    return "environment" if ring.source == "environment" else "development key"
