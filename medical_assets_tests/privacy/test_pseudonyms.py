"""Tokens are HMAC-SHA256 of the domain and the value, whatever order domains are asked in, and
survive being sent to another process."""

import hashlib
import hmac
import pickle

from medical_assets.privacy.keys import PseudonymKey
from medical_assets.privacy.pseudonyms import TOKEN_LENGTH, Pseudonymizer

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
