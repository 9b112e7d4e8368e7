"""Structured logs: one JSON object per line, with the request id and user id when known.

Log lines carry the path, never the query string or body: /logout's query
holds an id token and /token's body holds codes and refresh tokens. Nothing
in this service logs a secret, a token, a code or a cookie.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

from flask import g, has_request_context

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_ENCODER = json.JSONEncoder(default=str, separators=(",", ":"))  # json.dumps would build one per line


# The request id of a request answered without a Flask request context (sso/fastpath.py), for the
# lines its service call writes; per greenlet, like every context variable under gevent.
outside_flask_request_id: ContextVar[str | None] = ContextVar("outside_flask_request_id", default=None)


class RequestContextFilter(logging.Filter):
    """Adds request_id and user_id from the current request, when there is one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            record.request_id = getattr(g, "request_id", None)
            if getattr(g, "user_id", None) and not hasattr(record, "user_id"):
                record.user_id = g.user_id
        elif (rid := outside_flask_request_id.get()) is not None and not hasattr(record, "request_id"):
            record.request_id = rid
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_") and value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _ENCODER.encode(entry)


def json_handler(stream: Any = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestContextFilter())
    return handler


def lean_records() -> None:
    """Skip what a JSON line never shows (the logging HOWTO's "Optimization" section).

    For every record, logging walks up the stack for the caller's file, line and
    function, and looks up the thread and process: a quarter of the cost of the
    access-log line each request writes (docs/benchmarks.md). JsonFormatter
    drops those fields, so nothing in the output changes. Process-wide, hence
    called by the entry points (wsgi.py), like the rest of the logging setup.
    """
    logging._srcfile = None  # documented there: no findCaller()
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def configure_logging(level: str = "info") -> None:
    """JSON lines on stderr for the whole process (called by the entry points only)."""
    root = logging.getLogger()
    root.handlers[:] = [json_handler()]
    root.setLevel(level.upper())
