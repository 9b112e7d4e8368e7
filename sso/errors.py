"""The error hierarchy, rendered as JSON by one handler (sso/http.py).

Codes come from RFC 6749 §4.1.2.1 and §5.2, RFC 6750 §3.1, RFC 7009 §2.2.1
and OpenID Connect Core §3.1.2.6. Each error carries a public description, a
private ``detail`` that only reaches the log, and whether it may be sent back
to a client's redirect URI (never for a bad ``client_id`` or ``redirect_uri``).
"""

from __future__ import annotations

import re

# RFC 6749 §4.1.2.1 and §5.2: error_description "MUST NOT include characters outside the set
# %x20-21 / %x23-5B / %x5D-7E"; a description may quote a client's input (a scope it asked for).
_NOT_IN_DESCRIPTION = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


class SSOError(Exception):
    error = "server_error"
    status = 500
    description = "The server could not complete the request."
    redirectable = False

    def __init__(self, description: str | None = None, *, detail: str | None = None) -> None:
        if description:
            self.description = _NOT_IN_DESCRIPTION.sub("?", description)
        super().__init__(self.description)
        self.detail = detail

    def headers(self) -> dict[str, str]:
        return {}

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class InvalidRequest(SSOError):
    error, status, description, redirectable = "invalid_request", 400, "The request is malformed.", True


class InvalidClient(SSOError):
    error, status, description = "invalid_client", 401, "Client authentication failed."


class InvalidRedirectURI(SSOError):
    """Never redirected: the URI itself is what cannot be trusted."""

    error, status, description = "invalid_request", 400, "The redirect_uri is not registered for this client."


class UnauthorizedClient(SSOError):
    error, status, redirectable = "unauthorized_client", 400, True
    description = "The client may not use this grant."


class InvalidGrant(SSOError):
    error, status, description = "invalid_grant", 400, "The grant is invalid, expired or revoked."


class UnsupportedGrantType(SSOError):
    error, status, description = "unsupported_grant_type", 400, "The grant type is not supported."


class UnsupportedResponseType(SSOError):
    error, status, redirectable = "unsupported_response_type", 400, True
    description = "Only response_type=code is supported."


class InvalidScope(SSOError):
    error, status, description, redirectable = "invalid_scope", 400, "The scope is invalid.", True


class LoginRequired(SSOError):
    error, status, description, redirectable = "login_required", 400, "The user is not signed in.", True


class UnsupportedTokenType(SSOError):
    error, status, description = "unsupported_token_type", 400, "The token type is not supported."


class InvalidToken(SSOError):
    """RFC 6750 §3.1: the challenge goes in WWW-Authenticate."""

    error, status, description = "invalid_token", 401, "The access token is invalid, expired or revoked."

    def headers(self) -> dict[str, str]:
        text = self.description.replace('"', "'")
        return {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{text}"'}


class BearerRequired(InvalidToken):
    """No Bearer credentials at all: RFC 6750 §3.1 says the challenge then carries no error code."""

    description = "A Bearer access token is required."

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="fluxer-sso"'}


class ServiceAuthRequired(SSOError):
    """A service endpoint called without a valid ``Authorization: Service`` secret."""

    error, status, description = "invalid_client", 401, "Service authentication is required."

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Service realm="fluxer-sso"'}


class Unauthorized(SSOError):
    error, status, description = "unauthorized", 401, "The credentials are invalid."


class Forbidden(SSOError):
    error, status, description = "access_denied", 403, "The request is not allowed."


class NotFound(SSOError):
    error, status, description = "not_found", 404, "No such endpoint."


class MethodNotAllowed(SSOError):
    error, status, description = "method_not_allowed", 405, "The method is not allowed here."


class PayloadTooLarge(SSOError):
    error, status, description = "invalid_request", 413, "The request body is too large."


class UnsupportedMediaType(SSOError):
    error, status, description = "invalid_request", 415, "The request has the wrong content type."


class RateLimited(SSOError):
    """Too many failures from one address (sso/ratelimit.py); RFC 6585 §4 with RFC 9110 §10.2.3 Retry-After.

    Not ``temporarily_unavailable`` (that is our 503 for Redis down) nor ``slow_down``
    (RFC 8628 §3.5, device-flow polling only): a code of its own lets clients and
    operators tell "you are throttled" from "we are down".
    """

    error, status, description = "rate_limited", 429, "Too many failed requests; retry later."

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class TemporarilyUnavailable(SSOError):
    error, status, description = "temporarily_unavailable", 503, "The service is temporarily unavailable."


class UnknownClient(SSOError):
    """At /authorize: shown to the user, never redirected (RFC 6749 §4.1.2.1)."""

    error, status, description = "invalid_client", 400, "The client_id is missing or unknown."


class RequestNotSupported(SSOError):
    error, status, redirectable = "request_not_supported", 400, True
    description = "Request objects are not supported."


class RequestUriNotSupported(SSOError):
    error, status, redirectable = "request_uri_not_supported", 400, True
    description = "request_uri is not supported."


class InsufficientScope(SSOError):
    """RFC 6750 §3.1."""

    error, status, description = "insufficient_scope", 403, "The access token lacks the openid scope."

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer error="insufficient_scope", scope="openid"'}
