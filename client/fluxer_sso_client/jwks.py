"""The service's JWK Set, cached per its Cache-Control and refetched sparingly.

- The set is kept for the response's ``max-age`` (bounded to [min_refresh, max_cache]);
  after that the next lookup refetches it.
- A ``kid`` the cached set lacks (a rotation the cache has not seen yet) triggers a
  refetch, but at most once per ``min_refresh`` seconds, and only one caller fetches
  while the others wait for its result: a flood of tokens with forged ``kid``s costs
  the service one request per interval, not one per token.
- When a refetch fails, the last good set stays in use (stale-if-error): keys are
  public and retired only after every token they signed has expired (docs/integrating.md).
- Only RSA keys for signatures (``use: sig`` or absent, ``alg: RS256`` or absent) are kept.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from jwt import PyJWK
from jwt.exceptions import PyJWKError

from fluxer_sso_client import _http
from fluxer_sso_client.errors import VerificationUnavailable

log = logging.getLogger("fluxer_sso_client.jwks")
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-cache|no-store)\s*(?:,|$)", re.IGNORECASE)

Fetcher = Callable[[str], tuple[dict[str, Any], str]]
"""Fetches the JWKS URL: (the parsed JSON, the Cache-Control header)."""


def fetch_over_http(url: str, timeout: float = 5.0) -> tuple[dict[str, Any], str]:
    answer = _http.request("GET", url, headers={"Accept": "application/json"}, timeout=timeout)
    if answer.status != 200:
        raise _http.TransportError(f"GET {url}: HTTP {answer.status}")
    return answer.json(), answer.headers.get("Cache-Control", "")


def max_age(cache_control: str, default: float) -> float:
    """Seconds the response may be cached, per RFC 9111 §5.2.2; ``default`` when it says nothing."""
    if _NO_CACHE.search(cache_control):
        return 0.0
    match = _MAX_AGE.search(cache_control)
    return float(match.group(1)) if match else default


def parse_keys(document: Any) -> dict[str, Any]:
    """kid -> public key object, for every usable RS256 signing key in a JWK Set."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK Set")
    keys: dict[str, Any] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") != "RSA" or not isinstance(jwk.get("kid"), str):
            continue
        if jwk.get("use", "sig") != "sig" or jwk.get("alg", "RS256") != "RS256" or "d" in jwk:
            continue
        try:
            keys[jwk["kid"]] = PyJWK(jwk, algorithm="RS256").key
        except PyJWKError:
            log.warning("ignoring a malformed key in the JWKS (kid %r)", jwk["kid"][:64])
    return keys


class JWKSCache:
    """Thread- and greenlet-safe cache of the service's signing keys, looked up by ``kid``."""

    def __init__(
        self,
        url: str,
        *,
        fetch: Fetcher = fetch_over_http,
        min_refresh: float = 30.0,
        default_max_age: float = 300.0,
        max_cache: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._fetch = fetch
        self.min_refresh = min_refresh
        self.default_max_age = default_max_age
        self.max_cache = max_cache
        self._clock = clock
        self._keys: dict[str, Any] = {}
        self._fresh_until = float("-inf")
        self._last_attempt = float("-inf")
        self._loaded = False
        self._lock = threading.Lock()
        self.fetches = 0  # attempts, successful or not: what the service sees

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def get(self, kid: str) -> Any | None:
        """The key for ``kid``, or None when the service does not publish it.

        Raises VerificationUnavailable only when no key set was ever loaded.
        """
        now = self._clock()
        key = self._keys.get(kid)
        if key is not None and now < self._fresh_until:
            return key
        # stale set, or a kid it lacks: refresh (once per min_refresh, one caller at a time)
        self._refresh(want=kid)
        key = self._keys.get(kid)
        if key is None and not self._loaded:
            raise VerificationUnavailable("the service's signing keys could not be fetched yet")
        return key

    def refresh(self) -> None:
        """Fetch now (at start, to fail early); raises what the fetch raised."""
        with self._lock:
            self._last_attempt = self._clock()
            self._load()

    def _refresh(self, want: str) -> None:
        with self._lock:  # callers that queued here find the work done and return
            fresh = self._clock() < self._fresh_until
            interval = self.min_refresh if self._loaded else min(self.min_refresh, 2.0)  # cold start: retry soon
            if (fresh and want in self._keys) or self._clock() - self._last_attempt < interval:
                return
            if fresh and self._loaded:
                log.info("unknown kid %r: refetching the JWKS", want[:64])
            self._last_attempt = self._clock()
            try:
                self._load()
            except Exception as exc:  # stale-if-error: keep the last good set
                log.warning("JWKS fetch from %s failed (%s); keeping %d cached keys", self.url, exc, len(self._keys))

    def _load(self) -> None:
        self.fetches += 1
        document, cache_control = self._fetch(self.url)
        keys = parse_keys(document)
        if not keys:
            raise ValueError("the JWKS holds no RS256 signing key")
        ttl = min(max(max_age(cache_control, self.default_max_age), self.min_refresh), self.max_cache)
        self._keys = keys
        self._loaded = True
        self._fresh_until = self._clock() + ttl
