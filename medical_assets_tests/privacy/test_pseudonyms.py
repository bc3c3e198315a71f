"""Tokens are HMAC-SHA256 of the domain and the value, whatever order domains are asked in, and
survive being sent to another process."""

import hashlib
import hmac
import pickle
import random

from medical_assets.privacy.keys import PseudonymKey
from medical_assets.privacy.pseudonyms import MAX_DATE_SHIFT_DAYS, TOKEN_LENGTH, KeyedSha256, Pseudonymizer

KEY = PseudonymKey("test-key", b"synthetic secret, 32 bytes long.")


def _expected(domain: str, value: str) -> str:
    message = f"{domain}\x1f{value}".encode()
    return hmac.new(KEY.derive("token"), message, hashlib.sha256).hexdigest()[:TOKEN_LENGTH]


def test_tokens_are_hmac_sha256_of_domain_and_value_in_any_order():
    pseudonymizer = Pseudonymizer(KEY)
    asked = [("patient", "4827691"), ("message", "MSG0001"), ("patient", "4827692"), ("message", "MSG0001"),
             ("source_file", "adt_0001.hl7"), ("patient", "4827691")]  # fmt: skip
    for domain, value in asked:
        assert pseudonymizer.token(domain, value) == _expected(domain, value)
    assert pseudonymizer.token("patient", "  4827691 ") == _expected("patient", "4827691")
    assert pseudonymizer.token("patient", "4827691") != pseudonymizer.token("message", "4827691")
    assert pseudonymizer.token("patient", "   ") is None


def test_a_pseudonymizer_that_has_made_tokens_pickles_and_gives_the_same_tokens():
    pseudonymizer = Pseudonymizer(KEY)
    before = pseudonymizer.token("patient", "4827691")
    copy = pickle.loads(pickle.dumps(pseudonymizer))
    assert copy.token("patient", "4827691") == before == _expected("patient", "4827691")


def test_keyed_sha256_is_hmac_sha256_for_keys_of_every_length_and_any_prefix():
    """Tokens and date offsets come from `KeyedSha256`, our own use of RFC 2104's pads: it must equal
    the standard library's HMAC for keys shorter than, as long as and longer than a block (64 bytes)."""
    rng = random.Random(3)
    for key_length in (0, 1, 31, 32, 63, 64, 65, 128, 200):
        key = bytes(rng.getrandbits(8) for _ in range(key_length))
        for prefix in (b"", b"patient\x1f", bytes(range(256))):
            keyed = KeyedSha256(key, prefix)
            for message in (b"", b"4827691", "Ærø ü".encode(), bytes(rng.getrandbits(8) for _ in range(300))):
                expected = hmac.new(key, prefix + message, hashlib.sha256)
                assert keyed.digest(message) == expected.digest()
                assert keyed.hexdigest(message) == expected.hexdigest()


def test_date_offsets_are_the_hmac_of_the_patient_cut_to_a_non_zero_shift():
    pseudonymizer = Pseudonymizer(KEY)
    for patient in ("4827691", "SGH\x1e4827691", " 4827691 ", None):
        digest = hmac.new(KEY.derive("date-shift"), (patient or "").strip().encode(), hashlib.sha256).digest()
        magnitude = 1 + int.from_bytes(digest[:4], "big") % MAX_DATE_SHIFT_DAYS
        assert pseudonymizer.date_offset_days(patient) == (magnitude if digest[4] & 1 else -magnitude)
    copy = pickle.loads(pickle.dumps(pseudonymizer))
    assert copy.date_offset_days("4827691") == pseudonymizer.date_offset_days("4827691")
