"""Races against a real gunicorn + gevent server: exactly-once outcomes, no 5xx."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from sso.store import Keys
from tests.conftest import SERVICE_SECRET
from tests.server import GunicornServer, LiveFlow, server_env

RACERS = 20


def race_all(calls: list) -> list[requests.Response]:
    """Run the calls at once, released together by a barrier; answers in call order."""
    barrier = threading.Barrier(len(calls))

    def run(fn) -> requests.Response:
        barrier.wait()
        return fn()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def race(fn, n: int = RACERS) -> list[requests.Response]:
    """Run fn n times at once."""
    return race_all([fn] * n)


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

    responses = race_all([lambda t=t: live.refresh(t["refresh_token"]) for t in tokens] + [invalidate])
    assert all(r.status_code < 500 for r in responses)
    assert responses[-1].json() == {"invalidated": [sid]}
    for r in responses[:-1]:
        body = r.json()
        if r.status_code == 200:  # won the race: its successor is dead now anyway
            assert live.refresh(body["refresh_token"]).json()["error"] == "invalid_grant"
        else:
            assert body["error"] == "invalid_grant"


def check_user_keys_consistent(redis, prefix: str, user_id: str) -> set[str]:
    """No half-written state: every record is whole and indexed, and the index names only records;
    returns the live sids."""
    keys = Keys(prefix)
    base = keys.index(user_id).rsplit(":u:", 1)[0] + ":s:"
    records = {k[len(base) :] for k in redis.scan_iter(match=f"{base}*") if redis.hget(k, "user_id") == user_id}
    fields = {"user_id", "created_at", "last_active_at", "expires_at", "client_ip", "user_agent", "platform", "claims"}
    for sid in records:
        assert set(redis.hgetall(keys.session(sid))) == fields, sid
    assert set(redis.zrange(keys.index(user_id), 0, -1)) == records
    return records


def test_invalidate_all_racing_session_creation(live, redis, prefix):
    """Creates racing invalidate-alls: each session ends exactly once or stays whole and alive; no 5xx."""
    user = "77"

    def create() -> requests.Response:
        return requests.post(f"{live.url}/session/create", headers=live.headers, timeout=10, json={"user_id": user})

    def invalidate_all() -> requests.Response:
        return requests.post(
            f"{live.url}/session/invalidate-all", headers=live.headers, timeout=10, json={"user_id": user}
        )

    for _round in range(3):
        before = {create().json()["session_id_hash"] for _ in range(5)}
        responses = race_all([create] * 16 + [invalidate_all] * 4)
        assert [r.status_code for r in responses] == [201] * 16 + [200] * 4, [r.text for r in responses]
        created = {r.json()["session_id_hash"] for r in responses[:16]}
        ended_lists = [r.json()["invalidated"] for r in responses[16:]]
        ended = [sid for lst in ended_lists for sid in lst]
        assert len(ended) == len(set(ended)), "a session was reported ended twice"
        assert before <= set(ended), "a session older than every invalidate-all survived"
        assert set(ended) <= before | created
        alive = check_user_keys_consistent(redis, prefix, user)
        assert alive == created - set(ended), "each created session is either ended or alive, never both"
        listed = requests.get(f"{live.url}/session/list/{user}", headers=live.headers, timeout=10).json()
        assert {s["session_id_hash"] for s in listed["sessions"]} == alive
        for sid in created:
            valid = requests.post(
                f"{live.url}/session/validate", headers=live.headers, timeout=10, json={"token_hash": sid}
            ).json()["valid"]
            assert valid is (sid in alive)
        invalidate_all()  # a clean slate for the next round
