"""REDIS_URL topologies: parsing, settings, and clients that follow real failovers.

The failover tests run against private Sentinel sets and clusters on loopback
(tests/topologies.py), write continuously through one client built by
``connect`` while the topology changes, and print how long writes failed.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from app import create_app
from config.redis_url import RedisTarget, parse_redis_url
from config.settings import ConfigError, load_settings
from sso.store.connections import connect, node_for_key, primaries
from tests.conftest import SERVICE_SECRET, make_settings
from tests.topologies import Cluster, SentinelSet
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
SECRET = "hunter2-Sup3r-secret"
TIMEOUT = 1.0
SCRIPT = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])"


# --- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", {"hosts": (("127.0.0.1", 6379),), "db": 0, "tls": False}),
        ("redis://cache.internal", {"hosts": (("cache.internal", 6379),), "db": 0}),
        (
            f"rediss://sso:{SECRET}@cache.internal:6380/2",
            {"hosts": (("cache.internal", 6380),), "db": 2, "tls": True, "username": "sso", "password": SECRET},
        ),
        (f"redis://:{SECRET}@h:1/3", {"username": None, "password": SECRET, "db": 3}),
        ("redis://h:1?db=4", {"db": 4}),
        ("unix:///run/redis/redis.sock?db=5", {"hosts": (), "unix_path": "/run/redis/redis.sock", "db": 5}),
    ],
)
def test_single_server_forms(url: str, expected: dict[str, Any]) -> None:
    """redis://, rediss:// and unix:// parse to one server and keep the URL for redis-py."""
    target = parse_redis_url(url)
    assert target.kind == "single" and target.url == url and not target.has_replicas
    assert {name: getattr(target, name) for name in expected} == expected


def test_sentinel_forms() -> None:
    """Sentinel URLs: host list, default port, master name, db, credentials, TLS, sentinel auth."""
    target = parse_redis_url(f"rediss+sentinel://sso:{SECRET}@10.0.0.1:26379,10.0.0.2,[::1]:26380/my%20master/3")
    assert target.kind == "sentinel" and target.tls and target.has_replicas
    assert target.hosts == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380))
    assert (target.master_name, target.db, target.username, target.password) == ("my master", 3, "sso", SECRET)
    assert target.sentinel_password is None and target.url is None

    plain = parse_redis_url(f"redis+sentinel://s1:1,s2:2/mymaster?sentinel_password={SECRET}&sentinel_username=mon")
    assert (plain.tls, plain.db, plain.username, plain.password) == (False, 0, None, None)
    assert (plain.sentinel_username, plain.sentinel_password) == ("mon", SECRET)
    assert parse_redis_url("redis+sentinel://s1/mymaster/").db == 0


def test_cluster_forms() -> None:
    """Cluster URLs: seed list with default port 6379, credentials, TLS, db 0 only."""
    target = parse_redis_url(f"rediss+cluster://{SECRET}@n1:7000,n2:7001,n3")
    assert target.kind == "cluster" and target.tls and target.has_replicas
    assert target.hosts == (("n1", 7000), ("n2", 7001), ("n3", 6379))
    assert (target.username, target.password, target.db, target.master_name) == (None, SECRET, 0, None)
    assert parse_redis_url("redis+cluster://u:p@n1:7000/0?ssl_ca_certs=/etc/ca.pem").ssl_ca_certs == "/etc/ca.pem"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"http://u:{SECRET}@h:1", "must start with"),
        (f"u:{SECRET}@h:1", "must start with"),
        (f"redis://u:{SECRET}@h:abc/0", "invalid port"),
        (f"redis://u:{SECRET}@h:1/x", "database must be a non-negative integer"),
        (f"redis://u:{SECRET}@/0", "needs a host"),
        ("unix://", "socket path"),
        (f"redis+sentinel://u:{SECRET}@h:1", "must name the master"),
        (f"redis+sentinel://u:{SECRET}@h:1/", "must name the master"),
        (f"redis+sentinel://u:{SECRET}@h:1/m/one", "database must be a non-negative integer"),
        (f"redis+sentinel://u:{SECRET}@h:1/m?password={SECRET}", "unknown query parameter for sentinel"),
        (f"redis+sentinel://u:{SECRET}@h:1/m?sentinel_password=a&sentinel_password=b", "repeated"),
        (f"redis+cluster://u:{SECRET}@h:1/3", "only database 0"),
        (f"redis+cluster://u:{SECRET}@h:abc", "host 1 has an invalid port"),
        (f"redis+cluster://u:{SECRET}@h:1,h:99999", "host 2 has an invalid port"),
        (f"redis+cluster://u:{SECRET}@h:1,,h:2", "host:port pairs"),
        (f"redis+cluster://u:{SECRET}@", "host:port pairs"),
        (f"redis+cluster://u:{SECRET}@h:1#frag", "fragment"),
        # reserved characters left unescaped in the userinfo: refused, and no fragment of it is echoed
        (f"redis://u:{SECRET}/{SECRET}@h:1/0", "percent-encode"),
        (f"redis://{SECRET}/{SECRET}@h:1/0", "percent-encode"),
        (f"rediss://u:{SECRET}?{SECRET}@h:1/0", "percent-encode"),
        (f"unix://u:{SECRET}/{SECRET}@/run/redis.sock", "percent-encode"),
        (f"redis+cluster://u:{SECRET}?{SECRET}@h:1", "percent-encode"),
        (f"redis+cluster://u:1234?{SECRET}=x@h:1", "percent-encode"),
        (f"redis+sentinel://{SECRET}?{SECRET}@h:1/m", "percent-encode"),
        (f"redis+sentinel://u:1234?{SECRET}=x", "unknown query parameter"),
    ],
)
def test_bad_urls_are_refused_without_leaking_the_password(url: str, message: str) -> None:
    """Each malformed REDIS_URL gets its own clear reason, which never contains the password."""
    with pytest.raises(ValueError) as caught:
        parse_redis_url(url)
    assert message in str(caught.value)
    assert SECRET not in str(caught.value) and caught.value.__cause__ is None


def test_an_unescaped_slash_or_at_sign_in_a_sentinel_or_cluster_password_stays_in_the_password() -> None:
    """The userinfo ends at the last '@' before the query, so base64 passwords need no escaping there."""
    sentinel = parse_redis_url(f"redis+sentinel://fluxer:{SECRET}/x+y=@10.0.0.1:26379,10.0.0.2/mymaster/2")
    assert (sentinel.username, sentinel.password) == ("fluxer", f"{SECRET}/x+y=")
    assert sentinel.hosts == (("10.0.0.1", 26379), ("10.0.0.2", 26379))
    assert (sentinel.master_name, sentinel.db) == ("mymaster", 2)
    cluster = parse_redis_url(f"rediss+cluster://:{SECRET}@/{SECRET}@n1:7000,n2/0")
    assert (cluster.username, cluster.password) == (None, f"{SECRET}@/{SECRET}")
    assert cluster.hosts == (("n1", 7000), ("n2", 6379))
    for target in (sentinel, cluster):
        assert SECRET not in target.describe() and SECRET not in repr(target)
    # an '@' in a query value must be %40, as in the one-server forms; then it is read as such
    refused = f"redis+sentinel://s1/m?sentinel_password={SECRET}@x"
    with pytest.raises(ValueError, match="percent-encode") as caught:
        parse_redis_url(refused)
    assert SECRET not in str(caught.value)
    assert parse_redis_url(f"redis+sentinel://s1/m?sentinel_password={SECRET}%40x").sentinel_password == f"{SECRET}@x"


def test_describe_and_repr_mask_every_secret() -> None:
    """describe() is one loggable line per topology; neither it nor repr() shows a password."""
    cases = {
        f"redis+sentinel://sso:{SECRET}@127.0.0.1:26379,127.0.0.1:26380/mymaster?sentinel_password={SECRET}": (
            "sentinel master 'mymaster' via 127.0.0.1:26379,127.0.0.1:26380 db 0, user 'sso'"
        ),
        f"rediss+cluster://:{SECRET}@n1:7000,[::1]:7001": "cluster via n1:7000,[::1]:7001, tls",
        f"rediss://:{SECRET}@cache:6380/1": "redis cache:6380 db 1, tls",
        "unix:///run/redis.sock?db=2": "redis unix socket /run/redis.sock db 2",
    }
    for url, description in cases.items():
        target = parse_redis_url(url)
        assert target.describe() == description
        assert SECRET not in repr(target)


def test_settings_accept_every_topology_and_reject_bad_urls(key_pair: tuple[str, str]) -> None:
    """load_settings takes the Sentinel and Cluster forms; a bad one is a REDIS_URL ConfigError without the secret."""
    env = {"SSO_JWT_PRIVATE_KEY": key_pair[0], "SSO_JWT_PUBLIC_KEY": key_pair[1], "SSO_SERVICE_SECRET": "s" * 32}
    for url in (
        "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/0",
        "rediss+sentinel://u:p@s1:26379/mymaster",
        "redis+cluster://127.0.0.1:7000,127.0.0.1:7001",
        "unix:///run/redis.sock?db=1",
    ):
        assert load_settings({**env, "REDIS_URL": url}).redis_url == url
    assert load_settings({**env, "REDIS_URL": f"redis+cluster://u:{SECRET}/x@h:7000"}).redis_url.endswith("@h:7000")
    for url in (
        f"redis+cluster://:{SECRET}@h:1/2",
        f"redis+sentinel://:{SECRET}@h:1",
        f"memcached://:{SECRET}@h",
        f"redis://fluxer:{SECRET}/xyz@10.0.0.1:6379/0",
        f"redis+cluster://fluxer:{SECRET}?xyz@10.0.0.1:7000",
    ):
        with pytest.raises(ConfigError) as caught:
            load_settings({**env, "REDIS_URL": url})
        assert caught.value.variable == "REDIS_URL" and SECRET not in str(caught.value)


# --- connecting to real topologies ---------------------------------------------------------------


def _round_trip(client: redis.Redis | RedisCluster, key: str) -> None:
    assert client.set(key, "v1") and client.get(key) == "v1"
    assert client.eval(SCRIPT, 1, key, "v2") == "v2"
    script = client.register_script(SCRIPT)
    assert script(keys=[key], args=["v3"]) == "v3"
    client.delete(key)


def test_single_server_connect(redis_url: str, prefix: str) -> None:
    """connect() on redis:// gives a plain client: SET, GET, EVAL; it is its own only primary."""
    target = parse_redis_url(redis_url)
    client = connect(target, timeout=TIMEOUT)
    try:
        assert isinstance(client, redis.Redis)
        _round_trip(client, f"{prefix}k")
        assert primaries(client) == [client] and node_for_key(client, "x") is client
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == TIMEOUT
    finally:
        client.close()


def test_sentinel_connect(sentinel_set: SentinelSet, prefix: str) -> None:
    """Through the sentinels the client reaches the master; WAIT on its connection counts the replica."""
    client = connect(parse_redis_url(sentinel_set.url), timeout=TIMEOUT)
    try:
        assert isinstance(client, redis.Redis)
        _round_trip(client, f"{prefix}k")
        with client.pipeline(transaction=False) as pipe:
            pipe.set(f"{prefix}w", "1")
            pipe.wait(1, 2000)
            assert pipe.execute() == [True, 1]
        assert client.connection_pool.master_address == ("127.0.0.1", sentinel_set.master_port())
        assert primaries(client) == [client]
        client.delete(f"{prefix}w")
    finally:
        client.close()


def test_sentinel_master_that_does_not_exist_fails_closed(sentinel_set: SentinelSet) -> None:
    """A master name the sentinels do not know is a ConnectionError (503 at the app), not a hang."""
    url = sentinel_set.url.replace("/sso-master/", "/no-such-master/")
    client = connect(parse_redis_url(url), timeout=TIMEOUT)
    try:
        with pytest.raises(redis.ConnectionError, match="No master found"):
            client.ping()
    finally:
        client.close()


def test_app_runs_on_sentinel(sentinel_set: SentinelSet, prefix: str, key_pair: tuple[str, str]) -> None:
    """create_app with a redis+sentinel:// URL: sessions are created and validated through the master."""
    application = create_app(make_settings(sentinel_set.url, prefix, key_pair))
    client = application.extensions["sso"].redis
    try:
        api = application.test_client()
        headers = {"Authorization": f"Service {SERVICE_SECRET}"}
        assert api.get("/_health").status_code == 200
        created = api.post("/session/create", json={"user_id": "42"}, headers=headers)
        assert created.status_code == 201
        body = {"token_hash": created.get_json()["session_id_hash"]}
        valid = api.post("/session/validate", json=body, headers=headers)
        assert valid.get_json()["valid"] is True
        with redis.Redis(port=sentinel_set.master_port(), decode_responses=True) as master:
            assert list(master.scan_iter(match=f"{prefix}*"))
    finally:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()


def test_cluster_connect(redis_cluster: Cluster, prefix: str) -> None:
    """The cluster client spreads keys over every primary; scripts on one slot work; primaries() has one client each."""
    client = connect(parse_redis_url(redis_cluster.url), timeout=TIMEOUT)
    try:
        assert isinstance(client, RedisCluster)
        _round_trip(client, f"{{{prefix}}}k")
        keys = [f"{prefix}spread{i}" for i in range(30)]
        for key in keys:
            client.set(key, "x", ex=60)
        nodes = primaries(client)
        assert sorted(node.connection_pool.connection_kwargs["port"] for node in nodes) == sorted(
            shard.port for shard in redis_cluster.primaries()
        )
        per_node = [len(list(node.scan_iter(match=f"{prefix}spread*"))) for node in nodes]
        assert sum(per_node) == len(keys) and all(count > 0 for count in per_node)
        for key in keys:
            client.delete(key)
    finally:
        client.close()


def test_cluster_wait_needs_the_keys_node(redis_cluster: Cluster, prefix: str) -> None:
    """A script and its WAIT on node_for_key's connection: the replica of that shard acknowledges."""
    client = connect(parse_redis_url(redis_cluster.url), timeout=TIMEOUT)
    try:
        key = f"{prefix}acked"
        node = node_for_key(client, key)
        with node.pipeline(transaction=False) as pipe:
            pipe.eval(SCRIPT, 1, key, "kept")
            pipe.wait(1, 2000)
            assert pipe.execute() == ["kept", 1]
        assert client.get(key) == "kept"
        client.delete(key)
    finally:
        client.close()


def test_cluster_pipeline_commands_in_redis_py(redis_cluster: Cluster, prefix: str) -> None:
    """redis-py 8.1 ClusterPipeline: evalsha()/publish() methods are blocked, execute_command() routes them."""
    client = connect(parse_redis_url(redis_cluster.url), timeout=TIMEOUT)
    try:
        sha = client.script_load(SCRIPT)  # SCRIPT LOAD goes to every primary
        with client.pipeline(transaction=False) as pipe:
            with pytest.raises(RedisClusterException, match="blocked"):
                pipe.evalsha(sha, 1, f"{prefix}a", "x")
            with pytest.raises(RedisClusterException, match="blocked"):
                pipe.publish(f"{prefix}chan", "x")
        with client.pipeline(transaction=False) as pipe:
            pipe.execute_command("EVALSHA", sha, 1, f"{prefix}a", "1")
            pipe.execute_command("EVALSHA", sha, 1, f"{prefix}b", "2")  # another slot, another node maybe
            pipe.execute_command("PUBLISH", f"{prefix}chan", "x")
            assert pipe.execute() == ["1", "2", 0]
        client.delete(f"{prefix}a")
        client.delete(f"{prefix}b")
    finally:
        client.close()


def test_cluster_publish_reaches_subscribers_on_other_nodes(redis_cluster: Cluster, prefix: str) -> None:
    """PUBLISH on one node is broadcast over the cluster bus to subscribers on every other node, replicas too."""
    channel = f"{prefix}events"
    shards = redis_cluster.primaries()
    publisher_port = shards[0].port
    listeners = []
    try:
        for port in (shards[1].port, shards[2].port, shards[2].replicas[0]):
            pubsub = redis.Redis(port=port, decode_responses=True).pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(channel)
            assert pubsub.get_message(timeout=1.0) is None  # consumes the confirmation
            listeners.append(pubsub)
        with redis.Redis(port=publisher_port) as publisher:
            publisher.publish(channel, "hello")
        for pubsub in listeners:
            message = wait_for(lambda p=pubsub: p.get_message(timeout=0.2), timeout=5, what="the broadcast message")
            assert message["data"] == "hello"
    finally:
        for pubsub in listeners:
            pubsub.close()


# --- failovers -----------------------------------------------------------------------------------


class WriteProbe:
    """INCRs one key through one client again and again, timing the longest run of failures.

    ``count`` is the number of acknowledged increments, so comparing it with the
    key's value afterwards shows acknowledged writes a failover lost.
    """

    def __init__(self, client: redis.Redis | RedisCluster, key: str) -> None:
        self.client = client
        self.key = key
        self.count = 0
        self.attempts = 0
        self.failing_since: float | None = None
        self.longest = 0.0
        self.errors: set[str] = set()

    def write(self) -> bool:
        self.attempts += 1
        try:
            self.client.incr(self.key)
            self.count += 1
        except redis.RedisError as exc:
            self.errors.add(type(exc).__name__)
            if self.failing_since is None:
                self.failing_since = time.monotonic()
            return False
        if self.failing_since is not None:
            self.longest = max(self.longest, time.monotonic() - self.failing_since)
            self.failing_since = None
        return True

    def ride_out(self, disrupt: Callable[[], None], settled: Callable[[], object], what: str) -> None:
        """Write across ``disrupt()`` until ``settled()`` (run beside) returns and a write succeeds after."""
        assert self.write(), "the probe must work before the disruption"
        done = threading.Event()
        failures: list[BaseException] = []

        def wait_settled() -> None:
            try:
                settled()
            except BaseException as exc:  # re-raised below, in the test's thread
                failures.append(exc)
            finally:
                done.set()

        disrupt()
        waiter = threading.Thread(target=wait_settled, daemon=True)
        waiter.start()
        wait_for(lambda: self.write() and done.is_set(), timeout=60, what=f"writes to work after {what}")
        waiter.join()
        if failures:
            raise failures[0]
        errors = ", ".join(sorted(self.errors)) or "none"
        print(f"\n{what}: writes failed for {self.longest:.2f} s ({self.attempts} attempts; errors: {errors})")

    def lost(self) -> int:
        """Acknowledged increments missing from the key now (negative: applied twice)."""
        return self.count - int(self.client.get(self.key) or 0)


def _acked_write(client: redis.Redis | RedisCluster, key: str, timeout_ms: int = 500) -> int:
    """SET then WAIT on the same connection: how many replicas acknowledged the write.

    WAIT's own timeout must stay below the client's socket timeout (1 s).
    """
    with node_for_key(client, key).pipeline(transaction=False) as pipe:
        pipe.set(key, "kept")
        pipe.wait(1, timeout_ms)
        stored, replicas = pipe.execute()
    assert stored is True
    return int(replicas)


def test_sentinel_crash_failover(new_sentinel_set: Callable[[], SentinelSet]) -> None:
    """SIGKILL the master: the same client writes again once the replica is promoted, acked data survives."""
    topology = new_sentinel_set()
    client = connect(parse_redis_url(topology.url), timeout=TIMEOUT)
    try:
        assert _acked_write(client, "marker") == 1
        script = client.register_script(SCRIPT)
        assert script(keys=["s"], args=["before"]) == "before"
        old = topology.master_port()
        probe = WriteProbe(client, "probe")
        probe.ride_out(topology.kill_master, lambda: topology.wait_for_failover(old), "Sentinel crash failover")
        print(f"acknowledged writes lost: {probe.lost()}")
        assert topology.master_port() != old and client.get("marker") == "kept"
        assert script(keys=["s"], args=["after"]) == "after"  # the new master had no script cache: reloaded
        assert _acked_write(client, "alone", timeout_ms=100) == 0  # its only replica is the dead node
        topology.restart_killed()
        assert _acked_write(client, "alone") == 1
        with redis.Redis(port=old, decode_responses=True) as node:
            assert node.get("marker") == "kept" and node.role()[0] == "slave"
    finally:
        client.close()


def test_sentinel_planned_failover(new_sentinel_set: Callable[[], SentinelSet]) -> None:
    """SENTINEL FAILOVER: the same client moves to the new master at once, not when the old one is demoted."""
    topology = new_sentinel_set()
    client = connect(parse_redis_url(topology.url), timeout=TIMEOUT)
    try:
        assert isinstance(client, redis.Redis)
        assert _acked_write(client, "marker") == 1
        old = topology.master_port()
        probe = WriteProbe(client, "probe")
        probe.ride_out(topology.planned_failover, lambda: topology.wait_for_failover(old), "Sentinel planned failover")
        new = topology.master_port()
        assert new != old and client.get("marker") == "kept"
        # The old master accepts writes until the sentinels demote it, ~10 s later;
        # the pool must have left it within about its one-second recheck.
        switched = time.monotonic()
        wait_for(
            lambda: probe.write() and client.connection_pool.master_address == ("127.0.0.1", new),
            timeout=5,
            what="the client to follow the new master",
        )
        print(f"client on the new master {time.monotonic() - switched:.2f} s after the sentinels switched")
        # SENTINEL FAILOVER does not pause the old master: increments it took after
        # the promotion are not on the new one (WAIT would have reported 0 for them)
        print(f"acknowledged writes lost: {probe.lost()}")
        # ...and the new master has no replica until the sentinels demote the old
        # master (Redis waits 8 s and more), so a write with WAIT 1 fails until then
        assert _acked_write(client, "after", timeout_ms=100) == 0
        wait_for(lambda: _acked_write(client, "after", timeout_ms=100) == 1, timeout=30, what="a replica again")
        print(f"writes with WAIT 1 failed for {time.monotonic() - switched:.2f} s after the switch")
    finally:
        client.close()


def _plant_stale_connection(client: redis.Redis, port: int) -> None:
    """Leave a pooled connection to ``port`` as if it were still the master.

    Sentinel's own reconfiguration disconnects every client of a demoted
    master, so the window in which a connection reaches one (asked the
    sentinels, then connected after the switch) is recreated by hand through
    the pool's own objects, against a real replica that answers READONLY.
    """
    pool = client.connection_pool
    connection = pool.get_connection()
    connection.disconnect()
    connection.connect_to(("127.0.0.1", port))
    pool.proxy.master_address = ("127.0.0.1", port)  # the pool's view before a failover
    pool.next_check = time.monotonic() + 60  # as if it had just asked the sentinels
    pool.release(connection)


def _readonly_errors(port: int) -> int:
    with redis.Redis(port=port, decode_responses=True) as node:
        stats = node.info("errorstats").get("errorstat_READONLY", {"count": 0})
    return int(stats["count"])


@pytest.mark.parametrize("write", ["SET", "EVAL", "pipeline"])
def test_sentinel_readonly_answer_sends_the_client_to_the_master(
    sentinel_set: SentinelSet, prefix: str, write: str
) -> None:
    """A write on a connection to a replica gets READONLY; the one retry re-asks the sentinels, lands on the master."""
    client = connect(parse_redis_url(sentinel_set.url), timeout=TIMEOUT)
    key = f"{prefix}ro"
    writes: dict[str, Callable[[], object]] = {
        "SET": lambda: client.set(key, "1"),
        "EVAL": lambda: client.eval("return redis.call('INCR', KEYS[1])", 1, key),
        "pipeline": lambda: client.pipeline(transaction=False).incr(key).expire(key, 60).execute(),
    }
    try:
        replica = sentinel_set.replica_ports()[0]
        before = _readonly_errors(replica)
        _plant_stale_connection(client, replica)
        writes[write]()  # READONLY from the replica, a reconnect through the sentinels, the retry
        assert _readonly_errors(replica) == before + (2 if write == "pipeline" else 1)  # each command refused
        assert client.connection_pool.master_address == ("127.0.0.1", sentinel_set.master_port())
        assert client.get(key) == "1"  # written exactly once, on the master
    finally:
        client.delete(key)
        client.close()


def test_cluster_primary_kill(new_cluster: Callable[[], Cluster]) -> None:
    """SIGKILL a primary: its replica takes the slots and the same cluster client writes there again."""
    topology = new_cluster()
    client = connect(parse_redis_url(topology.url), timeout=TIMEOUT)
    try:
        key = "{probe}k"
        assert _acked_write(client, "{probe}marker") == 1
        slot = client.keyslot(key)
        shard = next(s for s in topology.primaries() if any(lo <= slot <= hi for lo, hi in s.slots))
        probe = WriteProbe(client, key)
        probe.ride_out(
            lambda: topology.kill_primary(shard.port),
            lambda: topology.wait_for_failover(shard.port),
            "Cluster primary kill",
        )
        owner = next(s for s in topology.primaries() if any(lo <= slot <= hi for lo, hi in s.slots))
        assert owner.port == shard.replicas[0]
        print(f"acknowledged writes lost: {probe.lost()}")
        assert client.get("{probe}marker") == "kept"
        assert {node.connection_pool.connection_kwargs["port"] for node in primaries(client)} == {
            s.port for s in topology.primaries()
        }
    finally:
        client.close()


def test_cluster_planned_failover(new_cluster: Callable[[], Cluster]) -> None:
    """CLUSTER FAILOVER on a replica: roles swap and the client follows the MOVED slots by itself."""
    topology = new_cluster()
    client = connect(parse_redis_url(topology.url), timeout=TIMEOUT)
    try:
        key = "{probe}k"
        slot = client.keyslot(key)
        shard = next(s for s in topology.primaries() if any(lo <= slot <= hi for lo, hi in s.slots))
        probe = WriteProbe(client, key)
        probe.ride_out(
            lambda: topology.planned_failover(shard.replicas[0]),
            lambda: topology.wait_for_failover(shard.port),
            "Cluster planned failover",
        )
        owner = next(s for s in topology.primaries() if any(lo <= slot <= hi for lo, hi in s.slots))
        assert (owner.port, owner.replicas) == (shard.replicas[0], (shard.port,))
        assert probe.lost() == 0  # a manual failover waits for the replica to catch up
    finally:
        client.close()


def test_target_is_immutable() -> None:
    """RedisTarget is frozen: the parsed configuration cannot be changed after start."""
    target = parse_redis_url("redis://h:1/0")
    with pytest.raises(AttributeError):
        target.db = 1  # type: ignore[misc]
    assert isinstance(target, RedisTarget)


def test_cluster_with_no_reachable_seed_fails_at_connect() -> None:
    """Unlike the others, the cluster client reads the slot map while it is built: no seed, no client."""
    with pytest.raises(RedisClusterException) as caught:
        connect(parse_redis_url(f"redis+cluster://u:{SECRET}@127.0.0.1:1,127.0.0.1:2"), timeout=0.2)
    assert not isinstance(caught.value, redis.RedisError)  # not a ConnectionError: callers must catch it
    assert SECRET not in str(caught.value)


def test_validating_settings_imports_no_redis_py() -> None:
    """gunicorn's master validates the settings before gevent patches its workers: no redis, so no early ssl."""
    code = "import sys, config.settings; print(sorted({'redis', 'ssl'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]"
