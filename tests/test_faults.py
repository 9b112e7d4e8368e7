"""Redis faults: a slow Redis. Fails closed, bounded, recovers by itself.

Each test runs its own redis-server (tests/redis_server.py) so it can kill,
stall or restart it without disturbing the rest of the suite.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
import redis as redis_lib

from app import create_app
from tests.conftest import SERVICE_SECRET, Api, OAuth
from tests.redis_server import RedisServer, has_redis_server

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


# -- slow Redis -----------------------------------------------------------------------------


def stall(server: RedisServer, seconds: float) -> threading.Thread:
    """DEBUG SLEEP from another connection: Redis answers nobody for that long."""
    other = redis_lib.Redis(port=server.port)

    def sleep() -> None:
        other.execute_command("DEBUG", "SLEEP", seconds)
        other.close()

    thread = threading.Thread(target=sleep)
    thread.start()
    time.sleep(0.1)  # the sleep has begun
    return thread


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
