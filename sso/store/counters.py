"""Counters of failures per client address and fixed window, for the rate limits."""

from __future__ import annotations

from sso.store.layout import Keys
from sso.store.runner import Runner


class Counters:
    def __init__(self, runner: Runner, keys: Keys) -> None:
        self.runner = runner
        self.keys = keys

    def count_failure(self, limit: str, window: int, address: str, ttl: int) -> int:
        """Add one failure to a fixed window's counter (created with its TTL); the new count."""
        return int(self.runner.run("count_failure", [self.keys.rate(limit, window, address)], [max(1, ttl)]))
