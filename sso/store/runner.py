"""Running the store's scripts on one server, a Sentinel-managed master or a Cluster.

Every script touches the keys of one hash slot, so the client routes it by
its first key on every topology. Two things differ per topology:

* **Acknowledged writes.** Where a failover can promote a replica (Sentinel,
  Cluster), an invalidation or revocation is answered only once one replica
  holds it: the script and ``WAIT 1 <ms>`` go down one connection in one
  round trip, and no acknowledgement raises ``ReplicaTimeout`` (a 503; the
  scripts are idempotent, so the caller's retry is safe). A single server has
  nothing to fail over to and does not wait.
* **Batches.** A cluster pipeline refuses EVALSHA and PUBLISH, so background
  batches are split per primary and sent down that node's own connection.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MovedError, NoScriptError, RedisClusterException, RedisError, TimeoutError
from redis.typing import EncodableT

from sso.store.connections import Client
from sso.store.scripts import NAMES, source

T = TypeVar("T")
WAIT_TIMEOUT_MS = 500  # well inside the 1 s socket timeout


# What a Redis call can raise: redis-py's errors, and the cluster client's own (a slot no node
# serves, no seed reachable), which do not derive from RedisError. Each means "Redis unavailable".
REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException)


class ReplicaTimeout(RedisError):
    """No replica acknowledged a security write in time: the caller gets a 503 and may retry.

    The write did happen on the primary, so ``result`` carries the script's answer
    (parsed by the store part that ran it): whoever ran it must still announce what
    it ended or revoked before answering 503, since a retry finds nothing left to end.
    """

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


class Runner:
    def __init__(self, client: Client, *, wait_for_replica: bool, wait_timeout_ms: int = WAIT_TIMEOUT_MS) -> None:
        self.client = client
        self.cluster = isinstance(client, RedisCluster)
        self.wait_for_replica = wait_for_replica
        self.wait_timeout_ms = wait_timeout_ms
        self._scripts = {name: client.register_script(source(name)) for name in NAMES}

    def run(self, name: str, keys: Sequence[str], args: Sequence[EncodableT] = ()) -> Any:
        return self._scripts[name](keys=list(keys), args=list(args))

    def run_acknowledged(self, name: str, keys: Sequence[str], args: Sequence[EncodableT] = ()) -> Any:
        """``run``, answered only once a replica has the write (where there are replicas)."""
        if not self.wait_for_replica:
            return self.run(name, keys, args)
        script = self._scripts[name]

        def send(node: redis.Redis) -> list[Any]:
            pipe = node.pipeline(transaction=False)
            pipe.evalsha(script.sha, len(keys), *keys, *args)
            pipe.execute_command("WAIT", 1, self.wait_timeout_ms)
            return list(pipe.execute())

        def once(node: redis.Redis) -> Any:
            try:
                result, acked = send(node)
            except NoScriptError:  # a restarted or new primary: load it there, once
                node.script_load(script.script)
                result, acked = send(node)
            if int(acked) < 1:
                raise ReplicaTimeout("no replica acknowledged the write", result)
            return result

        return self._on_node(keys[0], once)

    def _on_node(self, key: str, call: Callable[[redis.Redis], T]) -> T:
        """``call`` with the plain client of the node that serves ``key``.

        On a cluster a MOVED (a resharding or a failover) or a dead node refreshes
        the slot map and tries once more.
        """
        if not isinstance(self.client, RedisCluster):
            return call(self.client)
        for attempt in (1, 2):
            node = self.client.get_redis_connection(self.client.get_node_from_key(key))
            try:
                return call(node)
            except (MovedError, RedisConnectionError, TimeoutError):
                if attempt == 2:
                    raise
                self.client.nodes_manager.initialize()
        raise AssertionError("unreachable")

    def batch(self, name: str, calls: Sequence[tuple[Sequence[str], Sequence[EncodableT]]]) -> list[Any]:
        """Run one script many times, pipelined: one round trip per node (results in call order)."""
        if not isinstance(self.client, RedisCluster):
            return self._pipelined(self.client, name, calls)
        groups: dict[str, list[int]] = defaultdict(list)
        nodes: dict[str, Any] = {}
        for i, (keys, _) in enumerate(calls):
            node = self.client.get_node_from_key(keys[0])
            groups[node.name].append(i)
            nodes[node.name] = node
        results: list[Any] = [None] * len(calls)
        for node_name, indexes in groups.items():
            group = [calls[i] for i in indexes]
            try:
                answers = self._pipelined(self.client.get_redis_connection(nodes[node_name]), name, group)
            except (MovedError, RedisConnectionError, TimeoutError):
                # the slot map moved under us: one call at a time, routed by the cluster client
                self.client.nodes_manager.initialize()
                answers = [self.run(name, keys, args) for keys, args in group]
            for i, answer in zip(indexes, answers, strict=True):
                results[i] = answer
        return results

    def _pipelined(
        self, node: redis.Redis, name: str, calls: Sequence[tuple[Sequence[str], Sequence[EncodableT]]]
    ) -> list[Any]:
        """EVALSHA per call in one pipeline; a node without the script (new, restarted) gets it once.

        Not redis-py's Script-in-pipeline, which asks SCRIPT EXISTS before every batch.
        """
        script = self._scripts[name]

        def send() -> list[Any]:
            pipe = node.pipeline(transaction=False)
            for keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            return list(pipe.execute())

        try:
            return send()
        except NoScriptError:
            node.script_load(script.script)
            return send()
