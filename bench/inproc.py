"""The WSGI app alone: each scenario's operations called in-process, without gunicorn or gevent.

``python -m bench.run --inproc`` builds the app with ``create_app`` from the
very settings the gunicorn workers got, and feeds it the same operations as
the load generator, turned into WSGI environ dicts; the app talks to the same
redis-server over real sockets. CPU per operation (``time.process_time``)
is then Flask + this service's code + marshmallow + redis-py + python-jose,
and nothing else: the difference to the benchmark's figure is what gunicorn,
gevent and the extra HTTP parsing cost. It is also the quiet, repeatable
figure to compare two versions of the code by.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from bench.load import Op, Reply

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def environ_for(raw: bytes, host: str) -> dict[str, Any]:
    """The WSGI environ of one raw HTTP/1.1 request, as a server would build it."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, protocol = lines[0].split(" ")
    path, _, query = target.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": host.split(":")[0],
        "SERVER_PORT": host.split(":")[1],
        "SERVER_PROTOCOL": protocol,
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = value.strip()
        else:
            environ[f"HTTP_{key}"] = value.strip()
    return environ


def call(app: WSGIApp, raw: bytes, host: str) -> Reply:
    status: list[str] = []
    headers: list[tuple[str, str]] = []

    def start_response(s: str, h: list[tuple[str, str]], exc_info: Any = None) -> None:
        status.append(s)
        headers.extend(h)

    chunks = app(environ_for(raw, host), start_response)
    body = b"".join(chunks)
    close = getattr(chunks, "close", None)
    if close is not None:
        close()
    return Reply(int(status[0].split(" ", 1)[0]), {k.lower(): v for k, v in headers}, body)


def drive(app: WSGIApp, op: Op, host: str) -> Any:
    try:
        raw = next(op)
        while True:
            raw = op.send(call(app, raw, host))
    except StopIteration as done:
        return done.value


def cpu_per_op(app: WSGIApp, make_op: Callable[[int], Op], host: str, *, ops: int, seconds: float) -> float:
    """Milliseconds of this process's CPU per operation, one at a time, bounded in count and time."""
    for _ in range(max(10, ops // 20)):  # warm up
        drive(app, make_op(0), host)
    start, deadline, done = time.process_time(), time.monotonic() + seconds, 0
    while done < ops and time.monotonic() < deadline:
        drive(app, make_op(0), host)
        done += 1
    return (time.process_time() - start) / max(1, done) * 1000
