"""Failure rate limits per client address: fixed windows counted in Redis (RFC 6585 §4).

What is limited is *failure*, where guessing or abuse would show: failed
service authentication and failed /token and /authorize requests. The rule
(SPEC.md, Rate limits): a request that carries a valid credential is always
evaluated and served, whatever other requests from its address did. Guessing
is defeated by the credentials' entropy (256-bit codes and tokens, service
secrets of 32+ characters); the limits shed the load failing traffic causes
and flag it. So nothing is refused *before* it is evaluated:

- ``failed()`` runs only on the failure path. When this worker already knows
  the address is over the limit, it answers 429 at once, from memory, without
  a Redis round trip (that is the load shed). Otherwise one Lua call
  increments the address's counter for the current window
  (``<prefix>rl:<limit>:<window>:<addr>``, created with the window's TTL) and
  returns the count shared by every worker and instance; the failure that
  reaches the limit is logged once (exactly one caller sees that count) and
  this worker remembers the block until the window ends; every failure past
  the limit answers 429.
- A success never touches the limiter, so it costs nothing and is never
  refused.

Every worker therefore answers the same way: a failing request from a blocked
address is 429 (from memory, or from the shared count), a valid one is
served. Windows are numbered from the injected clock, so tests advance time
instead of sleeping. IPv6 addresses are counted per /64, the block one
subscriber gets.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import NoReturn

from config.settings import RateLimit, Settings
from sso import metrics
from sso.errors import RateLimited
from sso.store import RedisStore

log = logging.getLogger("sso.ratelimit")

SERVICE_AUTH = "service_auth"
TOKEN = "token"  # nosec B105  # the name of a limit
AUTHORIZE = "authorize"


def limits_from(settings: Settings) -> dict[str, RateLimit | None]:
    return {
        SERVICE_AUTH: settings.rate_limit_service_auth_failures,
        TOKEN: settings.rate_limit_token_failures,
        AUTHORIZE: settings.rate_limit_authorize_failures,
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
    """Counts failures in Redis; answers 429 to the failures of an address over a limit."""

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

    def failed(self, limit: str, address: str | None) -> None:
        """Count one failure; raise RateLimited when the address is past the limit.

        An address this worker knows to be blocked is refused from memory: its
        failures cost no Redis round trip until the window ends.
        """
        rule = self.limits.get(limit)
        if rule is None:
            return
        unit = address_key(address)
        now = self.clock()
        remaining = self._blocked_for((limit, unit), now)
        if remaining:
            self._refuse(limit, remaining)
        window = int(now // rule.seconds)
        until = (window + 1) * rule.seconds
        count = self.store.count_failure(limit, window, unit, ttl=math.ceil(until - now) + 1)
        if count == rule.count:
            # Exactly one failure anywhere sees this count: the one place that flags the address.
            log.warning("rate limit reached",  # its failures answer 429 until the window ends
                        extra={"limit": limit, "address": unit, "limit_rule": str(rule),
                               "blocked_seconds": math.ceil(until - now)})  # fmt: skip
        if count >= rule.count:
            self._remember((limit, unit), until)
        if count > rule.count:
            self._refuse(limit, until - now)

    def _blocked_for(self, key: tuple[str, str], now: float) -> float:
        """Seconds left of this worker's block on ``key``; 0 when there is none."""
        until = self._blocks.get(key)
        if until is None:
            return 0
        if until > now:
            return until - now
        del self._blocks[key]
        return 0

    @staticmethod
    def _refuse(limit: str, remaining: float) -> NoReturn:
        metrics.RATE_LIMITED.labels(limit).inc()
        raise RateLimited(math.ceil(remaining))

    def _remember(self, key: tuple[str, str], until: float) -> None:
        if key not in self._blocks and len(self._blocks) >= self.max_blocks:
            now = self.clock()
            for stale in [k for k, t in self._blocks.items() if t <= now]:
                del self._blocks[stale]
            if len(self._blocks) >= self.max_blocks:
                return  # memory stays bounded; Redis still refuses this address on its next failure
        self._blocks[key] = until
