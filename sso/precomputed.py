"""Public documents answered before the Flask stack: discovery, JWKS, the OpenAPI document.

Their bytes are built once by ``create_app`` and never change while the
process runs, so a GET needs no routing, no request context and no hooks:
this WSGI layer answers it from a prepared status line, header list and body
(docs/benchmarks.md, "precomputed answers": the Flask stack cost more than
gunicorn itself on these paths). Every other request, and every other method
on these paths (OPTIONS, POST → 405), goes on to Flask unchanged.

What a client sees is what the Flask views answered before (the tests compare
both): the same body, Content-Type, Cache-Control, CORS header and an
X-Request-ID (the caller's when it is well-formed). The requests are counted in
``sso_http_requests_total`` and ``sso_http_request_duration_seconds`` under the
route's name, as before. They write no access-log line: they are public,
identical for every caller and carry no user; in the deployed topology nginx
serves them from its cache and logs them (deploy/nginx). A request with a
body, which no document reads, goes to Flask too, to be held to the body limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from sso.accounting import RequestAccounting
from sso.http import WSGIApp, request_id


class Document:
    """One precomputed answer: its path, its body and its headers without X-Request-ID.

    The Flask views of these paths (sso/views/meta.py) answer from the same object."""

    __slots__ = ("path", "body", "headers")

    def __init__(self, path: str, body: bytes, cache_control: str) -> None:
        self.path = path
        self.body = body
        self.headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", cache_control),
            ("Access-Control-Allow-Origin", "*"),
        ]


class PrecomputedResponses:
    """WSGI middleware: GET and HEAD of the given paths from bytes, everything else to ``app``."""

    def __init__(self, app: WSGIApp, documents: dict[str, Document], accounting: RequestAccounting) -> None:
        self.app = app
        self.documents = documents
        self.accounting = accounting

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        document = self.documents.get(environ.get("PATH_INFO", ""))
        method = environ.get("REQUEST_METHOD")
        if document is None or (method != "GET" and method != "HEAD") or _has_body(environ):
            return self.app(environ, start_response)
        started = time.perf_counter()
        start_response(
            "200 OK", [*document.headers, ("X-Request-ID", request_id(environ.get("HTTP_X_REQUEST_ID", "")))]
        )
        self.accounting.count(document.path, method, 200, time.perf_counter() - started)
        return [document.body] if method == "GET" else []


def _has_body(environ: dict[str, Any]) -> bool:
    """Whether the request carries a body (RFC 9112 §6.3): then Flask's hooks hold it to the 64 KiB
    limit (a 413 even though no view reads it) and serve the same Document within it."""
    return "HTTP_TRANSFER_ENCODING" in environ or environ.get("CONTENT_LENGTH", "0") not in ("", "0")
