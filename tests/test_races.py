"""Races against a real gunicorn + gevent server: exactly-once outcomes, no 5xx."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import SERVICE_SECRET
from tests.server import GunicornServer, LiveFlow, server_env

RACERS = 20


def race(fn, n: int = RACERS) -> list[requests.Response]:
    """Run fn n times at once, released together by a barrier."""
    barrier = threading.Barrier(n)

    def run(_: int) -> requests.Response:
        barrier.wait()
        return fn()

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


@pytest.fixture(params=[0], ids=["grace0"])
def live(request, settings, redis):
    grace = str(request.param)
    server = GunicornServer(server_env(settings, SSO_REFRESH_REUSE_GRACE=grace), workers=2)
    server.start()
    yield LiveFlow(server.url, SERVICE_SECRET)
    server.stop()


def test_concurrent_code_redemption_succeeds_once(live):
    """20 simultaneous redemptions of one code: exactly one 200, the rest invalid_grant."""
    code = live.code(live.login())
    responses = race(lambda: live.exchange(code))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 400: RACERS - 1}, statuses
    assert {r.json()["error"] for r in responses if r.status_code == 400} == {"invalid_grant"}


def test_concurrent_refresh_succeeds_once(live):
    """20 simultaneous refreshes of one token (grace 0): exactly one 200, the rest invalid_grant."""
    tokens = live.exchange(live.code(live.login())).json()
    responses = race(lambda: live.refresh(tokens["refresh_token"]))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 400: RACERS - 1}, statuses
    assert {r.json()["error"] for r in responses if r.status_code == 400} == {"invalid_grant"}


@pytest.mark.parametrize("live", [30], indirect=True, ids=["grace30"])
def test_concurrent_refresh_within_grace_gets_one_successor(live):
    """With a grace window every racer gets 200 and the very same successor."""
    tokens = live.exchange(live.code(live.login())).json()
    responses = race(lambda: live.refresh(tokens["refresh_token"]))
    assert Counter(r.status_code for r in responses) == {200: RACERS}
    assert len({r.json()["refresh_token"] for r in responses}) == 1
    successor = responses[0].json()["refresh_token"]
    assert live.refresh(successor).status_code == 200


def test_refresh_racing_session_invalidation(live):
    """Refreshes racing an invalidation: after it, nothing of the session works; no 5xx."""
    cookie = live.login()
    from sso.digests import token_hash

    tokens = [live.exchange(live.code(cookie)).json() for _ in range(10)]
    sid = token_hash(cookie)

    def invalidate() -> requests.Response:
        return requests.post(
            f"{live.url}/session/invalidate",
            headers=live.headers,
            timeout=10,
            json={"user_id": "42", "session_id_hashes": [sid]},
        )

    calls = [lambda t=t: live.refresh(t["refresh_token"]) for t in tokens] + [invalidate]
    barrier = threading.Barrier(len(calls))

    def run(fn):
        barrier.wait()
        return fn()

    with ThreadPoolExecutor(len(calls)) as pool:
        responses = list(pool.map(run, calls))
    assert all(r.status_code < 500 for r in responses)
    assert responses[-1].json() == {"invalidated": [sid]}
    for r in responses[:-1]:
        body = r.json()
        if r.status_code == 200:  # won the race: its successor is dead now anyway
            assert live.refresh(body["refresh_token"]).json()["error"] == "invalid_grant"
        else:
            assert body["error"] == "invalid_grant"
