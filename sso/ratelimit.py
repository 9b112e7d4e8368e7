"""Failure rate limits per client address: fixed windows counted in Redis (RFC 6585 §4).

What is limited is *failure*, where guessing or abuse would show: failed
service authentication, failed /token and /authorize requests, and
``valid: false`` answers of /session/validate. A successful request must not
pay a Redis round trip for this, so the two halves are split:

- ``failed()`` runs only on the failure path: one Lua call increments the
  address's counter for the current window (``Prl:<limit>:<window>:<addr>``,
  created with the window's TTL) and returns the count shared by every worker
  and instance. When the count reaches the limit, this worker remembers the
  block until the window ends; past the limit the failing request itself
  answers 429.
- ``check()`` runs before the request is evaluated and reads only that
  in-process memory, so a blocked address is refused without its credential
  or code being looked at, at no cost to anybody else.

A worker that has not seen the address fail yet learns of the block from its
first failure (the shared count is already past the limit), so a blocked
address gets at most one more evaluated attempt per worker per window.
Windows are numbered from the injected clock, so tests advance time instead of
sleeping. IPv6 addresses are counted per /64, the block one subscriber gets.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable, Mapping

from config.settings import RateLimit, Settings
from sso import metrics
from sso.errors import RateLimited
from sso.store import RedisStore

log = logging.getLogger("sso.ratelimit")

SERVICE_AUTH = "service_auth"
TOKEN = "token"  # nosec B105  # the name of a limit
AUTHORIZE = "authorize"
VALIDATE = "validate"


def limits_from(settings: Settings) -> dict[str, RateLimit | None]:
    return {
        SERVICE_AUTH: settings.rate_limit_service_auth_failures,
        TOKEN: settings.rate_limit_token_failures,
        AUTHORIZE: settings.rate_limit_authorize_failures,
        VALIDATE: settings.rate_limit_validate_failures,
    }


def address_key(address: str | None) -> str:
    """The counted unit: an IPv4 address, an IPv6 /64, or a bounded stand-in for anything else."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return "other"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class RateLimiter:
    """Counts failures in Redis; refuses addresses this worker knows to be over a limit."""

    def __init__(
        self,
        store: RedisStore,
        limits: Mapping[str, RateLimit | None],
        *,
        clock: Callable[[], float] = time.time,
        max_blocks: int = 10_000,
    ) -> None:
        self.store = store
        self.limits = dict(limits)
        self.clock = clock
        self.max_blocks = max_blocks
        self._blocks: dict[tuple[str, str], float] = {}  # (limit, address) -> blocked until

    def check(self, limit: str, address: str | None) -> None:
        """Raise RateLimited when this worker knows the address is blocked; never touches Redis."""
        if not self._blocks:
            return
        key = (limit, address_key(address))
        until = self._blocks.get(key)
        if until is None:
            return
        remaining = until - self.clock()
        if remaining > 0:
            metrics.RATE_LIMITED.labels(limit).inc()
            raise RateLimited(math.ceil(remaining))
        del self._blocks[key]

    def failed(self, limit: str, address: str | None) -> None:
        """Count one failure; raise RateLimited when the address is now past the limit."""
        rule = self.limits.get(limit)
        if rule is None:
            return
        unit = address_key(address)
        now = self.clock()
        window = int(now // rule.seconds)
        until = (window + 1) * rule.seconds
        count = self.store.count_failure(limit, window, unit, ttl=math.ceil(until - now) + 1)
        if count == rule.count:  # the shared count reaches the limit once per window, in one worker
            log.warning("rate limit reached", extra={"limit": limit, "address": unit, "limit_rule": str(rule),
                                                     "blocked_seconds": math.ceil(until - now)})  # fmt: skip
        if count >= rule.count:
            self._remember((limit, unit), until)
        if count > rule.count:
            metrics.RATE_LIMITED.labels(limit).inc()
            raise RateLimited(math.ceil(until - now))

    def _remember(self, key: tuple[str, str], until: float) -> None:
        if key not in self._blocks and len(self._blocks) >= self.max_blocks:
            now = self.clock()
            for stale in [k for k, t in self._blocks.items() if t <= now]:
                del self._blocks[stale]
            if len(self._blocks) >= self.max_blocks:
                return  # memory stays bounded; Redis still refuses this address on its next failure
        self._blocks[key] = until
