"""Pseudonym keys: guessable secrets are refused with a message that says why and how to make a
good one (never quoting the key); random keys in every accepted format pass; release scopes."""

import base64
import hashlib
import hmac
import random
import secrets

import pytest

from medical_assets.privacy.keys import (
    PSEUDONYM_KEY_VAR,
    KeySettingError,
    key_weakness,
    load_key_ring,
    local_development_key,
    parse_key_ring,
)
from medical_assets.privacy.pseudonyms import Pseudonymizer

# Keys other test modules of the project use as literals: they must stay valid.
PROJECT_TEST_KEYS = ["e6c_RnVCBXidrmsWnAdfchXlFioZwR9OtTu1CNlJ-is", "1syHPW6gjAgs6LorssV821ScdK9GugIZ17IS9TrVWmI"]


def _low_entropy_key() -> str:
    # 40 bytes drawn from only 6 values, in no repeating order: long enough, yet about 100 bits.
    rng = random.Random(18)
    return bytes(rng.choice(b"\x10\x33\x5a\x7e\x91\xc4") for _ in range(40)).hex()


WEAK_KEYS = {
    "zeros in hex": ("0" * 64, "one value repeated"),
    "one repeated character": ("a" * 43, "repeat a block of 3"),  # base64 of 'a's: 3 bytes over and over
    "one repeated hex character": ("f" * 64, "one value repeated"),
    "a repeated short block": ("9f3c71e2" * 8, "repeat a block of 4"),
    "a repeated word": (base64.b64encode(b"letmein!" * 5).decode(), "repeat a block of 8"),
    "counting bytes": (bytes(range(32)).hex(), "counting run"),
    "counting letters": ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq", "counting run"),
    "few different bytes": (_low_entropy_key(), "only 6 different byte values"),
    "an encoded phrase": (base64.b64encode(b"St. Mary's pseudonym key, March 2025").decode(), "readable text"),
}


@pytest.mark.parametrize("name", WEAK_KEYS)
def test_a_guessable_key_is_refused_saying_why_and_how_to_make_one_without_quoting_it(name):
    """Attack: the key is set to something a person typed (zeros, a repeated word, abcd...). It is
    long enough, so it was accepted, yet anyone who guesses it recomputes every patient token
    (HMAC of a known MRN) and re-identifies the release. Now it is refused before any token is made."""
    key, reason = WEAK_KEYS[name]
    with pytest.raises(KeySettingError) as refused:
        parse_key_ring(key)
    message = str(refused.value)
    assert reason in message
    assert PSEUDONYM_KEY_VAR in message and "weak" in message
    assert "secrets.token_hex(32)" in message
    assert key not in message and key[:12] not in message


def test_a_weak_old_key_in_a_ring_is_refused_by_its_position():
    with pytest.raises(KeySettingError, match="key 2 is weak"):
        parse_key_ring(f"{secrets.token_hex(32)},old:{'0' * 64}")


def test_a_weak_key_is_refused_as_the_pipeline_loads_it(tmp_path):
    with pytest.raises(KeySettingError, match="weak"):
        load_key_ring("1" * 64, str(tmp_path))


@pytest.mark.parametrize(
    "make",
    [
        lambda: secrets.token_hex(32),
        lambda: secrets.token_urlsafe(32),
        lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
        lambda: secrets.token_hex(64),
        lambda: "k2025-03:" + secrets.token_urlsafe(32),
    ],
    ids=["hex", "base64url", "base64", "64 bytes hex", "with an id"],
)
def test_random_keys_in_every_accepted_format_pass(make):
    # Many draws, so a threshold that catches random keys now and then would show here.
    for _ in range(2000):
        key = make()
        assert len(parse_key_ring(key).current.secret) >= 32, "a random key was refused"


def test_random_bytes_are_never_called_weak():
    assert not [n for n in range(20_000) if key_weakness(secrets.token_bytes(32))]


@pytest.mark.parametrize("key", PROJECT_TEST_KEYS)
def test_the_keys_the_projects_tests_use_stay_valid(key):
    assert parse_key_ring(key).current.secret


def test_the_development_key_made_on_first_use_is_valid_and_reused(tmp_path):
    first = local_development_key(str(tmp_path / "secrets"))
    again = local_development_key(str(tmp_path / "secrets"))
    assert first.current.secret == again.current.secret
    assert key_weakness(first.current.secret) is None


# Release scopes


def _tokens(ring, value="HOSP_A\x1e4827691"):
    pseudonymizer = Pseudonymizer(ring.current)
    return pseudonymizer.token("patient", value), pseudonymizer.uid("1.2.840.113619.2.55.3.1"), pseudonymizer.date_offset_days(value)


def test_without_a_scope_the_derived_keys_are_those_of_earlier_releases():
    """Default off: HKDF-SHA256 with info `medical-assets/<purpose>` exactly as before, so turning
    the feature into the code changed no token anyone already holds."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    key = secrets.token_hex(32)
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"medical-assets/token").derive(bytes.fromhex(key))
    for ring in (parse_key_ring(key), parse_key_ring(key, release_scope=None), parse_key_ring(key, release_scope="  ")):
        assert ring.release_scope is None
        assert ring.current.derive("token") == expected
    message = hmac.new(expected, b"patient\x1fMRN1", hashlib.sha256).hexdigest()[:24]
    assert Pseudonymizer(parse_key_ring(key).current).token("patient", "MRN1") == message


def test_release_scoped_tokens_differ_between_scopes_and_agree_within_one():
    """Attack: two recipients each get a release made with the same key; tokens, UIDs and date
    shifts are equal across both, so the recipients join their data sets patient by patient.
    With a scope per release nothing matches across them, while two runs of one release agree."""
    key = secrets.token_urlsafe(32)
    university = _tokens(parse_key_ring(key, release_scope="univ-x-2025-03"))
    registry = _tokens(parse_key_ring(key, release_scope="registry-y"))
    unscoped = _tokens(parse_key_ring(key))
    # Tokens and UIDs (date shifts have only 730 values, so two may meet by chance).
    assert len({university[0], registry[0], unscoped[0]}) == 3
    assert len({university[1], registry[1], unscoped[1]}) == 3
    assert university == _tokens(parse_key_ring(key).for_release("univ-x-2025-03"))
    assert parse_key_ring(key, release_scope="registry-y").current.key_id == parse_key_ring(key).current.key_id


def test_the_development_key_takes_a_scope_too(tmp_path):
    scoped, _ = load_key_ring(None, str(tmp_path), release_scope="univ-x")
    plain, _ = load_key_ring(None, str(tmp_path))
    assert scoped.release_scope == "univ-x"
    assert _tokens(scoped)[0] != _tokens(plain)[0]


def test_a_scope_that_is_not_plain_text_is_refused():
    with pytest.raises(KeySettingError, match="MEDICAL_ASSETS_RELEASE_SCOPE"):
        parse_key_ring(secrets.token_hex(32), release_scope="univ\nx")
