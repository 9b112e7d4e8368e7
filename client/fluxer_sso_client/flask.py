"""Flask adapter: ``@require_token(verifier, scope="profile")`` puts the token in ``flask.g``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flask import Response, g, request

from fluxer_sso_client.bearer import BearerDenied, authenticate
from fluxer_sso_client.verifier import AccessToken, TokenVerifier

F = TypeVar("F", bound=Callable[..., Any])


def require_token(
    verifier: TokenVerifier, scope: str | Iterable[str] | None = None, realm: str = "api"
) -> Callable[[F], F]:
    """Refuse the request with an RFC 6750 answer unless it carries a valid token (with ``scope``)."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                g.access_token = authenticate(request.headers.get("Authorization"), verifier, scope, realm)
            except BearerDenied as denied:
                d = denied.denial
                return Response(d.body(), status=d.status, headers=list(d.headers), mimetype="application/json")
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def current_token() -> AccessToken:
    """The token ``require_token`` verified for this request."""
    return g.access_token  # type: ignore[no-any-return]
