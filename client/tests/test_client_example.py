"""client/examples/api_instance.py under gunicorn with a gevent worker, against the real service."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from fluxer_sso_client import ServiceClient
from harness import ISSUER, SERVICE_SECRET, GunicornProcess, SSOServer, free_port, wait_for

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def instance(sso: SSOServer) -> Iterator[GunicornProcess]:
    """The example under gunicorn with one gevent worker, configured for the test's service."""
    port = free_port()
    env = {"SSO_ISSUER": ISSUER, "SSO_SERVICE_URL": sso.url, "SSO_SERVICE_SECRET": SERVICE_SECRET,
           "REDIS_URL": sso.env["REDIS_URL"], "SSO_REDIS_PREFIX": sso.prefix, "PATH": "/usr/bin:/bin"}  # fmt: skip
    args = ["-k", "gevent", "-w", "1", "-b", f"127.0.0.1:{port}", "--no-control-socket", "api_instance:app"]
    proc = GunicornProcess(args, EXAMPLES, env, probe=f"http://127.0.0.1:{port}/me", expect=401)
    proc.start()
    try:
        wait_for(lambda: sso.prefix + "events" in subscribed_channels(sso), timeout=10, what="its subscription")
        yield proc
    finally:
        proc.stop()


def subscribed_channels(sso: SSOServer) -> list[str]:
    import redis

    client = redis.Redis.from_url(sso.env["REDIS_URL"], decode_responses=True)
    try:
        return [str(c) for c in client.pubsub_channels(f"{sso.prefix}events")]
    finally:
        client.close()


def test_the_example_protects_its_route_and_closes_websockets_on_logout(sso, instance, user) -> None:
    """A real token opens /me; after /session/invalidate the callback runs and the token is refused."""
    token, session = sso.access_token(user)
    auth = {"Authorization": f"Bearer {token}"}
    assert requests.get(instance.probe, timeout=5).status_code == 401
    response = requests.get(instance.probe, headers=auth, timeout=5)
    assert response.status_code == 200 and response.json() == {"user_id": user}

    started = time.monotonic()
    ServiceClient(sso.url, SERVICE_SECRET).invalidate(user, [session["session_id_hash"]])

    def challenge() -> str | None:
        response = requests.get(instance.probe, headers=auth, timeout=5)
        return response.headers.get("WWW-Authenticate") if response.status_code == 401 else None

    header = wait_for(challenge, timeout=5, what="the example to refuse the token", interval=0.005)
    print(f"example: invalidate-to-401 delay {1000 * (time.monotonic() - started):.1f} ms")
    assert 'error="invalid_token", error_description="token revoked"' in header
    line = f"closing WebSockets of session {session['session_id_hash']} (session-invalidated, "  # reason follows
    wait_for(lambda: line in instance.log(), timeout=5, what="the close-WebSockets callback")
