"""Client library for Fluxer SSO API instances.

``FluxerSSO`` wires the parts an API instance needs; each part also works alone:

- :class:`JWKSCache` and :class:`TokenVerifier`: local RS256 verification;
- :class:`RevocationList` and :class:`EventListener`: refuse what was revoked,
  and tell the application (close WebSockets);
- :class:`ServiceClient`: the ``/session/*`` service API;
- ``fluxer_sso_client.flask.require_token`` and ``fluxer_sso_client.middleware``:
  RFC 6750 answers for Flask or any WSGI app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import redis

from fluxer_sso_client.errors import (
    InsufficientScope,
    RateLimited,
    ServiceError,
    ServiceUnavailable,
    SSOError,
    TokenError,
    VerificationUnavailable,
)
from fluxer_sso_client.events import Event
from fluxer_sso_client.jwks import JWKSCache
from fluxer_sso_client.listener import EventListener
from fluxer_sso_client.revocation import RevocationList
from fluxer_sso_client.service import CreatedSession, Secret, ServiceClient, Session, session_id_hash
from fluxer_sso_client.verifier import AccessToken, TokenVerifier

__all__ = [
    "AccessToken", "CreatedSession", "Event", "EventListener", "FluxerSSO", "InsufficientScope", "JWKSCache",
    "RateLimited", "RevocationList", "SSOError", "Secret", "ServiceClient", "ServiceError", "ServiceUnavailable",
    "Session", "TokenError", "TokenVerifier", "VerificationUnavailable", "session_id_hash",
]  # fmt: skip


log = logging.getLogger("fluxer_sso_client")


class FluxerSSO:
    """Everything an API instance needs, from four settings.

    ``issuer`` is the tokens' ``iss``; ``service_url`` where this instance reaches the
    service (default: the issuer), for the JWKS and the service API.
    """

    def __init__(
        self,
        *,
        issuer: str,
        service_secret: str,
        redis_url: str,
        service_url: str | None = None,
        audience: str = "fluxer-api",
        redis_prefix: str = "sso:",
        leeway: float = 30.0,
        max_token_lifetime: float = 3600.0,
        fail_closed_after: float | None = None,
        **listener_options: Any,
    ) -> None:
        base = (service_url or issuer).rstrip("/")
        self.service = ServiceClient(base, service_secret)
        self.jwks = JWKSCache(f"{base}/.well-known/jwks.json")
        self.revocations = RevocationList(max_token_lifetime=max_token_lifetime, leeway=leeway)
        self.redis = redis.Redis.from_url(
            redis_url, decode_responses=True, socket_connect_timeout=5, socket_timeout=30, health_check_interval=15
        )
        self.verifier = TokenVerifier(
            issuer=issuer, audience=audience, jwks=self.jwks, revocations=self.revocations, leeway=leeway,
        )  # fmt: skip
        self.listener = EventListener(
            self.redis,
            prefix=redis_prefix,
            revocations=self.revocations,
            service=self.service,
            seen_sessions=self.verifier.seen.live,
            fail_closed_after=fail_closed_after,
            **listener_options,
        )
        self.verifier.health = self.listener.health if fail_closed_after is not None else None

    def on(self, event_type: str) -> Callable[[Callable[[Event], Any]], Callable[[Event], Any]]:
        """Decorator: ``@sso.on("session-invalidated")`` registers a callback."""
        return lambda callback: self.listener.on(event_type, callback)

    def verify(self, token: str, scope: str | Iterable[str] | None = None) -> AccessToken:
        return self.verifier.verify(token, scope)

    def require_token(self, scope: str | Iterable[str] | None = None) -> Callable[[Any], Any]:
        """The Flask decorator bound to this verifier (needs the ``flask`` extra)."""
        from fluxer_sso_client.flask import require_token

        return require_token(self.verifier, scope)

    def start(self) -> None:
        """Start following events (and try fetching the keys, so a bad URL shows in the log at once)."""
        try:
            self.jwks.refresh()
        except Exception as exc:  # the outage policy: keep starting, verification answers 503 until keys load
            log.warning("JWKS not loaded at start: %s", exc)
        self.listener.start()

    def stop(self) -> None:
        self.listener.stop()
        self.redis.close()

    def __repr__(self) -> str:
        return f"FluxerSSO({self.service.base_url!r})"
