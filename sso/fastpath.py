"""The calls that carry the fleet's load, answered before Flask when they succeed plainly.

``POST /session/validate`` and ``POST /introspect`` are what every API instance
asks for the requests it serves; ``POST /token`` is every code exchange and
every refresh. Through Flask, Werkzeug's request and response objects,
routing, form parsing and the hooks cost about 0.2 ms of each
(docs/benchmarks.md, lever 9). This WSGI layer answers only the plain success
of a well-formed call, with the views' own schemas and service calls:

- the service secret is valid where the route needs one (the same
  constant-time check);
- the body has the route's media type and a Content-Length within the limit,
  decodes and parses as Werkzeug would, repeats no parameter, and passes the
  view's marshmallow schema.

Anything else goes on to the Flask view with the body put back, untouched, so
every refusal has one implementation. When the service call itself raises (an
invalid grant, Redis unavailable), the exception is handed to the view
(``sso.http.RAISED``), which raises it in place of making the call again: the
view's decorators (failure counting for rate limits) and Flask's handlers
then treat it as their own.

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
from typing import Any
from urllib.parse import parse_qsl

import werkzeug.urls  # noqa: F401 - registers the "werkzeug.url_quote" decoding error handler used below
from flask import Flask
from marshmallow import Schema, ValidationError
from werkzeug.http import parse_options_header
from werkzeug.wsgi import get_content_length

from sso import errors
from sso.accounting import RequestAccounting
from sso.http import (
    RAISED,
    WSGIApp,
    cors_headers,
    known_parameters,
    request_id,
    service_authenticated,
    single_values,
)
from sso.logs import outside_flask_request_id

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


class FastPath:
    """WSGI middleware: the plain success of the given POST routes, everything else to ``app``."""

    def __init__(
        self,
        app: WSGIApp,
        routes: Iterable[Route],
        *,
        flask: Flask,
        secrets: tuple[str, ...],
        accounting: RequestAccounting,
    ) -> None:
        self.app = app
        self.routes = {route.rule: route for route in routes}
        self.known = {route.rule: known_parameters(route.schema) for route in self.routes.values()}
        self.flask = flask  # its JSON provider (jsonify's bytes) and its debug flag
        self.max_body: int | None = flask.config["MAX_CONTENT_LENGTH"]
        self.secrets = secrets
        self.accounting = accounting

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        route = self.routes.get(environ.get("PATH_INFO", ""))
        if route is None or environ.get("REQUEST_METHOD") != "POST" or self._indented_json():
            return self.app(environ, start_response)
        started = time.perf_counter()
        length = get_content_length(environ)  # Werkzeug's reading: None when chunked, 0 when malformed
        if (
            length is None
            or (self.max_body is not None and length > self.max_body)
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
        marked = outside_flask_request_id.set(rid)  # for what the service call logs
        try:
            answer, user_id = route.answer(data)
            payload = f"{self.flask.json.dumps(answer, separators=(',', ':'))}\n".encode()
        except Exception as exc:  # noqa: BLE001 - raised by the view instead (sso.http.use_schema)
            environ[RAISED] = exc
            return self.app(environ, start_response)
        finally:
            outside_flask_request_id.reset(marked)
        headers = [
            ("Content-Type", self.flask.json.mimetype),  # type: ignore[attr-defined]
            ("Content-Length", str(len(payload))),
            ("Cache-Control", "no-store"),
            ("Pragma", "no-cache"),
        ]
        if route.cors_origins is not None:
            cors = cors_headers(environ.get("HTTP_ORIGIN"), route.cors_origins, credentials=False, preflight=False)
            headers += [("Vary", "Origin"), *cors]
        headers.append(("X-Request-ID", rid))
        start_response("200 OK", headers)
        self.accounting.record(
            route.rule,
            "POST",
            route.rule,
            200,
            time.perf_counter() - started,
            environ.get("REMOTE_ADDR"),
            request_id=rid,
            user_id=user_id,
        )
        return [payload]

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
