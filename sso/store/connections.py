"""The redis-py clients the store talks through (``connect``), and two fixes to them.

Kept apart from the URL parsing so that validating the settings imports no
redis-py: importing redis imports ``ssl``, and gunicorn's master validates the
settings before its gevent workers monkey-patch, which then warns that
``ssl`` was imported too early (and may misbehave).

Following a failover is redis-py's job, configured here: a sentinel-managed
connection asks the sentinels for the master on every (re)connect and turns a
demoted master's ``READONLY`` answer into a disconnect plus ConnectionError,
which the one retry turns into a reconnect to the new master; the cluster
client re-reads the slot map after a connection error, ``MOVED`` or
``CLUSTERDOWN``. tests/test_topology.py checks both against real servers.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import SSLConnection
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool, SentinelManagedConnection

from config.redis_url import RedisTarget

Client = redis.Redis | RedisCluster


class FollowingSentinelConnection(SentinelManagedConnection):
    """A master connection that asks the sentinels for the address on *every* (re)connect.

    redis-py 8.1.0's SentinelManagedConnection turns a demoted master's
    READONLY into a disconnect plus ConnectionError, but the retry then
    reconnects through ``connect_check_health()``, which it does not override:
    the retried command goes back to the old address and fails again (READONLY
    from a demoted master, refused from a dead one). Resolving the master
    there makes the one retry land on the new master.
    """

    def connect(self) -> None:
        # the base class resolves in _connect_retry and then again below; once is enough
        self.retry.call_with_retry(
            lambda: self.connect_check_health(check_health=self.connection_pool.check_connection),
            lambda error: None,
        )

    def connect_to(self, address: tuple[str, int]) -> None:
        """Connect to exactly ``address`` (redis-py's meaning), without asking the sentinels."""
        self.host, self.port = address
        super().connect_check_health(check_health=self.connection_pool.check_connection, retry_socket_connect=False)

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        if not self._sock:
            self.host, self.port = self.connection_pool.get_master_address()
        super().connect_check_health(check_health=check_health, retry_socket_connect=False)


class FollowingSentinelSSLConnection(FollowingSentinelConnection, SSLConnection):
    """The same over TLS."""


class FollowingSentinelPool(SentinelConnectionPool):
    """A sentinel pool that re-asks the sentinels for the master at most once a ``recheck`` interval.

    redis-py asks only when it opens a connection. After a planned failover
    (SENTINEL FAILOVER) the old master stays a writable master until the
    sentinels reconfigure it, about 10 s later, so pooled connections would go
    on writing to it, and those writes are lost when it resyncs. Re-asking on
    checkout closes the idle connections to a replaced master (redis-py's
    ``get_master_address`` does that when the address changed); connections in
    use are dropped when released. If no sentinel answers, the pool keeps its
    connections and waits longer before asking again, so a sentinel outage does
    not slow every request.
    """

    recheck = 1.0
    backoff = 5.0

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs: Any) -> None:
        tls = kwargs.get("ssl", False)
        kwargs["connection_class"] = FollowingSentinelSSLConnection if tls else FollowingSentinelConnection
        super().__init__(service_name, sentinel_manager, **kwargs)
        self.next_check = 0.0

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if now >= self.next_check and self.master_address is not None:
            self.next_check = now + self.recheck
            try:
                self.get_master_address()
            except MasterNotFoundError:
                self.next_check = now + self.backoff
        return super().get_connection(*args, **kwargs)


def _retry() -> Retry:
    # One retry, on a broken connection (a pooled socket to a Redis that has
    # restarted or been demoted) or a timeout. A timed-out script may still
    # run, so the retried one can be its second run: rotation and code
    # redemption are idempotent per request (same jti / marker), so the retry
    # gets the same answer instead of looking like token reuse
    # (tests/test_faults.py).
    return Retry(NoBackoff(), 1)


def connect(
    target: RedisTarget,
    *,
    timeout: float,
    redis_class: type[redis.Redis] = redis.Redis,
    cluster_class: type[RedisCluster] = RedisCluster,
) -> Client:
    """A pooled client with short timeouts that fails fast and closed, and follows failovers.

    Nothing is contacted here except for a cluster, whose client reads the
    slot map from a seed as it is built (and raises if no seed answers).
    """
    common: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
    }
    # a PING before reusing a connection idle for 30 s (the cluster client has no such option)
    checked = {"health_check_interval": 30}
    tls: dict[str, Any] = {"ssl": True, "ssl_ca_certs": target.ssl_ca_certs} if target.tls else {}
    if target.kind == "single":
        if target.url is None:
            raise ValueError("a one-server target carries its URL")
        return redis_class.from_url(target.url, retry=_retry(), **common, **checked)
    if target.kind == "sentinel":
        if target.master_name is None:
            raise ValueError("a Sentinel target names its master")
        sentinel = Sentinel(
            list(target.hosts),
            sentinel_kwargs={
                "socket_timeout": timeout,
                "socket_connect_timeout": timeout,
                "username": target.sentinel_username,
                "password": target.sentinel_password,
                "retry": Retry(NoBackoff(), 0),  # the next sentinel in the list is the retry
                **tls,
            },
        )
        return sentinel.master_for(
            target.master_name,
            redis_class=redis_class,
            connection_pool_class=FollowingSentinelPool,
            db=target.db,
            username=target.username,
            password=target.password,
            retry=_retry(),
            **tls,
            **common,
            **checked,
        )
    return cluster_class(
        startup_nodes=[ClusterNode(host, port) for host, port in target.hosts],
        username=target.username,
        password=target.password,
        # the cluster client retries itself, re-reading the slot map first;
        # node connections get no retries of their own
        retry=_retry(),
        **tls,
        **common,
    )


def primaries(client: Client) -> list[redis.Redis]:
    """One plain client per primary (for per-node SCAN, pipelines, WAIT), or ``[client]``.

    The node clients share the cluster client's pools and make no retries; ask
    again after a failover, since the set of primaries changes.
    """
    if isinstance(client, RedisCluster):
        return [client.get_redis_connection(node) for node in client.get_primaries()]
    return [client]


def node_for_key(client: Client, key: str) -> redis.Redis:
    """The plain client of the primary serving ``key``'s slot, or ``client`` itself.

    WAIT counts the replicas that acknowledged the writes of *its own
    connection*, so a script and its WAIT must share one connection: a
    ``pipeline(transaction=False)`` on this client. The cluster client itself
    would send WAIT to its default node, not to the key's. This client does
    not follow MOVED: after a failover, ask again.
    """
    if isinstance(client, RedisCluster):
        return client.get_redis_connection(client.get_node_from_key(key))
    return client
