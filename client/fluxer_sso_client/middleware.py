"""Plain WSGI adapter: every request must carry a valid token; it lands in ``environ``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fluxer_sso_client.bearer import BearerDenied, authenticate
from fluxer_sso_client.verifier import TokenVerifier

ENVIRON_KEY = "fluxer_sso.access_token"
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class BearerMiddleware:
    """Wraps a WSGI app; paths in ``public`` (exact matches) pass without a token."""

    def __init__(
        self,
        app: WSGIApp,
        verifier: TokenVerifier,
        *,
        scope: str | Iterable[str] | None = None,
        public: Iterable[str] = (),
        realm: str = "api",
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.scope = scope
        self.public = frozenset(public)
        self.realm = realm

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") in self.public:
            return self.app(environ, start_response)
        try:
            header = environ.get("HTTP_AUTHORIZATION")
            environ[ENVIRON_KEY] = authenticate(header, self.verifier, self.scope, self.realm)
        except BearerDenied as denied:
            d = denied.denial
            body = d.body()
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *d.headers]
            start_response(f"{d.status} {_REASONS[d.status]}", headers)
            return [body]
        return self.app(environ, start_response)


_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 503: "Service Unavailable"}
