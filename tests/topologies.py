"""Real Sentinel sets and Redis Clusters on loopback, for the suite.

Every process is the binary ``tests/redis_server.py:redis_server_binary()``
names (sentinels run it with ``--sentinel``), on free ports, in temp dirs,
bound to 127.0.0.1, without persistence. The cluster is built without
redis-cli: CLUSTER ADDSLOTSRANGE / MEET / REPLICATE through redis-py.

Timeouts are short (a dead master is noticed after about a second) so a
failover completes within a few seconds; start-up waits for conditions, never
for guessed times. Sentinels are given their ids, peers and replica in their
config files, so they need not discover each other (about 2 s) first.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import redis
from redis.crc import key_slot

from tests.redis_server import RedisServer, free_port, redis_server_binary
from tests.waiting import wait_for

MASTER_NAME = "sso-master"
CLUSTER_SLOTS = 16384
# A replica's first sync must not wait out the default 5 s diskless-sync delay, and
# an idle primary's replication offset must move (its PING to replicas) within a
# second, not ten: a cluster lists a replica in CLUSTER SLOTS only once it has an offset.
NODE_ARGS = ("--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1")


def _client(port: int) -> redis.Redis:
    return redis.Redis(port=port, decode_responses=True, socket_timeout=2, socket_connect_timeout=1)


def _info(port: int, section: str) -> dict[str, str]:
    with _client(port) as client:
        raw = client.execute_command("INFO", section)
    # parsed by hand: redis-py turns "slave0:ip=…,state=online" into a dict we do not need
    if isinstance(raw, dict):
        return {k: str(v) for k, v in raw.items()}
    pairs = (line.split(":", 1) for line in str(raw).splitlines() if ":" in line)
    return {key: value for key, value in pairs}


def _answers(port: int) -> bool:
    try:
        with _client(port) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def _replica_in_sync(port: int) -> bool:
    try:
        info = _info(port, "replication")
    except redis.RedisError:
        return False
    return info.get("role") == "slave" and info.get("master_link_status") == "up"


def _key_in(slots: tuple[int, int]) -> str:
    """A key whose hash slot lies in ``slots`` (a cluster primary refuses others with MOVED)."""
    return next(
        key for key in (f"topology:{i}" for i in range(100000)) if slots[0] <= key_slot(key.encode()) <= slots[1]
    )


def _replicated(port: int, key: str = "topology:ready") -> bool:
    """A write on this primary is acknowledged by a replica (WAIT 1) within 200 ms."""
    try:
        with _client(port) as client, client.pipeline(transaction=False) as pipe:
            pipe.set(key, "1").delete(key).wait(1, 200)
            return bool(pipe.execute()[-1] >= 1)
    except redis.RedisError:
        return False


class SentinelProcess:
    """One sentinel: ``<binary> <conf> --sentinel``, with a config it may rewrite."""

    def __init__(self, port: int, dir_: str, config: str) -> None:
        self.port = port
        self.dir = dir_
        self.conf = os.path.join(dir_, "sentinel.conf")
        with open(self.conf, "w") as handle:
            handle.write(config)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, binary: str) -> None:
        self.proc = subprocess.Popen(
            [binary, self.conf, "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def wait_answering(self) -> None:
        proc = self.proc
        assert proc is not None

        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"sentinel on port {self.port} exited during start")
            return _answers(self.port)

        wait_for(answers, timeout=10, what=f"sentinel {self.port} to answer")

    def command(self, *args: str) -> object:
        with _client(self.port) as client:
            return client.execute_command("SENTINEL", *args)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


class SentinelSet:
    """A master, one replica and three sentinels (quorum 2) watching them."""

    def __init__(self, *, down_after_ms: int = 1000, failover_timeout_ms: int = 3000) -> None:
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.nodes: dict[int, RedisServer] = {}
        self.sentinels: list[SentinelProcess] = []
        self.killed: int | None = None
        self.dir = tempfile.mkdtemp(prefix="sso-test-sentinel-")

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}/0"

    def start(self) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("no redis-server binary")
        try:
            master = self._start_node()
            replica = self._start_node("--replicaof", "127.0.0.1", str(master.port))
            self._start_sentinels(binary, master.port, replica.port)
            wait_for(lambda: _replicated(master.port), timeout=10, what="the replica to acknowledge writes")
            wait_for(self._sentinels_agree, timeout=15, what="the sentinels to see master, replica and peers")
        except BaseException:
            self.cleanup()
            raise

    def _start_node(self, *args: str) -> RedisServer:
        node = RedisServer(extra_args=(*NODE_ARGS, *args))
        self.nodes[node.port] = node
        node.start()
        return node

    def _start_sentinels(self, binary: str, master_port: int, replica_port: int) -> None:
        ports = [free_port() for _ in range(3)]
        ids = [secrets.token_hex(20) for _ in ports]
        for index, port in enumerate(ports):
            dir_ = tempfile.mkdtemp(prefix=f"s{index}-", dir=self.dir)
            peers = "".join(
                f"sentinel known-sentinel {MASTER_NAME} 127.0.0.1 {other} {ids[i]}\n"
                for i, other in enumerate(ports)
                if i != index
            )
            config = (
                f"port {port}\nbind 127.0.0.1\ndir {dir_}\nsentinel myid {ids[index]}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}\n"
                f"sentinel failover-timeout {MASTER_NAME} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
                f"sentinel known-replica {MASTER_NAME} 127.0.0.1 {replica_port}\n" + peers
            )
            self.sentinels.append(SentinelProcess(port, dir_, config))
        for sentinel in self.sentinels:
            sentinel.start(binary)
        for sentinel in self.sentinels:
            sentinel.wait_answering()

    def _sentinel_views(self) -> list[dict[str, str]]:
        views = []
        for sentinel in self.sentinels:
            if sentinel.proc is None:
                continue
            try:
                raw = sentinel.command("MASTER", MASTER_NAME)
            except redis.RedisError:
                return []
            views.append({str(k): str(v) for k, v in dict(raw).items()})  # type: ignore[call-overload]
        return views

    def _sentinels_agree(self) -> int | None:
        """The master's port once every sentinel sees one healthy master, its replica and both peers."""
        views = self._sentinel_views()
        if len(views) != len(self.sentinels):
            return None
        ports = {view.get("port") for view in views}
        healthy = all(
            view.get("flags") == "master"
            and view.get("num-other-sentinels") == "2"
            and int(view.get("num-slaves", "0")) >= 1
            for view in views
        )
        if not healthy or len(ports) != 1:
            return None
        port = int(ports.pop() or 0)
        try:
            if _info(port, "replication").get("role") != "master":
                return None
        except redis.RedisError:
            return None
        return port

    def master_port(self) -> int:
        """The master's port, as the sentinels report it."""
        for sentinel in self.sentinels:
            try:
                address = sentinel.command("GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
            except redis.RedisError:
                continue
            if address:
                return int(list(address)[1])  # type: ignore[call-overload]
        raise RuntimeError("no sentinel knows the master")

    def replica_ports(self) -> list[int]:
        master = self.master_port()
        return [port for port, node in self.nodes.items() if port != master and node.proc is not None]

    def kill_master(self) -> int:
        """SIGKILL the master, as a crash would; return its port."""
        port = self.master_port()
        self.nodes[port].kill()
        self.killed = port
        return port

    def planned_failover(self) -> int:
        """Ask a sentinel to fail over now (SENTINEL FAILOVER); return the old master's port."""
        port = self.master_port()
        self.sentinels[0].command("FAILOVER", MASTER_NAME)
        return port

    def wait_for_failover(self, old_port: int, *, timeout: float = 30) -> int:
        """Wait until every sentinel reports a master other than ``old_port`` and it answers as one."""

        def moved() -> int | None:
            port = self._sentinels_agree_on_any()
            return port if port and port != old_port else None

        return int(wait_for(moved, timeout=timeout, what=f"a failover away from port {old_port}"))

    def _sentinels_agree_on_any(self) -> int | None:
        views = self._sentinel_views()
        if len(views) != len(self.sentinels) or any("failover" in view.get("flags", "") for view in views):
            return None
        ports = {view.get("port") for view in views}
        if len(ports) != 1:
            return None
        port = int(ports.pop() or 0)
        try:
            return port if _info(port, "replication").get("role") == "master" else None
        except redis.RedisError:
            return None

    def restart_killed(self) -> None:
        """Bring the killed node back on its port as a replica of the current master."""
        assert self.killed is not None, "no node was killed"
        port, self.killed = self.killed, None
        self.nodes.pop(port).cleanup()
        node = RedisServer(port, extra_args=(*NODE_ARGS, "--replicaof", "127.0.0.1", str(self.master_port())))
        self.nodes[port] = node
        node.start()
        wait_for(lambda: _replicated(self.master_port()), timeout=15, what="the restarted node to acknowledge writes")

        def sentinels_see_it() -> bool:
            for sentinel in self.sentinels:
                replicas = sentinel.command("REPLICAS", MASTER_NAME)
                states = {int(r["port"]): r["flags"] for r in replicas}  # type: ignore[attr-defined]
                if "s_down" in states.get(port, "s_down"):
                    return False
            return True

        wait_for(sentinels_see_it, timeout=15, what="the sentinels to see the restarted replica")

    def cleanup(self) -> None:
        """Kill every process and remove every directory; safe to call twice or after a failed start."""
        for sentinel in self.sentinels:
            sentinel.kill()
        for node in self.nodes.values():
            node.kill()
            node.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass(frozen=True)
class Shard:
    """A primary and the slot ranges it serves, as the cluster reports them."""

    port: int
    slots: tuple[tuple[int, int], ...]
    replicas: tuple[int, ...]


class Cluster:
    """Three primaries with one replica each, slots split evenly."""

    def __init__(self, *, node_timeout_ms: int = 1000) -> None:
        self.node_timeout_ms = node_timeout_ms
        self.nodes: dict[int, RedisServer] = {}
        self.dead: set[int] = set()

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.nodes)

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.cleanup()
            raise

    def _start(self) -> None:
        args = (
            *NODE_ARGS,
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            str(self.node_timeout_ms),
            # a replica whose primary died always takes over, however stale
            "--cluster-replica-validity-factor",
            "0",
        )
        bus_ports = {}
        for _ in range(6):
            # an explicit bus port: the default (port + 10000) may be taken or above 65535
            bus_port = free_port()
            node = RedisServer(extra_args=(*args, "--cluster-port", str(bus_port)))
            self.nodes[node.port] = node
            bus_ports[node.port] = bus_port
            node.start()
        ports = list(self.nodes)
        primaries, replicas = ports[:3], ports[3:]
        clients = {port: _client(port) for port in ports}
        try:
            ids = {port: str(clients[port].execute_command("CLUSTER", "MYID")) for port in ports}
            bounds = [CLUSTER_SLOTS * i // 3 for i in range(4)]
            for index, port in enumerate(primaries):
                clients[port].execute_command("CLUSTER", "ADDSLOTSRANGE", bounds[index], bounds[index + 1] - 1)
            for port in ports[1:]:
                clients[ports[0]].execute_command("CLUSTER", "MEET", "127.0.0.1", port, bus_ports[port])

            def all_met() -> bool:
                return all(_known_nodes(clients[port]) == set(ids.values()) for port in ports)

            wait_for(all_met, timeout=15, what="every cluster node to know the others")
            for primary, replica in zip(primaries, replicas, strict=True):
                clients[replica].execute_command("CLUSTER", "REPLICATE", ids[primary])
        finally:
            for client in clients.values():
                client.close()
        self.wait_healthy()

    def live_ports(self) -> list[int]:
        return [port for port in self.nodes if port not in self.dead]

    def primaries(self, *, via: int | None = None) -> list[Shard]:
        """The shards as one live node (``via``, or the first) reports them in CLUSTER SHARDS order."""
        port = via if via is not None else self.live_ports()[0]
        with _client(port) as client:
            slots = client.execute_command("CLUSTER", "SLOTS")
        shards: dict[int, tuple[list[tuple[int, int]], set[int]]] = {}
        for entry in slots:
            start, end, primary, *replicas = entry
            ranges, replica_ports = shards.setdefault(int(primary[1]), ([], set()))
            ranges.append((int(start), int(end)))
            replica_ports.update(int(r[1]) for r in replicas)
        return sorted(
            (Shard(port, tuple(sorted(r)), tuple(sorted(reps))) for port, (r, reps) in shards.items()),
            key=lambda shard: shard.slots[0],
        )

    def kill_primary(self, port: int) -> None:
        """SIGKILL one primary, as a crash would; its replica takes over after the node timeout."""
        self.nodes[port].kill()
        self.dead.add(port)

    def planned_failover(self, replica_port: int) -> None:
        """CLUSTER FAILOVER on a replica: it and its primary swap roles without losing writes."""
        with _client(replica_port) as client:
            client.execute_command("CLUSTER", "FAILOVER")

    def wait_for_failover(self, old_port: int, *, timeout: float = 30) -> None:
        """Wait until ``old_port`` serves no slot in any live node's view, and the cluster is healthy."""

        def moved() -> bool:
            try:
                return all(old_port not in {s.port for s in self.primaries(via=port)} for port in self.live_ports())
            except redis.RedisError:
                return False

        wait_for(moved, timeout=timeout, what=f"a failover away from port {old_port}")
        self.wait_healthy(timeout=timeout)

    def wait_healthy(self, *, timeout: float = 30) -> None:
        """Every live node says cluster_state:ok, all agree on the slot map, live replicas are in sync."""

        def healthy() -> bool:
            try:
                views = {port: self.primaries(via=port) for port in self.live_ports()}
                if any(_info_cluster(port).get("cluster_state") != "ok" for port in views):
                    return False
            except redis.RedisError:
                return False
            first = next(iter(views.values()))
            if any(view != first for view in views.values()):
                return False
            covered = sum(end - start + 1 for shard in first for start, end in shard.slots)
            if covered != CLUSTER_SLOTS or any(shard.port in self.dead for shard in first):
                return False
            primaries = {shard.port for shard in first}
            replicas = {port for shard in first for port in shard.replicas}
            others = set(self.live_ports()) - primaries
            if not others <= replicas or not all(_replica_in_sync(port) for port in others):
                return False
            return all(_replicated(shard.port, _key_in(shard.slots[0])) for shard in first if shard.replicas)

        wait_for(healthy, timeout=timeout, what="the cluster to be healthy")

    def cleanup(self) -> None:
        """Kill every node and remove its directory; safe to call twice or after a failed start."""
        for node in self.nodes.values():
            node.kill()
            node.cleanup()


def _known_nodes(client: redis.Redis) -> set[str]:
    raw = client.execute_command("CLUSTER", "NODES")
    text = raw if isinstance(raw, str) else "\n".join(f"{v['node_id']} {k} {v['flags']}" for k, v in raw.items())
    lines = [line.split() for line in text.splitlines() if line.strip()]
    return {line[0] for line in lines if "handshake" not in line[2] and "noaddr" not in line[2]}


def _info_cluster(port: int) -> dict[str, str]:
    with _client(port) as client:
        raw = client.execute_command("CLUSTER", "INFO")
    if isinstance(raw, dict):
        return {k: str(v) for k, v in raw.items()}
    pairs = (line.split(":", 1) for line in str(raw).splitlines() if ":" in line)
    return {key: value.strip() for key, value in pairs}


T = TypeVar("T", SentinelSet, Cluster)


@contextmanager
def started(make: Callable[[], T]) -> Iterator[T]:
    """A started topology that is cleaned up however the block ends."""
    topology = make()
    topology.start()
    try:
        yield topology
    finally:
        topology.cleanup()


@contextmanager
def factory(make: Callable[[], T]) -> Iterator[Callable[[], T]]:
    """A callable that starts fresh private topologies; all are cleaned up when the block ends."""
    made: list[T] = []

    def new() -> T:
        topology = make()
        made.append(topology)
        topology.start()
        return topology

    try:
        yield new
    finally:
        for topology in made:
            topology.cleanup()
