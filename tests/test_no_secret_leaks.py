"""Secrets and tokens never reach the logs, an error body or Redis (which holds only their hashes)."""

from __future__ import annotations

import logging

from sso.digests import token_hash
from tests.conftest import OTHER_SECRET, SERVICE_SECRET, VERIFIER
from tests.test_token import dump_prefix

WRONG_SECRET = "a-wrong-guess-at-the-service-secret"


def run_flows(oauth, api, client, key_pair):
    """Run every flow that handles a secret, failures included; the secrets it saw and the error bodies."""
    error_bodies: list[str] = []

    def keep(response):
        if response.status_code >= 400:
            error_bodies.append(response.get_data(as_text=True))
        return response

    session = oauth.login()
    keep(client.post("/session/create", json={"user_id": "1"}, headers={"Authorization": f"Service {WRONG_SECRET}"}))
    code = oauth.code()
    first = oauth.exchange(code).get_json()
    keep(oauth.exchange(code))  # replay: revokes what the first redemption issued
    oauth.login()
    second = oauth.tokens()
    rotated = oauth.refresh(second["refresh_token"]).get_json()
    keep(oauth.refresh(second["refresh_token"]))  # reuse: the family is revoked, a warning is logged
    keep(oauth.exchange(oauth.code(), code_verifier="x" * 43))  # a failed PKCE check
    keep(client.get("/userinfo", headers={"Authorization": f"Bearer {rotated['access_token']}x"}))
    api.client.post("/introspect", data={"token": first["access_token"]}, headers=api.headers)
    client.post("/revoke", data={"token": rotated["refresh_token"], "client_id": "fluxer"})
    keep(client.post("/session/set-cookie", json={"token": session["token"] + "x"}))
    secrets = {
        "service secret": SERVICE_SECRET,
        "rotated-out service secret": OTHER_SECRET,
        "wrong secret presented": WRONG_SECRET,
        "session token": session["token"],
        "authorization code": code,
        "PKCE verifier": VERIFIER,
        "private key": key_pair[0].splitlines()[1],
    }
    for name, body in (("first", first), ("second", second), ("rotated", rotated)):
        for kind in ("access_token", "refresh_token", "id_token"):
            if kind in body:
                secrets[f"{name} {kind}"] = body[kind]
    return secrets, error_bodies, session, rotated


def test_no_secret_reaches_the_logs_or_an_error_body(oauth, api, client, key_pair, caplog):
    """Failures are logged (reuse, replay), but by hash, family id or user id, never by the secret."""
    caplog.set_level(logging.DEBUG)
    secrets, error_bodies, _, _ = run_flows(oauth, api, client, key_pair)
    assert "reuse detected" in caplog.text  # the log is really captured
    for name, secret in secrets.items():
        assert secret not in caplog.text, f"{name} in the log"
        for body in error_bodies:
            assert secret not in body, f"{name} in an error body"


def test_a_redis_dump_holds_only_hashes(oauth, api, client, key_pair, redis, prefix):
    """Everything under the prefix, keys and values: hashes of tokens, never a token or a secret."""
    secrets, _, session, _ = run_flows(oauth, api, client, key_pair)
    dump = dump_prefix(redis, prefix)
    assert token_hash(session["token"]) in dump  # the dump is real
    for name, secret in secrets.items():
        assert secret not in dump, f"{name} in Redis"
