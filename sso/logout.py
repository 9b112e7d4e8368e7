"""RP-Initiated Logout (OpenID Connect RP-Initiated Logout 1.0 §2-3).

GET /logout acts only when ``id_token_hint`` is an id token we issued whose
``sid`` is the browser's own SSO session, and then ends that one session and
nothing more: a link on a third-party page cannot log anybody out, and a
replayed hint for a session that has already ended does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from config.settings import Settings
from sso import errors, events
from sso.authorization import append_query
from sso.clients import ClientRegistry
from sso.digests import equals
from sso.keys import TokenRejected
from sso.sessions import SessionService
from sso.tokens import TokenService


@dataclass(frozen=True)
class LogoutOutcome:
    ended: bool
    redirect_to: str | None


def _origin(uri: str) -> str | None:
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


class EndSessionService:
    def __init__(
        self, *, tokens: TokenService, sessions: SessionService, clients: ClientRegistry, settings: Settings
    ) -> None:
        self.tokens = tokens
        self.sessions = sessions
        self.clients = clients
        self.settings = settings

    def post_logout_redirect_allowed(self, uri: str) -> bool:
        """An exact allowed redirect URI, or a URI on one of the app origins."""
        return self.clients.redirect_allowed(uri) or _origin(uri) in self.settings.app_origins

    def redirect_after_logout(self, data: dict[str, Any]) -> str | None:
        """Where to send the browser (303) after logout, GET or POST alike (RP-Initiated Logout 1.0 §3):
        ``post_logout_redirect_uri`` with ``state`` added; InvalidRequest for a URI that is not allowed,
        raised before anything is done."""
        redirect_uri = data.get("post_logout_redirect_uri")
        if not redirect_uri:
            return None
        if not self.post_logout_redirect_allowed(redirect_uri):
            raise errors.InvalidRequest("post_logout_redirect_uri: not registered")
        return append_query(redirect_uri, {"state": data["state"]}) if data.get("state") else redirect_uri

    def end_session(self, data: dict[str, Any], cookie_token: str | None) -> LogoutOutcome:
        location = self.redirect_after_logout(data)
        ended = False
        hint = data.get("id_token_hint")
        if hint:
            try:
                claims = self.tokens.verify_id_token_hint(hint)
            except TokenRejected:
                raise errors.InvalidRequest("id_token_hint: not a valid id token of this issuer") from None
            if data.get("client_id") and data["client_id"] != claims.get("aud"):
                raise errors.InvalidRequest("client_id: does not match the id_token_hint")
            session = self.sessions.from_token(cookie_token) if cookie_token else None
            sid = claims.get("sid")
            if session is not None and isinstance(sid, str) and equals(sid, session.session_id_hash):
                ended = bool(
                    self.sessions.invalidate(
                        session.user_id, [session.session_id_hash], reason=events.LOGOUT, actor="logout"
                    )
                )
        return LogoutOutcome(ended=ended, redirect_to=location)
