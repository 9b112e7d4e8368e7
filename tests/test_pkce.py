"""PKCE S256 (RFC 7636)."""

from __future__ import annotations

import pytest

from sso import pkce
from tests.conftest import CHALLENGE, VERIFIER


def test_rfc7636_appendix_b_vector():
    """The RFC's own example verifier hashes to its example challenge."""
    assert pkce.s256(VERIFIER) == CHALLENGE
    assert pkce.verify(VERIFIER, CHALLENGE) is True


@pytest.mark.parametrize(
    "verifier",
    [
        "a" * 42,  # too short
        "a" * 129,  # too long
        VERIFIER[:-1] + "+",  # not unreserved
        VERIFIER[:-1] + " ",
        VERIFIER[:-1] + "é",
    ],
)
def test_malformed_verifiers_never_verify(verifier):
    """Verifiers outside 43-128 unreserved characters fail whatever they hash to."""
    assert pkce.valid_verifier(verifier) is False
    assert pkce.verify(verifier, pkce.s256(verifier) if verifier.isascii() else CHALLENGE) is False


def test_wrong_verifier_fails():
    assert pkce.verify("b" * 43, CHALLENGE) is False


def test_plain_challenge_is_not_a_valid_s256_challenge():
    """A plain-method challenge (the verifier itself, up to 128 chars) is not 43 base64url chars."""
    assert pkce.valid_challenge("a" * 50) is False
    assert pkce.valid_challenge(CHALLENGE) is True
