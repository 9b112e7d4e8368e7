"""Local verification of the service's access tokens (RFC 9068 profile, RS256 only).

Order of checks, cheapest and most hostile first: size, header (``alg`` RS256,
``typ`` at+jwt, a ``kid``), the key for that ``kid``, the signature with
``algorithms=["RS256"]`` fixed (so ``alg: none`` and HMAC-with-the-public-key
tokens never reach a key), ``iss`` and ``aud``, then ``exp``/``iat``/``nbf``
against the injected clock with a small leeway, the lifetime bound, and last
the revocation list. Every refusal is a TokenError with a short public reason.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt

from fluxer_sso_client.errors import InsufficientScope, TokenError, VerificationUnavailable
from fluxer_sso_client.jwks import JWKSCache
from fluxer_sso_client.revocation import RevocationList

MAX_TOKEN_BYTES = 8192
MAX_HEADER_CHARS = 1024  # base64url of the header; ours is about 120
ACCEPTED_TYP = ("at+jwt", "application/at+jwt")  # RFC 9068 §4: compare case-insensitively
REQUIRED = ("iss", "aud", "exp", "iat", "sub", "sid", "jti")


@dataclass(frozen=True)
class AccessToken:
    """A verified access token's claims."""

    sub: str
    sid: str
    jti: str
    client_id: str
    scopes: frozenset[str]
    exp: int
    iat: int
    claims: dict[str, Any] = field(repr=False)

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class SeenSessions:
    """The sessions this instance accepted tokens for, until those tokens expire (bounded LRU).

    These are what it must re-check with ``/session/status`` after missing events.
    """

    def __init__(self, max_entries: int, clock: Callable[[], float]) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._exp: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def note(self, sid: str, exp: float) -> None:
        with self._lock:
            self._exp[sid] = max(exp, self._exp.get(sid, exp))
            self._exp.move_to_end(sid)
            while len(self._exp) > self.max_entries:
                self._exp.popitem(last=False)

    def live(self) -> list[str]:
        now = self._clock()
        with self._lock:
            for sid in [s for s, exp in self._exp.items() if exp <= now]:
                del self._exp[sid]
            return list(self._exp)


class TokenVerifier:
    """Verifies access tokens from the cached JWKS; no round trip to the service."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks: JWKSCache,
        revocations: RevocationList | None = None,
        leeway: float = 30.0,
        max_token_lifetime: float | None = None,
        clock: Callable[[], float] = time.time,
        health: Callable[[], None] | None = None,
    ) -> None:
        """``health`` is called before each verification and may raise VerificationUnavailable
        (the listener's strict outage mode)."""
        self.issuer = issuer
        self.audience = audience
        self.jwks = jwks
        self.revocations = revocations
        self.leeway = leeway
        self.max_token_lifetime = (
            max_token_lifetime if max_token_lifetime is not None
            else (revocations.max_token_lifetime if revocations else 3600.0)
        )  # fmt: skip
        self._clock = clock
        self.health = health
        self.seen = SeenSessions(100_000, clock)

    def verify(self, token: str, scope: str | Iterable[str] | None = None) -> AccessToken:
        """The token's claims, or TokenError / InsufficientScope / VerificationUnavailable."""
        if self.health is not None:
            self.health()
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_BYTES:
            raise TokenError("malformed or oversized token")
        if token.find(".") > MAX_HEADER_CHARS:  # a deeply nested JSON header would exhaust the parser
            raise TokenError("oversized token header")
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, RecursionError, ValueError):
            raise TokenError("malformed token") from None
        if header.get("alg") != "RS256":
            raise TokenError("unsupported algorithm")
        if str(header.get("typ", "")).lower() not in ACCEPTED_TYP:
            raise TokenError("not an access token")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenError("no key id")
        key = self.jwks.get(kid)
        if key is None:
            raise TokenError("unknown signing key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.issuer,
                # times are checked below against the injected clock
                options={"require": list(REQUIRED), "verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(_reason(exc)) from None
        access = self._check_times_and_claims(claims)
        if self.revocations is not None and self.revocations.is_denied(access.sid, access.jti):
            raise TokenError("token revoked")
        self.seen.note(access.sid, access.exp)
        for needed in [scope] if isinstance(scope, str) else (scope or ()):
            if needed not in access.scopes:
                raise InsufficientScope(needed)
        return access

    def _check_times_and_claims(self, claims: dict[str, Any]) -> AccessToken:
        now = self._clock()
        exp, iat, nbf = claims["exp"], claims["iat"], claims.get("nbf", 0)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (exp, iat, nbf)):
            raise TokenError("malformed time claim")
        if exp <= now - self.leeway:
            raise TokenError("token expired")
        if iat > now + self.leeway or nbf > now + self.leeway:
            raise TokenError("token not yet valid")
        if exp - iat > self.max_token_lifetime:
            raise TokenError("token lives longer than this verifier can revoke")
        strings = [claims.get(k) for k in ("sub", "sid", "jti")]
        scope, client_id = claims.get("scope", ""), claims.get("client_id", "")
        if not all(isinstance(v, str) and v for v in strings) or not isinstance(scope, str):
            raise TokenError("malformed claims")
        sub, sid, jti = (str(v) for v in strings)
        return AccessToken(
            sub=sub, sid=sid, jti=jti, client_id=str(client_id), scopes=frozenset(scope.split()),
            exp=exp, iat=iat, claims=claims,
        )  # fmt: skip


def _reason(exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.InvalidAudienceError):
        return "wrong audience"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "wrong issuer"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"missing claim {exc.claim!r}"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "bad signature"
    return "malformed token"


__all__ = ["AccessToken", "TokenVerifier", "VerificationUnavailable"]
