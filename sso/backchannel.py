"""OIDC Back-Channel Logout 1.0: a Logout Token POSTed to each client of a session that ended.

The request that ends a session only queues deliveries (no I/O, no signing);
the worker's background loop signs each Logout Token when it sends it (§2.4:
``iss``, ``aud``, ``iat``, ``exp``, ``jti``, ``sub``, ``sid``, ``events``, no
``nonce``; header ``typ: logout+jwt``, §2.4 and RFC 8417) and POSTs it
form-encoded (§2.5). A failed delivery (no answer, 5xx) is retried with
backoff for a bounded time; a 4xx is the client saying it will not log out,
and is not retried (§2.8). The queue is bounded, and so is every attempt.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from sso import metrics
from sso.keys import KeySet
from sso.store import Ended

log = logging.getLogger("sso.backchannel")

LOGOUT_TOKEN_TYP = "logout+jwt"  # nosec B105  # a media type, not a secret
EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_LIFETIME = 120  # seconds: a retried delivery gets a fresh token
TIMEOUT = 3.0  # seconds per POST
BACKOFF = (1, 2, 4, 8, 16, 32, 64)  # seconds before each retry: about two minutes in all
MAX_PENDING = 10_000
ROUND_SECONDS = 10.0  # one delivery round stops starting new POSTs after this long

Post = Callable[[str, bytes, float], int]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer (3xx, not delivered), never followed: the token goes to the configured URI only."""

    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post_form(uri: str, body: bytes, timeout: float) -> int:
    """POST ``body`` form-encoded; the HTTP status. urllib is gevent-patched under gunicorn, so a slow
    client holds only the background greenlet; the stdlib suffices for one POST per logout."""
    request = urllib.request.Request(
        uri, data=body, method="POST", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:  # nosec B310: https or loopback http, from config
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@dataclass
class Delivery:
    client_id: str
    uri: str
    user_id: str
    sid: str
    attempts: int = 0
    due: float = 0.0


class BackchannelLogout:
    """The per-worker queue of Logout Token deliveries; ``deliver_due`` runs in the background loop."""

    def __init__(
        self,
        uris: Mapping[str, str],
        keys: KeySet,
        issuer: str,
        *,
        clock: Callable[[], float] = time.time,
        post: Post = post_form,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.uris = dict(uris)
        self.keys = keys
        self.issuer = issuer
        self.clock = clock
        self.post = post
        self.max_pending = max_pending
        self._queue: list[Delivery] = []
        self._sender: threading.Thread | None = None

    @property
    def pending(self) -> int:
        return len(self._queue)

    def enqueue(self, user_id: str, ended: Sequence[Ended]) -> None:
        """Queue one delivery per (ended session, client with a logout URI); never blocks or raises."""
        now = self.clock()
        for session in ended:
            for client_id in session.clients:
                uri = self.uris.get(client_id)
                if uri is None:
                    continue
                if len(self._queue) >= self.max_pending:
                    metrics.BACKCHANNEL.labels("dropped").inc()
                    log.warning("back-channel logout queue full; a delivery is dropped", extra={"client_id": client_id})
                    continue
                self._queue.append(Delivery(client_id, uri, user_id, session.sid, due=now))

    def logout_token(self, delivery: Delivery) -> str:
        now = int(self.clock())
        claims = {
            "iss": self.issuer,
            "aud": delivery.client_id,
            "iat": now,
            "exp": now + LOGOUT_TOKEN_LIFETIME,
            "jti": secrets.token_urlsafe(16),
            "sub": delivery.user_id,
            "sid": delivery.sid,
            "events": {EVENT: {}},
        }
        return self.keys.sign(claims, LOGOUT_TOKEN_TYP)

    def start_round(self) -> None:
        """Deliver what is due in a thread of its own (a greenlet under gevent's patching), one round at a
        time: the background loop that publishes events never waits on a client."""
        if self._sender is not None and self._sender.is_alive():
            return
        self._sender = threading.Thread(target=self._round, name="sso-backchannel", daemon=True)
        self._sender.start()

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the running round (a stopping worker, the CLI, tests)."""
        if self._sender is not None:
            self._sender.join(timeout)

    def _round(self) -> None:
        try:
            self.deliver_due()
        except Exception:  # the sender must outlive any bug in one round
            log.exception("back-channel delivery round failed")

    def deliver_due(self, budget: float = ROUND_SECONDS) -> int:
        """Send the deliveries that are due, for at most ``budget`` seconds; reschedule failures; how many
        were delivered. Whatever a client answers or raises counts against that delivery alone."""
        now, started = self.clock(), time.monotonic()
        due = [d for d in self._queue if d.due <= now]
        delivered = 0
        for delivery in due:
            if time.monotonic() - started > budget:
                break  # the rest is still due: the next round takes it
            body = urlencode({"logout_token": self.logout_token(delivery)}).encode()
            try:
                status = self.post(delivery.uri, body, TIMEOUT)
            except Exception as exc:  # no answer, or no HTTP: refused, timed out, reset, a garbled status line
                status, reason = 0, type(exc).__name__
            else:
                reason = f"HTTP {status}"
            if 200 <= status < 300:
                self._queue.remove(delivery)
                delivered += 1
                metrics.BACKCHANNEL.labels("delivered").inc()
                continue
            if 400 <= status < 500 or delivery.attempts >= len(BACKOFF):
                self._queue.remove(delivery)
                metrics.BACKCHANNEL.labels("failed").inc()
                log.warning("back-channel logout not delivered", extra={"client_id": delivery.client_id,
                            "reason": reason, "attempts": delivery.attempts + 1})  # fmt: skip
                continue
            delivery.due = self.clock() + BACKOFF[delivery.attempts]
            delivery.attempts += 1
            metrics.BACKCHANNEL.labels("retried").inc()
        return delivered
