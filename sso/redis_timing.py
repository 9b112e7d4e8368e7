"""A redis-py client that times every round trip (sso_redis_command_duration_seconds).

The store and the worker call Redis through ordinary commands, scripts
(EVALSHA) and pipelines; timing them here, in the client the factory builds,
covers all of them without touching the store. The label is the command name
(a small fixed set: EVALSHA, PING, SCAN, ...), or PIPELINE for a batch.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.client import Pipeline
from redis.cluster import RedisCluster

from sso.metrics import redis_round_trip


class TimedPipeline(Pipeline):
    def execute(self, raise_on_error: bool = True) -> list[Any]:
        with redis_round_trip("PIPELINE"):
            return super().execute(raise_on_error)


class TimedRedis(redis.Redis):
    """``redis.Redis`` with every command and pipeline timed."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        name = args[0] if args and isinstance(args[0], str) else "OTHER"
        with redis_round_trip(name.split(" ", 1)[0].upper()):
            return super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        return TimedPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


class TimedRedisCluster(RedisCluster):
    """``RedisCluster`` with every routed command timed (its node pipelines are the node clients')."""

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        name = args[0] if args and isinstance(args[0], str) else "OTHER"
        with redis_round_trip(name.split(" ", 1)[0].upper()):
            return super().execute_command(*args, **kwargs)
