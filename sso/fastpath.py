"""The calls that carry the fleet's load, answered before Flask when they succeed plainly.

``POST /session/validate`` and ``POST /introspect`` are what every API instance
asks for the requests it serves; ``POST /token`` is every code exchange and
every refresh; ``GET /authorize`` is every sign-in of a browser that already
has an SSO session. Through Flask, Werkzeug's request and response objects,
routing, form parsing and the hooks cost about 0.2 ms of each
(docs/benchmarks.md, levers 9 and 10). This WSGI layer answers only the plain
success of a well-formed call, with the views' own schemas and service calls:

- Flask's routing takes it to the view: a Host it can encode and trusts, no
  Upgrade (its URL adapter's own check, ``FastPath._routed_by_flask``);
- the service secret is valid where the route needs one (the same
  constant-time check);
- the body has the route's media type and a Content-Length within the limit
  (a chunked body is first read whole, at most the limit and one byte:
  sso/bodies.py), decodes and parses as Werkzeug would, repeats no parameter,
  and passes the view's marshmallow schema.

``GET /authorize`` (a ``Redirect`` route) has no body and no schema: the
view's own call reads the query string and the SSO cookie through Flask's
request class, and any redirect that is not a failure (a code, the login
page) is answered here.

Anything else goes on to the Flask view with the body put back, untouched, so
every refusal has one implementation. When the service call itself raises (an
invalid grant, Redis unavailable, an unknown client), the exception is handed
to the view (``sso.http.RAISED``), which raises it in place of making the call
again; a failed /authorize outcome (an error redirected to the client) is
handed over the same way (``sso.http.RESULT``), for the view to count toward
the rate limit and answer. The view's decorators and Flask's handlers then
treat either as their own (``sso.http.handed_over``).

What a client sees is what the views answer (tests/test_fastpath.py compares
both byte for byte): the same JSON, Cache-Control, Pragma, CORS headers and
X-Request-ID; the same access-log line and the same metrics
(``sso.accounting.RequestAccounting``); the lines the service call writes
carry the request id (``sso.logs.outside_flask_request_id``).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from flask import Flask, Request
from marshmallow import Schema, ValidationError
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_options_header
from werkzeug.urls import iri_to_uri  # importing it registers the "werkzeug.url_quote" handler used below
from werkzeug.wsgi import get_content_length

from sso import errors
from sso.accounting import RequestAccounting
from sso.authorization import AuthorizeOutcome
from sso.bodies import refusal
from sso.http import (
    RAISED,
    RESULT,
    WSGIApp,
    cors_headers,
    known_parameters,
    request_id,
    service_authenticated,
    single_values,
)
from sso.logs import outside_flask_request_id

StartResponse = Callable[..., Any]
T = TypeVar("T")
MAX_ROUTED_HOSTS = 256  # Host values seen to pass Flask's routing, kept per worker
Answer = Callable[[dict[str, Any]], tuple[dict[str, Any], str | None]]
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Route:
    """One fast route: the Flask rule it stands for, its media type, its schema and its answer."""

    rule: str
    media_type: str
    schema: Schema
    answer: Answer  # validated data -> (JSON body, user id for the access log)
    service: bool = True  # needs Authorization: Service <secret>
    cors_origins: tuple[str, ...] | None = None  # a browser endpoint: CORS for these origins (no credentials)


@dataclass(frozen=True)
class Redirect:
    """One fast GET route answered with a 302: the rule, and the view's own call on the request.

    The call gets Flask's request class over the environ (shallow: the body is
    never read), so the query string and cookies are read by Werkzeug's code.
    """

    rule: str
    answer: Callable[[Request], AuthorizeOutcome]


class FastPath:
    """WSGI middleware: the plain success of the given routes, everything else to ``app``."""

    def __init__(
        self,
        app: WSGIApp,
        routes: Iterable[Route | Redirect],
        *,
        flask: Flask,
        secrets: tuple[str, ...],
        accounting: RequestAccounting,
    ) -> None:
        self.app = app
        self.routes = {route.rule: route for route in routes}
        self.known = {r.rule: known_parameters(r.schema) for r in self.routes.values() if isinstance(r, Route)}
        self.flask = flask  # its JSON provider (jsonify's bytes) and its debug flag
        self.max_body: int | None = flask.config["MAX_CONTENT_LENGTH"]
        self.secrets = secrets
        self.accounting = accounting
        self._routed_hosts: set[tuple[str | None, str | None]] = set()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        route = self.routes.get(environ.get("PATH_INFO", ""))
        if route is None or not self._routed_by_flask(environ):
            return self.app(environ, start_response)
        started = time.perf_counter()
        if self.max_body is not None and refusal(environ, self.max_body) is not None:
            return self.app(environ, start_response)  # a body over the limit: the view's 413
        length = get_content_length(environ)  # Werkzeug's reading: None when absent, 0 when malformed
        method = environ.get("REQUEST_METHOD")
        if isinstance(route, Redirect):
            if method != "GET":
                return self.app(environ, start_response)
            return self._redirect(route, environ, start_response, started)
        if (
            method != "POST"
            or length is None
            or self._indented_json()
            or parse_options_header(environ.get("CONTENT_TYPE", ""))[0].lower() != route.media_type  # its mimetype
            or (route.service and not self._authenticated(environ))
        ):
            return self.app(environ, start_response)
        try:
            body = environ["wsgi.input"].read(length)
        except Exception:  # noqa: BLE001 - the client went away: the view reads what is left, answers as it would
            return self.app(environ, start_response)
        environ["wsgi.input"] = io.BytesIO(body)  # for the view, whenever Flask takes over from here
        data = self._load(route, body) if len(body) == length else None
        if data is None:
            return self.app(environ, start_response)
        rid = request_id(environ.get("HTTP_X_REQUEST_ID", ""))
        answered = self._call(environ, rid, lambda: self._encoded(route.answer(data)))
        if answered is None:
            return self.app(environ, start_response)
        payload, user_id = answered
        headers = [
            ("Content-Type", self.flask.json.mimetype),  # type: ignore[attr-defined]
            ("Content-Length", str(len(payload))),
            ("Cache-Control", "no-store"),
            ("Pragma", "no-cache"),
        ]
        if route.cors_origins is not None:
            cors = cors_headers(environ.get("HTTP_ORIGIN"), route.cors_origins, credentials=False, preflight=False)
            headers += [("Vary", "Origin"), *cors]
        return self._respond(environ, start_response, "200 OK", headers, payload, route.rule, started, rid, user_id)

    def _redirect(
        self, route: Redirect, environ: dict[str, Any], start_response: StartResponse, started: float
    ) -> Iterable[bytes]:
        """The view's 302 when its call succeeds; a failed outcome is the view's to count and answer."""
        rid = request_id(environ.get("HTTP_X_REQUEST_ID", ""))
        outcome = self._call(environ, rid, lambda: route.answer(self.flask.request_class(environ, shallow=True)))
        if outcome is None:
            return self.app(environ, start_response)
        if outcome.failed:  # counted toward the rate limit by the view, which may answer 429 instead
            environ[RESULT] = outcome
            return self.app(environ, start_response)
        headers = [
            ("Content-Length", "0"),
            ("Location", iri_to_uri(outcome.location)),  # what Werkzeug's response does to it
            ("Cache-Control", "no-store"),
            ("Pragma", "no-cache"),
        ]
        user_id = outcome.user_id
        return self._respond(environ, start_response, "302 FOUND", headers, b"", route.rule, started, rid, user_id)

    def _encoded(self, answered: tuple[dict[str, Any], str | None]) -> tuple[bytes, str | None]:
        """jsonify's bytes of the answer (compact), and its user."""
        answer, user_id = answered
        return f"{self.flask.json.dumps(answer, separators=(',', ':'))}\n".encode(), user_id

    @staticmethod
    def _call(environ: dict[str, Any], rid: str, call: Callable[[], T]) -> T | None:
        """The view's service call, its log lines carrying ``rid``; None when it raised, the exception
        handed to the view to raise in its place (``sso.http.handed_over``), never made twice."""
        marked = outside_flask_request_id.set(rid)
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - raised by the view instead
            environ[RAISED] = exc
            return None
        finally:
            outside_flask_request_id.reset(marked)

    def _respond(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        status: str,
        headers: list[tuple[str, str]],
        body: bytes,
        rule: str,
        started: float,
        rid: str,
        user_id: str | None,
    ) -> list[bytes]:
        """Send the answer with its X-Request-ID, and write the line and metrics the view's hooks would."""
        start_response(status, [*headers, ("X-Request-ID", rid)])
        self.accounting.record(
            rule,
            environ["REQUEST_METHOD"],
            rule,
            int(status[:3]),
            time.perf_counter() - started,
            environ.get("REMOTE_ADDR"),
            request_id=rid,
            user_id=user_id,
        )
        return [body]

    def _routed_by_flask(self, environ: dict[str, Any]) -> bool:
        """Whether Flask's routing takes the request to a view, as it does before any hook.

        Flask's URL adapter refuses with a 400 a Host that Werkzeug cannot
        encode (an empty or over-long label), one outside TRUSTED_HOSTS, and a
        WebSocket upgrade. The adapter's own call decides; its verdict depends
        only on the Host and the scheme, so the pairs seen to pass are kept (a
        bounded set). Any Upgrade header is left to Flask.
        """
        if "HTTP_UPGRADE" in environ:
            return False
        seen = (environ.get("HTTP_HOST"), environ.get("wsgi.url_scheme"))
        if seen in self._routed_hosts:
            return True
        try:
            self.flask.create_url_adapter(self.flask.request_class(environ, shallow=True))
        except HTTPException:
            return False
        if seen[0] is not None and len(self._routed_hosts) < MAX_ROUTED_HOSTS:
            self._routed_hosts.add(seen)
        return True

    def _indented_json(self) -> bool:
        """Whether jsonify would indent (debug mode, or compact switched off): then Flask answers."""
        compact = getattr(self.flask.json, "compact", None)
        return compact is False or (compact is None and self.flask.debug)

    def _authenticated(self, environ: dict[str, Any]) -> bool:
        return service_authenticated(environ.get("HTTP_AUTHORIZATION", ""), self.secrets)

    def _load(self, route: Route, body: bytes) -> dict[str, Any] | None:
        """The schema's data, or None for anything the view should answer (or parse) itself."""
        payload: Any
        if route.media_type == JSON:
            try:
                payload = json.loads(body)
            except (ValueError, RecursionError):
                return None
        else:
            try:  # Werkzeug's own call (formparser.FormDataParser._parse_urlencoded)
                pairs = parse_qsl(body.decode(), keep_blank_values=True, errors="werkzeug.url_quote")
            except UnicodeDecodeError:
                return None
            try:
                payload = single_values(pairs, self.known[route.rule])
            except errors.InvalidRequest:  # repeated: the view's answer
                return None
        if not isinstance(payload, dict):
            return None
        try:
            data: dict[str, Any] = route.schema.load(payload)
        except ValidationError:
            return None
        return data
