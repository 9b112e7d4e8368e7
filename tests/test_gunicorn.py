"""The service under a real gunicorn with gevent workers, as deployed."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from sso.store import Keys
from tests.conftest import SERVICE_SECRET
from tests.server import ROOT, GunicornServer, server_env
from tests.waiting import wait_for

HEADERS = {"Authorization": f"Service {SERVICE_SECRET}"}


@pytest.fixture
def server(settings, redis):
    srv = GunicornServer(server_env(settings, SSO_ACTIVITY_UPDATE_INTERVAL="60"), workers=2)
    srv.start()
    yield srv
    srv.stop()


def create(server: GunicornServer, user_id: str = "42") -> dict:
    response = requests.post(f"{server.url}/session/create", json={"user_id": user_id}, headers=HEADERS, timeout=5)
    assert response.status_code == 201, response.text
    return response.json()


def test_activity_is_written_at_most_once_per_interval_across_workers(server, redis, prefix):
    """Hundreds of validations through two gevent workers write last_active_at exactly once."""
    body = create(server)
    key = Keys(prefix).session(body["session_id_hash"])
    redis.hset(key, "last_active_at", int(redis.hget(key, "created_at")) - 3600)  # activity is due
    writes: list[str] = []
    stop, attached = threading.Event(), threading.Event()

    def watch() -> None:
        with redis.monitor() as monitor:
            attached.set()
            for command in monitor.listen():
                if "HSET" in command["command"] and key in command["command"]:
                    writes.append(command["command"])
                if stop.is_set():
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert attached.wait(5)  # MONITOR is on before the burst

    def validate(_: int) -> int:
        r = requests.post(
            f"{server.url}/session/validate", json={"token_hash": body["session_id_hash"]}, headers=HEADERS, timeout=5
        )
        return r.status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(validate, range(200))) == {200}
        wait_for(lambda: writes, timeout=5, what="the background tick's activity write")
        assert set(pool.map(validate, range(100))) == {200}
    assert server.stop() == 0  # graceful: flushes anything still pending
    stop.set()
    redis.ping()  # wakes the monitor loop
    watcher.join(5)
    assert int(redis.hget(key, "last_active_at")) > int(redis.hget(key, "created_at")) - 3600
    assert len(writes) == 1, writes


def test_sigterm_flushes_pending_activity(settings, redis, prefix):
    """A pending activity write survives a graceful stop: worker_exit flushes it."""
    # A long tick keeps the loop from writing on its own, so only the exit flush can.
    srv = GunicornServer(server_env(settings, SSO_ACTIVITY_UPDATE_INTERVAL="1"), workers=1)
    srv.start()
    try:
        body = create(srv)
        key = Keys(prefix).session(body["session_id_hash"])
        redis.hset(key, "last_active_at", 1)
        r = requests.post(
            f"{srv.url}/session/validate", json={"token_hash": body["session_id_hash"]}, headers=HEADERS, timeout=5
        )
        assert r.json()["valid"] is True
    finally:
        assert srv.stop() == 0
    assert int(redis.hget(key, "last_active_at")) > 1


def test_events_are_published_by_the_worker_greenlet(server, redis, prefix):
    """Under gunicorn the background greenlet publishes without any test help."""
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"{prefix}events")
    pubsub.get_message(timeout=1)
    body = create(server)
    message = pubsub.get_message(timeout=5)
    pubsub.close()
    assert message is not None
    assert body["session_id_hash"] in message["data"] and "session-created" in message["data"]


@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        ("SSO_ACCESS_TOKEN_TTL", "ten", "SSO_ACCESS_TOKEN_TTL: must be a non-negative integer, got 'ten'"),
        # read only in the workers: unchecked, each one died of a traceback at boot
        ("SSO_ISSUER", "http://localhost:80a", "SSO_ISSUER: 'http://localhost:80a' has an invalid port (1-65535)"),
        # the deployment knobs deploy/gunicorn.conf.py reads itself: a traceback, before
        ("SSO_WORKERS", "two", "SSO_WORKERS: must be a positive integer, got 'two'"),
        ("SSO_WORKERS", "0", "SSO_WORKERS: must be a positive integer, got '0'"),
        ("SSO_WORKER_CONNECTIONS", "1k", "SSO_WORKER_CONNECTIONS: must be a positive integer, got '1k'"),
        ("SSO_GRACEFUL_TIMEOUT", "-5", "SSO_GRACEFUL_TIMEOUT: must be a non-negative integer, got '-5'"),
        ("SSO_LOG_LEVEL", "loud", "SSO_LOG_LEVEL: must be debug, info, warning, error or critical, got 'loud'"),
    ],
)
def test_invalid_configuration_stops_with_one_line(settings, variable, value, line):
    """A bad variable stops gunicorn at start with one line naming it and no secret."""
    srv = GunicornServer(server_env(settings))
    srv.env[variable] = value  # after the server's own SSO_WORKERS and SSO_GRACEFUL_TIMEOUT
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=srv.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "invalid configuration" in line]
    assert lines == [f"fluxer-sso: invalid configuration: {line}"]
    assert SERVICE_SECRET not in proc.stdout + proc.stderr and "Traceback" not in proc.stdout + proc.stderr


def test_metrics_sum_across_workers_and_logs_are_json(settings, redis):
    """/metrics counts every worker's requests (multiprocess mode); every log line is JSON."""
    srv = GunicornServer(server_env(settings), workers=2)
    srv.start()
    try:
        for n in range(30):
            create(srv, f"u{n}")
        text = requests.get(f"{srv.url}/metrics", headers=HEADERS, timeout=5).text
        assert requests.get(f"{srv.url}/metrics", timeout=5).status_code == 401
    finally:
        srv.stop()
    from tests.test_operations import metric_value

    assert metric_value(text, "sso_sessions_created_total") == 30
    assert metric_value(text, "sso_http_requests_total", endpoint="/session/create", method="POST", status="201") == 30
    lines = [line for line in srv.log.splitlines() if line.strip()]
    assert [line for line in lines if not line.startswith("{")] == []
    parsed = [json.loads(line) for line in lines]  # raises if any line is not JSON
    access = [p for p in parsed if p.get("logger") == "sso.access"]
    assert len(access) >= 31 and {p["path"] for p in access} >= {"/session/create", "/metrics"}
    assert any(p.get("logger") == "gunicorn.error" for p in parsed)
    assert SERVICE_SECRET not in srv.log


def worker_pids(master: int) -> set[int]:
    """The live worker processes of a gunicorn master."""
    found = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
    return {int(pid) for pid in found.stdout.split()}


def test_reload_under_load_loses_no_request_and_no_activity(settings, redis, prefix):
    """SIGHUP replaces the workers while requests flow: none fails, every due activity write lands."""
    srv = GunicornServer(server_env(settings, SSO_ACTIVITY_UPDATE_INTERVAL="300"), workers=2)
    srv.start()
    try:
        sessions = [create(srv, f"r{n}") for n in range(40)]
        for body in sessions:
            redis.hset(Keys(prefix).session(body["session_id_hash"]), "last_active_at", 1000)
        statuses: list[int] = []
        stop = threading.Event()
        turn = itertools.count()  # shared: the threads take the sessions round-robin, none is left out

        def load() -> None:
            while not stop.is_set():
                body = sessions[next(turn) % len(sessions)]
                r = requests.post(f"{srv.url}/session/validate", json={"token_hash": body["session_id_hash"]},
                                  headers=HEADERS, timeout=10)  # fmt: skip
                statuses.append(r.status_code)

        workers = [threading.Thread(target=load) for _ in range(4)]
        for w in workers:
            w.start()
        # every session validated by the old workers before the reload: their writes must survive it
        wait_for(lambda: len(statuses) > len(sessions), timeout=20, what="load before the reload")
        assert srv.proc is not None
        old_workers = worker_pids(srv.proc.pid)
        srv.signal(signal.SIGHUP)
        # the old workers drain and exit, new ones take over; then keep the load on a little longer
        wait_for(lambda: (pids := worker_pids(srv.proc.pid)) and len(pids) == 2 and not pids & old_workers,
                 timeout=30, what="the reload to replace both workers", interval=0.1)  # fmt: skip
        served = len(statuses)
        wait_for(lambda: len(statuses) > max(served + 20, 2 * len(sessions)), timeout=20,
                 what="load after the reload, every session validated")  # fmt: skip
        stop.set()
        for w in workers:
            w.join(15)
    finally:
        assert srv.stop() == 0
    assert len(statuses) > 50 and set(statuses) == {200}, (len(statuses), set(statuses))
    assert srv.log.count("Booting worker") >= 4  # the reload really replaced the workers
    for n, body in enumerate(sessions):
        assert int(redis.hget(Keys(prefix).session(body["session_id_hash"]), "last_active_at")) > 1000, n


def test_both_workers_serve_the_right_secret_and_refuse_failures_alike(settings, redis):
    """Past the service-auth limit, both gevent workers answer failures 429 and every right secret 2xx."""
    env = server_env(settings, SSO_RATE_LIMIT_SERVICE_AUTH_FAILURES="3/day")  # no window ends mid-test
    srv = GunicornServer(env, workers=2)
    srv.start()
    try:
        attacker = {"X-Forwarded-For": "203.0.113.66"}  # gunicorn alone: ProxyFix trusts the one hop we are
        wrong = {**attacker, "Authorization": "Service wrong-secret-wrong-secret-wrong-secret"}

        def call(headers: dict[str, str]) -> int:
            # a new connection each time, so both workers take their share
            url = f"{srv.url}/session/create"
            return requests.post(url, json={"user_id": "42"}, headers=headers, timeout=5).status_code

        burst = [call(wrong) for _ in range(10)]
        assert burst[:3] == [401, 401, 401] and set(burst[3:]) == {429}
        after = [call({**attacker, **HEADERS}) if n % 2 else call(wrong) for n in range(40)]
        assert after[1::2] == [201] * 20, after
        assert set(after[0::2]) == {429}, after
    finally:
        srv.stop()
