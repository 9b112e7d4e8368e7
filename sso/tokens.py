"""Token minting (RFC 9068, OIDC Core §2), introspection (RFC 7662), revocation (RFC 7009).

Access tokens are RS256 JWTs that API instances verify locally from the JWKS.
This service additionally tracks two kinds of state for them, checked by
/introspect and /userinfo: a denylist of revoked ``jti`` values (kept until
the token would have expired) and the liveness of the session (``sid``) the
token hangs on. Refresh tokens are opaque and live only as hashes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from config.settings import Settings
from sso import events, scopes
from sso.backchannel import LOGOUT_TOKEN_LIFETIME
from sso.digests import b64url
from sso.errors import InsufficientScope, InvalidToken, UnsupportedTokenType
from sso.keys import KeySet, TokenRejected
from sso.store import RedisStore, ReplicaTimeout, Revoked
from sso.worker import BackgroundWorker

audit_log = logging.getLogger("sso.audit")

# Names, not secrets: bandit's B105 reads any "token" = "..." as a password.
ACCESS_TOKEN_TYP = "at+jwt"  # nosec B105  # RFC 9068 §2.1
ID_TOKEN_TYP = "JWT"  # nosec B105
BEARER = "Bearer"  # RFC 6750 token_type
REFRESH_TOKEN_TYPE = "refresh_token"  # nosec B105  # RFC 7662 token_type of a refresh token
ACCESS_TOKEN_TYPE = "access_token"  # nosec B105  # RFC 7009/7662 token_type_hint
TOKEN_TYPE_HINTS = (ACCESS_TOKEN_TYPE, REFRESH_TOKEN_TYPE)
# The most jtis one tokens-revoked event names (~12 KB of JSON); more are split over several events.
JTIS_PER_EVENT = 256


def signed_token_lifetimes(settings: Settings) -> dict[str, int]:
    """The longest life of each kind of JWT this service signs, in seconds.

    Key rotation keeps a retired key published until the longest of these has
    passed (sso/cli.py ``rotate-keys``). An id token lives as long as the access
    token it accompanies (``mint_id_token`` gets its ``expires_in``). A new kind of
    signed token must be added here.
    """
    lifetimes = {"access token": settings.access_token_ttl, "id token": settings.access_token_ttl}
    if settings.backchannel_logout_uris:
        lifetimes["logout token"] = LOGOUT_TOKEN_LIFETIME
    return lifetimes


def at_hash(access_token: str) -> str:
    """OIDC Core §3.1.3.6: left half of SHA-256 of the access token, base64url."""
    return b64url(hashlib.sha256(access_token.encode("ascii")).digest()[:16])


def looks_like_jwt(token: str) -> bool:
    """Our refresh tokens are base64url without dots; our access tokens are compact JWS."""
    return token.count(".") == 2


@dataclass(frozen=True)
class ActiveAccessToken:
    claims: dict[str, Any]
    session: dict[str, str]


class TokenService:
    def __init__(
        self,
        keys: KeySet,
        store: RedisStore,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        *,
        worker: BackgroundWorker | None = None,
    ) -> None:
        self.keys = keys
        self.store = store
        self.settings = settings
        self.clock = clock
        self.worker = worker

    def announce(self, revoked: Revoked | None, reason: str) -> None:
        """Tell API instances (which verify access tokens locally) which tokens to refuse now: one event
        per JTIS_PER_EVENT of them, so a family rotated thousands of times in one lifetime is named
        whole in messages of bounded size."""
        if revoked is None or self.worker is None:
            return
        for start in range(0, len(revoked.jtis), JTIS_PER_EVENT):
            self.worker.publish(
                events.tokens_revoked(revoked.user_id, [revoked.sid], revoked.jtis[start : start + JTIS_PER_EVENT],
                                      revoked.expires_at, self.clock(), reason=reason)
            )  # fmt: skip

    # -- minting ----------------------------------------------------------------

    def mint_access_token(
        self,
        *,
        user_id: str,
        sid: str,
        client_id: str,
        scope: str,
        jti: str,
        session_expires_at: int,
        family_expires_at: int,
        now: int | None = None,
    ) -> tuple[str, int]:
        """An RFC 9068 access token and its lifetime, never outliving its session or its refresh family.

        The store revokes the tokens of an absent family while its session-wide mark lasts, which is
        exact only if no token outlives its family (docs/storage.md); the store records this same
        ``exp`` for the family. ``now``: the instant the store recorded the token at, so the two never
        disagree across a second boundary."""
        now = int(self.clock()) if now is None else now
        exp = min(now + self.settings.access_token_ttl, session_expires_at, family_expires_at)
        claims = {
            "iss": self.settings.issuer,
            "sub": user_id,
            "aud": self.settings.access_token_audience,
            "client_id": client_id,
            "scope": scope,
            "sid": sid,
            "iat": now,
            "exp": exp,
            "jti": jti,
        }
        return self.keys.sign(claims, ACCESS_TOKEN_TYP), exp - now

    def mint_id_token(
        self,
        *,
        user_id: str,
        client_id: str,
        sid: str,
        auth_time: int,
        nonce: str | None,
        access_token: str,
        expires_in: int,
    ) -> str:
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.settings.issuer,
            "sub": user_id,
            "aud": client_id,
            "iat": now,
            "exp": now + expires_in,
            "auth_time": auth_time,
            "sid": sid,
            "at_hash": at_hash(access_token),
        }
        if nonce:
            claims["nonce"] = nonce
        return self.keys.sign(claims, ID_TOKEN_TYP)

    # -- verification -------------------------------------------------------------

    def verify_access_token(self, token: str, now: float | None = None) -> dict[str, Any]:
        """Signature, algorithm, typ, kid, iss, aud, exp and iat; TokenRejected otherwise."""
        return self.keys.verify(
            token,
            typ=ACCESS_TOKEN_TYP,
            audience=self.settings.access_token_audience,
            issuer=self.settings.issuer,
            now=self.clock() if now is None else now,
        )

    def verify_id_token_hint(self, token: str) -> dict[str, Any]:
        """An id token we issued to one of our clients; expired ones are accepted
        (OIDC RP-Initiated Logout §2: the hint may have expired)."""
        return self.keys.verify(
            token,
            typ=ID_TOKEN_TYP,
            audience=self.settings.clients,
            issuer=self.settings.issuer,
            now=self.clock(),
            verify_exp=False,
        )

    def id_token_hint_subject(self, token: str) -> str:
        """The user an ``id_token_hint`` at /authorize names (sso/authorization.py)."""
        sub = self.verify_id_token_hint(token).get("sub")
        if not isinstance(sub, str):
            raise TokenRejected("no sub")
        return sub

    def active_access_token(self, token: str) -> ActiveAccessToken | None:
        """A currently valid access token: signature checks plus one Redis round trip.

        One instant for both: a token of an ended family has exp <= 'y', so "not expired" and
        "'y' still in the future" cannot both fail to catch it (docs/storage.md)."""
        now = self.clock()
        try:
            claims = self.verify_access_token(token, now)
        except TokenRejected:
            return None
        if not all(isinstance(claims.get(k), str) for k in ("jti", "sid", "client_id", "scope")):
            return None
        revoked, session = self.store.access_token_state(claims["jti"], claims["sub"], claims["sid"], now)
        if revoked or session is None or int(session.get("expires_at", 0)) <= now:
            return None
        return ActiveAccessToken(claims, session)

    def userinfo(self, token: str) -> dict[str, Any]:
        """OIDC Core §5.3: ``sub`` plus the session claims the token's scope releases."""
        active = self.active_access_token(token)
        if active is None:
            raise InvalidToken()
        scope = active.claims["scope"]
        if "openid" not in scope.split():
            raise InsufficientScope()
        claims = scopes.released_claims(scope, json.loads(active.session.get("claims") or "{}"))
        return {**claims, "sub": active.claims["sub"]}

    # -- RFC 7662 -------------------------------------------------------------------

    def introspect(self, token: str, hint: str | None) -> dict[str, Any]:
        """§2.2: ``{"active": false}`` and nothing else for anything not currently valid."""
        if hint is not None and hint not in TOKEN_TYPE_HINTS:
            raise UnsupportedTokenType()
        if looks_like_jwt(token):
            active = self.active_access_token(token)
            if active is None:
                return {"active": False}
            c = active.claims
            return {
                "active": True,
                "sub": c["sub"],
                "client_id": c["client_id"],
                "scope": c["scope"],
                "exp": c["exp"],
                "iat": c["iat"],
                "token_type": BEARER,
                "sid": c["sid"],
                "iss": c["iss"],
                "aud": c["aud"],
                "jti": c["jti"],
            }
        info = self.store.inspect_refresh(token, int(self.clock()))
        if info is None:
            return {"active": False}
        return {
            "active": True,
            "sub": info.user_id,
            "client_id": info.client_id,
            "scope": info.scope,
            "exp": info.expires_at,
            "iat": info.issued_at,
            "token_type": REFRESH_TOKEN_TYPE,
            "sid": info.sid,
            "iss": self.settings.issuer,
        }

    # -- RFC 7009 -------------------------------------------------------------------

    def revoke(self, token: str, hint: str | None, client_id: str | None, *, actor: str) -> None:
        """Revoke a token if it exists and belongs to ``client_id`` (None: service caller).

        §2.2: the answer is the same whether or not anything was revoked, so the
        caller cannot probe which tokens exist or whose they are; the audit line
        (``actor``: who asked) says what happened.
        """
        if hint is not None and hint not in TOKEN_TYPE_HINTS:
            raise UnsupportedTokenType()
        if looks_like_jwt(token):
            try:
                claims = self.verify_access_token(token)
            except TokenRejected:
                audit_log.info("token-revoke", extra={"actor": actor, "token_type": ACCESS_TOKEN_TYPE,
                                                      "outcome": "unknown"})  # fmt: skip
                return  # invalid or expired: nothing left to revoke
            outcome = "other-client" if client_id is not None and claims.get("client_id") != client_id else "revoked"
            if outcome == "revoked":
                jti, sid, exp = str(claims["jti"]), str(claims.get("sid", "")), int(claims["exp"])
                try:
                    revoked = self.store.revoke_access(jti, str(claims["sub"]), sid, exp, int(self.clock()))
                except ReplicaTimeout as exc:  # marked on the primary: announce it, then answer 503
                    self.announce(exc.result, events.REVOKED)
                    raise
                self.announce(revoked, events.REVOKED)
            audit_log.info("token-revoke", extra={"actor": actor, "token_type": ACCESS_TOKEN_TYPE, "outcome": outcome,
                                                  "user_id": claims.get("sub"), "jti": claims.get("jti"),
                                                  "sid": claims.get("sid")})  # fmt: skip
            return
        try:
            result, revoked = self.store.revoke_refresh(token, client_id, int(self.clock()))
        except ReplicaTimeout as exc:  # revoked on the primary: announce it, then answer 503
            self.announce(exc.result[1], events.REVOKED)
            raise
        self.announce(revoked, events.REVOKED)
        outcome = {1: "revoked", 0: "unknown", -1: "other-client"}.get(result, "unknown")
        audit_log.info("token-revoke", extra={"actor": actor, "token_type": REFRESH_TOKEN_TYPE, "outcome": outcome})
