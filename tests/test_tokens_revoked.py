"""tokens-revoked events: API instances learn at once which access tokens to refuse (SPEC: Events)."""

from __future__ import annotations

import base64
import json

import pytest

from sso.events import iso8601
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
