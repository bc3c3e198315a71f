"""The pseudonym secret: where it comes from, its public identifier, and the keys derived from it.

`MEDICAL_ASSETS_PSEUDONYM_KEY` holds one key or a comma-separated key ring, newest first:

    [key_id:]secret[,key_id:old_secret ...]

Each secret is at least 32 random bytes, written as base64/base64url or hex. The first key makes
new tokens; older ones stay to resolve reversible tokens made before a rotation. Without the
variable, a development key is created once under `<data>/secrets/` with owner-only permissions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass, field

from medical_assets.config import ConfigurationError

PSEUDONYM_KEY_VAR = "MEDICAL_ASSETS_PSEUDONYM_KEY"
MIN_SECRET_BYTES = 32
LOCAL_KEY_FILE = "pseudonym.key"
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
GENERATE_HINT = 'generate one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'


class KeySettingError(ConfigurationError):
    """The key setting is malformed; the message names the variable, never the secret."""


@dataclass(frozen=True)
class PseudonymKey:
    key_id: str  # public: stored with every output, so a token can be traced to its key
    secret: bytes = field(repr=False)

    def derive(self, purpose: str, length: int = 32) -> bytes:
        """A separate key per purpose (HKDF-SHA256), so tokens, UIDs, date shifts and
        reversible tokens never share key material."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=f"medical-assets/{purpose}".encode()).derive(
            self.secret
        )


@dataclass(frozen=True)
class KeyRing:
    keys: tuple[PseudonymKey, ...]  # newest first
    source: str  # "environment" or the path of the local development key (never the secret)

    @property
    def current(self) -> PseudonymKey:
        return self.keys[0]

    def by_id(self, key_id: str) -> PseudonymKey:
        for key in self.keys:
            if key.key_id == key_id:
                return key
        known = ", ".join(k.key_id for k in self.keys)
        raise KeySettingError(
            f"no key with id {key_id!r} in {PSEUDONYM_KEY_VAR} (known: {known}); "
            "add the old key after the current one, separated by a comma"
        )


def derived_key_id(secret: bytes) -> str:
    """A public identifier that reveals nothing about the secret."""
    return "k" + hmac.new(secret, b"medical-assets key id", hashlib.sha256).hexdigest()[:12]


def parse_key_ring(value: str, source: str = "environment") -> KeyRing:
    entries = [entry.strip() for entry in value.split(",") if entry.strip()]
    if not entries:
        raise KeySettingError(f"{PSEUDONYM_KEY_VAR} is empty; {GENERATE_HINT}")
    keys = []
    for position, entry in enumerate(entries, start=1):
        key_id, _, encoded = entry.rpartition(":")
        secret = _decode_secret(encoded, position)
        if key_id and not _KEY_ID.match(key_id):
            raise KeySettingError(
                f"{PSEUDONYM_KEY_VAR}: key {position} has an invalid id (use letters, digits, '_', '-', '.', up to 40)"
            )
        keys.append(PseudonymKey(key_id or derived_key_id(secret), secret))
    ids = [k.key_id for k in keys]
    if len(set(ids)) != len(ids):
        raise KeySettingError(f"{PSEUDONYM_KEY_VAR}: two keys share the id {sorted(i for i in ids if ids.count(i) > 1)[0]!r}")
    return KeyRing(tuple(keys), source)


def _decode_secret(encoded: str, position: int) -> bytes:
    encoded = encoded.strip()
    candidates = []
    if re.fullmatch(r"[0-9a-fA-F]+", encoded) and len(encoded) % 2 == 0:
        candidates.append(lambda: binascii.unhexlify(encoded))
    padded = encoded + "=" * (-len(encoded) % 4)
    candidates.append(lambda: base64.urlsafe_b64decode(padded))
    candidates.append(lambda: base64.b64decode(padded, validate=True))
    for decode in candidates:
        try:
            secret = decode()
        except (binascii.Error, ValueError):
            continue
        if len(secret) >= MIN_SECRET_BYTES:
            return secret
    raise KeySettingError(
        f"{PSEUDONYM_KEY_VAR}: key {position} is not at least {MIN_SECRET_BYTES} bytes of base64 or hex; {GENERATE_HINT}"
    )


def load_key_ring(value: str | None, secrets_dir: str | None) -> tuple[KeyRing, bool]:
    """The key ring from the setting, else the local development key (created on first use).

    Returns the ring and whether a development key was used, so the caller can warn.
    `secrets_dir` is None when the data folder is not on a local disk: there a key must be set.
    """
    if value and value.strip():
        return parse_key_ring(value), False
    if secrets_dir is None:
        raise KeySettingError(
            f"{PSEUDONYM_KEY_VAR} is not set, and the data folder is not on a local disk where a development key "
            f"could be kept privately; set {PSEUDONYM_KEY_VAR} ({GENERATE_HINT})"
        )
    return local_development_key(secrets_dir), True


def local_development_key(secrets_dir: str) -> KeyRing:
    """`<secrets_dir>/pseudonym.key`, created once (folder 0700, file 0600) and reused afterwards."""
    os.makedirs(secrets_dir, mode=0o700, exist_ok=True)
    os.chmod(secrets_dir, 0o700)
    path = os.path.join(secrets_dir, LOCAL_KEY_FILE)
    secret = secrets.token_bytes(MIN_SECRET_BYTES)
    line = f"{derived_key_id(secret)}:{base64.urlsafe_b64encode(secret).decode().rstrip('=')}\n"
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass  # made by an earlier run (or a concurrent one): use it
    else:
        with os.fdopen(descriptor, "w") as file:
            file.write(line)
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        raise KeySettingError(f"the development key {path} is readable by others (mode {mode:o}); run: chmod 600 {path}")
    with open(path) as file:
        content = file.read().strip()
    return parse_key_ring(content, source=path)
