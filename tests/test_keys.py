"""Token signing and verification (sso/keys.py, RFC 9068 §4, RFC 8725).

Forged tokens are built by hand with ``cryptography`` and ``hmac`` so the
tests do not depend on the library under test to produce the attack.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from config.keygen import generate_key_pair
from sso.keys import KeySet, TokenRejected

ISS, AUD = "http://sso.test", "fluxer-api"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segments(header: dict, claims: dict) -> bytes:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}".encode()


def rsa_sign(private_pem: str, header: dict, claims: dict, hash_alg=None) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), None)
    signing_input = segments(header, claims)
    signature = key.sign(signing_input, padding.PKCS1v15(), hash_alg or hashes.SHA256())
    return f"{signing_input.decode()}.{b64(signature)}"


def hmac_sign(secret: bytes, header: dict, claims: dict) -> str:
    signing_input = segments(header, claims)
    return f"{signing_input.decode()}.{b64(hmac.new(secret, signing_input, hashlib.sha256).digest())}"


@pytest.fixture(scope="module")
def keyset(key_pair) -> KeySet:
    return KeySet(key_pair[0], [key_pair[1]])


@pytest.fixture
def claims() -> dict:
    now = int(time.time())
    return {"iss": ISS, "sub": "42", "aud": AUD, "iat": now, "exp": now + 300, "jti": "j", "sid": "s"}


def verify(keyset: KeySet, token: str) -> dict:
    return keyset.verify(token, typ="at+jwt", audience=AUD, issuer=ISS, now=time.time())


def test_round_trip_and_header(keyset, claims):
    """A token we sign verifies and carries alg RS256, typ at+jwt and our kid."""
    token = keyset.sign(claims, "at+jwt")
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "RS256", "typ": "at+jwt", "kid": keyset.kid}
    assert verify(keyset, token)["sub"] == "42"


def test_hand_signed_rs256_token_verifies(keyset, key_pair, claims):
    """The forging helper itself produces acceptable tokens, so rejections below are meaningful."""
    token = rsa_sign(key_pair[0], {"alg": "RS256", "typ": "at+jwt", "kid": keyset.kid}, claims)
    assert verify(keyset, token)["jti"] == "j"


def test_alg_none_is_rejected(keyset, claims):
    header = {"alg": "none", "typ": "at+jwt", "kid": keyset.kid}
    for token in (segments(header, claims).decode() + ".", segments(header, claims).decode() + ".e30"):
        with pytest.raises(TokenRejected):
            verify(keyset, token)


@pytest.mark.parametrize("form", ["pem", "pkcs1", "ssh", "der"])
def test_hmac_keyed_with_our_public_key_is_rejected(keyset, key_pair, claims, form):
    """CVE-2024-33663 and its variants: HS256 'signed' with the public key in any encoding."""
    public = serialization.load_pem_public_key(key_pair[1].encode())
    secret = {
        "pem": key_pair[1].encode(),
        "pkcs1": public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
        "ssh": public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH),
        "der": public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
    }[form]
    token = hmac_sign(secret, {"alg": "HS256", "typ": "at+jwt", "kid": keyset.kid}, claims)
    with pytest.raises(TokenRejected):
        verify(keyset, token)


def test_other_rsa_algorithms_are_rejected(keyset, key_pair, claims):
    """RS512 with our own key is still not RS256."""
    token = rsa_sign(key_pair[0], {"alg": "RS512", "typ": "at+jwt", "kid": keyset.kid}, claims, hashes.SHA512())
    with pytest.raises(TokenRejected, match="RS256"):
        verify(keyset, token)


def test_signature_by_another_key_is_rejected(keyset, claims):
    other_private, _ = generate_key_pair()
    token = rsa_sign(other_private, {"alg": "RS256", "typ": "at+jwt", "kid": keyset.kid}, claims)
    with pytest.raises(TokenRejected):
        verify(keyset, token)


@pytest.mark.parametrize(
    "header_change, reason",
    [
        ({"typ": "JWT"}, "typ"),
        ({"typ": None}, "typ"),
        ({"kid": "not-our-kid"}, "kid"),
        ({"kid": None}, "kid"),
        ({"kid": 7}, "kid"),
    ],
)
def test_header_checks(keyset, key_pair, claims, header_change, reason):
    """typ must be the expected one and kid must name one of our keys."""
    header = {"alg": "RS256", "typ": "at+jwt", "kid": keyset.kid, **header_change}
    header = {k: v for k, v in header.items() if v is not None}
    with pytest.raises(TokenRejected, match=reason):
        verify(keyset, rsa_sign(key_pair[0], header, claims))


def test_id_token_is_not_an_access_token(keyset, claims):
    """A token signed with typ JWT (an id token) fails where at+jwt is expected."""
    with pytest.raises(TokenRejected):
        verify(keyset, keyset.sign(claims, "JWT"))


@pytest.mark.parametrize("missing", ["exp", "iat", "iss", "aud", "sub"])
def test_required_claims(keyset, key_pair, claims, missing):
    """python-jose would accept these missing; we do not."""
    del claims[missing]
    token = rsa_sign(key_pair[0], {"alg": "RS256", "typ": "at+jwt", "kid": keyset.kid}, claims)
    with pytest.raises(TokenRejected):
        verify(keyset, token)


@pytest.mark.parametrize(
    "change",
    [
        {"aud": "someone-else"},
        {"aud": ["someone-else"]},
        {"iss": "http://evil.test"},
        {"exp": int(time.time()) - 1},
        {"iat": "yesterday"},
        {"exp": "later"},
    ],
)
def test_claim_values(keyset, key_pair, claims, change):
    claims.update(change)
    token = rsa_sign(key_pair[0], {"alg": "RS256", "typ": "at+jwt", "kid": keyset.kid}, claims)
    with pytest.raises(TokenRejected):
        verify(keyset, token)


def test_audience_list_containing_ours_is_accepted(keyset, key_pair, claims):
    claims["aud"] = ["other", AUD]
    token = rsa_sign(key_pair[0], {"alg": "RS256", "typ": "at+jwt", "kid": keyset.kid}, claims)
    assert verify(keyset, token)["aud"] == ["other", AUD]


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c.d", "x" * 9000, "é.é.é", "!!!.???.###"])
def test_malformed_and_oversized_tokens(keyset, token):
    with pytest.raises(TokenRejected):
        verify(keyset, token)


def test_oversized_but_validly_signed_token_is_rejected_before_crypto(keyset, key_pair, claims):
    claims["padding"] = "x" * 9000
    token = rsa_sign(key_pair[0], {"alg": "RS256", "typ": "at+jwt", "kid": keyset.kid}, claims)
    with pytest.raises(TokenRejected, match="oversized"):
        verify(keyset, token)


def test_jwe_is_rejected_before_python_jose(keyset, monkeypatch):
    """CVE-2024-33664: python-jose inflates a JWE's zip=DEF payload without a bound. A five-part token
    (JWE compact form) carrying a deflate bomb never reaches python-jose: verification wants three parts."""
    import zlib

    import jose.jwe
    import jose.jwt

    def forbidden(*_args, **_kwargs):
        raise AssertionError("python-jose was called")

    monkeypatch.setattr(jose.jwe, "decrypt", forbidden)
    monkeypatch.setattr(jose.jwt, "decode", forbidden)
    header = b64(json.dumps({"alg": "dir", "enc": "A128GCM", "zip": "DEF", "kid": keyset.kid}).encode())
    bomb = b64(zlib.compress(b"\0" * 5_000_000, 9))  # 5 MB of zeros in ~5 KB
    token = f"{header}..{b64(b'iv' * 6)}.{bomb}.{b64(b'tag' * 5)}"
    assert len(token) < 8192
    with pytest.raises(TokenRejected, match="compact JWS"):
        verify(keyset, token)


def test_signing_key_must_be_among_the_published_keys(key_pair):
    _, other_public = generate_key_pair()
    with pytest.raises(ValueError):
        KeySet(key_pair[0], [other_public])


# -- the cache of checked tokens (KeySet._checked) ----------------------------------------


def test_cached_token_still_checked_against_the_callers_clock_and_audience(key_pair, claims):
    """Expiry and audience are the caller's: a token accepted once is refused later, or elsewhere."""
    keyset = KeySet(key_pair[0], [key_pair[1]])
    token = keyset.sign(claims, "at+jwt")
    assert keyset.verify(token, typ="at+jwt", audience=AUD, issuer=ISS, now=claims["iat"])["sub"] == "42"
    with pytest.raises(TokenRejected, match="expired"):
        keyset.verify(token, typ="at+jwt", audience=AUD, issuer=ISS, now=claims["exp"])
    with pytest.raises(TokenRejected, match="audience"):
        keyset.verify(token, typ="at+jwt", audience="another-api", issuer=ISS, now=claims["iat"])
    with pytest.raises(TokenRejected, match="typ"):
        keyset.verify(token, typ="JWT", audience=AUD, issuer=ISS, now=claims["iat"])
    with pytest.raises(TokenRejected, match="python-jose"):
        keyset.verify(token, typ="at+jwt", audience=AUD, issuer="http://other.test", now=claims["iat"])
    assert keyset.verify(token, typ="at+jwt", audience=AUD, issuer=ISS, now=claims["iat"])["jti"] == "j"


def test_a_caller_changing_the_claims_does_not_change_the_cache(key_pair, claims):
    keyset = KeySet(key_pair[0], [key_pair[1]])
    token = keyset.sign(claims, "at+jwt")
    verify(keyset, token)["sub"] = "mallory"
    assert verify(keyset, token)["sub"] == "42"


def test_a_tampered_copy_of_a_cached_token_is_refused(key_pair, claims):
    keyset = KeySet(key_pair[0], [key_pair[1]])
    token = keyset.sign(claims, "at+jwt")
    verify(keyset, token)
    header, payload, signature = token.split(".")
    forged = b64(json.dumps({**claims, "sub": "1"}).encode())
    for tampered in (f"{header}.{forged}.{signature}", f"{header}.{payload}.{signature[:-4]}AAAA"):
        with pytest.raises(TokenRejected):
            verify(keyset, tampered)


def test_failures_are_not_cached_and_the_cache_is_bounded(key_pair, claims, monkeypatch):
    import sso.keys

    monkeypatch.setattr(sso.keys, "VERIFIED_CACHE_SIZE", 8)
    keyset = KeySet(key_pair[0], [key_pair[1]])
    tokens = [keyset.sign({**claims, "jti": str(i)}, "at+jwt") for i in range(20)]
    for token in tokens:
        verify(keyset, token)
    with pytest.raises(TokenRejected):
        verify(keyset, "a.b.c")
    info = keyset._checked.cache_info()
    assert info.currsize == 8 and info.maxsize == 8
    assert verify(keyset, tokens[-1])["jti"] == "19"
    assert keyset._checked.cache_info().hits == info.hits + 1
