"""Redis faults: killed under load, slow, and empty after a restart. Fails closed, bounded, recovers by itself.

Each test runs its own redis-server (tests/redis_server.py) so it can kill,
stall or restart it without disturbing the rest of the suite.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis as redis_lib
import requests

from app import create_app
from sso.cookies import COOKIE_NAME
from tests.conftest import SERVICE_SECRET, Api, OAuth
from tests.redis_server import RedisServer, has_redis_server
from tests.server import GunicornServer, LiveFlow, server_env
from tests.test_races import check_user_keys_consistent
from tests.waiting import wait_for

pytestmark = pytest.mark.skipif(not has_redis_server(), reason="needs the redis-server binary to kill and restart")

HEADERS = {"Authorization": f"Service {SERVICE_SECRET}"}
BOUND = 2.5  # seconds: socket timeout 1 s, one retry, and slack for a busy machine


@pytest.fixture
def private_redis(request):
    server = RedisServer(**getattr(request, "param", {}))
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def flow(private_redis, settings, clock):
    """The app on the private Redis, and the OAuth helper on it."""
    app = create_app(dataclasses.replace(settings, redis_url=private_redis.url), clock=clock)
    client = app.test_client()
    yield OAuth(client, Api(client, HEADERS))
    app.extensions["sso"].redis.close()


def assert_unavailable(response, started: float) -> None:
    assert time.monotonic() - started < BOUND
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.get_json()["error"] == "temporarily_unavailable"


# -- killed under load, with a real gunicorn ------------------------------------------------


class Load:
    """A few client threads calling the session API in a loop, recording every answer."""

    def __init__(self, url: str, users: int = 4) -> None:
        self.url = url
        self.users = [f"load{i}" for i in range(users)]
        self.stop = threading.Event()
        self.phase = "before"
        self.records: list[tuple[str, str, int, float, dict]] = []
        self._lock = threading.Lock()

    def call(self, method: str, path: str, **kwargs) -> requests.Response | None:
        started = time.monotonic()
        phase = self.phase
        try:
            response = requests.request(method, f"{self.url}{path}", headers=HEADERS, timeout=10, **kwargs)
        except requests.RequestException as exc:  # a hung or dropped request is a failure too
            with self._lock:
                self.records.append((phase, path, 0, time.monotonic() - started, {"exception": repr(exc)}))
            return None
        body = response.json() if response.content else {}
        with self._lock:
            self.records.append((phase, path, response.status_code, time.monotonic() - started, body))
        return response

    def wait_for(self, phase: str, status: int, count: int) -> None:
        """Keep the load on until ``count`` answers with ``status`` were seen in ``phase``."""

        def seen() -> bool:
            with self._lock:
                return sum(1 for p, _, s, _, _ in self.records if p == phase and s == status) >= count

        wait_for(seen, timeout=30, what=f"{count} answers {status} in phase {phase}", interval=0.05)

    def run(self, user: str) -> None:
        while not self.stop.is_set():
            created = self.call("POST", "/session/create", json={"user_id": user})
            if created is None or created.status_code != 201:
                continue
            sid = created.json()["session_id_hash"]
            self.call("POST", "/session/validate", json={"token_hash": sid})
            self.call("GET", f"/session/list/{user}")
            self.call("POST", "/session/invalidate", json={"user_id": user, "session_id_hashes": [sid]})


def test_redis_killed_under_load_fails_closed_and_recovers(settings, redis):
    """SIGKILL Redis under load: 503 JSON within the bound, no hung worker, nothing half-written;
    Redis back: the same gunicorn serves again, no restart."""
    store = RedisServer(aof=True)
    store.start()
    server = GunicornServer(server_env(dataclasses.replace(settings, redis_url=store.url)), workers=2)
    server.start()
    master = server.proc.pid if server.proc else None
    load = Load(server.url)
    try:
        with ThreadPoolExecutor(len(load.users)) as pool:
            for user in load.users:
                pool.submit(load.run, user)
            load.wait_for("before", 201, 20)
            load.phase = "down"
            store.kill()
            load.wait_for("down", 503, 20)
            load.phase = "restarted"
            store.start()  # same port; the AOF brings back everything acknowledged
            load.wait_for("restarted", 201, 10)
            load.phase = "settled"
            load.wait_for("settled", 201, 10)
            load.stop.set()
        health = requests.get(f"{server.url}/_health", timeout=5)
        assert health.status_code == 200
        assert server.proc is not None and server.proc.pid == master and server.proc.poll() is None
        client = redis_lib.Redis.from_url(store.url, decode_responses=True)
        for user in load.users:
            check_user_keys_consistent(client, settings.redis_prefix, user)
        client.close()
    finally:
        load.stop.set()
        server.stop()
        store.cleanup()

    by_phase = Counter((phase, status) for phase, _, status, _, _ in load.records)
    assert all(status in (200, 201, 503) for _, status in by_phase), by_phase  # no 500, no dropped request
    assert by_phase[("down", 503)] > 0 and by_phase[("before", 201)] > 0, by_phase
    assert {status for (phase, status) in by_phase if phase == "settled"} <= {200, 201}, by_phase
    assert by_phase[("settled", 201)] > 0, by_phase
    slowest = max(elapsed for _, _, _, elapsed, _ in load.records)
    assert slowest < BOUND, f"a request took {slowest:.2f}s"
    for _, _, status, _, body in load.records:
        if status == 503:
            assert body["error"] == "temporarily_unavailable" and set(body) == {"error", "error_description"}
    assert "WORKER TIMEOUT" not in server.log and "Traceback" not in server.log, server.log


# -- slow Redis -----------------------------------------------------------------------------


def stall(server: RedisServer, seconds: float) -> threading.Thread:
    """DEBUG SLEEP from another connection: Redis answers nobody for that long."""
    other = redis_lib.Redis(port=server.port)

    def sleep() -> None:
        other.execute_command("DEBUG", "SLEEP", seconds)
        other.close()

    thread = threading.Thread(target=sleep)
    thread.start()
    server.wait_until_stalled()
    return thread


@pytest.mark.parametrize("private_redis", [{"debug": True}], indirect=True)
def test_slow_redis_answers_503_within_the_bound(private_redis, flow):
    """A stalled Redis (DEBUG SLEEP 4.5): each request gets 503 within ~2 s; afterwards the right answers."""
    session = flow.api.create("42")
    thread = stall(private_redis, 4.5)
    started = time.monotonic()
    assert_unavailable(flow.api.post("/session/validate", {"token_hash": session["session_id_hash"]}), started)
    started = time.monotonic()
    assert_unavailable(flow.api.post("/session/create", {"user_id": "43"}), started)
    thread.join()
    # no reply meant for a timed-out request reaches a later one: each answer is its own
    validated = flow.api.post("/session/validate", {"token_hash": session["session_id_hash"]}).get_json()
    assert validated["valid"] is True and validated["session"]["session_id_hash"] == session["session_id_hash"]
    assert flow.client.get("/_health").get_json() == {"status": "ok"}


@pytest.mark.parametrize("private_redis", [{"debug": True}], indirect=True)
@pytest.mark.parametrize("stall_seconds", [1.3, 1.8])
def test_slow_redis_retry_is_not_mistaken_for_token_reuse(private_redis, flow, stall_seconds):
    """A stall between one and two socket timeouts: redis-py's retry may run the same script twice.

    The second run of a rotation (or a code redemption) used to look like reuse and revoked the
    family; the request's jti now makes both scripts idempotent, so the answer is a plain success.
    """
    flow.login()
    tokens = flow.tokens()
    thread = stall(private_redis, stall_seconds)
    refreshed = flow.refresh(tokens["refresh_token"])
    thread.join()
    assert refreshed.status_code == 200, refreshed.get_json()
    assert flow.refresh(refreshed.get_json()["refresh_token"]).status_code == 200  # the family lives on
    code = flow.code()
    thread = stall(private_redis, stall_seconds)
    exchanged = flow.exchange(code)
    thread.join()
    assert exchanged.status_code == 200, exchanged.get_json()
    assert flow.refresh(exchanged.get_json()["refresh_token"]).status_code == 200


def test_a_failure_counted_while_redis_is_down_fails_closed(private_redis, flow):
    """A wrong service secret with Redis down: 503, not a 401 that quietly skipped the rate limit's count."""
    private_redis.stop()
    started = time.monotonic()
    wrong = {"Authorization": "Service wrong-secret-wrong-secret"}
    assert_unavailable(flow.client.post("/session/create", json={"user_id": "1"}, headers=wrong), started)


# -- empty Redis after a restart ------------------------------------------------------------


def test_empty_redis_after_restart_rejects_every_old_token(private_redis, flow):
    """Redis restarted without persistence: every old session, code and token is rejected; nothing crashes."""
    session = flow.login()
    tokens = flow.tokens()
    code = flow.code()
    private_redis.stop()
    private_redis.start()  # empty: no persistence
    api, client = flow.api, flow.client
    assert api.post("/session/validate", {"token_hash": session["session_id_hash"]}).get_json() == {"valid": False}
    assert flow.refresh(tokens["refresh_token"]).get_json()["error"] == "invalid_grant"
    assert flow.exchange(code).get_json()["error"] == "invalid_grant"
    for token in (tokens["access_token"], tokens["refresh_token"]):
        assert client.post("/introspect", data={"token": token}, headers=HEADERS).get_json() == {"active": False}
    userinfo = client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert userinfo.status_code == 401 and userinfo.get_json()["error"] == "invalid_token"
    cookie = client.post("/session/set-cookie", json={"token": session["token"]})
    assert cookie.status_code == 401 and "Set-Cookie" not in cookie.headers
    client.set_cookie(COOKIE_NAME, session["token"], domain="localhost")
    assert flow.authorize().headers["Location"].startswith("http://app.test/login?")
    logout = client.get("/logout", query_string={"id_token_hint": tokens["id_token"]})
    assert logout.get_json() == {"logged_out": False}
    assert client.post("/revoke", data={"token": tokens["refresh_token"], "client_id": "fluxer"}).status_code == 200
    assert client.get("/session/list/42", headers=HEADERS).get_json() == {"sessions": []}
    assert api.post("/session/invalidate-all", {"user_id": "42"}).get_json() == {"invalidated": []}
    assert flow.login()["token"]  # and the service works on


@pytest.mark.skipif(not has_redis_server(), reason="needs redis-server to stall a private Redis")
def test_long_stall_is_a_503_and_a_grace_retry_then_succeeds(settings, redis):
    """A refresh while Redis stalls past both attempts answers 503 within ~2 s. The timed-out
    rotation may still have run; with a grace window the client's own retry gets its successor."""
    import dataclasses

    private = RedisServer()
    private.start()
    srv = GunicornServer(server_env(dataclasses.replace(settings, redis_url=private.url), SSO_REFRESH_REUSE_GRACE="30"),
                         workers=1)  # fmt: skip
    srv.start()
    try:
        live = LiveFlow(srv.url, SERVICE_SECRET)
        tokens = live.exchange(live.code(live.login())).json()
        busy = private_client(private)
        stall = threading.Thread(
            target=lambda: busy.eval(
                "local s = redis.call('TIME')[1] while redis.call('TIME')[1] - s < 4 do end return 1", 0
            )
        )
        stall.start()
        private.wait_until_stalled()
        started = time.monotonic()
        during = live.refresh(tokens["refresh_token"])
        elapsed = time.monotonic() - started
        stall.join()
        busy.close()
        assert during.status_code == 503 and during.json()["error"] == "temporarily_unavailable"
        assert elapsed < 3.0
        retry = live.refresh(tokens["refresh_token"])
        assert retry.status_code == 200, retry.text
        assert live.refresh(retry.json()["refresh_token"]).status_code == 200
        assert requests.get(f"{srv.url}/_health", timeout=5).status_code == 200
    finally:
        srv.stop()
        private.cleanup()


def private_client(server: RedisServer):
    import redis as redis_lib

    return redis_lib.Redis(port=server.port, socket_timeout=10)
