"""Typed calls to the service's ``/session/*`` endpoints with the shared service secret.

Retries: a 503, or no answer at all, is retried with exponential backoff and
jitter (no answer only for calls that are safe to repeat: not ``create_session``);
a 429 is retried once after its ``Retry-After`` when that is at most
``max_retry_after`` seconds, else it raises RateLimited. The secret lives in a
:class:`Secret`, whose repr is masked, and appears in no exception, log line or
repr of this module.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from fluxer_sso_client import _http
from fluxer_sso_client.errors import RateLimited, ServiceError, ServiceUnavailable

log = logging.getLogger("fluxer_sso_client.service")
STATUS_BATCH = 100  # /session/status takes 1-100 hashes per call


class Secret:
    """A string that never shows itself in a repr, str or traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value:
            raise ValueError("the service secret is empty")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def session_id_hash(token: str) -> str:
    """base64url(SHA-256(token)) without padding: how the service names a session."""
    return base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()


@dataclass(frozen=True)
class Session:
    session_id_hash: str
    user_id: str
    created_at: str
    expires_at: str
    last_active_at: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    platform: str | None = None
    claims: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Session:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


@dataclass(frozen=True)
class CreatedSession:
    token: str  # returned once by the service; hand it to the browser, never log it
    session_id_hash: str
    user_id: str
    created_at: str
    expires_at: str

    def __repr__(self) -> str:
        return f"CreatedSession(session_id_hash={self.session_id_hash!r}, user_id={self.user_id!r})"


class ServiceClient:
    """The service API as typed methods; one instance per process, shared by threads."""

    def __init__(
        self,
        base_url: str,
        secret: str | Secret,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        max_retry_after: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._secret = secret if isinstance(secret, Secret) else Secret(secret)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"ServiceClient({self.base_url!r})"

    # --- the endpoints -------------------------------------------------------------

    def create_session(
        self,
        user_id: str,
        *,
        client_ip: str | None = None,
        user_agent: str | None = None,
        platform: str | None = None,
        claims: dict[str, Any] | None = None,
    ) -> CreatedSession:
        body: dict[str, Any] = {"user_id": user_id}
        extra = {"client_ip": client_ip, "user_agent": user_agent, "platform": platform, "claims": claims}
        body.update({k: v for k, v in extra.items() if v is not None})
        data = self._call("POST", "/session/create", body, idempotent=False)
        return CreatedSession(**{k: data[k] for k in CreatedSession.__dataclass_fields__})

    def validate_session(self, token_hash: str) -> Session | None:
        """The live session with this hash (and its activity recorded), or None."""
        data = self._call("POST", "/session/validate", {"token_hash": token_hash})
        return Session.from_json(data["session"]) if data.get("valid") else None

    def list_sessions(self, user_id: str) -> list[Session]:
        data = self._call("GET", f"/session/list/{quote(user_id, safe='')}")
        return [Session.from_json(s) for s in data["sessions"]]

    def session_status(self, session_id_hashes: Iterable[str]) -> dict[str, bool]:
        """Which of these sessions are live; batched 100 per call. Records no activity."""
        hashes = list(dict.fromkeys(session_id_hashes))
        status: dict[str, bool] = {}
        for start in range(0, len(hashes), STATUS_BATCH):
            batch = hashes[start : start + STATUS_BATCH]
            data = self._call("POST", "/session/status", {"session_id_hashes": batch})
            status.update({h: bool(data["sessions"].get(h, False)) for h in batch})
        return status

    def invalidate(self, user_id: str, session_id_hashes: Sequence[str]) -> list[str]:
        """End these sessions of the user; returns those that existed."""
        body = {"user_id": user_id, "session_id_hashes": list(session_id_hashes)}
        return list(self._call("POST", "/session/invalidate", body)["invalidated"])

    def invalidate_all(self, user_id: str, *, except_session_id_hashes: Sequence[str] = ()) -> list[str]:
        """End every session of the user but the listed ones (global logout)."""
        body = {"user_id": user_id, "except_session_id_hashes": list(except_session_id_hashes)}
        return list(self._call("POST", "/session/invalidate-all", body)["invalidated"])

    def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662 at the service: the authoritative answer, at the cost of a round trip."""
        return dict(self._call("POST", "/introspect", form={"token": token}))

    # --- transport -----------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        form: dict[str, str] | None = None,
        idempotent: bool = True,
    ) -> Any:
        headers = {"Authorization": f"Service {self._secret.reveal()}", "Accept": "application/json"}
        payload: bytes | None = None
        if form is not None:
            payload, headers["Content-Type"] = urlencode(form).encode(), "application/x-www-form-urlencoded"
        elif body is not None:
            payload, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        rate_limited_once = False
        attempt = 0
        while True:
            try:
                url = self.base_url + path
                answer = _http.request(method, url, headers=headers, body=payload, timeout=self.timeout)
            except _http.TransportError as exc:
                if not idempotent or attempt >= self.retries:
                    raise ServiceUnavailable(str(exc)) from None
                attempt = self._back_off(attempt, path, "no answer")
                continue
            if answer.status == 503 and attempt < self.retries:
                attempt = self._back_off(attempt, path, "503")
                continue
            if answer.status == 429:
                wait = _retry_after(answer.headers.get("Retry-After"))
                if rate_limited_once or wait > self.max_retry_after:
                    raise RateLimited(wait)
                log.info("%s %s: 429, retrying after %gs", method, path, wait)
                rate_limited_once = True
                self._sleep(wait)
                continue
            return _decode(answer)

    def _back_off(self, attempt: int, path: str, why: str) -> int:
        delay = _http.backoff_delay(attempt, self.backoff, self.max_backoff)
        log.info("%s: %s, retry %d in %.2fs", path, why, attempt + 1, delay)
        self._sleep(delay)
        return attempt + 1


def _retry_after(value: str | None) -> float:
    """Seconds from a Retry-After header (RFC 9110 §10.2.3); the delay-seconds form only."""
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except ValueError:
        return 1.0


def _decode(answer: _http.Response) -> Any:
    try:
        data = answer.json()
    except ValueError:
        data = None
    if 200 <= answer.status < 300 and data is not None:
        return data
    if answer.status == 503:
        raise ServiceUnavailable(_description(data) or "the service is unavailable")
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        raise ServiceError(answer.status, data["error"], _description(data))
    raise ServiceError(answer.status, "server_error", "the service answered without a JSON error")


def _description(data: Any) -> str:
    return str(data.get("error_description", ""))[:200] if isinstance(data, dict) else ""
