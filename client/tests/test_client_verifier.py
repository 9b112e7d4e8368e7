"""TokenVerifier: real tokens from the service verify; every kind of forgery is refused."""

from __future__ import annotations

from typing import Any

import pytest
from fluxer_sso_client import JWKSCache, TokenError, TokenVerifier
from fluxer_sso_client.errors import InsufficientScope, VerificationUnavailable
from fluxer_sso_client.jwks import parse_keys
from harness import ISSUER, SSOServer
from local_tokens import OTHER_PRIVATE, PUBLIC, Clock, b64, hs256_with_public_key, jwk_set, mint


def test_a_token_from_the_real_flow_verifies(sso: SSOServer, verifier: TokenVerifier, user: str) -> None:
    """authorize -> token at the real service gives a token the verifier accepts, with its claims."""
    token, session = sso.access_token(user)
    access = verifier.verify(token, scope="profile")
    assert (access.sub, access.sid, access.client_id) == (user, session["session_id_hash"], "fluxer")
    assert access.scopes == {"openid", "profile"}
    with pytest.raises(InsufficientScope):
        verifier.verify(token, scope="email")


def test_a_local_token_verifies(local: TokenVerifier, clock: Clock) -> None:
    """The baseline for the refusals below: a well-formed token is accepted."""
    assert local.verify(mint(clock)).jti == "j1"


@pytest.mark.parametrize(
    ("why", "make"),
    [
        ("alg none", lambda c: b64({"alg": "none", "typ": "at+jwt", "kid": "k0"}) + "." + b64({"sub": "42"}) + "."),
        ("HS256 keyed with the public PEM", lambda c: hs256_with_public_key(c)),
        ("another key", lambda c: mint(c, key=OTHER_PRIVATE)),
        ("an id token", lambda c: mint(c, headers={"typ": "JWT"})),
        ("a logout token", lambda c: mint(c, headers={"typ": "logout+jwt"})),
        ("no kid", lambda c: mint(c, kid="")),
        ("unknown kid", lambda c: mint(c, kid="nope")),
        ("wrong audience", lambda c: mint(c, aud="fluxer")),
        ("wrong issuer", lambda c: mint(c, iss="http://evil.test")),
        ("expired", lambda c: mint(c, exp=int(c.now) - 31)),
        ("issued in the future", lambda c: mint(c, iat=int(c.now) + 60, exp=int(c.now) + 900)),
        ("no exp", lambda c: mint(c, exp=None)),
        ("no iat", lambda c: mint(c, iat=None)),
        ("no sid", lambda c: mint(c, sid=None)),
        ("no jti", lambda c: mint(c, jti=None)),
        ("a string exp", lambda c: mint(c, exp="9999999999")),
        ("lives longer than the revocation window", lambda c: mint(c, exp=int(c.now) + 7200)),
        ("oversized", lambda c: mint(c, pad="x" * 9000)),
        ("garbage", lambda c: "not.a.jwt"),
        ("a deeply nested header", lambda c: b64(b"[" * 3000 + b"]" * 3000) + "." + b64({}) + "."),
        ("a header that is not an object", lambda c: b64(b"[1]") + "." + b64({}) + "."),
    ],
)
def test_forged_or_wrong_tokens_are_refused(local: TokenVerifier, clock: Clock, why: str, make: Any) -> None:
    """Each forgery or mismatch is an invalid_token, never an accepted token or a crash."""
    token = make(clock)
    with pytest.raises(TokenError) as caught:
        local.verify(token)
    assert caught.value.error == "invalid_token"


def test_leeway_accepts_small_clock_skew(local: TokenVerifier, clock: Clock) -> None:
    """A token expired 10 s ago, or issued 10 s ahead, passes within the 30 s leeway."""
    assert local.verify(mint(clock, exp=int(clock.now) - 10, iat=int(clock.now) - 900))
    assert local.verify(mint(clock, iat=int(clock.now) + 10))


def test_expiry_follows_the_injected_clock(local: TokenVerifier, clock: Clock) -> None:
    """The same token verifies now and is refused once the clock passes exp + leeway."""
    token = mint(clock)
    local.verify(token)
    clock.now += 900 + 31
    with pytest.raises(TokenError, match="expired"):
        local.verify(token)


def test_revoked_sessions_and_tokens_are_refused(local: TokenVerifier, clock: Clock) -> None:
    """A denied sid refuses every token of its session; a denied jti only that token."""
    assert local.revocations is not None
    local.revocations.deny_tokens(["j1"], expires_at=clock.now + 900)
    with pytest.raises(TokenError, match="revoked"):
        local.verify(mint(clock))
    assert local.verify(mint(clock, jti="j2"))
    local.revocations.deny_sessions(["S" * 43], at=clock.now)
    with pytest.raises(TokenError, match="revoked"):
        local.verify(mint(clock, jti="j3"))
    assert local.verify(mint(clock, sid="T" * 43, jti="j4"))


def test_verification_is_unavailable_until_keys_ever_load(clock: Clock) -> None:
    """No JWKS yet (service down at start): 503-type VerificationUnavailable, not invalid_token."""

    def down(_: str) -> Any:
        raise OSError("connection refused")

    jwks = JWKSCache("http://127.0.0.1:9/", fetch=down, clock=clock)
    verifier = TokenVerifier(issuer=ISSUER, audience="fluxer-api", jwks=jwks, clock=clock)
    with pytest.raises(VerificationUnavailable):
        verifier.verify(mint(clock))


def test_private_and_foreign_keys_in_a_jwks_are_ignored() -> None:
    """Only RSA signature keys for RS256 are taken from the set."""
    good = jwk_set(PUBLIC)["keys"][0]
    others = [{**good, "kid": "enc", "use": "enc"}, {**good, "kid": "ps", "alg": "PS256"},
              {"kty": "oct", "kid": "h", "k": "c2VjcmV0"}, {**good, "kid": "priv", "d": "AAAA"}, "junk"]  # fmt: skip
    doc = {"keys": [good, *others]}
    assert set(parse_keys(doc)) == {"k0"}
