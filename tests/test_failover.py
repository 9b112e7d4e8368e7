"""Failovers under load, through real gunicorn, on a real Sentinel set and a real Redis Cluster.

A few threads create, validate, invalidate and refresh while the master (or
the primary holding their keys) is killed or handed over. What must hold:
every answer is 2xx/4xx or a 503 JSON (never a 500, never a request hanging
past ~3 s), the service recovers by itself, and every invalidation that was
answered 200 is still in force afterwards (WAIT: acknowledged by a replica).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import redis as redis_lib
import requests

from config.redis_url import parse_redis_url
from sso.store.connections import connect, node_for_key
from sso.store.layout import Keys, user_bucket
from tests.conftest import SERVICE_SECRET
from tests.server import GunicornServer, LiveFlow, server_env
from tests.topologies import Cluster, SentinelSet
from tests.waiting import wait_for

HEADERS = {"Authorization": f"Service {SERVICE_SECRET}"}
HANG = 3.5  # seconds: two 1 s socket timeouts plus slack


@dataclass
class Load:
    """Threads driving the service; what each request answered, and when."""

    url: str
    users: list[str]
    answers: list[tuple[float, str, int, float]] = field(default_factory=list)  # (at, op, status, seconds)
    ended: list[str] = field(default_factory=list)  # sids whose invalidation answered 200
    bad: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def call(self, op: str, method: str, path: str, **kwargs: object) -> requests.Response | None:
        started = time.monotonic()
        try:
            response = requests.request(method, f"{self.url}{path}", timeout=10, **kwargs)  # type: ignore[arg-type]
        except requests.RequestException as exc:
            self.bad.append(f"{op}: {type(exc).__name__}")
            return None
        elapsed = time.monotonic() - started
        self.answers.append((time.monotonic(), op, response.status_code, elapsed))
        if response.status_code >= 500 and (
            response.status_code != 503 or response.json().get("error") != "temporarily_unavailable"
        ):
            self.bad.append(f"{op}: {response.status_code} {response.text[:200]}")
        return response

    def sessions(self, user: str) -> None:
        while not self.stop.is_set():
            created = self.call("create", "POST", "/session/create", json={"user_id": user}, headers=HEADERS)
            if created is None or created.status_code != 201:
                continue
            sid = created.json()["session_id_hash"]
            self.call("validate", "POST", "/session/validate", json={"token_hash": sid}, headers=HEADERS)
            ended = self.call("invalidate", "POST", "/session/invalidate",
                              json={"user_id": user, "session_id_hashes": [sid]}, headers=HEADERS)  # fmt: skip
            if ended is not None and ended.status_code == 200 and ended.json()["invalidated"] == [sid]:
                self.ended.append(sid)

    def refreshes(self, user: str) -> None:
        live = LiveFlow(self.url, SERVICE_SECRET)
        token = live.exchange(live.code(live.login(user))).json()["refresh_token"]
        while not self.stop.is_set():
            response = self.call("refresh", "POST", "/token", data={
                "grant_type": "refresh_token", "refresh_token": token, "client_id": "fluxer"})  # fmt: skip
            if response is not None and response.status_code == 200:
                token = response.json()["refresh_token"]
            elif response is not None and response.status_code == 400:
                # a rotation lost to the failover: the client signs in again (documented)
                token = live.exchange(live.code(live.login(user))).json()["refresh_token"]

    def ok_since(self, at: float, op: str) -> int:
        return sum(1 for t, o, status, _ in self.answers if t > at and o == op and status < 300)


def ride_out(settings, url: str, users: list[str], fail: Callable[[], None], recover: Callable[[], None]) -> Load:  # type: ignore[no-untyped-def]
    """Load through gunicorn, ``fail()`` mid-way, ``recover()`` (bring a replica back), then check."""
    srv = GunicornServer(server_env(dataclasses.replace(settings, redis_url=url)), workers=1)
    srv.start()
    load = Load(srv.url, users)
    threads = [threading.Thread(target=load.sessions, args=(u,)) for u in users]
    threads.append(threading.Thread(target=load.refreshes, args=(users[0],)))
    try:
        for t in threads:
            t.start()
        wait_for(lambda: load.ok_since(0, "invalidate") >= 10, timeout=20, what="load before the failover")
        failed_at = time.monotonic()
        fail()
        recover()
        for op in ("create", "validate", "invalidate", "refresh"):
            wait_for(lambda op=op: load.ok_since(time.monotonic() - 1, op) >= 1 and load.ok_since(failed_at, op) >= 3,
                     timeout=30, what=f"{op} to succeed again after the failover")  # fmt: skip
        recovered = time.monotonic() - failed_at
    finally:
        load.stop.set()
        for t in threads:
            t.join(15)
    try:
        assert load.bad == [], load.bad[:5]
        slowest = max(seconds for _, _, _, seconds in load.answers)
        assert slowest < HANG, f"a request took {slowest:.1f} s"
        statuses = Counter(status for _, _, status, _ in load.answers)
        print(f"failover: recovered in {recovered:.1f} s, answers {dict(statuses)}, slowest {slowest:.2f} s, "
              f"{len(load.ended)} acknowledged invalidations")  # fmt: skip
        assert recovered < 25
        for sid in load.ended:  # every acknowledged invalidation is still in force
            answer = requests.post(f"{srv.url}/session/validate", json={"token_hash": sid}, headers=HEADERS, timeout=10)
            assert answer.json() == {"valid": False}, sid
    finally:
        srv.stop()
    return load


def test_sentinel_master_crash_under_load(settings, new_sentinel_set: Callable[[], SentinelSet]):
    """SIGKILL of the master: 503s only while the sentinels promote the replica; nothing acknowledged is lost."""
    topology = new_sentinel_set()
    old: list[int] = []

    def fail() -> None:
        old.append(topology.kill_master())
        topology.wait_for_failover(old[0])

    ride_out(settings, topology.url, ["u1", "u2", "u3"], fail, topology.restart_killed)


def test_sentinel_planned_failover_under_load(settings, new_sentinel_set: Callable[[], SentinelSet]):
    """SENTINEL FAILOVER: the demoted master's READONLY sends the client to the new one; nothing is lost."""
    topology = new_sentinel_set()

    def fail() -> None:
        topology.wait_for_failover(topology.planned_failover())

    ride_out(settings, topology.url, ["u1", "u2", "u3"], fail, lambda: None)


def users_on(cluster: Cluster, port: int, prefix: str, count: int) -> list[str]:
    """User ids whose bucket lives on the primary at ``port``."""
    client = connect(parse_redis_url(cluster.url), timeout=5)
    keys, found, n = Keys(prefix), [], 0
    try:
        while len(found) < count:
            user = f"c{n}"
            node = node_for_key(client, keys.index(user))
            if node.connection_pool.connection_kwargs["port"] == port:
                found.append(user)
            n += 1
    finally:
        client.close()
    return found


def test_cluster_primary_crash_under_load(settings, new_cluster: Callable[[], Cluster]):
    """SIGKILL of the primary holding the users' keys: its replica takes over; nothing acknowledged is lost."""
    cluster = new_cluster()
    victim = cluster.primaries()[0]
    users = users_on(cluster, victim.port, settings.redis_prefix, 3)

    def fail() -> None:
        cluster.kill_primary(victim.port)
        cluster.wait_for_failover(victim.port)

    def recover() -> None:  # the crashed node comes back and rejoins as a replica
        cluster.nodes[victim.port].start()
        cluster.dead.discard(victim.port)
        cluster.wait_healthy()

    ride_out(settings, cluster.url, users, fail, recover)


def test_cluster_planned_failover_under_load(settings, new_cluster: Callable[[], Cluster]):
    """CLUSTER FAILOVER on the replica: the client follows MOVED; nothing acknowledged is lost."""
    cluster = new_cluster()
    victim = cluster.primaries()[0]
    users = users_on(cluster, victim.port, settings.redis_prefix, 3)

    def fail() -> None:
        cluster.planned_failover(victim.replicas[0])
        cluster.wait_for_failover(victim.port)

    ride_out(settings, cluster.url, users, fail, lambda: None)


@pytest.mark.parametrize("topology", ["cluster"], indirect=True)
def test_users_spread_evenly_over_the_primaries(redis_cluster: Cluster, topology: str):
    """10 000 random users' keys fall on the three primaries within ±20 % of a third each."""
    import uuid

    from redis.crc import key_slot

    keys = Keys("sso:")
    owner = {}
    for shard in redis_cluster.primaries():
        for start, end in shard.slots:
            owner.update(dict.fromkeys(range(start, end + 1), shard.port))
    counts = Counter(owner[key_slot(keys.index(uuid.uuid4().hex).encode())] for _ in range(10_000))
    print(f"users per primary: {sorted(counts.values())}")
    assert len(counts) == 3 and all(abs(n - 10_000 / 3) <= 0.2 * 10_000 / 3 for n in counts.values())
    assert len({user_bucket(str(n)) for n in range(10_000)}) == 256


def test_an_invalidation_no_replica_acknowledged_is_503_and_still_announced(settings, new_sentinel_set, clock):
    """The write happened on the master: 503 (the caller may retry), yet its event is logged and published,
    since a retry would find nothing left to announce."""
    import json

    from app import create_app

    topology = new_sentinel_set()
    app = create_app(dataclasses.replace(settings, redis_url=topology.url), clock=clock)
    raw = connect(parse_redis_url(topology.url), timeout=5)
    try:
        client = app.test_client()
        created = client.post("/session/create", json={"user_id": "42"}, headers=HEADERS).get_json()
        (replica,) = topology.replica_ports()
        topology.nodes[replica].kill()  # nobody left to acknowledge
        ended = client.post("/session/invalidate", json={"user_id": "42",
                            "session_id_hashes": [created["session_id_hash"]]}, headers=HEADERS)  # fmt: skip
        assert ended.status_code == 503 and ended.get_json()["error"] == "temporarily_unavailable"
        app.extensions["sso"].worker.run_once()
        logged = [json.loads(fields["event"]) for _, fields in raw.xrange(f"{settings.redis_prefix}event-log")]
        assert [(e["type"], e["session_id_hashes"]) for e in logged][-1] == (
            "session-invalidated",
            [created["session_id_hash"]],
        )
        answer = client.post("/session/validate", json={"token_hash": created["session_id_hash"]}, headers=HEADERS)
        assert answer.get_json() == {"valid": False}
    finally:
        raw.close()
        app.extensions["sso"].redis.close()


def test_a_cluster_slot_no_node_serves_is_a_503_not_a_500(settings, new_cluster: Callable[[], Cluster], clock):
    """A primary's slots dropped from the cluster: the cluster client's own exceptions answer 503 JSON."""
    from redis.crc import key_slot

    from app import create_app

    cluster = new_cluster()
    app = create_app(dataclasses.replace(settings, redis_url=cluster.url), clock=clock)
    try:
        client = app.test_client()
        user = "42"
        slot = key_slot(Keys(settings.redis_prefix).index(user).encode())
        for port in cluster.live_ports():
            with redis_lib.Redis(port=port) as node:
                node.execute_command("CLUSTER", "DELSLOTS", slot)

        def every_node_reports_fail() -> bool:  # a node updates cluster_state in its own cron, not at once
            for port in cluster.live_ports():
                with redis_lib.Redis(port=port, decode_responses=True) as node:
                    if node.cluster("INFO").get("cluster_state") != "fail":
                        return False
            return True

        wait_for(every_node_reports_fail, timeout=10, what="cluster_state:fail on every node")
        created = client.post("/session/create", json={"user_id": user}, headers=HEADERS)
        assert created.status_code == 503 and created.get_json()["error"] == "temporarily_unavailable"
        health = client.get("/_health")
        assert health.status_code == 503 and health.get_json()["status"] == "unavailable"
    finally:
        app.extensions["sso"].redis.close()
