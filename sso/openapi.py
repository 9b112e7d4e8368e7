"""The OpenAPI 3.1 document of the whole HTTP API, generated from the marshmallow schemas (apispec).

Request bodies and parameters come from ``sso/schemas.py``, the very schemas
the views validate with; responses are described by the small schemas below.
The document depends on no setting (servers are relative: it is served from
the issuer's root), so the copy checked in at ``docs/openapi.json`` is exactly
what every deployment serves at ``/openapi.json``; ``make openapi``
regenerates it and ``tests/test_openapi.py`` fails when the two drift.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import INCLUDE, RAISE, Schema, fields, validate

from sso import __version__, errors, schemas
from sso.cookies import COOKIE_NAME
from sso.grants import GRANT_TYPES
from sso.scopes import SUPPORTED

TITLE = "Fluxer SSO"
VERSION = __version__
OPENAPI_VERSION = "3.1.0"

# -- response bodies -------------------------------------------------------------------------
# marshmallow's default (unknown=RAISE) documents an object as closed (additionalProperties: false);
# the few open ones (extensible by their RFC) say unknown = INCLUDE.


class OpenSchema(Schema):
    class Meta:
        unknown = INCLUDE


def _error_codes() -> list[str]:
    """Every ``error`` value the service can answer with: the error hierarchy's codes."""
    found: set[str] = set()
    pending: list[type[errors.SSOError]] = [errors.SSOError]
    while pending:
        cls = pending.pop()
        found.add(cls.error)
        pending.extend(cls.__subclasses__())
    return sorted(found)


class ErrorSchema(Schema):
    """Every error: an RFC 6749 §5.2 / RFC 6750 §3.1 code and a human-readable text."""

    class Meta:
        unknown = RAISE  # additionalProperties: false, so a stray field (a trace, a secret) fails the fuzz

    error = fields.String(required=True, validate=validate.OneOf(_error_codes()))
    error_description = fields.String(required=True)


class SessionSchema(Schema):
    """A session record; timestamps are ISO 8601 UTC."""

    session_id_hash = fields.String(required=True, metadata={"description": "base64url(SHA-256(token))"})
    user_id = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    last_active_at = fields.DateTime(required=True)
    expires_at = fields.DateTime(required=True)
    client_ip = fields.String(required=True, allow_none=True)
    user_agent = fields.String(required=True, allow_none=True)
    platform = fields.String(required=True, allow_none=True)
    claims = fields.Dict(required=True, metadata={"description": "flat JSON object released by /userinfo"})


class CreatedSessionSchema(Schema):
    token = fields.String(required=True, metadata={"description": "the session token, returned once, never stored"})
    session_id_hash = fields.String(required=True)
    user_id = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    expires_at = fields.DateTime(required=True)


class ValidationResultSchema(Schema):
    valid = fields.Boolean(required=True)
    session = fields.Nested(SessionSchema, metadata={"description": "present when valid"})


class SessionListSchema(Schema):
    sessions = fields.List(fields.Nested(SessionSchema), required=True)


class InvalidatedSchema(Schema):
    invalidated = fields.List(fields.String(), required=True, metadata={"description": "the hashes that existed"})


class SessionStatusResultSchema(Schema):
    sessions = fields.Dict(
        keys=fields.String(),
        values=fields.Boolean(),
        required=True,
        metadata={"description": "each requested session_id_hash: true when the session is live"},
    )


class TokenResponseSchema(Schema):
    """RFC 6749 §5.1; ``id_token`` on the code grant when ``openid`` was granted."""

    access_token = fields.String(required=True, metadata={"description": "RS256 JWT, typ at+jwt (RFC 9068)"})
    token_type = fields.String(required=True, validate=validate.OneOf(["Bearer"]))
    expires_in = fields.Integer(required=True)
    refresh_token = fields.String(required=True)
    scope = fields.String(required=True)
    id_token = fields.String()


class UserinfoSchema(OpenSchema):
    """OIDC Core §5.3: ``sub`` and the session claims the token's scope releases."""

    sub = fields.String(required=True)
    name = fields.String()
    email = fields.String()
    email_verified = fields.Boolean()


class IntrospectionSchema(Schema):
    """RFC 7662 §2.2: only ``active: false`` for anything not currently valid."""

    active = fields.Boolean(required=True)
    sub = fields.String()
    client_id = fields.String()
    scope = fields.String()
    exp = fields.Integer()
    iat = fields.Integer()
    token_type = fields.String(validate=validate.OneOf(["Bearer", "refresh_token"]))
    sid = fields.String()
    iss = fields.String()
    aud = fields.Raw(metadata={"description": "access tokens only"})
    jti = fields.String(metadata={"description": "access tokens only"})


class LoggedOutSchema(Schema):
    logged_out = fields.Boolean(required=True)


class HealthSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok", "unavailable"]))
    error = fields.String()
    error_description = fields.String()


class DiscoverySchema(OpenSchema):
    """RFC 8414 / OpenID Connect Discovery 1.0 §3 (abridged: the document lists more)."""

    issuer = fields.String(required=True)
    authorization_endpoint = fields.String(required=True)
    token_endpoint = fields.String(required=True)
    jwks_uri = fields.String(required=True)
    response_types_supported = fields.List(fields.String(), required=True)
    code_challenge_methods_supported = fields.List(fields.String(), required=True)


class JwkSchema(OpenSchema):
    kty = fields.String(required=True)
    n = fields.String(required=True)
    e = fields.String(required=True)
    kid = fields.String(required=True, metadata={"description": "RFC 7638 thumbprint"})
    use = fields.String(required=True)
    alg = fields.String(required=True)


class JwksSchema(Schema):
    keys = fields.List(fields.Nested(JwkSchema), required=True)


# -- examples, shaped like real answers (tests/test_openapi_responses.py checks them) ----------

_HASH = "N1ptBOsB21GTSvjx76sGj84vkwo66g6RHQ3MiAy3YKg"
_JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6IkloRXp0dGh0N2FfajVOdDV3c3FvNXYxTTJFZVRabUdHaW9pOWtTZ256WE0iLCJ0eXAiOiJhdCtqd3QifQ.eyJpc3MiOiJodHRwczovL3Nzby5leGFtcGxlLmNvbSJ9.c2lnbmF0dXJl"  # noqa: E501
_SESSION = {
    "session_id_hash": _HASH, "user_id": "1234567890", "created_at": "2026-11-27T12:00:00Z",
    "last_active_at": "2026-11-27T12:05:00Z", "expires_at": "2026-12-27T12:00:00Z", "client_ip": "203.0.113.7",
    "user_agent": "Mozilla/5.0", "platform": "web", "claims": {"name": "Ada", "email": "ada@example.com"},
}  # fmt: skip
_KID = "IhEzttht7a_j5Nt5wsqo5v1M2EeTZmGGioi9kSgnzXM"
EXAMPLES: dict[type[Schema], Any] = {
    CreatedSessionSchema: {"token": "q9S3m2Jx0bZ5yV1cT8wK4nR7eA6fH2gL0pU9iO3sD5E", "session_id_hash": _HASH,  # nosec B105: an example
                           "user_id": "1234567890", "created_at": "2026-11-27T12:00:00Z",
                           "expires_at": "2026-12-27T12:00:00Z"},
    ValidationResultSchema: {"valid": True, "session": _SESSION},
    SessionListSchema: {"sessions": [_SESSION]},
    InvalidatedSchema: {"invalidated": [_HASH]},
    SessionStatusResultSchema: {"sessions": {_HASH: True, "q3dNgNKvUUmYcb1YKg8k2Bp3W9oE6tZlXfJrS0aHnMw": False}},
    TokenResponseSchema: {"access_token": _JWT, "token_type": "Bearer", "expires_in": 900,  # nosec B105: an example
                          "refresh_token": "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5",  # nosec B105: an example
                          "scope": "openid profile email", "id_token": _JWT},
    UserinfoSchema: {"sub": "1234567890", "name": "Ada", "email": "ada@example.com"},
    IntrospectionSchema: {"active": True, "sub": "1234567890", "client_id": "fluxer", "scope": "openid profile",
                          "exp": 1795780800, "iat": 1795779900, "token_type": "Bearer", "sid": _HASH,  # nosec B105: an example
                          "iss": "https://sso.example.com", "aud": "fluxer-api", "jti": "b3BhcXVlLWp0aQ"},
    LoggedOutSchema: {"logged_out": True},
    HealthSchema: {"status": "ok"},
    DiscoverySchema: {"issuer": "https://sso.example.com", "authorization_endpoint": "https://sso.example.com/authorize",
                      "token_endpoint": "https://sso.example.com/token",  # nosec B105: an example
                      "jwks_uri": "https://sso.example.com/.well-known/jwks.json",
                      "response_types_supported": ["code"], "code_challenge_methods_supported": ["S256"]},
    JwksSchema: {"keys": [{"kty": "RSA", "n": "u1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0_IzW7yWR7QkrmBL7jTKEn5u-qKhbwKfBstIs-bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW_VDL5AaWTg0nLVkjRo9z-40RQzuVaE8AkAFmxZzow3x-VJYKdjykkJ0iT9wCS0DRTXu269V264Vf_3jvredZiKRkgwlL9xNAwxXFg0x_XFw005UWVRIkdgcKWTjpBP2dPwVZ4WWC-9aGVd-Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbcmw", "e": "AQAB", "kid": _KID, "use": "sig", "alg": "RS256"}]},  # noqa: E501
}  # fmt: skip
ERROR_EXAMPLES = {
    400: {"error": "invalid_request", "error_description": "user_id: Missing data for required field."},
    401: {"error": "invalid_client", "error_description": "Service authentication is required."},
    403: {"error": "access_denied", "error_description": "The request is not allowed."},
    404: {"error": "not_found", "error_description": "No such endpoint."},
    413: {"error": "invalid_request", "error_description": "The request body is too large."},
    415: {"error": "invalid_request", "error_description": "The request has the wrong content type."},
    429: {"error": "rate_limited", "error_description": "Too many failed requests; retry later."},
    503: {"error": "temporarily_unavailable", "error_description": "The service is temporarily unavailable."},
}

# -- building blocks -------------------------------------------------------------------------

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
Security = list[dict[str, list[str]]]
SERVICE: Security = [{"service": []}]
OPTIONAL_COOKIE: Security = [{}, {"ssoCookie": []}]

_ERRORS = {
    400: ("BadRequest", "The request is malformed or a grant is invalid (the `error` says which)."),
    401: ("ServiceUnauthorized", "The `Authorization: Service <secret>` header is missing or wrong."),
    403: ("Forbidden", "Not allowed from this origin, or the token lacks a scope."),
    404: ("NotFound", "No such resource."),
    413: ("PayloadTooLarge", "The body is over 64 KiB."),
    415: ("UnsupportedMediaType", "The body has the wrong content type."),
    429: ("RateLimited", "Too many failures from this address; retry after `Retry-After` seconds."),
    503: ("Unavailable", "Redis is unreachable; retry later."),
}


# The other 401s: the challenge each sends, if any (RFC 6750 §3, RFC 7235 §4.1).
_UNAUTHORIZED = {
    "BearerUnauthorized": ("The access token is missing, invalid, expired or revoked.",
                           {"schema": {"type": "string",
                                       "pattern": '^Bearer (error="invalid_token"|realm="fluxer-sso"$)'},
                            "description": '`Bearer error="invalid_token", error_description="..."` for a presented '
                                           'token; `Bearer realm="fluxer-sso"` when the request has no Bearer '
                                           'credentials (RFC 6750 §3.1)'}),
    "ClientUnauthorized": ("Unknown `client_id` (a public client has no credentials to challenge: no "
                           "`WWW-Authenticate`, unless it sent `Authorization: Basic`, then "
                           '`Basic realm="fluxer-sso"`), or an invalid session token (no `WWW-Authenticate`).', None),
    "ClientOrServiceUnauthorized": ("Unknown `client_id` (no challenge; `Basic realm=\"fluxer-sso\"` if the client "
                                    "sent `Authorization: Basic`), or a wrong `Authorization: Service` header "
                                    '(`WWW-Authenticate: Service realm="fluxer-sso"`).', None),
}  # fmt: skip

SERVICE_CHALLENGE = 'Service realm="fluxer-sso"'


def _error_responses(*statuses: int, unauthorized: str = "ServiceUnauthorized") -> dict[str, Any]:
    """``$ref``s to the shared error responses; ``unauthorized`` picks which 401 this operation gives."""
    names = {**{status: name for status, (name, _) in _ERRORS.items()}, 401: unauthorized}
    return {str(status): {"$ref": f"#/components/responses/{names[status]}"} for status in statuses}


def _json(schema: type[Schema] | str | dict[str, str], description: str) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if isinstance(schema, type) and schema in EXAMPLES:
        media["example"] = EXAMPLES[schema]
    return {"description": description, "content": {JSON: media}}


def _body(schema: type[Schema], media: str = JSON) -> dict[str, Any]:
    return {"required": True, "content": {media: {"schema": schema}}}


def _redirect(status: int, description: str) -> dict[str, Any]:
    location = {"required": True, "schema": {"type": "string", "format": "uri"}}
    return {str(status): {"description": description, "headers": {"Location": location}}}


def _register_components(spec: APISpec) -> None:
    c = spec.components
    c.security_scheme(
        "service",
        {"type": "apiKey", "in": "header", "name": "Authorization",
         "description": "`Authorization: Service <secret>`, a configured SSO_SERVICE_SECRET (API instances)."},
    )  # fmt: skip
    c.security_scheme("bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT (RFC 9068 access token)"})
    c.security_scheme(
        "ssoCookie",
        {"type": "apiKey", "in": "cookie", "name": COOKIE_NAME, "description": "The browser's SSO session cookie."},
    )
    c.schema("Error", schema=ErrorSchema)
    headers = {
        401: {"WWW-Authenticate": {"required": True, "schema": {"type": "string", "const": SERVICE_CHALLENGE},
                                   "description": f"always `{SERVICE_CHALLENGE}`"}},
        429: {"Retry-After": {"required": True, "schema": {"type": "integer", "minimum": 1}, "description": "seconds"}},
    }  # fmt: skip
    for status, (name, description) in _ERRORS.items():
        response = _json("Error", description)
        response["content"][JSON]["example"] = ERROR_EXAMPLES[status]
        if status in headers:
            response["headers"] = headers[status]
        c.response(name, response)
    for name, (description, challenge) in _UNAUTHORIZED.items():
        response = _json("Error", description)
        response["content"][JSON]["example"] = ERROR_EXAMPLES[401]
        if challenge is not None:
            response["headers"] = {"WWW-Authenticate": {"required": True, **challenge}}
        c.response(name, response)


# -- the operations -------------------------------------------------------------------------

SERVICE_ERRORS = (400, 401, 413, 415, 429, 503)


def _service_post(
    spec: APISpec,
    path: str,
    *,
    tag: str,
    summary: str,
    description: str,
    body: type[Schema],
    answer: tuple[int, type[Schema], str],
    media: str = JSON,
) -> None:
    """A POST for API instances: Service authentication, one body, one success, the service errors."""
    status, schema, text = answer
    operation = {
        "tags": [tag], "summary": summary, "description": description, "security": SERVICE,
        "requestBody": _body(body, media),
        "responses": {str(status): _json(schema, text), **_error_responses(*SERVICE_ERRORS)},
    }  # fmt: skip
    spec.path(path=path, operations={"post": operation})


def _session_paths(spec: APISpec) -> None:
    _service_post(
        spec, "/session/create", tag="session", summary="Create a session",
        description="Publishes `session-created`. The token is returned once and never stored.",
        body=schemas.CreateSessionSchema, answer=(201, CreatedSessionSchema, "The new session and its token."),
    )  # fmt: skip
    _service_post(
        spec, "/session/validate", tag="session", summary="Validate a session by its hash",
        description="Marks the session active (debounced). `valid: false` is an answer, not a failure: "
                    "it is not rate limited.",
        body=schemas.ValidateSessionSchema, answer=(200, ValidationResultSchema, "The session, or `valid: false`."),
    )  # fmt: skip
    spec.path(
        path="/session/list/{user_id}",
        operations={"get": {
            "tags": ["session"], "summary": "List a user's live sessions", "security": SERVICE,
            "description": "Most recently active first.",
            "parameters": [{"in": "path", "name": "user_id", "required": True,
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}}],
            "responses": {"200": _json(SessionListSchema, "The sessions."),
                          **_error_responses(400, 401, 404, 429, 503)},
        }},
    )  # fmt: skip
    _service_post(
        spec, "/session/status", tag="session", summary="Which sessions are live",
        description="For an API instance resynchronising after missed events (the event log's retention "
                    "passed). 1-100 hashes; records no activity and counts toward no rate limit.",
        body=schemas.SessionStatusSchema, answer=(200, SessionStatusResultSchema, "Liveness per requested hash."),
    )  # fmt: skip
    _service_post(
        spec, "/session/invalidate", tag="session", summary="End some sessions of a user",
        description="Publishes `session-invalidated` when something ended.",
        body=schemas.InvalidateSchema, answer=(200, InvalidatedSchema, "The hashes that existed."),
    )  # fmt: skip
    _service_post(
        spec, "/session/invalidate-all", tag="session", summary="End every session of a user but the excepted",
        description="Publishes `global-logout` when something ended.",
        body=schemas.InvalidateAllSchema, answer=(200, InvalidatedSchema, "The hashes that existed."),
    )  # fmt: skip


def _browser_paths(spec: APISpec) -> None:
    tag = ["browser"]
    spec.path(
        path="/session/set-cookie",
        operations={"post": {
            "tags": tag, "summary": "Set the SSO cookie from a session token",
            "description": "Called by a Fluxer app (CORS with credentials from SSO_APP_ORIGINS). Sets "
                           f"`{COOKIE_NAME}` HttpOnly, SameSite=Lax, Path=/, Secure and Domain per configuration.",
            "requestBody": _body(schemas.SetCookieSchema),
            "responses": {"204": {"description": "Cookie set.",
                                  "headers": {"Set-Cookie": {"required": True, "schema": {
                                      "type": "string", "pattern": f"^{COOKIE_NAME}=.*HttpOnly"}}}},
                          **_error_responses(400, 401, 403, 413, 415, 503, unauthorized="ClientUnauthorized")},
        }},
    )  # fmt: skip
    spec.path(
        path="/logout",
        operations={
            "post": {
                "tags": tag, "summary": "Log the browser out", "security": OPTIONAL_COOKIE,
                "description": "Only from an app origin or the issuer's own (Origin, else Referer). Clears the "
                               "cookie; `invalidate=session` ends its session, `invalidate=all` every session of "
                               "its user. An allowed `post_logout_redirect_uri` (an exact allowed redirect URI, or "
                               "on an app origin) is followed with 303 and `state`; another is invalid_request "
                               "and nothing is done. Parameters may come in the query string instead of the body "
                               "(not in both: a repeated parameter is invalid_request).",
                "requestBody": {"required": False, "content": {FORM: {"schema": schemas.LogoutSchema}}},
                "responses": {"204": {"description": "Logged out; the cookie is cleared."},
                              **_redirect(303, "Logged out; to the allowed post_logout_redirect_uri."),
                              **_error_responses(400, 403, 413, 415, 503)},
            },
            "get": {
                "tags": tag, "summary": "RP-Initiated Logout (end_session_endpoint)", "security": OPTIONAL_COOKIE,
                "description": "Ends the cookie's session only when `id_token_hint` is our id token for that very "
                               "session; follows `post_logout_redirect_uri` (303, with `state`) only when allowed.",
                "parameters": [{"in": "query", "schema": schemas.EndSessionSchema}],
                "responses": {"200": _json(LoggedOutSchema, "Whether a session ended."),
                              **_redirect(303, "To the allowed post_logout_redirect_uri."),
                              **_error_responses(400, 503)},
            },
        },
    )  # fmt: skip


def _oauth_paths(spec: APISpec) -> None:
    tag = ["oauth"]
    authorize: dict[str, Any] = {
        "tags": tag, "security": OPTIONAL_COOKIE,
        "description": "Authorization Code with PKCE S256 only (RFC 6749 §4.1, RFC 7636, OIDC Core §3.1.2, "
                       "RFC 9207). A bad client_id or redirect_uri is answered here (JSON), never redirected; "
                       "later errors redirect with `error`, `state` and `iss`; success redirects with `code`, "
                       "`state` and `iss`; without a session, to the login URL.",
        "responses": {**_redirect(302, "To the client's redirect_uri, or to the login page."),
                      **_error_responses(400, 429, 503)},
    }  # fmt: skip
    spec.path(
        path="/authorize",
        operations={
            "get": {**authorize, "summary": "Authorization endpoint",
                    "parameters": [{"in": "query", "schema": schemas.AuthorizeSchema}]},
            "post": {**authorize, "summary": "Authorization endpoint (form post)",
                     "requestBody": _body(schemas.AuthorizeSchema, FORM),
                     "responses": {**authorize["responses"], **_error_responses(413)}},
        },
    )  # fmt: skip
    spec.path(
        path="/token",
        operations={"post": {
            "tags": tag, "summary": "Token endpoint",
            "description": "Public clients name themselves with `client_id`. `authorization_code` (with "
                           "`code_verifier` and `redirect_uri`) and `refresh_token` (rotating; reuse revokes the "
                           "family) grants. `Cache-Control: no-store`.",
            "requestBody": _body(schemas.TokenSchema, FORM),
            "responses": {"200": _json(TokenResponseSchema, "Tokens (RFC 6749 §5.1)."),
                          **_error_responses(400, 401, 413, 415, 429, 503, unauthorized="ClientUnauthorized")},
        }},
    )  # fmt: skip
    userinfo: dict[str, Any] = {
        "tags": tag, "security": [{"bearer": []}],
        "responses": {"200": _json(UserinfoSchema, "The user's claims allowed by the token's scope."),
                      **_error_responses(401, 403, 503, unauthorized="BearerUnauthorized")},
    }  # fmt: skip
    spec.path(
        path="/userinfo",
        operations={
            "get": {**userinfo, "summary": "UserInfo endpoint (OIDC Core §5.3)"},
            "post": {**userinfo, "summary": "UserInfo endpoint (OIDC Core §5.3)",
                     "responses": {**userinfo["responses"], **_error_responses(413)}},
        },
    )  # fmt: skip
    _service_post(
        spec, "/introspect", tag="oauth", summary="Token introspection (RFC 7662)",
        description="`active: false` and nothing else for any token not currently valid.",
        body=schemas.TokenInputSchema, media=FORM, answer=(200, IntrospectionSchema, "The token's state."),
    )  # fmt: skip
    spec.path(
        path="/revoke",
        operations={"post": {
            "tags": tag, "summary": "Token revocation (RFC 7009)", "security": [{}, {"service": []}],
            "description": "A public client (`client_id`) revokes its own tokens; a service caller "
                           "(`Authorization: Service`; any other scheme is ignored) any. 200 even for unknown "
                           "tokens or another client's (left alive). A refresh token revokes its whole family.",
            "requestBody": _body(schemas.TokenInputSchema, FORM),
            "responses": {"200": {"description": "Revoked, or nothing to revoke (empty body)."},
                          **_error_responses(*SERVICE_ERRORS, unauthorized="ClientOrServiceUnauthorized")},
        }},
    )  # fmt: skip


def _meta_paths(spec: APISpec) -> None:
    tag = ["meta"]
    spec.path(
        path="/.well-known/openid-configuration",
        operations={"get": {"tags": tag, "summary": "OpenID Provider metadata (RFC 8414)",
                            "responses": {"200": _json(DiscoverySchema, "The discovery document.")}}},
    )  # fmt: skip
    spec.path(
        path="/.well-known/jwks.json",
        operations={"get": {"tags": tag, "summary": "The signing keys (RFC 7517)",
                            "responses": {"200": _json(JwksSchema, "The JWK Set.")}}},
    )  # fmt: skip
    spec.path(
        path="/openapi.json",
        operations={"get": {"tags": tag, "summary": "This document",
                            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1.")}}},
    )  # fmt: skip
    spec.path(
        path="/metrics",
        operations={"get": {
            "tags": tag, "summary": "Prometheus metrics of every worker", "security": SERVICE,
            "responses": {"200": {"description": "Prometheus text exposition format.",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}},
                          **_error_responses(401, 429, 503)},
        }},
    )  # fmt: skip
    spec.path(
        path="/_health",
        operations={"get": {"tags": tag, "summary": "Health: does Redis answer?",
                            "responses": {"200": _json(HealthSchema, "Redis answers."),
                                          "503": _json(HealthSchema, "Redis does not.")}}},
    )  # fmt: skip


# Form bodies (and every parameter): absent means None to the view, but the wire has no null.
_FORM_SCHEMAS = ("Authorize", "Token", "TokenInput", "Logout")


def _no_nulls(schema: dict[str, Any]) -> None:
    """Drop the ``null`` that ``load_default=None`` implies: a query or form value is given or absent."""
    for prop in schema["properties"].values():
        if isinstance(prop.get("type"), list) and "null" in prop["type"]:
            (prop["type"],) = [t for t in prop["type"] if t != "null"]
        if "default" in prop and prop["default"] is None:
            del prop["default"]
        if "enum" in prop:
            prop["enum"] = [v for v in prop["enum"] if v is not None]


def _token_form(schema: dict[str, Any]) -> None:
    """RFC 6749 §4.1.3 / §6: every request names its grant and (a public client) itself.

    The marshmallow schema leaves both optional so that the grant layer can answer
    with the RFC's own codes (``invalid_client``, ``unsupported_grant_type``); the
    document states what a valid request carries.
    """
    schema["required"] = ["grant_type", "client_id"]
    schema["properties"]["grant_type"]["enum"] = list(GRANT_TYPES)


def openapi_document() -> dict[str, Any]:
    """The whole API as an OpenAPI 3.1 document (a plain dict)."""
    spec = APISpec(
        title=TITLE,
        version=VERSION,
        openapi_version=OPENAPI_VERSION,
        plugins=[MarshmallowPlugin()],
        info={
            "description": "Single sign-on and session service of Fluxer. Every error is JSON "
            '`{"error", "error_description"}`. OAuth 2.0 / OpenID Connect clients start from '
            "`/.well-known/openid-configuration`. Scopes: " + ", ".join(SUPPORTED) + ".",
        },
        servers=[{"url": "/", "description": "the issuer (SSO_ISSUER)"}],
        tags=[
            {"name": "session", "description": "The service API for API instances."},
            {"name": "browser", "description": "Called by browsers from Fluxer apps."},
            {"name": "oauth", "description": "OAuth 2.0 / OpenID Connect."},
            {"name": "meta", "description": "Discovery, keys, health."},
        ],
    )
    _register_components(spec)
    _session_paths(spec)
    _browser_paths(spec)
    _oauth_paths(spec)
    _meta_paths(spec)
    document = spec.to_dict()
    for name in _FORM_SCHEMAS:
        _no_nulls(document["components"]["schemas"][name])
    _token_form(document["components"]["schemas"]["Token"])
    for path in document["paths"].values():
        for operation in path.values():
            _no_nulls({"properties": {p["name"]: p["schema"] for p in operation.get("parameters", [])}})
    return document


def openapi_json() -> bytes:
    """Compact bytes, built once at app creation and served as they are."""
    return json.dumps(openapi_document(), separators=(",", ":")).encode()


def render() -> str:
    """The checked-in form: indented, keys in generation order, a final newline."""
    return json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # make openapi
    sys.stdout.write(render())
