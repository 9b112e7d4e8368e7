"""The token endpoint's grants: authorization code (RFC 6749 §4.1.3 + RFC 7636 §4.6)
and refresh token (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14).

Security state changes are single Lua scripts: a code is consumed atomically
(a second redemption revokes what the first issued, RFC 6749 §4.1.2), and a
refresh token rotates atomically (of two racing requests exactly one wins;
presenting a used token revokes the whole family).

Refresh tokens name their family and generation and carry a MAC under the
family's own key (sso/store/layout.py ``RefreshToken``): the successor of a
token is determined by it, so a retry within ``SSO_REFRESH_REUSE_GRACE`` gets
the *same* successor, and nothing is derived from the signing key — rotating
the signing key costs no user a refresh token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sso import errors, events, metrics, pkce, scopes
from sso.context import OAuthContext
from sso.digests import equals
from sso.tokens import BEARER, TokenService

log = logging.getLogger("sso.grants")

GRANT_TYPES = ("authorization_code", "refresh_token")  # what /token dispatches on, and discovery lists
MAX_TOKEN_LENGTH = 512


@dataclass(frozen=True)
class TokenResponse:
    access_token: str
    expires_in: int
    refresh_token: str
    scope: str
    id_token: str | None = None
    user_id: str = ""  # for the access log, never in the response

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": BEARER,
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "scope": self.scope,
        }
        if self.id_token:
            body["id_token"] = self.id_token
        return body


def _required(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not value:
        raise errors.InvalidRequest(f"{name}: missing")
    return str(value)


class GrantService:
    def __init__(self, ctx: OAuthContext, tokens: TokenService) -> None:
        self.ctx = ctx
        self.tokens = tokens

    def token(self, data: dict[str, Any]) -> TokenResponse:
        """Dispatch on grant_type after authenticating the (public) client."""
        client_id = data.get("client_id")
        if not self.ctx.clients.known(client_id):
            raise errors.InvalidClient("Unknown client_id.")
        grant_type = _required(data, "grant_type")
        if grant_type == "authorization_code":
            return self.authorization_code(str(client_id), data)
        if grant_type == "refresh_token":
            return self.refresh_token(str(client_id), data)
        raise errors.UnsupportedGrantType()

    # -- RFC 6749 §4.1.3 -------------------------------------------------------------

    def authorization_code(self, client_id: str, data: dict[str, Any]) -> TokenResponse:
        code = _required(data, "code")
        redirect_uri = _required(data, "redirect_uri")
        verifier = _required(data, "code_verifier")
        if not pkce.valid_verifier(verifier):
            raise errors.InvalidRequest("code_verifier: must be 43-128 unreserved characters (RFC 7636 section 4.1)")
        if len(code) > MAX_TOKEN_LENGTH:
            raise errors.InvalidGrant()

        keep = self.ctx.settings.access_token_ttl
        bound = self.ctx.store.read_code(code)
        if bound is None:
            raise errors.InvalidGrant("The authorization code is invalid or expired.")
        checks = (
            equals(client_id, bound["client_id"]),
            equals(redirect_uri, bound["redirect_uri"]),
            pkce.verify(verifier, bound["code_challenge"]),
        )
        if not all(checks):
            self.ctx.store.burn_code(code, keep)  # no second guess at the verifier
            raise errors.InvalidGrant(
                "The code was not issued to this client, redirect_uri or code_verifier.",
                detail=f"code binding mismatch (client, redirect_uri, pkce) = {checks}",
            )

        now = int(self.ctx.clock())
        redeemed = self.ctx.store.redeem_code(
            code,
            user_id=bound["user_id"],
            sid=bound["sid"],
            client_id=client_id,
            scope=bound["scope"],
            now=now,
            expires_at=now + self.ctx.settings.refresh_token_ttl,
            access_expires_at=now + self.ctx.settings.access_token_ttl,
            keep=keep,
        )
        if redeemed.outcome == "used":
            metrics.CODE_REPLAY.inc()
            self.tokens.announce(redeemed.revoked, events.CODE_REPLAY)
            raise errors.InvalidGrant("The authorization code was already used.", detail="code replay; family revoked")
        if redeemed.outcome == "ended":
            raise errors.InvalidGrant("The session behind this code has ended.")
        if redeemed.outcome != "ok":
            raise errors.InvalidGrant("The authorization code is invalid or expired.")
        self.tokens.announce(redeemed.revoked, events.REVOKED)  # the oldest family, ended for the cap
        access_token, expires_in = self.tokens.mint_access_token(
            user_id=bound["user_id"],
            sid=bound["sid"],
            client_id=client_id,
            scope=bound["scope"],
            jti=redeemed.jti,
            session_expires_at=redeemed.session_expires_at,
            family_expires_at=redeemed.family_expires_at,
            now=now,
        )
        id_token = None
        if "openid" in bound["scope"].split():
            id_token = self.tokens.mint_id_token(
                user_id=bound["user_id"],
                client_id=client_id,
                sid=bound["sid"],
                auth_time=redeemed.auth_time,
                nonce=bound.get("nonce"),
                access_token=access_token,
                expires_in=expires_in,
            )
        metrics.TOKENS_ISSUED.labels("authorization_code").inc()
        return TokenResponse(
            access_token, expires_in, redeemed.refresh_token, bound["scope"], id_token, bound["user_id"]
        )

    # -- RFC 6749 §6 ----------------------------------------------------------------

    def refresh_token(self, client_id: str, data: dict[str, Any]) -> TokenResponse:
        presented = _required(data, "refresh_token")
        if len(presented) > MAX_TOKEN_LENGTH:
            raise errors.InvalidGrant()
        requested = scopes.parse(data["scope"]) if data.get("scope") else ""
        now = int(self.ctx.clock())
        rotation = self.ctx.store.rotate_refresh(
            presented,
            now=now,
            grace=self.ctx.settings.refresh_reuse_grace,
            client_id=client_id,
            scope=requested,
            access_expires_at=now + self.ctx.settings.access_token_ttl,
        )
        if rotation.outcome == "scope":
            raise errors.InvalidScope("The requested scope exceeds what was granted.")
        if rotation.outcome == "reuse":
            metrics.REFRESH_REUSE.inc()
            self.tokens.announce(rotation.revoked, events.REFRESH_REUSE)
            log.warning("refresh token reuse detected; family revoked (user %s)", rotation.user_id)
            raise errors.InvalidGrant("The refresh token was already used; its family is revoked.")
        if rotation.outcome not in ("ok", "grace"):
            raise errors.InvalidGrant("The refresh token is invalid, expired or revoked.")
        self.ctx.worker.mark_active(rotation.user_id, rotation.sid, rotation.last_active_at)
        scope = requested or rotation.scope
        access_token, expires_in = self.tokens.mint_access_token(
            user_id=rotation.user_id,
            sid=rotation.sid,
            client_id=client_id,
            scope=scope,
            jti=rotation.jti,
            session_expires_at=rotation.session_expires_at,
            family_expires_at=rotation.family_expires_at,
            now=now,
        )
        metrics.TOKENS_ISSUED.labels("refresh_token").inc()
        # OIDC Core §12.2: no new id token on refresh (it would double the signing cost).
        return TokenResponse(access_token, expires_in, rotation.successor, scope, None, rotation.user_id)
