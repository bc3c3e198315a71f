"""The pseudonym secret: where it comes from, its public identifier, and the keys derived from it.

`MEDICAL_ASSETS_PSEUDONYM_KEY` holds one key or a comma-separated key ring, newest first:

    [key_id:]secret[,key_id:old_secret ...]

Each secret is at least 32 random bytes, written as base64/base64url or hex. The first key makes
new tokens; older ones stay to resolve reversible tokens made before a rotation. Without the
variable, a development key is created once under `<data>/secrets/` with owner-only permissions.
A secret that is long enough but guessable (one repeated character, a repeated block, a counting
run, too few different bytes, a typed phrase) is refused: the tokens are only as private as it.

`MEDICAL_ASSETS_RELEASE_SCOPE` (off by default, so default tokens never change) names a release or
recipient, e.g. `univ-x-2025-03`. It is mixed into every derived key, so two data sets made for two
recipients carry different tokens, UIDs and date shifts and cannot be joined to each other; runs
with the same scope still agree. Opening a reversible token of such a release needs the same scope.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace

from medical_assets.config import ConfigurationError

PSEUDONYM_KEY_VAR = "MEDICAL_ASSETS_PSEUDONYM_KEY"
MIN_SECRET_BYTES = 32
LOCAL_KEY_FILE = "pseudonym.key"
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
GENERATE_HINT = (
    'generate one with: python -c "import secrets; print(secrets.token_hex(32))" '
    "(or: python -m medical_assets.privacy new-key)"
)
RELEASE_SCOPE_VAR = "MEDICAL_ASSETS_RELEASE_SCOPE"
MAX_RELEASE_SCOPE_LENGTH = 200
# Thresholds a random secret misses by a wide margin (32 random bytes use about 30 different
# values; a counting run of 8 bytes or 12 characters happens by chance about never), so no
# generated key is refused, while every pattern a person types to "fill the field" is.
MIN_DISTINCT_BYTES = 16
MAX_SEQUENTIAL_BYTES = 8
MAX_SEQUENTIAL_CHARACTERS = 12


class KeySettingError(ConfigurationError):
    """The key setting is malformed; the message names the variable, never the secret."""


class UnauditedReveal(PermissionError):
    """A key that opens reversible tokens was asked for outside an audited reveal; nothing was opened."""


# Set only while `medical_assets.privacy.reidentify` opens a token whose audit record is written.
# It keeps a plain `ReversibleTokens(ring).reveal(...)` from opening anything unrecorded; it is no
# barrier to code that reads the secret itself (that code could decrypt without this module).
_reveal_audited: ContextVar[bool] = ContextVar("medical_assets_reveal_audited", default=False)


@contextmanager
def audited_reveal_scope() -> Iterator[None]:
    """For the audited reveal functions only: within it, `KeyRing.by_id` hands out keys."""
    marker = _reveal_audited.set(True)
    try:
        yield
    finally:
        _reveal_audited.reset(marker)


@dataclass(frozen=True)
class PseudonymKey:
    key_id: str  # public: stored with every output, so a token can be traced to its key
    secret: bytes = field(repr=False)
    release_scope: str | None = None  # None: the default tokens; else tokens of that release only

    def derive(self, purpose: str, length: int = 32) -> bytes:
        """A separate key per purpose (HKDF-SHA256), so tokens, UIDs, date shifts and
        reversible tokens never share key material; per release scope too when one is set."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        info = f"medical-assets/{purpose}"
        if self.release_scope is not None:
            # \x1f is in no purpose name, so a scoped info can never equal an unscoped one.
            info += f"\x1frelease\x1f{self.release_scope}"
        return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info.encode()).derive(self.secret)


@dataclass(frozen=True)
class KeyRing:
    keys: tuple[PseudonymKey, ...]  # newest first
    source: str  # "environment" or the path of the local development key (never the secret)

    @property
    def current(self) -> PseudonymKey:
        return self.keys[0]

    @property
    def release_scope(self) -> str | None:
        return self.current.release_scope

    def for_release(self, scope: str | None) -> KeyRing:
        """The same keys, deriving tokens for one release or recipient (None: the default tokens).
        Key ids stay: the secret is the same, only what is derived from it differs."""
        scope = normalise_release_scope(scope)
        return replace(self, keys=tuple(replace(key, release_scope=scope) for key in self.keys))

    def by_id(self, key_id: str) -> PseudonymKey:
        """The key a reversible token names. Its only use is opening a token, so it is handed out
        only inside an audited reveal (`medical_assets.privacy.reidentify`)."""
        if not _reveal_audited.get():
            raise UnauditedReveal(
                "a reversible token is opened only with a purpose and an audit record: use "
                "medical_assets.privacy.reidentify.reveal_token(ring, domain, token, purpose=..., audit=...) "
                'or `python -m medical_assets.privacy reidentify TOKEN --purpose "why"`'
            )
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


def normalise_release_scope(scope: str | None) -> str | None:
    """The scope as derivation uses it: trimmed; empty means no scope (the default tokens)."""
    if scope is None or not scope.strip():
        return None
    scope = scope.strip()
    if len(scope) > MAX_RELEASE_SCOPE_LENGTH or not scope.isprintable():
        raise KeySettingError(
            f"{RELEASE_SCOPE_VAR} must be printable text of at most {MAX_RELEASE_SCOPE_LENGTH} characters "
            "(a release or recipient name, e.g. univ-x-2025-03)"
        )
    return scope


def parse_key_ring(value: str, source: str = "environment", release_scope: str | None = None) -> KeyRing:
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
    return KeyRing(tuple(keys), source).for_release(release_scope)


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
            weakness = key_weakness(secret, encoded)
            if weakness:
                raise KeySettingError(
                    f"{PSEUDONYM_KEY_VAR}: key {position} is weak ({weakness}); a key must be random, not typed: "
                    f"{GENERATE_HINT}"
                )
            return secret
    raise KeySettingError(
        f"{PSEUDONYM_KEY_VAR}: key {position} is not at least {MIN_SECRET_BYTES} bytes of base64 or hex; {GENERATE_HINT}"
    )


def key_weakness(secret: bytes, text: str = "") -> str | None:
    """What makes a secret guessable, in words that never quote it; None for a random-looking one.

    Both the decoded bytes and the text as typed are looked at: `0123456789abcdef...` is a
    repeated block as bytes, `ABCDEFGHIJ...` is a counting run only as text.
    """
    forms = (("bytes", list(secret), MAX_SEQUENTIAL_BYTES), ("characters", [ord(c) for c in text], MAX_SEQUENTIAL_CHARACTERS))
    for form, units, max_run in forms:
        if not units:
            continue
        if len(set(units)) == 1:
            return f"its {form} are one value repeated"
        period = _shortest_period(units)
        if period is not None:
            return f"its {form} repeat a block of {period}"
        if _longest_counting_run(units) > max_run:
            return f"it holds a counting run (like 0123... or abcd...) in its {form}"
    distinct = len(set(secret))
    if distinct < MIN_DISTINCT_BYTES:
        return f"it uses only {distinct} different byte values, where random bytes would differ almost everywhere"
    if all(0x20 <= byte < 0x7F for byte in secret):
        # 32 random bytes are all printable about once in 10^14 tries: this is an encoded phrase.
        return "it decodes to readable text, so it is a phrase, not random bytes"
    return None


def _shortest_period(units: list[int]) -> int | None:
    """The length of a block that, repeated, makes up the whole (at least twice), else None."""
    for period in range(1, len(units) // 2 + 1):
        if all(units[i] == units[i - period] for i in range(period, len(units))):
            return period
    return None


def _longest_counting_run(units: list[int]) -> int:
    """The longest stretch that goes up or down by one at every step (0123, dcba)."""
    longest = run = 1
    step = 0
    for previous, current in zip(units, units[1:]):
        difference = current - previous
        if difference in (1, -1) and difference == step:
            run += 1
        elif difference in (1, -1):
            run, step = 2, difference
        else:
            run, step = 1, 0
        longest = max(longest, run)
    return longest


def load_key_ring(value: str | None, secrets_dir: str | None, release_scope: str | None = None) -> tuple[KeyRing, bool]:
    """The key ring from the setting, else the local development key (created on first use).

    Returns the ring and whether a development key was used, so the caller can warn.
    `secrets_dir` is None when the data folder is not on a local disk: there a key must be set.
    `release_scope` (`MEDICAL_ASSETS_RELEASE_SCOPE`) makes tokens for one release only.
    """
    if value and value.strip():
        return parse_key_ring(value, release_scope=release_scope), False
    if secrets_dir is None:
        raise KeySettingError(
            f"{PSEUDONYM_KEY_VAR} is not set, and the data folder is not on a local disk where a development key "
            f"could be kept privately; set {PSEUDONYM_KEY_VAR} ({GENERATE_HINT})"
        )
    return local_development_key(secrets_dir).for_release(release_scope), True


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
