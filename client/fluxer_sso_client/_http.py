"""A small HTTP/1.1 transport on the standard library: no redirects, bounded bodies.

The standard library rather than requests or httpx: an API instance already has
its own HTTP stack, the calls here are few and simple (JSON in, JSON out), and
under gevent the patched socket module makes urllib cooperative for free.
Redirects are never followed, so a misconfigured URL cannot carry the service
secret to another host.
"""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

MAX_BODY = 1 << 20  # no answer of the service comes near 1 MiB


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx surfaces as an HTTPError, headers and all


_opener = urllib.request.build_opener(_NoRedirect)


@dataclass(frozen=True)
class Response:
    status: int
    headers: Message
    body: bytes = field(repr=False)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter ("equal jitter"): retries from many instances spread out."""
    return min(cap, base * 2**attempt) * random.uniform(0.5, 1.0)  # nosec B311


class TransportError(OSError):
    """The request got no HTTP answer (refused, reset, timed out, bad URL)."""


def request(method: str, url: str, *, headers: dict[str, str], body: bytes | None = None, timeout: float) -> Response:
    """One request; any HTTP status is a Response, no answer at all is a TransportError."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with _opener.open(req, timeout=timeout) as answer:
            return Response(answer.status, answer.headers, answer.read(MAX_BODY))
    except urllib.error.HTTPError as error:
        with error:
            return Response(error.code, error.headers, error.read(MAX_BODY))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        # only the exception's class and reason: never the Request, which holds the headers
        reason = getattr(exc, "reason", exc)
        raise TransportError(f"{method} {url}: {type(reason).__name__}: {reason}") from None
