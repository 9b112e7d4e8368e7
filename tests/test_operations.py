"""Operations: request ids, JSON logs without secrets, Prometheus metrics, the operator CLI."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sso.logs import json_handler
from tests.conftest import SERVICE_SECRET
from tests.server import ROOT, server_env


@pytest.fixture
def log_lines():
    """Every log record of the process during the test, as parsed JSON lines."""
    stream = io.StringIO()
    handler = json_handler(stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    lines: list[dict] = []
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()] or lines
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_request_id_is_echoed_or_generated(client):
    """A sane X-Request-ID comes back as sent; a missing or hostile one is replaced."""
    assert client.get("/_health", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    generated = client.get("/_health").headers["X-Request-ID"]
    assert len(generated) == 32 and generated.isalnum()
    hostile = client.get("/_health", headers={"X-Request-ID": "a\u0000b" + "x" * 200}).headers["X-Request-ID"]
    assert hostile != "a\u0000b" + "x" * 200 and len(hostile) == 32
    assert client.get("/nope", headers={"X-Request-ID": "err-1"}).headers["X-Request-ID"] == "err-1"


def test_access_log_is_one_json_line_per_request(client, api, log_lines):
    body = api.create("42")
    client.post("/session/validate", json={"token_hash": body["session_id_hash"]},
                headers={**api.headers, "X-Request-ID": "req-7"})  # fmt: skip
    access = [line for line in log_lines() if line["logger"] == "sso.access"]
    assert len(access) == 2
    last = access[-1]
    assert last["event"] == "request" and last["level"] == "info" and last["request_id"] == "req-7"
    assert last["method"] == "POST" and last["path"] == "/session/validate" and last["status"] == 200
    assert last["user_id"] == "42" and last["duration_ms"] >= 0 and last["ts"].endswith("Z")


def test_no_secret_reaches_the_logs(oauth, api, log_lines, client, caplog):
    """A whole flow, errors included: no session token, code, refresh/access/id token or secret in any log line."""
    caplog.set_level(logging.DEBUG)
    session = oauth.login()
    code = oauth.code()
    tokens = oauth.exchange(code).get_json()
    refreshed = oauth.refresh(tokens["refresh_token"]).get_json()
    oauth.refresh(tokens["refresh_token"])  # reuse: logged as a warning
    oauth.exchange(code)  # replay: logged
    client.get("/logout", query_string={"id_token_hint": tokens["id_token"]})
    client.get("/userinfo", headers={"Authorization": f"Bearer {refreshed['access_token']}"})
    client.post("/session/create", json={"user_id": "1"}, headers={"Authorization": "Service wrong-secret-123456"})
    text = "\n".join(json.dumps(line) for line in log_lines()) + caplog.text
    assert "refresh token reuse detected" in text and "/session/validate" not in text  # the capture is real
    for secret in (session["token"], code, tokens["refresh_token"], tokens["access_token"], tokens["id_token"],
                   refreshed["refresh_token"], SERVICE_SECRET, "wrong-secret-123456"):  # fmt: skip
        assert secret not in text


def metric_value(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_need_service_auth_and_count(client, api, oauth):
    assert client.get("/metrics").status_code == 401
    before = client.get("/metrics", headers=api.headers).get_data(as_text=True)
    oauth.login()
    oauth.tokens()
    response = client.get("/metrics", headers=api.headers)
    assert response.status_code == 200 and response.mimetype == "text/plain"
    after = response.get_data(as_text=True)
    assert metric_value(after, "sso_sessions_created_total") == metric_value(before, "sso_sessions_created_total") + 1
    grant = {"grant": "authorization_code"}
    assert (
        metric_value(after, "sso_tokens_issued_total", **grant)
        == metric_value(before, "sso_tokens_issued_total", **grant) + 1
    )
    labels = {"endpoint": "/token", "method": "POST", "status": "200"}
    assert metric_value(after, "sso_http_requests_total", **labels) >= 1
    assert "sso_http_request_duration_seconds_bucket" in after


def test_invented_request_methods_share_one_metrics_label(client, api):
    """The method label takes the methods HTTP defines; anything a client invents is "other", so
    400 random methods add one series, not 400 (each kept by every worker until it restarts)."""
    from prometheus_client import REGISTRY

    def series() -> set[str]:
        return {
            sample.labels["method"]
            for metric in REGISTRY.collect()
            if metric.name == "sso_http_requests"
            for sample in metric.samples
        }

    before = series()
    for n in range(400):
        assert client.open("/_health", method=f"X{n:03d}RANDOM").status_code == 405
    client.open("/_health", method="GET")
    added = series() - before
    assert added <= {"other", "GET"} and "other" in series()
    labels = {"endpoint": "unmatched", "method": "other", "status": "405"}  # a 405 matches no rule
    assert metric_value(client.get("/metrics", headers=api.headers).get_data(as_text=True),
                        "sso_http_requests_total", **labels) >= 400  # fmt: skip


# -- CLI -----------------------------------------------------------------------------


def test_cli_lists_and_ends_sessions_with_events(app, api, events):
    """`flask sso sessions/end-session/end-all` act like the API and publish the same events."""
    a, b, c = api.create("42"), api.create("42"), api.create("42")
    app.extensions["sso"].worker.run_once()
    events.drain()
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["sso", "sessions", "42"])
    assert listed.exit_code == 0
    assert {json.loads(line)["session_id_hash"] for line in listed.output.splitlines()} == {
        a["session_id_hash"],
        b["session_id_hash"],
        c["session_id_hash"],
    }
    ended = runner.invoke(args=["sso", "end-session", "42", a["session_id_hash"]])
    assert ended.exit_code == 0, (ended.output, ended.exception)
    assert json.loads(ended.output) == {"invalidated": [a["session_id_hash"]], "events_published": True}
    (event,) = events.drain()
    assert event["type"] == "session-invalidated" and event["session_id_hashes"] == [a["session_id_hash"]]
    rest = runner.invoke(args=["sso", "end-all", "42", "--except", c["session_id_hash"]])
    assert json.loads(rest.output)["invalidated"] == [b["session_id_hash"]]
    (event,) = events.drain()
    assert event["type"] == "global-logout"
    remaining = runner.invoke(args=["sso", "sessions", "42"]).output.splitlines()
    assert [json.loads(line)["session_id_hash"] for line in remaining] == [c["session_id_hash"]]


def flask_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    flask = str(Path(sys.executable).parent / "flask")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SSO_") and k != "REDIS_URL"}
    return subprocess.run([flask, "--app", "wsgi", *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**clean, "SSO_ENV_FILE": "/nonexistent", **env})  # fmt: skip


def test_cli_keys_work_without_any_configuration():
    """`sso keys` is how a first configuration is made, so it needs none."""
    result = flask_cli("sso", "keys", env={})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('SSO_JWT_PRIVATE_KEY="-----BEGIN PRIVATE KEY-----\\n')
    assert "SSO_JWT_PUBLIC_KEY=" in result.stdout and "SSO_SERVICE_SECRET=" in result.stdout


def test_cli_check_config(settings):
    ok = flask_cli("sso", "check-config", env=server_env(settings))
    assert ok.returncode == 0, ok.stderr
    assert "configuration OK" in ok.stdout and "redis OK" in ok.stdout
    assert SERVICE_SECRET not in ok.stdout + ok.stderr
    bad = flask_cli("sso", "check-config", env={**server_env(settings), "SSO_SESSION_TTL": "-1"})
    assert bad.returncode == 1 and "SSO_SESSION_TTL" in bad.stderr
    down = flask_cli("sso", "check-config", env={**server_env(settings), "REDIS_URL": "redis://127.0.0.1:1/0"})
    assert down.returncode == 2 and "redis unreachable" in down.stderr
