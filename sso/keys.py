"""The signing key set: sign, verify, JWKS (RFC 7517, RFC 7638, RFC 9068 §4).

The only module that imports python-jose. Keys are parsed once, when the app
is created, and reused for every request. Verification closes python-jose's
known gaps before calling it: it would accept any algorithm the key allows,
does not require ``exp``/``iat``/``aud``/``iss`` unless told, ignores ``typ``,
and tries every key of a set. So a token is rejected before any crypto unless
it is small, has exactly three segments, ``alg`` is exactly RS256, ``typ`` is
the expected one and ``kid`` names one of our keys; then python-jose checks
the signature with that one RSA key object and the required claims. An HMAC
token "signed" with our public key (CVE-2024-33663, PEM, SSH or DER form)
never reaches a verifier, and ``alg: none`` neither.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from jose import jwk, jws, jwt
from jose.backends.base import Key
from jose.exceptions import JOSEError

from sso.digests import b64url

ALGORITHM = "RS256"
MAX_TOKEN_LENGTH = 8192
MAX_HEADER_LENGTH = 1024  # our headers are ~110 characters; nothing legitimate is near this
# Tokens whose signature and fixed claims were checked, per process: an API instance introspects
# or calls /userinfo with the same access token many times over its lifetime. ~2 KB each.
VERIFIED_CACHE_SIZE = 2048
_TYP_ALIASES = {"at+jwt": ("at+jwt", "application/at+jwt"), "JWT": ("jwt", "application/jwt")}


class TokenRejected(Exception):
    """A JWT failed verification; the message is for the log only."""


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _thumbprint(public_jwk: dict[str, str]) -> str:
    """RFC 7638 §3: SHA-256 over the required members in lexicographic order."""
    canonical = json.dumps({k: public_jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


class KeySet:
    """One signing key and the public keys accepted for verification, by kid.

    ``public_pems`` is the signing key's public key first, then the extra keys of a
    rotation (SSO_JWT_EXTRA_PUBLIC_KEYS); the JWKS lists them in that order. A token
    signed by any of them verifies, each only with the key its ``kid`` names.
    """

    def __init__(self, private_pem: str, public_pems: Sequence[str]) -> None:
        self._signing_key: Key = jwk.construct(private_pem, ALGORITHM)
        self._verifiers: dict[str, Key] = {}
        published: list[dict[str, str]] = []
        for pem in public_pems:
            key = jwk.construct(pem, ALGORITHM)
            public = {k: v for k, v in key.to_dict().items() if k in ("kty", "n", "e")}
            kid = _thumbprint(public)
            if kid in self._verifiers:
                raise ValueError("a verification key is listed twice")
            self._verifiers[kid] = key
            published.append({**public, "kid": kid, "use": "sig", "alg": ALGORITHM})
        signing_public = {k: v for k, v in self._signing_key.public_key().to_dict().items() if k in ("kty", "n", "e")}
        self.kid = _thumbprint(signing_public)
        if not published or published[0]["kid"] != self.kid:
            raise ValueError("the signing key's public key must be the first verification key")
        self.jwks: dict[str, Any] = {"keys": published}
        self.jwks_json: bytes = json.dumps(self.jwks, separators=(",", ":")).encode()
        # Only successes are kept (lru_cache never stores an exception); what depends on the
        # caller (audience, expiry against its clock) is checked on every call.
        self._checked = functools.lru_cache(maxsize=VERIFIED_CACHE_SIZE)(self._check_signed)

    def sign(self, claims: dict[str, Any], typ: str) -> str:
        """Compact RS256 JWS with ``kid`` and ``typ`` in the header."""
        return jws.sign(claims, self._signing_key, headers={"kid": self.kid, "typ": typ}, algorithm=ALGORITHM)

    def verify(
        self,
        token: str,
        *,
        typ: str,
        audience: str | Sequence[str],
        issuer: str,
        now: float,
        verify_exp: bool = True,
    ) -> dict[str, Any]:
        """Claims of a token we issued, or TokenRejected. ``now`` is the caller's clock."""
        claims = dict(self._checked(token, typ, issuer))
        audiences = [audience] if isinstance(audience, str) else list(audience)
        aud = claims.get("aud")
        token_audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not any(a in audiences for a in token_audiences):
            raise TokenRejected("audience mismatch")
        if not isinstance(claims.get("exp"), int) or not isinstance(claims.get("iat"), int):
            raise TokenRejected("exp and iat must be integers")
        if verify_exp and claims["exp"] <= now:
            raise TokenRejected("expired")
        return claims

    def _check_signed(self, token: str, typ: str, issuer: str) -> dict[str, Any]:
        """The claims of a token whose form, header, signature, issuer and subject are ours.

        Independent of the caller's clock and audience, so the answer is the same on every
        call with the same arguments, and ``verify`` caches it.
        """
        if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise TokenRejected("empty, oversized or non-ASCII token")
        segments = token.split(".")
        if len(segments) != 3:
            raise TokenRejected("not a compact JWS")
        if len(segments[0]) > MAX_HEADER_LENGTH:
            raise TokenRejected("oversized header")
        try:
            header = json.loads(_b64decode(segments[0]))
        except (ValueError, binascii.Error, RecursionError) as exc:
            raise TokenRejected("unreadable header") from exc
        if not isinstance(header, dict) or header.get("alg") != ALGORITHM:
            raise TokenRejected("algorithm is not RS256")
        if str(header.get("typ", "")).lower() not in _TYP_ALIASES[typ]:
            raise TokenRejected(f"typ is not {typ}")
        kid = header.get("kid")
        key = self._verifiers.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenRejected("unknown kid")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=issuer,
                options={
                    "verify_aud": False,
                    "verify_exp": False,  # checked by verify() against the caller's clock
                    "verify_at_hash": False,
                    # Not require_exp/require_iat: python-jose turns a "require" into a forced
                    # "verify" against the wall clock, which would refuse expired id_token_hints.
                    # Presence and type of both are checked by verify(), expiry with its clock.
                    "require_exp": False,
                    "require_iat": False,
                    "require_iss": True,
                    "require_sub": True,
                    "leeway": 0,
                },
            )
        except (JOSEError, RecursionError) as exc:  # a deeply nested payload must not become a 500
            raise TokenRejected(f"python-jose: {type(exc).__name__}") from exc
        return claims
