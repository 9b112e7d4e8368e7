"""tokens-revoked events: API instances learn at once which access tokens to refuse (SPEC: Events)."""

from __future__ import annotations

import base64
import json

import pytest

from sso.events import iso8601
from sso.tokens import JTIS_PER_EVENT
from tests.test_event_log import published  # noqa: F401  (the fixture)

pytestmark = pytest.mark.topologies


def claims(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


def revoked_events(out: list[dict]) -> list[dict]:
    return [e for e in out if e["type"] == "tokens-revoked"]


def test_revoking_an_access_token_names_its_jti(oauth, published):  # noqa: F811
    """/revoke of an access token: its jti, its sid, until its exp, reason revoked."""
    session = oauth.login()
    body = oauth.tokens()
    published()
    assert oauth.client.post("/revoke", data={"token": body["access_token"], "client_id": "fluxer"}).status_code == 200
    (event,) = revoked_events(published())
    at = claims(body["access_token"])
    assert (event["reason"], event["jtis"], event["session_id_hashes"], event["user_id"]) == (
        "revoked",
        [at["jti"]],
        [session["session_id_hash"]],
        "42",
    )
    assert event["expires_at"] == iso8601(at["exp"])


def test_revoking_a_refresh_token_names_its_familys_access_tokens(oauth, published):  # noqa: F811
    """/revoke of a refresh token: the still-unexpired access tokens its family minted."""
    oauth.login()
    first = oauth.tokens()
    second = oauth.refresh(first["refresh_token"]).get_json()
    published()
    oauth.client.post("/revoke", data={"token": second["refresh_token"], "client_id": "fluxer"})
    (event,) = revoked_events(published())
    assert event["reason"] == "revoked"
    assert event["jtis"] == [claims(first["access_token"])["jti"], claims(second["access_token"])["jti"]]


def test_refresh_reuse_names_the_familys_access_tokens(oauth, published):  # noqa: F811
    """A spent refresh token presented again ends the family: reason refresh-reuse."""
    oauth.login()
    first = oauth.tokens()
    second = oauth.refresh(first["refresh_token"]).get_json()
    published()
    assert oauth.refresh(first["refresh_token"]).get_json()["error"] == "invalid_grant"
    (event,) = revoked_events(published())
    assert event["reason"] == "refresh-reuse"
    assert claims(second["access_token"])["jti"] in event["jtis"]


def test_code_replay_names_what_the_first_redemption_issued(oauth, published):  # noqa: F811
    """A code redeemed twice: the access token of its first redemption, reason code-replay."""
    oauth.login()
    code = oauth.code()
    first = oauth.exchange(code).get_json()
    published()
    assert oauth.exchange(code).get_json()["error"] == "invalid_grant"
    (event,) = revoked_events(published())
    assert event["reason"] == "code-replay" and event["jtis"] == [claims(first["access_token"])["jti"]]


def test_nothing_is_published_for_unknown_or_foreign_tokens(oauth, published):  # noqa: F811
    """/revoke of garbage or of another client's token revokes nothing and announces nothing."""
    oauth.login()
    body = oauth.tokens()
    published()
    oauth.client.post("/revoke", data={"token": "garbage", "client_id": "fluxer"})
    oauth.client.post("/revoke", data={"token": body["refresh_token"], "client_id": "fluxer-admin"})
    assert revoked_events(published()) == []


def rotate(oauth, clock, refresh_token: str, times: int, every: int) -> tuple[list[str], str]:
    """Refresh ``times`` times, ``every`` seconds apart: the access tokens minted and the last refresh token."""
    minted = []
    for _ in range(times):
        clock.advance(every)
        body = oauth.refresh(refresh_token).get_json()
        minted.append(body["access_token"])
        refresh_token = body["refresh_token"]
    return minted, refresh_token


def test_reuse_names_every_unexpired_access_token_of_a_family_rotated_often(oauth, published, clock):  # noqa: F811
    """A thief who rotated a stolen refresh token 20 times within one access-token lifetime: the reuse
    names all 21 of the family's unexpired access tokens (API instances refuse exact jtis only)."""
    oauth.login()
    first = oauth.tokens()
    minted, _ = rotate(oauth, clock, first["refresh_token"], 20, every=5)
    minted.insert(0, first["access_token"])
    published()
    assert oauth.refresh(first["refresh_token"]).get_json()["error"] == "invalid_grant"
    (event,) = revoked_events(published())
    assert event["reason"] == "refresh-reuse"
    assert event["jtis"] == [claims(token)["jti"] for token in minted]
    assert event["expires_at"] == iso8601(claims(minted[-1])["exp"])


def test_a_long_lived_family_names_its_unexpired_tokens_not_its_history(oauth, published, clock, settings):  # noqa: F811
    """100 refreshes a minute apart: the event names every token still unexpired and, beyond them, only
    tokens that expired within the last half lifetime, never the family's whole history."""
    oauth.login()
    first = oauth.tokens()
    minted, last = rotate(oauth, clock, first["refresh_token"], 100, every=60)
    published()
    oauth.client.post("/revoke", data={"token": last, "client_id": "fluxer"})
    (event,) = revoked_events(published())
    jtis = [claims(token)["jti"] for token in minted]
    alive = [claims(token)["jti"] for token in minted if claims(token)["exp"] > clock.now]
    assert len(alive) == settings.access_token_ttl // 60
    assert event["jtis"] == jtis[len(jtis) - len(event["jtis"]) :]  # the newest ones, in order
    assert set(alive) <= set(event["jtis"])
    assert len(event["jtis"]) <= len(alive) + settings.access_token_ttl // 2 // 60 + 1


def test_a_family_rotated_hundreds_of_times_is_named_whole_over_several_events(oauth, published, clock):  # noqa: F811
    """300 rotations in one instant: the reuse names all 301 unexpired tokens, split over events of at
    most JTIS_PER_EVENT jtis each, in order, each with the family's latest exp."""
    oauth.login()
    first = oauth.tokens()
    minted, _ = rotate(oauth, clock, first["refresh_token"], 300, every=0)
    published()
    assert oauth.refresh(first["refresh_token"]).get_json()["error"] == "invalid_grant"
    events = revoked_events(published())
    assert [len(event["jtis"]) for event in events] == [JTIS_PER_EVENT, 301 - JTIS_PER_EVENT]
    assert [jti for event in events for jti in event["jtis"]] == [
        claims(token)["jti"] for token in [first["access_token"], *minted]
    ]
    assert {event["reason"] for event in events} == {"refresh-reuse"}
    assert {event["expires_at"] for event in events} == {iso8601(claims(minted[-1])["exp"])}
