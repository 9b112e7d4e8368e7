"""A new operator's first hour: `make keys`, `sso check-config`, the start-up line, the development .env."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from dotenv import dotenv_values

from config.settings import load_settings
from sso.cookies import COOKIE_NAME
from sso.startup import is_development, masked_redis_url, warnings_for
from tests.conftest import CHALLENGE
from tests.redis_server import free_port
from tests.server import ROOT, GunicornServer, server_env
from tests.test_operations import flask_cli


def test_make_keys_on_a_fresh_clone_prints_only_env_lines(tmp_path):
    """`make keys > env` on a clone without .venv writes nothing but the three variables, and they load."""
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=30,
    )
    clone = tmp_path / "clone"
    for name in tracked.stdout.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    # MAKEFLAGS from an outer `make test` must not leak in; PYTHON is the interpreter make builds .venv with.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSO_", "MAKE")) and k != "REDIS_URL"}
    result = subprocess.run(["make", "keys", f"PYTHON={sys.executable}"], cwd=clone, env=env,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (clone / ".venv" / ".runtime").exists(), "the fresh clone's venv was not built by make keys"
    lines = result.stdout.splitlines()
    assert [line.split("=", 1)[0] for line in lines] == ["SSO_JWT_PRIVATE_KEY", "SSO_JWT_PUBLIC_KEY",
                                                          "SSO_SERVICE_SECRET"], result.stdout[:300]  # fmt: skip
    (clone / "env").write_text(result.stdout)
    assert load_settings({k: v for k, v in dotenv_values(clone / "env").items() if v is not None})


@pytest.fixture
def live_env_file(settings, tmp_path) -> Path:
    """The environment file a systemd install keeps in /etc/fluxer-sso/env, pointing at the suite's Redis."""
    path = tmp_path / "service.env"
    path.write_text("".join(f"{k}={json.dumps(v)}\n" for k, v in server_env(settings).items()))
    return path


def test_check_config_checks_the_environment_file_the_service_runs_with(settings, live_env_file, tmp_path):
    """--env-file pings the file's Redis, not the one this directory's .env names, and says which it used."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    dotenv = tmp_path / "dot.env"  # this directory's .env: another Redis and another client list
    dotenv.write_text(f"REDIS_URL={dead}\nSSO_CLIENTS=from-dotenv\n")
    plain = flask_cli("sso", "check-config", env={**server_env(settings, REDIS_URL=dead), "SSO_ENV_FILE": str(dotenv)})
    assert plain.returncode == 2 and dead in plain.stderr
    checked = flask_cli("sso", "check-config", "--env-file", str(live_env_file), env={"SSO_ENV_FILE": str(dotenv)})
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"configuration from: environment + {live_env_file}" in checked.stdout
    assert f"redis OK: {settings.redis_url}" in checked.stdout
    assert "from-dotenv" not in checked.stdout  # the .env's extra variable stayed out


def test_check_config_with_an_env_file_whose_redis_is_down_fails(settings, live_env_file):
    """The file's REDIS_URL is the one pinged: down there is exit 2 even when this shell's Redis answers."""
    down = f"redis://127.0.0.1:{free_port()}/0"
    live_env_file.write_text(live_env_file.read_text() + f"REDIS_URL={down}\n")
    result = flask_cli("sso", "check-config", "--env-file", str(live_env_file), env=server_env(settings))
    assert result.returncode == 2 and f"redis unreachable at {down}" in result.stderr
    missing = flask_cli("sso", "check-config", "--env-file", "/nonexistent/env", env=server_env(settings))
    assert missing.returncode == 1 and "no such file" in missing.stderr


def test_check_config_env_file_works_when_the_local_configuration_is_broken(settings, live_env_file):
    """An operator's shell without keys (the config-error app) can still check the service's file."""
    result = flask_cli("sso", "check-config", "--env-file", str(live_env_file), env={})
    assert result.returncode == 0, result.stderr
    assert "redis OK" in result.stdout


def test_masked_redis_url_hides_only_the_password():
    """User, host, port and database stay readable; the password never does."""
    assert masked_redis_url("redis://app:s3cret@cache:6380/2") == "redis://app:***@cache:6380/2"
    assert masked_redis_url("rediss://:s3cret@cache/0") == "rediss://:***@cache/0"
    assert masked_redis_url("redis://cache:6379/0") == "redis://cache:6379/0"
    assert masked_redis_url("unix:///run/redis.sock?db=1") == "unix:///run/redis.sock?db=1"


def test_masked_redis_url_hides_a_password_in_the_query_or_a_lone_userinfo():
    """redis-py takes ?password= (and ?username=): every query value but db is masked; so is a lone
    userinfo, which the Sentinel and Cluster forms read as the password."""
    assert masked_redis_url("redis://cache:6379/0?password=s3cret") == "redis://cache:6379/0?password=***"
    assert masked_redis_url("rediss://cache/0?username=app&password=s3cret&db=2&ssl_cert_reqs=none") == (
        "rediss://cache/0?username=***&password=***&db=2&ssl_cert_reqs=***"
    )
    assert masked_redis_url("unix://:s3cret@/run/redis.sock?db=1&password=s3cret") == (
        "unix://:***@/run/redis.sock?db=1&password=***"
    )
    assert masked_redis_url("redis://s3cret@cache:6379/0") == "redis://***@cache:6379/0"


def test_check_config_masks_a_password_in_the_query(settings):
    """Every check-config line that names the Redis masks ?password=: OK, redis OK, and unreachable."""
    url = f"{settings.redis_url}?password=s3cret-in-the-query"
    live = flask_cli("sso", "check-config", env=server_env(settings, REDIS_URL=url))
    assert live.returncode == 0, live.stdout + live.stderr  # a Redis without a password lets redis-py's AUTH pass
    assert f"redis {settings.redis_url}?password=***" in live.stdout
    assert f"redis OK: {settings.redis_url}?password=***" in live.stdout
    dead = f"redis://127.0.0.1:{free_port()}/0"
    down = flask_cli("sso", "check-config", env=server_env(settings, REDIS_URL=f"{dead}?password=s3cret-in-the-query"))
    assert down.returncode == 2 and f"redis unreachable at {dead}?password=***" in down.stderr
    assert "s3cret" not in live.stdout + live.stderr + down.stdout + down.stderr


def test_development_means_plain_http_on_a_loopback_host(settings):
    """Only a loopback http issuer is development; there a port mismatch or a Secure cookie warns."""
    assert (
        is_development("http://localhost:8090")
        and is_development("http://127.0.0.2:1")
        and is_development("http://[::1]:8090")
    )
    assert not is_development("https://localhost:8090") and not is_development("http://sso.example.com")
    production = settings.__class__(**{**settings.__dict__, "issuer": "https://sso.example.com"})
    assert warnings_for(production, ["127.0.0.1:8090"]) == []
    dev = settings.__class__(**{**settings.__dict__, "issuer": "http://localhost:8090", "cookie_secure": False})
    assert warnings_for(dev, ["127.0.0.1:8090"]) == []
    assert warnings_for(dev, ["unix:/run/sso.sock"]) == []
    (mismatch,) = warnings_for(dev, ["127.0.0.1:9999"])
    assert "port 8090" in mismatch and "127.0.0.1:9999" in mismatch


def _start_lines(log: str) -> list[dict]:
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [line for line in lines if line["logger"] == "sso.start"]


def test_each_gunicorn_worker_says_what_it_runs_with(settings, redis):
    """One sso.start line per worker: issuer, masked Redis, topology, kids, worker count; no secret."""
    password_url = settings.redis_url.replace("redis://", "redis://default:hunter2-redis-pass@")
    port = free_port()
    server = GunicornServer(server_env(settings, REDIS_URL=password_url, SSO_ISSUER=f"http://localhost:{port}",
                                       SSO_COOKIE_SECURE="false"), workers=2)  # fmt: skip
    server.port = port
    server.env["SSO_PORT"] = str(port)
    server.start()
    kid = requests.get(f"{server.url}/.well-known/jwks.json", timeout=5).json()["keys"][0]["kid"]
    server.stop()
    lines = _start_lines(server.log)
    started = [line for line in lines if line["level"] == "info"]
    assert len(started) == 2, server.log
    assert all(
        line["issuer"] == f"http://localhost:{port}"
        and line["redis"] == password_url.replace("hunter2-redis-pass", "***")
        and line["redis_topology"] == "single"
        and line["kids"] == [kid]
        and line["workers"] == 2
        for line in started
    ), started
    assert [line for line in lines if line["level"] == "warning"] == []
    assert "hunter2-redis-pass" not in server.log and settings.service_secrets[0] not in server.log


def test_an_issuer_on_another_port_warns_at_start_in_development(settings, redis):
    """`SSO_ISSUER=http://localhost:8090` while gunicorn binds another port: one warning per worker."""
    server = GunicornServer(server_env(settings, SSO_ISSUER="http://localhost:8090", SSO_COOKIE_SECURE="false"),
                            workers=1)  # fmt: skip
    server.start()
    server.stop()
    warnings = [line for line in _start_lines(server.log) if line["level"] == "warning"]
    assert len(warnings) == 1 and "names port 8090" in warnings[0]["event"], server.log
    assert f"127.0.0.1:{server.port}" in warnings[0]["event"]


def test_the_generated_development_env_gives_a_cookie_plain_http_keeps(redis_url, prefix, redis, tmp_path):
    """`make run`'s .env, unchanged: a browser-like client over http://localhost keeps and sends the cookie."""
    env_file = tmp_path / ".env"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SSO_")}
    subprocess.run([sys.executable, "-m", "config.keygen", "--ensure", str(env_file)], cwd=ROOT, env=clean,
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    values = dotenv_values(env_file)
    assert values["SSO_COOKIE_SECURE"] == "false"
    port = free_port()
    server = GunicornServer({"REDIS_URL": redis_url, "SSO_REDIS_PREFIX": prefix,
                             "SSO_ISSUER": f"http://localhost:{port}"}, workers=1)  # fmt: skip
    server.port = port
    server.env.update({"SSO_PORT": str(port), "SSO_ENV_FILE": str(env_file)})
    server.start()
    try:
        base = f"http://localhost:{port}"
        created = requests.post(f"{base}/session/create", json={"user_id": "42"}, timeout=5,
                                headers={"Authorization": f"Service {values['SSO_SERVICE_SECRET']}"})  # fmt: skip
        assert created.status_code == 201, created.text
        browser = requests.Session()
        set_cookie = browser.post(f"{base}/session/set-cookie", json={"token": created.json()["token"]},
                                  headers={"Origin": "http://localhost:3000"}, timeout=5)  # fmt: skip
        assert set_cookie.status_code == 204, set_cookie.text
        authorize = browser.get(f"{base}/authorize", allow_redirects=False, timeout=5, params={
            "response_type": "code", "client_id": "fluxer", "redirect_uri": "http://localhost:3000/oauth/callback",
            "state": "s", "code_challenge": CHALLENGE, "code_challenge_method": "S256", "scope": "openid"})  # fmt: skip
    finally:
        server.stop()
    assert COOKIE_NAME in browser.cookies
    assert authorize.status_code == 302 and "code=" in authorize.headers["Location"], authorize.headers
