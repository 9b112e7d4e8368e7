"""The stack's floor: a WSGI app that answers every request with the same bytes.

Served by ``bench/floor_gunicorn.conf.py`` (deploy/gunicorn.conf.py's settings,
none of its SSO hooks), it costs what gunicorn, gevent, the kernel and one
keep-alive HTTP exchange cost before any application code runs, so the
benchmark can state each endpoint as a multiple of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

# about the size of a small JSON answer (discovery is ~1.3 KB, a validate answer ~0.4 KB)
BODY = b'{"floor":true,"note":"fixed bytes, no application code"}' + b" " * 400 + b"\n"
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:  # noqa: ARG001
    start_response("200 OK", HEADERS)
    return [BODY]
