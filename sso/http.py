"""Request helpers shared by the blueprints: schemas, service auth, CORS, errors.

Views never read ``request`` for their input: ``use_schema`` loads it from one
location, rejects repeated parameters (RFC 6749 §3.1) and hands plain data in.
One handler renders every error as JSON; 5xx bodies say only
``server_error``/``temporarily_unavailable`` and never carry exception text.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from flask import Flask, Response, current_app, g, jsonify, redirect, request
from marshmallow import EXCLUDE, Schema, ValidationError
from redis.exceptions import RedisClusterException, RedisError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from sso import bodies, errors, metrics, ratelimit
from sso.accounting import RequestAccounting
from sso.digests import equals
from sso.schemas import first_error

log = logging.getLogger("sso.http")
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
RAISED = "sso.raised"  # environ key: what the service call of sso/fastpath.py raised, for the view to raise
RESULT = "sso.result"  # environ key: what it returned when that is not its plain success, for the view to use

F = TypeVar("F", bound=Callable[..., Any])
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]  # the layers before Flask
R = TypeVar("R", bound=BaseResponse)

_HTTP_ERRORS: dict[int, type[errors.SSOError]] = {
    400: errors.InvalidRequest,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
}


def request_id(presented: str) -> str:
    """The caller's X-Request-ID when it is well-formed, else a fresh one (32 hex characters)."""
    return presented if REQUEST_ID_RE.fullmatch(presented) else os.urandom(16).hex()


def services() -> Any:
    """The per-app service container (app.Services) built by create_app."""
    return current_app.extensions["sso"]


def known_parameters(schema: Schema) -> frozenset[str] | None:
    """The names a schema that ignores unknown parameters reads; None when it reads everything."""
    if schema.unknown != EXCLUDE:
        return None
    return frozenset(field.data_key or name for name, field in schema.fields.items())


def single_values(pairs: Iterable[tuple[str, str]], known: frozenset[str] | None) -> dict[str, str]:
    """One value per parameter; a repeated one is invalid_request (RFC 6749 §3.1), unless it is
    unrecognised, and therefore ignored altogether, or sent without a value, and therefore
    treated as omitted (both the same section, and §3.2). For the views (``load_input``) and
    sso/fastpath.py alike."""
    data: dict[str, str] = {}
    for key, value in pairs:
        if (known is not None and key not in known) or not value:
            continue
        if key in data:
            raise errors.InvalidRequest(f"{key}: parameter repeated")
        data[key] = value
    return data


def load_input(schema: Schema, location: str, known: frozenset[str] | None) -> dict[str, Any]:
    """Parse and validate one input location; InvalidRequest names the field.

    ``known``: ``known_parameters(schema)``, computed once per view by ``use_schema``."""
    if location == "json":
        if not request.is_json:
            raise errors.UnsupportedMediaType("Content-Type must be application/json.")
        try:
            payload = request.get_json(silent=True)
        except RecursionError:  # JSON nested thousands deep
            raise errors.InvalidRequest("body: nested too deeply") from None
        if not isinstance(payload, dict):
            raise errors.InvalidRequest("body: must be a JSON object")
    elif location == "form":
        if request.mimetype != "application/x-www-form-urlencoded":
            raise errors.UnsupportedMediaType("Content-Type must be application/x-www-form-urlencoded.")
        payload = single_values(request.form.items(multi=True), known)
    elif location == "query":
        payload = single_values(request.args.items(multi=True), known)
    elif location == "values":
        if request.method == "POST" and request.mimetype not in ("application/x-www-form-urlencoded", ""):
            raise errors.UnsupportedMediaType("Content-Type must be application/x-www-form-urlencoded.")
        payload = single_values(request.args.items(multi=True), known)
        for key, value in single_values(request.form.items(multi=True), known).items():
            if key in payload:
                raise errors.InvalidRequest(f"{key}: parameter repeated")
            payload[key] = value
    else:  # pragma: no cover - programming error
        raise ValueError(location)
    try:
        return cast(dict[str, Any], schema.load(payload))
    except ValidationError as exc:
        raise errors.InvalidRequest(first_error(exc.messages)) from None
    except RecursionError:
        raise errors.InvalidRequest("body: nested too deeply") from None


def handed_over(environ: dict[str, Any]) -> Any:
    """What sso/fastpath.py's service call gave this request, for the view to use instead of calling
    again: None when it made none; what it raised is raised here."""
    raised = environ.pop(RAISED, None)
    if raised is not None:
        raise raised
    return environ.pop(RESULT, None)


def use_schema(schema_cls: type[Schema], location: str = "json") -> Callable[[F], F]:
    """Validate input with one schema and pass it to the view as ``data``."""
    schema = schema_cls()
    known = known_parameters(schema)

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            handed_over(request.environ)  # raises what the fast path's call raised
            return view(*args, data=load_input(schema, location, known), **kwargs)

        return cast(F, wrapper)

    return decorator


def service_secret(authorization: str) -> str | None:
    """The secret of an ``Authorization: Service <secret>`` header value; None for another scheme."""
    scheme, _, presented = authorization.partition(" ")
    return presented.strip() if scheme.lower() == "service" else None


def service_credentials() -> str | None:
    """The request's service secret (``service_secret``); None for no header or another scheme."""
    return service_secret(request.headers.get("Authorization", ""))


def service_authenticated(authorization: str, secrets: Iterable[str]) -> bool:
    """Whether an Authorization header value is ``Service <secret>`` with one configured secret."""
    presented = service_secret(authorization)
    if not presented:
        return False
    matched = False
    for secret in secrets:  # compare against every secret: no early exit to time
        matched |= equals(presented, secret)
    return matched


def client_address() -> str | None:
    """The caller's address; behind nginx, ProxyFix in wsgi.py has set it from X-Forwarded-For."""
    return request.remote_addr


def authenticate_service() -> None:
    """Raise unless the request carries a valid service secret.

    The secret is checked first, always: a valid one is served even from an
    address whose failures are over the limit (SPEC.md, Rate limits). Only a
    failure is counted, and past the limit it is 429 instead of 401.
    """
    svc = services()
    if not service_authenticated(request.headers.get("Authorization", ""), svc.settings.service_secrets):
        svc.limiter.failed(ratelimit.SERVICE_AUTH, client_address())
        raise errors.ServiceAuthRequired()


def require_service(view: F) -> F:
    """Reject the request unless it carries a valid service secret."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        authenticate_service()
        return view(*args, **kwargs)

    return cast(F, wrapper)


def count_failure(limit: str) -> None:
    """Count a failure the view answers without raising (a redirected error); 429 past the limit."""
    services().limiter.failed(limit, client_address())


def rate_limited(limit: str) -> Callable[[F], F]:
    """Count the 4xx errors the view raises toward ``limit``; past it they answer 429.

    Nothing is refused before the view has evaluated the request, so a valid
    code, refresh token or cookie succeeds from any address.
    """

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return view(*args, **kwargs)
            except errors.SSOError as exc:
                # a 429 is the limiter's refusal of a failure it has counted (count_failure), not another
                if 400 <= exc.status < 500 and not isinstance(exc, errors.RateLimited):
                    services().limiter.failed(limit, client_address())
                raise

        return cast(F, wrapper)

    return decorator


def cors_headers(
    origin: str | None, origins: Iterable[str], *, credentials: bool, preflight: bool
) -> list[tuple[str, str]]:
    """The CORS headers of an answer to ``origin`` (Fetch standard, CORS protocol), besides Vary."""
    if not origin or origin not in origins:
        return []
    headers = [("Access-Control-Allow-Origin", origin)]
    if credentials:
        headers.append(("Access-Control-Allow-Credentials", "true"))
    if preflight:
        headers += [
            ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
            ("Access-Control-Allow-Headers", "Authorization, Content-Type"),
            ("Access-Control-Max-Age", "600"),
        ]
    return headers


def apply_cors(response: Response, origins: Iterable[str], *, credentials: bool) -> Response:
    """CORS for the browser-facing endpoints."""
    response.vary.add("Origin")
    preflight = request.method == "OPTIONS"
    for name, value in cors_headers(
        request.headers.get("Origin"), origins, credentials=credentials, preflight=preflight
    ):
        response.headers[name] = value
    return response


def no_store(response: R) -> R:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def error_response(exc: errors.SSOError) -> Response:
    response = jsonify(exc.body())
    response.status_code = exc.status
    for name, value in exc.headers().items():
        response.headers[name] = value
    return no_store(response)


def register_error_handlers(app: Flask) -> None:
    """One place renders every error as JSON."""

    @app.errorhandler(errors.SSOError)
    def handle_sso_error(exc: errors.SSOError) -> Response:
        if exc.status >= 500 or exc.detail:
            log.warning("%s %s -> %s (%s)", request.method, request.path, exc.error, exc.detail or exc.description)
        response = error_response(exc)
        if type(exc) is errors.InvalidClient and request.headers.get("Authorization", "")[:6].lower() == "basic ":
            # RFC 6749 §5.2: a client that authenticated with a header is answered with a challenge.
            response.headers["WWW-Authenticate"] = 'Basic realm="fluxer-sso"'
        return response

    @app.errorhandler(HTTPException)
    def handle_http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        cls = _HTTP_ERRORS.get(code)
        if cls is None:
            err = errors.SSOError() if code >= 500 else errors.InvalidRequest()
            err.status = code
        else:
            err = cls()
        response = error_response(err)
        if code == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(RedisError)
    @app.errorhandler(RedisClusterException)  # a slot no node serves, no seed reachable: not a RedisError
    def handle_redis_error(exc: Exception) -> Response:
        metrics.REDIS_ERRORS.labels("request").inc()
        log.error("%s %s -> redis unavailable: %s", request.method, request.path, type(exc).__name__)
        return error_response(errors.TemporarilyUnavailable())

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception) -> Response:
        log.exception("%s %s -> unhandled error", request.method, request.path)
        return error_response(errors.SSOError())


def note_user(user_id: str) -> None:
    """Record the request's user for the access log."""
    g.user_id = user_id


def redirect_to(location: str, status: int) -> BaseResponse:
    """A redirect without Flask's little HTML page: no answer of this service is HTML."""
    response = redirect(location, status)
    response.set_data(b"")
    del response.headers["Content-Type"]
    return response


def register_request_hooks(app: Flask, accounting: RequestAccounting) -> None:
    """Request ids, one structured access-log line and metrics per request.

    Every request runs these, so they read the request object once instead of
    through Flask's context-local proxies.
    """
    limit = app.config["MAX_CONTENT_LENGTH"]

    @app.before_request
    def start_request() -> None:
        req = request._get_current_object()  # type: ignore[attr-defined]
        ctx = g._get_current_object()  # type: ignore[attr-defined]
        ctx.started = time.perf_counter()
        ctx.request_id = request_id(req.headers.get("X-Request-ID", ""))
        # Werkzeug enforces MAX_CONTENT_LENGTH only when a view reads the body, and cuts a chunked
        # one short; a view that does not read it (/userinfo takes its token from a header) must
        # still refuse an oversized one, and no view may act on part of one (sso/bodies.py).
        if limit is not None:
            refused = bodies.refusal(req.environ, limit)
            if refused is not None:
                raise refused

    @app.after_request
    def finish_request(response: Response) -> Response:
        req = request._get_current_object()  # type: ignore[attr-defined]
        ctx = g._get_current_object()  # type: ignore[attr-defined]
        response.headers["X-Request-ID"] = getattr(ctx, "request_id", None) or request_id("")
        if not response.is_streamed and not response.get_data():
            # no body, so not Flask's default text/html: a 204, /revoke's 200, every OPTIONS answer
            del response.headers["Content-Type"]
        now = time.perf_counter()
        endpoint = req.url_rule.rule if req.url_rule is not None else "unmatched"
        accounting.record(
            endpoint, req.method, req.path, response.status_code, now - getattr(ctx, "started", now), req.remote_addr
        )
        return response
